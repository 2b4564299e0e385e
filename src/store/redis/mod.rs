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
//! | `{P}:resolver-joins` | stream | the resolver map's inputs as received by any node: a resolver asking for a nonce (`node n t k=d r e`: nonce, unix secs, resolver address, ECS subnet or empty) or a beacon carrying it (`node n t k=s net cc asn`: the client network and where it is); trimmed to about [`JOIN_STREAM_LEN`] entries and to [`JOIN_TTL`] |
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
//!   slot. Sentinel (`redis+sentinel://`) and TLS (`rediss://`) are [`conn`]'s business:
//!   the rest of the store sees one connection whatever is behind it.
//!
//! Files: [`conn`] (reaching Redis), [`keys`] (names and limits), [`measurements`] (probe
//! results, RUM buckets, overrides and halted ramps), [`status`] (up or down); this file has
//! the policies and the change feed.
//! - Change notices come from a dedicated pub/sub connection that reconnects by itself
//!   (in a Cluster, to the first seed: `PUBLISH` is forwarded to every node);
//!   notices can be lost (pub/sub is fire-and-forget), so the feed also ticks every
//!   `[store] refresh_ms` and the control plane re-lists on each tick. When any call finds
//!   Redis back after an outage, the feed reconnects and re-lists at once rather than at
//!   its next tick, so `/readyz` stops saying stale within one listing.

mod conn;
mod keys;
mod measurements;
mod status;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use tokio::runtime::Handle;
use tracing::warn;

use super::local_copy::LocalCopy;
use super::{
    CasError, Durable, Expect, FeedGuard, PolicyStore, StoreError, StoredPolicy, Version, etag,
};
use conn::{Conn, Notices};
pub use conn::{Endpoint, TlsFiles};
pub use keys::{
    HISTORY_CAP, JOIN_STREAM_LEN, JOIN_TTL, Keys, PROBE_STREAM_LEN, PROBE_TTL, PUT_IF, RUM_TTL_S,
};
pub use measurements::{JoinSide, RumDelta, SharedJoin, SharedProbe};
pub use status::StoreStatus;

pub struct RedisStore {
    url: String,
    /// Where the change feed subscribes.
    notices: Notices,
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
    /// Call latency and errors (`steerdns_store_op_seconds`): the trait calls through the
    /// decorators of [`super::timed`], the fleet's own calls here.
    pub metrics: std::sync::Arc<super::timed::StoreMetrics>,
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

/// How to reach the fleet's Redis and how to behave towards it (`[store]`).
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// See [`Endpoint`]: one URL, a Cluster's seeds separated by commas, or Sentinel.
    pub url: String,
    pub prefix: String,
    /// Our deadline for every call.
    pub timeout: Duration,
    /// Rebuild at least this often even without a change notice.
    pub refresh: Duration,
    /// The node's local copy, to start from while Redis is down.
    pub cache_dir: PathBuf,
    pub tls: TlsFiles,
}

impl RedisStore {
    /// Connect lazily (nothing is sent until the first call). Call inside the runtime.
    pub fn open(options: &RedisOptions) -> Result<Self, String> {
        let endpoint = Endpoint::parse(&options.url)?;
        let (conn, notices) = conn::connect(&endpoint, &options.tls, options.timeout)?;
        Ok(Self {
            url: options.url.clone(),
            notices,
            conn,
            keys: Keys::new(&options.prefix),
            timeout: options.timeout,
            refresh: options.refresh,
            handle: Handle::current(),
            cache_dir: options.cache_dir.clone(),
            copy: LocalCopy::new(&options.cache_dir),
            listed: AtomicBool::new(false),
            cached: Mutex::new(None),
            loaded: AtomicBool::new(false),
            cached_durable: Mutex::new(None),
            status: Default::default(),
            metrics: Default::default(),
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
        format!("{url} prefix {}", self.keys.prefix())
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
                self.conn.timed_out();
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
        let notices = self.notices.clone();
        let channel = self.keys.changes();
        let (refresh, timeout) = (self.refresh, self.timeout);
        let status = self.status.clone();
        let task = self.handle.spawn(async move {
            let mut tick = tokio::time::interval(refresh);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                // A dedicated connection for pub/sub; when it drops (Redis restarted), open
                // another. Between notices, and while disconnected, the tick rebuilds.
                let pubsub = tokio::time::timeout(timeout, async {
                    let mut p = notices.client().await?.get_async_pubsub().await?;
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
                        // Retry at the next tick, or as soon as another call finds Redis back.
                        tokio::select! {
                            _ = tick.tick() => {}
                            _ = status.came_back.notified() => {}
                        }
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
