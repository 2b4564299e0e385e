//! `steerdns import route53` against Route 53's documented semantics. Route 53 cannot run
//! here, so this file has its own reference evaluator of a traffic policy document (written
//! from the AWS documentation, sharing no code with the importer): given a client's location
//! from the GeoIP test database and the set of endpoints that are down, the answers Route 53
//! would give, with their probabilities. The fixture (tests/fixtures/route53/, failover, geo
//! and weighted rules nested in each other) is imported with the real command, the real
//! `steerdns serve` runs on the result, and it is asked over UDP with ECS for clients in
//! several countries and continents, with everything up and again with endpoints marked down
//! by operator overrides: every answer must be one the reference allows (the one, when it
//! allows one), and weighted answers must cover the same set at about the same shares.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use maxminddb::{Reader, geoip2};
use serde_json::Value;

use crate::config::ServeProcess;
use crate::support::*;

const FIXTURE: &str = "tests/fixtures/route53/traffic-policy.json";
const NAME: &str = "www.example.com";

/// Where a client is, as Route 53 sees it (continent, country, first subdivision).
#[derive(Debug, Clone, Default, PartialEq)]
struct Place {
    continent: Option<String>,
    country: Option<String>,
    subdivision: Option<String>,
}

/// The GeoIP record of the ECS subnet's network address (what a server looks up).
fn place(db: &Reader<Vec<u8>>, subnet: &str) -> Place {
    let net: ipnet::IpNet = subnet.parse().unwrap();
    let ip: IpAddr = net.network();
    let Ok(found) = db.lookup(ip) else {
        return Place::default();
    };
    let Ok(Some(city)) = found.decode::<geoip2::City>() else {
        return Place::default();
    };
    Place {
        continent: city.continent.code.map(str::to_owned),
        country: city.country.iso_code.map(str::to_owned),
        subdivision: city
            .subdivisions
            .first()
            .and_then(|s| s.iso_code)
            .map(str::to_owned),
    }
}

/// Answers (endpoint values) and their probabilities.
type Dist = BTreeMap<String, f64>;

/// The reference: Route 53's documented evaluation of a traffic policy document.
struct Reference<'a> {
    doc: &'a Value,
    down: &'a BTreeSet<&'a str>,
}

