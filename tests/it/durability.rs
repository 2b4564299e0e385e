//! Durability of policy edits: the real binary is killed with SIGKILL while a stream of large
//! PUTs is being written. Afterwards the policy file is one complete version (the last
//! acknowledged one or the one in flight), never a torn one; the directory holds nothing but
//! policies, history, the compare-and-set lock file `.lock` and possibly the writer's own
//! `.<name>.tmp-*` files (removed at the next start, history included); every version that was
//! ever the file, but the current one, is in history, whole; and the server starts again from
//! it, history and rollback included. Health overrides and halted ramps (the state file) are
//! held to the same standard, and a full disk fails an edit cleanly.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime};

use crate::support::*;

const TOKEN: &str = "durability-test-token-0123456789";
const ROUNDS: usize = 10;

/// `steerdns serve` with the admin API on an ephemeral port; killed (SIGKILL) on drop.
struct Server {
    child: Child,
    admin: AdminClient,
    dns: SocketAddr,
}

impl Server {
    fn spawn(config: &Path) -> Self {
        Self::spawn_with(config, true)
    }

    /// `drain = false`: stop reading stderr (and close the pipe) once started, as when the
    /// process that collected the log has gone.
    fn spawn_with(config: &Path, drain: bool) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_steerdns"))
            .args(["serve", "--config"])
            .arg(config)
            .args(["--dns-listen", "127.0.0.1:0", "--http-listen", "off"])
            .env("STEERDNS_ADMIN_TOKEN", TOKEN)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn steerdns serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel::<String>();
        // Drains stderr until the process exits, even when nobody listens any more (unless
        // told not to).
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() && !drain {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut admin, mut dns) = (None, None);
        let mut log = Vec::new();
        let addr_after = |line: &str, marker: &str| -> Option<SocketAddr> {
            line.split(marker)
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        };
        while admin.is_none() || dns.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines.recv_timeout(left).unwrap_or_else(|e| {
                let _ = child.kill();
                panic!("server did not start ({e}):\n{}", log.join("\n"))
            });
            admin = admin.or_else(|| addr_after(&line, "admin API listening on "));
            dns = dns.or_else(|| addr_after(&line, "DNS listening on "));
            log.push(line);
        }
        Server {
            child,
            admin: AdminClient {
                addr: admin.unwrap(),
                token: TOKEN.into(),
            },
            dns: dns.unwrap(),
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A distinct ~50 KB version: GB to cdn-c or cdn-a, padded with comments.
fn version(i: usize) -> String {
    let target = if i.is_multiple_of(2) {
        "cdn-c"
    } else {
        "cdn-a"
    };
    let mut text = WWW_POLICY.replace(
        "{ match = { country = \"GB\" }, targets = [\"cdn-d\", \"cdn-c\"] }",
        &format!("{{ match = {{ country = \"GB\" }}, targets = [\"{target}\"] }}"),
    );
    assert_ne!(text, WWW_POLICY);
    text.push_str(&format!("# version {i}\n"));
    let mut line = 0;
    while text.len() < 50_000 {
        text.push_str(&format!(
            "# {i:06}-{line:05} padding so that a write takes more than one syscall ........\n"
        ));
        line += 1;
    }
    text
}

#[derive(Default)]
struct Sent {
    /// Every version sent, in order (the initial file is index 0).
    versions: Vec<String>,
    /// Index into `versions` of the last version whose PUT got 200.
    acked: usize,
    acked_etag: Option<String>,
    /// Every version that was the policy file at some point (acknowledged, or found on disk
    /// after a kill): each but the current one must be in history.
    landed: std::collections::BTreeSet<usize>,
}

/// PUT version after version with the current ETag until the server goes away.
async fn writer(admin: AdminClient, sent: Arc<Mutex<Sent>>, mut etag: String, first: usize) {
    for i in first.. {
        let text = version(i);
        let index = {
            let mut s = sent.lock().unwrap();
            s.versions.push(text.clone());
            s.versions.len() - 1
        };
        let auth = format!("Bearer {}", admin.token);
        let result = try_http_request(
            admin.addr,
            "PUT",
            "/api/v1/policies/www.example.com",
            &[("Authorization", &auth), ("If-Match", &etag)],
            text.as_bytes(),
        )
        .await;
        match result {
            Ok(r) if r.status == 200 => {
                etag = r.header("etag").expect("ETag").to_owned();
                let mut s = sent.lock().unwrap();
                s.acked = index;
                s.acked_etag = Some(etag.clone());
                s.landed.insert(index);
            }
            Ok(r) => panic!("PUT version {i}: {r}"),
            // Killed.
            Err(_) => return,
        }
    }
}

/// Returns whether the file holds the in-flight version, and how many temp files were left.
/// Every version that was ever the file, but the current one, must be in history, whole.
fn check_directory(policies: &Path, sent: &mut Sent) -> (bool, usize) {
    let www = policies.join("www.example.com.toml");
    let text = std::fs::read_to_string(&www).expect("the policy file exists");
    let found = sent
        .versions
        .iter()
        .rposition(|v| *v == text)
        .unwrap_or_else(|| {
            panic!(
                "the file is none of the {} versions sent ({} bytes, starts {:?})",
                sent.versions.len(),
                text.len(),
                &text[..text.len().min(80)]
            )
        });
    assert!(
        found >= sent.acked,
        "an acknowledged write was lost: file has version {found}, last acknowledged {}",
        sent.acked
    );
    assert!(
        found <= sent.acked + 1,
        "file has version {found}, but only {} was in flight",
        sent.acked + 1
    );
    steerdns::policy::parse("www.example.com.toml", &text).expect("the file parses");
    let mut temps = 0;

    let temp =
        |name: &str, stem: &str| name.starts_with(&format!(".{stem}.tmp-")) && !name.contains('/');
    for entry in std::fs::read_dir(policies).unwrap().filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ok = matches!(
            name.as_str(),
            "www.example.com.toml" | "pop.example.com.toml" | ".history" | ".lock"
        ) || temp(&name, "www.example.com.toml");
        assert!(ok, "stray file in the policy directory: {name}");
        temps += usize::from(name.starts_with('.') && name != ".history" && name != ".lock");
    }
    sent.landed.insert(found);
    let mut kept = std::collections::BTreeSet::new();
    let history = policies.join(".history/www.example.com");
    if history.exists() {
        for entry in std::fs::read_dir(&history).unwrap().filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".toml") {
                assert!(
                    id.bytes().all(|b| b.is_ascii_digit()),
                    "history file {name}"
                );
                let old = std::fs::read_to_string(entry.path()).unwrap();
                let at = sent.versions.iter().position(|v| *v == old);
                let at = at.unwrap_or_else(|| {
                    panic!(
                        "history {name} is none of the versions sent ({} bytes)",
                        old.len()
                    )
                });
                kept.insert(at);
            } else {
                let stem = name.split(".toml.tmp-").next().unwrap_or("");
                assert!(
                    name.starts_with('.') && name.contains(".toml.tmp-") && stem.len() > 1,
                    "stray file in history: {name}"
                );
                temps += 1;
            }
        }
    }
    let lost: Vec<usize> = sent
        .landed
        .iter()
        .copied()
        .filter(|&i| i != found && !kept.contains(&i))
        .collect();
    assert!(
        lost.is_empty(),
        "replaced versions missing from history: {lost:?} (file has {found})"
    );
    (found > sent.acked, temps)
}

