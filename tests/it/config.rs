//! Configuration: errors that name file, field and line; `steerdns check`; reload keeps the
//! last good snapshot (library reload, HTTP status, and SIGHUP to the real binary).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use steerdns::config::Config;
use steerdns::control::build_snapshot;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// A one-step geo policy whose first (and only) rule has the classic mistake.
const UK_POLICY: &str = r#"
name = "www.example.com"
ttl_s = 30

[targets.cdn-a]
cname = "cdn-a.example.net."

[targets.cdn-d]
cname = "cdn-d.example.net."

[[chain]]
kind = "geo"
default = ["cdn-a"]
rules = [{ match = { country = "UK" }, targets = ["cdn-d"] }]
"#;

/// The demo www policy with another default (the answer for clients not in the GeoIP data).
fn www_with_default_b() -> String {
    let policy = WWW_POLICY.replace(
        "default = [\"cdn-a\", \"cdn-b\"]",
        "default = [\"cdn-b\", \"cdn-a\"]",
    );
    assert_ne!(policy, WWW_POLICY, "the demo www policy changed shape");
    policy
}

fn policy_path(dir: &TempDir, file: &str) -> String {
    dir.join(&format!("policies/{file}")).display().to_string()
}

/// Load the config at `path` and build a snapshot; the error text.
fn build_error(path: &Path) -> String {
    let config = Config::load(path).unwrap_or_else(|e| panic!("config loads: {e}"));
    match build_snapshot(&config, 1) {
        Ok(_) => panic!("{} should not build", path.display()),
        Err(errors) => errors.to_string(),
    }
}

