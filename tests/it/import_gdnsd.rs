//! `steerdns import gdnsd` against a real gdnsd: the fixture config (tests/fixtures/gdnsd)
//! runs in gdnsd on a free loopback port, the same directory is imported, steerdns serves the
//! result, and both are asked the same questions from the same ECS client subnets, resolved in
//! the same GeoIP test database. Answers must be identical RRsets (names, TTLs, addresses,
//! CNAME targets, rcodes), steerdns's ECS scope never wider than gdnsd's (gdnsd merges
//! equal-answer networks into supernets, steerdns answers for the GeoIP network), except `weighted`, which gdnsd picks at random per query and steerdns
//! per client network: there the sets of answers and the shares are compared.
//!
//! Needs gdnsd 3.x (Debian package `gdnsd`); without it the test prints SKIPPED.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::support::*;

fn gdnsd_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("gdnsd"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| Some(PathBuf::from("/usr/sbin/gdnsd")).filter(|p| p.is_file()))
}

/// A loopback port free for both UDP and TCP right now.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The gdnsd process, stopped (by its own pid) when dropped.
struct Gdnsd {
    child: Child,
    log: PathBuf,
}

impl Drop for Gdnsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn copy_fixture(dir: &TempDir, port: u16) -> PathBuf {
    let fixture = Path::new(REPO).join("tests/fixtures/gdnsd");
    let conf = dir.join("gdnsd");
    let config = std::fs::read_to_string(fixture.join("config"))
        .unwrap()
        .replace("@DNS_PORT@", &port.to_string())
        .replace("@RUN_DIR@", &conf.join("run").display().to_string())
        .replace("@STATE_DIR@", &conf.join("state").display().to_string());
    dir.write("gdnsd/config", &config);
    let zone = std::fs::read_to_string(fixture.join("zones/example.com")).unwrap();
    dir.write("gdnsd/zones/example.com", &zone);
    std::fs::create_dir_all(conf.join("geoip")).unwrap();
    std::fs::copy(
        Path::new(REPO).join("tests/fixtures/geoip/GeoIP2-City-Test.mmdb"),
        conf.join("geoip/GeoIP2-City-Test.mmdb"),
    )
    .unwrap();
    conf
}

async fn start_gdnsd(bin: &Path, conf: &Path, port: u16) -> Gdnsd {
    let log = conf.join("gdnsd.log");
    let check = Command::new(bin)
        .arg("-c")
        .arg(conf)
        .arg("checkconf")
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "gdnsd checkconf: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let child = Command::new(bin)
        .arg("-c")
        .arg(conf)
        .arg("start")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(conf.join("gdnsd.err")).unwrap())
        .spawn()
        .unwrap();
    let gdnsd = Gdnsd { child, log };
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(20);
    let probe = encode(&query("static.example.com", RecordType::A));
    loop {
        if udp_bytes_wait(server, &probe, Duration::from_millis(200))
            .await
            .is_some()
        {
            return gdnsd;
        }
        assert!(
            Instant::now() < deadline,
            "gdnsd did not answer on {server} within 20 s; log {}: {}",
            gdnsd.log.display(),
            std::fs::read_to_string(conf.join("gdnsd.err")).unwrap_or_default()
        );
    }
}

/// Rcode and the answer section as sorted "name ttl class type rdata" lines.
fn answer_set(reply: &Message) -> (ResponseCode, Vec<String>) {
    let mut lines: Vec<String> = reply.answers.iter().map(ToString::to_string).collect();
    lines.sort();
    (reply.metadata.response_code, lines)
}

fn ask(qname: &str, qtype: RecordType, client: Option<&str>) -> Message {
    match client {
        Some(subnet) => ecs_query(qname, qtype, subnet),
        None => with_edns(query(qname, qtype), 1232),
    }
}

