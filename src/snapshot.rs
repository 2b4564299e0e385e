//! The immutable state every query reads, and its atomic publication.
//!
//! One [`Snapshot`] holds everything a query needs (zones, GeoIP, compiled steered names and
//! the health and measurements they were compiled with), so a change becomes visible in one
//! pointer swap and no query ever mixes two generations. Readers call [`Published::load`]:
//! lock-free, never blocked by a writer. Steered names are `Arc`s, so a rebuild after one
//! policy edit reuses every other name's compiled table. The resolver map (which resolvers
//! are located as their users) is one more `Arc`, swapped with the rest. Depends on `zone`,
//! `decision`, `policy`, `geo`, `health`, `perf`, `rum`; pure except for the swap.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{LowerName, RData, Record};

use crate::decision::{self, Table};
use crate::dns::counters::{AnswerCounters, TargetCounter};
use crate::geo::GeoDb;
use crate::health::HealthView;
use crate::obs::Obs;
use crate::perf::PerfView;
use crate::policy::{Inputs, Policy, TargetAnswer};
use crate::rum::init_zone::InitZone;
use crate::rum::resolver_map::ResolverMap;
use crate::wire::{NameMap, RenderedRrs, name_key};
use crate::zone::Zones;

/// Answer records for one target, as the full path answers them ([`Steered::records`]).
#[derive(Debug, Default)]
pub struct TargetRecords {
    pub cname: Option<Record>,
    pub a: Vec<Record>,
    pub aaaa: Vec<Record>,
}

/// A target's answer pre-rendered for the UDP fast path.
#[derive(Debug)]
pub enum TargetWire {
    Addresses {
        a: RenderedRrs,
        aaaa: RenderedRrs,
    },
    /// The alias record and where it points.
    Cname {
        record: RenderedRrs,
        target: LowerName,
    },
}

/// A steered name: its policy, the compiled table and each target's records.
#[derive(Debug)]
pub struct Steered {
    pub policy: Policy,
    pub table: Table,
    /// Indexed by `TargetId`; `None` if a record would not encode (the full path answers).
    pub wire: Vec<Option<TargetWire>>,
    /// When the table will change by itself (a hold-down expiring).
    pub next_change: Option<SystemTime>,
    /// The clock the table was compiled at. Explanations re-run the chain at this time, so
    /// they describe the decision being served, not one the next recompile would make.
    pub compiled_at: SystemTime,
    /// Answer counters, indexed by `TargetId`; set once when first published
    /// ([`crate::dns::counters`]).
    pub counters: OnceLock<Box<[Arc<TargetCounter>]>>,
}

impl Steered {
    pub fn compile(policy: Policy, geo: &GeoDb, inputs: &Inputs) -> Self {
        let (table, next_change) = decision::compile(&policy, geo, inputs);
        let wire = (0..policy.targets.len())
            .map(|t| TargetWire::render(&target_records(&policy, t)))
            .collect();
        Steered {
            policy,
            table,
            wire,
            next_change,
            compiled_at: inputs.now,
            counters: OnceLock::new(),
        }
    }

    /// Target `target`'s answer records (an index into the policy's targets), rendered when
    /// asked: the fast path answers from [`Steered::wire`], so keeping hickory records of
    /// every target only for the full path cost about 3 KB a name (3 MB for 1,000 names).
    pub fn records(&self, target: usize) -> TargetRecords {
        target_records(&self.policy, target)
    }
}

impl TargetWire {
    fn render(records: &TargetRecords) -> Option<Self> {
        if let Some(cname) = &records.cname {
            let RData::CNAME(target) = &cname.data else {
                return None;
            };
            return Some(TargetWire::Cname {
                record: RenderedRrs::render([cname]).ok()?,
                target: LowerName::new(&target.0),
            });
        }
        Some(TargetWire::Addresses {
            a: RenderedRrs::render(&records.a).ok()?,
            aaaa: RenderedRrs::render(&records.aaaa).ok()?,
        })
    }
}

/// DNS behaviour settings that are part of what a query reads.
#[derive(Debug, Clone, Copy)]
pub struct DnsSettings {
    /// Largest UDP response we send, whatever the client advertises (RFC 9715 suggests 1232).
    pub max_udp_payload: u16,
    /// Answer TXT queries for `_explain.<steered name>` with the decision for the asker.
    pub explain_names: bool,
}

