//! Where a client address is: continent, country, subdivision and ASN.
//!
//! Owns the MaxMind readers (the database files mapped into memory, [`source`]) and, built
//! once at load by one walk of each database, the address space as runs of one location class
//! ([`scope`]) and as runs of one ASN, overrides painted in. Nothing is kept per record: the
//! walk decodes each distinct record once (only the fields policies read) and keeps the runs.
//! Pure after load: `locate` (for the queries no table's runs describe, and for explanations)
//! checks the overrides ([`overrides`], one binary search), walks each tree for the record's
//! network (the ECS scope) and reads the class and the ASN from the runs (one binary search
//! each); it decodes a record only in the IPv6 aliases of the IPv4 tree (6to4, Teredo), which
//! the runs do not describe, and never allocates otherwise. Explanations decode city and
//! coordinates on demand. From the runs, ECS scopes wider than one record's network are
//! computed, and [`GeoDb::outcome_index`] merges them with a table's rules: most steered
//! queries decide from such runs and never call `locate`. May depend on nothing else in the
//! crate.

pub mod iso;
mod location;
mod overrides;
mod record;
mod scope;
mod source;

pub use location::{Continent, LocId, Location};
pub use scope::ScopeIndex;
pub use source::{DbBytes, DbSource};

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use overrides::OverrideIndex;
use record::{AsnRecord, CityRecord};
use scope::{Label, NOT_LOCATED, OPAQUE, Runs, RunsBuilder, V6Runs};

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

/// The GeoIP databases (mapped) plus the location classes derived from the City database.
pub struct GeoDb {
    city: Reader<DbBytes>,
    asn: Option<Reader<DbBytes>>,
    city_name: String,
    asn_name: Option<String>,
    /// Distinct data records of the City database (for metrics).
    records: usize,
    /// Distinct (continent, country, subdivision): all a policy can tell apart. `LocId` and
    /// `ClassId` index this; decision tables are indexed by class, which keeps them small.
    classes: Vec<Location>,
    /// Class → its id, for the records `locate` decodes (addresses in the IPv6 aliases of
    /// the IPv4 tree, which the runs do not describe). A few thousand entries.
    class_ids: HashMap<Location, LocId>,
    /// Per class: a dense number for its (continent, country), for compiles that need no more.
    country_of_class: Vec<u32>,
    overrides: OverrideIndex,
    /// The address space as runs of one class (overrides painted in), per family; classes are
    /// few, so labels are `u16` (see [`scope::Label`]).
    runs_v4: Runs<u32, u16>,
    runs_v6: V6Runs<u16>,
    /// The database answers `::ffff:a.b.c.d` from its IPv4 tree.
    mapped_v4: bool,
    /// One index per distinct partition of the classes, shared by the tables that induce it.
    /// Control plane only: queries read the `Arc` a table holds, never this map.
    scope_cache: Mutex<HashMap<Box<[u32]>, Weak<ScopeIndex>>>,
    /// The address space as runs of one ASN (overrides with an ASN painted in), per family;
    /// one run of "none" without an ASN database.
    asn_runs_v4: Runs<u32>,
    asn_runs_v6: V6Runs,
    /// The ASN database answers `::ffff:a.b.c.d` from its IPv4 tree (or there is none).
    asn_mapped_v4: bool,
    /// [`GeoDb::outcome_index`]'s indexes, shared like `scope_cache`'s.
    outcome_cache: Mutex<HashMap<Box<[u32]>, Weak<ScopeIndex>>>,
}

/// Data-section offsets are already well spread: a multiply-shift hash is enough, and much
/// cheaper per query than SipHash.
#[derive(Default)]
struct OffsetHasher(u64);

impl Hasher for OffsetHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn write_u32(&mut self, x: u32) {
        self.0 = u64::from(x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type OffsetMap<V> = HashMap<u32, V, BuildHasherDefault<OffsetHasher>>;

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb")
            .field("city", &self.city_name)
            .field("asn", &self.asn_name)
            .field("records", &self.records)
            .field("classes", &self.classes.len())
            .field("overrides", &self.overrides.len())
            .field("runs", &(self.runs_v4.len(), self.runs_v6.len()))
            .finish()
    }
}