/// Client subnets in the GeoIP test DB, chosen to hit every kind of map entry: US (country
/// default), US-WA (subdivision), GB (country), SE-E (subdivision), DE (continent default),
/// CN/BT/PH (continent list), a nets override inside GB, nets in 10/8 and 2001:db8:1::/48,
/// addresses outside the DB (top default), and a query without ECS.
const CLIENTS: &[&str] = &[
    "214.78.120.0/24",
    "216.160.83.56/29",
    "149.101.100.0/28",
    "81.2.69.142/32",
    "2.125.160.216/29",
    "2a02:d3c0::/56",
    "81.2.69.160/27",
    "89.160.20.112/28",
    "89.160.20.128/25",
    "2a02:d180::/56",
    "175.16.199.0/24",
    "67.43.156.0/24",
    "202.196.224.0/24",
    "10.1.2.0/24",
    "2001:db8:1::/56",
    "1.2.3.0/24",
    "2001:480::/48",
    "none",
];

const QUESTIONS: &[(&str, RecordType)] = &[
    ("www.example.com", RecordType::A),
    ("www.example.com", RecordType::AAAA),
    ("pop.example.com", RecordType::A),
    ("pop.example.com", RecordType::AAAA),
    ("fo.example.com", RecordType::A),
    ("pool.example.com", RecordType::A),
    ("pool.example.com", RecordType::AAAA),
    ("static.example.com", RecordType::A),
    ("nothing.example.com", RecordType::A),
];

/// Every question from every client to both servers: the same answers, and a steerdns ECS
/// scope never wider than gdnsd's.
async fn compare_all(phase: &str, gdnsd_addr: SocketAddr, steer_addr: SocketAddr) {
    let mut compared = 0;
    let mut scopes = Vec::new();
    let mut same_scope = 0;
    for client in CLIENTS {
        let subnet = (*client != "none").then_some(*client);
        for (qname, qtype) in QUESTIONS {
            let g = udp(gdnsd_addr, &ask(qname, *qtype, subnet)).await;
            let s = udp(steer_addr, &ask(qname, *qtype, subnet)).await;
            assert_eq!(
                answer_set(&s),
                answer_set(&g),
                "{phase}: {qname} {qtype} from {client}: steerdns (left) and gdnsd (right) differ"
            );
            if let Some(subnet) = subnet
                && !qname.starts_with("static")
                && !qname.starts_with("nothing")
            {
                assert!(
                    !s.answers.is_empty() || *qtype == RecordType::AAAA,
                    "{qname} {qtype} from {subnet}: empty"
                );
                let gs = reply_ecs(&g).map(|e| e.2);
                let ss = reply_ecs(&s).map(|e| e.2);
                assert!(gs.is_some(), "{qname} from {subnet}: gdnsd echoes ECS");
                // gdnsd merges networks with equal answers into supernets; steerdns answers
                // for the client's GeoIP network. So steerdns's scope is never wider.
                assert!(
                    ss >= gs,
                    "{qname} {qtype} from {subnet}: steerdns scope {ss:?} wider than gdnsd's {gs:?}"
                );
                same_scope += usize::from(ss == gs);
                if qname.starts_with("www") && *qtype == RecordType::A {
                    scopes.push(format!("{subnet} /{}", ss.unwrap_or(0)));
                }
            }
            compared += 1;
        }
    }
    eprintln!(
        "{phase}: compared {compared} answers, {same_scope} ECS scopes equal; www scopes: {}",
        scopes.join("; ")
    );
}

