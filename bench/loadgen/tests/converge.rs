//! The convergence stopwatch against a real steerdns started in-process: edits and health
//! flips through its admin API, seen in its own DNS answers (a one-node fleet: the path
//! from the 200 to the answer is the one the benchmark times); and a node that never gets
//! the change fails the run instead of reporting numbers. Bounded: a few seconds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use steerdns::config::Config;
use steerdns::control::ConfigOrigin;
use steerdns_bench::converge::{self, KINDS, Options, Policy};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// A steerdns server on its own thread; stopped when dropped.
struct Server {
    dns: SocketAddr,
    admin: SocketAddr,
    token: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn write_config(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("steerdns-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    let geoip = Path::new(REPO).join("tests/fixtures/geoip");
    let config = format!(
        "[dns]\nlisten = [\"127.0.0.1:0\"]\n\n[http]\nlisten = \"off\"\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [geoip]\ncity = {:?}\nasn = {:?}\n\n\
         [[zone]]\norigin = \"example.com\"\nfile = {:?}\n\n\
         [policies]\ndir = \"policies\"\n\n\
         [health]\ndown_after_failures = 2\nup_after_successes = 1\nhold_down_ms = 100\n\
         stale_after_ms = 60000\n",
        geoip.join("GeoIP2-City-Test.mmdb").display().to_string(),
        geoip.join("GeoLite2-ASN-Test.mmdb").display().to_string(),
        Path::new(REPO)
            .join("examples/zones/example.com.zone")
            .display()
            .to_string(),
    );
    let path = dir.join("steerdns.toml");
    std::fs::write(&path, config).unwrap();
    path
}

impl Server {
    fn start(tag: &str) -> Self {
        let path = write_config(tag);
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let config = Config::load(&path).unwrap();
                let running = steerdns::app::start(config, ConfigOrigin::File(path))
                    .await
                    .unwrap();
                ready_tx
                    .send((
                        running.dns_addrs[0],
                        running.admin_addr.unwrap(),
                        running.admin_token.to_string(),
                    ))
                    .unwrap();
                let _ = stopped.await;
                running.shutdown().await;
            });
        });
        let (dns, admin, token) = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("steerdns starts");
        Server {
            dns,
            admin,
            token,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn options(admin: &Server, watch: &[&Server]) -> Options {
    let policy = |file: &str, answer: &str| Policy {
        text: std::fs::read_to_string(Path::new(REPO).join("bench/fleet/policies").join(file))
            .unwrap(),
        answer: answer.parse().unwrap(),
    };
    Options {
        admin: admin.admin,
        token: admin.token.clone(),
        watch: watch
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("node{i}"), s.dns))
            .collect(),
        name: "fleet.example.com".into(),
        policies: vec![
            policy("fleet-a.toml", "192.0.2.1"),
            policy("fleet-b.toml", "192.0.2.2"),
        ],
        edits: 5,
        flip_target: Some("pop-a".into()),
        flip_answer: Some("192.0.2.2".parse().unwrap()),
        flips: 2,
        flip_results: 3,
        timeout: Duration::from_secs(3),
        poll: Duration::from_millis(1),
        pause: Duration::from_millis(150),
    }
}

/// Every edit and flip is seen, and the table and the JSON say so.
#[test]
fn edits_and_flips_through_the_admin_api_are_timed() {
    let server = Server::start("converge");
    let options = options(&server, &[&server]);
    let trials = converge::run(&options).unwrap();
    let count = |kind| trials.iter().filter(|t| t.kind == kind).count();
    assert_eq!(
        (count(KINDS[0]), count(KINDS[1]), count(KINDS[2])),
        (5, 2, 2)
    );
    for t in &trials {
        let seen = t.seen[0].unwrap_or_else(|| panic!("{} not seen: {trials:?}", t.kind));
        assert!(seen < options.timeout);
    }
    let table = converge::render_table(&options, &trials);
    assert!(table.contains("| edit | node0 | 5 | 5 |"), "{table}");
    assert!(table.contains("| health down | node0 | 2 | 2 |"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&converge::render_json(&options, &trials)).unwrap();
    assert_eq!(json["trials"].as_array().map(Vec::len), Some(9));
}

/// A node that does not share the edited node's state never shows the change: the run
/// fails at its first edit instead of timing anything.
#[test]
fn a_node_that_never_converges_fails_the_run() {
    let edited = Server::start("converge-edited");
    let apart = Server::start("converge-apart");
    let mut options = options(&edited, &[&edited, &apart]);
    options.timeout = Duration::from_millis(500);
    let err = converge::run(&options).unwrap_err().to_string();
    assert!(err.contains("did not all answer 192.0.2.1"), "{err}");
}