impl GeoDb {
    /// Load the City (or Country) database and, optionally, the ASN database, and index every
    /// distinct record once so queries never decode records.
    pub fn load(
        city: &DbSource,
        asn: Option<&DbSource>,
        overrides: &[Override],
    ) -> Result<Self, GeoError> {
        let city_name = city.describe();
        let (city, city_map) = city.load()?;
        let db_type = city.metadata().database_type.clone();
        if !(db_type.contains("City") || db_type.contains("Country")) {
            return Err(GeoError::WrongType {
                db: city_name,
                found: db_type,
                expected: "a GeoIP2/GeoLite2 City or Country database",
            });
        }
        let CityIndex {
            records,
            mut classes,
            runs_v4,
            runs_v6,
        } = index_city(&city, &city_name)?;
        let mapped_v4 = mapped_is_v4(&city, &runs_v6);
        if let Some(map) = city_map {
            map.release_pages();
        }
        let overrides = OverrideIndex::new(
            overrides
                .iter()
                .map(|o| (o.net, classes.add(&o.location), o.asn)),
        );
        let class_label = |entry: u32| overrides.label(entry);
        let runs_v4 = runs_v4.overlay(&overrides.v4, class_label);
        let runs_v6 = V6Runs::split(&runs_v6.overlay(&overrides.v6, class_label));

        let (asn, asn_name, asn_index) = match asn {
            None => (
                None,
                None,
                AsnIndex {
                    runs_v4: Runs::uniform(NOT_LOCATED),
                    runs_v6: Runs::uniform(NOT_LOCATED),
                },
            ),
            Some(source) => {
                let name = source.describe();
                let (reader, map) = source.load()?;
                let db_type = reader.metadata().database_type.clone();
                if !db_type.contains("ASN") {
                    return Err(GeoError::WrongType {
                        db: name,
                        found: db_type,
                        expected: "a GeoLite2/GeoIP2 ASN database",
                    });
                }
                let index = index_asns(&reader, &name)?;
                if let Some(map) = map {
                    map.release_pages();
                }
                (Some(reader), Some(name), index)
            }
        };
        // Painted like the classes: the override that holds an address decides, and one that
        // states no ASN leaves the database's.
        let asn_of = |base: u32, entry: u32| {
            if entry == OPAQUE {
                return base;
            }
            overrides.asn(entry).map_or(base, |a| a.min(NOT_LOCATED))
        };
        let asn_runs_v4 = scope::combine(&asn_index.runs_v4, &overrides.v4, asn_of);
        let asn_runs_v6: Runs<u128> = scope::combine(&asn_index.runs_v6, &overrides.v6, asn_of);
        let asn_mapped_v4 = match &asn {
            Some(reader) => mapped_is_v4(reader, &asn_runs_v6),
            None => true,
        };
        let asn_runs_v6 = V6Runs::split(&asn_runs_v6);

        let Classifier {
            classes,
            index: class_ids,
        } = classes;
        let country_of_class = number_countries(&classes);
        Ok(Self {
            classes,
            class_ids,
            country_of_class,
            runs_v4,
            runs_v6,
            mapped_v4,
            scope_cache: Mutex::new(HashMap::new()),
            city,
            asn,
            city_name,
            asn_name,
            records,
            asn_runs_v4,
            asn_runs_v6,
            asn_mapped_v4,
            outcome_cache: Mutex::new(HashMap::new()),
            overrides,
        })
    }

    /// Distinct data records of the City database.
    pub fn records(&self) -> usize {
        self.records
    }

    /// The class of a location found by [`GeoDb::locate`].
    pub fn location(&self, id: LocId) -> &Location {
        &self.classes[id.index()]
    }

