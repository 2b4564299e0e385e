//! The UDP fast path: answers the common queries straight from pre-rendered wire bytes.
//!
//! Covered: A and AAAA for steered names whose chosen targets have addresses, any type a zone
//! holds records for at exactly the question name (see `Zones::answers`), and the negative
//! answers (`negative`: NXDOMAIN and NODATA with the zone's SOA). The reply is the query's
//! header and question, the rendered records, and our OPT record with the ECS option echoed
//! and its scope filled in: no message object, no name encoding, no allocation. The decision
//! itself is the same `answer::decide` and `Table::select` the full path uses, with the same
//! `Asker` (so a resolver the resolver map locates as its users is steered alike).
//!
//! Anything else returns `None` and goes to the full path (`handler` on hickory-proto), which
//! is the reference: CNAME chains, NODATA for steered names, referrals, wildcards, explain and
//! RUM zone names, ANY, errors of every kind (a question with a compression pointer among
//! them: FORMERR there), responses (dropped there), and replies too large for the client's
//! buffer (which get TC there). A source the shared rule refuses
//! ([`super::source::answerable`]) gets `None`, and the full path gives it nothing either.
//! `tests/it/fastpath.rs` checks that both paths give the same answers.

mod negative;
mod query;

use std::net::SocketAddr;

use super::answer::{self, Asker};
use super::counters;
use super::source::answerable;
use super::{PLAIN_UDP_LIMIT, reply_payload};
use crate::decision::MAX_ANSWERS;
use crate::snapshot::{Snapshot, Steered, TargetWire};
use crate::wire::RenderedRrs;

pub use query::{Ecs, Edns, Query, parse};

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_CNAME: u16 = 5;

/// Write the reply to `raw` into `out`; returns its length, or `None` for the full path.
/// A source [`answerable`] refuses gets `None` here too, and none from the full path.
pub fn answer(snapshot: &Snapshot, raw: &[u8], from: SocketAddr, out: &mut [u8]) -> Option<usize> {
    if !answerable(from) {
        return None;
    }
    let query = parse(raw)?;
    let mut parts: [Option<&RenderedRrs>; MAX_ANSWERS] = [None; MAX_ANSWERS];
    let (scope, counted) = match snapshot.steered_by_key.get(query.name_key()) {
        Some((steered, aliases_leave)) => {
            let (scope, first) =
                steered_parts(snapshot, steered, *aliases_leave, &query, from, &mut parts)?;
            (scope, Some((&**steered, first)))
        }
        None => match snapshot.zones.answers().get(query.name_type_key()) {
            Some(records) => {
                parts[0] = Some(records);
                (0, None)
            }
            None => return negative::answer(snapshot, &query, out),
        },
    };
    let limit = reply_limit(snapshot, &query);
    let out = out.get_mut(..usize::from(limit).min(out.len()))?;
    let len = write_reply(&query, parts.iter().flatten().copied(), scope, limit, out)?;
    // Counted only once the reply is ours: a decline falls to the full path, which counts.
    if let Some((steered, first)) = counted {
        counters::count(steered, first, query.qtype);
    }
    Some(len)
}

/// The chosen targets' records for the question type, the ECS scope they hold for, and the
/// first chosen target (the one counted).
fn steered_parts<'s>(
    snapshot: &Snapshot,
    steered: &'s Steered,
    aliases_leave_our_zones: bool,
    query: &Query<'_>,
    from: SocketAddr,
    parts: &mut [Option<&'s RenderedRrs>; MAX_ANSWERS],
) -> Option<(u8, usize)> {
    if !matches!(query.qtype, TYPE_A | TYPE_AAAA | TYPE_CNAME) {
        return None;
    }
    let asker = Asker::new(
        snapshot,
        from.ip().to_canonical(),
        query
            .edns
            .and_then(|e| e.ecs)
            .map(|ecs| (ecs.address, ecs.source_prefix)),
    );
    let decision = answer::decide(snapshot, steered, &asker);
    let selected = steered.table.select(&decision, asker.steer_on());
    let first = selected.as_slice().first()?.index();
    let mut any = false;
    for (slot, target) in parts.iter_mut().zip(selected.as_slice()) {
        let records = match steered.wire.get(target.index())?.as_ref()? {
            // The first target's alias is the whole answer, whatever the type asked (as in
            // `answer::resolve`), as long as the resolver, not we, follows it.
            TargetWire::Cname { record, .. } if !any && aliases_leave_our_zones => {
                *slot = Some(record);
                return Some((decision.scope, first));
            }
            TargetWire::Cname { .. } => return None,
            TargetWire::Addresses { a, .. } if query.qtype == TYPE_A => a,
            TargetWire::Addresses { aaaa, .. } if query.qtype == TYPE_AAAA => aaaa,
            TargetWire::Addresses { .. } => return None,
        };
        any |= !records.is_empty();
        *slot = Some(records);
    }
    // No records of this type among the chosen targets: NODATA, with the SOA, is full path.
    any.then_some((decision.scope, first))
}

