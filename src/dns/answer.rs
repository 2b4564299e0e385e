//! From (snapshot, question, client) to the records of a reply. No wire format here: the
//! handler encodes. Records are borrowed from the snapshot, never copied, except the TXT
//! records of an explain name and the records of a RUM nonce name ([`super::init`]), whose
//! query is also logged: the one side effect of answering.

use std::borrow::Cow;
use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use super::init;
use crate::decision::Decision;
use crate::explain;
use crate::snapshot::{Snapshot, Steered};
use crate::zone::{EXPLAIN_LABEL, Lookup};

/// CNAME chains longer than this inside our own zones are cut (loops, mistakes).
const MAX_CHAIN: usize = 8;

/// What to send back, before encoding.
#[derive(Debug)]
pub struct Reply<'s> {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    /// Borrowed from the snapshot, or made for this query (wildcards, explain names).
    pub answers: Vec<Cow<'s, Record>>,
    pub authority: Vec<&'s Record>,
    pub additionals: Vec<&'s Record>,
    /// ECS scope prefix: 0 unless a steered decision shaped the answer.
    pub scope: u8,
    /// The steering decision, when a steered name was answered.
    pub decision: Option<Decision>,
    /// The steered names answered on the way (a chain may pass several) and their first
    /// chosen target: counted by [`resolve`] once the reply's rcode is final.
    counted: [Option<(&'s Steered, usize)>; MAX_CHAIN],
}

impl<'s> Reply<'s> {
    fn new(rcode: ResponseCode, authoritative: bool) -> Self {
        Reply {
            rcode,
            authoritative,
            answers: Vec::new(),
            authority: Vec::new(),
            additionals: Vec::new(),
            scope: 0,
            decision: None,
            counted: [None; MAX_CHAIN],
        }
    }

    /// Note an answer of `steered` by its first chosen target, to count with the final rcode.
    fn note_counted(&mut self, steered: &'s Steered, target: usize) {
        if let Some(slot) = self.counted.iter_mut().find(|s| s.is_none()) {
            *slot = Some((steered, target));
        }
    }

    pub fn refused() -> Self {
        Self::new(ResponseCode::Refused, false)
    }
}

/// Who is asking, for steering.
#[derive(Debug, Clone, Copy)]
pub struct Asker {
    /// The resolver's own address.
    pub resolver: IpAddr,
    /// The ECS subnet, when sent: (address, source prefix).
    pub subnet: Option<(IpAddr, u8)>,
    /// Without ECS, from the snapshot's resolver map: an address of the resolver's users,
    /// located instead of the resolver.
    pub mapped: Option<IpAddr>,
}

impl Asker {
    /// The asker of a query, with the resolver map of `snapshot` applied: a query without ECS
    /// costs one hash lookup while the map has entries, none while it is empty; a query with
    /// ECS none at all.
    #[inline]
    pub fn new(snapshot: &Snapshot, resolver: IpAddr, subnet: Option<(IpAddr, u8)>) -> Self {
        let mapped = match subnet {
            None => snapshot.resolver_map.steer_as(resolver),
            Some(_) => None,
        };
        Asker {
            resolver,
            subnet,
            mapped,
        }
    }

    /// The address to steer on: the ECS address, else the resolver's users' (when the
    /// resolver map has it), else the resolver's. `None` for ECS /0, which asks for an answer
    /// that fits every client.
    pub fn steer_on(&self) -> Option<IpAddr> {
        match self.subnet {
            Some((_, 0)) => None,
            Some((address, _)) => Some(address),
            None => Some(self.mapped.unwrap_or(self.resolver)),
        }
    }
}

/// Answer a question from the snapshot, counting the steered names answered
/// ([`super::counters`]) under the reply's final rcode.
pub fn resolve<'s>(
    snapshot: &'s Snapshot,
    qname: &LowerName,
    qtype: RecordType,
    asker: &Asker,
) -> Reply<'s> {
    let reply = resolve_uncounted(snapshot, qname, qtype, asker);
    for (steered, target) in reply.counted.iter().flatten() {
        super::counters::count_rcode(
            steered,
            *target,
            u16::from(qtype),
            u16::from(reply.rcode.low()),
        );
    }
    reply
}