/// Wait until `server` answers `qname` A (no ECS) with `address`.
async fn wait_for_answer(server: SocketAddr, qname: &str, address: &str, who: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let reply = udp(server, &ask(qname, RecordType::A, None)).await;
        if addresses(&reply.answers).iter().any(|a| a == address) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{who}: {qname} did not fail over to {address}: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn imported_gdnsd_config_answers_like_gdnsd() {
    let Some(bin) = gdnsd_binary() else {
        eprintln!("SKIPPED: gdnsd is not installed (Debian package gdnsd)");
        return;
    };
    let dir = TempDir::new("import-gdnsd");
    let port = free_port();
    let conf = copy_fixture(&dir, port);
    let gdnsd = start_gdnsd(&bin, &conf, port).await;
    let gdnsd_addr: SocketAddr = ([127, 0, 0, 1], port).into();

    let out = dir.join("steerdns");
    let report = steerdns::import::gdnsd::import(&conf, &out).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.policies.len(), 5, "{report}");
    let steer = start_file(&out.join("steerdns.toml")).await;
    let steer_addr = v4(&steer);

    compare_all("all up", gdnsd_addr, steer_addr).await;

    // Failover: the same datacenters down in both (gdnsd's admin_state file, steerdns's health
    // overrides). Each list's next datacenter must take over alike.
    std::fs::write(
        conf.join("state/admin_state"),
        "geoip/www/cdn-d => DOWN\ngeoip/pop/pop-fra => DOWN\nmetafo/fo/primary => DOWN\n",
    )
    .unwrap();
    let admin = AdminClient::of(&steer);
    for target in ["cdn-d", "pop-fra", "primary"] {
        let path = format!("/api/v1/health/{target}");
        let reply = admin
            .request("PUT", &path, &[], br#"{"state":"down"}"#)
            .await;
        assert!(reply.status < 300, "{path}: {}", reply.error());
    }
    wait_for_answer(gdnsd_addr, "fo.example.com", "192.0.2.11", "gdnsd").await;
    wait_for_answer(steer_addr, "fo.example.com", "192.0.2.11", "steerdns").await;
    compare_all("cdn-d, pop-fra, primary down", gdnsd_addr, steer_addr).await;
    // Not a no-op: GB's list is [cdn-d, cdn-c].
    let gb = udp(
        steer_addr,
        &ask("www.example.com", RecordType::A, Some("81.2.69.142/32")),
    )
    .await;
    assert_eq!(cname_targets(&gb), ["cdn-c.example.net."]);

    // weighted: gdnsd picks per query, at random. Its answers from one client over many queries
    // and steerdns's over many client networks must be the same two CNAMEs at about 70/30.
    let mut gdnsd_a = 0;
    let mut gdnsd_all = std::collections::BTreeSet::new();
    let rounds = 300;
    for _ in 0..rounds {
        let reply = udp(
            gdnsd_addr,
            &ask("split.example.com", RecordType::A, Some("214.78.120.0/24")),
        )
        .await;
        let (_, lines) = answer_set(&reply);
        gdnsd_a += usize::from(lines.iter().any(|l| l.contains("cdn-a.example.net.")));
        gdnsd_all.extend(lines);
    }
    let mut steer_a = 0;
    let mut steer_all = std::collections::BTreeSet::new();
    for i in 0..rounds {
        let subnet = format!("100.{}.{}.0/24", 64 + i / 256, i % 256);
        let first = answer_set(
            &udp(
                steer_addr,
                &ask("split.example.com", RecordType::A, Some(&subnet)),
            )
            .await,
        );
        let again = answer_set(
            &udp(
                steer_addr,
                &ask("split.example.com", RecordType::A, Some(&subnet)),
            )
            .await,
        );
        assert_eq!(
            first, again,
            "{subnet}: steerdns keeps a network's weighted answer"
        );
        steer_a += usize::from(first.1.iter().any(|l| l.contains("cdn-a.example.net.")));
        steer_all.extend(first.1);
    }
    assert_eq!(steer_all, gdnsd_all, "the weighted answers possible");
    assert_eq!(gdnsd_all.len(), 2, "{gdnsd_all:?}");
    for (who, n) in [("gdnsd", gdnsd_a), ("steerdns", steer_a)] {
        let share = n as f64 / rounds as f64;
        assert!(
            (0.55..=0.85).contains(&share),
            "{who}: cdn-a share {share} for weight 70/100"
        );
    }
    eprintln!("weighted cdn-a share over {rounds}: gdnsd {gdnsd_a}, steerdns {steer_a}");
    drop(gdnsd);
    steer.shutdown().await;
}

/// The command line: the bench's gdnsd config (a template, but the importer ignores
/// `options`) into a new directory, then refusing to write into a directory that is not empty.
#[test]
fn the_import_command_writes_a_directory_that_steerdns_check_accepts() {
    let dir = TempDir::new("import-gdnsd-cli");
    let bench = Path::new(REPO).join("bench/gdnsd");
    dir.write(
        "gdnsd/config",
        &std::fs::read_to_string(bench.join("config")).unwrap(),
    );
    dir.write(
        "gdnsd/zones/example.com",
        &std::fs::read_to_string(bench.join("zones/example.com")).unwrap(),
    );
    std::fs::create_dir_all(dir.join("gdnsd/geoip")).unwrap();
    std::fs::copy(
        Path::new(REPO).join("tests/fixtures/geoip/GeoIP2-City-Test.mmdb"),
        dir.join("gdnsd/geoip/GeoIP2-City-Test.mmdb"),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_steerdns");
    let run = |args: &[&std::ffi::OsStr]| Command::new(bin).args(args).output().unwrap();
    let (src, out) = (dir.join("gdnsd"), dir.join("out"));
    let import = run(&[
        "import".as_ref(),
        "gdnsd".as_ref(),
        src.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    let stdout = String::from_utf8_lossy(&import.stdout);
    assert!(
        import.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&import.stderr)
    );
    assert!(
        stdout.contains("2 policy file(s) (pop.example.com, www.example.com)"),
        "{stdout}"
    );
    let check = run(&["check".as_ref(), out.join("steerdns.toml").as_os_str()]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(String::from_utf8_lossy(&check.stdout).contains("2 steered name(s)"));
    let again = run(&[
        "import".as_ref(),
        "gdnsd".as_ref(),
        src.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists and is not empty"));
}

#[test]
fn untranslatable_settings_are_listed_with_file_and_line() {
    let dir = TempDir::new("import-gdnsd-bad");
    let config = "plugins => {\n  geoip => {\n    maps => {\n      m => {\n        \
        datacenters => [ a, b ]\n        auto_dc_coords => { a => [ 1, 2 ], b => [ 3, 4 ] }\n        \
        map => { EU => { FR => { Paris => [ a ] } } }\n      }\n    }\n    resources => {\n      \
        r => { map => m, skip_first => true, dcmap => { a => 192.0.2.1, b => %weighted!w } }\n    }\n  }\n  \
        weighted => { w => { multi => true, x => [ 192.0.2.1, 1 ] } }\n}\n";
    dir.write("gdnsd/config", config);
    dir.write(
        "gdnsd/zones/example.com",
        "$TTL 60\n@ SOA ns1 h 1 2 3 4 5\n@ NS ns1\nns1 A 127.0.0.1\nwww DYNA geoip!r\nw DYNA weighted!w\nx DYNA simplefo!y\n",
    );
    let out = dir.join("out");
    let err = steerdns::import::gdnsd::import(&dir.join("gdnsd"), &out)
        .unwrap_err()
        .to_string();
    let config_path = dir.join("gdnsd/config").display().to_string();
    let zone_path = dir.join("gdnsd/zones/example.com").display().to_string();
    for want in [
        format!("{config_path}:6: plugins.geoip.maps.m.auto_dc_coords is not supported"),
        format!(
            "{config_path}:7: plugins.geoip.maps.m.map.EU.FR.Paris: \"Paris\" looks like a city"
        ),
        format!("{config_path}:11: plugins.geoip.resources.r.skip_first is not supported"),
        format!(
            "{config_path}:11: plugins.geoip.resources.r.dcmap.b: reference \"%weighted!w\" is not supported"
        ),
        format!("{config_path}:14: plugins.weighted.w: multi = true"),
        format!("{zone_path}:7: plugin \"simplefo\" is not supported"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    assert!(
        !out.exists(),
        "nothing is written when something cannot be translated"
    );
}
