//! The measurement side of the fleet store: probe results in a shared stream, RUM results in
//! per-minute buckets that merge by addition, and the durable overrides and halted ramps.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use tracing::warn;

use super::keys::{PROBE_STREAM_LEN, PROBE_TTL, RUM_TTL_S};
use super::{RedisStore, store_error};
use crate::store::policy_dir::write_atomic;
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
    pub async fn append_probes(&self, batch: &[SharedProbe]) -> Result<(), String> {
        if batch.is_empty() {
            return Ok(());
        }
        let key = self.keys.probes();
        let mut pipe = redis::pipe();
        for p in batch {
            pipe.cmd("XADD")
                .arg(&key)
                .arg("MAXLEN")
                .arg("~")
                .arg(PROBE_STREAM_LEN)
                .arg("*")
                .arg("node")
                .arg(&p.node)
                .arg("target")
                .arg(&p.target)
                .arg("agent")
                .arg(&p.agent)
                .arg("at")
                .arg(p.at_ms)
                .arg("ok")
                .arg(u8::from(p.ok))
                .arg("ms")
                .arg(p.latency_ms)
                .ignore();
        }
        pipe.cmd("PEXPIRE")
            .arg(&key)
            .arg(u64::try_from(PROBE_TTL.as_millis()).unwrap_or(u64::MAX))
            .ignore();
        let mut conn = self.conn();
        self.call("XADD probes", pipe.query_async::<()>(&mut conn))
            .await
    }

    /// Probe results after stream id `after` (`"<ms>-0"` for "since then"), at most `count`;
    /// returns them with the id to continue from. Malformed entries are skipped.
    pub async fn read_probes(
        &self,
        after: &str,
        count: usize,
    ) -> Result<(Vec<SharedProbe>, String), String> {
        let mut conn = self.conn();
        let reply: redis::streams::StreamReadReply = self
            .call(
                "XREAD probes",
                redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(count)
                    .arg("STREAMS")
                    .arg(self.keys.probes())
                    .arg(after)
                    .query_async(&mut conn),
            )
            .await?;
        let mut last = after.to_owned();
        let mut out = Vec::new();
        for stream in reply.keys {
            for entry in stream.ids {
                last.clone_from(&entry.id);
                let get = |f: &str| entry.get::<String>(f);
                let probe = (|| {
                    Some(SharedProbe {
                        node: get("node")?,
                        target: get("target")?,
                        agent: get("agent")?,
                        at_ms: get("at")?.parse().ok()?,
                        ok: get("ok")? == "1",
                        latency_ms: get("ms")?.parse().ok()?,
                    })
                })();
                out.extend(probe);
            }
        }
        Ok((out, last))
    }

    /// Add RUM results to the shared per-minute buckets, in one pipeline.
    pub async fn add_rum(&self, deltas: &[RumDelta]) -> Result<(), String> {
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
    pub async fn read_rum(
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
