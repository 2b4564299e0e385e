//! The few fields of a City (or Country) and ASN record that decisions read, decoded without
//! the rest: `geoip2::City` would also build every localized name map of every record, which
//! was most of the load time on a real database and none of what a policy can match.
//!
//! Fields the structs do not name are skipped by the decoder without being built. Strings are
//! borrowed from the database, so decoding allocates nothing.

use std::fmt;

use serde::Deserialize;
use serde::de::{IgnoredAny, SeqAccess, Visitor};

use super::{Continent, Location};

/// A City or Country record: continent code, country code, first subdivision code.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct CityRecord<'a> {
    #[serde(borrow, default)]
    continent: Option<Coded<'a>>,
    #[serde(borrow, default)]
    country: Option<IsoCoded<'a>>,
    #[serde(borrow, default)]
    subdivisions: Option<First<'a>>,
}

#[derive(Debug, Deserialize)]
struct Coded<'a> {
    #[serde(borrow, default)]
    code: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
struct IsoCoded<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

/// The first element of the `subdivisions` array (the first-level subdivision); the others
/// are skipped, not collected.
#[derive(Debug, Default)]
struct First<'a>(Option<IsoCoded<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for First<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FirstVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for FirstVisitor<'a> {
            type Value = First<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of subdivisions")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<First<'a>, S::Error> {
                let first = seq.next_element::<IsoCoded<'a>>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(First(first))
            }
        }
        d.deserialize_seq(FirstVisitor(std::marker::PhantomData))
    }
}

impl CityRecord<'_> {
    /// The location class of this record, as policies see it.
    pub(crate) fn location(&self) -> Location {
        let country = self
            .country
            .as_ref()
            .and_then(|c| c.iso_code)
            .and_then(|code| {
                let bytes = code.as_bytes();
                (bytes.len() == 2).then(|| [bytes[0], bytes[1]])
            });
        Location {
            continent: self
                .continent
                .as_ref()
                .and_then(|c| c.code)
                .and_then(Continent::from_code),
            country,
            subdivision: self
                .subdivisions
                .as_ref()
                .and_then(|s| s.0.as_ref())
                .and_then(|s| s.iso_code)
                .map(Into::into),
        }
    }
}

/// An ASN record's number; the organisation name is skipped (explanations decode it on
/// demand).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AsnRecord {
    #[serde(default)]
    pub(crate) autonomous_system_number: Option<u32>,
}
