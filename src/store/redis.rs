//! The fleet store: policies, health overrides, halted ramps and probe results shared by
//! every node through one Redis (`serve --redis`, `[store] redis`).
//!
//! # Key schema
//!
//! Every key of a fleet starts with the hash tag `{P}` (`P` = `[store] prefix`, default
//! `steerdns`), so several fleets share one Redis and, in a Redis Cluster, all of a fleet's
//! keys live in one slot: the compare-and-set script, `MULTI` and pipelines never cross slots.
//! (A cluster therefore spreads fleets, not one fleet; one fleet's state is small, see the
//! README's sizing.)
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{P}:policies` | hash | policy key (`www.example.com`) → policy TOML |
//! | `{P}:etags` | hash | policy key → its ETag (FNV-1a of the text, as every node computes it) |
//! | `{P}:seeded` | string | set while the fleet has had policies: with no policies and no marker, Redis lost its data, and nodes keep what they serve |
//! | `{P}:history:<key>` | list | replaced versions, newest first: `<unix ms>\n<TOML>`; at most [`HISTORY_CAP`] |
//! | `{P}:overrides` | hash | target → `{"state":"down","since_ms":…}` (operator overrides) |
//! | `{P}:halted` | set | targets whose guarded ramp is halted until their policy is edited |
//! | `{P}:probes` | stream | probe results as received by any node: fields `node target agent at ok ms`; trimmed to about [`PROBE_STREAM_LEN`] entries and to [`PROBE_TTL`] |
//! | `{P}:rum:<target>\|<region>:<minute>` | hash | one RUM series' results in one wall-clock minute (`unix_secs / 60`): `b<i>` histogram bucket counts, `n` attempts, `f` failures; `HINCRBY` from every node, so buckets merge by addition; `EXPIRE 900 NX` |
//! | `{P}:rum:index:<minute>` | set | the series keys written in that minute (to read a window without `SCAN`); `EXPIRE 900 NX` |
//! | `{P}:changes` | pub/sub channel | `policy <key>`, `override <target>`, `halted <target>`: a hint to rebuild now |
//!
//! The policy and override keys have no TTL: they are configuration. The probe stream
//! expires [`PROBE_TTL`] after its last write (set on every write), so a fleet that stops
//! leaves nothing behind.
//!
//! # Behaviour
//!
//! - Compare-and-set is one Lua script ([`PUT_IF`]): it reads the current ETag, checks the
//!   editor's expectation, keeps the replaced version in history, writes, and publishes a
//!   notice, atomically. Of two nodes editing at once exactly one wins; the other gets
//!   [`CasError::PreconditionFailed`] with the winner's ETag (412).
//! - The connection is lazy ([`redis::aio::ConnectionManager::new_lazy_with_config`]): a node
//!   starts and answers DNS while Redis is down. Every call carries our own deadline
//!   (`[store] timeout_ms`), and a call that fails or times out marks the store down in
//!   [`StoreStatus`] (`/readyz`, `steerdns_store_up`) until a call succeeds again.
//! - The trait methods block: they are called from the control plane's blocking tasks, and
//!   run their futures on the server's runtime. The DNS path never calls them.
//! - Every successful listing is mirrored to a local copy on disk (`[store] cache_dir`),
//!   in the background so that a slow disk never delays serving an edit
//!   ([`super::local_copy`]): a node that starts while Redis is down serves that copy, or
//!   refuses to start saying it has none.
//! - A Redis Cluster is given as several seed URLs separated by commas; commands are routed
//!   by the cluster connection, and since every key shares one hash tag, nothing crosses a
//!   slot.
//! - Change notices come from a dedicated pub/sub connection that reconnects by itself
//!   (in a Cluster, to the first seed: `PUBLISH` is forwarded to every node);
//!   notices can be lost (pub/sub is fire-and-forget), so the feed also ticks every
//!   `[store] refresh_ms` and every node rebuilds on either.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::runtime::Handle;
use tracing::{info, warn};

use super::local_copy::LocalCopy;
use super::policy_dir::write_atomic;
use super::{
    CasError, Durable, Expect, FeedGuard, MeasurementStore, PolicyStore, StoreError,
    StoredOverride, StoredPolicy, Version, etag,
};

/// Replaced versions kept per policy.
pub const HISTORY_CAP: usize = 100;
/// Probe results kept in the shared stream (approximately: `XADD MAXLEN ~`).
pub const PROBE_STREAM_LEN: usize = 100_000;
/// The probe stream expires this long after its last write.
pub const PROBE_TTL: Duration = Duration::from_secs(900);

/// The compare-and-set: KEYS = policies, etags, history; ARGV = key, expectation (`absent`,
/// `present`, `etag`), wanted ETag, new text, new ETag, now (ms), op (`put`, `delete`),
/// notice channel, history cap. Returns `{1, new etag}` or `{0, current etag or ""}`.
pub const PUT_IF: &str = r#"
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if not cur then cur = nil end
local ok
if ARGV[2] == 'absent' then ok = (cur == nil)
elseif ARGV[2] == 'present' then ok = (cur ~= nil)
else ok = (cur == ARGV[3]) end
if not ok then return {0, cur or ''} end
if ARGV[7] == 'delete' and cur == nil then return {0, ''} end
if cur ~= nil then
  local old = redis.call('HGET', KEYS[1], ARGV[1]) or ''
  local id = tonumber(ARGV[6])
  local head = redis.call('LINDEX', KEYS[3], 0)
  if head then
    local hid = tonumber(string.match(head, '^(%d+)'))
    if hid and hid >= id then id = hid + 1 end
  end
  redis.call('LPUSH', KEYS[3], string.format('%d', id) .. '\n' .. old)
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[9]) - 1)
end
if ARGV[7] == 'put' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[5])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
end
redis.call('PUBLISH', ARGV[8], 'policy ' .. ARGV[1])
return {1, ARGV[5]}
"#;

/// Whether the shared store answers, for `/readyz` and the metrics.
#[derive(Debug, Default)]
pub struct StoreStatus {
    up: AtomicBool,
    /// Calls that failed or timed out.
    pub failures: AtomicU64,
    /// Buffered writes (probe results) dropped because the buffer was full.
    pub dropped_writes: AtomicU64,
    /// Writes waiting in the buffer for Redis to come back.
    pub buffered_writes: AtomicU64,
    last_error: Mutex<String>,
}

impl StoreStatus {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    fn ok(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            info!("the shared store (Redis) is reachable");
        }
    }

    fn failed(&self, reason: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut e) = self.last_error.lock() {
            reason.clone_into(&mut e);
        }
        if self.up.swap(false, Ordering::AcqRel) {
            warn!(
                reason,
                "the shared store (Redis) is unreachable: DNS keeps answering from the last table; edits fail with 503"
            );
        }
    }
}

/// RUM keys expire this long after their first write (`EXPIRE … NX`): a window is at most
/// 60 minutes, usually 5; 15 minutes covers the default window with room for clock skew.
pub const RUM_TTL_S: u64 = 900;

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

/// Key names of one fleet.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }
    pub fn key(&self, rest: &str) -> String {
        format!("{{{}}}:{rest}", self.prefix)
    }
    pub fn policies(&self) -> String {
        self.key("policies")
    }
    pub fn etags(&self) -> String {
        self.key("etags")
    }
    pub fn history(&self, key: &str) -> String {
        self.key(&format!("history:{key}"))
    }
    pub fn overrides(&self) -> String {
        self.key("overrides")
    }
    pub fn halted(&self) -> String {
        self.key("halted")
    }
    pub fn probes(&self) -> String {
        self.key("probes")
    }
    pub fn changes(&self) -> String {
        self.key("changes")
    }
    /// Set while the fleet has had policies: a Redis that lost its data (restarted without
    /// persistence, flushed, replaced) has no marker, which tells it apart from a fleet whose
    /// policies were all deleted on purpose.
    pub fn seeded(&self) -> String {
        self.key("seeded")
    }
}

/// One Redis, or a Redis Cluster (several seed URLs).
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

pub struct RedisStore {
    url: String,
    /// For the change feed's pub/sub connection: the (first seed) node. In a Cluster,
    /// `PUBLISH` reaches every node, so subscribing on one is enough.
    client: redis::Client,
    conn: Conn,
    keys: Keys,
    timeout: Duration,
    refresh: Duration,
    handle: Handle,
    cache_dir: PathBuf,
    /// The local copy of the policies, written in the background (see its module).
    copy: std::sync::Arc<LocalCopy>,
    /// Whether a listing has succeeded (or the local copy was served) since start: only the
    /// first listing may fall back to the local copy; later ones say Redis is down, so the
    /// node keeps what it serves and marks itself stale.
    listed: AtomicBool,
    /// The last successful listing: whether this node has served policies (see
    /// `lost_data`), and to skip rewriting the local copy unchanged.
    cached: Mutex<Option<BTreeMap<String, String>>>,
    /// Like `listed`, for overrides and halted ramps (kept in `<cache_dir>/.state.json`).
    loaded: AtomicBool,
    cached_durable: Mutex<Option<Durable>>,
    pub status: std::sync::Arc<StoreStatus>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn store_error(what: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError {
        path: what.to_owned(),
        reason: reason.to_string(),
    }
}

impl RedisStore {
    /// Connect lazily (nothing is sent until the first call). Call inside the runtime.
    /// `url`: one `redis://` URL, or several separated by commas: the seed nodes of a Redis
    /// Cluster.
    pub fn open(
        url: &str,
        prefix: &str,
        timeout: Duration,
        refresh: Duration,
        cache_dir: &Path,
    ) -> Result<Self, String> {
        let seeds: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        let first = seeds
            .first()
            .ok_or_else(|| format!("{url:?}: no Redis URL"))?;
        let client = redis::Client::open(*first).map_err(|e| format!("{first:?}: {e}"))?;
        let conn = if seeds.len() > 1 {
            let cluster = redis::cluster::ClusterClient::builder(seeds.iter().copied())
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(2)
                .build()
                .map_err(|e| format!("{url:?}: {e}"))?;
            Conn::Cluster(
                cluster
                    .get_pending_async_connection_with_config(redis::cluster::ClusterConfig::new()),
            )
        } else {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(2)
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_millis(500));
            Conn::Single(
                ConnectionManager::new_lazy_with_config(client.clone(), config)
                    .map_err(|e| format!("{url:?}: {e}"))?,
            )
        };
        Ok(Self {
            url: url.to_owned(),
            client,
            conn,
            keys: Keys::new(prefix),
            timeout,
            refresh,
            handle: Handle::current(),
            cache_dir: cache_dir.to_owned(),
            copy: LocalCopy::new(cache_dir),
            listed: AtomicBool::new(false),
            cached: Mutex::new(None),
            loaded: AtomicBool::new(false),
            cached_durable: Mutex::new(None),
            status: Default::default(),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Describe for logs: the URL without credentials, and the prefix.
    pub fn describe(&self) -> String {
        let url = match self.url.split_once('@') {
            Some((scheme_user, host)) => {
                let scheme = scheme_user.split("://").next().unwrap_or("redis");
                format!("{scheme}://…@{host}")
            }
            None => self.url.clone(),
        };
        format!("{url} prefix {}", self.keys.prefix)
    }

    /// Run a Redis call under our deadline, async.
    pub async fn call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => {
                self.status.ok();
                Ok(v)
            }
            Ok(Err(e)) => {
                let reason = format!("redis {what}: {e}");
                self.status.failed(&reason);
                Err(reason)
            }
            Err(_) => {
                let reason = format!("redis {what}: no answer within {:?}", self.timeout);
                self.status.failed(&reason);
                Err(reason)
            }
        }
    }

    /// [`RedisStore::call`] from a blocking thread.
    fn block<T>(
        &self,
        what: &str,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        self.handle.block_on(self.call(what, fut))
    }

    fn conn(&self) -> Conn {
        self.conn.clone()
    }

    fn cas(&self, key: &str, text: &str, expect: &Expect, op: &str) -> Result<String, CasError> {
        let (kind, want) = match expect {
            Expect::Absent => ("absent", ""),
            Expect::Present => ("present", ""),
            Expect::Etag(e) => ("etag", e.as_str()),
        };
        let new_etag = if op == "put" {
            etag(text)
        } else {
            String::new()
        };
        let mut conn = self.conn();
        let script = redis::Script::new(PUT_IF);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.keys.policies())
            .key(self.keys.etags())
            .key(self.keys.history(key))
            .arg(key)
            .arg(kind)
            .arg(want)
            .arg(text)
            .arg(&new_etag)
            .arg(now_ms())
            .arg(op)
            .arg(self.keys.changes())
            .arg(HISTORY_CAP);
        let (won, tag): (i64, String) = self
            .block("compare-and-set", invocation.invoke_async(&mut conn))
            .map_err(CasError::Unavailable)?;
        if won == 1 {
            Ok(tag)
        } else {
            Err(CasError::PreconditionFailed { current: tag })
        }
    }

    /// Whether an empty listing means lost data: this node has served policies from the
    /// store, and the store has no seeded marker.
    fn lost_data(&self) -> bool {
        let served = self
            .cached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|c| !c.is_empty());
        if !served {
            return false;
        }
        let mut conn = self.conn();
        let marker = self.block(
            "EXISTS seeded",
            redis::cmd("EXISTS")
                .arg(self.keys.seeded())
                .query_async::<u64>(&mut conn),
        );
        // Unreachable is not "lost": the caller's next read reports that itself.
        matches!(marker, Ok(0))
    }

    fn mark_seeded(&self) {
        let mut conn = self.conn();
        let _ = self.block(
            "SET seeded",
            redis::cmd("SET")
                .arg(self.keys.seeded())
                .arg(1)
                .query_async::<()>(&mut conn),
        );
    }

    /// Mirror a listing to the local copy (atomically per file; files no longer listed go).
    /// Mirror a listing to the local copy, in the background: installing what was listed
    /// must not wait for the disk.
    fn write_cache(&self, policies: &BTreeMap<String, String>) {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if cached.as_ref() == Some(policies) && !self.copy.failed() {
            return;
        }
        *cached = Some(policies.clone());
        self.copy.offer(policies.clone(), &self.handle);
    }

    fn read_cache(&self) -> Result<Vec<StoredPolicy>, StoreError> {
        let dir = super::PolicyDir::new(&self.cache_dir);
        let mut out = Vec::new();
        for path in dir.files()? {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| store_error(&path.display().to_string(), e))?;
            let key = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push(StoredPolicy {
                source: self.source_of(&key),
                key,
                text,
            });
        }
        Ok(out)
    }

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

    /// Every policy as (key → text), straight from Redis (for `policy export`).
    pub async fn export(&self) -> Result<BTreeMap<String, String>, String> {
        let mut conn = self.conn();
        self.call(
            "HGETALL policies",
            redis::cmd("HGETALL")
                .arg(self.keys.policies())
                .query_async::<BTreeMap<String, String>>(&mut conn),
        )
        .await
    }

    async fn publish(&self, notice: &str) {
        let mut conn = self.conn();
        let _ = self
            .call(
                "PUBLISH",
                redis::cmd("PUBLISH")
                    .arg(self.keys.changes())
                    .arg(notice)
                    .query_async::<()>(&mut conn),
            )
            .await;
    }
}

