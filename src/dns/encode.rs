//! Writing a [`Response`] to the wire, for UDP (limited to the client's buffer) and TCP.
//!
//! Our own writer rather than hickory-server's, for three rules it does not keep:
//! - **Whole records only.** What does not fit is cut at a record boundary: the reply holds
//!   whole RRs in order (or none), the counts say how many, TC is set, nothing follows the last
//!   record but our OPT, for which room is kept (RFC 6891 §7). hickory's encoder rolled back
//!   its offset but left the cut record's bytes in the buffer.
//! - **Owners point at the question.** A record whose owner is the question name (in any
//!   letter case) gets the pointer `0xC00C` as its owner, as the fast path's pre-rendered
//!   records do, so both paths fit the same records into the same size. Other names compress
//!   against the question's labels and each other byte for byte, so their case is kept.
//! - **The question written out.** The question is written from its parsed form, never copied:
//!   a compression pointer in a query's question is expanded, so the reply always parses.
//!   Questions that do not fit the limit themselves (several long ones in one UDP query,
//!   which get FORMERR) are left out, with TC set; the rcode stands.

use hickory_proto::ProtoError;
use hickory_proto::op::{Header, HeaderCounts, Metadata, Query, ResponseCode};
use hickory_proto::rr::{Name, Record};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use super::handler::Response;

/// `0xC00C`: a pointer to offset 12, where the question name starts.
const QUESTION_NAME: u16 = 0xC000 | 12;

/// The reply as bytes, at most `limit` long; should encoding fail, a bare SERVFAIL.
pub fn encode(questions: &[Query], response: &Response<'_>, limit: u16) -> Vec<u8> {
    match write(questions, response, limit) {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::debug!(%error, "could not encode a reply: SERVFAIL");
            let mut metadata = response.metadata;
            metadata.response_code = ResponseCode::ServFail;
            metadata.truncation = false;
            let mut bytes = Vec::with_capacity(12);
            let header = Header {
                metadata,
                counts: HeaderCounts::default(),
            };
            // Twelve bytes into a growable buffer: cannot fail.
            let _ = header.emit(&mut BinEncoder::new(&mut bytes));
            bytes
        }
    }
}

fn write(questions: &[Query], response: &Response<'_>, limit: u16) -> Result<Vec<u8>, ProtoError> {
    let metadata: Metadata = response.metadata;
    let opt = match &response.edns {
        Some(edns) => {
            let mut edns = edns.clone();
            // The rcode's high bits live in the OPT (BADVERS is 16).
            edns.set_rcode_high(metadata.response_code.high());
            let mut bytes = Vec::new();
            Record::from(&edns).emit(&mut BinEncoder::new(&mut bytes))?;
            Some(bytes)
        }
        None => None,
    };
    let opt_len = opt.as_ref().map_or(0, Vec::len);

    let mut bytes = Vec::with_capacity(usize::from(limit).min(4096));
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(limit.saturating_sub(u16::try_from(opt_len).unwrap_or(u16::MAX)));
    let place = encoder.place::<Header>()?;
    let after_header = encoder.offset();
    let mut questions = questions;
    let mut truncated = false;
    if let Err(error) = questions.iter().try_for_each(|q| q.emit(&mut encoder)) {
        if !matches!(error, ProtoError::MaxBufferSizeExceeded(_)) {
            return Err(error);
        }
        // Only several questions outgrow 512 bytes, and they get FORMERR: say so without
        // them, TC set (over TCP they are echoed), rather than SERVFAIL.
        encoder.set_offset(after_header);
        encoder.trim();
        questions = &[];
        truncated = true;
    }
    let owner = questions.first().map(Query::name);

    let mut counts = [0u16; 3];
    if let Some(reply) = &response.reply {
        let answers = reply.answers.iter().map(AsRef::as_ref);
        let authority = reply.authority.iter().copied();
        let additionals = reply.additionals.iter().copied();
        truncated = truncated
            || !section(&mut encoder, answers, owner, &mut counts[0])?
            || !section(&mut encoder, authority, owner, &mut counts[1])?
            || !section(&mut encoder, additionals, owner, &mut counts[2])?;
    }

    encoder.set_max_size(limit);
    if let Some(opt) = &opt {
        encoder.emit_vec(opt)?;
    }
    let mut metadata = metadata;
    metadata.truncation |= truncated;
    let header = Header {
        metadata,
        counts: HeaderCounts {
            queries: u16::try_from(questions.len())
                .map_err(|_| ProtoError::from("too many questions"))?,
            answers: counts[0],
            authorities: counts[1],
            additionals: counts[2] + u16::from(opt.is_some()),
        },
    };
    let end = encoder.offset();
    place.replace(&mut encoder, header)?;
    bytes.truncate(end);
    Ok(bytes)
}

/// Write records until one does not fit; `false` if one did not (it is left out whole).
fn section<'r>(
    encoder: &mut BinEncoder<'_>,
    records: impl Iterator<Item = &'r Record>,
    question: Option<&Name>,
    count: &mut u16,
) -> Result<bool, ProtoError> {
    for record in records {
        let start = encoder.offset();
        match emit(encoder, record, question) {
            Ok(()) => {
                *count = count
                    .checked_add(1)
                    .ok_or_else(|| ProtoError::from("too many records"))?;
            }
            Err(ProtoError::MaxBufferSizeExceeded(_)) => {
                // Forget the cut record: its bytes, and the names it offered for compression.
                encoder.set_offset(start);
                encoder.trim();
                return Ok(false);
            }
            Err(error) => return Err(error),
        }
    }
    Ok(true)
}

/// One record; its owner as a pointer to the question when it is the question name.
fn emit(
    encoder: &mut BinEncoder<'_>,
    record: &Record,
    question: Option<&Name>,
) -> Result<(), ProtoError> {
    // `Name`'s equality ignores case (RFC 4343).
    if question != Some(&record.name) {
        return record.emit(encoder);
    }
    encoder.emit_u16(QUESTION_NAME)?;
    record.record_type().emit(encoder)?;
    record.dns_class.emit(encoder)?;
    encoder.emit_u32(record.ttl)?;
    let place = encoder.place::<u16>()?;
    record.data.emit(encoder)?;
    let len = encoder.len_since_place(&place);
    place.replace(
        encoder,
        u16::try_from(len).map_err(|_| ProtoError::from("RDATA too long"))?,
    )
}
