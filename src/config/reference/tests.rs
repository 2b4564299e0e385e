//! The reference table against the real parser, and `docs/config.md` and the other docs'
//! config snippets against the table.

use std::path::Path;

use super::*;
use crate::config::shape::{self, Kind};
use crate::config::{Config, ConfigError, RawConfig};

const REGENERATE: &str = "UPDATE_DOCS=1 cargo test --lib config::reference";

/// Lines a section needs so that a config holding it validates.
fn minimum(section: &str) -> &'static str {
    match section {
        "zone" => r#"origin = "example.com""#,
        // A file, not the bundled databases: their bytes would swamp the Debug output the
        // default checks compare.
        "geoip" => r#"city = "GeoLite2-City.mmdb""#,
        "geoip.override" => "cidr = \"198.51.100.0/24\"\ncountry = \"DE\"",
        "rum" => r#"zone = "rum.example.com""#,
        "rum.target" => "id = \"cdn-a\"\nsmall = \"https://cdn-a.example.net/rum/test.gif\"",
        _ => "",
    }
}

/// Whether a config testing a key of `tested` has section `section`.
fn present(section: &str, tested: &str) -> bool {
    let rum = |s: &str| s == "rum" || s.starts_with("rum.");
    matches!(section, "zone" | "geoip")
        || section == tested
        || (rum(tested) && matches!(section, "rum" | "rum.target"))
}

fn key_of(line: &str) -> Option<&str> {
    line.split_once('=').map(|(k, _)| k.trim())
}

/// A valid config with `lines` in section `tested`, leaving out the section minimum's lines
/// that `lines` set, and the key `drop`.
fn config(tested: &str, lines: &str, drop: Option<&str>) -> String {
    let set: Vec<&str> = lines.lines().filter_map(key_of).chain(drop).collect();
    let mut out = String::new();
    for s in SECTIONS.iter().filter(|s| present(s.name, tested)) {
        out.push_str(&header(s));
        out.push('\n');
        for line in minimum(s.name).lines() {
            if !key_of(line).is_some_and(|k| set.contains(&k)) {
                out.push_str(line);
                out.push('\n');
            }
        }
        if s.name == tested {
            out.push_str(lines);
            out.push('\n');
        }
    }
    out
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse("test.toml", text, Path::new("etc"))
}

/// `needs` and then `line`, as the lines of a section.
fn with_needs(k: &Key, line: &str) -> String {
    if k.needs.is_empty() {
        line.to_owned()
    } else {
        format!("{}\n{line}", k.needs)
    }
}

fn keys() -> impl Iterator<Item = (&'static Section, &'static Key)> {
    SECTIONS
        .iter()
        .flat_map(|s| s.keys.iter().map(move |k| (s, k)))
}

/// The field a validation error names for this key.
fn field(s: &Section, k: &Key) -> String {
    if s.array {
        format!("{}[0].{}", s.name, k.name)
    } else {
        format!("{}.{}", s.name, k.name)
    }
}

