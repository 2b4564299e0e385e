use super::*;

fn scalar(node: &Node) -> &str {
    node.as_scalar().unwrap()
}

#[test]
fn parses_the_bench_config() {
    let text = include_str!("../../bench/gdnsd/config");
    let root = parse(text).unwrap();
    let geoip = root.get("plugins").unwrap().get("geoip").unwrap();
    let cdn = geoip.get("maps").unwrap().get("cdn_map").unwrap();
    assert_eq!(
        scalar(cdn.get("geoip2_db").unwrap()),
        "GeoIP2-City-Test.mmdb"
    );
    let dcs: Vec<&str> = cdn
        .get("datacenters")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(scalar)
        .collect();
    assert_eq!(dcs, ["cdn-a", "cdn-b", "cdn-c", "cdn-d"]);
    let gb = cdn
        .get("map")
        .unwrap()
        .get("EU")
        .unwrap()
        .get("GB")
        .unwrap();
    assert_eq!(gb.line, 46);
    let listen = root.get("options").unwrap().get("listen").unwrap();
    assert_eq!(
        scalar(&listen.as_array().unwrap()[0]),
        "127.0.0.1:@DNS_PORT@"
    );
}

#[test]
fn both_assignment_forms_separators_and_comments() {
    let root = parse("a = 1\nb => 2, c => 3; d=>4 # four\n# only a comment\ne=5").unwrap();
    let keys: Vec<&str> = root
        .as_hash()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(keys, ["a", "b", "c", "d", "e"]);
    assert_eq!(scalar(root.get("d").unwrap()), "4");
    assert_eq!(root.get("e").unwrap().line, 4);
}

#[test]
fn unquoted_scalars_keep_addresses_and_plugin_references() {
    let root =
        parse("x => [ 2001:db8::1, 192.0.2.1/24, %multifo!pool, lb.example.net., -1.5 ]").unwrap();
    let items: Vec<&str> = root
        .get("x")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(scalar)
        .collect();
    assert_eq!(
        items,
        [
            "2001:db8::1",
            "192.0.2.1/24",
            "%multifo!pool",
            "lb.example.net.",
            "-1.5"
        ]
    );
}

#[test]
fn quoted_scalars_and_escapes() {
    let root = parse(r#""my key" => "a \"b\" c#d, e" k2 => "\065\066" k3 => a\ b"#).unwrap();
    assert_eq!(scalar(root.get("my key").unwrap()), "a \"b\" c#d, e");
    assert_eq!(scalar(root.get("k2").unwrap()), "AB");
    assert_eq!(scalar(root.get("k3").unwrap()), "a b");
}

#[test]
fn nested_hashes_and_arrays_with_lines() {
    let text = "m => {\n  EU => {\n    default => [ a ]\n    GB => [ b, a ]\n  }\n}\nempty => []\neh => {}";
    let root = parse(text).unwrap();
    let eu = root.get("m").unwrap().get("EU").unwrap();
    assert_eq!(eu.line, 2);
    assert_eq!(eu.get("GB").unwrap().line, 4);
    assert_eq!(root.get("empty").unwrap().as_array().unwrap().len(), 0);
    assert_eq!(root.get("eh").unwrap().as_hash().unwrap().len(), 0);
    assert_eq!(root.get("m").unwrap().kind(), "a hash");
}

#[test]
fn empty_and_comment_only_files_are_empty_hashes() {
    assert_eq!(parse("").unwrap().as_hash().unwrap().len(), 0);
    assert_eq!(parse("# nothing\n\n").unwrap().as_hash().unwrap().len(), 0);
}

fn error(text: &str) -> VscfError {
    parse(text).expect_err(text)
}

#[test]
fn bad_inputs_name_the_line_and_reason() {
    let e = error("a => {\n b => 1\n");
    assert!(e.reason.contains("'}' is missing"), "{e}");
    let e = error("a => [ 1, 2\n");
    assert!(e.reason.contains("']' is missing"), "{e}");
    let e = error("a => 1\nb 2\n");
    assert_eq!(e.line, 2);
    assert!(
        e.reason.contains("expected '=>' or '=' after key \"b\""),
        "{e}"
    );
    let e = error("a => 1\n\na => 2\n");
    assert_eq!((e.line, e.reason.as_str()), (3, "duplicate key \"a\""));
    let e = error("x => \"open\n\n");
    assert_eq!(
        (e.line, e.reason.as_str()),
        (1, "unterminated quoted string")
    );
    let e = error("x =>");
    assert!(e.reason.contains("value is missing"), "{e}");
    let e = error("x => }");
    assert!(e.reason.contains("expected a value, found '}'"), "{e}");
    let e = error("}");
    assert!(e.reason.contains("expected a key"), "{e}");
    let e = error("\n$include{other}\n");
    assert_eq!(e.line, 2);
    assert!(e.reason.contains("$include are not supported"), "{e}");
    let e = error(r"x => \999");
    assert!(e.reason.contains("above 255"), "{e}");
    let e = error("x => a\\");
    assert!(e.reason.contains("after '\\'"), "{e}");
}

#[test]
fn input_is_bounded() {
    let deep = format!(
        "x => {}{}",
        "[".repeat(MAX_DEPTH + 1),
        "]".repeat(MAX_DEPTH + 1)
    );
    assert!(error(&deep).reason.contains("nested deeper"));
    let ok = format!("x => {}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    parse(&ok).unwrap();
    let big = "#".repeat(MAX_BYTES + 1);
    assert!(error(&big).reason.contains("more than"));
}

#[test]
fn invalid_utf8_is_an_error_not_a_panic() {
    // parse takes &str, so invalid UTF-8 can only arrive through escapes.
    assert!(error(r#"x => "\255\254""#).reason.contains("UTF-8"));
}