    /// Every distinct location class; `ClassId` indexes this slice.
    pub fn classes(&self) -> &[Location] {
        &self.classes
    }

    /// Per class, a number shared exactly by the classes of the same (continent, country),
    /// below [`GeoDb::classes`]`.len()`.
    pub fn country_of_class(&self) -> &[u32] {
        &self.country_of_class
    }

    pub fn class_of(&self, id: LocId) -> ClassId {
        ClassId(id.index() as u32)
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
        let hit = self.overrides.find(probe);
        let narrowest = match hit.narrowest {
            0 => 0,
            n => n + shift,
        };
        if let Some(entry) = hit.entry {
            let prefix = narrowest.max(entry.prefix + shift);
            let (asn, asn_prefix) = match entry.asn {
                Some(asn) => (Some(asn), prefix),
                None => self.lookup_asn(ip),
            };
            return Located {
                loc: Some(entry.loc),
                geo_prefix: prefix,
                asn,
                asn_prefix: asn_prefix.max(narrowest),
            };
        }
        // The tree walk gives the record's network (the scope) and whether there is a record;
        // the class comes from the runs, which hold the same answer without a per-record map.
        let (loc, geo_prefix) = match self.city.lookup(ip) {
            Ok(found) => (
                found.offset().and_then(|_| {
                    match label_at(ip, self.mapped_v4, &self.runs_v4, &self.runs_v6) {
                        NOT_LOCATED => None,
                        OPAQUE => self.decode_class(&found),
                        class => Some(LocId::new(class as usize)),
                    }
                }),
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
                found.offset().and_then(|_| {
                    match label_at(ip, self.asn_mapped_v4, &self.asn_runs_v4, &self.asn_runs_v6) {
                        NOT_LOCATED => None,
                        OPAQUE => found
                            .decode::<AsnRecord>()
                            .ok()
                            .flatten()
                            .and_then(|r| r.autonomous_system_number),
                        asn => Some(asn),
                    }
                }),
                found.network().map_or(full_prefix(ip), |n| n.prefix()),
            ),
            Err(_) => (None, full_prefix(ip)),
        }
    }

    /// The class of a record the runs do not describe, decoded (no map per record is kept).
    /// Only addresses in the IPv6 aliases of the IPv4 tree (6to4, Teredo, IPv4-compatible)
    /// come here.
    fn decode_class(&self, found: &maxminddb::LookupResult<'_, DbBytes>) -> Option<LocId> {
        let record = found.decode::<CityRecord>().ok()??;
        self.class_ids.get(&record.location()).copied()
    }

    /// The shared [`ScopeIndex`] for a partition of the location classes: `part[i]` names the
    /// part of class `i`, and the extra last entry that of clients not in the database (as a
    /// decision table's `by_class`). Any numbering works; partitions equal up to renaming share
    /// one index, whose parts are numbered 0, 1, ... in the order they first appear in `part`
    /// (see [`ScopeIndex::part_and_widest`]). `None` if `part` does not have one entry per
    /// class plus one.
    /// Control plane only: builds the index (a pass over the runs) the first time.
    pub fn scope_index(&self, part: &[u32]) -> Option<Arc<ScopeIndex>> {
        if part.len() != self.classes.len() + 1 {
            return None;
        }
        // Parts are usually small dense numbers (outcome ids): rename through a vector.
        let mut renamed: Vec<u32> = Vec::new();
        let mut next = 0;
        let key: Box<[u32]> = part
            .iter()
            .map(|p| {
                let p = *p as usize;
                if p >= renamed.len() {
                    renamed.resize(p + 1, u32::MAX);
                }
                if renamed[p] == u32::MAX {
                    renamed[p] = next;
                    next += 1;
                }
                renamed[p]
            })
            .collect();
        let mut cache = self
            .scope_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(index) = cache.get(&key).and_then(Weak::upgrade) {
            return Some(index);
        }
        cache.retain(|_, index| index.strong_count() > 0);
        let (classes, not_located) = key.split_at(key.len() - 1);
        let index = Arc::new(ScopeIndex::new(
            &self.runs_v4,
            &self.runs_v6.expand(),
            self.mapped_v4,
            classes,
            not_located[0],
        ));
        cache.insert(key, Arc::downgrade(&index));
        Some(index)
    }

