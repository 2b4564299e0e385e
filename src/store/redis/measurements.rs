//! The measurement side of the fleet store: probe results and the resolver map's join inputs
//! in shared streams, RUM results in per-minute buckets that merge by addition, and the
//! durable overrides and halted ramps.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ipnet::IpNet;
use redis::streams::StreamId;
use tracing::warn;

use super::keys::{JOIN_STREAM_LEN, JOIN_TTL, PROBE_STREAM_LEN, PROBE_TTL, RUM_TTL_S};
use super::{RedisStore, store_error};
use crate::store::policy_dir::write_atomic;
use crate::store::timed::{Op, Store};
use crate::store::{Durable, MeasurementStore, StoreError, StoredOverride};

/// One RUM series' results in one minute, as added to the shared buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RumDelta {
    /// `<target>|<region>`.
    pub series: String,
    pub minute: u64,
    /// (bucket index, count), nonzero only.
    pub counts: Vec<(usize, u64)>,
    pub attempts: u64,
    pub failures: u64,
}

/// One input of the resolver map's join as it travels between nodes: the DNS side (a
/// resolver asked for a nonce) and the HTTP side (a beacon carried it) often reach different
/// nodes, so they meet in the shared stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedJoin {
    /// The node that received it (so it does not ingest its own input twice).
    pub node: String,
    pub nonce: String,
    pub at_s: u64,
    pub side: JoinSide,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinSide {
    /// A resolver asked for the nonce: its address and the ECS subnet it sent, if any.
    Dns {
        resolver: IpAddr,
        ecs: Option<IpNet>,
    },
    /// An accepted beacon carried it: the client's network and where that network is.
    Session {
        net: IpNet,
        country: Option<[u8; 2]>,
        asn: Option<u32>,
    },
}

fn parse_join(entry: &StreamId) -> Option<SharedJoin> {
    let get = |f: &str| entry.get::<String>(f);
    let maybe = |f: &str| get(f).filter(|v| !v.is_empty());
    let side = match get("k")?.as_str() {
        "d" => JoinSide::Dns {
            resolver: get("r")?.parse().ok()?,
            ecs: match maybe("e") {
                Some(e) => Some(e.parse().ok()?),
                None => None,
            },
        },
        "s" => JoinSide::Session {
            net: get("net")?.parse().ok()?,
            country: match maybe("cc") {
                Some(c) => Some(<[u8; 2]>::try_from(c.as_bytes()).ok()?),
                None => None,
            },
            asn: match maybe("asn") {
                Some(a) => Some(a.parse().ok()?),
                None => None,
            },
        },
        _ => return None,
    };
    Some(SharedJoin {
        node: get("node")?,
        nonce: get("n")?,
        at_s: get("t")?.parse().ok()?,
        side,
    })
}

/// A shared stream: its key, its approximate length cap, its expiry after the last write.
struct Stream {
    key: String,
    max_len: usize,
    ttl: Duration,
}

impl Stream {
    fn new(key: String, max_len: usize, ttl: Duration) -> Self {
        Self { key, max_len, ttl }
    }
}

/// One probe result as it travels between nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedProbe {
    /// The node that received it (so it does not ingest its own result twice).
    pub node: String,
    pub target: String,
    pub agent: String,
    pub at_ms: u64,
    pub ok: bool,
    pub latency_ms: f64,
}

impl RedisStore {
    /// Append probe results received by this node to the shared stream, in one pipeline.
    async fn append_probes_untimed(&self, batch: &[SharedProbe]) -> Result<(), String> {
        let entries = batch.iter().map(|p| {
            vec![
                ("node", p.node.clone()),
                ("target", p.target.clone()),
                ("agent", p.agent.clone()),
                ("at", p.at_ms.to_string()),
                ("ok", u8::from(p.ok).to_string()),
                ("ms", p.latency_ms.to_string()),
            ]
        });
        let stream = Stream::new(self.keys.probes(), PROBE_STREAM_LEN, PROBE_TTL);
        self.append(&stream, entries).await
    }