/// The demo zone with line `mail IN A` made invalid; returns (zone text, 1-based line).
fn zone_with_syntax_error() -> (String, usize) {
    let mut line_no = 0;
    let zone: String = DEMO_ZONE
        .lines()
        .enumerate()
        .map(|(i, line)| {
            if line.starts_with("mail ") {
                line_no = i + 1;
                "mail    IN A    192.0.2.999\n".to_owned()
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    assert!(line_no > 0);
    (zone, line_no)
}

#[test]
fn bad_country_names_file_field_and_suggests_gb() {
    let dir = TempDir::new("uk");
    let config = write_config(
        &dir,
        DEMO_ZONE,
        &[
            ("www.example.com.toml", UK_POLICY),
            ("pop.example.com.toml", POP_POLICY),
        ],
    );
    let text = build_error(&config);
    let file = policy_path(&dir, "www.example.com.toml");
    assert!(
        text.contains(&format!("{file}: chain[0].rules[0].match.country: ")),
        "{text}"
    );
    assert!(text.contains("\"UK\""), "{text}");
    assert!(text.contains("did you mean \"GB\"?"), "{text}");
    assert_eq!(text.lines().count(), 1, "one error: {text}");
}

#[test]
fn zone_syntax_error_names_file_and_line() {
    let dir = TempDir::new("zone-syntax");
    let (zone, line) = zone_with_syntax_error();
    let config = write_config(&dir, &zone, &demo_policies());
    let text = build_error(&config);
    let file = dir.join("zones/example.com.zone").display().to_string();
    assert!(
        text.contains(&format!("{file}:{line}: ")),
        "want {file}:{line} in {text}"
    );
}

/// `check` shows every problem at once, not just the first.
#[test]
fn all_errors_are_reported_together() {
    let dir = TempDir::new("many");
    let (zone, line) = zone_with_syntax_error();
    let bad_pop = POP_POLICY.replace("continent = \"EU\"", "continent = \"EUR\"");
    let config = write_config(
        &dir,
        &zone,
        &[
            ("www.example.com.toml", UK_POLICY),
            ("pop.example.com.toml", &bad_pop),
        ],
    );
    let config = Config::load(&config).unwrap();
    let errors = build_snapshot(&config, 1).expect_err("three errors").0;
    let all = errors.join("\n");
    assert!(all.contains(&format!("example.com.zone:{line}")), "{all}");
    assert!(all.contains("chain[0].rules[0].match.country"), "{all}");
    assert!(
        all.contains(&format!(
            "{}: chain[1].rules[1].match.continent",
            policy_path(&dir, "pop.example.com.toml")
        )),
        "{all}"
    );
    assert_eq!(errors.len(), 3, "{all}");
}

#[test]
fn policy_and_config_errors_name_their_field() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "targets = [\"cdn-d\", \"cdn-c\"]",
            "targets = [\"cdn-z\", \"cdn-c\"]",
            "chain[1].rules[2].targets[0]: unknown target \"cdn-z\"",
        ),
        (
            "targets = [\"cdn-d\", \"cdn-c\"]",
            "targets = [\"cdn-d\", \"cdn-d\"]",
            "chain[1].rules[2].targets[1]: \"cdn-d\" is listed twice",
        ),
        ("ttl_s = 30", "ttl_s = 0", "ttl_s"),
        (
            "default = [\"cdn-a\", \"cdn-b\"]",
            "default = [\"nope\"]",
            "chain[1].default[0]",
        ),
        (
            "default = [\"cdn-a\", \"cdn-b\"]",
            "default = []",
            "chain[1].default",
        ),
        ("asn = 6167", "asn = 0", "chain[1].rules[3].match.asn"),
        ("kind = \"up\"", "kind = \"upp\"", "TOML parse error"),
        (
            "name = \"www.example.com\"",
            "name = \"www.example.org\"",
            "name: ",
        ),
    ];
    for (from, to, field) in cases {
        let dir = TempDir::new("field");
        let policy = WWW_POLICY.replacen(from, to, 1);
        assert_ne!(policy, WWW_POLICY, "{from}");
        let config = write_config(
            &dir,
            DEMO_ZONE,
            &[
                ("www.example.com.toml", &policy),
                ("pop.example.com.toml", POP_POLICY),
            ],
        );
        let text = build_error(&config);
        let file = policy_path(&dir, "www.example.com.toml");
        assert!(
            text.contains(&format!("{file}: {field}")),
            "{to}: want {file}: {field} in {text}"
        );
    }

    // The config file itself: unknown keys and bad values name the key.
    let dir = TempDir::new("config-key");
    let path = write_config(&dir, DEMO_ZONE, &demo_policies());
    let text = std::fs::read_to_string(&path).unwrap();
    for (from, to, field) in [
        ("[dns]\n", "[dns]\nlisen = []\n", "lisen"),
        (
            "[dns]\n",
            "[dns]\nmax_udp_payload = 100\n",
            "dns.max_udp_payload",
        ),
        ("[dns]\n", "[dns]\nudp_threads = 0\n", "dns.udp_threads"),
        (
            "listen = [\"127.0.0.1:0\"]",
            "listen = [\"127.0.0.1\"]",
            "dns.listen[0]",
        ),
    ] {
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        let e = Config::load(&path).expect_err(to).to_string();
        assert!(e.starts_with(&format!("{}: ", path.display())), "{e}");
        assert!(e.contains(field), "{field} in {e}");
    }
}

/// A DNS character-string is at most 255 bytes (RFC 1035 §3.3). A zone that loads must be
/// servable: either the loader rejects the over-long string naming the file, or the record
/// is served correctly. (Regression test: before 4ccab55 it loaded, and every query for the
/// name was a bare SERVFAIL.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_with_an_overlong_txt_string_is_rejected_or_served() {
    let dir = TempDir::new("long-txt");
    let zone = format!("{DEMO_ZONE}\nlong IN TXT \"{}\"\n", "y".repeat(300));
    let path = write_config(&dir, &zone, &demo_policies());
    let config = Config::load(&path).unwrap();
    match build_snapshot(&config, 1) {
        Err(errors) => {
            let text = errors.to_string();
            let file = dir.join("zones/example.com.zone").display().to_string();
            assert!(text.contains(&file), "{text}");
            assert!(text.contains("long.example.com."), "{text}");
            assert!(text.contains("255"), "{text}");
        }
        Ok(_) => {
            let running = start_file(&path).await;
            let reply = tcp(v4(&running), &query("long.example.com", RecordType::TXT)).await;
            assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
            assert_eq!(reply.answers.len(), 1);
            running.shutdown().await;
        }
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = tcp_connect(addr).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut body = Vec::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut body))
        .await
        .expect("HTTP reply in time")
        .expect("HTTP read");
    String::from_utf8_lossy(&body).into_owned()
}

