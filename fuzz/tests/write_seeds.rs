//! Writes the seed corpus `fuzz/corpus/<target>/` (`cargo test -p steerdns-fuzz --test
//! write_seeds -- --ignored`), so the binary seeds can be remade and reviewed as code.
//! Regression inputs (`regress-*`) are kept by hand and are not touched.

use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use steerdns_fuzz::{beacon, probe_results, seeds};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Remove the generated seeds of `target` (not the `regress-*` ones) and return its dir.
fn fresh(target: &str) -> PathBuf {
    let dir = seeds::dir(target);
    fs::create_dir_all(&dir).unwrap();
    for entry in fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        if !entry.file_name().to_string_lossy().starts_with("regress-") {
            fs::remove_file(entry.path()).unwrap();
        }
    }
    dir
}

fn copy_files(target: &str, from: &Path, ext: &str) {
    let dir = fresh(target);
    let mut n = 0;
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == ext) {
            fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
            n += 1;
        }
    }
    assert!(n > 0, "{}: no .{ext} files", from.display());
}

fn query(qname: &str, qtype: RecordType, id: u16) -> Message {
    let mut message = Message::query();
    message.metadata.id = id;
    message.metadata.recursion_desired = id.is_multiple_of(2);
    message.add_query(Query::query(Name::from_ascii(qname).unwrap(), qtype));
    message
}

fn edns(mut message: Message, payload: u16, dnssec_ok: bool) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(payload);
    edns.set_version(0);
    edns.set_dnssec_ok(dnssec_ok);
    message.edns = Some(edns);
    message
}

fn option(mut message: Message, option: EdnsOption) -> Message {
    message.edns.as_mut().unwrap().options_mut().insert(option);
    message
}

fn udp_queries() {
    let dir = fresh("udp_query");
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |name: String, message: Message| {
        seeds.push((name, message.to_vec().unwrap()));
    };
    let questions = [
        ("www.example.com.", RecordType::A),
        ("WwW.ExAmple.CoM.", RecordType::AAAA),
        ("pop.example.com.", RecordType::AAAA),
        ("weighted.example.com.", RecordType::A),
        ("failover.example.com.", RecordType::A),
        ("example.com.", RecordType::MX),
        ("example.com.", RecordType::SOA),
        ("example.com.", RecordType::ANY),
        ("_sip._udp.example.com.", RecordType::SRV),
        ("static.example.com.", RecordType::A),
        ("nope.example.com.", RecordType::A),
        ("www.sub.example.com.", RecordType::A),
        ("example.org.", RecordType::A),
        ("_explain.www.example.com.", RecordType::TXT),
        ("big.example.com.", RecordType::TXT),
        ("duo.example.com.", RecordType::TXT),
        ("eight.example.com.", RecordType::TXT),
        ("example.com.", RecordType::AXFR),
        // Negative answers on the fast path: random names, mixed case, empty non-terminals,
        // a wildcard, the apex, a name spelled like the SOA's RNAME, the second zone.
        ("q7x9zk2m.example.com.", RecordType::A),
        ("Q7x9Zk2M.ExAmple.CoM.", RecordType::AAAA),
        ("b.c.example.com.", RecordType::A),
        ("x.wild.example.com.", RecordType::A),
        ("example.com.", RecordType::AAAA),
        ("hostmaster.example.com.", RecordType::A),
        ("ns1.steerdns.test.", RecordType::TXT),
        ("nope.STEERDNS.test.", RecordType::A),
    ];
    for (i, (qname, qtype)) in questions.iter().enumerate() {
        let id = 0x1000 + i as u16;
        let stem = format!("{:02}-{}-{qtype}", i, qname.trim_end_matches('.'));
        add(format!("{stem}-plain"), query(qname, *qtype, id));
        add(
            format!("{stem}-edns512"),
            edns(query(qname, *qtype, id), 512, i.is_multiple_of(2)),
        );
        add(
            format!("{stem}-ecs"),
            option(
                edns(query(qname, *qtype, id), 1232, false),
                EdnsOption::Subnet(ClientSubnet::from_str("81.2.69.0/24").unwrap()),
            ),
        );
    }
    add(
        "ecs-v6".into(),
        option(
            edns(query("www.example.com.", RecordType::A, 7), 4096, true),
            EdnsOption::Subnet(ClientSubnet::from_str("2a02:d180::/56").unwrap()),
        ),
    );
    // NSID, which neither path answers with an NSID of its own.
    add(
        "duo-nsid".into(),
        option(
            edns(query("duo.example.com.", RecordType::TXT, 8), 512, false),
            EdnsOption::Unknown(3, Vec::new()),
        ),
    );
    let mut version1 = edns(query("www.example.com.", RecordType::A, 9), 1232, false);
    version1.edns.as_mut().unwrap().set_version(1);
    add("edns-version1".into(), version1);
    for (name, bytes) in seeds {
        fs::write(dir.join(name), bytes).unwrap();
    }
    // The hand-made cases of the hardening issue: a pointer as the question name, a response.
    let raw = [
        ("pointer-question", "014100000001000000000000c00000010001"),
        (
            "response-qr1",
            "030180000000020000000000000000000000c0000000010000000c78",
        ),
    ];
    for (name, hex) in raw {
        fs::write(dir.join(name), decode_hex(hex)).unwrap();
    }
}