#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one with every publication; tests wait for it instead of sleeping.
    pub generation: u64,
    pub zones: Arc<Zones>,
    pub geo: Arc<GeoDb>,
    pub steered: HashMap<LowerName, Arc<Steered>>,
    /// The same steered names keyed by lower-cased wire name, for the UDP fast path, with
    /// whether the fast path may answer their CNAME targets: only when no alias points into
    /// our own zones, where the full path would follow it.
    pub steered_by_key: NameMap<(Arc<Steered>, bool)>,
    /// Ancestors of steered names inside their zone: they exist (NODATA, not NXDOMAIN).
    pub steered_parents: HashSet<LowerName>,
    /// The same ancestors keyed by lower-cased wire name, for the fast path's NODATA.
    pub steered_parents_by_key: NameMap<()>,
    pub health: Arc<HealthView>,
    pub perf: Arc<PerfView>,
    pub settings: DnsSettings,
    /// Resolvers located as their users for queries without ECS (empty: none).
    pub resolver_map: Arc<ResolverMap>,
    /// The RUM zone's nonce names, when `[rum] zone` is set.
    pub rum: Option<Arc<InitZone>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {reason}")]
pub struct BuildError {
    pub source_name: String,
    pub reason: String,
}

/// Whether a policy fits the zones and GeoIP data; the error names the policy's file.
pub fn check_policy(policy: &Policy, zones: &Zones, geo: &GeoDb) -> Result<(), BuildError> {
    let error = |reason: String| BuildError {
        source_name: policy.source.clone(),
        reason,
    };
    if !geo.has_asn()
        && let Some(rule) = policy
            .geo()
            .and_then(|g| g.rules.iter().find(|r| !r.matches.asn.is_empty()))
    {
        return Err(error(format!(
            "rules[{}].match.asn: no ASN database is configured ([geoip] asn)",
            rule.index
        )));
    }
    match zones.find(&LowerName::new(&policy.name)) {
        None => Err(error(format!(
            "name: {} is not inside any configured zone",
            policy.name
        ))),
        Some(zone) => zone
            .check_steerable(&policy.name)
            .map_err(|reason| error(format!("name: {reason}"))),
    }
}

impl Snapshot {
    /// Put compiled steered names together with zones and GeoIP into a snapshot.
    pub fn assemble(
        generation: u64,
        zones: Arc<Zones>,
        geo: Arc<GeoDb>,
        steered: impl IntoIterator<Item = Arc<Steered>>,
        health: Arc<HealthView>,
        perf: Arc<PerfView>,
        settings: DnsSettings,
    ) -> Result<Self, Vec<BuildError>> {
        let mut errors = Vec::new();
        let mut by_name = HashMap::new();
        let mut by_key = NameMap::default();
        let mut parents = HashSet::new();
        for s in steered {
            if let Err(e) = check_policy(&s.policy, &zones, &geo) {
                errors.push(e);
                continue;
            }
            let name = LowerName::new(&s.policy.name);
            if let Some(zone) = zones.find(&name) {
                let mut parent = name.base_name();
                while zone.contains(&parent) && parent != *zone.lower_origin() {
                    parents.insert(parent.clone());
                    parent = parent.base_name();
                }
            }
            let aliases_leave_our_zones = s.wire.iter().flatten().all(|w| match w {
                TargetWire::Cname { target, .. } => zones.find(target).is_none(),
                TargetWire::Addresses { .. } => true,
            });
            by_key.insert(
                name_key(&s.policy.name).into_boxed_slice(),
                (s.clone(), aliases_leave_our_zones),
            );
            by_name.insert(name, s);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let parents_by_key = parents
            .iter()
            .map(|p| (name_key(&p.into()).into_boxed_slice(), ()))
            .collect();
        Ok(Snapshot {
            generation,
            zones,
            geo,
            steered: by_name,
            steered_by_key: by_key,
            steered_parents: parents,
            steered_parents_by_key: parents_by_key,
            health,
            perf,
            settings,
            resolver_map: Arc::default(),
            rum: None,
        })
    }

    /// The inputs steered names are compiled with (for explanations).
    pub fn inputs(&self, now: SystemTime) -> Inputs<'_> {
        Inputs {
            health: &self.health,
            perf: &self.perf,
            now,
            choices: None,
        }
    }
}

/// The records of `policy`'s target `target` (none for an index past its targets).
fn target_records(policy: &Policy, target: usize) -> TargetRecords {
    let owner = &policy.name;
    let ttl = policy.ttl_s;
    match policy.targets.get(target).map(|t| &t.answer) {
        Some(TargetAnswer::Cname(cname)) => TargetRecords {
            cname: Some(Record::from_rdata(
                owner.clone(),
                ttl,
                RData::CNAME(CNAME(cname.clone())),
            )),
            ..TargetRecords::default()
        },
        Some(TargetAnswer::Addresses { a, aaaa }) => TargetRecords {
            cname: None,
            a: a.iter()
                .map(|ip| Record::from_rdata(owner.clone(), ttl, RData::A(A(*ip))))
                .collect(),
            aaaa: aaaa
                .iter()
                .map(|ip| Record::from_rdata(owner.clone(), ttl, RData::AAAA(AAAA(*ip))))
                .collect(),
        },
        None => TargetRecords::default(),
    }
}

