//! Durable storage of what operators write.
//!
//! Today: the policy directory ([`policy_dir`]), with atomic, fsynced writes and a history of
//! every replaced version. The measurement store (embedded memory for one node, Redis for a
//! fleet) that probes and the RUM beacon will write into arrives with them. May depend on
//! nothing else in the crate; does file I/O, never on the query path.

pub mod policy_dir;

pub use policy_dir::{PolicyDir, StoreError, Version};