/// Header, question, answers, OPT; `None` if it does not fit in `out`.
fn write_reply<'r>(
    query: &Query<'_>,
    parts: impl Iterator<Item = &'r RenderedRrs> + Clone,
    scope: u8,
    payload: u16,
    out: &mut [u8],
) -> Option<usize> {
    let mut w = Writer { out, at: 0 };
    let answers = parts
        .clone()
        .try_fold(0u16, |n, p| n.checked_add(p.count()))?;
    // QR, opcode QUERY, AA, RD copied; RA, Z, AD clear, CD copied; NOERROR.
    let flags = [
        0x84 | u8::from(query.recursion_desired),
        if query.checking_disabled { 0x10 } else { 0 },
    ];
    w.put(&query.id)?;
    w.put(&flags)?;
    w.put(&[0, 1])?;
    w.put(&answers.to_be_bytes())?;
    w.put(&[0, 0])?;
    w.put(&u16::from(query.edns.is_some()).to_be_bytes())?;
    w.put(query.question)?;
    for part in parts {
        w.put(part.bytes())?;
    }
    if let Some(edns) = &query.edns {
        put_opt(&mut w, edns, payload, scope)?;
    }
    Some(w.at)
}

/// The reply's size limit: 512 without EDNS, else the client's size within ours.
fn reply_limit(snapshot: &Snapshot, query: &Query<'_>) -> u16 {
    match &query.edns {
        None => PLAIN_UDP_LIMIT,
        Some(edns) => reply_payload(edns.payload, snapshot.settings.max_udp_payload),
    }
}

/// Our OPT record's RDATA length: the echoed ECS option, or nothing.
fn opt_rdata_len(edns: &Edns<'_>) -> usize {
    edns.ecs.map_or(0, |e| 8 + e.address_bytes.len())
}

/// Our OPT record's length in bytes.
fn opt_len(edns: &Edns<'_>) -> usize {
    11 + opt_rdata_len(edns)
}

/// Our OPT record: the ECS option echoed with `scope` filled in, no other option.
fn put_opt(w: &mut Writer<'_>, edns: &Edns<'_>, payload: u16, scope: u8) -> Option<()> {
    let ecs_len = opt_rdata_len(edns);
    // Root owner, OPT, our payload size, extended rcode 0, version 0, DO echoed.
    w.put(&[0, 0, 41])?;
    w.put(&payload.to_be_bytes())?;
    w.put(&[0, 0, if edns.dnssec_ok { 0x80 } else { 0 }, 0])?;
    w.put(&(ecs_len as u16).to_be_bytes())?;
    if let Some(ecs) = edns.ecs {
        w.put(&[0, 8])?;
        w.put(&((4 + ecs.address_bytes.len()) as u16).to_be_bytes())?;
        w.put(&ecs.family)?;
        w.put(&[ecs.source_prefix, scope])?;
        w.put(ecs.address_bytes)?;
    }
    Some(())
}

/// Appends to a fixed buffer; `None` once it is full.
struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.at + bytes.len();
        self.out.get_mut(self.at..end)?.copy_from_slice(bytes);
        self.at = end;
        Some(())
    }
}