/// The current snapshot, swapped atomically by the control plane.
pub struct Published {
    current: ArcSwap<Snapshot>,
    /// Set when the last reload failed and an older generation keeps serving.
    stale: AtomicBool,
    /// Set while the policy store cannot be listed (Redis away, or it lost its data), cleared
    /// by the next listing that succeeds: a publish in between does not mean the store is
    /// back, and a store that is back need not publish anything.
    store_stale: AtomicBool,
    /// Wakes waiters (tests, the API) when a new generation is published.
    changed: tokio::sync::watch::Sender<u64>,
    /// Answers by name and target, kept across publications.
    answers: AnswerCounters,
    /// When the serving snapshot was published (unix ms), for its age in `/metrics`.
    published_at_ms: AtomicU64,
    /// Recompiles of decision tables driven by inputs (health, measurements, timed
    /// changes), and the time they took in all (µs).
    recompiles: AtomicU64,
    recompile_us: AtomicU64,
    /// Health transitions, probe locations, store calls, for `/metrics`.
    obs: Arc<Obs>,
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Published {
    pub fn new(first: Snapshot) -> Self {
        Self::with_obs(first, Arc::default())
    }

    /// [`Published::new`], counting into `obs` (whose store registry the stores report to).
    pub fn with_obs(first: Snapshot, obs: Arc<Obs>) -> Self {
        let (changed, _) = tokio::sync::watch::channel(first.generation);
        let answers = AnswerCounters::default();
        answers.attach(&first);
        Self {
            current: ArcSwap::from_pointee(first),
            stale: AtomicBool::new(false),
            store_stale: AtomicBool::new(false),
            changed,
            answers,
            published_at_ms: AtomicU64::new(unix_ms_now()),
            recompiles: AtomicU64::new(0),
            recompile_us: AtomicU64::new(0),
            obs,
        }
    }

    /// The metrics beyond the data plane's (see [`crate::obs`]).
    pub fn obs(&self) -> &Arc<Obs> {
        &self.obs
    }

    /// How long the serving snapshot has served.
    pub fn age(&self) -> std::time::Duration {
        let at = self.published_at_ms.load(Ordering::Relaxed);
        std::time::Duration::from_millis(unix_ms_now().saturating_sub(at))
    }

    /// Count one recompile of decision tables that took `took` (compile and publish).
    pub fn note_recompile(&self, took: std::time::Duration) {
        self.recompiles.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.recompile_us.fetch_add(us, Ordering::Relaxed);
    }

    /// (recompiles, their total time in seconds).
    pub fn recompile_totals(&self) -> (u64, f64) {
        (
            self.recompiles.load(Ordering::Relaxed),
            self.recompile_us.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }

    /// Answers by steered name, target and type, for `/metrics`.
    pub fn answer_counters(&self) -> &AnswerCounters {
        &self.answers
    }

    /// The current snapshot. Lock-free; cheap enough for every query.
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn publish(&self, next: Snapshot) {
        let generation = next.generation;
        self.answers.attach(&next);
        let new = Arc::new(next);
        let old = self.current.swap(new.clone());
        if !Arc::ptr_eq(&old.health, &new.health) {
            self.obs.health.note_published(&old.health, &new.health);
        }
        self.published_at_ms.store(unix_ms_now(), Ordering::Relaxed);
        self.stale.store(false, Ordering::Release);
        self.changed.send_replace(generation);
    }

    pub fn mark_stale(&self) {
        self.stale.store(true, Ordering::Release);
    }

    /// The policy store could (`false`) or could not (`true`) be listed just now.
    pub fn set_store_stale(&self, stale: bool) {
        self.store_stale.store(stale, Ordering::Release);
    }

    /// Whether what serves may be out of date: a reload failed, or the store is unlistable.
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Acquire) || self.store_stale.load(Ordering::Acquire)
    }

    /// Whether the policy store could not be listed the last time it was asked.
    pub fn is_store_stale(&self) -> bool {
        self.store_stale.load(Ordering::Acquire)
    }

    /// Wait until the serving generation is at least `generation`.
    pub async fn wait_for(&self, generation: u64) {
        let mut rx = self.changed.subscribe();
        let _ = rx.wait_for(|g| *g >= generation).await;
    }
}
