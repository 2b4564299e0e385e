//! Fleet mode's probe sharing: every node appends the probe results it receives to the
//! shared stream in Redis, and feeds the results the other nodes appended into its own
//! tracker. Every node therefore sees the same results and computes the same verdict from
//! them (the tracker is pure given its inputs; there is no leader to elect or lose), and an
//! agent may report to any node.
//!
//! While Redis is away the results this node receives wait in a bounded buffer
//! ([`BUFFER`]; the oldest are dropped first and counted in `steerdns_store_dropped_writes_total`)
//! and are appended when it returns; meanwhile they count here at once, so this node's own
//! health view keeps moving.
//!
//! RUM beacons likewise: each node adds the results it accepted to the shared per-minute
//! buckets and every node ranks from the merged buckets ([`run_rum`]), the same window math
//! as in memory (minutes are wall-clock `unix_secs / 60`, buckets merge by addition).
//!
//! The resolver map's join inputs likewise ([`JoinExchange`]): a page view's resolver may ask
//! one node and its beacon reach another, so each node appends the DNS sightings and
//! sessions it received to a shared stream and joins the other nodes' with its own; every
//! node builds the same map from the same inputs. (A node that starts late catches up the
//! stream's last [`CATCH_UP`]; older sessions only it misses, until they leave the window.)
//! Depends on `store::redis`, `monitor`, `health`, `rum`, `perf`, `control`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::control::Controller;
use crate::health::tracker::Observation;
use crate::monitor::{Monitor, Tee};
use crate::perf::{Region, RumView};
use crate::rum::collector::{Collector, MergedWindows, Outbox};
use crate::rum::histogram::Histogram;
use crate::rum::nonce::Nonce;
use crate::rum::nonce_log::DnsSighting;
use crate::rum::task::{Exchange, Inputs, SessionSeen};
use crate::rum::window::Bucket;
use crate::store::redis::{JoinSide, RedisStore, RumDelta, SharedJoin, SharedProbe};

/// Results waiting for Redis, at most.
pub const BUFFER: usize = 100_000;
/// How often the buffer is flushed and the stream read.
const EVERY: Duration = Duration::from_millis(100);
/// How far back a starting node reads the stream, so it starts with the fleet's recent view.
const CATCH_UP: Duration = Duration::from_secs(300);
/// Results appended per pipeline.
const BATCH: usize = 2048;

fn catch_up_from() -> String {
    let since = SystemTime::now()
        .checked_sub(CATCH_UP)
        .unwrap_or(UNIX_EPOCH);
    format!("{}-0", unix_ms(since))
}

/// The tee the monitor copies local results into, and its drop counter.
pub fn tee() -> (Tee, mpsc::Receiver<Observation>) {
    let (tx, rx) = mpsc::channel(crate::monitor::QUEUE);
    ((tx, Arc::new(AtomicU64::new(0))), rx)
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Until cancelled: flush local results to the stream, feed other nodes' results in.
pub async fn run(
    store: Arc<RedisStore>,
    node: String,
    mut local: mpsc::Receiver<Observation>,
    tee_dropped: Arc<AtomicU64>,
    monitor: Monitor,
    cancel: CancellationToken,
) {
    let mut buffer: VecDeque<SharedProbe> = VecDeque::new();
    let mut after = catch_up_from();
    let remote = monitor.remote_sender();
    let status = store.status.clone();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut incoming = Vec::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Take what the monitor teed, bounded.
        while let Ok(o) = local.try_recv() {
            incoming.push(o);
        }
        for o in incoming.drain(..) {
            if buffer.len() >= BUFFER {
                buffer.pop_front();
                status.dropped_writes.fetch_add(1, Ordering::Relaxed);
            }
            buffer.push_back(SharedProbe {
                node: node.clone(),
                target: o.target,
                agent: o.agent,
                at_ms: unix_ms(o.at),
                ok: o.ok,
                latency_ms: o.latency_ms,
            });
        }
        let teed_away = tee_dropped.swap(0, Ordering::Relaxed);
        status
            .dropped_writes
            .fetch_add(teed_away, Ordering::Relaxed);
        while !buffer.is_empty() {
            let n = buffer.len().min(BATCH);
            let batch: Vec<SharedProbe> = buffer.range(..n).cloned().collect();
            if store.append_probes(&batch).await.is_err() {
                break;
            }
            buffer.drain(..n);
        }
        status
            .buffered_writes
            .store(buffer.len() as u64, Ordering::Relaxed);
        // Other nodes' results.
        loop {
            let Ok((probes, next)) = store.read_probes(&after, BATCH).await else {
                break;
            };
            let done = probes.len() < BATCH;
            after = next;
            for p in probes.into_iter().filter(|p| p.node != node) {
                let o = Observation {
                    target: p.target,
                    agent: p.agent,
                    at: UNIX_EPOCH + Duration::from_millis(p.at_ms),
                    ok: p.ok,
                    latency_ms: p.latency_ms,
                };
                if remote.send(o).await.is_err() {
                    return;
                }
            }
            if done {
                break;
            }
        }
    }
}

