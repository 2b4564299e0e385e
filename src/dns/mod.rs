//! The DNS data plane: sockets, wire format and protocol rules. The only module that names
//! hickory-server types (its query parser).
//!
//! - [`listen`] binds the sockets: UDP to our own workers ([`udp`]), TCP to our own tasks
//!   ([`tcp`]).
//! - [`udp`] receives and replies in batches ([`batch`]); each datagram goes to the [`fast`]
//!   path (pre-rendered answers for the common queries, no allocation) or, when that declines,
//!   the [`full`] path, which also takes every TCP message.
//! - [`full`] drops what gets no reply (QR set, a refused [`source`]), parses, and runs the
//!   [`handler`]: protocol checks (opcode, EDNS, class, question, ECS), then [`answer`] turns
//!   the current snapshot into a response, which [`encode`] writes, truncated at a record
//!   boundary over UDP. It is the reference behaviour; the fast path only answers where it
//!   gives the same reply.
//! - [`source`]: the one rule for which source addresses get a reply, on every path.
//! - [`rrl`]: response rate limiting per client network on UDP, decided before any answer
//!   work; [`tcp`] has the connection caps.
//! - [`ecs`] reads and writes the EDNS Client Subnet option (RFC 7871).
//! - [`counters`]: answers by steered name, chosen target and type, one relaxed add per
//!   answer on the thread's own shard.
//! - [`query_log`]: the sampled query log (`[log] query_sample`), handed off the query path
//!   through a bounded channel.
//! - `init` answers the RUM zone's nonce names and logs who asked (full path only: they are
//!   never in the fast path's tables).
//!
//! Per query: one lock-free snapshot load (per batch on UDP), a hash lookup of the name (for a
//! negative answer, one more per label up to the closest name the zones hold), for steered
//! names one binary search in the table's precomputed runs (a GeoIP tree walk where they do
//! not describe the address; see `decision`) and a table index (and, for a query without ECS
//! while the resolver map has entries, one hash lookup). No I/O besides the reply, no locks.

pub mod answer;
pub mod batch;
pub mod counters;
pub mod ecs;
pub mod encode;
pub mod fast;
pub mod full;
pub mod handler;
mod init;
pub mod listen;
pub mod query_log;
pub mod rrl;
pub mod source;
pub mod tcp;
pub mod udp;

pub use handler::Handler;
pub use listen::{DnsServer, bind};

/// Without EDNS a UDP reply may hold 512 bytes (RFC 1035 §4.2.1).
pub(crate) const PLAIN_UDP_LIMIT: u16 = 512;

/// The UDP payload size we use and advertise for a client that advertised `client`: its size,
/// capped by our `max_udp_payload`, never below 512. One rule for both paths.
pub(crate) fn reply_payload(client: u16, ours: u16) -> u16 {
    client.clamp(PLAIN_UDP_LIMIT, ours.max(PLAIN_UDP_LIMIT))
}
