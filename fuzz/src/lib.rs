//! Fuzz targets for steerdns: one module per untrusted input, each with a `check` that takes
//! arbitrary bytes and panics when an invariant breaks. `tests/targets.rs` runs every check
//! under bolero: coverage-guided (libFuzzer or AFL) when built by cargo-bolero
//! (`fuzz/run.sh`), and as a bounded property test in plain `cargo test`, where it replays the
//! seed corpus (`fuzz/corpus/<target>/`) and then mutates it for about a second.
//! See `fuzz/README.md`.

// cargo-bolero builds this library's test binary too; linking bolero gives it the coverage
// runtime its instrumentation calls.
#[cfg(fuzzing)]
extern crate bolero as _;

pub mod admin_api;
pub mod beacon;
pub mod config;
pub mod policy;
pub mod probe_results;
pub mod seeds;
pub mod udp_query;
pub mod zone_file;

/// Inputs larger than this are ignored: every real input (a DNS message, a policy, a zone
/// file, an API body) is far smaller, and the engines' own limit is 4 KiB by default.
pub const MAX_INPUT: usize = 64 * 1024;