impl RedisStore {
    /// A policy's replaced versions, newest first: (id, text); malformed entries skipped.
    fn versions(&self, key: &str) -> Result<Vec<(u64, String)>, StoreError> {
        let mut conn = self.conn();
        let entries: Vec<String> = self
            .block(
                "LRANGE history",
                redis::cmd("LRANGE")
                    .arg(self.keys.history(key))
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut conn),
            )
            .map_err(|e| store_error(key, e))?;
        Ok(entries
            .iter()
            .filter_map(|e| {
                let (id, text) = e.split_once('\n')?;
                Some((id.parse().ok()?, text.to_owned()))
            })
            .collect())
    }
}

impl PolicyStore for RedisStore {
    fn source_of(&self, key: &str) -> String {
        format!("redis {}/{key}", self.keys.policies())
    }

    fn list(&self) -> Result<Vec<StoredPolicy>, StoreError> {
        let mut conn = self.conn();
        let listed = self.block(
            "HGETALL policies",
            redis::cmd("HGETALL")
                .arg(self.keys.policies())
                .query_async::<BTreeMap<String, String>>(&mut conn),
        );
        match listed {
            Ok(policies) if policies.is_empty() && self.lost_data() => Err(store_error(
                &self.describe(),
                format!(
                    "Redis holds no policies and no {} marker, but this node served some: the \
                     store lost its data (restarted without persistence?). Keeping the last good \
                     policies; seed the fleet again with `steerdns policy import`",
                    self.keys.seeded()
                ),
            )),
            Ok(policies) => {
                if !policies.is_empty() {
                    self.mark_seeded();
                }
                self.listed.store(true, Ordering::Release);
                self.write_cache(&policies);
                Ok(policies
                    .into_iter()
                    .map(|(key, text)| StoredPolicy {
                        source: self.source_of(&key),
                        key,
                        text,
                    })
                    .collect())
            }
            Err(reason) if !self.listed.swap(true, Ordering::AcqRel) => {
                let cache = self.read_cache()?;
                if cache.is_empty() {
                    return Err(store_error(
                        &self.describe(),
                        format!(
                            "{reason}; and there is no local copy of the fleet's policies in {} \
                             (it is written once Redis has been reached): start again when \
                             Redis is up",
                            self.cache_dir.display()
                        ),
                    ));
                }
                warn!(
                    %reason,
                    policies = cache.len(),
                    copy = %self.cache_dir.display(),
                    "Redis is unreachable at start: serving the local copy of the fleet's policies"
                );
                Ok(cache)
            }
            Err(reason) => Err(store_error(&self.describe(), reason)),
        }
    }

    fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.current(key).map_err(|e| store_error(key, e))
    }

    fn current(&self, key: &str) -> Result<Option<String>, CasError> {
        let mut conn = self.conn();
        self.block(
            "HGET policy",
            redis::cmd("HGET")
                .arg(self.keys.policies())
                .arg(key)
                .query_async::<Option<String>>(&mut conn),
        )
        .map_err(CasError::Unavailable)
    }

    fn put_if(&self, key: &str, text: &str, expect: &Expect) -> Result<String, CasError> {
        self.cas(key, text, expect, "put")
    }

    fn delete_if(&self, key: &str, expect: &Expect) -> Result<(), CasError> {
        self.cas(key, "", expect, "delete").map(|_| ())
    }

    fn history(&self, key: &str) -> Result<Vec<Version>, StoreError> {
        Ok(self
            .versions(key)?
            .into_iter()
            .map(|(id, text)| Version {
                id,
                etag: etag(&text),
            })
            .collect())
    }

    fn version(&self, key: &str, id: u64) -> Result<Option<String>, StoreError> {
        Ok(self
            .versions(key)?
            .into_iter()
            .find_map(|(i, text)| (i == id).then_some(text)))
    }

    fn watch(&self, tx: tokio::sync::mpsc::Sender<()>) -> Option<FeedGuard> {
        let client = self.client.clone();
        let channel = self.keys.changes();
        let (refresh, timeout) = (self.refresh, self.timeout);
        let task = self.handle.spawn(async move {
            let mut tick = tokio::time::interval(refresh);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                // A dedicated connection for pub/sub; when it drops (Redis restarted), open
                // another. Between notices, and while disconnected, the tick rebuilds.
                let pubsub = tokio::time::timeout(timeout, async {
                    let mut p = client.get_async_pubsub().await?;
                    p.subscribe(&channel).await?;
                    redis::RedisResult::Ok(p)
                })
                .await;
                match pubsub {
                    Ok(Ok(mut pubsub)) => {
                        let _ = tx.try_send(());
                        let mut messages = pubsub.on_message();
                        loop {
                            tokio::select! {
                                m = messages.next() => match m {
                                    Some(_) => { let _ = tx.try_send(()); }
                                    None => break,
                                },
                                _ = tick.tick() => { let _ = tx.try_send(()); }
                            }
                            if tx.is_closed() {
                                return;
                            }
                        }
                    }
                    _ => {
                        tick.tick().await;
                        if tx.try_send(()).is_err() && tx.is_closed() {
                            return;
                        }
                    }
                }
            }
        });
        Some(Box::new(AbortOnDrop(task)))
    }
}

/// Stops the feed task when the watch is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
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
