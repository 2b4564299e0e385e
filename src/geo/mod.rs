//! Where a client address is: continent, country, subdivision, coordinates and ASN.
//!
//! Owns the MaxMind readers (held in memory) and a table of the distinct locations in the City
//! database, built once at load. Pure after load: `locate` is called once per steered query and
//! does two tree walks and two hash lookups; it never decodes a record or allocates.
//! Operator overrides (CIDR → location) are checked first. May depend on nothing else in the
//! crate.

pub mod iso;
mod location;

pub use location::{Continent, LocId, Location};

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use maxminddb::{Reader, WithinOptions, geoip2};

/// An operator's statement of where a network is (a corporate resolver, a private range, a
/// network the databases get wrong). It takes precedence over the databases.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub net: IpNet,
    pub location: Location,
    /// When set, also replaces the ASN database's answer.
    pub asn: Option<u32>,
}

/// Where a database comes from: a file the operator named, or bytes bundled in the binary.
#[derive(Debug, Clone)]
pub enum DbSource {
    File(PathBuf),
    Bundled {
        name: &'static str,
        bytes: &'static [u8],
    },
}

impl DbSource {
    fn describe(&self) -> String {
        match self {
            DbSource::File(path) => path.display().to_string(),
            DbSource::Bundled { name, .. } => format!("bundled {name}"),
        }
    }

    fn load(&self) -> Result<Reader<Vec<u8>>, GeoError> {
        let bytes = match self {
            DbSource::File(path) => std::fs::read(path).map_err(|e| GeoError::Read {
                db: self.describe(),
                reason: e.to_string(),
            })?,
            DbSource::Bundled { bytes, .. } => bytes.to_vec(),
        };
        Reader::from_source(bytes).map_err(|e| GeoError::Invalid {
            db: self.describe(),
            reason: e.to_string(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("{db}: cannot read: {reason}")]
    Read { db: String, reason: String },
    #[error("{db}: not a valid MaxMind DB: {reason}")]
    Invalid { db: String, reason: String },
    #[error("{db}: database type is {found:?}, expected {expected}")]
    WrongType {
        db: String,
        found: String,
        expected: &'static str,
    },
}

/// What `locate` found for one address. Prefix lengths are those of the database networks that
/// answered (found or not), so the caller can tell resolvers how far an answer holds (ECS scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    pub loc: Option<LocId>,
    pub geo_prefix: u8,
    pub asn: Option<u32>,
    pub asn_prefix: u8,
}

/// The GeoIP databases in memory plus the location table derived from the City database.
pub struct GeoDb {
    city: Reader<Vec<u8>>,
    asn: Option<Reader<Vec<u8>>>,
    city_name: String,
    asn_name: Option<String>,
    locations: Vec<Location>,
    loc_by_offset: HashMap<usize, LocId>,
    asn_by_offset: HashMap<usize, u32>,
    /// Distinct (continent, country, subdivision): all a policy can tell apart. Decision
    /// tables are indexed by class, which keeps them small on real databases.
    classes: Vec<Location>,
    /// Indexed by `LocId`.
    class_of: Vec<ClassId>,
    /// Longest prefix first; their locations are at the end of `locations`.
    overrides: Vec<(IpNet, LocId, Option<u32>)>,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb")
            .field("city", &self.city_name)
            .field("asn", &self.asn_name)
            .field("locations", &self.locations.len())
            .finish()
    }
}

impl GeoDb {
    /// Load the City (or Country) database and, optionally, the ASN database, and index every
    /// distinct location once so queries never decode records.
    pub fn load(
        city: &DbSource,
        asn: Option<&DbSource>,
        overrides: &[Override],
    ) -> Result<Self, GeoError> {
        let city_name = city.describe();
        let city = city.load()?;
        let db_type = city.metadata().database_type.clone();
        if !(db_type.contains("City") || db_type.contains("Country")) {
            return Err(GeoError::WrongType {
                db: city_name,
                found: db_type,
                expected: "a GeoIP2/GeoLite2 City or Country database",
            });
        }
        let (mut locations, loc_by_offset) = index_locations(&city, &city_name)?;
        let mut sorted: Vec<&Override> = overrides.iter().collect();
        sorted.sort_by_key(|o| std::cmp::Reverse(o.net.prefix_len()));
        let overrides = sorted
            .into_iter()
            .map(|o| {
                locations.push(o.location.clone());
                (o.net, LocId::new(locations.len() - 1), o.asn)
            })
            .collect();

        let (asn, asn_name, asn_by_offset) = match asn {
            None => (None, None, HashMap::new()),
            Some(source) => {
                let name = source.describe();
                let reader = source.load()?;
                let db_type = reader.metadata().database_type.clone();
                if !db_type.contains("ASN") {
                    return Err(GeoError::WrongType {
                        db: name,
                        found: db_type,
                        expected: "a GeoLite2/GeoIP2 ASN database",
                    });
                }
                let by_offset = index_asns(&reader, &name)?;
                (Some(reader), Some(name), by_offset)
            }
        };

        let (classes, class_of) = classify(&locations);
        Ok(Self {
            classes,
            class_of,
            city,
            asn,
            city_name,
            asn_name,
            locations,
            loc_by_offset,
            asn_by_offset,
            overrides,
        })
    }

