use super::*;

const FILE: &str = "probes/targets/cdn-a.toml";

const FULL: &str = r#"
target = "cdn-a"
[[checks]]
kind = "http"
url = "https://cdn-a.example.net/health"
host = "www.example.com"
connect_to = "192.0.2.10:443"
expect_status = 204
body_contains = "ok"
interval_ms = 1000
timeout_ms = 800
[[checks]]
kind = "tcp"
address = "192.0.2.10:443"
[[checks]]
kind = "dns"
server = "192.0.2.53:53"
name = "www.example.com"
qtype = "aaaa"
[[checks]]
kind = "dns"
id = "resolver"
server = "2001:db8::53"
name = "www.example.com"
qtype = "A"
interval_ms = 10000
"#;

#[test]
fn full_example_parses_with_defaults() {
    let t = parse_target(FILE, FULL).expect("valid");
    assert_eq!(t.target, "cdn-a");
    assert_eq!(
        t.checks,
        vec![
            Check {
                id: "http https://cdn-a.example.net/health host=www.example.com via 192.0.2.10:443"
                    .into(),
                kind: CheckKind::Http {
                    url: "https://cdn-a.example.net/health".into(),
                    host: Some("www.example.com".into()),
                    connect_to: Some("192.0.2.10:443".parse().unwrap()),
                    expect_status: 204,
                    body_contains: Some("ok".into()),
                },
                interval: Duration::from_millis(1000),
                timeout: Duration::from_millis(800),
            },
            Check {
                id: "tcp 192.0.2.10:443".into(),
                kind: CheckKind::Tcp {
                    address: "192.0.2.10:443".parse().unwrap(),
                },
                interval: Duration::from_millis(DEFAULT_INTERVAL_MS),
                timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            },
            Check {
                id: "dns AAAA www.example.com @192.0.2.53:53".into(),
                kind: CheckKind::Dns {
                    server: "192.0.2.53:53".parse().unwrap(),
                    name: "www.example.com".into(),
                    qtype: "AAAA".into(),
                },
                interval: Duration::from_millis(DEFAULT_INTERVAL_MS),
                timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            },
            Check {
                id: "resolver".into(),
                kind: CheckKind::Dns {
                    server: "[2001:db8::53]:53".parse().unwrap(),
                    name: "www.example.com".into(),
                    qtype: "A".into(),
                },
                interval: Duration::from_millis(10_000),
                timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            },
        ]
    );
}

#[test]
fn http_defaults() {
    let t = parse_target(
        FILE,
        "target = \"x\"\n[[checks]]\nkind = \"http\"\nurl = \"http://a.example.net/\"\n",
    )
    .unwrap();
    assert_eq!(
        t.checks[0].kind,
        CheckKind::Http {
            url: "http://a.example.net/".into(),
            host: None,
            connect_to: None,
            expect_status: 200,
            body_contains: None,
        }
    );
    assert_eq!(t.checks[0].id, "http http://a.example.net/");
}

#[test]
fn display_names_file_field_and_reason() {
    let e = ConfigError::new(
        FILE,
        "checks[1].timeout_ms",
        "5000 must be less than interval_ms 1000",
    );
    assert_eq!(
        e.to_string(),
        "probes/targets/cdn-a.toml: checks[1].timeout_ms: 5000 must be less than interval_ms 1000"
    );
    let e = ConfigError::new(FILE, "", "invalid TOML");
    assert_eq!(e.to_string(), "probes/targets/cdn-a.toml: invalid TOML");
}

/// A valid file with `checks[0]` (tcp) and `checks[1]` (the check under test, as TOML lines).
fn with_check(lines: &str) -> String {
    format!(
        "target = \"cdn-a\"\n[[checks]]\nkind = \"tcp\"\naddress = \"192.0.2.1:80\"\n[[checks]]\n{lines}\n"
    )
}