fn decode_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn beacons() {
    let dir = fresh("beacon");
    let signer = beacon::signer();
    let net = steerdns::rum::token::ClientNet::of(beacon::client());
    let nonce = signer.nonce();
    let token = signer.issue(&nonce, &net, 1_700_000_300);
    let bodies = [
        (
            "two-targets",
            serde_json::json!({"nonce": nonce.to_string(), "token": token, "results": [
                {"target": "cdn-a", "cold_ms": 80.5, "warm_ms": 31.0, "dns_ms": 12.0,
                 "connect_ms": 20.0, "tls_ms": 25.0, "ttfb_ms": 30.0, "throughput_kbps": 25000.0},
                {"target": "cdn-b", "cold_ms": 140.0, "failed": false}
            ]}),
        ),
        (
            "failed",
            serde_json::json!({"nonce": nonce.to_string(), "token": token, "results": [
                {"target": "cdn-c", "failed": true}
            ]}),
        ),
        (
            "forged",
            serde_json::json!({"nonce": nonce.to_string(), "token": format!("1700000300.7f0000.{}", "00".repeat(32)), "results": [
                {"target": "cdn-d", "warm_ms": 0.5}
            ]}),
        ),
    ];
    for (name, body) in bodies {
        fs::write(dir.join(name), serde_json::to_vec(&body).unwrap()).unwrap();
    }
}

fn probe_batch() -> serde_json::Value {
    let at = probe_results::NOW_UNIX_MS;
    let mut results = Vec::new();
    for i in 0..6u64 {
        for (agent, ok) in [("fra", true), ("iad", i.is_multiple_of(2)), ("sin", false)] {
            results.push(serde_json::json!({
                "target": "cdn-a", "check": "https", "agent": agent,
                "at_unix_ms": at - 1000 * (6 - i), "ok": ok, "latency_ms": 20.0 + i as f64,
            }));
        }
    }
    results.push(serde_json::json!({
        "target": "pop-fra", "agent": "fra", "at_unix_ms": at, "ok": false,
        "latency_ms": 0.0, "error": "connect: refused",
    }));
    serde_json::Value::Array(results)
}

fn probes() {
    let dir = fresh("probe_results");
    fs::write(
        dir.join("batch"),
        serde_json::to_vec(&probe_batch()).unwrap(),
    )
    .unwrap();
    fs::write(dir.join("empty"), b"[]").unwrap();
}

fn admin() {
    let dir = fresh("admin_api");
    for entry in fs::read_dir(repo().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let mut body = vec![0u8];
            body.extend(fs::read(&path).unwrap());
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            fs::write(dir.join(format!("policy-{name}")), body).unwrap();
        }
    }
    for state in ["up", "down", "unknown"] {
        let body = format!("\u{1}{{\"state\": \"{state}\"}}");
        fs::write(dir.join(format!("health-{state}")), body).unwrap();
    }
    let mut body = vec![2u8];
    body.extend(serde_json::to_vec(&probe_batch()).unwrap());
    fs::write(dir.join("probe-results"), body).unwrap();
}

#[test]
#[ignore = "writes the seed corpus; run by hand"]
fn write_seed_corpus() {
    udp_queries();
    copy_files("zone_file", &repo().join("examples/zones"), "zone");
    fs::write(
        seeds::dir("zone_file").join("inline.zone"),
        "$ORIGIN example.com.\n$TTL 60\n@ SOA ns1 host 1 2 3 4 5\n@ NS ns1\nns1 A 192.0.2.1\n\
         *.w TXT \"wild\"\nc CNAME www\nsub NS ns.sub\nns.sub AAAA 2001:db8::1\n",
    )
    .unwrap();
    copy_files("config", &repo().join("examples"), "toml");
    // The config blocks README.md documents: every section, fleet mode's [store].
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks = readme
        .split("```toml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap());
    for (i, block) in blocks
        .filter(|b| b.contains("[dns]") || b.contains("[store]"))
        .enumerate()
    {
        fs::write(seeds::dir("config").join(format!("readme-{i}.toml")), block).unwrap();
    }
    copy_files("policy", &repo().join("policies"), "toml");
    admin();
    beacons();
    probes();
}
