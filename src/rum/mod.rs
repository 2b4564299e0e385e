//! Real-user measurements (RUM): what visitors' browsers measure of each target.
//!
//! - [`token`]: nonces and HMAC tokens bound to the client network; replay protection.
//! - [`beacon`]: the beacon's wire format and strict validation.
//! - [`limit`]: the per-network rate limit.
//!
//! The HTTP side is `api::rum`. Nothing here is touched by DNS query threads.

pub mod beacon;
pub mod limit;
pub mod token;
