//! How a node reaches its Redis beyond plain TCP, against real servers: TLS (`rediss://`)
//! with our CA and a client certificate, refused without them; and Redis Sentinel, through
//! a failover of the primary (`kill -9`) with DNS answering throughout.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use steerdns::config::Config;
use steerdns::control::ConfigOrigin;

use crate::fleet_support::*;
use crate::support::*;

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with `openssl`.
pub struct Certs {
    pub ca: PathBuf,
    pub server: (PathBuf, PathBuf),
    pub client: (PathBuf, PathBuf),
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): install the Debian package openssl"));
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

pub fn make_certs(dir: &Path) -> Certs {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509"],
            &ec[..],
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat()
        .into_iter()
        .chain(["-days", "2", "-subj", "/CN=steerdns test CA"])
        .collect::<Vec<_>>(),
    );
    // Extensions make them X.509 v3, which rustls requires of every certificate.
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for who in ["server", "client"] {
        let (key, csr, pem) = (
            format!("{who}.key"),
            format!("{who}.csr"),
            format!("{who}.pem"),
        );
        let subject = format!("/CN={who}");
        openssl(
            dir,
            &[
                &["req"],
                &ec[..],
                &["-keyout", &key, "-out", &csr, "-subj", &subject],
            ]
            .concat(),
        );
        let ext = format!("{who}.ext");
        let mut sign = vec![
            "x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key",
        ];
        sign.extend([
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
        openssl(dir, &sign);
    }
    Certs {
        ca: dir.join("ca.pem"),
        server: (dir.join("server.pem"), dir.join("server.key")),
        client: (dir.join("client.pem"), dir.join("client.key")),
    }
}

/// A redis-server with a TLS port that requires client certificates, and its plain port
/// (loopback only) for the test's own `redis-cli`.
fn tls_redis(certs: &Certs) -> (RedisServer, u16) {
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = |p: &PathBuf| p.display().to_string();
    let redis = RedisServer::start_args(&[
        "--tls-port".into(),
        tls_port.to_string(),
        "--tls-cert-file".into(),
        path(&certs.server.0),
        "--tls-key-file".into(),
        path(&certs.server.1),
        "--tls-ca-cert-file".into(),
        path(&certs.ca),
        "--tls-auth-clients".into(),
        "yes".into(),
    ]);
    (redis, tls_port)
}

fn tls_lines(ca: Option<&Path>, client: Option<&(PathBuf, PathBuf)>) -> String {
    let mut lines = String::new();
    if let Some(ca) = ca {
        lines += &format!("tls_ca = {:?}\n", ca.display().to_string());
    }
    if let Some((cert, key)) = client {
        lines += &format!(
            "tls_cert = {:?}\ntls_key = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        );
    }
    lines
}

/// Over `rediss://` with our CA and a client certificate, a node edits and serves the fleet's
/// policies; the policy is really in that Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_shares_policies_over_tls_with_a_client_certificate() {
    let certs_dir = TempDir::new("fleet-tls-certs");
    let certs = make_certs(&certs_dir.join(""));
    let (redis, tls_port) = tls_redis(&certs);
    let url = format!("rediss://127.0.0.1:{tls_port}/0");
    // The [store] table is the last one `node_with` writes: these lines belong to it.
    let node = node_with(
        "fleet-tls",
        &url,
        "tls",
        &tls_lines(Some(&certs.ca), Some(&certs.client)),
    )
    .await;

    let r = node
        .admin
        .put_policy(NAME, "", None, &failover("pop-b"))
        .await;
    assert_eq!(r.status, 201, "{r}");
    let got = wait_for_answer(node.dns(), NAME, None, B_IP, Duration::from_secs(3)).await;
    assert_eq!(got, B_IP);
    let stored = redis.cli(&["HGET", "{tls}:policies", "fleet.example.com"]);
    assert!(stored.contains("pop-b"), "the policy is in Redis: {stored}");
    assert_eq!(readyz(&node).await, 200);
}

async fn readyz(node: &Node) -> u16 {
    let addr = node.running.http_addr.expect("an HTTP listener");
    http_request(addr, "GET", "/readyz", &[], b"").await.status
}

/// Without our CA (the system's roots do not know it) or without the client certificate the
/// server requires, the TLS handshake fails: a node with no local copy refuses to start and
/// says why, rather than talking to an unverified server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_the_ca_or_the_client_certificate_is_refused() {
    let certs_dir = TempDir::new("fleet-tls-refused-certs");
    let certs = make_certs(&certs_dir.join(""));
    let (_redis, tls_port) = tls_redis(&certs);
    let url = format!("rediss://127.0.0.1:{tls_port}/0");
    for (case, lines, why) in [
        (
            "no CA",
            tls_lines(None, Some(&certs.client)),
            "UnknownIssuer",
        ),
        (
            "no client certificate",
            tls_lines(Some(&certs.ca), None),
            "CertificateRequired",
        ),
    ] {
        let dir = TempDir::new("fleet-tls-refused");
        let config = write_config_extra(
            &dir,
            DEMO_ZONE,
            &[],
            &format!(
                "[store]\nredis = {url:?}\nprefix = \"tls\"\ntimeout_ms = 1000\n\
                 cache_dir = \"cache\"\n{lines}"
            ),
        );
        let mut loaded = Config::load(&config).expect("the config is valid");
        loopback(&mut loaded);
        let started = steerdns::app::start(loaded, ConfigOrigin::File(config)).await;
        let err = format!("{:#}", started.err().expect("refused"));
        eprintln!("{case}: {err}");
        assert!(
            err.contains(why) && err.contains("no local copy"),
            "{case}: the node says why and that it has nothing to serve: {err}"
        );
    }
}