/// `<target>|<region>`: the series name in the shared RUM keys. Regions: `world`,
/// `c:<continent code>`, `cc:<country>`, `n:<country>:<asn>`.
pub fn series(target: &str, region: &Region) -> String {
    let region = match region {
        Region::World => "world".to_owned(),
        Region::Continent(c) => format!("c:{}", c.code()),
        Region::Country(c) => format!("cc:{}", String::from_utf8_lossy(c)),
        Region::Network { country, asn } => {
            format!("n:{}:{asn}", String::from_utf8_lossy(country))
        }
    };
    format!("{target}|{region}")
}

/// The (target, region) of a series name; `None` for anything else.
pub fn parse_series(series: &str) -> Option<(String, Region)> {
    let (target, region) = series.rsplit_once('|')?;
    let country = |c: &str| -> Option<[u8; 2]> {
        let b = c.as_bytes();
        (b.len() == 2 && b.iter().all(u8::is_ascii_uppercase)).then(|| [b[0], b[1]])
    };
    let region = match region.split(':').collect::<Vec<_>>().as_slice() {
        ["world"] => Region::World,
        ["c", c] => Region::Continent(crate::geo::Continent::from_code(c)?),
        ["cc", c] => Region::Country(country(c)?),
        ["n", c, asn] => Region::Network {
            country: country(c)?,
            asn: asn.parse().ok()?,
        },
        _ => return None,
    };
    Some((target.to_owned(), region))
}

/// RUM results not yet in Redis, at most: (series, minute) entries.
pub const RUM_PENDING: usize = 50_000;

/// Until cancelled, every [`crate::control::RUM_INTERVAL`]: add the beacons this node
/// accepted to the shared per-minute buckets (HINCRBY, one pipeline), read the merged
/// buckets of the window back, and hand them to the controller, so every node ranks from
/// the same numbers. While Redis is away the results wait (bounded by [`RUM_PENDING`],
/// drops counted) and the last shared view keeps serving.
pub async fn run_rum(
    store: Arc<RedisStore>,
    collector: Arc<Collector>,
    controller: Arc<Controller>,
    max_failure_rate: f64,
    cancel: CancellationToken,
) {
    collector.share();
    let window = collector.window_minutes();
    let mut pending: Outbox = Outbox::new();
    let mut tick = tokio::time::interval(crate::control::RUM_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (key, bucket) in collector.take_outbox() {
            if pending.len() >= RUM_PENDING && !pending.contains_key(&key) {
                store.status.dropped_writes.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            pending.entry(key).or_default().merge(&bucket);
        }
        let deltas: Vec<RumDelta> = pending
            .iter()
            .map(|(((target, region), minute), b)| RumDelta {
                series: series(target, region),
                minute: *minute,
                counts: b
                    .timings
                    .counts()
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(i, n)| (i, u64::from(*n)))
                    .collect(),
                attempts: b.attempts,
                failures: b.failures,
            })
            .collect();
        if store.add_rum(&deltas).await.is_ok() {
            pending.clear();
        }
        let now = crate::rum::collector::unix_secs(SystemTime::now()) / 60;
        let Ok(rows) = store.read_rum(now + 1 - window.min(now + 1), now).await else {
            continue;
        };
        let mut buckets = MergedWindows::new();
        for (series, _minute, fields) in rows {
            let Some(key) = parse_series(&series) else {
                continue;
            };
            let mut counts = vec![0u32; crate::rum::histogram::BUCKETS];
            for (i, c) in counts.iter_mut().enumerate() {
                *c = u32::try_from(fields.get(&format!("b{i}")).copied().unwrap_or(0))
                    .unwrap_or(u32::MAX);
            }
            let Some(timings) = Histogram::from_counts(&counts) else {
                continue;
            };
            let bucket = Bucket {
                timings,
                attempts: fields.get("n").copied().unwrap_or(0),
                failures: fields.get("f").copied().unwrap_or(0),
            };
            buckets.entry(key).or_default().merge(&bucket);
        }
        let controller = controller.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let rum = RumView {
                buckets,
                max_failure_rate,
                ..RumView::default()
            };
            controller.set_rum(rum, crate::control::RUM_MIN_ATTEMPTS)
        })
        .await;
    }
}