    /// An index whose parts are a table's outcomes, for tables with ASN or CIDR rules: with it
    /// they decide without a database lookup too. `outcome(class, row)` is the table's outcome
    /// for a client of class `class` (`classes().len()`: not in the database) that falls in
    /// `row`; `asns` are the ASNs with rows (sorted), `cidrs` the CIDR rules in the order the
    /// table checks them (the first that holds wins, over any ASN row). A table that reads no
    /// location (`uses_location` false) or no ASN gets runs that ignore it, so nothing it
    /// does not read narrows its scopes. Returns the index and,
    /// per part, the `outcome` value it stands for. Indexes are shared like
    /// [`GeoDb::scope_index`]'s. Control plane only: a pass over the class and ASN runs.
    pub fn outcome_index(
        &self,
        uses_location: bool,
        asns: &[u32],
        cidrs: &[IpNet],
        outcome: impl Fn(usize, RuleRow) -> u32,
    ) -> (Arc<ScopeIndex>, Vec<u32>) {
        let not_located = self.classes.len();
        let rows = std::iter::once(RuleRow::Plain)
            .chain((0..asns.len()).map(RuleRow::Asn))
            .chain((0..cidrs.len()).map(RuleRow::Cidr));
        // The key: every (row, class) outcome renamed by first appearance, then what the rows
        // are. Equal keys give equal indexes.
        let mut parts: Vec<u32> = Vec::new();
        let mut key: Vec<u32> = Vec::new();
        let mut part_of = HashMap::new();
        let mut table: Vec<u32> = Vec::new();
        for row in rows {
            for class in 0..=not_located {
                let o = outcome(class, row);
                let part = *part_of.entry(o).or_insert_with(|| {
                    parts.push(o);
                    parts.len() as u32 - 1
                });
                key.push(part);
                table.push(part);
            }
        }
        key.push(u32::from(uses_location));
        key.extend_from_slice(asns);
        for net in cidrs {
            key.push(u32::from(net.prefix_len()));
            match net {
                IpNet::V4(n) => key.push(u32::from(n.network())),
                IpNet::V6(n) => {
                    let bits = u128::from(n.network());
                    key.extend((0..4).map(|i| (bits >> (32 * i)) as u32));
                }
            }
        }
        let key: Box<[u32]> = key.into();
        let mut cache = self
            .outcome_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(index) = cache.get(&key).and_then(Weak::upgrade) {
            return (index, parts);
        }
        cache.retain(|_, index| index.strong_count() > 0);

        let width = not_located + 1;
        // `table[row * width + class]`, rows numbered Plain, ASN rows, CIDR rows.
        let part = |class: u32, row: u32| -> u32 {
            if class == OPAQUE || row == OPAQUE {
                return OPAQUE;
            }
            let class = if class == NOT_LOCATED {
                not_located
            } else {
                class as usize
            };
            let row = if row == NOT_LOCATED {
                0
            } else {
                row as usize + 1
            };
            table.get(row * width + class).copied().unwrap_or(OPAQUE)
        };
        // An ASN's row number, or NOT_LOCATED for "no row".
        let asn_row = |asn: u32| match asn {
            OPAQUE => OPAQUE,
            NOT_LOCATED => NOT_LOCATED,
            asn => asns.binary_search(&asn).map_or(NOT_LOCATED, |i| i as u32),
        };
        let first_cidr_row = asns.len() as u32;
        let mut layer_v4 = Vec::new();
        let mut layer_v6 = Vec::new();
        for (i, net) in cidrs.iter().enumerate() {
            let row = first_cidr_row + i as u32;
            match net {
                IpNet::V4(n) => {
                    layer_v4.push((u32::from(n.network()), u32::from(n.broadcast()), row));
                }
                IpNet::V6(n) => {
                    layer_v6.push((u128::from(n.network()), u128::from(n.broadcast()), row));
                }
            }
        }
        let rows_of = |asn_row: u32, cidr: u32| if cidr == OPAQUE { asn_row } else { cidr };
        let (asn_v4, asn_v6) = if asns.is_empty() {
            (
                Runs::<_>::uniform(NOT_LOCATED),
                Runs::<_>::uniform(NOT_LOCATED),
            )
        } else {
            (
                self.asn_runs_v4.relabel(asn_row),
                self.asn_runs_v6.expand().relabel(asn_row),
            )
        };
        let rows_v4: Runs<u32> = scope::combine(&asn_v4, &Runs::nested(&layer_v4), rows_of);
        let rows_v6: Runs<u128> = scope::combine(&asn_v6, &Runs::nested(&layer_v6), rows_of);
        // Class 0 stands for every class when the table reads no location.
        let (class_v4, class_v6) = if uses_location {
            (self.runs_v4.clone(), self.runs_v6.expand())
        } else {
            (Runs::uniform(0), Runs::uniform(0))
        };
        let index = Arc::new(ScopeIndex::from_parts(
            &scope::combine(&class_v4, &rows_v4, part),
            &scope::combine(&class_v6, &rows_v6, part),
            // CIDR rules are matched on the address as sent: an IPv4 rule does not hold for
            // `::ffff:a.b.c.d`, so such tables do not read IPv4-mapped clients as IPv4. Nor
            // does a table that reads only CIDR rules need to.
            (self.mapped_v4 || !uses_location)
                && (self.asn_mapped_v4 || asns.is_empty())
                && cidrs.is_empty(),
        ));
        cache.insert(key, Arc::downgrade(&index));
        (index, parts)
    }

