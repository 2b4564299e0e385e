use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Options, import};

static N: AtomicUsize = AtomicUsize::new(0);

struct Tmp(PathBuf);

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmp() -> Tmp {
    let dir = std::env::temp_dir().join(format!(
        "steerdns-r53-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    Tmp(dir)
}

fn options(name: &str) -> Options {
    Options {
        name: name.into(),
        zone: None,
        ttl: 60,
        geoip: None,
        health_checks: None,
    }
}

/// Import `json` for www.example.com: the policy file's text and the warnings, or the error.
fn run(json: &str) -> Result<(String, Vec<String>), String> {
    run_as(json, &options("www.example.com"))
}

fn run_as(json: &str, opts: &Options) -> Result<(String, Vec<String>), String> {
    let dir = tmp();
    let doc = dir.0.join("policy.json");
    std::fs::write(&doc, json).unwrap();
    let out = dir.0.join("out");
    match import(&doc, opts, &out) {
        Ok(report) => {
            let text =
                std::fs::read_to_string(out.join("policies").join(format!("{}.toml", opts.name)))
                    .unwrap();
            Ok((
                text,
                report.warnings.iter().map(|w| w.what.clone()).collect(),
            ))
        }
        Err(e) => {
            assert!(
                !out.exists(),
                "nothing is written when the import fails: {e}"
            );
            Err(e.to_string())
        }
    }
}

fn doc(record_type: &str, endpoints: &str, rules: &str, start: &str) -> String {
    format!(
        r#"{{"AWSPolicyFormatVersion": "2015-10-01", "RecordType": "{record_type}", {start},
            "Endpoints": {{ {endpoints} }}, "Rules": {{ {rules} }} }}"#
    )
}

const TWO: &str = r#""a": {"Type": "value", "Value": "192.0.2.1"},
                     "b": {"Type": "value", "Value": "192.0.2.2"}"#;

#[test]
fn malformed_documents_name_the_json_path_and_the_reason() {
    let cases: &[(String, &str)] = &[
        (
            "{ \"RecordType\": \"A\",\n  oops }".into(),
            ":2: not valid JSON",
        ),
        (
            r#"{"AWSPolicyFormatVersion": "2015-10-01", "StartEndpoint": "a"}"#.into(),
            "RecordType: missing",
        ),
        (
            doc("MX", TWO, "", r#""StartEndpoint": "a""#),
            "RecordType: MX is not supported",
        ),
        (
            doc("A", TWO, "", r#""StartRule": "nope""#),
            "StartRule: no rule \"nope\" in Rules",
        ),
        (
            doc(
                "A",
                TWO,
                r#""f": {"RuleType": "failover", "Primary": {"EndpointReference": "a"},
                         "Secondary": {"EndpointReference": "c"}}"#,
                r#""StartRule": "f""#,
            ),
            "Rules.f.Secondary.EndpointReference: no endpoint \"c\" in Endpoints (a, b)",
        ),
        (
            doc(
                "A",
                TWO,
                r#""x": {"RuleType": "failover", "Primary": {"RuleReference": "y"},
                         "Secondary": {"EndpointReference": "a"}},
                   "y": {"RuleType": "failover", "Primary": {"RuleReference": "x"},
                         "Secondary": {"EndpointReference": "b"}}"#,
                r#""StartRule": "x""#,
            ),
            "Rules.y.Primary.RuleReference: rule \"x\" refers back to itself (x → y → x)",
        ),
        (
            doc(
                "A",
                TWO,
                r#""w": {"RuleType": "weighted", "Items": [{"EndpointReference": "a", "Weight": "300"}]}"#,
                r#""StartRule": "w""#,
            ),
            "Rules.w.Items[0].Weight: 300 is not a whole number 0..=255",
        ),
        (
            doc(
                "A",
                TWO,
                r#""g": {"RuleType": "geo", "Locations": [{"Country": "UK", "EndpointReference": "a"}]}"#,
                r#""StartRule": "g""#,
            ),
            "Rules.g.Locations[0].Country: \"UK\" is not ISO 3166-1 alpha-2 (did you mean \"GB\"?)",
        ),
        (
            doc(
                "A",
                r#""a": {"Type": "value", "Value": "2001:db8::1"}"#,
                "",
                r#""StartEndpoint": "a""#,
            ),
            "Endpoints.a.Value: \"2001:db8::1\" is not an IPv4 address (RecordType A)",
        ),
        (
            doc(
                "A",
                TWO,
                r#""g": {"RuleType": "geo", "Locations": [{"Continent": "EU", "EndpointReference": "a", "Weight": 1}]}"#,
                r#""StartRule": "g""#,
            ),
            "Rules.g.Locations[0].Weight: unknown field",
        ),
        (
            doc(
                "A",
                TWO,
                r#""l": {"RuleType": "latency", "Regions": [{"Region": "mars-north-1", "EndpointReference": "a"}]}"#,
                r#""StartRule": "l""#,
            ),
            "Rules.l.Regions[0].Region: \"mars-north-1\" is not an AWS region the importer knows",
        ),
        (
            doc(
                "A",
                TWO,
                r#""r": {"RuleType": "roundrobin"}"#,
                r#""StartRule": "r""#,
            ),
            "Rules.r.RuleType: \"roundrobin\" is not a rule type",
        ),
        ("[]".into(), "$: expected an object, found an array"),
    ];
    for (json, want) in cases {
        let err = run(json).expect_err(want);
        assert!(
            err.contains("policy.json") && err.contains(want),
            "want {want:?} in: {err}"
        );
    }
}