    /// Every distinct location in the City database; `LocId` indexes this slice.
    pub fn locations(&self) -> &[Location] {
        &self.locations
    }

    pub fn location(&self, id: LocId) -> &Location {
        &self.locations[id.index()]
    }

    /// Every distinct location class; `ClassId` indexes this slice.
    pub fn classes(&self) -> &[Location] {
        &self.classes
    }

    pub fn class_of(&self, id: LocId) -> ClassId {
        self.class_of[id.index()]
    }

    pub fn has_asn(&self) -> bool {
        self.asn.is_some()
    }

    /// Human-readable names of the loaded databases (for logs and `/readyz`).
    pub fn describe(&self) -> String {
        match &self.asn_name {
            Some(asn) => format!("{} + {}", self.city_name, asn),
            None => self.city_name.clone(),
        }
    }

    /// Look an address up: overrides first, then both databases. Never fails: an address
    /// that is not in a database (or a lookup error on a damaged tree) is reported as not found.
    pub fn locate(&self, ip: IpAddr) -> Located {
        // An answer must not cover an override it is not in: narrow the prefix to one bit past
        // the common prefix with each override that missed.
        // Overrides are written for IPv4; an IPv4-mapped IPv6 client (::ffff:a.b.c.d) is matched
        // in its IPv4 form and prefixes are translated back (+96) for the IPv6 scope.
        let (probe, shift) = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), 96),
                None => (ip, 0),
            },
            IpAddr::V4(_) => (ip, 0),
        };
        let mut narrowest = 0;
        for (net, loc, asn) in &self.overrides {
            if net.contains(&probe) {
                let prefix = narrowest.max(net.prefix_len() + shift);
                let (asn, asn_prefix) = match asn {
                    Some(asn) => (Some(*asn), prefix),
                    None => self.lookup_asn(ip),
                };
                return Located {
                    loc: Some(*loc),
                    geo_prefix: prefix,
                    asn,
                    asn_prefix: asn_prefix.max(narrowest),
                };
            }
            if let Some(common) = common_prefix(probe, net.network()) {
                narrowest = narrowest.max(common + 1 + shift);
            }
        }
        let (loc, geo_prefix) = match self.city.lookup(ip) {
            Ok(found) => (
                found
                    .offset()
                    .and_then(|o| self.loc_by_offset.get(&o).copied()),
                found.network().map_or(full_prefix(ip), |n| n.prefix()),
            ),
            Err(_) => (None, full_prefix(ip)),
        };
        let (asn, asn_prefix) = self.lookup_asn(ip);
        Located {
            loc,
            geo_prefix: geo_prefix.max(narrowest),
            asn,
            asn_prefix: asn_prefix.max(narrowest),
        }
    }

    fn lookup_asn(&self, ip: IpAddr) -> (Option<u32>, u8) {
        let Some(reader) = &self.asn else {
            return (None, 0);
        };
        match reader.lookup(ip) {
            Ok(found) => (
                found
                    .offset()
                    .and_then(|o| self.asn_by_offset.get(&o).copied()),
                found.network().map_or(full_prefix(ip), |n| n.prefix()),
            ),
            Err(_) => (None, full_prefix(ip)),
        }
    }

    /// The ASN organisation name, for explanations (decodes a record: not for the hot path).
    pub fn asn_organisation(&self, ip: IpAddr) -> Option<String> {
        let reader = self.asn.as_ref()?;
        let found = reader.lookup(ip).ok()?;
        let asn: geoip2::Asn = found.decode().ok()??;
        asn.autonomous_system_organization.map(str::to_owned)
    }
}

