//! Answers rendered to DNS wire format ahead of time, so the UDP fast path answers a query with
//! a few `memcpy`s instead of building and encoding a message.
//!
//! Every rendered record's owner is a compression pointer to the question name (offset 12),
//! which the fast path copies from the query: the answer keeps the client's spelling (0x20
//! case randomisation) and each owner costs 2 bytes. Lookup keys are lower-cased wire names,
//! hashed with a cheap multiplicative hash: keys are our own names, so a client can pick what
//! it looks up but not what collides. Pure; depends on hickory-proto only.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use hickory_proto::ProtoError;
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

/// Offset of the question name in every DNS message: the owner of every rendered record.
const QUESTION_POINTER: [u8; 2] = [0xC0, 0x0C];
/// Longest name in wire format (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;

/// Resource records in wire format, owners pointing at the question.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderedRrs {
    bytes: Box<[u8]>,
    count: u16,
}

impl RenderedRrs {
    /// Render records for the answer section of a reply to a question for their owner.
    pub fn render<'r>(records: impl IntoIterator<Item = &'r Record>) -> Result<Self, ProtoError> {
        let mut bytes = Vec::new();
        let mut count = 0u16;
        for record in records {
            let mut full = Vec::new();
            let mut encoder = BinEncoder::new(&mut full);
            // Names inside RDATA are written in full: a pointer would be relative to this
            // scratch buffer, not to the message the bytes end up in.
            encoder.set_name_encoding(NameEncoding::Uncompressed);
            record.emit(&mut encoder)?;
            let owner_len = wire_len(&record.name);
            bytes.extend_from_slice(&QUESTION_POINTER);
            bytes.extend_from_slice(&full[owner_len..]);
            count = count
                .checked_add(1)
                .ok_or_else(|| ProtoError::from("too many records"))?;
        }
        Ok(RenderedRrs {
            bytes: bytes.into_boxed_slice(),
            count,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn count(&self) -> u16 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// The lower-cased wire form of a name: how the fast path looks names up.
pub fn name_key(name: &Name) -> Vec<u8> {
    let mut key = Vec::with_capacity(wire_len(name));
    for label in name.iter() {
        key.push(label.len() as u8);
        key.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    key.push(0);
    key
}

/// Length of a name in uncompressed wire format.
fn wire_len(name: &Name) -> usize {
    name.iter().map(|l| l.len() + 1).sum::<usize>() + 1
}

/// Pre-rendered answers keyed by (lower-cased wire name, type): the static part of the zones.
#[derive(Debug, Clone, Default)]
pub struct AnswerIndex {
    by_key: HashMap<Box<[u8]>, RenderedRrs, BuildWireHasher>,
}

impl AnswerIndex {
    pub fn insert(&mut self, name: &Name, rtype: RecordType, rrs: RenderedRrs) {
        let mut key = name_key(name);
        key.extend_from_slice(&u16::from(rtype).to_be_bytes());
        self.by_key.insert(key.into_boxed_slice(), rrs);
    }

    /// `key` is the lower-cased wire name followed by the type, big-endian.
    pub fn get(&self, key: &[u8]) -> Option<&RenderedRrs> {
        self.by_key.get(key)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// A map from lower-cased wire names, for the fast path's per-query lookups.
pub type NameMap<V> = HashMap<Box<[u8]>, V, BuildWireHasher>;

pub type BuildWireHasher = BuildHasherDefault<WireHasher>;

/// Eight bytes at a time, rotate-xor-multiply (as in rustc's FxHash): a few nanoseconds for a
/// DNS name, where SipHash costs several times that on every query.
#[derive(Default)]
pub struct WireHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl WireHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for WireHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Message;
    use hickory_proto::rr::RData;
    use hickory_proto::rr::rdata::{A, CNAME};
    use hickory_proto::serialize::binary::BinDecodable;

    /// Rendered records placed after a question parse back as the same records, owned by the
    /// question name as the client spelled it.
    #[test]
    fn rendered_records_parse_back_after_a_question() {
        let owner = Name::from_ascii("www.example.com.").unwrap();
        let records = [
            Record::from_rdata(owner.clone(), 30, RData::A(A::new(192, 0, 2, 1))),
            Record::from_rdata(
                owner.clone(),
                30,
                RData::CNAME(CNAME(Name::from_ascii("cdn.example.net.").unwrap())),
            ),
        ];
        let rendered = RenderedRrs::render(&records).unwrap();
        assert_eq!(rendered.count(), 2);

        let mut message = vec![0x12, 0x34, 0x84, 0, 0, 1, 0, 2, 0, 0, 0, 0];
        message.extend(
            [3, b'W', b'w', b'W', 7]
                .iter()
                .chain(b"example")
                .chain(&[3])
                .chain(b"com")
                .chain(&[0, 0, 1, 0, 1]),
        );
        message.extend_from_slice(rendered.bytes());
        let parsed = Message::from_bytes(&message).unwrap();
        assert_eq!(parsed.answers.len(), 2);
        assert_eq!(parsed.answers[0].name.to_ascii(), "WwW.example.com.");
        assert_eq!(parsed.answers[0].data, records[0].data);
        assert_eq!(parsed.answers[1].data, records[1].data);
    }

    #[test]
    fn name_keys_are_lower_case_wire_names() {
        let name = Name::from_ascii("WWW.Example.COM.").unwrap();
        assert_eq!(name_key(&name), b"\x03www\x07example\x03com\x00");
        assert_eq!(name_key(&Name::root()), b"\x00");
    }
}