/// Temp files (`.<name>.tmp-*`) under `dir`, history included.
fn temp_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap().filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() {
                dirs.push(entry.path());
            } else if name.contains(".tmp-") {
                found.push(entry.path().display().to_string());
            }
        }
    }
    found
}

/// A pseudo-random delay in `range`, different every call.
fn random_delay(range: std::ops::Range<u64>) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let x = (nanos ^ (nanos >> 7)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    Duration::from_millis(range.start + x % (range.end - range.start))
}

/// A temp config (demo zone, www and pop) with the admin API on an ephemeral port.
fn config_with_admin(dir: &TempDir) -> std::path::PathBuf {
    let config = write_config(dir, DEMO_ZONE, &demo_policies());
    let text = std::fs::read_to_string(&config).unwrap();
    let with_admin = text.replace(
        "[admin]\nlisten = \"off\"",
        "[admin]\nlisten = \"127.0.0.1:0\"",
    );
    assert_ne!(with_admin, text, "write_config changed shape");
    std::fs::write(&config, with_admin).unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_writes_leaves_a_whole_version() {
    let started = Instant::now();
    let dir = TempDir::new("durability");
    let config = config_with_admin(&dir);
    let policies = dir.join("policies");

    let sent = Arc::new(Mutex::new(Sent {
        versions: vec![WWW_POLICY.to_owned()],
        landed: [0].into(),
        ..Sent::default()
    }));
    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        let config = config.clone();
        let mut server = tokio::task::spawn_blocking(move || Server::spawn(&config))
            .await
            .unwrap();
        // The server starts from whatever the last kill left, and serves the acknowledged
        // version (or the one in flight).
        let (current, etag) = server.admin.policy("www.example.com").await;
        {
            let s = sent.lock().unwrap();
            let at = s.versions.iter().rposition(|v| *v == current);
            assert!(
                at.is_some_and(|at| at >= s.acked),
                "round {round}: serving a version older than the acknowledged one"
            );
        }
        let gb = answer_of(server.dns, "www.example.com", Some("2a02:d3c0::/56")).await;
        assert!(gb.starts_with("cdn-"), "{gb}");
        // The start removed what earlier kills left half-written, history included.
        let left = temp_files(&policies);
        assert!(
            left.is_empty(),
            "round {round}: temp files after a start: {left:?}"
        );

        let before = sent.lock().unwrap().versions.len();
        let task = tokio::spawn(writer(server.admin.clone(), sent.clone(), etag, before));
        // Let a few writes through, then kill at a random moment.
        let deadline = Instant::now() + Duration::from_secs(20);
        while sent.lock().unwrap().acked < before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            sent.lock().unwrap().acked >= before,
            "round {round}: no write acknowledged"
        );
        tokio::time::sleep(random_delay(0..400)).await;
        tokio::task::spawn_blocking(move || server.kill())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the writer stops once the server is gone")
            .expect("the writer did not panic");

        let mut s = sent.lock().unwrap();
        let (in_flight, temps) = check_directory(&policies, &mut s);
        rounds.push(format!(
            "{} sent, file {}, {temps} temp file(s) left by the kill",
            s.versions.len() - before,
            if in_flight {
                "in flight"
            } else {
                "acknowledged"
            }
        ));
    }
    eprintln!(
        "durability: {:?} in all; per round: {}",
        started.elapsed(),
        rounds.join("; ")
    );
    // One last start: the directory, with whatever temp files the kills left, still loads.
    let config2 = config.clone();
    let server = tokio::task::spawn_blocking(move || Server::spawn(&config2))
        .await
        .unwrap();
    let r = server.admin.get("/api/v1/policies").await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json().as_array().unwrap().len(), 2, "{r}");
    // History is served from the files alone, and a rollback to its oldest version works.
    let r = server
        .admin
        .get("/api/v1/policies/www.example.com/history")
        .await;
    assert_eq!(r.status, 200, "{r}");
    let history = r.json();
    let versions = history.as_array().expect("a list");
    let landed = sent.lock().unwrap().landed.len();
    assert!(
        versions.len() >= landed - 1,
        "{} history entries for {landed} versions that were the file",
        versions.len()
    );
    let oldest = versions.last().expect("history")["id"].as_u64().unwrap();
    let (_, etag) = server.admin.policy("www.example.com").await;
    let r = server
        .admin
        .request(
            "POST",
            &format!("/api/v1/policies/www.example.com/rollback?version={oldest}"),
            &[("If-Match", &etag)],
            b"",
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(
        std::fs::read_to_string(policies.join("www.example.com.toml")).unwrap(),
        WWW_POLICY,
        "the oldest version is the initial file"
    );
    drop(server);
}