async fn www_target(server: SocketAddr, subnet: Option<&str>) -> String {
    let q = match subnet {
        Some(s) => ecs_query("www.example.com", RecordType::A, s),
        None => query("www.example.com", RecordType::A),
    };
    let reply = udp(server, &q).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    cname_targets(&reply).join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_reload_keeps_the_last_good_config_and_a_fix_applies() {
    let dir = TempDir::new("reload");
    let config = write_config(&dir, DEMO_ZONE, &demo_policies());
    let running = start_file(&config).await;
    let server = v4(&running);
    let http = running.http_addr.expect("HTTP listener");
    assert_eq!(running.published.load().generation, 1);
    assert_eq!(www_target(server, None).await, "cdn-a.example.net.");
    assert_eq!(
        www_target(server, Some("81.2.69.142/32")).await,
        "cdn-d.example.net."
    );

    // Break the policy: the reload fails, naming file and field; nothing changes.
    let www = dir.join("policies/www.example.com.toml");
    std::fs::write(&www, WWW_POLICY.replace("\"GB\"", "\"UK\"")).unwrap();
    let errors = running.reload().await.expect_err("bad policy").to_string();
    assert!(
        errors.contains(&format!(
            "{}: chain[1].rules[2].match.country",
            www.display()
        )),
        "{errors}"
    );
    assert!(errors.contains("did you mean \"GB\""), "{errors}");
    assert_eq!(running.published.load().generation, 1);
    assert!(running.published.is_stale());
    assert_eq!(www_target(server, None).await, "cdn-a.example.net.");
    assert_eq!(
        www_target(server, Some("81.2.69.142/32")).await,
        "cdn-d.example.net."
    );
    let d = dig(server, &["www.example.com", "A", "+subnet=2a02:d180::/56"]).await;
    assert_eq!(d.answer_data("CNAME"), vec!["cdn-c.example.net."]);
    let ready = http_get(http, "/readyz").await;
    assert!(ready.contains("200 OK"), "{ready}");
    assert!(
        ready.contains("generation 1") && ready.contains("stale"),
        "{ready}"
    );
    let metrics = http_get(http, "/metrics").await;
    assert!(metrics.contains("steerdns_snapshot_stale 1"), "{metrics}");
    assert!(
        metrics.contains("steerdns_snapshot_generation 1"),
        "{metrics}"
    );

    // A broken zone file is refused the same way.
    std::fs::write(&www, WWW_POLICY).unwrap();
    let (zone, line) = zone_with_syntax_error();
    let zone_path = dir.write("zones/example.com.zone", &zone);
    let errors = running.reload().await.expect_err("bad zone").to_string();
    assert!(
        errors.contains(&format!("{}:{line}", zone_path.display())),
        "{errors}"
    );
    assert_eq!(running.published.load().generation, 1);
    assert_eq!(
        addresses(
            &udp(server, &query("mail.example.com", RecordType::A))
                .await
                .answers
        ),
        vec!["192.0.2.25"]
    );

    // Fix everything and change the policy: the new answers serve, generation + 1.
    dir.write(
        "zones/example.com.zone",
        &format!("{DEMO_ZONE}\nnew IN A 192.0.2.77\n"),
    );
    std::fs::write(&www, www_with_default_b()).unwrap();
    assert_eq!(running.reload().await.expect("good config"), 2);
    assert_eq!(running.published.load().generation, 2);
    assert!(!running.published.is_stale());
    assert_eq!(www_target(server, None).await, "cdn-b.example.net.");
    assert_eq!(
        www_target(server, Some("81.2.69.142/32")).await,
        "cdn-d.example.net."
    );
    let d = dig(server, &["new.example.com", "A"]).await;
    assert_eq!(d.answer_data("A"), vec!["192.0.2.77"], "{}", d.text);
    let metrics = http_get(http, "/metrics").await;
    assert!(metrics.contains("steerdns_snapshot_stale 0"), "{metrics}");
    assert!(
        metrics.contains("steerdns_snapshot_generation 2"),
        "{metrics}"
    );
    running.shutdown().await;
}

/// Missing GeoIP data or a vanished config file fail the reload; the old snapshot serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_without_geoip_or_config_keeps_serving() {
    let dir = TempDir::new("reload-geoip");
    let config = write_config(&dir, DEMO_ZONE, &demo_policies());
    let running = start_file(&config).await;
    let server = v4(&running);
    let good = std::fs::read_to_string(&config).unwrap();

    std::fs::write(
        &config,
        good.replace("GeoIP2-City-Test.mmdb", "No-Such-City.mmdb"),
    )
    .unwrap();
    let errors = running.reload().await.expect_err("no city DB").to_string();
    assert!(errors.contains("No-Such-City.mmdb"), "{errors}");
    assert_eq!(running.published.load().generation, 1);
    assert_eq!(
        www_target(server, Some("2a02:d180::/56")).await,
        "cdn-c.example.net."
    );

    std::fs::remove_file(&config).unwrap();
    let errors = running.reload().await.expect_err("no config").to_string();
    assert!(errors.contains(&config.display().to_string()), "{errors}");
    assert_eq!(running.published.load().generation, 1);

    std::fs::write(&config, &good).unwrap();
    assert_eq!(running.reload().await.expect("restored"), 2);
    assert_eq!(
        www_target(server, Some("2a02:d180::/56")).await,
        "cdn-c.example.net."
    );
    running.shutdown().await;
}

