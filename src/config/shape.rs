//! The shape of the config file as the parser sees it: every section and key the `Raw*`
//! structs accept, with the kind of value each asks serde for (test-only).
//!
//! Read off the derived `Deserialize` impls themselves by a deserializer that records what it
//! is asked for and answers with a placeholder, so a key added to a `Raw*` struct shows up here
//! without anyone listing it; the reference tests compare this with the documented table.

use std::collections::BTreeMap;

use serde::de::value::{Error, StrDeserializer};
use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};

/// What a key's value is, as asked of the deserializer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// An unsigned integer of this many bits (`usize` counts as 64).
    Unsigned(u32),
    Float,
    Bool,
    Str,
    /// An array of values of this kind.
    Seq(Box<Kind>),
    /// A table of free-form keys.
    Map,
    /// A section (a struct): its keys are in the section list.
    Section,
}

/// Every section's keys, by dotted section path (`""` is the top level, `dns.rate_limit`).
/// A section reached through an array (`[[zone]]`) is listed with `array: true`.
#[derive(Debug, Default)]
pub struct Shape {
    pub sections: BTreeMap<String, SectionShape>,
}

#[derive(Debug, Default)]
pub struct SectionShape {
    pub array: bool,
    pub keys: BTreeMap<String, Kind>,
}

/// Walk `T`'s `Deserialize` impl. An error means the walk stopped early (a kind of value this
/// walker cannot answer), so the shape would be incomplete.
pub fn of<'de, T: de::Deserialize<'de>>() -> Result<Shape, Error> {
    let mut shape = Shape::default();
    let mut walker = Walker {
        shape: &mut shape,
        path: String::new(),
        in_array: false,
        kind: None,
    };
    T::deserialize(&mut walker)?;
    Ok(shape)
}

struct Walker<'a> {
    shape: &'a mut Shape,
    /// The section this value sits in, or for a key's value, the key's full path.
    path: String,
    in_array: bool,
    /// What the value turned out to be.
    kind: Option<Kind>,
}

impl Walker<'_> {
    fn child(&mut self, path: String, in_array: bool) -> Walker<'_> {
        Walker {
            shape: self.shape,
            path,
            in_array,
            kind: None,
        }
    }
}

macro_rules! unsigned {
    ($($method:ident $bits:literal),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.kind = Some(Kind::Unsigned($bits));
            visitor.visit_u8(0)
        }
    )*};
}

macro_rules! unsupported {
    ($($method:ident),*) => {$(
        fn $method<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(de::Error::custom(concat!(
                "config shape: ",
                stringify!($method),
                " is not a config value kind; teach src/config/shape.rs about it"
            )))
        }
    )*};
}

impl<'de> Deserializer<'de> for &mut Walker<'_> {
    type Error = Error;

    unsigned!(deserialize_u8 8, deserialize_u16 16, deserialize_u32 32, deserialize_u64 64);
    unsupported!(
        deserialize_any,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_f32,
        deserialize_char,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_unit,
        deserialize_ignored_any
    );

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.kind = Some(Kind::Float);
        visitor.visit_f64(0.0)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.kind = Some(Kind::Bool);
        visitor.visit_bool(false)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.kind = Some(Kind::Str);
        visitor.visit_str("")
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: V,
    ) -> Result<V::Value, Error> {
        Err(de::Error::custom(
            "config shape: unit structs are not config values",
        ))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // One element, so that an array of tables shows its table's keys.
        let mut element = self.child(self.path.clone(), true);
        let value = visitor.visit_seq(OneElement {
            walker: &mut element,
            done: false,
        });
        let inner = element.kind.take().unwrap_or(Kind::Str);
        self.kind = Some(Kind::Seq(Box::new(inner)));
        value
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.kind = Some(Kind::Map);
        visitor.visit_map(Fields {
            walker: self,
            fields: &[],
            next: 0,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.kind = Some(Kind::Section);
        let section = self.shape.sections.entry(self.path.clone()).or_default();
        section.array |= self.in_array;
        visitor.visit_map(Fields {
            walker: self,
            fields,
            next: 0,
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Error> {
        Err(de::Error::custom(
            "config shape: enums are not config values yet",
        ))
    }
}

/// Every field of a struct, each with a walked value.
struct Fields<'w, 'a> {
    walker: &'w mut Walker<'a>,
    fields: &'static [&'static str],
    next: usize,
}

impl<'de> MapAccess<'de> for Fields<'_, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(name) = self.fields.get(self.next) else {
            return Ok(None);
        };
        let key: StrDeserializer<Error> = name.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let name = self.fields[self.next];
        self.next += 1;
        let section = self.walker.path.clone();
        let path = if section.is_empty() {
            name.to_owned()
        } else {
            format!("{section}.{name}")
        };
        let mut value = self.walker.child(path, false);
        let out = seed.deserialize(&mut value);
        let kind = value.kind.take().unwrap_or(Kind::Str);
        if kind != Kind::Section && !matches!(&kind, Kind::Seq(k) if **k == Kind::Section) {
            self.walker
                .shape
                .sections
                .entry(section)
                .or_default()
                .keys
                .insert(name.to_owned(), kind);
        }
        out
    }
}

struct OneElement<'w, 'a> {
    walker: &'w mut Walker<'a>,
    done: bool,
}

impl<'de> SeqAccess<'de> for OneElement<'_, '_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if std::mem::replace(&mut self.done, true) {
            return Ok(None);
        }
        seed.deserialize(&mut *self.walker).map(Some)
    }
}