/// The log going away (stderr closed: a crashed log collector, `serve 2>&1 | head`) must not
/// fail requests. An edit that was applied must be answered 200, not 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_succeed_when_stderr_is_closed() {
    let dir = TempDir::new("stderr-closed");
    let config = config_with_admin(&dir);
    let server = tokio::task::spawn_blocking(move || Server::spawn_with(&config, false))
        .await
        .unwrap();
    // The reader stops at the next log line; each edit logs one.
    for i in 0..3 {
        let (_, etag) = server.admin.policy("www.example.com").await;
        let text = version(i);
        let r = server
            .admin
            .put_policy("www.example.com", "", Some(&etag), &text)
            .await;
        let on_disk = std::fs::read_to_string(dir.join("policies/www.example.com.toml")).unwrap();
        assert_eq!(on_disk, text, "edit {i} was applied");
        assert_eq!(r.status, 200, "edit {i}: {r}");
    }
    drop(server);
}

/// (target, state) changes in order, and how many of them are acknowledged.
type OverridesSent = (Vec<(String, String)>, usize);

/// Health overrides are durable writes too: `kill -9` while a stream of override changes is
/// written leaves the state file whole (valid, holding the acknowledged change or the one in
/// flight), and the restarted server applies it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_override_writes_leaves_the_state_whole() {
    let dir = TempDir::new("durability-overrides");
    let config = config_with_admin(&dir);
    let state = dir.join("policies/.steerdns-state.json");
    // (target, state) of every change since the round began (starting from what the server
    // held), and how many of them are acknowledged (all before the next one sent).
    let sent: Arc<Mutex<OverridesSent>> = Arc::default();
    for round in 0..5 {
        let config2 = config.clone();
        let mut server = tokio::task::spawn_blocking(move || Server::spawn(&config2))
            .await
            .unwrap();
        let left = temp_files(&dir.join("policies"));
        assert!(
            left.is_empty(),
            "round {round}: temp files after a start: {left:?}"
        );
        // After a restart, the last acknowledged override (or the one in flight) holds.
        let health = server.admin.get("/api/v1/health").await.json();
        // An override shows as the target's state, marked forced.
        let shown = |target: &str| {
            health
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["target"] == target && t["forced"] == true)
                .and_then(|t| t["state"].as_str().map(str::to_owned))
        };
        {
            let (changes, acked) = sent.lock().unwrap().clone();
            for target in ["cdn-a", "cdn-b"] {
                let last = |upto: usize| {
                    changes[..upto]
                        .iter()
                        .rev()
                        .find(|(t, _)| t == target)
                        .map(|(_, s)| s.clone())
                };
                let got = shown(target);
                assert!(
                    got == last(acked) || got == last((acked + 1).min(changes.len())),
                    "round {round}: {target} override {got:?}, acknowledged {:?}",
                    last(acked)
                );
            }
        }
        // What the server holds now is the baseline for the next round.
        {
            let mut s = sent.lock().unwrap();
            s.0 = ["cdn-a", "cdn-b"]
                .iter()
                .filter_map(|t| shown(t).map(|v| (t.to_string(), v)))
                .collect();
            s.1 = s.0.len();
        }
        let admin = server.admin.clone();
        let writer_sent = sent.clone();
        let task = tokio::spawn(async move {
            for i in 0.. {
                let target = if i % 2 == 0 { "cdn-a" } else { "cdn-b" };
                let value = if (i / 2) % 2 == 0 { "down" } else { "up" };
                writer_sent
                    .lock()
                    .unwrap()
                    .0
                    .push((target.to_owned(), value.to_owned()));
                let auth = format!("Bearer {}", admin.token);
                let body = format!("{{\"state\":\"{value}\"}}");
                match try_http_request(
                    admin.addr,
                    "PUT",
                    &format!("/api/v1/health/{target}"),
                    &[("Authorization", &auth)],
                    body.as_bytes(),
                )
                .await
                {
                    Ok(r) if r.status == 200 => {
                        let mut s = writer_sent.lock().unwrap();
                        s.1 = s.0.len();
                    }
                    Ok(r) => panic!("override {i}: {r}"),
                    Err(_) => return,
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(100) + random_delay(0..300)).await;
        tokio::task::spawn_blocking(move || server.kill())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the writer stops")
            .expect("the writer did not panic");
        let text = std::fs::read_to_string(&state).expect("the state file exists");
        let json: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("round {round}: a torn state file ({e}): {text:?}"));
        assert!(json["overrides"].is_object(), "{json}");
        let (changes, acked) = sent.lock().unwrap().clone();
        assert!(acked > 0, "round {round}: no override acknowledged");
        eprintln!("round {round}: {acked} acknowledged of {}", changes.len());
    }
}