/// A reload can add a steered name (a new policy file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_a_steered_name() {
    let dir = TempDir::new("reload-new");
    let config = write_config(&dir, DEMO_ZONE, &demo_policies());
    let running = start_file(&config).await;
    let server = v4(&running);
    let reply = udp(server, &query("api.example.com", RecordType::A)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);

    dir.write(
        "policies/api.example.com.toml",
        &POP_POLICY.replace("pop.example.com", "api.example.com"),
    );
    assert_eq!(running.reload().await.expect("new policy"), 2);
    let reply = udp(
        server,
        &ecs_query("api.example.com", RecordType::A, "175.16.199.0/24"),
    )
    .await;
    assert_eq!(addresses(&reply.answers), vec!["192.0.2.3"]);
    assert_eq!(reply_ecs(&reply).unwrap().2, 24);
    running.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The real binary

pub(crate) fn steerdns() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_steerdns"));
    command.env("NO_COLOR", "1").env("RUST_LOG", "info");
    command
}

pub(crate) async fn run(mut command: Command) -> std::process::Output {
    tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .expect("steerdns finished in time")
    .unwrap()
    .expect("run steerdns")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_command_accepts_a_good_config() {
    let dir = TempDir::new("check-good");
    let config = write_config(&dir, DEMO_ZONE, &demo_policies());
    let mut command = steerdns();
    command.arg("check").arg(&config);
    let out = run(command).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("{}: OK", config.display())),
        "{stdout}"
    );
    assert!(stdout.contains("2 steered name(s)"), "{stdout}");

    // No argument: the embedded demo.
    let mut command = steerdns();
    command.arg("check");
    let out = run(command).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("embedded demo"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_command_rejects_bad_configs_naming_file_and_field() {
    let dir = TempDir::new("check-bad");
    let config = write_config(
        &dir,
        DEMO_ZONE,
        &[
            ("www.example.com.toml", UK_POLICY),
            ("pop.example.com.toml", POP_POLICY),
        ],
    );
    let mut command = steerdns();
    command.arg("check").arg(&config);
    let out = run(command).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
    assert!(
        stderr.contains(&format!(
            "{}: chain[0].rules[0].match.country",
            policy_path(&dir, "www.example.com.toml")
        )),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean \"GB\""), "{stderr}");

    // A zone syntax error: file and line.
    let dir = TempDir::new("check-zone");
    let (zone, line) = zone_with_syntax_error();
    let config = write_config(&dir, &zone, &demo_policies());
    let mut command = steerdns();
    command.arg("check").arg(&config);
    let out = run(command).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let zone_file = dir.join("zones/example.com.zone");
    assert!(
        stderr.contains(&format!("{}:{line}", zone_file.display())),
        "{stderr}"
    );

    // A config file that does not exist.
    let missing = dir.join("nope.toml");
    let mut command = steerdns();
    command.arg("check").arg(&missing);
    let out = run(command).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
}

