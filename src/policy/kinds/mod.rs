//! One file per step kind: its validated form and how it transforms the candidates.

pub mod active_passive;
pub mod failover;
pub mod geo;
pub mod performance;
pub mod weighted;