fn resolve_uncounted<'s>(
    snapshot: &'s Snapshot,
    qname: &LowerName,
    qtype: RecordType,
    asker: &Asker,
) -> Reply<'s> {
    let Some(first_zone) = snapshot.zones.find(qname) else {
        return Reply::refused();
    };
    let mut reply = Reply::new(ResponseCode::NoError, true);
    if snapshot.settings.explain_names
        && let Some(done) = explain_name(snapshot, qname, qtype, asker, &mut reply)
    {
        if !done {
            reply.authority.push(first_zone.negative_soa());
        }
        return reply;
    }
    let mut zone = first_zone;
    // Borrowed until a CNAME moves the lookup on: no copy of the question per query.
    let mut name = Cow::Borrowed(qname);

    for _ in 0..MAX_CHAIN {
        let next = if let Some(steered) = snapshot.steered.get(name.as_ref()) {
            steered_answer(snapshot, steered, qtype, asker, &mut reply)
        } else {
            match zone.lookup(&name, qtype) {
                Lookup::Answer(records) => {
                    reply.answers.extend(records.iter().map(Cow::Borrowed));
                    None
                }
                Lookup::Cname(record) => {
                    reply.answers.push(Cow::Borrowed(record));
                    cname_target(record)
                }
                Lookup::NoData => None,
                // Ancestors of steered names exist: no wildcard, no NXDOMAIN.
                Lookup::NxDomain | Lookup::Synthesized(_) | Lookup::SynthesizedCname(_)
                    if snapshot.steered_parents.contains(name.as_ref()) =>
                {
                    None
                }
                // RUM nonce names exist too. Checked only for names the zone does not hold,
                // so no other query pays for it.
                Lookup::NxDomain | Lookup::Synthesized(_) | Lookup::SynthesizedCname(_)
                    if init::answer(snapshot, &name, qtype, asker, &mut reply) =>
                {
                    None
                }
                Lookup::Synthesized(records) => {
                    reply.answers.extend(records.into_iter().map(Cow::Owned));
                    None
                }
                Lookup::SynthesizedCname(record) => {
                    let next = cname_target(&record);
                    reply.answers.push(Cow::Owned(*record));
                    next
                }
                Lookup::NxDomain => {
                    // RFC 6604: the rcode describes the last name of a chain.
                    reply.rcode = ResponseCode::NXDomain;
                    None
                }
                Lookup::Referral { ns, glue } => {
                    if reply.answers.is_empty() {
                        reply.authoritative = false;
                        reply.authority.extend(ns);
                        reply.additionals.extend(glue);
                    }
                    return reply;
                }
            }
        };
        let Some(target) = next else { break };
        // Follow aliases only through our own data; anything else the resolver follows.
        match snapshot.zones.find(&target) {
            Some(z) if qtype != RecordType::CNAME => {
                zone = z;
                name = Cow::Owned(target);
            }
            _ => return reply,
        }
    }

    let answered_last = reply
        .answers
        .last()
        .is_some_and(|r| r.record_type() == qtype || qtype == RecordType::ANY);
    if !answered_last {
        reply.authority.push(zone.negative_soa());
    }
    reply
}

/// Add a steered name's answer; returns the CNAME target to follow, if any.
fn steered_answer<'s>(
    snapshot: &'s Snapshot,
    steered: &'s Steered,
    qtype: RecordType,
    asker: &Asker,
    reply: &mut Reply<'s>,
) -> Option<LowerName> {
    let decision = decide(snapshot, steered, asker);
    reply.scope = reply.scope.max(decision.scope);
    reply.decision = Some(decision);
    let selected = steered.table.select(&decision, asker.steer_on());
    let targets = selected.as_slice();
    if let Some(first) = targets.first() {
        reply.note_counted(steered, first.index());
    }
    let mut records = targets.iter().map(|t| steered.records(t.index()));
    let first = records.next()?;
    if let Some(cname) = first.cname {
        let target = cname_target(&cname);
        reply.answers.push(Cow::Owned(cname));
        return target;
    }
    let (mut a, mut aaaa) = (first.a, first.aaaa);
    for more in records {
        a.extend(more.a);
        aaaa.extend(more.aaaa);
    }
    let rrset = match qtype {
        RecordType::A => a,
        RecordType::AAAA => aaaa,
        // RFC 8482: one RRset is a complete answer to ANY.
        RecordType::ANY if !a.is_empty() => a,
        RecordType::ANY => aaaa,
        _ => Vec::new(),
    };
    reply.answers.extend(rrset.into_iter().map(Cow::Owned));
    None
}

pub fn decide(snapshot: &Snapshot, steered: &Steered, asker: &Asker) -> Decision {
    match asker.steer_on() {
        Some(ip) => steered.table.decide_for(ip, &snapshot.geo),
        None => steered.table.fallback(),
    }
}

/// `_explain.<steered name>`: `Some(answered)` when the name is an explain name.
fn explain_name(
    snapshot: &Snapshot,
    qname: &LowerName,
    qtype: RecordType,
    asker: &Asker,
    reply: &mut Reply<'_>,
) -> Option<bool> {
    // Checked on the lower-cased labels in place: no allocation for ordinary queries.
    if qname.num_labels() < 2 || qname.iter().next()? != EXPLAIN_LABEL {
        return None;
    }
    let name: Name = qname.into();
    let target = LowerName::new(&name.base_name());
    let steered = snapshot.steered.get(&target)?;
    if !matches!(qtype, RecordType::TXT | RecordType::ANY) {
        return Some(false);
    }
    let explanation = explain::explain(snapshot, steered, asker);
    // Explanations are per asker: never let a resolver share them.
    let lines: Vec<String> = explanation
        .lines()
        .into_iter()
        .map(|mut l| {
            // A TXT string holds at most 255 bytes; cut on a character boundary.
            let mut end = l.len().min(255);
            while !l.is_char_boundary(end) {
                end -= 1;
            }
            l.truncate(end);
            l
        })
        .collect();
    reply.answers.push(Cow::Owned(Record::from_rdata(
        name,
        0,
        RData::TXT(TXT::new(lines)),
    )));
    reply.scope = 0;
    Some(true)
}

fn cname_target(record: &Record) -> Option<LowerName> {
    match &record.data {
        RData::CNAME(target) => Some(LowerName::new(&target.0)),
        _ => None,
    }
}
