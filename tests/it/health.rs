//! Measured health end to end, on loopback: real HTTP endpoints started here (switchable
//! between 200, 500 and closed), probes run inside `serve` (`[probes]`) or by real
//! `steerdns probe` processes reporting to the admin API, and the DNS answers that follow.
//!
//! Also the ingest API's refusals, operator overrides over measured health, and a guarded ramp
//! halted by a probe failure. Every wait is a bounded poll; nothing sleeps a fixed time.
//!
//! Regression tests for three bugs this battery found: a halted ramp not resumed by an edit of
//! the policy file, a report gap skipping a location's hold-down, and a short outage keeping a
//! target out until its failures left the 5-minute availability window.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::rr::RecordType;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::support::*;

const NAME: &str = "hc.example.com";
const A_IP: &str = "192.0.2.1";
const B_IP: &str = "192.0.2.2";
/// pop-a first, pop-b second; one record per answer.
const FAILOVER: &str = r#"name = "hc.example.com"
ttl_s = 5

[targets.pop-a]
a = ["192.0.2.1"]

[targets.pop-b]
a = ["192.0.2.2"]

[[chain]]
kind = "failover"
order = ["pop-a", "pop-b"]
"#;

// ---------------------------------------------------------------------------------------------
// A switchable HTTP endpoint

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// 200 "ok".
    Ok,
    /// 500.
    Fail,
    /// Not listening: connections are refused.
    Closed,
}

/// A tiny HTTP/1.1 server on a loopback address: `GET` anything → 200 or 500 by mode, or
/// nothing listening at all. Stops on drop.
struct Endpoint {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    /// Requests answered (either status).
    served: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    // Closed → open again binds the same port while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

impl Endpoint {
    /// Listen on `ip` (a 127.0.0.0/8 address), an ephemeral port, answering 200.
    fn start(ip: &str) -> Self {
        let listener = listen(format!("{ip}:0").parse().unwrap())
            .unwrap_or_else(|e| panic!("endpoint on {ip}: {e}"));
        let addr = listener.local_addr().unwrap();
        let (mode, rx) = watch::channel(Mode::Ok);
        let served = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run_endpoint(addr, listener, rx, served.clone()));
        Endpoint {
            addr,
            mode,
            served,
            task,
        }
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    fn url(&self) -> String {
        format!("http://{}/health", self.addr)
    }

    fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Wait until the endpoint accepts connections again (after `set(Mode::Ok)`).
    async fn wait_listening(&self) {
        let addr = self.addr;
        eventually(
            "endpoint listening again",
            Duration::from_secs(5),
            async || {
                TcpStream::connect(addr)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        )
        .await;
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run_endpoint(
    addr: SocketAddr,
    first: TcpListener,
    mut rx: watch::Receiver<Mode>,
    served: Arc<AtomicU64>,
) {
    let mut listener = Some(first);
    loop {
        let mode = *rx.borrow_and_update();
        if mode == Mode::Closed {
            listener = None;
        } else if listener.is_none() {
            let mut tries = 0;
            listener = loop {
                match listen(addr) {
                    Ok(l) => break Some(l),
                    Err(e) if tries >= 100 => panic!("rebinding {addr}: {e}"),
                    Err(_) => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            };
        }
        match &listener {
            None => {
                if rx.changed().await.is_err() {
                    return;
                }
            }
            Some(l) => {
                tokio::select! {
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                    accepted = l.accept() => {
                        if let Ok((stream, _)) = accepted {
                            tokio::spawn(respond(stream, rx.clone(), served.clone()));
                        }
                    }
                }
            }
        }
    }
}

async fn respond(mut stream: TcpStream, rx: watch::Receiver<Mode>, served: Arc<AtomicU64>) {
    let mut head = Vec::new();
    let complete = tokio::time::timeout(TIMEOUT, async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
            if head.len() > 16 * 1024 {
                return false;
            }
        }
        true
    })
    .await;
    if complete != Ok(true) {
        return;
    }
    let mode = *rx.borrow();
    let (status, body) = match mode {
        Mode::Ok => ("200 OK", "ok"),
        Mode::Fail | Mode::Closed => ("500 Internal Server Error", "failing"),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
    served.fetch_add(1, Ordering::Relaxed);
}

/// A probe target file: one 1 s HTTP check per endpoint URL.
fn target_file(target: &str, urls: &[String]) -> String {
    let mut text = format!("target = \"{target}\"\n");
    for url in urls {
        text.push_str(&format!(
            "\n[[checks]]\nkind = \"http\"\nurl = \"{url}\"\ninterval_ms = 1000\ntimeout_ms = 500\n"
        ));
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Times

pub(crate) fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

// ---------------------------------------------------------------------------------------------
// GET /api/v1/health

/// `GET /api/v1/health` as a list of entries.
async fn health(admin: &AdminClient) -> Vec<Value> {
    let r = admin.get("/api/v1/health").await;
    assert_eq!(r.status, 200, "{r}");
    r.json().as_array().cloned().unwrap_or_default()
}

/// The entry of one target, if the server has a state for it.
pub(crate) async fn entry(admin: &AdminClient, target: &str) -> Option<Value> {
    health(admin)
        .await
        .into_iter()
        .find(|e| e["target"] == target)
}

/// (state, reason) of one location of a target, from the entry's `locations`.
fn location(entry: &Value, agent: &str) -> Option<(String, String)> {
    entry["locations"].as_array()?.iter().find_map(|l| {
        (l["agent"] == agent).then(|| {
            (
                l["state"].as_str().unwrap_or_default().to_owned(),
                l["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
    })
}

/// Wait until the target's state (measured, or forced) is `want`; returns its entry.
async fn wait_target(admin: &AdminClient, target: &str, want: &str, within: Duration) -> Value {
    eventually(&format!("{target} {want}"), within, async || {
        match entry(admin, target).await {
            Some(e) if e["state"] == want => Ok(e),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// Wait until one location of the target says `want`; returns its reason.
async fn wait_location(
    admin: &AdminClient,
    target: &str,
    agent: &str,
    want: &str,
    within: Duration,
) -> String {
    eventually(
        &format!("{target} from {agent}: {want}"),
        within,
        async || match entry(admin, target).await {
            Some(e) => match location(&e, agent) {
                Some((state, reason)) if state == want => Ok(reason),
                _ => Err(e.to_string()),
            },
            None => Err("no entry".into()),
        },
    )
    .await
}

/// The answer for `NAME` must stay `want` for the whole of `during`.
async fn answer_holds(server: SocketAddr, want: &str, during: Duration) {
    holds(&format!("{NAME} answers {want}"), during, async || {
        let got = answer_of(server, NAME, None).await;
        if got == want {
            Ok(())
        } else {
            Err(format!("answered {got}"))
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Probe agent processes

/// `steerdns probe` processes; every one still running is killed (SIGKILL) on drop, and their
/// logs are printed if the test is failing.
struct Agents {
    children: Vec<(String, Child, PathBuf)>,
}

impl Agents {
    fn new() -> Self {
        Agents {
            children: Vec::new(),
        }
    }

    fn spawn(&mut self, location: &str, targets: &Path, admin: &AdminClient, logs: &TempDir) {
        let log = logs.join(&format!("agent-{location}.log"));
        let stderr = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_steerdns"))
            .args(["probe", "--location", location, "--targets"])
            .arg(targets)
            .args(["--report-to", &format!("http://{}", admin.addr)])
            .env("STEERDNS_ADMIN_TOKEN", &admin.token)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn steerdns probe");
        self.children.push((location.to_owned(), child, log));
    }

    /// SIGKILL one agent and reap it.
    fn kill(&mut self, location: &str) {
        let (_, child, _) = self
            .children
            .iter_mut()
            .find(|(l, _, _)| l == location)
            .unwrap_or_else(|| panic!("no agent {location}"));
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Every agent but those in `killed` must still run (none exited on a bad flag or token).
    fn assert_running(&mut self, killed: &[&str]) {
        for (location, child, log) in &mut self.children {
            if killed.contains(&location.as_str()) {
                continue;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "agent {location} exited ({status}):\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        }
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        for (location, child, log) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!(
                    "--- agent {location} log ---\n{}",
                    std::fs::read_to_string(&*log).unwrap_or_default()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// In-process probes: failover, and fail-back only after the hold-down

/// `[probes]` inside `serve`, 1 s HTTP checks of two real endpoints. Closing pop-a's endpoint
/// moves the answer to pop-b within 5 s (2 consecutive failures). Reopened, pop-a succeeds at
/// once (`up_after_successes = 1`) but stays out until the 3 s hold-down since it went down
/// has passed, then comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_probes_fail_over_and_fail_back_after_the_hold_down() {
    const HOLD: Duration = Duration::from_millis(3000);
    let a = Endpoint::start("127.0.0.1");
    let b = Endpoint::start("127.0.0.1");
    let dir = TempDir::new("health-local");
    dir.write("targets/pop-a.toml", &target_file("pop-a", &[a.url()]));
    dir.write("targets/pop-b.toml", &target_file("pop-b", &[b.url()]));
    let config = write_config_extra(
        &dir,
        DEMO_ZONE,
        &[("hc.example.com.toml", FAILOVER)],
        &format!(
            "[health]\nhold_down_ms = {}\nup_after_successes = 1\n\n\
             [probes]\ntargets = \"targets\"\nlocation = \"local\"\n",
            HOLD.as_millis()
        ),
    );
    let running = start_file(&config).await;
    let server = v4(&running);
    let admin = AdminClient::of(&running);

    let e = wait_target(&admin, "pop-a", "up", Duration::from_secs(10)).await;
    assert_eq!(e["forced"], false, "{e}");
    assert_eq!(location(&e, "local").unwrap().0, "up", "{e}");
    wait_target(&admin, "pop-b", "up", Duration::from_secs(10)).await;
    assert_eq!(answer_of(server, NAME, None).await, A_IP);
    let d = dig(server, &[NAME, "A", "+norec"]).await;
    assert_eq!(d.answer_data("A"), [A_IP], "{}", d.text);

    // Kill pop-a's endpoint: refused connections.
    a.set(Mode::Closed);
    let killed = Instant::now();
    let got = wait_for_answer(server, NAME, None, B_IP, Duration::from_secs(5)).await;
    let moved = Instant::now();
    assert_eq!(got, B_IP, "no failover within 5 s of closing pop-a");
    eprintln!("failover: {:?} after closing pop-a", moved - killed);
    let e = entry(&admin, "pop-a").await.expect("pop-a");
    assert_eq!(e["state"], "down", "{e}");
    let (state, reason) = location(&e, "local").unwrap();
    assert_eq!(state, "down", "{e}");
    assert!(reason.contains("consecutive failures"), "{e}");
    let e = admin.explain(NAME, "192.0.2.99").await;
    assert_eq!(e["targets"], json!(["pop-b"]), "{e}");
    assert!(e["health"].to_string().contains("down"), "{e}");

    // Reopen: the next probe succeeds, and the location is held down.
    let served = a.served();
    a.set(Mode::Ok);
    a.wait_listening().await;
    eventually(
        "a probe reached pop-a again",
        Duration::from_secs(3),
        async || {
            if a.served() > served {
                Ok(())
            } else {
                Err(format!("{} requests", a.served()))
            }
        },
    )
    .await;
    wait_location(&admin, "pop-a", "local", "down", Duration::from_secs(3)).await;
    eventually("pop-a in hold-down", Duration::from_secs(3), async || {
        let e = entry(&admin, "pop-a").await.ok_or("no entry")?;
        match location(&e, "local") {
            Some((s, r)) if s == "down" && r.contains("hold-down") => Ok(()),
            _ => Err(e.to_string()),
        }
    })
    .await;

    // Back on pop-a, but not before the hold-down since it went down.
    let back = eventually("back on pop-a", HOLD + Duration::from_secs(4), async || {
        let got = answer_of(server, NAME, None).await;
        match got.as_str() {
            A_IP => Ok(Instant::now()),
            B_IP => Err(got),
            other => panic!("answered {other} during the hold-down"),
        }
    })
    .await;
    let held = back - moved;
    eprintln!("fail-back: {held:?} after the failover (hold-down {HOLD:?})");
    assert!(
        held >= HOLD - Duration::from_millis(300),
        "pop-a came back {held:?} after it went down: hold-down is {HOLD:?}"
    );
    let e = wait_target(&admin, "pop-a", "up", Duration::from_secs(1)).await;
    assert_eq!(location(&e, "local").unwrap().0, "up", "{e}");
    running.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Remote agents and quorum

/// Three `steerdns probe` processes (fra, iad, sin) report pop-a, each through its own loopback
/// address of the same logical endpoint. One failing location is outvoted; two take pop-a
/// down. A killed agent turns unknown and is not counted: with two of three agents dead, the
/// last one alone decides (1 of 1), which it could not if the dead ones counted as healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_agents_quorum_and_a_killed_agent_is_unknown() {
    let fra = Endpoint::start("127.0.0.2");
    let iad = Endpoint::start("127.0.0.3");
    let sin = Endpoint::start("127.0.0.4");
    let dir = TempDir::new("health-quorum");
    for (location, endpoint) in [("fra", &fra), ("iad", &iad), ("sin", &sin)] {
        dir.write(
            &format!("targets-{location}/pop-a.toml"),
            &target_file("pop-a", &[endpoint.url()]),
        );
    }
    let config = write_config_extra(
        &dir,
        DEMO_ZONE,
        &[("hc.example.com.toml", FAILOVER)],
        "[health]\nhold_down_ms = 1000\nstale_after_ms = 3000\n",
    );
    let running = start_file(&config).await;
    let server = v4(&running);
    let admin = AdminClient::of(&running);
    let mut agents = Agents::new();
    for location in ["fra", "iad", "sin"] {
        agents.spawn(
            location,
            &dir.join(&format!("targets-{location}")),
            &admin,
            &dir,
        );
    }

    for location in ["fra", "iad", "sin"] {
        wait_location(&admin, "pop-a", location, "up", Duration::from_secs(15)).await;
    }
    agents.assert_running(&[]);
    wait_target(&admin, "pop-a", "up", Duration::from_secs(1)).await;
    assert_eq!(answer_of(server, NAME, None).await, A_IP);

    // Failing from fra only: fra says down, the target stays up.
    fra.set(Mode::Fail);
    wait_location(&admin, "pop-a", "fra", "down", Duration::from_secs(5)).await;
    holds(
        "pop-a up with 1 of 3 down",
        Duration::from_millis(2500),
        async || {
            let e = entry(&admin, "pop-a").await.ok_or("no entry")?;
            let answer = answer_of(server, NAME, None).await;
            let states: Vec<_> = ["fra", "iad", "sin"]
                .iter()
                .map(|l| location(&e, l).map(|(s, _)| s))
                .collect();
            if e["state"] == "up"
                && answer == A_IP
                && states[1].as_deref() == Some("up")
                && states[2].as_deref() == Some("up")
            {
                Ok(())
            } else {
                Err(format!("{answer}: {e}"))
            }
        },
    )
    .await;

    // Failing from iad too (refused): 2 of 3, down, DNS moves.
    iad.set(Mode::Closed);
    let t0 = Instant::now();
    let got = wait_for_answer(server, NAME, None, B_IP, Duration::from_secs(5)).await;
    assert_eq!(got, B_IP, "pop-a not out within 5 s of failing from 2 of 3");
    eprintln!("2 of 3 down: DNS moved after {:?}", t0.elapsed());
    let e = entry(&admin, "pop-a").await.unwrap();
    assert_eq!(e["state"], "down", "{e}");
    assert_eq!(location(&e, "sin").unwrap().0, "up", "{e}");

    // Both restored: back (hold-down 1 s, 3 successes).
    fra.set(Mode::Ok);
    iad.set(Mode::Ok);
    let got = wait_for_answer(server, NAME, None, A_IP, Duration::from_secs(10)).await;
    assert_eq!(got, A_IP, "pop-a not back after the restore");
    for location in ["fra", "iad", "sin"] {
        wait_location(&admin, "pop-a", location, "up", Duration::from_secs(5)).await;
    }

    // Kill sin: unknown after stale_after (3 s), with that reason.
    agents.kill("sin");
    let reason = wait_location(&admin, "pop-a", "sin", "unknown", Duration::from_secs(8)).await;
    assert!(reason.contains("no report"), "{reason}");
    let e = wait_target(&admin, "pop-a", "up", Duration::from_secs(1)).await;
    assert_eq!(location(&e, "fra").unwrap().0, "up", "{e}");
    // Kill iad as well: fra is the only location still reporting.
    agents.kill("iad");
    wait_location(&admin, "pop-a", "iad", "unknown", Duration::from_secs(8)).await;
    holds(
        "sin stays unknown",
        Duration::from_millis(300),
        async || {
            let e = entry(&admin, "pop-a").await.ok_or("no entry")?;
            match location(&e, "sin") {
                Some((s, _)) if s == "unknown" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    // fra fails: down from 1 of 1 reporting. Had the silent two counted as up, 1 of 3 would
    // not be a majority.
    fra.set(Mode::Fail);
    let got = wait_for_answer(server, NAME, None, B_IP, Duration::from_secs(5)).await;
    assert_eq!(
        got, B_IP,
        "pop-a not out with its only reporting location down"
    );
    let e = entry(&admin, "pop-a").await.unwrap();
    assert_eq!(e["state"], "down", "{e}");
    for silent in ["iad", "sin"] {
        assert_eq!(location(&e, silent).unwrap().0, "unknown", "{e}");
    }
    agents.assert_running(&["iad", "sin"]);
    drop(agents);
    running.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The ingest API

pub(crate) fn result(target: &str, agent: &str, at: SystemTime, ok: bool) -> Value {
    json!({
        "target": target,
        "check": "http test",
        "agent": agent,
        "at_unix_ms": unix_ms(at),
        "ok": ok,
        "latency_ms": 1.5,
        "error": if ok { Value::Null } else { json!("server answered 500") },
    })
}

pub(crate) async fn post_results(admin: &AdminClient, results: &[Value]) -> HttpResponse {
    post_raw(admin, &serde_json::to_vec(results).unwrap()).await
}

async fn post_raw(admin: &AdminClient, body: &[u8]) -> HttpResponse {
    admin
        .request(
            "POST",
            "/api/v1/probe-results",
            &[("Content-Type", "application/json")],
            body,
        )
        .await
}

/// A server with the failover policy and no probes of its own; results come over the API.
async fn api_fed_server(tag: &str, health: &str) -> (TempDir, steerdns::app::Running) {
    let dir = TempDir::new(tag);
    let config = write_config_extra(
        &dir,
        DEMO_ZONE,
        &[("hc.example.com.toml", FAILOVER)],
        &format!("[health]\n{health}"),
    );
    let running = start_file(&config).await;
    (dir, running)
}

/// Refusals (401, 400, 413) ingest nothing; results from the far future or past are accepted
/// on the wire but ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_api_refuses_bad_batches_and_ignores_far_future_results() {
    let (_dir, running) = api_fed_server(
        "health-ingest",
        "up_after_successes = 1\nstale_after_ms = 60000\n",
    )
    .await;
    let server = v4(&running);
    let admin = AdminClient::of(&running);
    let now = SystemTime::now;
    let good = serde_json::to_vec(&[result("pop-a", "ext", now(), true)]).unwrap();

    // 401: no token, wrong token, another scheme.
    for auth in [
        None,
        Some("Bearer wrong-token-0123456789"),
        Some("Basic Zm9vOmJhcg=="),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let r = http_request(admin.addr, "POST", "/api/v1/probe-results", &headers, &good).await;
        assert_eq!(r.status, 401, "{auth:?}: {r}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{r}");
    }
    // 400: not JSON, not an array, a result missing a field.
    for body in [
        &b"[{\"target\": \"pop-a\","[..],
        b"not json",
        b"{\"target\": \"pop-a\"}",
        b"[{\"target\": \"pop-a\", \"agent\": \"ext\", \"ok\": true, \"latency_ms\": 1}]",
    ] {
        let r = post_raw(&admin, body).await;
        assert_eq!(r.status, 400, "{}: {r}", String::from_utf8_lossy(body));
        assert!(r.error().contains("body"), "{r}");
    }
    // 400: an empty target or agent, a target over 255 characters; the whole batch is refused.
    let long = "t".repeat(256);
    for bad in [
        result("", "ext", now(), false),
        result("pop-a", "", now(), false),
        result(&long, "ext", now(), false),
    ] {
        let batch = [
            result("pop-a", "ext", now(), false),
            result("pop-a", "ext", now(), false),
            bad.clone(),
        ];
        let r = post_results(&admin, &batch).await;
        assert_eq!(r.status, 400, "{bad}: {r}");
    }
    // 413: more than 10,000 results in one request.
    let many: Vec<Value> = (0..10_001)
        .map(|_| result("pop-a", "ext", now(), false))
        .collect();
    let r = post_results(&admin, &many).await;
    assert_eq!(r.status, 413, "{r}");
    assert!(r.error().contains("10000"), "{r}");
    // 413: a body over the 2 MiB ingest limit.
    let mut big = b"[".to_vec();
    big.extend(std::iter::repeat_n(b' ', 2 * 1024 * 1024 + 1));
    big.push(b']');
    let r = post_raw(&admin, &big).await;
    assert_eq!(r.status, 413, "{r}");
    // Nothing of the refused batches was taken: pop-a has no state at all.
    assert!(entry(&admin, "pop-a").await.is_none());

    // A good result: accepted, measured up.
    let r = post_raw(&admin, &good).await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["accepted"], 1, "{r}");
    let e = wait_target(&admin, "pop-a", "up", Duration::from_secs(3)).await;
    assert_eq!(location(&e, "ext").unwrap().0, "up", "{e}");

    // Failures stamped an hour ahead, 10 s ahead, and an hour ago: accepted, ignored.
    let hour = Duration::from_secs(3600);
    let skewed: Vec<Value> = (0..5)
        .flat_map(|_| {
            [
                result("pop-a", "ext", now() + hour, false),
                result("pop-a", "ext", now() + Duration::from_secs(10), false),
                result("pop-a", "ext", now() - hour, false),
            ]
        })
        .collect();
    let r = post_results(&admin, &skewed).await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["accepted"], 15, "{r}");
    holds(
        "pop-a up after skewed failures",
        Duration::from_millis(1000),
        async || {
            let e = entry(&admin, "pop-a").await.ok_or("no entry")?;
            let answer = answer_of(server, NAME, None).await;
            if e["state"] == "up"
                && location(&e, "ext").is_some_and(|(s, _)| s == "up")
                && answer == A_IP
            {
                Ok(())
            } else {
                Err(format!("{answer}: {e}"))
            }
        },
    )
    .await;
    // The same failures stamped now do count: two take pop-a down.
    let r = post_results(
        &admin,
        &[
            result("pop-a", "ext", now(), false),
            result("pop-a", "ext", now(), false),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{r}");
    wait_target(&admin, "pop-a", "down", Duration::from_secs(3)).await;
    assert_eq!(
        wait_for_answer(server, NAME, None, B_IP, Duration::from_secs(2)).await,
        B_IP
    );
    running.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Overrides over measured health

/// The operator's word wins over measured health both ways, also over measured transitions
/// that arrive while it holds; clearing it returns to the measured state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_override_wins_and_clearing_returns_to_measured() {
    let (_dir, running) = api_fed_server(
        "health-override",
        "up_after_successes = 1\nhold_down_ms = 1000\nstale_after_ms = 60000\n",
    )
    .await;
    let server = v4(&running);
    let admin = AdminClient::of(&running);
    let now = SystemTime::now;
    let report = async |ok: bool, n: usize| {
        let batch: Vec<Value> = (0..n).map(|_| result("pop-a", "ext", now(), ok)).collect();
        let r = post_results(&admin, &batch).await;
        assert_eq!(r.status, 200, "{r}");
    };

    // Measured up.
    report(true, 1).await;
    let e = wait_target(&admin, "pop-a", "up", Duration::from_secs(3)).await;
    assert_eq!(e["forced"], false, "{e}");
    assert_eq!(answer_of(server, NAME, None).await, A_IP);

    // Forced down over measured up: DNS moves at once (the response's generation serves it).
    admin.set_health("pop-a", Some("down")).await;
    assert_eq!(answer_of(server, NAME, None).await, B_IP);
    let e = entry(&admin, "pop-a").await.unwrap();
    assert_eq!(
        (&e["state"], &e["forced"]),
        (&json!("down"), &json!(true)),
        "{e}"
    );
    // More successes change nothing while the override holds.
    report(true, 3).await;
    answer_holds(server, B_IP, Duration::from_millis(500)).await;
    assert_eq!(
        location(&entry(&admin, "pop-a").await.unwrap(), "ext")
            .unwrap()
            .0,
        "up"
    );

    // Cleared: back to measured up.
    admin.set_health("pop-a", None).await;
    assert_eq!(answer_of(server, NAME, None).await, A_IP);
    let e = entry(&admin, "pop-a").await.unwrap();
    assert_eq!(
        (&e["state"], &e["forced"]),
        (&json!("up"), &json!(false)),
        "{e}"
    );

    // Measured down, forced up: the operator wins.
    report(false, 2).await;
    assert_eq!(
        wait_for_answer(server, NAME, None, B_IP, Duration::from_secs(3)).await,
        B_IP
    );
    admin.set_health("pop-a", Some("up")).await;
    assert_eq!(answer_of(server, NAME, None).await, A_IP);
    // Measured transitions while forced (down → up after the hold-down, then down again) do
    // not undo the override.
    let reason = wait_location(&admin, "pop-a", "ext", "down", Duration::from_secs(1)).await;
    assert!(reason.contains("consecutive failures"), "{reason}");
    eventually(
        "measured pop-a up again",
        Duration::from_secs(5),
        async || {
            report(true, 1).await;
            let e = entry(&admin, "pop-a").await.ok_or("no entry")?;
            match location(&e, "ext") {
                Some((s, _)) if s == "up" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    report(false, 2).await;
    wait_location(&admin, "pop-a", "ext", "down", Duration::from_secs(3)).await;
    answer_holds(server, A_IP, Duration::from_millis(500)).await;
    let e = entry(&admin, "pop-a").await.unwrap();
    assert_eq!(
        (&e["state"], &e["forced"]),
        (&json!("up"), &json!(true)),
        "{e}"
    );

    // Cleared: measured down again.
    admin.set_health("pop-a", None).await;
    assert_eq!(answer_of(server, NAME, None).await, B_IP);
    let e = entry(&admin, "pop-a").await.unwrap();
    assert_eq!(
        (&e["state"], &e["forced"]),
        (&json!("down"), &json!(false)),
        "{e}"
    );
    running.shutdown().await;
}

/// An operator override outlives the process: set it, stop the server, start a new one on
/// the same config, and the override still steers (and clearing it is durable too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn override_survives_a_restart() {
    let dir = TempDir::new("health-override-restart");
    let config = write_config_extra(
        &dir,
        DEMO_ZONE,
        &[("hc.example.com.toml", FAILOVER)],
        "[health]\nstale_after_ms = 60000\n",
    );
    let running = start_file(&config).await;
    assert_eq!(answer_of(v4(&running), NAME, None).await, A_IP);
    AdminClient::of(&running)
        .set_health("pop-a", Some("down"))
        .await;
    assert_eq!(answer_of(v4(&running), NAME, None).await, B_IP);
    running.shutdown().await;

    let running = start_file(&config).await;
    let admin = AdminClient::of(&running);
    assert_eq!(
        answer_of(v4(&running), NAME, None).await,
        B_IP,
        "the override steers from the first snapshot after the restart"
    );
    let e = entry(&admin, "pop-a").await.expect("pop-a is listed");
    assert_eq!(
        (&e["state"], &e["forced"]),
        (&json!("down"), &json!(true)),
        "{e}"
    );
    admin.set_health("pop-a", None).await;
    running.shutdown().await;

    let running = start_file(&config).await;
    assert_eq!(
        answer_of(v4(&running), NAME, None).await,
        A_IP,
        "a cleared override stays cleared"
    );
    running.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// A guarded ramp halted by a probe failure

const RAMP_NAME: &str = "rampguard.example.com";
const OLD_IP: &str = "192.0.2.10";
const NEW_IP: &str = "192.0.2.11";

fn ramp_policy(start_unix_s: u64, comment: &str) -> String {
    format!(
        "# {comment}\nname = \"{RAMP_NAME}\"\nttl_s = 5\n\n\
         [targets.pop-old]\na = [\"{OLD_IP}\"]\n\n[targets.pop-new]\na = [\"{NEW_IP}\"]\n\n\
         [[chain]]\nkind = \"weighted\"\nweights = {{ pop-old = 100 }}\n\
         ramp = {{ target = \"pop-new\", percent = [50, 100], step_s = 3600, start_unix_s = {start_unix_s} }}\n"
    )
}

/// pop-new's share over 400 client /24s sent as ECS.
async fn new_share(server: SocketAddr) -> f64 {
    let mut new = 0usize;
    let n = 400;
    for i in 0..n {
        let subnet = format!("100.{}.{}.0/24", 64 + i / 256, i % 256);
        let reply = udp(server, &ecs_query(RAMP_NAME, RecordType::A, &subnet)).await;
        match addresses(&reply.answers).as_slice() {
            [a] if a == NEW_IP => new += 1,
            [a] if a == OLD_IP => {}
            other => panic!("{subnet}: {other:?}"),
        }
    }
    new as f64 / n as f64
}

/// A server with a ramp on pop-new (at 50% now) whose probe runs in-process, fast hold-down.
async fn start_ramp_guard(tag: &str) -> (Endpoint, TempDir, steerdns::app::Running, u64) {
    let new = Endpoint::start("127.0.0.1");
    let dir = TempDir::new(tag);
    dir.write(
        "targets/pop-new.toml",
        &target_file("pop-new", &[new.url()]),
    );
    let start = unix_ms(SystemTime::now()) / 1000 - 10;
    let policy = ramp_policy(start, "ramp");
    let config = write_config_extra(
        &dir,
        DEMO_ZONE,
        &[("rampguard.example.com.toml", &policy)],
        "[health]\nhold_down_ms = 1000\nup_after_successes = 1\n\n\
         [probes]\ntargets = \"targets\"\nlocation = \"local\"\n",
    );
    let running = start_file(&config).await;
    (new, dir, running, start)
}

async fn ramp_steps(admin: &AdminClient) -> String {
    admin.explain(RAMP_NAME, "192.0.2.1").await["steps"].to_string()
}

/// A ramp at 50% (step 0 of [50, 100]); its target's probe fails → down → the ramp halts at
/// 0%; the target recovers → still halted; an edit (PUT with If-Match) resumes it at 50%.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guarded_ramp_halts_when_its_probe_fails_and_an_edit_resumes_it() {
    let (new, _dir, running, start) = start_ramp_guard("health-ramp").await;
    let server = v4(&running);
    let admin = AdminClient::of(&running);

    wait_target(&admin, "pop-new", "up", Duration::from_secs(10)).await;
    let share = new_share(server).await;
    assert!((0.4..=0.6).contains(&share), "pop-new share {share} at 50%");
    let steps = ramp_steps(&admin).await;
    assert!(steps.contains("ramp of pop-new at 50%"), "{steps}");

    // The probe fails: pop-new down mid-ramp → halted, 0%.
    new.set(Mode::Fail);
    wait_target(&admin, "pop-new", "down", Duration::from_secs(5)).await;
    let steps = ramp_steps(&admin).await;
    assert!(steps.contains("halted"), "{steps}");
    assert_eq!(new_share(server).await, 0.0);

    // Recovered: up again, still halted.
    new.set(Mode::Ok);
    wait_target(&admin, "pop-new", "up", Duration::from_secs(6)).await;
    let steps = ramp_steps(&admin).await;
    assert!(steps.contains("halted"), "{steps}");
    assert_eq!(
        new_share(server).await,
        0.0,
        "a recovered target resumes only by an edit"
    );
    // A dry run does not resume it.
    let (text, etag) = admin.policy(RAMP_NAME).await;
    let edited = ramp_policy(start, "ramp, resumed after the incident");
    let r = admin
        .put_policy(RAMP_NAME, "?dry_run=true", Some(&etag), &edited)
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert!(ramp_steps(&admin).await.contains("halted"));
    assert_ne!(text, edited);

    // The edit resumes it.
    let r = admin.put_policy(RAMP_NAME, "", Some(&etag), &edited).await;
    assert_eq!(r.status, 200, "{r}");
    assert_published(&running, &r);
    let steps = ramp_steps(&admin).await;
    assert!(steps.contains("ramp of pop-new at 50%"), "{steps}");
    let share = new_share(server).await;
    assert!(
        (0.4..=0.6).contains(&share),
        "pop-new share {share} after the edit"
    );
    running.shutdown().await;
}

/// Editing the policy file on disk (picked up by the directory watch) is an edit as much as a
/// PUT is: it resumes a halted ramp too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guarded_ramp_resumes_after_an_edit_of_the_policy_file() {
    let (new, dir, running, start) = start_ramp_guard("health-ramp-file").await;
    let server = v4(&running);
    let admin = AdminClient::of(&running);
    wait_target(&admin, "pop-new", "up", Duration::from_secs(10)).await;
    new.set(Mode::Fail);
    wait_target(&admin, "pop-new", "down", Duration::from_secs(5)).await;
    new.set(Mode::Ok);
    wait_target(&admin, "pop-new", "up", Duration::from_secs(6)).await;
    assert!(ramp_steps(&admin).await.contains("halted"));

    // The operator edits the file in place (as a deploy from git would).
    let edited = ramp_policy(start, "ramp, resumed after the incident");
    dir.write("policies/rampguard.example.com.toml", &edited);
    eventually(
        "the edited file serving",
        Duration::from_secs(5),
        async || {
            let (text, _) = admin.policy(RAMP_NAME).await;
            if text == edited { Ok(()) } else { Err(text) }
        },
    )
    .await;
    let steps = ramp_steps(&admin).await;
    assert!(steps.contains("ramp of pop-new at 50%"), "{steps}");
    let share = new_share(server).await;
    assert!(
        (0.4..=0.6).contains(&share),
        "pop-new share {share} after the edit"
    );
    running.shutdown().await;
}

/// A location that goes silent for longer than `stale_after` while down (an agent restart, a
/// network blip on its reporting path) turns unknown; its next success must not make it up
/// at once. With three agents, two such gaps must not bring back a target that the third
/// still sees down inside a 60 s hold-down (regression).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_gap_does_not_skip_the_hold_down() {
    let (_dir, running) = api_fed_server(
        "health-gap",
        "up_after_successes = 1\nhold_down_ms = 60000\nstale_after_ms = 1000\n",
    )
    .await;
    let server = v4(&running);
    let admin = AdminClient::of(&running);
    let now = SystemTime::now;
    let report = async |agent: &str, ok: bool, n: usize| {
        let batch: Vec<Value> = (0..n).map(|_| result("pop-a", agent, now(), ok)).collect();
        let r = post_results(&admin, &batch).await;
        assert_eq!(r.status, 200, "{r}");
    };
    for agent in ["x", "y", "z"] {
        report(agent, true, 1).await;
    }
    wait_target(&admin, "pop-a", "up", Duration::from_secs(3)).await;
    for agent in ["x", "y", "z"] {
        report(agent, false, 2).await;
    }
    wait_target(&admin, "pop-a", "down", Duration::from_secs(3)).await;
    assert_eq!(answer_of(server, NAME, None).await, B_IP);

    // x and y fall silent; z keeps reporting failures.
    eventually("x and y unknown", Duration::from_secs(5), async || {
        report("z", false, 1).await;
        let e = entry(&admin, "pop-a").await.ok_or("no entry")?;
        let silent = ["x", "y"]
            .iter()
            .all(|a| location(&e, a).is_some_and(|(s, _)| s == "unknown"));
        if silent && e["state"] == "down" {
            Ok(())
        } else {
            Err(e.to_string())
        }
    })
    .await;
    // They come back, reporting successes, seconds after going down: still in hold-down.
    let e = eventually(
        "x and y reporting again",
        Duration::from_secs(3),
        async || {
            report("x", true, 1).await;
            report("y", true, 1).await;
            let e = entry(&admin, "pop-a").await.ok_or("no entry")?;
            let back = ["x", "y"]
                .iter()
                .all(|a| location(&e, a).is_some_and(|(s, _)| s != "unknown"));
            if back { Ok(e) } else { Err(e.to_string()) }
        },
    )
    .await;
    eprintln!("after the gap: {e}");
    holds(
        "x and y held down",
        Duration::from_millis(1000),
        async || {
            report("z", false, 1).await;
            report("x", true, 1).await;
            report("y", true, 1).await;
            let e = entry(&admin, "pop-a").await.ok_or("no entry")?;
            let answer = answer_of(server, NAME, None).await;
            let held = ["x", "y"].iter().all(|a| {
                location(&e, a).is_some_and(|(s, r)| s == "down" && r.contains("hold-down"))
            });
            if held && e["state"] == "down" && answer == B_IP {
                Ok(())
            } else {
                Err(format!("{answer}: {e}"))
            }
        },
    )
    .await;
    running.shutdown().await;
}

/// With 1 s probes a location holds 100+ samples after 100 s, so the windowed availability
/// criterion applies: 2 failures in a 5-minute window of 300 samples is 99.3%, under 99.5%.
/// An outage the fast path caught (2 consecutive failures) must still end after the
/// hold-down, not when those failures leave the window about 5 minutes later (regression).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_outage_with_1s_probes_fails_back_after_the_hold_down() {
    let (_dir, running) = api_fed_server(
        "health-availability",
        "hold_down_ms = 1000\nstale_after_ms = 60000\n",
    )
    .await;
    let server = v4(&running);
    let admin = AdminClient::of(&running);
    // 150 s of healthy 1 s probes, then an outage of two probes.
    let start = SystemTime::now() - Duration::from_secs(152);
    let mut history: Vec<Value> = (0..150)
        .map(|i| result("pop-a", "ext", start + Duration::from_secs(i), true))
        .collect();
    history.push(result(
        "pop-a",
        "ext",
        start + Duration::from_secs(150),
        false,
    ));
    history.push(result(
        "pop-a",
        "ext",
        start + Duration::from_secs(151),
        false,
    ));
    let r = post_results(&admin, &history).await;
    assert_eq!(r.status, 200, "{r}");
    wait_target(&admin, "pop-a", "down", Duration::from_secs(3)).await;
    assert_eq!(answer_of(server, NAME, None).await, B_IP);
    // The endpoint is back: five successes, more than up_after_successes (3).
    let now = SystemTime::now();
    let back: Vec<Value> = (0..5)
        .map(|i| result("pop-a", "ext", now + Duration::from_millis(i), true))
        .collect();
    let r = post_results(&admin, &back).await;
    assert_eq!(r.status, 200, "{r}");
    let e = wait_target(&admin, "pop-a", "up", Duration::from_secs(4)).await;
    assert_eq!(location(&e, "ext").unwrap().0, "up", "{e}");
    assert_eq!(answer_of(server, NAME, None).await, A_IP);
    running.shutdown().await;
}
