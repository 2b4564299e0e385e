//! Real-user measurements (RUM): what browsers measured of each target, aggregated per
//! region and minute, and the ranking that steers by it.
//!
//! This module owns the aggregation core: a mergeable log-scale latency [`histogram`], rolling
//! per-minute [`window`]s keyed by (target, region) or anything else hashable, and the
//! [`rank`]ing with confidence, practical margin and failure-rate exclusion. That core is pure
//! (no I/O, no clock, no async runtime): callers pass the wall-clock minute in, so the same
//! numbers come out on every fleet node and in tests. Beside it, the ingest side:
//!
//! - [`token`]: nonces and HMAC tokens bound to the client network; replay protection.
//! - [`beacon`]: the beacon's wire format and strict validation.
//! - [`limit`]: the per-network rate limit.
//! - [`collector`]: accepted beacons into windows per (target, region), and the session log.
//!
//! The HTTP side is `api::rum`. None of this is touched by DNS query threads.
//!
//! May depend on `serde`, `statrs`, `thiserror` and `std`; not on tokio, axum or hickory.

pub mod beacon;
pub mod collector;
pub mod histogram;
pub mod limit;
pub mod rank;
pub mod token;
pub mod window;

#[cfg(test)]
mod testing;
