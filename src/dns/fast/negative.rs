//! Negative answers on the fast path: NXDOMAIN for a name under our zones that does not exist,
//! NODATA for one that exists (or is an empty non-terminal, or an ancestor of a steered name)
//! without records of the type asked, each with the zone's SOA in the authority section: the
//! reply the full path gives, byte for byte, so a flood of random names under a zone costs
//! what a static answer costs.
//!
//! Declined (the full path answers): names below a delegation (referrals), CNAME owners,
//! names a wildcard answers, `_explain.` names, the RUM zone's names (its nonce names are
//! answered and logged there), signed zones (their negative answers would need NSEC records),
//! the meta types (ANY, AXFR, IXFR, OPT and the rest of 128..=255) and type 0.
//!
//! The SOA's names are compressed as the full path's encoder (hickory-proto's) compresses
//! them: a name's longest label sequence already written, byte for byte, becomes a pointer,
//! among at most 64 remembered sequences. Since that depends on how the question is spelled
//! (0x20 case), it is worked out per query, on the stack.

use super::{Query, Writer, opt_len, put_opt, reply_limit};
use crate::snapshot::Snapshot;
use crate::zone::{EXPLAIN_LABEL, NegativeSoa};

const NOERROR: u8 = 0;
const NXDOMAIN: u8 = 3;
const TYPE_OPT: u16 = 41;
/// Where the question's name starts.
const QUESTION_AT: usize = 12;

/// Write the negative reply to `query` into `out`; `None` for the full path.
pub(super) fn answer(snapshot: &Snapshot, query: &Query<'_>, out: &mut [u8]) -> Option<usize> {
    if query.qtype == 0 || query.qtype == TYPE_OPT || query.qtype >= 128 {
        return None;
    }
    let key = query.name_key();
    if key.get(1..1 + EXPLAIN_LABEL.len()) == Some(EXPLAIN_LABEL)
        && usize::from(key[0]) == EXPLAIN_LABEL.len()
    {
        return None;
    }
    let absence = snapshot.zones.names().absence(key)?;
    let exists = absence.exists || snapshot.steered_parents_by_key.contains_key(key);
    if !exists && (absence.wildcard || in_rum_zone(snapshot, key)) {
        return None;
    }
    let rcode = if exists { NOERROR } else { NXDOMAIN };

    let payload = reply_limit(snapshot, query);
    let limit = usize::from(payload).min(out.len());
    // The full path keeps room for its OPT record while writing the sections.
    let sections = limit.checked_sub(query.edns.as_ref().map_or(0, opt_len))?;
    let mut w = Writer {
        out: out.get_mut(..sections)?,
        at: 0,
    };
    // QR, opcode QUERY, AA, RD copied; RA, Z, AD clear, CD copied.
    let flags = [
        0x84 | u8::from(query.recursion_desired),
        rcode | if query.checking_disabled { 0x10 } else { 0 },
    ];
    w.put(&query.id)?;
    w.put(&flags)?;
    w.put(&[0, 1, 0, 0, 0, 1, 0])?;
    w.put(&[u8::from(query.edns.is_some())])?;
    w.put(query.question)?;
    let mut pointers = Pointers::default();
    pointers.remember_name(QUESTION_AT, query.spelled_name());
    put_soa(&mut w, &mut pointers, query, absence.soa)?;
    let mut w = Writer {
        at: w.at,
        out: out.get_mut(..limit)?,
    };
    if let Some(edns) = &query.edns {
        put_opt(&mut w, edns, payload, 0)?;
    }
    Some(w.at)
}

