//! The full path for a UDP datagram the fast path passed on: hickory-proto's parser and our
//! [`Handler`], run as hickory-server runs them for UDP, with the reply captured in a buffer
//! instead of sent from a task.
//!
//! It mirrors hickory-server's request handling step by step (drop what is not worth an
//! answer, FORMERR for what does not parse, drop responses, then the handler) and its UDP
//! encoding (the reply's EDNS payload size, or 512, as the limit; TC past it), so a datagram
//! gets the same reply from here as from hickory-server's own UDP loop.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};
use tracing::debug;

use super::{Handler, PLAIN_UDP_LIMIT, source};

/// The reply to one UDP datagram, or `None` when it gets none.
pub fn respond(handler: &Handler, raw: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
    // The fast path's rule too: one function for both.
    if !source::answerable(src) {
        return None;
    }
    let mut decoder = BinDecoder::new(raw);
    // Shorter than a header: not a DNS message, no reply.
    let header = Header::read(&mut decoder).ok()?;
    let request = match Request::from_bytes(raw.to_vec(), src, Protocol::Udp) {
        Ok(request) => request,
        Err(error) => {
            debug!(%error, %src, "unparseable query: FORMERR");
            let queries = Queries::read(&mut BinDecoder::new(&[]), 0).ok()?;
            let reply = MessageResponseBuilder::new(&queries, None)
                .error_msg(&header, ResponseCode::FormErr);
            return encode(reply).ok();
        }
    };
    // Never answer a response: that would let anyone bounce traffic between servers.
    if request.metadata.message_type == MessageType::Response {
        return None;
    }
    let capture = Capture::default();
    let future = handler.handle_request::<_, TokioTime>(&request, capture.clone());
    // The handler never waits on anything but `Capture`, which is ready at once: one poll
    // finishes it, without a runtime.
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(_) => capture.take(),
        Poll::Pending => None,
    }
}

/// Encode for UDP: limited to the reply's EDNS payload size, or 512 without EDNS; what does not
/// fit is cut with TC set by the encoder. Should encoding fail, a bare SERVFAIL.
fn encode<'a>(
    reply: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> Result<Vec<u8>, hickory_proto::ProtoError> {
    let id = reply.metadata().id;
    let mut bytes = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(reply.edns().map_or(PLAIN_UDP_LIMIT, |e| e.max_payload()));
    if reply.destructive_emit(&mut encoder).is_ok() {
        return Ok(bytes);
    }
    bytes.clear();
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(PLAIN_UDP_LIMIT);
    let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
    metadata.response_code = ResponseCode::ServFail;
    hickory_proto::serialize::binary::BinEncodable::emit(
        &Header {
            metadata,
            counts: HeaderCounts::default(),
        },
        &mut encoder,
    )?;
    Ok(bytes)
}

/// A `ResponseHandler` that keeps the encoded reply.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Option<Vec<u8>>>>);

impl Capture {
    fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let metadata = *response.metadata();
        let bytes = encode(response)?;
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(bytes);
        // Nobody reads the counts of a captured reply.
        Ok(ResponseInfo::from(Header {
            metadata,
            counts: HeaderCounts::default(),
        }))
    }
}
