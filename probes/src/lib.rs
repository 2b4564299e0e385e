//! Synthetic probes for steerdns.
//!
//! A probe agent checks every CDN/PoP endpoint (HTTP(S), TCP connect, DNS over UDP) on its own
//! interval and reports timestamped [`ProbeResult`]s to the steerdns server, which turns them
//! into endpoint health (quorum across locations, hysteresis) and latency measurements.
//!
//! - [`config`]: target files (`probes/targets/*.toml`) → [`TargetChecks`], with errors that name
//!   file, field and reason.
//! - [`check`]: one run of one check, bounded by its timeout ([`Prober`]).
//! - [`agent`]: the schedule, one task per check ([`spawn_agent`]).
//! - [`reporter`]: batching, POSTing, bounded backlog, backoff ([`run_reporter`]).
//!
//! HTTPS uses rustls with the ring provider (no OpenSSL, no aws-lc); it is installed as the
//! process default on first use ([`install_crypto_provider`]).

pub mod agent;
pub mod check;
pub mod config;
pub mod reporter;

pub use agent::{AgentStats, spawn_agent, spawn_agent_with_stats};
pub use check::{Outcome, Prober, install_crypto_provider, run_check, unix_ms_now};
pub use config::{
    Check, CheckKind, ConfigError, TargetChecks, load_targets, parse_target, parse_target_all,
};
pub use reporter::{INGEST_PATH, ReporterConfig, ReporterStats, run_reporter, run_reporter_with};

/// One run of one check, as reported to the server (`POST /api/v1/probe-results` takes a JSON
/// array of these).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProbeResult {
    /// The policy target id, e.g. `cdn-a`.
    pub target: String,
    /// The check's id, e.g. `http https://cdn-a.example.net/health`.
    pub check: String,
    /// The agent's location label, e.g. `fra`.
    pub agent: String,
    /// When the run started, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    pub ok: bool,
    /// Duration of the run (for failures too: a timeout reports about the timeout).
    pub latency_ms: f64,
    /// Why the check failed; `None` when `ok`.
    pub error: Option<String>,
}