/// A small tmpfs mounted for a test; unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// `None` when this process may not mount (not root, or a container without the right).
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(at.to_owned()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Disk full during a policy write: the edit fails with a clear error naming the file, the
/// old policy stays on disk and keeps being served, nothing half-written is left, and once
/// there is room again the same edit goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_edit_and_keeps_the_old_policy() {
    let dir = TempDir::new("disk-full");
    let Some(_disk) = SmallDisk::mount(&dir.join("policies"), "512k") else {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here (needs root); the disk-full case is untested"
        );
        return;
    };
    let config = config_with_admin(&dir);
    let policies = dir.join("policies");
    // Leave about 20 KB free: less than one ~50 KB version.
    let filler = policies.join("filler.bin");
    let free = |p: &Path| {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(p)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse::<u64>().ok())
            .unwrap()
    };
    let room = free(&policies);
    std::fs::write(&filler, vec![0u8; (room - 20_000) as usize]).unwrap();
    assert!(free(&policies) < 40_000, "{} bytes free", free(&policies));

    let server = tokio::task::spawn_blocking(move || Server::spawn(&config))
        .await
        .unwrap();
    let before = std::fs::read_to_string(policies.join("www.example.com.toml")).unwrap();
    let gb = "2a02:d3c0::/56";
    let answer = answer_of(server.dns, "www.example.com", Some(gb)).await;
    let (_, etag) = server.admin.policy("www.example.com").await;
    let text = version(1);
    let r = server
        .admin
        .put_policy("www.example.com", "", Some(&etag), &text)
        .await;
    assert_eq!(r.status, 500, "{r}");
    let error = r.error();
    assert!(
        error.contains("www.example.com") && error.to_lowercase().contains("no space"),
        "the error names the file and the reason: {error}"
    );
    eprintln!("disk full: {error}");
    let after = std::fs::read_to_string(policies.join("www.example.com.toml")).unwrap();
    assert_eq!(after, before, "the old policy is intact");
    assert_eq!(
        answer_of(server.dns, "www.example.com", Some(gb)).await,
        answer
    );
    assert_eq!(server.admin.policy("www.example.com").await.1, etag);
    let leftovers: Vec<String> = std::fs::read_dir(&policies)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no half-written file left: {leftovers:?}"
    );

    // Room again: the same edit goes through.
    std::fs::remove_file(&filler).unwrap();
    let r = server
        .admin
        .put_policy("www.example.com", "", Some(&etag), &text)
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(
        std::fs::read_to_string(policies.join("www.example.com.toml")).unwrap(),
        text
    );
    drop(server);
}

