//! The DNS data plane: sockets, wire format and protocol rules. The only module that names
//! hickory-server types.
//!
//! - [`listen`] binds UDP sockets and TCP listeners and runs them on hickory-server.
//! - [`handler`] is the `RequestHandler` seam: protocol checks (opcode, EDNS, class, ECS), then
//!   [`answer`] turns the current snapshot into a response.
//! - [`ecs`] reads and writes the EDNS Client Subnet option (RFC 7871).
//!
//! Per query: one lock-free snapshot load, a hash lookup of the name, for steered names a
//! GeoIP tree walk and a table index. No I/O besides the reply, no locks, no awaits but send.

pub mod answer;
pub mod batch;
pub mod ecs;
pub mod handler;
pub mod listen;

pub use handler::Handler;
pub use listen::{DnsServer, bind};
