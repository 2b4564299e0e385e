//! Why a client gets its answer: the decision DNS makes, with the chain's notes.
//!
//! Used by `GET /api/v1/explain`, `steerdns explain` and the `_explain.<name>` TXT names. It
//! locates the client and decides exactly as a query does, then re-runs the policy chain for
//! the same compiled row with tracing on, at the clock the table was compiled at, so the notes
//! and the answer always agree. Reads one snapshot; no I/O. A resolver without ECS that the
//! resolver map locates as its users is explained as such, with the numbers.

use std::net::IpAddr;

use serde::Serialize;

use crate::dns::answer::{self, Asker};
use crate::policy::{self, Client, TargetAnswer, Trace};
use crate::snapshot::{Snapshot, Steered};

#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub name: String,
    pub generation: u64,
    pub resolver: IpAddr,
    /// The ECS subnet as `address/prefix`, if one was given.
    pub ecs: Option<String>,
    /// The address steered on (none for ECS /0).
    pub client: Option<IpAddr>,
    /// Why `client` is not the resolver without ECS: "located by resolver map: 91% of 1,204
    /// sessions via 192.0.2.53 are AS3320/DE (steered as 198.51.100.0)".
    pub resolver_map: Option<String>,
    pub location: String,
    pub asn: Option<u32>,
    pub asn_organisation: Option<String>,
    /// Target id → health state, for every target of the policy.
    pub health: Vec<(String, String)>,
    pub steps: Vec<String>,
    pub reason: String,
    /// The deciding geo rule as `rules[i]`, if a rule decided.
    pub rule: Option<String>,
    pub targets: Vec<String>,
    pub answer: Vec<String>,
    pub scope: u8,
}

impl Explanation {
    /// One line per fact, for terminals and TXT records.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![
            format!("name={} generation={}", self.name, self.generation),
            format!(
                "resolver={} ecs={}",
                self.resolver,
                self.ecs.as_deref().unwrap_or("none")
            ),
            format!(
                "client={} {}",
                self.client
                    .map_or("none (ECS /0)".into(), |c| c.to_string()),
                self.location
            ),
        ];
        lines.extend(self.resolver_map.iter().cloned());
        lines.extend([format!(
            "asn={}{}",
            self.asn.map_or("none".into(), |a| a.to_string()),
            self.asn_organisation
                .as_ref()
                .map(|o| format!(" ({o})"))
                .unwrap_or_default()
        )]);
        let health: Vec<String> = self
            .health
            .iter()
            .map(|(t, s)| format!("{t}={s}"))
            .collect();
        lines.push(format!("health {}", health.join(" ")));
        lines.extend(self.steps.iter().cloned());
        lines.push(format!(
            "reason={}{} targets={} scope=/{}",
            self.reason,
            self.rule
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
            self.targets.join(","),
            self.scope
        ));
        lines.push(format!("answer {}", self.answer.join(" | ")));
        lines
    }
}

/// Explain the answer `steered` gives `asker` in this snapshot.
pub fn explain(snapshot: &Snapshot, steered: &Steered, asker: &Asker) -> Explanation {
    // As a query from this asker would be located in this snapshot.
    let asker = &Asker::new(snapshot, asker.resolver, asker.subnet);
    let resolver_map = asker.mapped.and_then(|steer_as| {
        let mapped = snapshot.resolver_map.get(&asker.resolver)?;
        Some(format!(
            "located by resolver map: {} (steered as {steer_as})",
            mapped.describe(asker.resolver)
        ))
    });
    let policy = &steered.policy;
    let decision = answer::decide(snapshot, steered, asker);
    let outcome = steered.table.outcome(decision.outcome);
    let ip = asker.steer_on();
    let located = ip.map(|ip| snapshot.geo.locate(ip));

    let mut trace = Trace::on();
    let class = located
        .and_then(|l| l.loc)
        .map(|l| &snapshot.geo.classes()[snapshot.geo.class_of(l).index()]);
    let (cidr, asn) = match (ip, located) {
        (Some(ip), Some(l)) => steered.table.row_of(ip, &l),
        _ => (None, None),
    };
    let client = Client {
        location: class,
        asn,
        cidr,
    };
    // At the table's compile time: a hold-down that has just expired but whose recompile is
    // still due must be explained as the hold-down being served, not as its end.
    policy::evaluate(
        policy,
        &client,
        &snapshot.inputs(steered.compiled_at),
        &mut trace,
    );

    let location = match located {
        None => "location=unknown".to_owned(),
        Some(l) => match l.loc {
            Some(id) => format!(
                "{} (GeoIP network /{})",
                ip.and_then(|ip| snapshot.geo.describe_place(ip))
                    .unwrap_or_else(|| snapshot.geo.location(id).to_string()),
                l.geo_prefix
            ),
            None => format!(
                "location=not in GeoIP data (empty network /{})",
                l.geo_prefix
            ),
        },
    };
    let selected = steered.table.select(&decision, ip);
    let targets: Vec<String> = selected
        .as_slice()
        .iter()
        .map(|t| policy.target(*t).id.clone())
        .collect();
    let answer = selected
        .as_slice()
        .iter()
        .map(|t| match &policy.target(*t).answer {
            TargetAnswer::Cname(c) => format!("CNAME {c}"),
            TargetAnswer::Addresses { a, aaaa } => {
                let all: Vec<String> = a
                    .iter()
                    .map(|x| format!("A {x}"))
                    .chain(aaaa.iter().map(|x| format!("AAAA {x}")))
                    .collect();
                all.join(" ")
            }
        })
        .take(
            if matches!(
                selected
                    .as_slice()
                    .first()
                    .map(|t| &policy.target(*t).answer),
                Some(TargetAnswer::Cname(_))
            ) {
                1
            } else {
                usize::MAX
            },
        )
        .collect();

    Explanation {
        name: policy.name.to_string(),
        generation: snapshot.generation,
        resolver: asker.resolver,
        ecs: asker.subnet.map(|(a, p)| format!("{a}/{p}")),
        client: ip,
        resolver_map,
        location,
        asn: located.and_then(|l| l.asn),
        asn_organisation: ip.and_then(|ip| snapshot.geo.asn_organisation(ip)),
        health: policy
            .targets
            .iter()
            .map(|t| (t.id.clone(), snapshot.health.state(&t.id).to_string()))
            .collect(),
        steps: trace.into_lines(),
        reason: outcome.reason.to_string(),
        rule: outcome.rule.map(|r| format!("rules[{r}]")),
        targets,
        answer,
        scope: decision.scope,
    }
}
