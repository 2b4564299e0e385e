//! The command line, as a user runs it: `steerdns diff` (what a policy change would do) and
//! `steerdns check` on chains that are wrong.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::*;

const DEMO_POLICIES: [(&str, &str); 8] = [
    ("www.example.com.toml", WWW_POLICY),
    ("pop.example.com.toml", POP_POLICY),
    (
        "weighted.example.com.toml",
        include_str!("../../policies/weighted.example.com.toml"),
    ),
    (
        "ramp.example.com.toml",
        include_str!("../../policies/ramp.example.com.toml"),
    ),
    (
        "failover.example.com.toml",
        include_str!("../../policies/failover.example.com.toml"),
    ),
    (
        "ap.example.com.toml",
        include_str!("../../policies/ap.example.com.toml"),
    ),
    (
        "perf.example.com.toml",
        include_str!("../../policies/perf.example.com.toml"),
    ),
    (
        "rum.example.com.toml",
        include_str!("../../policies/rum.example.com.toml"),
    ),
];

/// Run the binary; (exit code, stdout, stderr).
async fn steerdns(args: &[&str], paths: &[&Path]) -> (Option<i32>, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_steerdns"));
    command.env("NO_COLOR", "1").env("RUST_LOG", "warn");
    command.args(args).args(paths);
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .expect("steerdns finished in time")
    .unwrap()
    .expect("run steerdns");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_prints_the_regions_that_change() {
    let dir = TempDir::new("diff");
    let old = dir.write("old.toml", WWW_POLICY);
    let gb_to_c = WWW_POLICY.replace(
        "{ match = { country = \"GB\" }, targets = [\"cdn-d\", \"cdn-c\"] }",
        "{ match = { country = \"GB\" }, targets = [\"cdn-c\", \"cdn-d\"] }",
    );
    assert_ne!(gb_to_c, WWW_POLICY);
    let new = dir.write("new.toml", &gb_to_c);
    let (code, stdout, stderr) = steerdns(&["diff"], &[&old, &new]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("1 of ") && lines[0].ends_with(" regions change:"),
        "{stdout}"
    );
    assert_eq!(
        lines[1], "  country GB: cdn-d 100.0% → cdn-c 100.0%",
        "{stdout}"
    );

    // No change.
    let (code, stdout, _) = steerdns(&["diff"], &[&old, &old]).await;
    assert_eq!(code, Some(0));
    assert!(stdout.starts_with("no change in any of "), "{stdout}");

    // Europe moved to cdn-b: every European country changes, and only those.
    let eu_to_b = WWW_POLICY.replace(
        "{ match = { continent = \"EU\" }, targets = [\"cdn-c\", \"cdn-a\"] }",
        "{ match = { continent = \"EU\" }, targets = [\"cdn-b\"] }",
    );
    let eu = dir.write("eu.toml", &eu_to_b);
    let (code, stdout, stderr) = steerdns(&["diff"], &[&old, &eu]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("  country DE: cdn-c 100.0% → cdn-b 100.0%"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("country GB"),
        "GB has its own rule: {stdout}"
    );
    assert!(!stdout.contains("country US"), "{stdout}");

    // Weighted shares in every region; at 50/50, cdn-b's capacity limit (max_share 0.4) binds.
    let weighted = include_str!("../../policies/weighted.example.com.toml");
    let w_old = dir.write("w-old.toml", weighted);
    let w_new = dir.write(
        "w-new.toml",
        &weighted.replace("cdn-a = 70, cdn-b = 30", "cdn-a = 50, cdn-b = 50"),
    );
    let (code, stdout, stderr) = steerdns(&["diff"], &[&w_old, &w_new]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("not located: cdn-a 70.0%, cdn-b 30.0% → cdn-a 60.0%, cdn-b 40.0%"),
        "{stdout}"
    );

    // With a config file (its GeoIP data), and an invalid new file.
    let config = write_config(&dir, DEMO_ZONE, &demo_policies());
    let bad = dir.write("bad.toml", &WWW_POLICY.replace("\"GB\"", "\"UK\""));
    let (code, stdout, stderr) = steerdns(
        &["diff", "--config", &config.display().to_string()],
        &[&old, &bad],
    )
    .await;
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: chain[1].rules[2].match.country",
            bad.display()
        )),
        "{stderr}"
    );
    let (code, stdout, stderr) = steerdns(
        &["diff", "--config", &config.display().to_string()],
        &[&old, &new],
    )
    .await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("country GB: cdn-d 100.0% → cdn-c 100.0%"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_accepts_all_demo_policies_from_a_directory() {
    let dir = TempDir::new("check-all");
    let config = write_config(&dir, DEMO_ZONE, &DEMO_POLICIES);
    let (code, stdout, stderr) = steerdns(&["check"], &[&config]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("8 steered name(s)"), "{stdout}");
}

/// Chains that are wrong: `check` names the file, the step and the reason, and exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_bad_step_of_a_chain() {
    let selector_first = WWW_POLICY.replace(
        "[[chain]]\nkind = \"up\"\n",
        "[[chain]]\nkind = \"weighted\"\nweights = { cdn-a = 1 }\n",
    );
    let two_ups = WWW_POLICY.replace(
        "[[chain]]\nkind = \"up\"\n",
        "[[chain]]\nkind = \"up\"\n\n[[chain]]\nkind = \"up\"\n",
    );
    let two_selectors = format!(
        "{WWW_POLICY}\n[[chain]]\nkind = \"failover\"\n\n[[chain]]\nkind = \"weighted\"\nweights = {{ cdn-a = 1 }}\n"
    );
    let no_chain = WWW_POLICY[..WWW_POLICY.find("[[chain]]").unwrap()].to_owned();
    let empty_chain = no_chain.replacen("\n[targets.", "\nchain = []\n\n[targets.", 1);
    let unknown_kind = WWW_POLICY.replace("kind = \"up\"", "kind = \"fastest\"");
    let zero_weights = WWW_POLICY.replace("[[chain]]\nkind = \"up\"\n", "")
        + "\n[[chain]]\nkind = \"weighted\"\nweights = { cdn-a = 0, cdn-b = 0 }\n";
    let ap_same = WWW_POLICY.replace("[[chain]]\nkind = \"up\"\n", "")
        + "\n[[chain]]\nkind = \"active_passive\"\nprimary = \"cdn-a\"\nstandby = \"cdn-a\"\n";
    let old_format = "name = \"www.example.com\"\ndefault = \"cdn-a\"\n\n[targets.cdn-a]\ncname = \"cdn-a.example.net.\"\n\n[[rules]]\nmatch = { country = \"GB\" }\ntarget = \"cdn-a\"\n".to_owned();
    assert!(selector_first.contains("kind = \"weighted\""));
    assert_ne!(two_ups, WWW_POLICY);

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "selector first",
            selector_first,
            "chain[0]: \"weighted\" makes the final pick, so it must be the last step",
        ),
        (
            "two up steps",
            two_ups,
            "chain[1]: a chain has at most one \"up\" step",
        ),
        (
            "two selectors",
            two_selectors,
            "chain[2]: \"failover\" makes the final pick, so it must be the last step",
        ),
        ("no chain", no_chain, "missing field `chain`"),
        (
            "empty chain",
            empty_chain,
            "chain: at least one step is required",
        ),
        ("unknown kind", unknown_kind, "unknown variant `fastest`"),
        (
            "all weights zero",
            zero_weights,
            "chain[1].weights: at least one weight must be above 0",
        ),
        (
            "primary is standby",
            ap_same,
            "chain[1].standby: must differ from the primary",
        ),
        ("the old format", old_format, "unknown field `default`"),
    ];
    let mut failures = Vec::new();
    for (what, policy, needle) in &cases {
        let dir = TempDir::new("check-chain");
        let config = write_config(
            &dir,
            DEMO_ZONE,
            &[
                ("www.example.com.toml", policy),
                ("pop.example.com.toml", POP_POLICY),
            ],
        );
        let (code, stdout, stderr) = steerdns(&["check"], &[&config]).await;
        let file = dir
            .join("policies/www.example.com.toml")
            .display()
            .to_string();
        let ok = code == Some(1)
            && stdout.is_empty()
            && stderr.contains(&file)
            && stderr.contains(needle)
            && !stderr.contains("pop.example.com.toml");
        if !ok {
            failures.push(format!(
                "{what}: want exit 1 and {file} … {needle:?}; got {code:?}\n{stdout}{stderr}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `serve`'s first log lines, up to the one saying DNS listens (stderr is a pipe here, as
/// under systemd or a log collector); the process is killed after.
fn serve_log_lines(extra: &[&str]) -> Vec<String> {
    use std::io::{BufRead, BufReader};
    let dir = TempDir::new("cli-logs");
    let config = write_config(&dir, DEMO_ZONE, &demo_policies());
    let mut child = Command::new(env!("CARGO_BIN_EXE_steerdns"))
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .args(extra)
        .arg("serve")
        .arg("-c")
        .arg(&config)
        .args(["--dns-listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run steerdns");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let done = line.contains("DNS listening");
            if tx.send(line).is_err() || done {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
        let done = line.contains("DNS listening");
        lines.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        lines.iter().any(|l| l.contains("DNS listening")),
        "serve said it listens: {lines:?}"
    );
    lines
}

#[test]
fn logs_carry_no_colour_codes_off_a_terminal_and_can_be_json() {
    let text = serve_log_lines(&[]);
    for line in &text {
        assert!(!line.contains('\u{1b}'), "no ANSI escape: {line:?}");
    }
    let json = serve_log_lines(&["--log-format", "json"]);
    for line in &json {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{v}");
        assert!(v["fields"]["message"].is_string(), "{v}");
    }
}

/// Run the binary to completion (no server involved); its stdout, asserting it succeeded.
fn steerdns_stdout(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_steerdns"))
        .args(args)
        .output()
        .expect("run steerdns");
    assert!(
        out.status.success(),
        "steerdns {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The commands `steerdns --help` lists (so a command added later is checked too).
fn listed_commands() -> Vec<String> {
    let help = steerdns_stdout(&["--help"]);
    let commands: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect();
    for expected in [
        "serve", "check", "explain", "diff", "probe", "policy", "man",
    ] {
        assert!(commands.iter().any(|c| c == expected), "{help}");
    }
    commands
}

/// The long flags a command's `--help` lists, e.g. `--dns-listen`.
fn listed_flags(command: &str) -> Vec<String> {
    let help = steerdns_stdout(&[command, "--help"]);
    let flags: Vec<String> = help
        .lines()
        .flat_map(|l| l.split([' ', ',', '=', '<']))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_owned)
        .collect();
    assert!(flags.iter().any(|f| f == "--help"), "{help}");
    if command == "serve" {
        assert!(flags.iter().any(|f| f == "--dns-listen"), "{help}");
    }
    flags
}

#[test]
fn bash_completion_parses_and_completes_every_command_and_serve_flag() {
    let script = steerdns_stdout(&["completions", "bash"]);
    let dir = TempDir::new("completions");
    let path = dir.write("steerdns.bash", &script);
    let syntax = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(
        syntax.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    // Complete as bash would on <TAB>: the function the script registers, given the words.
    let complete = |words: &str| -> Vec<String> {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
                 _steerdns steerdns \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
                 printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                path.display()
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let commands = complete("steerdns ''");
    for command in listed_commands() {
        assert!(commands.contains(&command), "{command} in {commands:?}");
    }
    let flags = complete("steerdns serve --");
    for flag in listed_flags("serve") {
        assert!(flags.contains(&flag), "{flag} in {flags:?}");
    }
    for shell in ["zsh", "fish"] {
        let script = steerdns_stdout(&["completions", shell]);
        assert!(script.contains("dns-listen"), "{shell}: {script}");
    }
}

#[test]
fn man_page_has_every_command_and_serve_flag_and_renders_cleanly() {
    let roff = steerdns_stdout(&["man"]);
    assert!(roff.starts_with(".ie") || roff.starts_with(".TH"), "{roff}");
    let text = roff.replace("\\-", "-");
    for command in listed_commands() {
        let heading = format!(".SS \"steerdns {command}\"");
        assert!(text.contains(&heading), "{heading} in the man page");
    }
    for command in ["serve", "probe", "diff"] {
        for flag in listed_flags(command) {
            assert!(text.contains(&flag), "{command} {flag} in the man page");
        }
    }
    for env in ["STEERDNS_ADMIN_TOKEN", "RUST_LOG", "SIGHUP"] {
        assert!(text.contains(env), "{env} in the man page");
    }
    let dir = TempDir::new("man");
    let page = dir.write("steerdns.1", &roff);
    // man-db formats it as `man steerdns` would (preconv, tbl, groff); --warnings turns on
    // groff's warnings, and any on stderr fails the test. Without man-db, groff itself.
    let (tool, out) = if Path::new("/usr/bin/man").exists() {
        let out = Command::new("man")
            .args(["--warnings", "-E", "UTF-8", "-l"])
            .arg(&page)
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        ("man", out)
    } else if Path::new("/usr/bin/groff").exists() {
        let out = Command::new("groff")
            .args(["-k", "-man", "-ww", "-Tutf8"])
            .arg(&page)
            .output()
            .unwrap();
        ("groff", out)
    } else {
        eprintln!("SKIPPED rendering the man page: neither man (man-db) nor groff is installed");
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "{tool}: {stderr}"
    );
    // Bold and underline come as overstrikes (c, backspace, c): keep the last of each.
    let mut shown = String::new();
    for c in String::from_utf8_lossy(&out.stdout).chars() {
        if c == '\u{8}' {
            shown.pop();
        } else {
            shown.push(c);
        }
    }
    assert!(shown.contains("--dns-listen"), "{tool} output: {shown}");
    assert!(
        shown.contains("steerdns policy export"),
        "{tool} output: {shown}"
    );
}
