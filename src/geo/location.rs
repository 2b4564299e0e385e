//! A location as the decision engine sees it: compact codes, no strings on the hot path.

use std::fmt;

/// Index of a distinct location (class) in [`super::GeoDb::classes`]: the same number as its
/// [`super::ClassId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocId(u32);

impl LocId {
    pub(crate) fn new(index: usize) -> Self {
        // A City database has a few thousand classes.
        Self(u32::try_from(index).unwrap_or(u32::MAX))
    }

    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The seven continent codes MaxMind uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Continent {
    Africa,
    Antarctica,
    Asia,
    Europe,
    NorthAmerica,
    Oceania,
    SouthAmerica,
}

impl Continent {
    pub const ALL: [Continent; 7] = [
        Continent::Africa,
        Continent::Antarctica,
        Continent::Asia,
        Continent::Europe,
        Continent::NorthAmerica,
        Continent::Oceania,
        Continent::SouthAmerica,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Continent::Africa => "AF",
            Continent::Antarctica => "AN",
            Continent::Asia => "AS",
            Continent::Europe => "EU",
            Continent::NorthAmerica => "NA",
            Continent::Oceania => "OC",
            Continent::SouthAmerica => "SA",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }
}

impl fmt::Display for Continent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A location class: what a policy can match on. Decision tables have one row per distinct
/// value. The City database's finer details (city name, coordinates) are not kept: no decision
/// reads them, and explanations decode them from the record on demand
/// ([`super::GeoDb::describe`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Location {
    pub continent: Option<Continent>,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: Option<[u8; 2]>,
    /// First-level ISO 3166-2 subdivision code without the country (e.g. `CA` for `US-CA`).
    pub subdivision: Option<Box<str>>,
}

impl Location {
    pub fn country_code(&self) -> Option<&str> {
        self.country
            .as_ref()
            .and_then(|c| std::str::from_utf8(c).ok())
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let continent = self.continent.map_or("-", Continent::code);
        let country = self.country_code().unwrap_or("-");
        write!(f, "continent={continent} country={country}")?;
        if let Some(sub) = &self.subdivision {
            write!(f, " subdivision={country}-{sub}")?;
        }
        Ok(())
    }
}
