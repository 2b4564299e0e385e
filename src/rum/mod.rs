//! Real-user measurements (RUM): what browsers measured of each target, aggregated per
//! region and minute, and the ranking that steers by it; and resolver mapping (Cedexis' "init
//! hostname"), which locates resolvers without ECS as their users.
//!
//! This module owns the aggregation core: a mergeable log-scale latency [`histogram`], rolling
//! per-minute [`window`]s keyed by (target, region) or anything else hashable, and the
//! [`rank`]ing with confidence, practical margin and failure-rate exclusion. That core is pure
//! (no I/O, no clock, no async runtime): callers pass the wall-clock minute in, so the same
//! numbers come out on every fleet node and in tests. Beside it, the ingest side:
//!
//! - [`token`]: nonces and HMAC tokens bound to the client network; replay protection.
//! - [`beacon`]: the beacon's wire format and strict validation.
//! - the per-network rate limit is `crate::limit`'s token buckets, keyed by [`token::ClientNet`].
//! - [`collector`]: accepted beacons into windows per (target, region), and the session log.
//!
//! The HTTP side is `api::rum`. None of the above is touched by DNS query threads.
//!
//! Resolver mapping: each measuring page view resolves a unique `<nonce>.<rum zone>`; the DNS
//! side records which resolver asked for it, the session log which client network sent the
//! beacon with the same nonce, and [`resolver_map`] joins the two into "resolver R asks for
//! users who are mostly in country C, AS A".
//!
//! - [`nonce`]: the nonce as a DNS label, a fixed-size value (no allocation on the DNS path).
//! - [`nonce_log`]: the bounded, lossy log DNS threads write without blocking (the one part
//!   of this module that query threads touch, and never with a lock).
//! - [`init_zone`]: the RUM zone as a snapshot holds it (hickory names).
//! - [`resolver_map`]: the pure join and the immutable map queries read.
//! - [`task`]: the control-side loop (tokio) that feeds the join and republishes the map.
//!
//! The core may depend on `serde`, `statrs`, `thiserror` and `std`; not on tokio, axum or
//! hickory. `init_zone` uses hickory's names, and `task` drives the `control::Controller`.

pub mod beacon;
pub mod collector;
pub mod histogram;
pub mod init_zone;
pub mod nonce;
pub mod nonce_log;
pub mod rank;
pub mod resolver_map;
pub mod task;
pub mod token;
pub mod window;

#[cfg(test)]
mod testing;
