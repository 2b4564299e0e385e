//! `docs/cookbook.md` cannot rot: every `toml` block in it is written out (a block with a
//! `name` line is a policy file, any other a fragment of the server config), beside the demo
//! zone and the bundled test GeoIP data; the real `steerdns check` must accept them all, and
//! every `$ steerdns explain …` in a `console` block must print the lines shown under it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const COOKBOOK: &str = include_str!("../../docs/cookbook.md");

/// A fenced block: its info string and its lines.
struct Block {
    lang: String,
    text: String,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for line in markdown.lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(lang)) => {
                open = Some(Block {
                    lang: lang.trim().to_owned(),
                    text: String::new(),
                })
            }
            (Some(_), Some(_)) => out.extend(open.take()),
            (Some(block), None) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

/// The policy's name, if the block is a policy file.
fn policy_name(toml: &str) -> Option<String> {
    toml.lines().find_map(|l| {
        let rest = l.strip_prefix("name = ")?;
        Some(rest.trim().trim_matches('"').to_owned())
    })
}

/// `$ steerdns …` commands and the output lines shown under each.
fn commands(console: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let mut out: Vec<(Vec<String>, Vec<String>)> = Vec::new();
    for line in console.lines() {
        if let Some(command) = line.strip_prefix("$ ") {
            let args: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
            out.push((args, Vec::new()));
        } else if let Some((_, expected)) = out.last_mut()
            && !line.trim().is_empty()
        {
            expected.push(line.trim().to_owned());
        }
    }
    out
}

/// Run the binary in `dir`, at most 60 s; (success, stdout, stderr).
fn run(dir: &Path, args: &[String]) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_steerdns"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run steerdns");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("steerdns {args:?} did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_cookbook_recipe_passes_check_and_explains_as_shown() {
    let all = blocks(COOKBOOK);
    let mut policies = Vec::new();
    let mut fragments = String::new();
    for block in all.iter().filter(|b| b.lang == "toml") {
        match policy_name(&block.text) {
            Some(name) => policies.push((format!("{name}.toml"), block.text.clone())),
            None => {
                fragments.push_str(&block.text);
                fragments.push('\n');
            }
        }
    }
    assert!(
        policies.len() >= 6,
        "{} policies in the cookbook",
        policies.len()
    );
    assert!(!fragments.is_empty(), "the config fragments");

    let dir = TempDir::new("cookbook");
    dir.write("rum.secret", &format!("{}\n", crate::rum_ingest::SECRET));
    let files: Vec<(&str, &str)> = policies
        .iter()
        .map(|(f, t)| (f.as_str(), t.as_str()))
        .collect();
    let config = write_config_extra(&dir, DEMO_ZONE, &files, &fragments);

    let (ok, stdout, stderr) = run(&dir.path, &["check".into(), config.display().to_string()]);
    assert!(
        ok,
        "steerdns check refused the cookbook:\n{stdout}\n{stderr}"
    );
    let expected = format!("OK (1 zone(s), {} steered name(s)", policies.len());
    assert!(stdout.contains(&expected), "{expected} in {stdout}");

    let mut checked = 0;
    for block in all.iter().filter(|b| b.lang == "console") {
        for (args, lines) in commands(&block.text) {
            assert_eq!(
                args.first().map(String::as_str),
                Some("steerdns"),
                "{args:?}"
            );
            let (ok, stdout, stderr) = run(&dir.path, &args[1..]);
            assert!(ok, "{args:?} failed:\n{stdout}\n{stderr}");
            let got: Vec<&str> = stdout.lines().map(str::trim).collect();
            for line in &lines {
                assert!(
                    got.contains(&line.as_str()),
                    "{args:?}: the cookbook shows {line:?}, steerdns printed:\n{stdout}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 5, "{checked} commands checked");
}