    /// Widest prefix around `ip` in which every address has the same location class (or is
    /// not in the database with it), whatever the policy. `None` where the runs do not describe
    /// the space. A lookup, but a binary search: fine per query.
    pub fn class_scope(&self, ip: IpAddr) -> Option<u8> {
        match ip {
            IpAddr::V4(v4) => self.runs_v4.widest(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if self.mapped_v4 => self.runs_v4.widest(u32::from(v4)).map(|p| p + 96),
                _ => self.runs_v6.widest(u128::from(v6)),
            },
        }
    }

    /// The ASN organisation name, for explanations (decodes a record: not for the hot path).
    pub fn asn_organisation(&self, ip: IpAddr) -> Option<String> {
        let reader = self.asn.as_ref()?;
        let found = reader.lookup(ip).ok()?;
        let asn: geoip2::Asn = found.decode().ok()??;
        asn.autonomous_system_organization.map(str::to_owned)
    }

    /// Where `ip` is, as explanations show it: its class, plus the city and coordinates of
    /// its City record, decoded here (not kept per record, and not for the hot path). `None`
    /// if it is not located.
    pub fn describe_place(&self, ip: IpAddr) -> Option<String> {
        let loc = self.locate(ip).loc?;
        let mut text = self.location(loc).to_string();
        let probe = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        if self.overrides.find(probe).entry.is_some() {
            return Some(text);
        }
        let record: Option<geoip2::City> = self.city.lookup(ip).ok()?.decode().ok()?;
        if let Some(record) = record {
            if let Some(name) = record.city.names.english {
                let _ = write!(text, " city={name}");
            }
            if let (Some(lat), Some(long)) = (record.location.latitude, record.location.longitude) {
                let _ = write!(text, " coordinates={lat},{long}");
            }
        }
        Some(text)
    }
}

/// Which of a table's rows a client falls in, for [`GeoDb::outcome_index`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleRow {
    /// No ASN or CIDR rule's row: the table's per-class outcomes.
    Plain,
    /// The row of the `i`-th ASN given.
    Asn(usize),
    /// The row of the `i`-th CIDR rule given.
    Cidr(usize),
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