#[test]
fn the_name_must_be_below_its_zone() {
    let json = doc("A", TWO, "", r#""StartEndpoint": "a""#);
    let mut opts = options("www.example.com");
    opts.zone = Some("other.org".into());
    let err = run_as(&json, &opts).unwrap_err();
    assert!(err.contains("--name: www.example.com. must be a name below its zone other.org."));
    let top = run_as(&json, &options("com")).unwrap_err();
    assert!(top.contains("--name"), "{top}");
}

#[test]
fn a_start_endpoint_is_a_single_target() {
    let (text, warnings) = run(&doc("A", TWO, "", r#""StartEndpoint": "b""#)).unwrap();
    assert!(
        text.contains("kind = \"failover\"\norder = [\"b\"]"),
        "{text}"
    );
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn latency_rules_become_geo_by_the_regions_continent_with_a_warning() {
    let json = doc(
        "CNAME",
        r#""use": {"Type": "elastic-load-balancer", "Value": "lb-1.us-east-1.elb.amazonaws.com"},
           "dub": {"Type": "value", "Value": "eu.origin.example.net"}"#,
        r#""lat": {"RuleType": "latency", "Regions": [
              {"Region": "us-east-1", "EndpointReference": "use", "EvaluateTargetHealth": true},
              {"Region": "eu-west-1", "EndpointReference": "dub"}]}"#,
        r#""StartRule": "lat""#,
    );
    let (text, warnings) = run(&json).unwrap();
    // Europe first gets Dublin, then the others; everyone else the document's order, which
    // North America's (us-east-1 first) already is.
    assert!(
        text.contains(r#"default = ["use", "dub"]"#) && text.contains(r#"kind = "failover""#),
        "{text}"
    );
    assert!(
        text.contains(r#"{ match = { continent = "EU" }, targets = ["dub", "use"] }"#),
        "{text}"
    );
    assert!(!text.contains("\"NA\""), "{text}");
    assert!(text.contains("cname = \"lb-1.us-east-1.elb.amazonaws.com.\""));
    assert!(text.contains("cname = \"eu.origin.example.net.\""));
    let all = warnings.join("\n");
    for want in [
        "Rules.lat: latency rule \"lat\": steerdns has no AWS latency measurements",
        "us-east-1 → NA, eu-west-1 → EU",
        "Endpoints.use: a elastic-load-balancer alias",
        "Rules.lat.Regions[0].EvaluateTargetHealth: steerdns cannot see the AWS resource's health",
    ] {
        assert!(all.contains(want), "missing {want:?} in:\n{all}");
    }
}

#[test]
fn geoproximity_uses_the_nearest_regions_continent_and_says_bias_is_dropped() {
    let json = doc(
        "A",
        TWO,
        r#""gp": {"RuleType": "geoproximity", "GeoproximityLocations": [
              {"Region": "aws:route53:ap-southeast-2", "EndpointReference": "a", "Bias": "20"},
              {"Latitude": "48.85", "Longitude": "2.35", "EndpointReference": "b"}]}"#,
        r#""StartRule": "gp""#,
    );
    let (text, warnings) = run(&json).unwrap();
    // Oceania gets Sydney first, as the document's order does for everyone else.
    assert!(text.contains(r#"default = ["a", "b"]"#), "{text}");
    assert!(
        text.contains(r#"{ match = { continent = "EU" }, targets = ["b", "a"] }"#),
        "{text}"
    );
    let all = warnings.join("\n");
    assert!(all.contains("Rules.gp.GeoproximityLocations[0].Bias: bias 20 is not translated"));
    assert!(all.contains("(48.85, 2.35) near eu-west-3 → EU"), "{all}");
}

#[test]
fn multivalue_is_one_target_with_every_address() {
    let json = doc(
        "A",
        TWO,
        r#""mv": {"RuleType": "multivalue", "Items": [
              {"EndpointReference": "a", "HealthCheck": "hc-1"}, {"EndpointReference": "b"}]}"#,
        r#""StartRule": "mv""#,
    );
    let (text, warnings) = run(&json).unwrap();
    assert!(
        text.contains("[targets.mv]\na = [\"192.0.2.1\", \"192.0.2.2\"]"),
        "{text}"
    );
    assert!(text.contains("order = [\"mv\"]"), "{text}");
    let all = warnings.join("\n");
    assert!(all.contains("multivalue rule \"mv\" is one target answering all 2"));
    assert!(all.contains("Rules.mv.Items[0].HealthCheck: Route 53 health check \"hc-1\""));
}

#[test]
fn a_weighted_rule_over_failovers_is_approximated_and_says_so() {
    let json = doc(
        "A",
        r#""a": {"Type": "value", "Value": "192.0.2.1"},
           "b": {"Type": "value", "Value": "192.0.2.2"},
           "c": {"Type": "value", "Value": "192.0.2.3"},
           "d": {"Type": "value", "Value": "192.0.2.4"}"#,
        r#""w": {"RuleType": "weighted", "Items": [
              {"RuleReference": "f1", "Weight": 60}, {"RuleReference": "f2", "Weight": 40}]},
           "f1": {"RuleType": "failover", "Primary": {"EndpointReference": "a"},
                  "Secondary": {"EndpointReference": "b"}},
           "f2": {"RuleType": "failover", "Primary": {"EndpointReference": "c"},
                  "Secondary": {"EndpointReference": "d"}}"#,
        r#""StartRule": "w""#,
    );
    let (text, warnings) = run(&json).unwrap();
    assert!(text.contains("targets = [\"a\", \"c\"]"), "{text}");
    assert!(text.contains("targets = [\"b\", \"d\"]"), "{text}");
    assert!(text.contains("a = 3") && text.contains("c = 2"), "{text}");
    assert!(
        warnings.iter().any(|w| w
            .starts_with("Rules.w.Items: weighted rule \"w\" has an item with its own fallback")),
        "{warnings:?}"
    );
}

#[test]
fn an_endpoint_weighted_differently_in_two_places_gets_a_second_target() {
    let json = doc(
        "A",
        TWO,
        r#""g": {"RuleType": "geo", "Locations": [
              {"Continent": "EU", "RuleReference": "w1"}, {"IsDefault": true, "RuleReference": "w2"}]},
           "w1": {"RuleType": "weighted", "Items": [
              {"EndpointReference": "a", "Weight": 1}, {"EndpointReference": "b", "Weight": 1}]},
           "w2": {"RuleType": "weighted", "Items": [
              {"EndpointReference": "a", "Weight": 9}, {"EndpointReference": "b", "Weight": 1}]}"#,
        r#""StartRule": "g""#,
    );
    let (text, warnings) = run(&json).unwrap();
    assert!(
        text.contains("[targets.a-2]\na = [\"192.0.2.1\"]"),
        "{text}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("endpoint \"a\" is weighted differently")),
        "{warnings:?}"
    );
}

