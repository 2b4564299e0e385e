//! A location as the decision engine sees it: compact codes, no strings on the hot path.

use std::fmt;

use maxminddb::geoip2;

/// Index of a distinct location in [`super::GeoDb::locations`]. Decision tables are arrays
/// indexed by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocId(u32);

impl LocId {
    pub(crate) fn new(index: usize) -> Self {
        // A City database has at most a few hundred thousand distinct records.
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

/// One distinct location record of the City (or Country) database.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Location {
    pub continent: Option<Continent>,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: Option<[u8; 2]>,
    /// First-level ISO 3166-2 subdivision code without the country (e.g. `CA` for `US-CA`).
    pub subdivision: Option<Box<str>>,
    pub city: Option<Box<str>>,
    /// Latitude and longitude in degrees, when the database has them.
    pub coordinates: Option<(f64, f64)>,
}

impl Location {
    pub(crate) fn from_record(record: &geoip2::City<'_>) -> Self {
        let country = record.country.iso_code.and_then(|code| {
            let bytes = code.as_bytes();
            (bytes.len() == 2).then(|| [bytes[0], bytes[1]])
        });
        Location {
            continent: record.continent.code.and_then(Continent::from_code),
            country,
            subdivision: record
                .subdivisions
                .first()
                .and_then(|s| s.iso_code)
                .map(Into::into),
            city: record.city.names.english.map(Into::into),
            coordinates: match (record.location.latitude, record.location.longitude) {
                (Some(lat), Some(long)) => Some((lat, long)),
                _ => None,
            },
        }
    }

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
        if let Some(city) = &self.city {
            write!(f, " city={city}")?;
        }
        if let Some((lat, long)) = self.coordinates {
            write!(f, " coordinates={lat},{long}")?;
        }
        Ok(())
    }
}