/// The distinct location classes, numbered in the order they are first added.
#[derive(Default)]
struct Classifier {
    classes: Vec<Location>,
    index: HashMap<Location, LocId>,
}

impl Classifier {
    fn add(&mut self, loc: &Location) -> LocId {
        if let Some(id) = self.index.get(loc) {
            return *id;
        }
        let id = LocId::new(self.classes.len());
        self.classes.push(loc.clone());
        self.index.insert(loc.clone(), id);
        id
    }
}

/// Number each class by its (continent, country), densely from 0.
fn number_countries(classes: &[Location]) -> Vec<u32> {
    let mut numbers = HashMap::new();
    classes
        .iter()
        .map(|c| {
            let next = numbers.len() as u32;
            *numbers.entry((c.continent, c.country)).or_insert(next)
        })
        .collect()
}

/// Index of a location class in [`GeoDb::classes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClassId(u32);

impl ClassId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The label of the run holding `ip`: IPv4-mapped addresses in their IPv4 form where the
/// database answers them from its IPv4 tree. Where `locate` has found no override the
/// label is the database's own answer, since overrides are what is painted over it.
/// Mapped addresses of a database that answers them on their own are [`OPAQUE`]: the
/// caller's override check used their IPv4 form, not the IPv6 networks painted there.
fn label_at<L: Label>(ip: IpAddr, mapped_v4: bool, v4: &Runs<u32, L>, v6: &V6Runs<L>) -> u32 {
    match ip {
        IpAddr::V4(a) => v4.run_at(u32::from(a)).2,
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(m) if mapped_v4 => v4.run_at(u32::from(m)).2,
            Some(_) => OPAQUE,
            None => v6.label_and_widest(u128::from(a)).0,
        },
    }
}

/// A data-section offset as the maps key it. A database over 4 GiB is refused (MaxMind's
/// are well under 1 GiB).
fn offset_key(offset: usize, name: &str) -> Result<u32, GeoError> {
    u32::try_from(offset).map_err(|_| GeoError::Invalid {
        db: name.to_owned(),
        reason: format!("data offset {offset} is past 4 GiB"),
    })
}

/// What one walk of the City database yields.
struct CityIndex {
    records: usize,
    classes: Classifier,
    runs_v4: Runs<u32, u16>,
    runs_v6: Runs<u128, u16>,
}

/// Walk every network of the City database once, empty ones included: decode each distinct
/// data record once (networks share records: 3.6 million networks of GeoLite2-City point at
/// about 540,000), only the fields policies read, and record the address space as runs of one
/// class.
fn index_city(reader: &Reader<DbBytes>, name: &str) -> Result<CityIndex, GeoError> {
    let mut loc_by_offset = OffsetMap::default();
    let mut classes = Classifier::default();
    let (runs_v4, runs_v6) = walk_runs(reader, name, |key, network| {
        if let Some(id) = loc_by_offset.get(&key) {
            return Ok(LocId::index(*id) as u32);
        }
        // A Country database decodes the same, with no subdivisions.
        let record = network.decode::<CityRecord>()?;
        let id = classes.add(&record.unwrap_or_default().location());
        loc_by_offset.insert(key, id);
        Ok(id.index() as u32)
    })?;
    // The offset map only saves decoding a record twice during the walk: queries read the
    // runs, so it is dropped here (about 9 MiB with GeoLite2-City).
    Ok(CityIndex {
        records: loc_by_offset.len(),
        classes,
        runs_v4,
        runs_v6,
    })
}

/// One view of the address space as runs, IPv4 and IPv6.
type FamilyRuns<L> = (Runs<u32, L>, Runs<u128, L>);