#[test]
fn a_rule_graph_that_expands_exponentially_is_refused_not_walked() {
    // r0 → r1 twice → r2 twice ... : 2^30 paths through 31 rules.
    let mut rules = Vec::new();
    for i in 0..30 {
        rules.push(format!(
            r#""r{i}": {{"RuleType": "failover", "Primary": {{"RuleReference": "r{n}"}},
                        "Secondary": {{"RuleReference": "r{n}"}}}}"#,
            n = i + 1
        ));
    }
    rules.push(
        r#""r30": {"RuleType": "failover", "Primary": {"EndpointReference": "a"},
                    "Secondary": {"EndpointReference": "b"}}"#
            .into(),
    );
    let json = doc("A", TWO, &rules.join(",\n"), r#""StartRule": "r0""#);
    let err = run(&json).unwrap_err();
    assert!(
        err.contains("StartRule: the rule tree expands to more than 2000 entries"),
        "{err}"
    );
}

#[test]
fn a_rule_the_start_does_not_reach_is_reported() {
    let json = doc(
        "A",
        TWO,
        r#""used": {"RuleType": "failover", "Primary": {"EndpointReference": "a"},
                    "Secondary": {"EndpointReference": "b"}},
           "spare": {"RuleType": "weighted", "Items": [{"EndpointReference": "a", "Weight": 1}]}"#,
        r#""StartRule": "used""#,
    );
    let (text, warnings) = run(&json).unwrap();
    assert!(text.contains("order = [\"a\", \"b\"]"), "{text}");
    assert_eq!(
        warnings,
        ["Rules.spare: rule \"spare\" is not reached from the start, so it is not translated"]
    );
}

