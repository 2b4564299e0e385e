//! Fleet test helpers: a real `redis-server` on an ephemeral loopback port (killed on drop),
//! and steerdns nodes sharing it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use steerdns::app::Running;

use crate::support::*;

/// A `redis-server` child process. Killed (SIGKILL) on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// `Some`: append-only file in this directory (survives `kill -9` and a restart).
    dir: Option<PathBuf>,
    /// Extra arguments (cluster mode, TLS, replication).
    extra: Vec<String>,
    /// `Some`: run as a Sentinel with this config file (Sentinel rewrites it).
    sentinel_conf: Option<PathBuf>,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().unwrap().port()
}

impl RedisServer {
    /// No persistence at all.
    pub fn start() -> Self {
        Self::start_on(free_port(), None)
    }

    /// Append-only persistence in `dir`, fsynced on every write, so a restart after `kill -9`
    /// finds what was acknowledged (as a production Redis with AOF would).
    pub fn start_persistent(dir: PathBuf) -> Self {
        Self::start_on(free_port(), Some(dir))
    }

    fn start_on(port: u16, dir: Option<PathBuf>) -> Self {
        Self::start_full(port, dir, Vec::new(), None)
    }

    /// No persistence, with these extra arguments (e.g. `--replicaof`, `--tls-port`).
    pub fn start_args(extra: &[String]) -> Self {
        Self::start_full(free_port(), None, extra.to_vec(), None)
    }

    /// A Sentinel watching `primary` as `service` with a quorum of one, quick to fail over.
    pub fn start_sentinel(dir: &std::path::Path, service: &str, primary: u16) -> Self {
        let port = free_port();
        let conf = dir.join(format!("sentinel-{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                "sentinel monitor {service} 127.0.0.1 {primary} 1\n\
                 sentinel down-after-milliseconds {service} 1000\n\
                 sentinel failover-timeout {service} 10000\n\
                 sentinel parallel-syncs {service} 1\n"
            ),
        )
        .unwrap();
        Self::start_full(port, None, Vec::new(), Some(conf))
    }

    fn start_full(
        port: u16,
        dir: Option<PathBuf>,
        extra: Vec<String>,
        sentinel_conf: Option<PathBuf>,
    ) -> Self {
        let mut server = Self {
            port,
            child: None,
            dir,
            extra,
            sentinel_conf,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        if let Some(conf) = &self.sentinel_conf {
            cmd.arg(conf).arg("--sentinel");
        }
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"]);
        // A Sentinel keeps no data; a server keeps none either, unless given a directory.
        if self.sentinel_conf.is_none() {
            cmd.args(["--save", ""]);
            match &self.dir {
                Some(dir) => {
                    std::fs::create_dir_all(dir).unwrap();
                    cmd.arg("--dir").arg(dir).args([
                        "--appendonly",
                        "yes",
                        "--appendfsync",
                        "always",
                    ]);
                }
                None => {
                    // Still a directory of its own: a replica writes the RDB of its full sync
                    // there, which would otherwise land in the working directory.
                    let scratch = std::env::temp_dir().join(format!(
                        "steerdns-redis-{}-{}",
                        std::process::id(),
                        self.port
                    ));
                    std::fs::create_dir_all(&scratch).unwrap();
                    cmd.arg("--dir").arg(scratch).args(["--appendonly", "no"]);
                }
            }
        }
        cmd.args(&self.extra);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): install the Debian package redis-server")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.pings() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `redis-cli` against this server; panics unless it exits 0.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli (Debian package redis-server) runs");
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Whether it answers `PING` with `+PONG` now.
    pub fn pings(&self) -> bool {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same port (same data directory, if persistent).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal}");
    }
}

