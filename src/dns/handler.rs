//! The protocol rules around [`answer::resolve`], for a parsed query on either transport.
//!
//! [`super::full`] has already dropped what gets no reply (unanswerable sources, messages
//! with QR set, headers that do not parse) and answered FORMERR for what does not parse. Here:
//! opcode, EDNS version, question count, class and name, ECS validation, then the answer.
//! [`super::encode`] writes the result, truncated to the client's buffer size (capped by ours)
//! over UDP.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use hickory_server::server::Request;

use super::answer::{self, Asker, Reply};
use super::ecs;
use crate::snapshot::{Published, Snapshot};

/// Answers queries from the current snapshot.
pub struct Handler {
    published: Arc<Published>,
}

/// A reply before encoding: its header, our OPT record and, unless it is an error, the records.
pub struct Response<'s> {
    pub metadata: Metadata,
    pub edns: Option<Edns>,
    pub reply: Option<Reply<'s>>,
}

impl Handler {
    pub fn new(published: Arc<Published>) -> Self {
        Self { published }
    }

    /// The current snapshot: load it once, then [`Handler::respond`] borrows from it.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.published.load()
    }

    /// The reply to `request`, from `snapshot`.
    pub fn respond<'s>(&self, snapshot: &'s Snapshot, request: &Request) -> Response<'s> {
        let mut metadata = Metadata::response_from_request(&request.metadata);

        // Our OPT record: version 0, DO echoed, unknown flags cleared, and the buffer size we
        // will really use (the client's, capped by ours, never below 512).
        let mut edns = request.edns.as_ref().map(|req| {
            let mut ours = Edns::new();
            ours.set_max_payload(super::reply_payload(
                req.max_payload(),
                snapshot.settings.max_udp_payload,
            ));
            ours.set_dnssec_ok(req.flags().dnssec_ok);
            ours
        });

        let reply = match check(request) {
            Err(rcode) => {
                metadata.response_code = rcode;
                None
            }
            Ok(query) => match ecs::from_request(request.edns.as_ref(), request.as_slice()) {
                Err(_) => {
                    metadata.response_code = ResponseCode::FormErr;
                    None
                }
                Ok(subnet) => {
                    let asker = Asker::new(
                        snapshot,
                        canonical(request.src().ip()),
                        subnet.map(|s| (s.address, s.source_prefix)),
                    );
                    let reply = answer::resolve(snapshot, query.name(), query.query_type(), &asker);
                    metadata.response_code = reply.rcode;
                    metadata.authoritative = reply.authoritative;
                    if let (Some(subnet), Some(edns)) = (subnet, edns.as_mut()) {
                        edns.options_mut()
                            .insert(ecs::response_option(subnet, reply.scope));
                    }
                    Some(reply)
                }
            },
        };
        Response {
            metadata,
            edns,
            reply,
        }
    }
}

/// Protocol checks before looking anything up; `Err` is the rcode to answer with.
fn check(request: &Request) -> Result<&hickory_proto::op::LowerQuery, ResponseCode> {
    if request.metadata.op_code != OpCode::Query {
        return Err(ResponseCode::NotImp);
    }
    // RFC 6891 §6.1.3: we speak EDNS version 0 only.
    if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return Err(ResponseCode::BADVERS);
    }
    let [query] = request.queries.queries() else {
        return Err(ResponseCode::FormErr);
    };
    // A query has no earlier name for a pointer in its question to point at: it points into
    // the header, and the question means nothing (as Knot judges it). The reply echoes the
    // question written out in full (see `encode`), so it parses.
    if has_pointer(request.queries.as_bytes()) {
        return Err(ResponseCode::FormErr);
    }
    if query.query_class() != DNSClass::IN {
        return Err(ResponseCode::Refused);
    }
    match query.query_type() {
        // Zone transfers are not offered; OPT is not a question.
        RecordType::AXFR | RecordType::IXFR => Err(ResponseCode::Refused),
        RecordType::OPT => Err(ResponseCode::FormErr),
        _ => Ok(query),
    }
}

/// Whether the first name in `wire` holds a compression pointer (or a reserved label type).
fn has_pointer(wire: &[u8]) -> bool {
    let mut at = 0;
    while let Some(&len) = wire.get(at) {
        if len & 0xc0 != 0 {
            return true;
        }
        if len == 0 {
            return false;
        }
        at += 1 + usize::from(len);
    }
    false
}

/// A dual-stack socket reports IPv4 clients as `::ffff:a.b.c.d`; GeoIP wants the IPv4 form.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}