#[test]
fn health_checks_given_by_configuration_become_probe_target_files() {
    let json = doc(
        "A",
        r#""a": {"Type": "value", "Value": "192.0.2.1"},
           "b": {"Type": "value", "Value": "192.0.2.2"},
           "c": {"Type": "value", "Value": "192.0.2.3"}"#,
        r#""f": {"RuleType": "failover",
                 "Primary": {"EndpointReference": "a", "HealthCheck": "hc-web"},
                 "Secondary": {"RuleReference": "w"}},
           "w": {"RuleType": "weighted", "Items": [
                 {"EndpointReference": "b", "Weight": 1, "HealthCheck": "hc-tcp"},
                 {"EndpointReference": "c", "Weight": 1, "HealthCheck": "hc-calc"},
                 {"EndpointReference": "a", "Weight": 0, "HealthCheck": "hc-gone"}]}"#,
        r#""StartRule": "f""#,
    );
    let checks = r#"{"HealthChecks": [
        {"Id": "hc-web", "HealthCheckConfig": {"Type": "HTTPS_STR_MATCH", "IPAddress": "192.0.2.1",
         "Port": 8443, "ResourcePath": "health", "FullyQualifiedDomainName": "www.example.com",
         "SearchString": "ok", "RequestInterval": 10, "FailureThreshold": 3}},
        {"Id": "hc-tcp", "HealthCheckConfig": {"Type": "TCP", "IPAddress": "192.0.2.2", "Port": 443}},
        {"Id": "hc-calc", "HealthCheckConfig": {"Type": "CALCULATED", "ChildHealthChecks": ["hc-tcp"]}}
    ]}"#;
    let dir = tmp();
    let doc_path = dir.0.join("policy.json");
    std::fs::write(&doc_path, json).unwrap();
    let hc_path = dir.0.join("health-checks.json");
    std::fs::write(&hc_path, checks).unwrap();
    let mut opts = options("www.example.com");
    opts.health_checks = Some(hc_path);
    let out = dir.0.join("out");
    let report = import(&doc_path, &opts, &out).unwrap_or_else(|e| panic!("{e}"));
    let a = std::fs::read_to_string(out.join("probes/targets/a.toml")).unwrap();
    for want in [
        "target = \"a\"",
        "kind = \"http\"",
        "url = \"https://www.example.com/health\"",
        "connect_to = \"192.0.2.1:8443\"",
        "body_contains = \"ok\"",
        "interval_ms = 10000",
    ] {
        assert!(a.contains(want), "missing {want:?} in:\n{a}");
    }
    let b = std::fs::read_to_string(out.join("probes/targets/b.toml")).unwrap();
    assert!(
        b.contains("kind = \"tcp\"\naddress = \"192.0.2.2:443\""),
        "{b}"
    );
    assert!(!out.join("probes/targets/c.toml").exists());
    let config = std::fs::read_to_string(out.join("steerdns.toml")).unwrap();
    assert!(config.contains("[probes]\n"), "{config}");
    let all: Vec<String> = report.warnings.iter().map(|w| w.what.clone()).collect();
    let all = all.join("\n");
    for want in [
        "Rules.f.Primary.HealthCheck: Route 53 health check \"hc-web\" is a steerdns probe check of target \"a\"",
        "Rules.w.Items[2].HealthCheck: Route 53 health check \"hc-gone\" is not in the --health-checks file",
        "Rules.w.Items[1].HealthCheck: health check \"hc-calc\" is of type CALCULATED, which steerdns probes cannot run",
    ] {
        assert!(all.contains(want), "missing {want:?} in:\n{all}");
    }
    // A broken health checks file is an error naming it.
    std::fs::write(dir.0.join("bad.json"), "{\"HealthChecks\": [{}]}").unwrap();
    opts.health_checks = Some(dir.0.join("bad.json"));
    let err = import(&doc_path, &opts, &dir.0.join("out2"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.json: HealthChecks[0].Id: missing"),
        "{err}"
    );
}
