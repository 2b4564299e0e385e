//! Benchmark tools for steerdns: a batched, closed-loop UDP DNS load generator (`loadgen`), the
//! no-op responder that is the floor of any comparison (`noop-responder`), a picker of
//! ECS client subnets from a MaxMind City database (`subnets`), a RUM beacon flood
//! (`beaconflood`, with `http-floor` as its floor), a stopwatch for a fleet's convergence
//! (`converge`) and the soak's checker (`soak`). The binaries in `src/bin/` are thin command
//! lines over these modules, so the tests can drive them in-process.

pub mod beacons;
pub mod converge;
pub mod hist;
pub mod http;
pub mod load;
pub mod noop;
pub mod rng;
pub mod signal;
pub mod soak;
pub mod subnets;
pub mod wire;
