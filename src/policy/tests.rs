use super::*;

const GOOD: &str = r#"
name = "WWW.Example.com"
last_resort = "a"
[targets.a]
cname = "a.example.net"
[targets.b]
cname = "b.example.net"
max_share = 0.5
[[chain]]
kind = "up"
[[chain]]
kind = "geo"
default = ["a"]
rules = [
  { match = { continent = "EU", country = ["DE", "FR"] }, targets = ["b", "a"] },
  { match = { cidr = "198.51.100.0/24" }, targets = ["a"] },
]
[[chain]]
kind = "weighted"
weights = { a = 3, b = 1 }
"#;

#[test]
fn parses_a_good_policy() {
    let p = parse("p.toml", GOOD).unwrap();
    assert_eq!(p.name.to_string(), "www.example.com.");
    assert_eq!(p.ttl_s, 30);
    assert_eq!(p.answers, 1);
    assert_eq!(p.last_resort, LastResort::Target(TargetId(0)));
    assert_eq!(p.targets[1].max_share, 0.5);
    assert_eq!(
        p.targets[0].answer,
        TargetAnswer::Cname("a.example.net.".parse().unwrap())
    );
    let geo = p.geo().unwrap();
    assert_eq!(geo.rules[0].matches.country, vec![*b"DE", *b"FR"]);
    assert_eq!(geo.rules[0].matches.specificity(), (2, 0, 2));
    assert_eq!(geo.rules[1].matches.specificity(), (5, 24, 1));
    assert_eq!(geo.by_specificity, vec![1, 0]);
    assert_eq!(
        p.chain.iter().map(Step::kind).collect::<Vec<_>>(),
        ["up", "geo", "weighted"]
    );
}

/// (description, text in GOOD, replacement, expected field, expected reason fragment)
#[test]
fn errors_name_field_and_reason() {
    let cases = [
        (
            "UK is not ISO",
            r#"country = ["DE", "FR"]"#,
            r#"country = "UK""#,
            "chain[1].rules[0].match.country",
            "did you mean \"GB\"",
        ),
        (
            "lower case",
            r#"country = ["DE", "FR"]"#,
            r#"country = "de""#,
            "chain[1].rules[0].match.country",
            "did you mean \"DE\"",
        ),
        (
            "continent",
            r#"continent = "EU""#,
            r#"continent = "XX""#,
            "chain[1].rules[0].match.continent",
            "not a continent",
        ),
        (
            "unknown target",
            r#"targets = ["b", "a"]"#,
            r#"targets = ["c"]"#,
            "chain[1].rules[0].targets[0]",
            "unknown target \"c\"",
        ),
        (
            "duplicate target",
            r#"targets = ["b", "a"]"#,
            r#"targets = ["b", "b"]"#,
            "chain[1].rules[0].targets[1]",
            "listed twice",
        ),
        (
            "default",
            r#"default = ["a"]"#,
            r#"default = ["zz"]"#,
            "chain[1].default[0]",
            "unknown target",
        ),
        (
            "empty default",
            r#"default = ["a"]"#,
            "default = []",
            "chain[1].default",
            "at least one",
        ),
        (
            "last resort",
            "last_resort = \"a\"",
            "last_resort = \"q\"",
            "last_resort",
            "unknown target",
        ),
        (
            "host bits",
            "198.51.100.0/24",
            "198.51.100.1/24",
            "chain[1].rules[1].match.cidr",
            "did you mean \"198.51.100.0/24\"",
        ),
        (
            "ttl",
            "last_resort = \"a\"",
            "last_resort = \"a\"\nttl_s = 0",
            "ttl_s",
            "out of range",
        ),
        (
            "answers with cname",
            "last_resort = \"a\"",
            "last_resort = \"a\"\nanswers = 2",
            "answers",
            "need address targets",
        ),
        (
            "empty match",
            r#"{ cidr = "198.51.100.0/24" }"#,
            "{}",
            "chain[1].rules[1].match",
            "empty match",
        ),
        (
            "cidr combined",
            r#"{ cidr = "198.51.100.0/24" }"#,
            r#"{ cidr = "198.51.100.0/24", asn = 1 }"#,
            "chain[1].rules[1].match",
            "cannot be combined",
        ),
        (
            "subdivision",
            r#"continent = "EU", "#,
            r#"subdivision = "California", "#,
            "chain[1].rules[0].match.subdivision",
            "ISO 3166-2",
        ),
        (
            "cname and a",
            "cname = \"a.example.net\"",
            "cname = \"a.example.net\"\na = [\"192.0.2.9\"]",
            "targets.a",
            "not both",
        ),
        (
            "max_share",
            "max_share = 0.5",
            "max_share = 1.5",
            "targets.b.max_share",
            "not in (0, 1]",
        ),
        (
            "weight target",
            "weights = { a = 3, b = 1 }",
            "weights = { a = 3, x = 1 }",
            "chain[2].weights.x",
            "unknown target",
        ),
        (
            "zero weights",
            "weights = { a = 3, b = 1 }",
            "weights = { a = 0 }",
            "chain[2].weights",
            "above 0",
        ),
        (
            "selector not last",
            "kind = \"up\"",
            "kind = \"failover\"",
            "chain[0]",
            "must be the last step",
        ),
        (
            "unknown kind",
            "kind = \"up\"",
            "kind = \"fastest\"",
            "",
            "unknown variant `fastest`",
        ),
        (
            "asn 0",
            r#"continent = "EU", "#,
            "asn = 0, ",
            "chain[1].rules[0].match.asn",
            "not a valid AS number",
        ),
    ];
    for (what, from, to, field, reason) in cases {
        assert!(GOOD.contains(from), "{what}: fixture lacks {from:?}");
        let text = GOOD.replacen(from, to, 1);
        let e = parse("policies/p.toml", &text).expect_err(what);
        assert_eq!(e.file, "policies/p.toml", "{what}");
        assert_eq!(e.field, field, "{what}: {e}");
        assert!(e.reason.contains(reason), "{what}: {e}");
    }
}

#[test]
fn unknown_keys_and_syntax_errors_point_at_the_line() {
    let e = parse("p.toml", &GOOD.replace("last_resort =", "last_resrt =")).unwrap_err();
    assert!(e.reason.contains("last_resrt"), "{e}");
    let e = parse("p.toml", &GOOD.replace("[targets.a]", "[targets.a")).unwrap_err();
    assert!(e.reason.contains("line"), "{e}");
    let e = parse(
        "p.toml",
        &GOOD.replace("kind = \"up\"", "kind = \"up\"\nfoo = 1"),
    )
    .unwrap_err();
    assert!(e.reason.contains("foo"), "{e}");
}

#[test]
fn every_demo_policy_is_valid() {
    for entry in std::fs::read_dir("policies").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "toml") {
            load_file(&path).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