impl Reference<'_> {
    fn start(&self, at: &Place) -> Dist {
        let doc = self.doc;
        let answer = match (doc.get("StartRule"), doc.get("StartEndpoint")) {
            (Some(r), _) => self.rule(r.as_str().unwrap(), at),
            (_, Some(e)) => self.endpoint(e.as_str().unwrap()),
            _ => panic!("no start"),
        };
        answer.expect("the fixture's cases never have everything down")
    }

    /// An endpoint answers its value when it is healthy.
    fn endpoint(&self, id: &str) -> Option<Dist> {
        if self.down.contains(id) {
            return None;
        }
        let value = self.doc["Endpoints"][id]["Value"].as_str().unwrap();
        Some(BTreeMap::from([(value.to_owned(), 1.0)]))
    }

    /// What an entry (`EndpointReference` or `RuleReference`) answers; None: unhealthy (for a
    /// rule: it has no healthy answer, which is how Route 53 judges a rule it points at).
    fn entry(&self, entry: &Value, at: &Place) -> Option<Dist> {
        match (entry.get("EndpointReference"), entry.get("RuleReference")) {
            (Some(e), _) => self.endpoint(e.as_str().unwrap()),
            (_, Some(r)) => self.rule(r.as_str().unwrap(), at),
            _ => panic!("entry without a reference: {entry}"),
        }
    }

    fn rule(&self, id: &str, at: &Place) -> Option<Dist> {
        let rule = &self.doc["Rules"][id];
        match rule["RuleType"].as_str().unwrap() {
            // The primary while it is healthy, else the secondary.
            "failover" => self
                .entry(&rule["Primary"], at)
                .or_else(|| self.entry(&rule["Secondary"], at)),
            // The smallest matching region (subdivision, country, continent) whose answer is
            // healthy, then the larger ones, then the default location (the documented
            // geolocation behaviour with health checks, as we read it).
            "geo" => {
                let locations = rule["Locations"].as_array().unwrap();
                let text = |l: &Value, k: &str| l.get(k).and_then(Value::as_str).map(str::to_owned);
                let mut matching: Vec<(u8, &Value)> = locations
                    .iter()
                    .filter_map(|l| {
                        let (cont, cc, sub) = (
                            text(l, "Continent"),
                            text(l, "Country"),
                            text(l, "Subdivision"),
                        );
                        let rank = if sub.is_some() {
                            (cc == at.country && sub == at.subdivision).then_some(3)
                        } else if cc.is_some() {
                            (cc == at.country).then_some(2)
                        } else if cont.is_some() {
                            (cont == at.continent).then_some(1)
                        } else {
                            None
                        };
                        rank.map(|r| (r, l))
                    })
                    .collect();
                matching.sort_by_key(|(r, _)| std::cmp::Reverse(*r));
                let default = locations
                    .iter()
                    .find(|l| l.get("IsDefault").and_then(Value::as_bool) == Some(true));
                matching
                    .iter()
                    .map(|(_, l)| *l)
                    .chain(default)
                    .find_map(|l| self.entry(l, at))
            }
            // A random healthy item in proportion to its weight; items of weight 0 only when
            // no item with a weight is healthy (then with equal chances).
            "weighted" => {
                let weight = |i: &Value| match &i["Weight"] {
                    Value::String(s) => s.parse::<f64>().unwrap(),
                    n => n.as_f64().unwrap(),
                };
                let items = rule["Items"].as_array().unwrap();
                let healthy = |zero: bool| -> Vec<(f64, Dist)> {
                    items
                        .iter()
                        .filter(|i| (weight(i) == 0.0) == zero)
                        .filter_map(|i| {
                            let w = if zero { 1.0 } else { weight(i) };
                            self.entry(i, at).map(|d| (w, d))
                        })
                        .collect()
                };
                let mut picks = healthy(false);
                if picks.is_empty() {
                    picks = healthy(true);
                }
                let total: f64 = picks.iter().map(|(w, _)| w).sum();
                if picks.is_empty() {
                    return None;
                }
                let mut dist = Dist::new();
                for (w, d) in picks {
                    for (v, p) in d {
                        *dist.entry(v).or_default() += w / total * p;
                    }
                }
                Some(dist)
            }
            other => panic!("the reference covers the fixture's rule types, not {other}"),
        }
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn ask(subnet: Option<&str>) -> Message {
    match subnet {
        Some(s) => ecs_query(NAME, RecordType::A, s),
        None => with_edns(query(NAME, RecordType::A), 1232),
    }
}

async fn answer(server: SocketAddr, subnet: Option<&str>) -> String {
    let reply = udp(server, &ask(subnet)).await;
    let got = addresses(&reply.answers);
    assert_eq!(
        got.len(),
        1,
        "{subnet:?}: one address per answer: {reply:?}"
    );
    got[0].clone()
}

/// Clients in the GeoIP test database (tests/fixtures/geoip/README.md) and what it says of
/// them, so a wrong lookup fails here rather than passing by accident.
const CLIENTS: &[(&str, &str)] = &[
    ("2a02:d3c0::/56", "EU GB"),
    ("81.2.69.142/32", "EU GB ENG"),
    ("2a02:d180::/56", "EU DE"),
    ("89.160.20.128/25", "EU SE E"),
    ("2.3.3.0/24", "EU"),
    ("214.78.120.0/24", "NA US CA"),
    ("2001:480:10::/56", "NA US CA"),
    ("149.101.100.0/24", "NA US"),
    ("216.160.83.56/29", "NA US WA"),
    ("175.16.199.0/24", "AS CN 22"),
    ("67.43.156.0/24", "AS BT"),
    ("2001:218::/56", "AS JP"),
    ("214.0.1.0/24", "OC AU VIC"),
    ("10.1.2.0/24", ""),
    ("1.2.3.0/24", ""),
];

fn describe(p: &Place) -> String {
    [&p.continent, &p.country, &p.subdivision]
        .iter()
        .filter_map(|f| f.as_deref())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every client, until steerdns's answers are all ones the reference allows (overrides take
/// a moment to apply); the mismatches when the time is up.
async fn compare(
    phase: &str,
    server: SocketAddr,
    doc: &Value,
    db: &Reader<Vec<u8>>,
    down: &[&str],
) {
    let down: BTreeSet<&str> = down.iter().copied().collect();
    let reference = Reference { doc, down: &down };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut wrong = Vec::new();
        let mut report = Vec::new();
        for (subnet, _) in CLIENTS
            .iter()
            .map(|(s, w)| (Some(*s), w))
            .chain([(None, &"")])
        {
            let at = subnet.map(|s| place(db, s)).unwrap_or_default();
            let allowed = reference.start(&at);
            let got = answer(server, subnet).await;
            let label = subnet.unwrap_or("no ECS");
            report.push(format!("{label} → {got}"));
            if !allowed.contains_key(&got) || (allowed.len() == 1 && allowed[&got] != 1.0) {
                wrong.push(format!(
                    "{label} ({}): got {got}, Route 53 gives {allowed:?}",
                    describe(&at)
                ));
            }
        }
        if wrong.is_empty() {
            eprintln!("{phase}: {}", report.join(", "));
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{phase} (down: {down:?}):\n{}",
            wrong.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Many networks of one place: steerdns's answers (each network's twice, the same) against
/// the reference's distribution there: the same set of answers, shares within 10 points.
async fn shares(
    what: &str,
    server: SocketAddr,
    doc: &Value,
    db: &Reader<Vec<u8>>,
    networks: impl Iterator<Item = String>,
) {
    let down = BTreeSet::new();
    let reference = Reference { doc, down: &down };
    let mut expected: Option<Dist> = None;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut n = 0;
    for net in networks {
        let dist = reference.start(&place(db, &net));
        match &expected {
            None => expected = Some(dist),
            Some(e) => assert_eq!(e, &dist, "{what}: {net} is not like the others"),
        }
        let first = answer(server, Some(&net)).await;
        let again = answer(server, Some(&net)).await;
        assert_eq!(first, again, "{net}: a network keeps its weighted answer");
        *counts.entry(first).or_default() += 1;
        n += 1;
    }
    let expected = expected.unwrap();
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{what}: the possible answers"
    );
    for (value, p) in &expected {
        let share = counts[value] as f64 / n as f64;
        assert!(
            (share - p).abs() <= 0.10,
            "{what}: {value} share {share:.3}, Route 53's weight gives {p:.3}"
        );
    }
    eprintln!("{what}: over {n} networks {counts:?}, reference {expected:?}");
}

async fn set_down(admin: &AdminClient, was: &[&str], now: &[&str]) {
    for target in was.iter().filter(|t| !now.contains(t)) {
        let reply = admin
            .request("DELETE", &format!("/api/v1/health/{target}"), &[], b"")
            .await;
        assert!(reply.status < 300, "DELETE {target}: {}", reply.error());
    }
    for target in now {
        let reply = admin
            .request(
                "PUT",
                &format!("/api/v1/health/{target}"),
                &[],
                br#"{"state":"down"}"#,
            )
            .await;
        assert!(reply.status < 300, "PUT {target}: {}", reply.error());
    }
}

fn import(out: &Path) -> String {
    let run = Command::new(env!("CARGO_BIN_EXE_steerdns"))
        .args([
            "import", "route53", FIXTURE, "--name", NAME, "--ttl", "30", "--out",
        ])
        .arg(out)
        .current_dir(REPO)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_traffic_policy_answers_like_route53_documents() {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(REPO).join(FIXTURE)).unwrap())
            .unwrap();
    let db =
        Reader::open_readfile(Path::new(REPO).join("tests/fixtures/geoip/GeoIP2-City-Test.mmdb"))
            .unwrap();
    for (subnet, want) in CLIENTS {
        assert_eq!(
            describe(&place(&db, subnet)),
            *want,
            "GeoIP test data for {subnet}"
        );
    }

    let dir = TempDir::new("import-route53");
    let out = dir.join("out");
    let stdout = import(&out);
    assert!(
        stdout.contains("1 zone(s) (example.com), 1 policy file(s) (www.example.com)"),
        "{stdout}"
    );
    for want in [
        "Rules.london.Items[0].HealthCheck: Route 53 health check \"6f1c0a52-0000-4000-8000-000000000020\" is not in the document",
        "Rules.london: weighted rule \"london\": Route 53 picks at random per query",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    let check = Command::new(env!("CARGO_BIN_EXE_steerdns"))
        .arg("check")
        .arg(out.join("steerdns.toml"))
        .output()
        .unwrap();
    assert!(
        check.status.success()
            && String::from_utf8_lossy(&check.stdout).contains("1 steered name(s)"),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // The admin API on a free loopback port with a known token, for the overrides.
    let token = format!("route53-test-{}", std::process::id());
    dir.write("out/admin.token", &token);
    let admin_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let config = out.join("steerdns.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[admin]\nlisten = \"{admin_addr}\"\ntoken_file = \"admin.token\"\n"
    ));
    std::fs::write(&config, text).unwrap();
    let (serve, server) = ServeProcess::start(config).await;
    let admin = AdminClient {
        addr: admin_addr,
        token,
    };

    compare("all up", server, &doc, &db, &[]).await;
    // Weighted, nested under geo (GB's primary, Europe's primary) and the default.
    shares(
        "GB (london 70/30)",
        server,
        &doc,
        &db,
        (0..300).map(|i| format!("2a02:d3c0:{i:x}::/56")),
    )
    .await;
    shares(
        "DE (europe-split 50/50)",
        server,
        &doc,
        &db,
        (0..300).map(|i| format!("2a02:d180:{i:x}::/56")),
    )
    .await;
    shares(
        "not located (world 2:1, sin at 0)",
        server,
        &doc,
        &db,
        (0..300).map(|i| format!("100.{}.{}.0/24", 64 + i / 256, i % 256)),
    )
    .await;

    // Failover: endpoints marked down by operator overrides. Each phase's set is the new one.
    let phases: &[&[&str]] = &[
        &["lon-1", "us-east"],
        &["fra", "ams"],
        &["lon-1", "lon-2"],
        &["us-east", "fra"],
        &[],
    ];
    let mut was: &[&str] = &[];
    for down in phases {
        set_down(&admin, was, down).await;
        compare(&format!("down {down:?}"), server, &doc, &db, down).await;
        was = down;
    }
    // Not a no-op: with Europe's pair down, Germany gets its secondary (us-east), and with
    // us-east and fra down the default's weight-0 item (sin) answers.
    set_down(&admin, was, &["fra", "ams"]).await;
    compare("europe down again", server, &doc, &db, &["fra", "ams"]).await;
    assert_eq!(answer(server, Some("2a02:d180::/56")).await, "192.0.2.1");
    set_down(&admin, &["fra", "ams"], &["us-east", "fra"]).await;
    compare("us-east, fra down", server, &doc, &db, &["us-east", "fra"]).await;
    assert_eq!(answer(server, Some("10.1.2.0/24")).await, "192.0.2.30");
    drop(serve);
}

#[test]
fn a_malformed_document_is_refused_with_its_json_path() {
    let dir = TempDir::new("import-route53-bad");
    let text = std::fs::read_to_string(Path::new(REPO).join(FIXTURE))
        .unwrap()
        .replace(
            "\"RuleReference\": \"london\"",
            "\"RuleReference\": \"paris\"",
        );
    let bad = dir.write("bad.json", &text);
    let out = dir.join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_steerdns"))
        .args(["import", "route53"])
        .arg(&bad)
        .args(["--name", NAME, "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains(&format!(
            "{}: Rules.britain.Primary.RuleReference: no rule \"paris\" in Rules",
            bad.display()
        )),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing is written");
}