#[test]
fn the_table_has_exactly_the_keys_and_kinds_the_parser_accepts() {
    let shape = shape::of::<RawConfig>().expect("the walk covers every Raw* field");
    let mut problems = Vec::new();
    for (name, found) in &shape.sections {
        if name.is_empty() {
            for key in found.keys.keys() {
                problems.push(format!("top-level key `{key}` is not in the table"));
            }
            continue;
        }
        let Some(documented) = section(name) else {
            problems.push(format!("section [{name}] is accepted but not in the table"));
            continue;
        };
        if documented.array != found.array {
            problems.push(format!(
                "[{name}]: the table says array = {}, the parser {}",
                documented.array, found.array
            ));
        }
        for (key, kind) in &found.keys {
            let Some(k) = documented.keys.iter().find(|k| k.name == key) else {
                problems.push(format!(
                    "`{name}.{key}` is accepted by the parser but not in the table"
                ));
                continue;
            };
            let fits = match (k.ty, kind) {
                (Type::Integer, Kind::Unsigned(bits)) => {
                    let type_max = u64::MAX >> (64 - bits);
                    match k.range {
                        Range::Int { max: Some(max), .. } => max <= type_max,
                        _ => true,
                    }
                }
                (Type::Float, Kind::Float)
                | (Type::Bool, Kind::Bool)
                | (Type::Table, Kind::Map) => true,
                (Type::String | Type::Path | Type::Address, Kind::Str) => true,
                (Type::Strings, Kind::Seq(inner)) => **inner == Kind::Str,
                _ => false,
            };
            if !fits {
                problems.push(format!(
                    "`{name}.{key}`: the table says {} (range {:?}), the parser reads {kind:?}",
                    k.ty.name(),
                    k.range
                ));
            }
        }
        for k in documented.keys {
            if !found.keys.contains_key(k.name) {
                problems.push(format!(
                    "`{name}.{}` is in the table but the parser has no such key",
                    k.name
                ));
            }
        }
    }
    for s in SECTIONS {
        if !shape.sections.contains_key(s.name) {
            problems.push(format!(
                "[{}] is in the table but the parser has no such section",
                s.name
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_walk_sees_a_known_shape() {
    // Guards the walker itself: a section, an array of tables, a nested one, kinds.
    let shape = shape::of::<RawConfig>().unwrap();
    assert!(shape.sections["zone"].array);
    assert!(!shape.sections["dns.rate_limit"].array);
    assert_eq!(
        shape.sections["dns"].keys["max_udp_payload"],
        Kind::Unsigned(16)
    );
    assert_eq!(
        shape.sections["dns"].keys["listen"],
        Kind::Seq(Box::new(Kind::Str))
    );
    assert_eq!(shape.sections["health"].keys["agent_countries"], Kind::Map);
    assert!(!shape.sections["dns"].keys.contains_key("rate_limit"));
}

#[test]
fn every_section_rejects_unknown_keys() {
    for s in SECTIONS {
        let text = config(s.name, "undocumented_key = 1", None);
        let e = parse(&text).expect_err(&text);
        assert!(
            e.to_string().contains("undocumented_key"),
            "[{}]: {e}",
            s.name
        );
    }
}

#[test]
fn the_complete_example_parses() {
    let example = full_example();
    parse(&example).unwrap_or_else(|e| panic!("{e}\n{example}"));
    // With the file keys uncommented, at least the file layer takes every key.
    let all = example.replace("\n# ", "\n");
    toml::from_str::<RawConfig>(&all).unwrap_or_else(|e| panic!("{e}\n{all}"));
}

#[test]
fn every_example_is_accepted_alone() {
    for (s, k) in keys().filter(|(_, k)| !k.example_is_a_file) {
        let line = format!("{} = {}", k.name, k.example);
        let text = config(s.name, &with_needs(k, &line), None);
        parse(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", field(s, k)));
    }
}

#[test]
fn defaults_are_what_the_parser_uses() {
    let debug = |text: &str| match parse(text) {
        Ok(c) => format!("{c:?}"),
        Err(e) => panic!("{e}\n{text}"),
    };
    for (s, k) in keys() {
        let (given, value) = match k.default {
            DefaultValue::Value(v) => (k.needs.to_owned(), v),
            DefaultValue::Derived { given, equals, .. } => (with_needs(k, given), equals),
            DefaultValue::Required => {
                let text = config(s.name, k.needs, Some(k.name));
                let e = parse(&text).expect_err(&text);
                assert!(e.to_string().contains(k.name), "{}: {e}", field(s, k));
                continue;
            }
            DefaultValue::Unset(_) => continue,
        };
        let absent = config(s.name, &given, None);
        let set = config(s.name, &format!("{given}\n{} = {value}", k.name), None);
        assert_eq!(
            debug(&absent),
            debug(&set),
            "{}: leaving it out is not the same as {value}",
            field(s, k)
        );
    }
}

#[test]
fn ranges_are_the_parsers() {
    for (s, k) in keys() {
        let name = field(s, k);
        let try_value = |value: String| {
            let text = config(
                s.name,
                &with_needs(k, &format!("{} = {value}", k.name)),
                None,
            );
            parse(&text).map(drop).map_err(|e| (e, text))
        };
        let accepted = |value: String| {
            if let Err((e, text)) = try_value(value.clone()) {
                panic!("{name} = {value} should be accepted: {e}\n{text}");
            }
        };
        let rejected = |value: String| match try_value(value.clone()) {
            Ok(()) => panic!("{name} = {value} should be rejected"),
            // Past the Rust type's range the TOML layer refuses it, naming the key in its text.
            Err((e, _)) => assert!(
                e.field == name || (e.field.is_empty() && e.reason.contains(k.name)),
                "{name} = {value}: the error names another field: {e}"
            ),
        };
        match k.range {
            Range::Any => {}
            Range::Int { min, max, .. } => {
                accepted(min.to_string());
                if min > 0 {
                    rejected((min - 1).to_string());
                }
                if let Some(max) = max {
                    accepted(max.to_string());
                    rejected((max + 1).to_string());
                }
            }
            Range::Float {
                min,
                min_open,
                max,
                max_open,
            } => {
                let step = 0.01;
                if min_open {
                    rejected(format!("{min:?}"));
                    accepted(format!("{:?}", min + step));
                } else {
                    accepted(format!("{min:?}"));
                    rejected(format!("{:?}", min - step));
                }
                if let Some(max) = max {
                    if max_open {
                        rejected(format!("{max:?}"));
                        accepted(format!("{:?}", max - step));
                    } else {
                        accepted(format!("{max:?}"));
                        rejected(format!("{:?}", max + step));
                    }
                }
            }
            Range::OneOf(values) => {
                for v in values {
                    accepted(format!("{v:?}"));
                }
                rejected("\"none-of-those\"".to_owned());
            }
        }
    }
}

#[test]
fn docs_config_md_is_the_current_rendering() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config.md");
    let want = markdown();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/config.md differs from the table in src/config/reference.rs; regenerate it with\n    {REGENERATE}"
    );
}
