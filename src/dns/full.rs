//! The full path: any message in, its reply (or none) out, for a UDP datagram the fast path
//! passed on and for every message over TCP. hickory-proto's parser, the rules of
//! [`Handler`], and our [`encode`](super::encode).
//!
//! What gets no reply at all, on either transport: a source no reply may go to
//! ([`super::source::answerable`], the rule the fast path applies too), anything shorter than
//! a header, and any message with QR set, whether it parses or not: a response is never
//! answered, so two servers cannot be made to bounce messages between them (as Knot and BIND
//! do). What does not parse gets FORMERR without a question; the rest gets the handler's
//! reply, limited to the reply's EDNS payload size (or 512) over UDP and to 65,535 bytes over
//! TCP, cut at a record boundary with TC set past it.

use std::net::SocketAddr;

use hickory_proto::op::{Header, Metadata, Query, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use tracing::debug;

use super::handler::Response;
use super::{Handler, PLAIN_UDP_LIMIT, encode, source};

/// The transport a message came by: it sets the size limit of the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// The reply to one UDP datagram, or `None` when it gets none.
pub fn respond(handler: &Handler, raw: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
    reply(handler, raw, src, Transport::Udp)
}

/// The reply to one message that came by `transport`, or `None` when it gets none.
pub fn reply(
    handler: &Handler,
    raw: &[u8],
    src: SocketAddr,
    transport: Transport,
) -> Option<Vec<u8>> {
    if !source::answerable(src) {
        return None;
    }
    // Shorter than a header: not a DNS message, no reply.
    let header = Header::read(&mut BinDecoder::new(raw)).ok()?;
    if header.metadata.message_type == hickory_proto::op::MessageType::Response {
        return None;
    }
    let protocol = match transport {
        Transport::Udp => Protocol::Udp,
        Transport::Tcp => Protocol::Tcp,
    };
    let request = match Request::from_bytes(raw.to_vec(), src, protocol) {
        Ok(request) => request,
        Err(error) => {
            debug!(%error, %src, "unparseable query: FORMERR");
            let mut metadata = Metadata::response_from_request(&header.metadata);
            metadata.response_code = ResponseCode::FormErr;
            let response = Response {
                metadata,
                edns: None,
                reply: None,
            };
            return Some(encode::encode(&[], &response, PLAIN_UDP_LIMIT));
        }
    };
    let snapshot = handler.snapshot();
    let response = handler.respond(&snapshot, &request);
    let limit = match transport {
        Transport::Udp => response
            .edns
            .as_ref()
            .map_or(PLAIN_UDP_LIMIT, |e| e.max_payload()),
        Transport::Tcp => u16::MAX,
    };
    Some(encode::encode(
        &questions(raw, header.counts.queries),
        &response,
        limit,
    ))
}

/// The questions as the client spelled them (hickory's request keeps them lower-cased), names
/// expanded where they held pointers. The request parsed, so they do too.
fn questions(raw: &[u8], count: u16) -> Vec<Query> {
    let mut decoder = BinDecoder::new(raw);
    if decoder.read_slice(12).is_err() {
        return Vec::new();
    }
    (0..count)
        .map_while(|_| Query::read(&mut decoder).ok())
        .collect()
}