/// The SOA record, as the full path's encoder writes it after the question.
fn put_soa<'a>(
    w: &mut Writer<'_>,
    pointers: &mut Pointers<'a>,
    query: &Query<'_>,
    soa: &'a NegativeSoa,
) -> Option<()> {
    if *soa.owner_key == *query.name_key() {
        // The owner is the question (any case): a pointer to it, as `encode` writes it.
        w.put(&[0xc0, QUESTION_AT as u8])?;
    } else {
        put_name(w, pointers, &soa.owner)?;
    }
    w.put(&soa.head)?;
    let length_at = w.at;
    w.put(&[0, 0])?;
    put_name(w, pointers, &soa.mname)?;
    put_name(w, pointers, &soa.rname)?;
    w.put(&soa.tail)?;
    let length = u16::try_from(w.at - length_at - 2).ok()?;
    w.out
        .get_mut(length_at..length_at + 2)?
        .copy_from_slice(&length.to_be_bytes());
    Some(())
}

/// Write `labels` (wire labels without the root) compressed against what was written before.
fn put_name<'a>(w: &mut Writer<'_>, pointers: &mut Pointers<'a>, labels: &'a [u8]) -> Option<()> {
    let start = w.at;
    // The encoder writes every label before it looks for a pointer: they must fit whole.
    if start + labels.len() > w.out.len() {
        return None;
    }
    let mut at = 0;
    while at < labels.len() {
        if let Some(target) = pointers.find(&labels[at..]) {
            w.put(&labels[..at])?;
            return w.put(&(0xc000 | target).to_be_bytes());
        }
        pointers.remember(start + at, &labels[at..], start + labels.len());
        at += 1 + usize::from(labels[at]);
    }
    w.put(labels)?;
    w.put(&[0])
}

/// hickory-proto's encoder remembers at most this many label sequences per message.
const MAX_POINTERS: usize = 64;
/// Nor does it remember any once the message reaches this offset.
const POINTER_LIMIT: usize = 0x3fff;

/// The label sequences a later name may point at: (offset in the reply, labels to the end of
/// their name, without the root).
struct Pointers<'a> {
    known: [(u16, &'a [u8]); MAX_POINTERS],
    len: usize,
}

impl Default for Pointers<'_> {
    fn default() -> Self {
        Pointers {
            known: [(0, &[]); MAX_POINTERS],
            len: 0,
        }
    }
}

impl<'a> Pointers<'a> {
    fn find(&self, labels: &[u8]) -> Option<u16> {
        self.known[..self.len]
            .iter()
            .find(|(_, known)| *known == labels)
            .map(|(at, _)| *at)
    }

    /// `written_to`: where the encoder stands when it remembers (after the name's labels).
    fn remember(&mut self, at: usize, labels: &'a [u8], written_to: usize) {
        if written_to < POINTER_LIMIT && self.len < MAX_POINTERS {
            self.known[self.len] = (at as u16, labels);
            self.len += 1;
        }
    }

    /// Every label sequence of an uncompressed wire name (root label included) at `at`.
    fn remember_name(&mut self, at: usize, name: &'a [u8]) {
        let labels = &name[..name.len().saturating_sub(1)];
        let mut i = 0;
        while i < labels.len() {
            self.remember(at + i, &labels[i..], at + labels.len());
            i += 1 + usize::from(labels[i]);
        }
    }
}

/// Whether `key` is at or below the RUM zone, whose names the full path answers.
fn in_rum_zone(snapshot: &Snapshot, key: &[u8]) -> bool {
    let Some(rum) = snapshot.rum.as_deref() else {
        return false;
    };
    let mut labels = Labels(key);
    let count = labels.clone().count();
    let origin = rum.origin.num_labels() as usize;
    if count < origin {
        return false;
    }
    labels.by_ref().take(count - origin).for_each(drop);
    labels.eq(rum.origin.iter())
}

/// The labels of an uncompressed wire name, root excluded.
#[derive(Clone)]
struct Labels<'a>(&'a [u8]);

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let len = usize::from(*self.0.first()?);
        if len == 0 {
            return None;
        }
        let label = self.0.get(1..1 + len)?;
        self.0 = &self.0[1 + len..];
        Some(label)
    }
}