    /// Probe results after stream id `after` (`"<ms>-0"` for "since then"), at most `count`;
    /// returns them with the id to continue from. Malformed entries are skipped.
    async fn read_probes_untimed(
        &self,
        after: &str,
        count: usize,
    ) -> Result<(Vec<SharedProbe>, String), String> {
        self.read(&self.keys.probes(), after, count, |entry| {
            let get = |f: &str| entry.get::<String>(f);
            Some(SharedProbe {
                node: get("node")?,
                target: get("target")?,
                agent: get("agent")?,
                at_ms: get("at")?.parse().ok()?,
                ok: get("ok")? == "1",
                latency_ms: get("ms")?.parse().ok()?,
            })
        })
        .await
    }

    /// Append resolver-map join inputs received by this node to the shared stream.
    async fn append_joins_untimed(&self, batch: &[SharedJoin]) -> Result<(), String> {
        let opt = |v: Option<String>| v.unwrap_or_default();
        let entries = batch.iter().map(|j| {
            let mut fields = vec![
                ("node", j.node.clone()),
                ("n", j.nonce.clone()),
                ("t", j.at_s.to_string()),
            ];
            match &j.side {
                JoinSide::Dns { resolver, ecs } => fields.extend([
                    ("k", "d".to_owned()),
                    ("r", resolver.to_string()),
                    ("e", opt(ecs.map(|e| e.to_string()))),
                ]),
                JoinSide::Session { net, country, asn } => fields.extend([
                    ("k", "s".to_owned()),
                    ("net", net.to_string()),
                    (
                        "cc",
                        opt(country.map(|c| String::from_utf8_lossy(&c).into_owned())),
                    ),
                    ("asn", opt(asn.map(|a| a.to_string()))),
                ]),
            }
            fields
        });
        let stream = Stream::new(self.keys.joins(), JOIN_STREAM_LEN, JOIN_TTL);
        self.append(&stream, entries).await
    }

    /// Join inputs after stream id `after`, at most `count`, with the id to continue from.
    /// Malformed entries are skipped.
    async fn read_joins_untimed(
        &self,
        after: &str,
        count: usize,
    ) -> Result<(Vec<SharedJoin>, String), String> {
        self.read(&self.keys.joins(), after, count, parse_join)
            .await
    }

