use super::*;

const GOOD: &str = r#"
name = "WWW.Example.com"
default = "a"
[targets.a]
cname = "a.example.net"
[targets.b]
a = ["192.0.2.1"]
aaaa = ["2001:db8::1"]
[[rules]]
match = { continent = "EU", country = ["DE", "FR"] }
target = "b"
[[rules]]
match = { cidr = "198.51.100.0/24" }
target = "a"
"#;

#[test]
fn parses_a_good_policy() {
    let p = parse("p.toml", GOOD).unwrap();
    assert_eq!(p.name.to_string(), "www.example.com.");
    assert_eq!(p.ttl_s, 30);
    assert_eq!(p.targets.len(), 2);
    assert_eq!(p.target(p.default).id, "a");
    assert_eq!(
        p.target(p.default).answer,
        TargetAnswer::Cname("a.example.net.".parse().unwrap())
    );
    assert_eq!(p.rules[0].matches.country, vec![*b"DE", *b"FR"]);
    assert_eq!(p.rules[0].matches.specificity(), (2, 2));
    assert_eq!(p.rules[1].matches.specificity(), (5, 1));
}

/// (description, text replacement applied to GOOD, expected field, expected reason fragment)
#[test]
fn errors_name_field_and_reason() {
    let cases = [
        (
            "UK is not ISO",
            r#"country = ["DE", "FR"]"#,
            r#"country = "UK""#,
            "rules[0].match.country",
            "did you mean \"GB\"",
        ),
        (
            "lower case",
            r#"country = ["DE", "FR"]"#,
            r#"country = "de""#,
            "rules[0].match.country",
            "did you mean \"DE\"",
        ),
        (
            "continent",
            r#"continent = "EU""#,
            r#"continent = "XX""#,
            "rules[0].match.continent",
            "not a continent",
        ),
        (
            "unknown target",
            "target = \"b\"",
            "target = \"c\"",
            "rules[0].target",
            "unknown target \"c\"",
        ),
        (
            "default",
            "default = \"a\"",
            "default = \"zz\"",
            "default",
            "unknown target",
        ),
        (
            "host bits",
            "198.51.100.0/24",
            "198.51.100.1/24",
            "rules[1].match.cidr",
            "did you mean \"198.51.100.0/24\"",
        ),
        (
            "bad ip",
            "192.0.2.1",
            "192.0.2.300",
            "targets.b.a[0]",
            "not an IPv4",
        ),
        (
            "ttl",
            "default = \"a\"",
            "default = \"a\"\nttl_s = 0",
            "ttl_s",
            "out of range",
        ),
        (
            "empty match",
            r#"{ cidr = "198.51.100.0/24" }"#,
            "{}",
            "rules[1].match",
            "empty match",
        ),
        (
            "cidr combined",
            r#"{ cidr = "198.51.100.0/24" }"#,
            r#"{ cidr = "198.51.100.0/24", asn = 1 }"#,
            "rules[1].match",
            "cannot be combined",
        ),
        (
            "subdivision",
            r#"continent = "EU", "#,
            r#"subdivision = "California", "#,
            "rules[0].match.subdivision",
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
            "asn 0",
            r#"continent = "EU", "#,
            "asn = 0, ",
            "rules[0].match.asn",
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
    let e = parse("p.toml", &GOOD.replace("default =", "defualt =")).unwrap_err();
    assert!(e.reason.contains("defualt"), "{e}");
    let e = parse("p.toml", &GOOD.replace("[targets.a]", "[targets.a")).unwrap_err();
    assert!(e.reason.contains("line"), "{e}");
}

#[test]
fn match_location_semantics() {
    use crate::geo::{Continent, Location};
    let p = parse("p.toml", GOOD).unwrap();
    let m = &p.rules[0].matches;
    let de = Location {
        continent: Some(Continent::Europe),
        country: Some(*b"DE"),
        ..Location::default()
    };
    let gb = Location {
        country: Some(*b"GB"),
        ..de.clone()
    };
    assert!(m.matches_location(Some(&de)));
    assert!(
        !m.matches_location(Some(&gb)),
        "country list is any-of, fields are all-of"
    );
    assert!(!m.matches_location(None));
}