/// A Redis Cluster of three masters (no replicas), created with `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(dir: &std::path::Path) -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|i| {
                let port = free_port();
                let node_dir = dir.join(format!("node-{i}"));
                std::fs::create_dir_all(&node_dir).unwrap();
                let mut server = RedisServer {
                    port,
                    child: None,
                    dir: None,
                    sentinel_conf: None,
                    extra: vec![
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-port".into(),
                        free_port().to_string(),
                        "--cluster-config-file".into(),
                        node_dir.join("nodes.conf").display().to_string(),
                    ],
                };
                server.spawn();
                server
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-cli ({e}): install the Debian package redis-tools")
            });
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        for n in &nodes {
            loop {
                let info = Command::new("redis-cli")
                    .args(["-p", &n.port.to_string(), "cluster", "info"])
                    .output()
                    .expect("redis-cli");
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "cluster not ok within 20 s");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Self { nodes }
    }

    /// The seed list as `[store] redis` takes it.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_ref() {
            // A stopped server would not die of SIGKILL until continued on some kernels.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill9();
    }
}

/// The policy the fleet tests steer: pop-a first, pop-b second.
pub const NAME: &str = "fleet.example.com";
pub const A_IP: &str = "192.0.2.1";
pub const B_IP: &str = "192.0.2.2";
pub const C_IP: &str = "192.0.2.3";

pub fn failover(first: &str) -> String {
    let (one, two) = if first == "pop-a" {
        ("pop-a", "pop-b")
    } else {
        (first, "pop-a")
    };
    format!(
        "name = \"fleet.example.com\"\nttl_s = 5\n\n\
         [targets.pop-a]\na = [\"192.0.2.1\"]\n\n\
         [targets.pop-b]\na = [\"192.0.2.2\"]\n\n\
         [targets.pop-c]\na = [\"192.0.2.3\"]\n\n\
         [[chain]]\nkind = \"failover\"\norder = [\"{one}\", \"{two}\"]\n"
    )
}

/// A node: its directory (config, local copy) and the running server.
pub struct Node {
    pub dir: TempDir,
    pub running: Running,
    pub admin: AdminClient,
}

impl Node {
    pub fn dns(&self) -> SocketAddr {
        v4(&self.running)
    }
}

/// Start a fleet node on `redis` with key prefix `prefix` (rebuild interval 500 ms).
pub async fn node(tag: &str, redis_url: &str, prefix: &str) -> Node {
    node_with(tag, redis_url, prefix, "").await
}

/// [`node`] with more tables at the end of the config (`rum.secret` is written for `[rum]`).
pub async fn node_with(tag: &str, redis_url: &str, prefix: &str, extra: &str) -> Node {
    let dir = TempDir::new(tag);
    dir.write("rum.secret", &format!("{}\n", crate::rum_ingest::SECRET));
    let config = write_config_extra(
        &dir,
        DEMO_ZONE,
        &[],
        &format!(
            "[health]\nup_after_successes = 1\ndown_after_failures = 2\nhold_down_ms = 500\n\
             stale_after_ms = 60000\n\n\
             [store]\nredis = {redis_url:?}\nprefix = {prefix:?}\nrefresh_ms = 500\n\
             timeout_ms = 300\ncache_dir = \"cache\"\n\n{extra}"
        ),
    );
    let running = start_file(&config).await;
    let admin = AdminClient::of(&running);
    Node {
        dir,
        running,
        admin,
    }
}

/// A probe result as agents post it.
pub fn result(target: &str, agent: &str, ok: bool) -> serde_json::Value {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    serde_json::json!({
        "target": target, "check": "http test", "agent": agent,
        "at_unix_ms": at, "ok": ok, "latency_ms": 1.5,
        "error": if ok { serde_json::Value::Null } else { serde_json::json!("500") },
    })
}

pub async fn post_results(admin: &AdminClient, results: &[serde_json::Value]) -> HttpResponse {
    admin
        .request(
            "POST",
            "/api/v1/probe-results",
            &[("Content-Type", "application/json")],
            &serde_json::to_vec(results).unwrap(),
        )
        .await
}

/// The state `GET /api/v1/health` shows for `target` (`None`: not listed).
pub async fn health_of(admin: &AdminClient, target: &str) -> Option<String> {
    let r = admin.get("/api/v1/health").await;
    let v = r.json();
    let list = v
        .get("targets")
        .and_then(|t| t.as_array().cloned())
        .or_else(|| v.as_array().cloned())?;
    list.iter()
        .find(|e| e["target"] == target)
        .and_then(|e| e["state"].as_str().map(str::to_owned))
}
