//! From (snapshot, question, client) to the records of a reply. No wire format here: the
//! handler encodes. Records are borrowed from the snapshot, never copied.

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, RData, Record, RecordType};

use crate::decision::Decision;
use crate::snapshot::{Snapshot, Steered};
use crate::zone::Lookup;

/// CNAME chains longer than this inside our own zones are cut (loops, mistakes).
const MAX_CHAIN: usize = 8;

/// What to send back, before encoding.
#[derive(Debug)]
pub struct Reply<'s> {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub answers: Vec<&'s Record>,
    pub authority: Vec<&'s Record>,
    pub additionals: Vec<&'s Record>,
    /// ECS scope prefix: 0 unless a steered decision shaped the answer.
    pub scope: u8,
    /// The steering decision, when a steered name was answered.
    pub decision: Option<Decision>,
}

impl Reply<'_> {
    fn new(rcode: ResponseCode, authoritative: bool) -> Self {
        Reply {
            rcode,
            authoritative,
            answers: Vec::new(),
            authority: Vec::new(),
            additionals: Vec::new(),
            scope: 0,
            decision: None,
        }
    }

    pub fn refused() -> Self {
        Self::new(ResponseCode::Refused, false)
    }
}

/// Who is asking, for steering.
#[derive(Debug, Clone, Copy)]
pub enum Client {
    /// Steer on this address (the ECS address, or the resolver's own).
    Address(IpAddr),
    /// The resolver sent ECS with prefix 0: it asks for an answer that fits every client.
    Anyone,
}

/// Answer a question from the snapshot.
pub fn resolve<'s>(
    snapshot: &'s Snapshot,
    qname: &LowerName,
    qtype: RecordType,
    client: Client,
) -> Reply<'s> {
    let Some(first_zone) = snapshot.zones.find(qname) else {
        return Reply::refused();
    };
    let mut reply = Reply::new(ResponseCode::NoError, true);
    let mut zone = first_zone;
    let mut name = qname.clone();

    for _ in 0..MAX_CHAIN {
        let next = match zone.lookup(&name, qtype) {
            Lookup::Answer(records) => {
                reply.answers.extend(records);
                None
            }
            Lookup::Cname(record) => {
                reply.answers.push(record);
                cname_target(record)
            }
            Lookup::Steered(index) => {
                let steered = &snapshot.steered[index];
                let decision = decide(snapshot, steered, client);
                reply.scope = reply.scope.max(decision.scope);
                reply.decision = Some(decision);
                let records = &steered.answers[usize::from(decision.choice.target.0)];
                match (&records.cname, qtype) {
                    (Some(cname), _) => {
                        reply.answers.push(cname);
                        cname_target(cname)
                    }
                    (None, RecordType::A) => {
                        reply.answers.extend(&records.a);
                        None
                    }
                    (None, RecordType::AAAA) => {
                        reply.answers.extend(&records.aaaa);
                        None
                    }
                    // RFC 8482: one RRset is a complete answer to ANY.
                    (None, RecordType::ANY) => {
                        if records.a.is_empty() {
                            reply.answers.extend(&records.aaaa);
                        } else {
                            reply.answers.extend(&records.a);
                        }
                        None
                    }
                    (None, _) => None,
                }
            }
            Lookup::NoData => None,
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
        };
        let Some(target) = next else { break };
        // Follow aliases only through our own data; anything else the resolver follows.
        match snapshot.zones.find(&target) {
            Some(z) if qtype != RecordType::CNAME => {
                zone = z;
                name = target;
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

fn decide(snapshot: &Snapshot, steered: &Steered, client: Client) -> Decision {
    match client {
        Client::Address(ip) => {
            let located = snapshot.geo.locate(ip);
            steered.table.decide(ip, &located, &snapshot.geo)
        }
        Client::Anyone => steered.table.fallback(),
    }
}

fn cname_target(record: &Record) -> Option<LowerName> {
    match &record.data {
        RData::CNAME(target) => Some(LowerName::new(&target.0)),
        _ => None,
    }
}