/// Walk every network of a database once, empty ones included, and record the address space
/// as runs of one label per family: [`NOT_LOCATED`] for networks without data, else
/// `label(offset key, network)`, which is where each importer decodes a record (once per
/// distinct offset, as it keeps them).
fn walk_runs<L: Label>(
    reader: &Reader<DbBytes>,
    name: &str,
    mut label: impl FnMut(
        u32,
        &maxminddb::LookupResult<'_, DbBytes>,
    ) -> Result<u32, maxminddb::MaxMindDbError>,
) -> Result<FamilyRuns<L>, GeoError> {
    let invalid = |e: maxminddb::MaxMindDbError| GeoError::Invalid {
        db: name.to_owned(),
        reason: e.to_string(),
    };
    let mut v4 = RunsBuilder::new();
    let mut v6 = RunsBuilder::new();
    let walk = WithinOptions::default().include_networks_without_data();
    for network in reader.networks(walk).map_err(invalid)? {
        let network = network.map_err(invalid)?;
        let label = match network.offset() {
            None => NOT_LOCATED,
            Some(offset) => label(offset_key(offset, name)?, &network).map_err(invalid)?,
        };
        let net = network.network().map_err(invalid)?;
        match net.ip() {
            IpAddr::V4(first) => v4.network(u32::from(first), net.prefix(), label),
            IpAddr::V6(first) => v6.network(u128::from(first), net.prefix(), label),
        }
    }
    Ok((v4.finish(), v6.finish()))
}

/// Whether the database answers `::ffff:0:0/96` from its IPv4 tree: the walk skipped exactly
/// that network (as it skips aliases of the IPv4 tree), and lookups there agree with IPv4.
fn mapped_is_v4<L: Label>(reader: &Reader<DbBytes>, runs_v6: &Runs<u128, L>) -> bool {
    const MAPPED: u128 = 0xffff_0000_0000;
    let skipped = runs_v6.run_at(MAPPED) == (MAPPED, Some(MAPPED + (1 << 32)), OPAQUE);
    let agrees = |v4: u32| {
        let v4 = std::net::Ipv4Addr::from(v4);
        match (
            reader.lookup(IpAddr::V4(v4)),
            reader.lookup(IpAddr::V6(v4.to_ipv6_mapped())),
        ) {
            (Ok(a), Ok(b)) => {
                let prefix =
                    |r: &maxminddb::LookupResult<'_, DbBytes>| r.network().ok().map(|n| n.prefix());
                a.offset() == b.offset() && prefix(&a).map(|p| p + 96) == prefix(&b)
            }
            _ => false,
        }
    };
    skipped
        && [0, 0x5102_458e, 0xc000_0201, u32::MAX]
            .into_iter()
            .all(agrees)
}

/// Walk every network of the ASN database once and decode each distinct record's number once.
/// What one walk of the ASN database yields.
struct AsnIndex {
    /// The address space as runs of one ASN ([`NOT_LOCATED`] where there is none).
    runs_v4: Runs<u32>,
    runs_v6: Runs<u128>,
}

/// Walk every network of the ASN database once, empty ones included: decode each distinct
/// record once, and record the address space as runs of one ASN.
fn index_asns(reader: &Reader<DbBytes>, name: &str) -> Result<AsnIndex, GeoError> {
    let mut decoded: OffsetMap<Option<u32>> = OffsetMap::default();
    let (runs_v4, runs_v6) = walk_runs(reader, name, |key, network| {
        let asn = match decoded.get(&key) {
            Some(asn) => *asn,
            None => {
                let record = network.decode::<AsnRecord>()?;
                let asn = record.and_then(|r| r.autonomous_system_number);
                decoded.insert(key, asn);
                asn
            }
        };
        // ASNs at the top of the range are reserved (RFC 6996/7300): never in the database,
        // and never mistaken for the two labels that mean "none" and "not described".
        Ok(asn.filter(|a| *a < NOT_LOCATED).unwrap_or(NOT_LOCATED))
    })?;
    Ok(AsnIndex { runs_v4, runs_v6 })
}

#[cfg(test)]
mod tests;