    /// Append `entries` to `stream` in one pipeline, trimmed and with its expiry renewed.
    async fn append(
        &self,
        stream: &Stream,
        entries: impl Iterator<Item = Vec<(&'static str, String)>>,
    ) -> Result<(), String> {
        let mut pipe = redis::pipe();
        let mut any = false;
        for fields in entries {
            any = true;
            let cmd = pipe
                .cmd("XADD")
                .arg(&stream.key)
                .arg("MAXLEN")
                .arg("~")
                .arg(stream.max_len)
                .arg("*");
            for (field, value) in fields {
                cmd.arg(field).arg(value);
            }
            cmd.ignore();
        }
        if !any {
            return Ok(());
        }
        pipe.cmd("PEXPIRE")
            .arg(&stream.key)
            .arg(u64::try_from(stream.ttl.as_millis()).unwrap_or(u64::MAX))
            .ignore();
        let mut conn = self.conn();
        self.call("XADD", pipe.query_async::<()>(&mut conn)).await
    }

    /// Entries of stream `key` after id `after`, at most `count`, through `parse` (`None`:
    /// skipped), and the id to continue from.
    async fn read<T>(
        &self,
        key: &str,
        after: &str,
        count: usize,
        parse: impl Fn(&StreamId) -> Option<T>,
    ) -> Result<(Vec<T>, String), String> {
        let mut conn = self.conn();
        let reply: redis::streams::StreamReadReply = self
            .call(
                "XREAD",
                redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(count)
                    .arg("STREAMS")
                    .arg(key)
                    .arg(after)
                    .query_async(&mut conn),
            )
            .await?;
        let mut last = after.to_owned();
        let mut out = Vec::new();
        for stream in reply.keys {
            for entry in stream.ids {
                out.extend(parse(&entry));
                last = entry.id;
            }
        }
        Ok((out, last))
    }

    /// Add RUM results to the shared per-minute buckets, in one pipeline.
    async fn add_rum_untimed(&self, deltas: &[RumDelta]) -> Result<(), String> {
        if deltas.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for d in deltas {
            let key = self.keys.key(&format!("rum:{}:{}", d.series, d.minute));
            let index = self.keys.key(&format!("rum:index:{}", d.minute));
            for (i, n) in &d.counts {
                pipe.cmd("HINCRBY")
                    .arg(&key)
                    .arg(format!("b{i}"))
                    .arg(*n)
                    .ignore();
            }
            pipe.cmd("HINCRBY")
                .arg(&key)
                .arg("n")
                .arg(d.attempts)
                .ignore();
            pipe.cmd("HINCRBY")
                .arg(&key)
                .arg("f")
                .arg(d.failures)
                .ignore();
            pipe.cmd("EXPIRE")
                .arg(&key)
                .arg(RUM_TTL_S)
                .arg("NX")
                .ignore();
            pipe.cmd("SADD").arg(&index).arg(&d.series).ignore();
            pipe.cmd("EXPIRE")
                .arg(&index)
                .arg(RUM_TTL_S)
                .arg("NX")
                .ignore();
        }
        let mut conn = self.conn();
        self.call("HINCRBY rum", pipe.query_async::<()>(&mut conn))
            .await
    }

    /// Every series' buckets for the minutes `from..=to`: (series, minute, fields).
    async fn read_rum_untimed(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<(String, u64, HashMap<String, u64>)>, String> {
        let minutes: Vec<u64> = (from..=to).collect();
        let mut pipe = redis::pipe();
        for m in &minutes {
            pipe.cmd("SMEMBERS")
                .arg(self.keys.key(&format!("rum:index:{m}")));
        }
        let mut conn = self.conn();
        let indexes: Vec<Vec<String>> = self
            .call("SMEMBERS rum index", pipe.query_async(&mut conn))
            .await?;
        let wanted: Vec<(String, u64)> = minutes
            .iter()
            .zip(indexes)
            .flat_map(|(m, series)| series.into_iter().map(move |s| (s, *m)))
            .collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (series, m) in &wanted {
            pipe.cmd("HGETALL")
                .arg(self.keys.key(&format!("rum:{series}:{m}")));
        }
        let fields: Vec<HashMap<String, u64>> = self
            .call("HGETALL rum", pipe.query_async(&mut conn))
            .await?;
        Ok(wanted
            .into_iter()
            .zip(fields)
            .map(|((series, m), f)| (series, m, f))
            .collect())
    }
}

/// The fleet's calls outside the store traits, each timed as one operation
/// (`steerdns_store_op_seconds{store="redis"}`).
impl RedisStore {
    /// Append probe results received by this node to the shared stream, in one pipeline.
    pub async fn append_probes(&self, batch: &[SharedProbe]) -> Result<(), String> {
        self.timed(Op::AppendProbes, self.append_probes_untimed(batch))
            .await
    }

    /// Probe results after stream id `after` (`"<ms>-0"` for "since then"), at most `count`;
    /// returns them with the id to continue from. Malformed entries are skipped.
    pub async fn read_probes(
        &self,
        after: &str,
        count: usize,
    ) -> Result<(Vec<SharedProbe>, String), String> {
        self.timed(Op::ReadProbes, self.read_probes_untimed(after, count))
            .await
    }

    /// Append resolver-map join inputs received by this node to the shared stream.
    pub async fn append_joins(&self, batch: &[SharedJoin]) -> Result<(), String> {
        self.timed(Op::AppendJoins, self.append_joins_untimed(batch))
            .await
    }

    /// Join inputs after stream id `after`, at most `count`, with the id to continue from.
    pub async fn read_joins(
        &self,
        after: &str,
        count: usize,
    ) -> Result<(Vec<SharedJoin>, String), String> {
        self.timed(Op::ReadJoins, self.read_joins_untimed(after, count))
            .await
    }

    /// Add RUM results to the shared per-minute buckets, in one pipeline.
    pub async fn add_rum(&self, deltas: &[RumDelta]) -> Result<(), String> {
        self.timed(Op::AddRum, self.add_rum_untimed(deltas)).await
    }

    /// Every series' buckets for the minutes `from..=to`: (series, minute, fields).
    pub async fn read_rum(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<(String, u64, HashMap<String, u64>)>, String> {
        self.timed(Op::ReadRum, self.read_rum_untimed(from, to))
            .await
    }

    async fn timed<T>(
        &self,
        op: Op,
        call: impl std::future::Future<Output = Result<T, String>>,
    ) -> Result<T, String> {
        let started = std::time::Instant::now();
        let result = call.await;
        self.metrics.observe(
            Store::Redis,
            op,
            started.elapsed().as_secs_f64(),
            result.is_err(),
        );
        result
    }
}

impl MeasurementStore for RedisStore {
    fn load(&self) -> Result<Durable, StoreError> {
        let mut conn = self.conn();
        let loaded: Result<(HashMap<String, String>, Vec<String>), String> = self.block(
            "HGETALL overrides",
            redis::pipe()
                .cmd("HGETALL")
                .arg(self.keys.overrides())
                .cmd("SMEMBERS")
                .arg(self.keys.halted())
                .query_async(&mut conn),
        );
        let path = self.cache_dir.join(".state.json");
        let (overrides, halted) = match loaded {
            Ok(v) => {
                self.loaded.store(true, Ordering::Release);
                v
            }
            // At start, with Redis away: the local copy (none: no overrides).
            Err(reason) if !self.loaded.swap(true, Ordering::AcqRel) => {
                warn!(%reason, "Redis is unreachable at start: health overrides and halted ramps from the local copy");
                return match std::fs::read_to_string(&path) {
                    Ok(text) => serde_json::from_str(&text)
                        .map_err(|e| store_error(&path.display().to_string(), e)),
                    Err(_) => Ok(Durable::default()),
                };
            }
            Err(reason) => return Err(store_error(&self.describe(), reason)),
        };
        let overrides = overrides
            .into_iter()
            .filter_map(|(target, json)| {
                serde_json::from_str::<StoredOverride>(&json)
                    .map_err(|e| warn!(target, %e, "ignoring a malformed override in Redis"))
                    .ok()
                    .map(|o| (target, o))
            })
            .collect();
        let durable = Durable {
            overrides,
            halted_ramps: halted.into_iter().collect(),
        };
        let mut cached = self
            .cached_durable
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if cached.as_ref() != Some(&durable) {
            let written = std::fs::create_dir_all(&self.cache_dir)
                .map_err(|e| store_error(&self.cache_dir.display().to_string(), e))
                .and_then(|()| {
                    let json = serde_json::to_vec_pretty(&durable)
                        .map_err(|e| store_error(&path.display().to_string(), e))?;
                    write_atomic(&path, &json)
                });
            match written {
                Ok(()) => *cached = Some(durable.clone()),
                Err(e) => warn!(%e, "could not update the local copy of overrides"),
            }
        }
        Ok(durable)
    }

    fn set_override(&self, target: &str, value: Option<StoredOverride>) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let cmd = match &value {
            Some(v) => {
                let json = serde_json::to_string(v).map_err(|e| store_error(target, e))?;
                let mut c = redis::cmd("HSET");
                c.arg(self.keys.overrides()).arg(target).arg(json);
                c
            }
            None => {
                let mut c = redis::cmd("HDEL");
                c.arg(self.keys.overrides()).arg(target);
                c
            }
        };
        self.block("HSET override", cmd.query_async::<()>(&mut conn))
            .map_err(|e| store_error(&self.describe(), e))?;
        self.handle
            .block_on(self.publish(&format!("override {target}")));
        Ok(())
    }

    fn set_halted(&self, target: &str, halted: bool) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let op = if halted { "SADD" } else { "SREM" };
        self.block(
            op,
            redis::cmd(op)
                .arg(self.keys.halted())
                .arg(target)
                .query_async::<()>(&mut conn),
        )
        .map_err(|e| store_error(&self.describe(), e))?;
        self.handle
            .block_on(self.publish(&format!("halted {target}")));
        Ok(())
    }
}
