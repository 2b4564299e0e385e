//! Real-user measurements (RUM). So far: resolver mapping, Cedexis' "init hostname".
//!
//! Each measuring page view resolves a unique `<nonce>.<rum zone>`; the DNS side records which
//! resolver asked for it ([`nonce_log`]), the HTTP side which client network sent the beacon
//! with the same nonce, and [`resolver_map`] joins the two into "resolver R asks for users who
//! are mostly in country C, AS A". Queries without ECS from R are then located as those users.
//!
//! - [`nonce`]: the nonce as a fixed-size value (no allocation on the DNS path).
//! - [`nonce_log`]: the bounded, lossy log DNS threads write without blocking.
//! - [`init_zone`]: the RUM zone's settings as a snapshot holds them.
//! - [`resolver_map`]: the pure join and the immutable map queries read.
//! - [`task`]: the control-side loop that drains the log and republishes the map.
//!
//! Depends on `geo` (nothing else) except [`task`], which drives the `control::Controller`.

pub mod init_zone;
pub mod nonce;
pub mod nonce_log;
pub mod resolver_map;
pub mod task;
