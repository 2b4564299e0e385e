//! steerdns: an authoritative DNS server that steers each client to the best CDN or PoP.
//!
//! Data flows one way: inputs (config, zone files, policies, GeoIP databases) are parsed and
//! validated by the control plane, compiled into an immutable [`snapshot::Snapshot`], and
//! published atomically; the DNS data plane ([`dns`]) only loads the current snapshot and looks
//! answers up in it. See `README.md` for a tour of the modules.

pub mod alloc;
pub mod api;
pub mod app;
pub mod config;
pub mod control;
pub mod decision;
pub mod demo;
pub mod dns;
pub mod events;
pub mod explain;
pub mod fleet;
pub mod geo;
pub mod health;
pub mod import;
pub mod limit;
pub mod monitor;
pub mod obs;
pub mod perf;
pub mod policy;
pub mod preview;
pub mod regions;
pub mod rum;
pub mod snapshot;
pub mod store;
pub mod wire;
pub mod zone;
