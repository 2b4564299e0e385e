//! Benchmark tools for steerdns: a batched, closed-loop UDP DNS load generator (`loadgen`), the
//! no-op responder that is the floor of any comparison (`noop-responder`), and a picker of
//! ECS client subnets from a MaxMind City database (`subnets`). The binaries in `src/bin/` are
//! thin command lines over these modules, so the tests can drive them in-process.

pub mod hist;
pub mod load;
pub mod noop;
pub mod rng;
pub mod signal;
pub mod subnets;
pub mod wire;
