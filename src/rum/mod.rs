//! Real-user measurements (RUM): what browsers measured of each target, aggregated per
//! region and minute, and the ranking that steers by it.
//!
//! This module owns the aggregation core: a mergeable log-scale latency [`histogram`], rolling
//! per-minute [`window`]s keyed by (target, region) or anything else hashable, and the
//! [`rank`]ing with confidence, practical margin and failure-rate exclusion. That core is pure
//! (no I/O, no clock, no async runtime): callers pass the wall-clock minute in, so the same
//! numbers come out on every fleet node and in tests. The beacon token, ingestion, collector
//! and resolver map (added beside it) are the parts that touch requests and time; they feed
//! this core and never the DNS hot path.
//!
//! May depend on `serde`, `statrs`, `thiserror` and `std`; not on tokio, axum or hickory.

pub mod histogram;
pub mod rank;
pub mod window;

#[cfg(test)]
mod testing;