/// A TLS file that is missing or not PEM, or a TLS file with a plain URL, is a config error
/// naming the field.
#[test]
fn tls_config_errors_name_the_field() {
    let dir = TempDir::new("fleet-tls-config");
    dir.write("not.pem", "hello\n");
    for (store, field, why) in [
        (
            "redis = \"rediss://127.0.0.1:1/0\"\ntls_ca = \"missing.pem\"",
            "tls_ca",
            "cannot read",
        ),
        (
            "redis = \"rediss://127.0.0.1:1/0\"\ntls_ca = \"not.pem\"",
            "tls_ca",
            "not a PEM file",
        ),
        (
            "redis = \"rediss://127.0.0.1:1/0\"\ntls_cert = \"not.pem\"",
            "tls_key",
            "go together",
        ),
        (
            "redis = \"redis://127.0.0.1:1/0\"\ntls_ca = \"ca.pem\"",
            "redis",
            "need a TLS URL",
        ),
        (
            "redis = \"redis+sentinel://127.0.0.1:26379\"",
            "redis",
            "no primary name",
        ),
    ] {
        dir.write("ca.pem", "-----BEGIN CERTIFICATE-----\n");
        let path = write_config_extra(&dir, DEMO_ZONE, &[], &format!("[store]\n{store}\n"));
        let err = Config::load(&path).expect_err(store).to_string();
        assert!(
            err.contains(field) && err.contains(why),
            "{store}: want {field} / {why}: {err}"
        );
    }
}

/// Through Sentinel: the node writes to the primary Sentinel names; when that primary is
/// killed and Sentinel promotes the replica, edits reach the new primary without a restart,
/// and DNS answered every query meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_follows_a_sentinel_failover() {
    let dir = TempDir::new("fleet-sentinel");
    let mut primary = RedisServer::start();
    let replica = RedisServer::start_args(&[
        "--replicaof".into(),
        "127.0.0.1".into(),
        primary.port.to_string(),
    ]);
    let sentinel = RedisServer::start_sentinel(&dir.join(""), "fleet", primary.port);
    // Sentinel learns of the replica from the primary's INFO; fail over only once it has.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sentinel
        .cli(&["SENTINEL", "REPLICAS", "fleet"])
        .contains(&replica.port.to_string())
        || !replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
    {
        assert!(
            Instant::now() < deadline,
            "sentinel did not see the replica"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let url = format!("redis+sentinel://127.0.0.1:{}/fleet", sentinel.port);
    let node = node("fleet-sentinel", &url, "sen").await;
    let r = node
        .admin
        .put_policy(NAME, "", None, &failover("pop-a"))
        .await;
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(
        wait_for_answer(node.dns(), NAME, None, A_IP, Duration::from_secs(3)).await,
        A_IP
    );
    assert!(
        primary
            .cli(&["HGET", "{sen}:policies", "fleet.example.com"])
            .contains("pop-a")
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    while !replica
        .cli(&["HGET", "{sen}:policies", "fleet.example.com"])
        .contains("pop-a")
    {
        assert!(
            Instant::now() < deadline,
            "the replica did not get the policy"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    primary.kill9();
    let killed = Instant::now();
    // Edit until the new primary takes it; DNS must answer pop-a throughout.
    let mut statuses = Vec::new();
    let mut answers = 0;
    let edited = loop {
        assert_eq!(
            answer_of(node.dns(), NAME, None).await,
            A_IP,
            "DNS during failover"
        );
        answers += 1;
        let (_, etag) = node.admin.policy(NAME).await;
        let r = node
            .admin
            .put_policy(NAME, "", Some(&etag), &failover("pop-b"))
            .await;
        statuses.push(r.status);
        if r.status == 200 {
            break Instant::now();
        }
        assert_eq!(r.status, 503, "while there is no primary: {r}");
        assert!(
            killed.elapsed() < Duration::from_secs(40),
            "no edit succeeded within 40 s of killing the primary: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "primary killed → edit accepted by the promoted replica after {:?} \
         ({} edits refused with 503, {answers} DNS answers checked meanwhile)",
        edited - killed,
        statuses.len() - 1
    );
    assert!(
        sentinel
            .cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "fleet"])
            .contains(&replica.port.to_string()),
        "sentinel promoted the replica"
    );
    assert!(
        replica
            .cli(&["HGET", "{sen}:policies", "fleet.example.com"])
            .contains("pop-b")
    );
    assert_eq!(
        wait_for_answer(node.dns(), NAME, None, B_IP, Duration::from_secs(3)).await,
        B_IP
    );
    assert_eq!(readyz(&node).await, 200, "recovered without a restart");
}
