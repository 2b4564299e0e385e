//! Durable storage of what operators write and what nodes must not forget, behind two traits:
//!
//! - [`PolicyStore`]: the policies (list, get, compare-and-set `put_if` / `delete_if`,
//!   history, change notices). The compare-and-set lives here, not in one node's mutex, so
//!   that two writers sharing a store cannot both win. [`PolicyDir`] implements it for one
//!   node (a directory of files, writes atomic and fsynced, an advisory lock around each
//!   compare-and-set).
//! - [`MeasurementStore`]: what measurements leave behind that must survive a restart: health
//!   overrides and halted ramps. [`StateFile`] implements it for one node (memory, written
//!   through to a small JSON file next to the policies).
//!
//! [`redis::RedisStore`] implements both for a fleet, and shares probe results between nodes
//! (its module documents the key schema). [`timed`] wraps either trait to time every call
//! (`steerdns_store_op_seconds`).
//!
//! May depend on nothing else in the crate; does file I/O, never on the query path.

pub mod local_copy;
pub mod policy_dir;
pub mod redis;
pub mod state_file;
pub mod timed;

use std::collections::{BTreeMap, BTreeSet};

pub use policy_dir::{PolicyDir, StoreError, Version};
pub use state_file::StateFile;

/// ETags are quoted per RFC 9110: FNV-1a of the text, so every store and every node computes
/// the same tag for the same text.
pub fn etag(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("\"{hash:016x}\"")
}

/// One stored policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicy {
    /// Lower case, no trailing dot.
    pub key: String,
    /// Where it lives, for messages (a file path, a Redis key).
    pub source: String,
    pub text: String,
}

/// What a compare-and-set expects to find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Nothing under the key (create only).
    Absent,
    /// Something, whatever it is (`If-Match: *`).
    Present,
    /// Exactly the version with this ETag.
    Etag(String),
}

impl Expect {
    /// Whether `current` (the ETag there now, if any) is what was expected.
    pub fn holds(&self, current: Option<&str>) -> bool {
        match (self, current) {
            (Expect::Absent, None) | (Expect::Present, Some(_)) => true,
            (Expect::Etag(want), Some(cur)) => want == cur,
            _ => false,
        }
    }
}

/// Why a compare-and-set wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum CasError {
    /// Someone else's version is there; `current` is its ETag (empty: there is none).
    #[error("the policy changed since you read it (current ETag {current})")]
    PreconditionFailed { current: String },
    /// The store cannot be reached now; nothing was written. Retry later.
    #[error("the policy store is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A guard that keeps a change feed running; dropping it stops the feed.
pub type FeedGuard = Box<dyn Send>;

/// Where policies live. Implementations are blocking (called from the control plane's
/// blocking tasks, never from the query path).
pub trait PolicyStore: Send + Sync {
    /// Where `key` lives, for messages and as the policy's `source`.
    fn source_of(&self, key: &str) -> String;
    /// Every policy, sorted by source.
    fn list(&self) -> Result<Vec<StoredPolicy>, StoreError>;
    fn get(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// [`PolicyStore::get`] for an edit about to compare-and-set: a store that cannot be
    /// reached says [`CasError::Unavailable`], so the edit fails loudly rather than guessing.
    fn current(&self, key: &str) -> Result<Option<String>, CasError> {
        Ok(self.get(key)?)
    }
    /// Write `text` under `key` if `expect` holds; returns the new ETag. The version replaced
    /// goes to history.
    fn put_if(&self, key: &str, text: &str, expect: &Expect) -> Result<String, CasError>;
    /// Remove `key` if `expect` holds, keeping it in history.
    fn delete_if(&self, key: &str, expect: &Expect) -> Result<(), CasError>;
    /// Earlier versions, newest first.
    fn history(&self, key: &str) -> Result<Vec<Version>, StoreError>;
    fn version(&self, key: &str, id: u64) -> Result<Option<String>, StoreError>;
    /// Send a (coalesced) notice on `tx` whenever a policy may have changed, for as long as
    /// the guard lives; `None` when this store cannot notify (reload with SIGHUP).
    fn watch(&self, tx: tokio::sync::mpsc::Sender<()>) -> Option<FeedGuard>;
}

/// One health override as stored: the state's name (`up`, `down`, `unknown`) and since when
/// (ms since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredOverride {
    pub state: String,
    pub since_ms: u64,
}

/// What must survive a restart besides the policies.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Durable {
    #[serde(default)]
    pub overrides: BTreeMap<String, StoredOverride>,
    /// Targets whose guarded ramp is halted until their policy is edited.
    #[serde(default)]
    pub halted_ramps: BTreeSet<String>,
}

/// Where health overrides and ramp state live. Blocking, like [`PolicyStore`].
pub trait MeasurementStore: Send + Sync {
    fn load(&self) -> Result<Durable, StoreError>;
    /// Set (`Some`) or clear (`None`) a target's override.
    fn set_override(&self, target: &str, value: Option<StoredOverride>) -> Result<(), StoreError>;
    fn set_halted(&self, target: &str, halted: bool) -> Result<(), StoreError>;
}