#[test]
fn each_bad_field_gets_its_error() {
    // (file text, field, fragment of the reason)
    let http = "kind = \"http\"\nurl = \"https://cdn-a.example.net/health\"\n";
    let dns =
        "kind = \"dns\"\nserver = \"192.0.2.53:53\"\nname = \"www.example.com\"\nqtype = \"A\"\n";
    let cases: Vec<(String, &str, &str)> = vec![
        // whole file
        ("target = \n".into(), "", "invalid TOML at line 1"),
        ("checks = []\n".into(), "target", "missing"),
        (
            "target = \"\"\n[[checks]]\nkind=\"tcp\"\naddress=\"192.0.2.1:1\"".into(),
            "target",
            "must not be empty",
        ),
        (
            "target = \"a/b\"\n[[checks]]\nkind=\"tcp\"\naddress=\"192.0.2.1:1\"".into(),
            "target",
            "character '/'",
        ),
        (
            "target = 5\n[[checks]]\nkind=\"tcp\"\naddress=\"192.0.2.1:1\"".into(),
            "target",
            "expected a string, found an integer",
        ),
        ("target = \"a\"\n".into(), "checks", "missing"),
        ("target = \"a\"\nchecks = []\n".into(), "checks", "empty"),
        (
            "target = \"a\"\nchecks = 3\n".into(),
            "checks",
            "expected an array of tables",
        ),
        (
            "target = \"a\"\nchecks = [1]\n".into(),
            "checks[0]",
            "expected a table, found an integer",
        ),
        (
            format!("colour = \"red\"\n{}", with_check(http)),
            "colour",
            "unknown field",
        ),
        // common fields
        (
            with_check("address = \"192.0.2.1:80\""),
            "checks[1].kind",
            "missing",
        ),
        (
            with_check("kind = \"icmp\""),
            "checks[1].kind",
            "\"icmp\" is not one of: http, tcp, dns",
        ),
        (
            with_check(&format!("{http}colour = 1")),
            "checks[1].colour",
            "unknown field",
        ),
        (
            with_check(&format!("{http}address = \"192.0.2.1:80\"")),
            "checks[1].address",
            "not allowed in a http check (it belongs to tcp checks)",
        ),
        (
            with_check("kind = \"tcp\"\naddress = \"192.0.2.1:80\"\nqtype = \"A\""),
            "checks[1].qtype",
            "not allowed in a tcp check",
        ),
        (
            with_check(&format!("{http}interval_ms = 999")),
            "checks[1].interval_ms",
            "999 is below the minimum of 1000",
        ),
        (
            with_check(&format!("{http}interval_ms = 3600001")),
            "checks[1].interval_ms",
            "above the maximum",
        ),
        (
            with_check(&format!("{http}interval_ms = \"5s\"")),
            "checks[1].interval_ms",
            "expected an integer, found a string",
        ),
        (
            with_check(&format!("{http}interval_ms = 1000\ntimeout_ms = 5000")),
            "checks[1].timeout_ms",
            "5000 must be less than interval_ms 1000",
        ),
        (
            with_check(&format!("{http}interval_ms = 1000\ntimeout_ms = 1000")),
            "checks[1].timeout_ms",
            "1000 must be less than interval_ms 1000",
        ),
        (
            with_check(&format!("{http}timeout_ms = 5000")),
            "checks[1].timeout_ms",
            "5000 must be less than interval_ms 5000",
        ),
        (
            with_check(&format!("{http}timeout_ms = 0")),
            "checks[1].timeout_ms",
            "below the minimum of 1",
        ),
        (
            with_check(&format!("{http}timeout_ms = 1.5")),
            "checks[1].timeout_ms",
            "expected an integer, found a float",
        ),
        (
            with_check(&format!("{http}id = \"\"")),
            "checks[1].id",
            "must not be empty",
        ),
        (
            with_check("kind = \"tcp\"\nid = \"tcp 192.0.2.1:80\"\naddress = \"192.0.2.2:80\""),
            "checks[1].id",
            "duplicate check id",
        ),
        (
            with_check("kind = \"tcp\"\naddress = \"192.0.2.1:80\""),
            "checks[1]",
            "duplicate check id \"tcp 192.0.2.1:80\"",
        ),
        // http
        (with_check("kind = \"http\""), "checks[1].url", "missing"),
        (
            with_check("kind = \"http\"\nurl = \"not a url\""),
            "checks[1].url",
            "is not a URL",
        ),
        (
            with_check("kind = \"http\"\nurl = \"ftp://a.example.net/\""),
            "checks[1].url",
            "scheme must be http or https",
        ),
        (
            with_check(&format!("{http}host = \"\"")),
            "checks[1].host",
            "must not be empty",
        ),
        (
            with_check(&format!("{http}host = \"192.0.2.1\"")),
            "checks[1].host",
            "is an IP address",
        ),
        (
            with_check(&format!("{http}host = \"www.example.com:8080\"")),
            "checks[1].host",
            "is not a DNS name",
        ),
        (
            with_check(&format!("{http}connect_to = \"192.0.2.10\"")),
            "checks[1].connect_to",
            "is not IP:port",
        ),
        (
            with_check(&format!("{http}connect_to = \"cdn.example.net:443\"")),
            "checks[1].connect_to",
            "is not IP:port",
        ),
        (
            with_check(&format!("{http}connect_to = \"192.0.2.10:0\"")),
            "checks[1].connect_to",
            "port 0",
        ),
        (
            with_check(
                "kind = \"http\"\nurl = \"http://192.0.2.1/\"\nconnect_to = \"192.0.2.2:80\"",
            ),
            "checks[1].connect_to",
            "is an IP address",
        ),
        (
            with_check(&format!("{http}expect_status = 99")),
            "checks[1].expect_status",
            "99 is not an HTTP status",
        ),
        (
            with_check(&format!("{http}expect_status = 600")),
            "checks[1].expect_status",
            "600 is not an HTTP status",
        ),
        (
            with_check(&format!("{http}body_contains = \"\"")),
            "checks[1].body_contains",
            "must not be empty",
        ),
        (
            with_check(&format!("{http}body_contains = 1")),
            "checks[1].body_contains",
            "expected a string",
        ),
        // tcp
        (with_check("kind = \"tcp\""), "checks[1].address", "missing"),
        (
            with_check("kind = \"tcp\"\naddress = \"192.0.2.1\""),
            "checks[1].address",
            "is not IP:port",
        ),
        (
            with_check("kind = \"tcp\"\naddress = \"[2001:db8::1]:0\""),
            "checks[1].address",
            "port 0",
        ),
        // dns
        (
            with_check("kind = \"dns\"\nname = \"a.example\"\nqtype = \"A\""),
            "checks[1].server",
            "missing",
        ),
        (
            with_check(
                "kind = \"dns\"\nserver = \"ns.example.net\"\nname = \"a.example\"\nqtype = \"A\"",
            ),
            "checks[1].server",
            "is not an IP address",
        ),
        (
            with_check("kind = \"dns\"\nserver = \"192.0.2.53\"\nqtype = \"A\""),
            "checks[1].name",
            "missing",
        ),
        (
            with_check("kind = \"dns\"\nserver = \"192.0.2.53\"\nname = \"\"\nqtype = \"A\""),
            "checks[1].name",
            "must not be empty",
        ),
        (
            with_check(
                "kind = \"dns\"\nserver = \"192.0.2.53\"\nname = \"a..example\"\nqtype = \"A\"",
            ),
            "checks[1].name",
            "is not a domain name",
        ),
        (
            with_check("kind = \"dns\"\nserver = \"192.0.2.53\"\nname = \"a.example\""),
            "checks[1].qtype",
            "missing",
        ),
        (
            with_check(
                "kind = \"dns\"\nserver = \"192.0.2.53\"\nname = \"a.example\"\nqtype = \"BOGUS\"",
            ),
            "checks[1].qtype",
            "is not a DNS record type",
        ),
        (
            with_check(&format!("{dns}url = \"http://a.example.net/\"")),
            "checks[1].url",
            "not allowed in a dns check (it belongs to http checks)",
        ),
    ];
    for (text, field, reason) in cases {
        let errors = parse_target_all(FILE, &text).expect_err(&text);
        let first = &errors[0];
        assert_eq!(first.file, FILE, "{text}");
        assert_eq!(first.field, field, "{text}\n→ {errors:?}");
        assert!(
            first.reason.contains(reason),
            "{text}\n→ {:?} does not contain {reason:?}",
            first.reason
        );
        // parse_target gives the same first error.
        assert_eq!(parse_target(FILE, &text).unwrap_err(), *first);
    }
}