const RAMP_NAME: &str = "rampguard.example.com";

/// A policy ramping pop-new in (at 50% for an hour from `start_unix_s`), `comment` first.
fn ramp_policy(start_unix_s: u64, comment: &str) -> String {
    format!(
        "# {comment}\nname = \"{RAMP_NAME}\"\nttl_s = 5\n\n\
         [targets.pop-old]\na = [\"192.0.2.10\"]\n\n[targets.pop-new]\na = [\"192.0.2.11\"]\n\n\
         [[chain]]\nkind = \"weighted\"\nweights = {{ pop-old = 100 }}\n\
         ramp = {{ target = \"pop-new\", percent = [50, 100], step_s = 3600, start_unix_s = {start_unix_s} }}\n"
    )
}

/// Where the ramp writer is in its cycle: halting (a failure posted), halted (and stored),
/// resuming (an edit sent), resumed (the edit acknowledged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RampPhase {
    Halting,
    Halted,
    Resuming,
    Resumed,
}

/// Whether the state file lists pop-new's ramp as halted; panics on a torn file.
fn halted_in_file(state: &Path) -> Option<bool> {
    let text = match std::fs::read_to_string(state) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("{}: {e}", state.display()),
    };
    let json: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("a torn state file ({e}): {text:?}"));
    let halted = json["halted_ramps"]
        .as_array()
        .unwrap_or_else(|| panic!("no halted_ramps list: {json}"));
    Some(halted.iter().any(|t| t == "pop-new"))
}