/// The real binary, killed by its own pid when the test ends (also on panic).
pub(crate) struct ServeProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl ServeProcess {
    /// Spawn `serve -c config` on an ephemeral DNS port, HTTP off, with more arguments.
    pub(crate) fn spawn_with(config: &Path, args: &[&str]) -> Self {
        let mut command = steerdns();
        command
            .args(["serve", "--config"])
            .arg(config)
            .args(["--dns-listen", "127.0.0.1:0", "--http-listen", "off"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn steerdns serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        // Drains stderr until the process exits, so the pipe never fills up.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Wait (bounded) for a log line containing `needle`; returns it.
    pub(crate) fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.log.push(line.clone());
                    if found {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no log line with {needle:?} ({e}); log so far:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// The log lines read so far (by [`ServeProcess::wait_for`]).
    pub(crate) fn log(&self) -> &[String] {
        &self.log
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send SIGHUP with `kill` (a path, for the one systemd's ExecReload names), then wait off
    /// the runtime for the log line `outcome` ("reloaded configuration", "reload failed").
    pub(crate) async fn reload(mut self, kill: &str, outcome: &'static str) -> Self {
        let status = std::process::Command::new(kill)
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        tokio::task::spawn_blocking(move || {
            self.wait_for(outcome);
            self
        })
        .await
        .unwrap()
    }

    /// Start `serve -c config` off the runtime and wait for its DNS address.
    pub(crate) async fn start(config: std::path::PathBuf) -> (Self, SocketAddr) {
        Self::start_with(config, Vec::new()).await
    }

    /// [`ServeProcess::start`] with more arguments after `serve`'s own.
    pub(crate) async fn start_with(
        config: std::path::PathBuf,
        args: Vec<&'static str>,
    ) -> (Self, SocketAddr) {
        tokio::task::spawn_blocking(move || {
            let mut process = ServeProcess::spawn_with(&config, &args);
            let line = process.wait_for("DNS listening on ");
            let addr = line
                .split("DNS listening on ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|a| a.parse::<SocketAddr>().ok())
                .unwrap_or_else(|| panic!("no address in {line:?}"));
            (process, addr)
        })
        .await
        .unwrap()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `steerdns serve` from a config file, then SIGHUP: a broken policy is refused and the old
/// answers keep coming, a fixed one is picked up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_binary_reloads_on_sighup_and_keeps_last_good() {
    let dir = TempDir::new("sighup");
    let config = write_config(&dir, DEMO_ZONE, &demo_policies());
    let (process, server) = ServeProcess::start(config.clone()).await;
    assert_eq!(www_target(server, None).await, "cdn-a.example.net.");

    let www = dir.join("policies/www.example.com.toml");
    std::fs::write(&www, WWW_POLICY.replace("\"GB\"", "\"UK\"")).unwrap();
    let process = process.reload("kill", "reload failed").await;
    let failed = process.log.last().unwrap().clone();
    assert!(
        failed.contains("chain[1].rules[2].match.country"),
        "{failed}"
    );
    assert_eq!(www_target(server, None).await, "cdn-a.example.net.");

    std::fs::write(&www, www_with_default_b()).unwrap();
    let process = process.reload("kill", "reloaded configuration").await;
    assert_eq!(www_target(server, None).await, "cdn-b.example.net.");
    let d = dig(server, &["www.example.com", "A", "+subnet=81.2.69.142/32"]).await;
    assert_eq!(d.answer_data("CNAME"), vec!["cdn-d.example.net."]);
    drop(process);
}

/// Zone contents that parse but cannot be served are refused, each with its reason.
#[test]
fn zone_content_errors_are_refused() {
    let without = |prefix: &str| -> String {
        DEMO_ZONE
            .lines()
            .filter(|l| !l.starts_with(prefix))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let soa_start = DEMO_ZONE.find("@       IN SOA").unwrap();
    let soa_end = soa_start + DEMO_ZONE[soa_start..].find(")").unwrap() + 1;
    let no_soa = format!("{}{}", &DEMO_ZONE[..soa_start], &DEMO_ZONE[soa_end..]);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "CNAME and other data",
            format!("{DEMO_ZONE}static IN A 192.0.2.9\n"),
            "has a CNAME and other records",
        ),
        (
            "record outside the zone",
            format!("{DEMO_ZONE}www.example.org. IN A 192.0.2.9\n"),
            "outside the zone",
        ),
        ("no SOA", no_soa, "no SOA record at the apex"),
        (
            "no apex NS",
            without("@       IN NS"),
            "no NS records at the apex",
        ),
    ];
    for (what, zone, reason) in cases {
        let dir = TempDir::new("zone-content");
        let config = write_config(&dir, &zone, &demo_policies());
        let text = build_error(&config);
        assert!(text.contains(reason), "{what}: want {reason:?} in {text}");
        assert!(
            text.contains("example.com"),
            "{what}: names the zone: {text}"
        );
    }
}

/// A steered name must be free: not defined twice, not a name with static records.
#[test]
fn steered_name_conflicts_are_refused() {
    let dir = TempDir::new("steer-twice");
    let config = write_config(
        &dir,
        DEMO_ZONE,
        &[
            ("www.example.com.toml", WWW_POLICY),
            ("pop.example.com.toml", POP_POLICY),
            ("copy-of-www.toml", WWW_POLICY),
        ],
    );
    let text = build_error(&config);
    // Files load in name order: copy-of-www.toml first.
    assert!(
        text.contains(&format!(
            "{}: name: www.example.com is already defined in {}",
            policy_path(&dir, "www.example.com.toml"),
            policy_path(&dir, "copy-of-www.toml")
        )),
        "{text}"
    );

    let dir = TempDir::new("steer-static");
    let mail = POP_POLICY.replace("pop.example.com", "mail.example.com");
    let mut policies = demo_policies();
    policies.push(("mail.example.com.toml", &mail));
    let config = write_config(&dir, DEMO_ZONE, &policies);
    let text = build_error(&config);
    assert!(
        text.contains(&format!(
            "{}: name: mail.example.com. also has static records",
            policy_path(&dir, "mail.example.com.toml")
        )),
        "{text}"
    );
}

/// A steered name below a zone cut can never be answered (the referral wins), so it must be
/// refused when loading, like a name outside every zone. (Regression test: before e1a8318 such
/// a policy passed `steerdns check` and every query for it got the referral.)
#[test]
fn steered_name_below_a_delegation_is_refused() {
    let dir = TempDir::new("steer-below-cut");
    let below = POP_POLICY.replace("pop.example.com", "cdn.sub.example.com");
    let mut policies = demo_policies();
    policies.push(("cdn.sub.example.com.toml", &below));
    let config = write_config(&dir, DEMO_ZONE, &policies);
    let text = build_error(&config);
    assert!(
        text.contains(&format!(
            "{}: name: cdn.sub.example.com. is below a delegation",
            policy_path(&dir, "cdn.sub.example.com.toml")
        )),
        "{text}"
    );
}