#[test]
fn all_errors_of_a_file_are_collected() {
    let text = r#"
target = "cdn-a"
[[checks]]
kind = "http"
url = "gopher://x"
timeout_ms = 9000
[[checks]]
kind = "tcp"
[[checks]]
kind = "dns"
server = "192.0.2.53"
name = "a.example"
qtype = "NOPE"
"#;
    let errors = parse_target_all(FILE, text).unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "checks[0].timeout_ms",
            "checks[0].url",
            "checks[1].address",
            "checks[2].qtype"
        ]
    );
}

#[test]
fn unknown_kind_does_not_report_its_fields_twice() {
    let errors = parse_target_all(
        FILE,
        &with_check("kind = \"icmp\"\naddress = \"192.0.2.1:80\""),
    )
    .unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("steerdns-probes-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn load_targets_sorted_and_errors_collected() {
    let dir = temp_dir("load");
    let tcp = |t: &str| {
        format!("target = \"{t}\"\n[[checks]]\nkind = \"tcp\"\naddress = \"192.0.2.1:80\"\n")
    };
    std::fs::write(dir.join("b.toml"), tcp("cdn-b")).unwrap();
    std::fs::write(dir.join("a.toml"), tcp("cdn-a")).unwrap();
    std::fs::write(dir.join("notes.txt"), "not a target").unwrap();
    let targets = load_targets(&dir).unwrap();
    let names: Vec<&str> = targets.iter().map(|t| t.target.as_str()).collect();
    assert_eq!(names, ["cdn-a", "cdn-b"]);

    std::fs::write(dir.join("c.toml"), tcp("cdn-a")).unwrap();
    std::fs::write(dir.join("d.toml"), "target = \"cdn-d\"\n").unwrap();
    std::fs::write(
        dir.join("e.toml"),
        "target = \"cdn-e\"\n[[checks]]\nkind = \"tcp\"\n",
    )
    .unwrap();
    let errors = load_targets(&dir).unwrap_err();
    let got: Vec<(String, String)> = errors
        .iter()
        .map(|e| {
            let file = std::path::Path::new(&e.file)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (file, e.field.clone())
        })
        .collect();
    assert_eq!(
        got,
        [
            ("c.toml".to_string(), "target".to_string()),
            ("d.toml".to_string(), "checks".to_string()),
            ("e.toml".to_string(), "checks[0].address".to_string()),
        ]
    );
    assert!(
        errors[0].reason.contains("already defined in"),
        "{}",
        errors[0]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_targets_missing_dir_is_an_error() {
    let errors = load_targets(std::path::Path::new("/nonexistent/steerdns-probes")).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].reason.contains("cannot read directory"));
}

#[test]
fn shipped_example_targets_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("targets");
    let targets = load_targets(&dir).unwrap_or_else(|e| {
        panic!(
            "{}",
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    assert!(targets.len() >= 2);
    for t in &targets {
        for c in &t.checks {
            assert!(c.timeout < c.interval);
        }
    }
}
