//! The config the other docs show, against the table: every config file and config snippet
//! in the repository (README.md, docs/, the example, packaging and bench configs) must parse
//! into the `Raw*` structs, whose unknown keys are errors, keys shown commented out must be in
//! the table, and every `` `[section] key` `` the
//! prose names must be in the table. So no doc can show a key that does not exist.

use std::path::{Path, PathBuf};

use super::*;
use crate::config::RawConfig;

/// Top-level sections: a header starting with one of these opens a config snippet.
fn is_config_section(name: &str) -> bool {
    let top = name.split('.').next().unwrap_or("");
    SECTIONS.iter().any(|s| s.name == top)
}

/// `[name]` or `[[name]]`: the name and whether it is an array.
fn table_header(line: &str) -> Option<(&str, bool)> {
    let line = line.trim();
    let line = line.split_once(" #").map_or(line, |(l, _)| l).trim_end();
    if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
        return Some((name.trim(), true));
    }
    let name = line.strip_prefix('[')?.strip_suffix(']')?;
    Some((name.trim(), false))
}

/// Whether TOML text is a config (or a piece of one): its first line that is not blank or a
/// comment opens a config section. Policies and probe targets start with a key.
fn is_config(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .and_then(table_header)
        .is_some_and(|(name, _)| is_config_section(name))
}

fn is_key_line(line: &str) -> bool {
    line.split_once(" = ").is_some_and(|(k, _)| {
        !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    })
}

/// The problems with one piece of config text: what the parser says of it as written, and
/// commented-out keys (`# key = value`, shown to be set) that their section does not have.
/// A commented key belongs to the last header above it, commented out or not.
fn check_config(text: &str) -> Vec<String> {
    let mut problems: Vec<String> = toml::from_str::<RawConfig>(text)
        .err()
        .map(|e| e.to_string().trim_end().to_owned())
        .into_iter()
        .collect();
    let mut current: Option<&str> = None;
    for (i, line) in text.lines().enumerate() {
        let commented = line.trim_start().strip_prefix('#').map(str::trim_start);
        let body = commented.unwrap_or(line);
        if let Some((name, _)) = table_header(body) {
            current = Some(name);
            continue;
        }
        let (Some(body), Some(name)) = (commented, current) else {
            continue;
        };
        if !is_key_line(body) || !is_config_section(name) {
            continue;
        }
        let key = body.split_once(" = ").map_or("", |(k, _)| k);
        let known = section(name).is_some_and(|s| s.keys.iter().any(|k| k.name == key));
        if !known {
            problems.push(format!(
                "line {}: commented-out `{key}`: [{name}] has no such key",
                i + 1
            ));
        }
    }
    problems
}

/// Problems with the `` `[section] key` `` spans of one line of prose.
fn check_prose(line: &str, problems: &mut Vec<String>) {
    for span in line.split('`').skip(1).step_by(2) {
        let Some(rest) = span.strip_prefix('[') else {
            continue;
        };
        let array = rest.starts_with('[');
        let close = if array { "]]" } else { "]" };
        let Some((name, after)) = rest.trim_start_matches('[').split_once(close) else {
            continue;
        };
        if !is_config_section(name) {
            continue;
        }
        let Some(section) = section(name) else {
            problems.push(format!("`{span}`: no section [{name}]"));
            continue;
        };
        if section.array != array {
            problems.push(format!(
                "`{span}`: [{name}] is written with the wrong brackets"
            ));
        }
        let key: String = after
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !key.is_empty() && !section.keys.iter().any(|k| k.name == key) {
            problems.push(format!("`{span}`: [{name}] has no key `{key}`"));
        }
    }
}

/// Problems in one Markdown file: its config blocks and its prose.
fn check_markdown(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut block: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match (&mut block, fence) {
            (None, true) => {
                let toml = line.trim_start().trim_start_matches('`').trim() == "toml";
                block = Some((i + 1, if toml { String::new() } else { "-".into() }));
            }
            (Some((start, body)), true) => {
                if body != "-" && is_config(body) {
                    for e in check_config(body) {
                        problems.push(format!("the toml block at line {start}: {e}"));
                    }
                }
                block = None;
            }
            (Some((_, body)), false) => {
                if body != "-" {
                    body.push_str(line);
                    body.push('\n');
                }
            }
            (None, false) => {
                let mut found = Vec::new();
                check_prose(line, &mut found);
                problems.extend(found.into_iter().map(|p| format!("line {}: {p}", i + 1)));
            }
        }
    }
    problems
}

/// The repository's `.md` and `.toml` files, but for build output, fuzz corpora (deliberately
/// broken input) and Cargo's own files.
fn doc_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.')
                && !matches!(name.as_str(), "target" | "fuzz" | "node_modules")
            {
                doc_files(&path, out);
            }
        } else if name.ends_with(".md") || (name.ends_with(".toml") && !name.starts_with("Cargo")) {
            out.push(path);
        }
    }
}

#[test]
fn docs_show_only_documented_keys() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    doc_files(root, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut configs = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let shown = path.strip_prefix(root).unwrap_or(path).display();
        let found = if path.extension().is_some_and(|e| e == "md") {
            check_markdown(&text)
        } else if is_config(&text) {
            configs += 1;
            check_config(&text)
        } else {
            Vec::new()
        };
        problems.extend(found.into_iter().map(|p| format!("{shown}: {p}")));
    }
    assert!(
        files.iter().any(|p| p.ends_with("README.md")) && configs >= 2,
        "the walk found too little: {files:?}"
    );
    assert!(
        problems.is_empty(),
        "config shown in the docs that the table (src/config/reference.rs) does not have:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_snippet_checks_catch_unknown_keys() {
    // An unknown key in a block, a commented-out one, and prose naming a missing key.
    let md = "```toml\n[dns]\nlisen = []\n```\n\n```toml\n[admin]\n# tokn_file = \"x\"\n```\n\n\
              Set `[dns.rate_limit] slipp = 3` or `[health] agent_countries`, `[zone] origin`.\n\
              A policy block is not a config:\n```toml\nname = \"x\"\n[targets.a]\ncname = \"a.\"\n```\n";
    let problems = check_markdown(md);
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(problems[0].contains("line 1") && problems[0].contains("lisen"));
    assert!(problems[1].contains("tokn_file"));
    assert!(problems[2].contains("slipp"));
    assert!(problems[3].contains("wrong brackets"));
}
