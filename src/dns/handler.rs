//! The `RequestHandler`: protocol rules around [`answer::resolve`].
//!
//! hickory-server has already parsed the message (unparseable headers are dropped, other parse
//! failures answered FORMERR) and dropped responses. Here: opcode, EDNS version, question
//! count and class, ECS validation, then the answer, then encoding with the client's buffer
//! size (capped by ours) so oversized UDP answers go out truncated with TC set.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tracing::debug;

use super::answer::{self, Asker, Reply};
use super::ecs;
use crate::snapshot::Published;

/// Answers queries from the current snapshot.
pub struct Handler {
    published: Arc<Published>,
}

impl Handler {
    pub fn new(published: Arc<Published>) -> Self {
        Self { published }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let snapshot = self.published.load();
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
                        &snapshot,
                        canonical(request.src().ip()),
                        subnet.map(|s| (s.address, s.source_prefix)),
                    );
                    let reply =
                        answer::resolve(&snapshot, query.name(), query.query_type(), &asker);
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

        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let sent = match &reply {
            Some(Reply {
                answers,
                authority,
                additionals,
                ..
            }) => {
                let response = builder.build(
                    metadata,
                    answers.iter().map(AsRef::as_ref),
                    authority.iter().copied(),
                    std::iter::empty(),
                    additionals.iter().copied(),
                );
                response_handle.send_response(response).await
            }
            None => {
                let response = builder.build_no_records(metadata);
                response_handle.send_response(response).await
            }
        };
        match sent {
            Ok(info) => info,
            Err(error) => {
                debug!(%error, src = %request.src(), "could not send response");
                let mut failed = metadata;
                failed.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata: failed,
                    counts: HeaderCounts::default(),
                })
            }
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

/// A dual-stack socket reports IPv4 clients as `::ffff:a.b.c.d`; GeoIP wants the IPv4 form.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}