/// One agent's probe result for pop-new, now.
fn probe_result(ok: bool) -> Vec<u8> {
    serde_json::to_vec(&[crate::fleet_support::result("pop-new", "ext", ok)]).unwrap()
}

/// An admin request with the token and a JSON body type; `Err` once the server is gone.
async fn admin_request(
    admin: &AdminClient,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, String> {
    let auth = format!("Bearer {}", admin.token);
    let mut headers = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    headers.extend_from_slice(extra);
    try_http_request(admin.addr, method, path, &headers, body).await
}

/// Panics with `what` once 10 s have passed since `since`; else waits 10 ms.
async fn poll_again(what: &str, since: Instant) {
    assert!(
        since.elapsed() < Duration::from_secs(10),
        "{what}: not within 10 s"
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// Halt (pop-new fails during its ramp), recover, resume (an edit), again and again, until
/// the server goes away (then `Err`). `sent`: policy versions as in [`Sent`]; `phase`: where
/// the cycle is.
async fn ramp_cycles(
    admin: AdminClient,
    state: std::path::PathBuf,
    start: u64,
    sent: Arc<Mutex<Sent>>,
    phase: Arc<Mutex<RampPhase>>,
) -> Result<(), String> {
    let explain = format!("/api/v1/explain?name={RAMP_NAME}&client=192.0.2.1");
    let path = format!("/api/v1/policies/{RAMP_NAME}");
    loop {
        *phase.lock().unwrap() = RampPhase::Halting;
        let r = admin_request(
            &admin,
            "POST",
            "/api/v1/probe-results",
            &[],
            &probe_result(false),
        )
        .await?;
        assert_eq!(r.status, 200, "{r}");
        let since = Instant::now();
        loop {
            let r = admin_request(&admin, "GET", &explain, &[], b"").await?;
            if r.json()["steps"].to_string().contains("halted") {
                break;
            }
            poll_again("the ramp halted", since).await;
        }
        while halted_in_file(&state) != Some(true) {
            poll_again("the halt stored", since).await;
        }
        *phase.lock().unwrap() = RampPhase::Halted;
        let r = admin_request(
            &admin,
            "POST",
            "/api/v1/probe-results",
            &[],
            &probe_result(true),
        )
        .await?;
        assert_eq!(r.status, 200, "{r}");
        loop {
            let r = admin_request(&admin, "GET", "/api/v1/health", &[], b"").await?;
            let up = r
                .json()
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| t["target"] == "pop-new" && t["state"] == "up");
            if up {
                break;
            }
            poll_again("pop-new up", since).await;
        }
        let r = admin_request(&admin, "GET", &path, &[], b"").await?;
        let etag = r.header("etag").expect("ETag").to_owned();
        let (index, text) = {
            let mut s = sent.lock().unwrap();
            let text = ramp_policy(start, &format!("edit {}", s.versions.len()));
            s.versions.push(text.clone());
            (s.versions.len() - 1, text)
        };
        *phase.lock().unwrap() = RampPhase::Resuming;
        let r = admin_request(
            &admin,
            "PUT",
            &path,
            &[("If-Match", &etag)],
            text.as_bytes(),
        )
        .await?;
        assert_eq!(r.status, 200, "{r}");
        // Answered means stored.
        assert_eq!(
            halted_in_file(&state),
            Some(false),
            "a resume answered, not stored"
        );
        let mut s = sent.lock().unwrap();
        s.acked = index;
        s.landed.insert(index);
        *phase.lock().unwrap() = RampPhase::Resumed;
    }
}

/// Halted ramps are durable writes too: `kill -9` at random moments while a ramp is halted
/// (its target fails mid-ramp) and resumed (the policy is edited), again and again, leaves
/// the state file whole and true to what was acknowledged (halted once the halt was stored,
/// not halted once the resuming edit was answered), the policy file whole, and the restarted
/// server applies the file: the ramp is halted after the restart exactly when the file says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_ramp_halts_and_resumes_leaves_the_state_whole() {
    let dir = TempDir::new("durability-ramps");
    let start = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 10;
    let first = ramp_policy(start, "initial");
    let config = write_config_extra(
        &dir,
        DEMO_ZONE,
        &[("rampguard.example.com.toml", &first)],
        "[health]\ndown_after_failures = 1\nup_after_successes = 1\nhold_down_ms = 0\n\
         stale_after_ms = 60000\n",
    );
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "[admin]\nlisten = \"off\"",
            "[admin]\nlisten = \"127.0.0.1:0\"",
        ),
    )
    .unwrap();
    let policies = dir.join("policies");
    let state = policies.join(".steerdns-state.json");
    let sent = Arc::new(Mutex::new(Sent {
        versions: vec![first],
        landed: [0].into(),
        ..Sent::default()
    }));
    let mut rounds = Vec::new();
    for round in 0..6 {
        let config2 = config.clone();
        let mut server = tokio::task::spawn_blocking(move || Server::spawn(&config2))
            .await
            .unwrap();
        let left = temp_files(&policies);
        assert!(
            left.is_empty(),
            "round {round}: temp files after a start: {left:?}"
        );
        // The restarted server applies the state file.
        let in_file = halted_in_file(&state).unwrap_or(false);
        let steps = server.admin.explain(RAMP_NAME, "192.0.2.1").await["steps"].to_string();
        assert_eq!(
            steps.contains("halted"),
            in_file,
            "round {round}: the file says halted = {in_file}, the server: {steps}"
        );
        // Until the writer's first step, the file holds what the start read.
        let phase = Arc::new(Mutex::new(if in_file {
            RampPhase::Halted
        } else {
            RampPhase::Resumed
        }));
        let task = tokio::spawn(ramp_cycles(
            server.admin.clone(),
            state.clone(),
            start,
            sent.clone(),
            phase.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(300) + random_delay(0..1500)).await;
        tokio::task::spawn_blocking(move || server.kill())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the writer stops once the server is gone")
            .expect("the writer did not panic")
            .expect_err("the writer runs until the server is gone");

        let at_kill = *phase.lock().unwrap();
        let halted = halted_in_file(&state);
        match at_kill {
            RampPhase::Halted => {
                assert_eq!(halted, Some(true), "round {round}: a stored halt lost")
            }
            RampPhase::Resumed => {
                assert_ne!(
                    halted,
                    Some(true),
                    "round {round}: an acknowledged resume lost"
                )
            }
            _ => {}
        }
        let mut s = sent.lock().unwrap();
        let text = std::fs::read_to_string(policies.join("rampguard.example.com.toml")).unwrap();
        let found = s
            .versions
            .iter()
            .rposition(|v| *v == text)
            .unwrap_or_else(|| panic!("round {round}: a torn policy file: {text:?}"));
        assert!(found >= s.acked, "round {round}: an acknowledged edit lost");
        s.landed.insert(found);
        rounds.push(format!(
            "killed {at_kill:?}, file halted = {halted:?}, {} edits",
            s.versions.len() - 1
        ));
    }
    eprintln!("ramp durability: {}", rounds.join("; "));
    assert!(
        sent.lock().unwrap().versions.len() > 2,
        "the cycle ran (halt, recover, edit) more than once: {rounds:?}"
    );
    // One last start from what the kills left.
    let config2 = config.clone();
    let server = tokio::task::spawn_blocking(move || Server::spawn(&config2))
        .await
        .unwrap();
    let in_file = halted_in_file(&state).unwrap_or(false);
    let steps = server.admin.explain(RAMP_NAME, "192.0.2.1").await["steps"].to_string();
    assert_eq!(steps.contains("halted"), in_file, "{steps}");
    drop(server);
}
