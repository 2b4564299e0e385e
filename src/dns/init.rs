//! The RUM zone's nonce names (`<nonce>.<rum zone>`, see `rum::init_zone`): answered with the
//! init addresses, TTL 0, ECS scope /0, and logged (nonce, resolver, ECS, time) to the
//! snapshot's nonce log without blocking. Only names the zone data does not hold reach here,
//! so other queries never pay for it; the fast path never sees these names (they are in none
//! of its tables), so the full path (UDP and TCP) answers them.

use std::borrow::Cow;
use std::time::SystemTime;

use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use ipnet::IpNet;

use super::answer::{Asker, Reply};
use crate::rum::init_zone::TTL;
use crate::rum::nonce_log::DnsSighting;
use crate::snapshot::Snapshot;

/// When `name` is a nonce name: log the query, add the records `qtype` asks for (none: NODATA)
/// and return true.
pub(super) fn answer(
    snapshot: &Snapshot,
    name: &LowerName,
    qtype: RecordType,
    asker: &Asker,
    reply: &mut Reply<'_>,
) -> bool {
    let Some(zone) = snapshot.rum.as_deref() else {
        return false;
    };
    let Some(nonce) = zone.nonce_of(name) else {
        return false;
    };
    zone.log.record(DnsSighting {
        nonce,
        resolver: asker.resolver,
        ecs: asker.subnet.and_then(|(a, p)| IpNet::new(a, p).ok()),
        at: SystemTime::now(),
    });
    let owner = || Name::from(name);
    let a = || {
        zone.a
            .iter()
            .map(|ip| Record::from_rdata(owner(), TTL, RData::A(A(*ip))))
    };
    let aaaa = || {
        zone.aaaa
            .iter()
            .map(|ip| Record::from_rdata(owner(), TTL, RData::AAAA(AAAA(*ip))))
    };
    match qtype {
        RecordType::A => reply.answers.extend(a().map(Cow::Owned)),
        RecordType::AAAA => reply.answers.extend(aaaa().map(Cow::Owned)),
        // RFC 8482: one RRset is a complete answer to ANY.
        RecordType::ANY if !zone.a.is_empty() => reply.answers.extend(a().map(Cow::Owned)),
        RecordType::ANY => reply.answers.extend(aaaa().map(Cow::Owned)),
        _ => {}
    }
    // The same answer for every client.
    reply.scope = 0;
    true
}