/// Zero every bit after the first `prefix` bits.
pub fn truncate(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

/// Length of the common leading bits of two addresses of the same family.
pub fn common_prefix(a: IpAddr, b: IpAddr) -> Option<u8> {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => Some((u32::from(a) ^ u32::from(b)).leading_zeros() as u8),
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            Some((u128::from(a) ^ u128::from(b)).leading_zeros() as u8)
        }
        _ => None,
    }
}

fn full_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// Group locations by what policies can match on.
fn classify(locations: &[Location]) -> (Vec<Location>, Vec<ClassId>) {
    let mut classes: Vec<Location> = Vec::new();
    type Key = (Option<Continent>, Option<[u8; 2]>, Option<Box<str>>);
    let mut index: HashMap<Key, ClassId> = HashMap::new();
    let class_of = locations
        .iter()
        .map(|loc| {
            let key = (loc.continent, loc.country, loc.subdivision.clone());
            *index.entry(key).or_insert_with(|| {
                classes.push(Location {
                    continent: loc.continent,
                    country: loc.country,
                    subdivision: loc.subdivision.clone(),
                    city: None,
                    coordinates: None,
                });
                ClassId(classes.len() as u32 - 1)
            })
        })
        .collect();
    (classes, class_of)
}

/// Index of a location class in [`GeoDb::classes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClassId(u32);

impl ClassId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Walk every network once and decode each distinct record (by data offset) once.
fn index_by_offset<T>(
    reader: &Reader<Vec<u8>>,
    name: &str,
    decode: impl Fn(
        &maxminddb::LookupResult<'_, Vec<u8>>,
    ) -> Result<Option<T>, maxminddb::MaxMindDbError>,
) -> Result<Vec<(usize, T)>, GeoError> {
    let invalid = |e: maxminddb::MaxMindDbError| GeoError::Invalid {
        db: name.to_owned(),
        reason: e.to_string(),
    };
    let mut seen = std::collections::HashSet::new();
    let mut records = Vec::new();
    for network in reader.networks(WithinOptions::default()).map_err(invalid)? {
        let network = network.map_err(invalid)?;
        let Some(offset) = network.offset() else {
            continue;
        };
        if !seen.insert(offset) {
            continue;
        }
        if let Some(record) = decode(&network).map_err(invalid)? {
            records.push((offset, record));
        }
    }
    Ok(records)
}

fn index_locations(
    reader: &Reader<Vec<u8>>,
    name: &str,
) -> Result<(Vec<Location>, HashMap<usize, LocId>), GeoError> {
    // A Country database decodes as a City with the city fields empty.
    let records = index_by_offset(reader, name, |n| {
        n.decode::<geoip2::City>()
            .map(|r| Some(Location::from_record(&r.unwrap_or_default())))
    })?;
    let mut locations = Vec::with_capacity(records.len());
    let mut by_offset = HashMap::with_capacity(records.len());
    for (offset, location) in records {
        by_offset.insert(offset, LocId::new(locations.len()));
        locations.push(location);
    }
    Ok((locations, by_offset))
}

fn index_asns(reader: &Reader<Vec<u8>>, name: &str) -> Result<HashMap<usize, u32>, GeoError> {
    let records = index_by_offset(reader, name, |n| {
        n.decode::<geoip2::Asn>()
            .map(|r| r.and_then(|r| r.autonomous_system_number))
    })?;
    Ok(records.into_iter().collect())
}

#[cfg(test)]
mod tests;