/// Join inputs not yet in Redis, at most (the oldest are dropped first, and counted).
pub const JOIN_PENDING: usize = 100_000;

/// The resolver map's [`Exchange`] through Redis.
pub struct JoinExchange {
    store: Arc<RedisStore>,
    node: String,
    state: Mutex<JoinState>,
}

struct JoinState {
    pending: VecDeque<SharedJoin>,
    /// The stream id read up to.
    after: String,
}

impl JoinExchange {
    pub fn new(store: Arc<RedisStore>, node: String) -> Self {
        Self {
            store,
            node,
            state: Mutex::new(JoinState {
                pending: VecDeque::new(),
                after: catch_up_from(),
            }),
        }
    }

    fn shared(&self, local: &Inputs) -> impl Iterator<Item = SharedJoin> {
        let dns = local.sightings.iter().map(|s| SharedJoin {
            node: self.node.clone(),
            nonce: s.nonce.to_string(),
            at_s: unix_ms(s.at) / 1000,
            side: JoinSide::Dns {
                resolver: s.resolver,
                ecs: s.ecs,
            },
        });
        let sessions = local.sessions.iter().map(|s| SharedJoin {
            node: self.node.clone(),
            nonce: s.nonce.clone(),
            at_s: unix_ms(s.at) / 1000,
            side: JoinSide::Session {
                net: s.net,
                country: s.country,
                asn: s.asn,
            },
        });
        dns.chain(sessions)
    }
}

impl Exchange for JoinExchange {
    fn exchange(&self, local: &Inputs) -> Inputs {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let JoinState { pending, after } = &mut *state;
        for j in self.shared(local) {
            if pending.len() >= JOIN_PENDING {
                pending.pop_front();
                self.store
                    .status
                    .dropped_writes
                    .fetch_add(1, Ordering::Relaxed);
            }
            pending.push_back(j);
        }
        let mut remote = Inputs::default();
        tokio::runtime::Handle::current().block_on(async {
            while !pending.is_empty() {
                let n = pending.len().min(BATCH);
                let batch: Vec<SharedJoin> = pending.range(..n).cloned().collect();
                if self.store.append_joins(&batch).await.is_err() {
                    break;
                }
                pending.drain(..n);
            }
            loop {
                let Ok((joins, next)) = self.store.read_joins(after, BATCH).await else {
                    break;
                };
                let done = joins.len() < BATCH;
                *after = next;
                for j in joins.into_iter().filter(|j| j.node != self.node) {
                    let at = UNIX_EPOCH + Duration::from_secs(j.at_s);
                    match j.side {
                        JoinSide::Dns { resolver, ecs } => {
                            if let Some(nonce) = Nonce::parse(&j.nonce) {
                                remote.sightings.push(DnsSighting {
                                    nonce,
                                    resolver,
                                    ecs,
                                    at,
                                });
                            }
                        }
                        JoinSide::Session { net, country, asn } => {
                            remote.sessions.push(SessionSeen {
                                nonce: j.nonce,
                                net,
                                country,
                                asn,
                                at,
                            });
                        }
                    }
                }
                if done {
                    break;
                }
            }
        });
        remote
    }
}
