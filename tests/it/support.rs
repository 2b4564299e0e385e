//! Shared helpers: starting servers, hand-built queries, raw UDP/TCP exchanges, the hickory
//! client, the real `dig`, and temporary config directories.
//!
//! Everything here is bounded in time: every network wait has a timeout, nothing sleeps.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use hickory_net::client::Client;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::{DnsHandle, FirstAnswer};
use hickory_proto::op::{DnsRequest, DnsRequestOptions, Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use steerdns::app::Running;
use steerdns::config::Config;
use steerdns::control::ConfigOrigin;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The longest any single network exchange in a test may take.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// How long to wait before concluding that the server sent nothing (for dropped packets).
pub const SILENCE: Duration = Duration::from_millis(400);

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");
pub const DEMO_ZONE: &str = include_str!("../../examples/zones/example.com.zone");
pub const WWW_POLICY: &str = include_str!("../../policies/www.example.com.toml");
pub const POP_POLICY: &str = include_str!("../../policies/pop.example.com.toml");

// ---------------------------------------------------------------------------------------------
// Servers

/// Listen on ephemeral loopback ports, IPv4 first and IPv6 second, HTTP on an ephemeral port.
pub fn loopback(config: &mut Config) {
    config.dns_listen = vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
    config.http_listen = Some("127.0.0.1:0".parse().unwrap());
    config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
}

/// The embedded demo on 127.0.0.1:0 and [::1]:0.
pub async fn start_demo() -> Running {
    let mut config = steerdns::demo::config();
    loopback(&mut config);
    steerdns::app::start(config, ConfigOrigin::Demo)
        .await
        .expect("the demo starts")
}

/// A server from a config file (listen addresses replaced by loopback ephemeral ports).
pub async fn start_file(path: &Path) -> Running {
    let mut config = Config::load(path).unwrap_or_else(|e| panic!("config {path:?}: {e}"));
    loopback(&mut config);
    steerdns::app::start(config, ConfigOrigin::File(path.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("server from {path:?}: {e:#}"))
}

pub fn v4(running: &Running) -> SocketAddr {
    let addr = running.dns_addrs[0];
    assert!(addr.is_ipv4(), "{addr}");
    addr
}

pub fn v6(running: &Running) -> SocketAddr {
    let addr = running.dns_addrs[1];
    assert!(addr.is_ipv6(), "{addr}");
    addr
}

// ---------------------------------------------------------------------------------------------
// Building queries

static NEXT_ID: AtomicU16 = AtomicU16::new(0x1000);

pub fn next_id() -> u16 {
    NEXT_ID.fetch_add(7, Ordering::Relaxed)
}

pub fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// A query without EDNS, RD clear.
pub fn query(qname: &str, qtype: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.id = next_id();
    message.metadata.recursion_desired = false;
    message.add_query(Query::query(name(qname), qtype));
    message
}

/// Add an OPT record (version 0, no options) with this UDP payload size.
pub fn with_edns(mut message: Message, payload: u16) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(payload);
    edns.set_version(0);
    message.edns = Some(edns);
    message
}

/// A query with EDNS (1232) and an ECS option such as `"2a02:d180::/56"`.
pub fn ecs_query(qname: &str, qtype: RecordType, subnet: &str) -> Message {
    let mut message = with_edns(query(qname, qtype), 1232);
    let subnet = ClientSubnet::from_str(subnet).unwrap();
    message
        .edns
        .as_mut()
        .unwrap()
        .options_mut()
        .insert(EdnsOption::Subnet(subnet));
    message
}

/// A query with EDNS and an ECS option given byte for byte (family, source, scope, address).
pub fn raw_ecs_query(qname: &str, qtype: RecordType, option_data: Vec<u8>) -> Message {
    let mut message = with_edns(query(qname, qtype), 1232);
    message
        .edns
        .as_mut()
        .unwrap()
        .options_mut()
        .insert(EdnsOption::Unknown(
            u16::from(EdnsCode::Subnet),
            option_data,
        ));
    message
}

pub fn encode(message: &Message) -> Vec<u8> {
    message.to_vec().expect("query encodes")
}

pub fn decode(bytes: &[u8]) -> Message {
    Message::from_vec(bytes).unwrap_or_else(|e| panic!("reply does not parse ({e}): {bytes:02x?}"))
}

// ---------------------------------------------------------------------------------------------
// Raw exchanges

fn any_local(server: SocketAddr) -> SocketAddr {
    match server.ip() {
        IpAddr::V4(_) => "127.0.0.1:0".parse().unwrap(),
        IpAddr::V6(_) => "[::1]:0".parse().unwrap(),
    }
}

/// Send one datagram and wait up to `wait` for one back.
pub async fn udp_bytes_wait(server: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind(any_local(server)).await.unwrap();
    socket.connect(server).await.unwrap();
    socket.send(bytes).await.expect("send datagram");
    let mut buf = vec![0u8; 65_536];
    match tokio::time::timeout(wait, socket.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        // ICMP port unreachable and friends.
        Ok(Err(_)) => None,
        Err(_) => None,
    }
}

pub async fn udp_bytes(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    udp_bytes_wait(server, bytes, TIMEOUT).await
}

/// Send a query over UDP; panic if no reply or if the reply is not for it.
pub async fn udp(server: SocketAddr, message: &Message) -> Message {
    let bytes = udp_raw_reply(server, message).await;
    decode(&bytes)
}

/// Like [`udp`] but returns the reply bytes (to check sizes and raw fields).
pub async fn udp_raw_reply(server: SocketAddr, message: &Message) -> Vec<u8> {
    let bytes = udp_bytes(server, &encode(message))
        .await
        .unwrap_or_else(|| panic!("no UDP reply from {server} to {:?}", message.queries));
    assert_eq!(
        u16::from_be_bytes([bytes[0], bytes[1]]),
        message.metadata.id,
        "reply id"
    );
    bytes
}

/// One length-prefixed message over a new TCP connection.
pub async fn tcp_bytes(server: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = tcp_connect(server).await;
    tcp_write(&mut stream, bytes).await;
    tcp_read(&mut stream)
        .await
        .unwrap_or_else(|| panic!("no TCP reply from {server}"))
}

pub async fn tcp_connect(server: SocketAddr) -> TcpStream {
    tokio::time::timeout(TIMEOUT, TcpStream::connect(server))
        .await
        .expect("TCP connect in time")
        .expect("TCP connect")
}

pub async fn tcp_write(stream: &mut TcpStream, message: &[u8]) {
    let mut framed = (message.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(message);
    stream.write_all(&framed).await.expect("TCP write");
}

/// Read one length-prefixed message; `None` when the server closed the connection.
pub async fn tcp_read(stream: &mut TcpStream) -> Option<Vec<u8>> {
    tcp_read_within(stream, TIMEOUT)
        .await
        .expect("TCP reply or close in time")
}

/// Like [`tcp_read`], but `None` when nothing (neither a message nor a close) came in time.
pub async fn tcp_read_within(stream: &mut TcpStream, wait: Duration) -> Option<Option<Vec<u8>>> {
    tokio::time::timeout(wait, async {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.ok()?;
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut body).await.ok()?;
        Some(body)
    })
    .await
    .ok()
}

pub async fn tcp(server: SocketAddr, message: &Message) -> Message {
    let bytes = tcp_bytes(server, &encode(message)).await;
    let reply = decode(&bytes);
    assert_eq!(reply.metadata.id, message.metadata.id, "reply id");
    reply
}

/// The server still answers an ordinary query over UDP and TCP.
pub async fn assert_alive(server: SocketAddr) {
    let q = ecs_query("www.example.com", RecordType::A, "2a02:d180::/56");
    for (transport, reply) in [
        ("UDP", udp(server, &q).await),
        ("TCP", tcp(server, &q).await),
    ] {
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{transport}"
        );
        assert_eq!(
            cname_targets(&reply),
            vec!["cdn-c.example.net."],
            "{transport}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Reading replies

pub fn cname_targets(message: &Message) -> Vec<String> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::CNAME(c) => Some(c.0.to_ascii()),
            _ => None,
        })
        .collect()
}

pub fn addresses(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

/// The ECS option of a reply as (address, source, scope).
pub fn reply_ecs(message: &Message) -> Option<(IpAddr, u8, u8)> {
    match message.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some((s.addr(), s.source_prefix(), s.scope_prefix())),
        other => panic!("unexpected subnet option {other:?}"),
    }
}

pub fn types(records: &[Record]) -> Vec<RecordType> {
    records.iter().map(Record::record_type).collect()
}

// ---------------------------------------------------------------------------------------------
// The hickory client

pub async fn hickory_udp(server: SocketAddr) -> Client<TokioRuntimeProvider> {
    let stream = UdpClientStream::builder(server, TokioRuntimeProvider::default())
        .with_timeout(Some(TIMEOUT))
        .build();
    let (client, bg) = Client::<TokioRuntimeProvider>::from_sender(stream);
    tokio::spawn(bg);
    client
}

pub async fn hickory_tcp(server: SocketAddr) -> Client<TokioRuntimeProvider> {
    let (connect, sender) =
        TcpClientStream::new(server, None, Some(TIMEOUT), TokioRuntimeProvider::new());
    let stream = tokio::time::timeout(TIMEOUT, connect)
        .await
        .expect("connect in time")
        .expect("connect");
    let (client, bg) = Client::<TokioRuntimeProvider>::with_timeout(stream, sender, TIMEOUT);
    tokio::spawn(bg);
    client
}

/// Send a hand-built message with the hickory client (it sets its own id).
pub async fn hickory_send(client: &Client<TokioRuntimeProvider>, message: Message) -> Message {
    let mut options = DnsRequestOptions::default();
    options.use_edns = message.edns.is_some();
    let request = DnsRequest::new(message, options);
    tokio::time::timeout(TIMEOUT * 2, client.send(request).first_answer())
        .await
        .expect("hickory answer in time")
        .expect("hickory answer")
        .into_message()
}

// ---------------------------------------------------------------------------------------------
// dig

/// One resource record line of dig's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigRr {
    pub name: String,
    pub ttl: u32,
    pub class: String,
    pub rtype: String,
    pub data: String,
}

/// dig's text output, parsed.
#[derive(Debug, Clone, Default)]
pub struct Dig {
    pub text: String,
    pub opcode: String,
    pub status: String,
    pub id: u16,
    pub flags: Vec<String>,
    /// QUERY, ANSWER, AUTHORITY, ADDITIONAL from the flags line.
    pub counts: [u16; 4],
    /// The `; EDNS:` line, if the reply had an OPT record.
    pub edns_line: Option<String>,
    pub edns_version: Option<u8>,
    pub edns_flags: Vec<String>,
    pub edns_udp: Option<u16>,
    /// `; CLIENT-SUBNET: addr/source/scope`
    pub ecs: Option<(String, u8, u8)>,
    pub question: Vec<String>,
    pub answer: Vec<DigRr>,
    pub authority: Vec<DigRr>,
    pub additional: Vec<DigRr>,
    pub msg_size: Option<usize>,
    /// `UDP` or `TCP`, from the `;; SERVER:` line.
    pub transport: Option<String>,
}

impl Dig {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// The data of the answer records of this type, in order.
    pub fn answer_data(&self, rtype: &str) -> Vec<String> {
        self.answer
            .iter()
            .filter(|r| r.rtype == rtype)
            .map(|r| r.data.clone())
            .collect()
    }
}

/// The path of `dig`; panics naming the package when it is missing.
fn dig_program() -> &'static str {
    static CHECKED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    CHECKED.get_or_init(
        || match std::process::Command::new("dig").arg("-v").output() {
            Ok(_) => {}
            Err(e) => panic!(
                "`dig` is required by these tests but could not be run ({e}): \
                 install the Debian package bind9-dnsutils (apt-get install bind9-dnsutils)"
            ),
        },
    );
    "dig"
}

/// Run `dig @server -p port ARGS +tries=1 +time=2` and return its raw stdout.
pub async fn dig_text(server: SocketAddr, args: &[&str]) -> String {
    let program = dig_program();
    let mut command = std::process::Command::new(program);
    command
        .arg(format!("@{}", server.ip()))
        .arg("-p")
        .arg(server.port().to_string())
        .args(["+tries=1", "+time=2"])
        .args(args);
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .expect("dig finished in time")
    .unwrap()
    .expect("run dig (package bind9-dnsutils)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    format!("{text}{stderr}")
}

/// Run dig and parse its answer; panics (with dig's output) if no reply was received.
pub async fn dig(server: SocketAddr, args: &[&str]) -> Dig {
    let text = dig_text(server, args).await;
    let parsed = parse_dig(&text);
    assert!(
        !parsed.status.is_empty(),
        "dig {args:?} got no reply from {server}:\n{text}"
    );
    parsed
}

pub fn parse_dig(text: &str) -> Dig {
    let mut dig = Dig {
        text: text.to_owned(),
        ..Dig::default()
    };
    #[derive(PartialEq)]
    enum Section {
        None,
        Question,
        Answer,
        Authority,
        Additional,
    }
    let mut section = Section::None;
    for line in text.lines() {
        if let Some(header) = line.strip_prefix(";; ->>HEADER<<- ") {
            // A later header (dig retried, e.g. over TCP) replaces the earlier one.
            dig.question.clear();
            dig.answer.clear();
            dig.authority.clear();
            dig.additional.clear();
            dig.edns_line = None;
            dig.edns_version = None;
            dig.edns_flags.clear();
            dig.edns_udp = None;
            dig.ecs = None;
            for part in header.split(", ") {
                if let Some(v) = part.strip_prefix("opcode: ") {
                    dig.opcode = v.to_owned();
                } else if let Some(v) = part.strip_prefix("status: ") {
                    dig.status = v.to_owned();
                } else if let Some(v) = part.strip_prefix("id: ") {
                    dig.id = v.trim().parse().unwrap_or(0);
                }
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix(";; flags:") {
            let (flags, counts) = rest.split_once(';').unwrap_or((rest, ""));
            dig.flags = flags.split_whitespace().map(str::to_owned).collect();
            for (i, key) in ["QUERY", "ANSWER", "AUTHORITY", "ADDITIONAL"]
                .iter()
                .enumerate()
            {
                if let Some(pos) = counts.find(&format!("{key}: ")) {
                    let digits: String = counts[pos + key.len() + 2..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    dig.counts[i] = digits.parse().unwrap_or(0);
                }
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("; EDNS: ") {
            dig.edns_line = Some(rest.to_owned());
            if let Some(v) = rest.strip_prefix("version: ") {
                dig.edns_version = v
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse()
                    .ok();
            }
            if let Some(pos) = rest.find("flags:") {
                let after = &rest[pos + "flags:".len()..];
                let flags = after.split(';').next().unwrap_or("");
                dig.edns_flags = flags.split_whitespace().map(str::to_owned).collect();
            }
            if let Some(pos) = rest.find("udp: ") {
                dig.edns_udp = rest[pos + 5..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse()
                    .ok();
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("; CLIENT-SUBNET: ") {
            let mut parts = rest.trim().rsplitn(3, '/');
            let scope = parts.next().and_then(|s| s.parse().ok());
            let source = parts.next().and_then(|s| s.parse().ok());
            let addr = parts.next();
            if let (Some(addr), Some(source), Some(scope)) = (addr, source, scope) {
                dig.ecs = Some((addr.to_owned(), source, scope));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix(";; MSG SIZE  rcvd: ") {
            dig.msg_size = rest.trim().parse().ok();
            continue;
        }
        if let Some(rest) = line.strip_prefix(";; SERVER: ") {
            dig.transport = rest
                .rsplit_once('(')
                .map(|(_, t)| t.trim_end_matches(')').to_owned());
            continue;
        }
        section = match line {
            ";; QUESTION SECTION:" => Section::Question,
            ";; ANSWER SECTION:" => Section::Answer,
            ";; AUTHORITY SECTION:" => Section::Authority,
            ";; ADDITIONAL SECTION:" => Section::Additional,
            "" => Section::None,
            _ => {
                match section {
                    Section::None => {}
                    Section::Question => dig.question.push(line.trim_start_matches(';').into()),
                    _ if line.starts_with(';') => {}
                    Section::Answer => dig.answer.push(parse_rr(line)),
                    Section::Authority => dig.authority.push(parse_rr(line)),
                    Section::Additional => dig.additional.push(parse_rr(line)),
                }
                section
            }
        };
    }
    dig
}

fn parse_rr(line: &str) -> DigRr {
    let mut fields = line.split_whitespace();
    let mut next = || {
        fields
            .next()
            .unwrap_or_else(|| panic!("short RR line {line:?}"))
    };
    let name = next().to_owned();
    let ttl = next().parse().unwrap_or_else(|_| panic!("ttl in {line:?}"));
    let class = next().to_owned();
    let rtype = next().to_owned();
    let data = fields.collect::<Vec<_>>().join(" ");
    DigRr {
        name,
        ttl,
        class,
        rtype,
        data,
    }
}

// ---------------------------------------------------------------------------------------------
// Temporary config directories

/// A directory under the system temp dir, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("steerdns-it-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self { path }
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `steerdns.toml` naming `zones/example.com.zone`, `policies/` and the fixture GeoIP DBs by
/// absolute path. Returns the config path.
pub fn write_config(dir: &TempDir, zone: &str, policies: &[(&str, &str)]) -> PathBuf {
    write_config_with(dir, zone, policies, "")
}

/// Like [`write_config`] with extra `[dns]` keys (e.g. `tcp_idle_timeout_ms = 300`).
pub fn write_config_with(
    dir: &TempDir,
    zone: &str,
    policies: &[(&str, &str)],
    dns_extra: &str,
) -> PathBuf {
    let fixtures = Path::new(REPO).join("tests/fixtures/geoip");
    let config = format!(
        "[dns]\nlisten = [\"127.0.0.1:0\"]\n{dns_extra}\n\n[http]\nlisten = \"off\"\n\n\
         [admin]\nlisten = \"off\"\n\n\
         [geoip]\ncity = {:?}\nasn = {:?}\n\n\
         [[zone]]\norigin = \"example.com\"\nfile = \"zones/example.com.zone\"\n\n\
         [policies]\ndir = \"policies\"\n",
        fixtures.join("GeoIP2-City-Test.mmdb").display().to_string(),
        fixtures
            .join("GeoLite2-ASN-Test.mmdb")
            .display()
            .to_string(),
    );
    dir.write("zones/example.com.zone", zone);
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    for (file, text) in policies {
        dir.write(&format!("policies/{file}"), text);
    }
    dir.write("steerdns.toml", &config)
}

/// Like [`write_config`], with whole tables appended at the end (e.g. `[health]` and
/// `[probes]`). Relative paths in them are relative to `dir`.
pub fn write_config_extra(
    dir: &TempDir,
    zone: &str,
    policies: &[(&str, &str)],
    extra: &str,
) -> PathBuf {
    let path = write_config(dir, zone, policies);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push('\n');
    text.push_str(extra);
    std::fs::write(&path, text).unwrap();
    path
}

/// The demo policies, as `(file name, text)`.
pub fn demo_policies() -> Vec<(&'static str, &'static str)> {
    vec![
        ("www.example.com.toml", WWW_POLICY),
        ("pop.example.com.toml", POP_POLICY),
    ]
}

/// The demo zone with its `big` TXT RRset replaced by one that is valid on the wire: eight
/// records of one 250-character string each (about 2.1 KB in all).
pub fn zone_with_valid_big_txt() -> String {
    let mut zone: String = DEMO_ZONE
        .lines()
        .filter(|l| !l.starts_with("big "))
        .map(|l| format!("{l}\n"))
        .collect();
    for i in 0..8 {
        zone.push_str(&format!("big IN TXT \"{i}{}\"\n", "x".repeat(249)));
    }
    zone
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 (a minimal client: one request per connection, `Connection: close`)

/// How long an HTTP exchange may take (policy edits fsync and recompile).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Names lower case, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the response when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    /// `error` of a JSON error body.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {} {}", self.status, self.body))
            .to_owned()
    }
}

impl std::fmt::Display for HttpResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {:?} {}", self.status, self.headers, self.body)
    }
}

/// Send one request and read the whole response. The body is written even if the server
/// answers early (e.g. 413), and whatever arrived before a reset is parsed.
/// `steerdns_udp_replies_total` for the fast and the full path, from `/metrics` on `http`:
/// which UDP path answered the queries a test sent.
pub async fn udp_path_counts(http: SocketAddr) -> (u64, u64) {
    let body = http_request(http, "GET", "/metrics", &[], b"").await.body;
    let count = |path: &str| -> u64 {
        let prefix = format!("steerdns_udp_replies_total{{path=\"{path}\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
    };
    (count("fast"), count("full"))
}

pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    try_http_request(addr, method, path, headers, body)
        .await
        .unwrap_or_else(|e| panic!("HTTP {method} {path}: {e}"))
}

/// Like [`http_request`], but an error instead of a panic when the server is gone (refused,
/// reset before a complete response) or too slow.
pub async fn try_http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, String> {
    try_http_request_from(None, addr, method, path, headers, body).await
}

/// Like [`http_request`], from this local address (e.g. 127.0.0.2, to be a proxy the server
/// trusts while everything else on loopback is not).
pub async fn http_request_from(
    local: IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    try_http_request_from(Some(local), addr, method, path, headers, body)
        .await
        .unwrap_or_else(|e| panic!("HTTP {method} {path} from {local}: {e}"))
}

async fn try_http_request_from(
    local: Option<IpAddr>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, String> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let raw = tokio::time::timeout(HTTP_TIMEOUT, async {
        let mut stream = match local {
            None => TcpStream::connect(addr).await,
            Some(ip) => {
                let socket = match ip {
                    IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
                    IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
                }
                .map_err(|e| format!("socket: {e}"))?;
                socket
                    .bind(SocketAddr::new(ip, 0))
                    .map_err(|e| format!("bind {ip}: {e}"))?;
                socket.connect(addr).await
            }
        }
        .map_err(|e| format!("connect: {e}"))?;
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        let _ = stream.write_all(&request).await;
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
        Ok::<_, String>(raw)
    })
    .await
    .map_err(|_| "no complete response in time".to_owned())??;
    parse_http(&raw)
        .ok_or_else(|| format!("unparsable response {:?}", String::from_utf8_lossy(&raw)))
}

fn parse_http(raw: &[u8]) -> Option<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut rest = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let end = at + rest[at..].windows(2).position(|w| w == b"\r\n")?;
            let size_text = std::str::from_utf8(&rest[at..end]).ok()?;
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            at = end + 2;
            if size == 0 {
                break;
            }
            body.extend_from_slice(rest.get(at..at + size)?);
            at += size + 2;
        }
        rest = body;
    } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        rest.truncate(len);
    }
    Some(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&rest).into_owned(),
    })
}

/// The admin API of a running server, with its token.
#[derive(Debug, Clone)]
pub struct AdminClient {
    pub addr: SocketAddr,
    pub token: String,
}

impl AdminClient {
    pub fn of(running: &Running) -> Self {
        Self {
            addr: running.admin_addr.expect("the admin API listens"),
            token: running.admin_token.to_string(),
        }
    }

    /// A request with the bearer token and extra headers.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        let auth = format!("Bearer {}", self.token);
        let mut all = vec![("Authorization", auth.as_str())];
        all.extend_from_slice(headers);
        http_request(self.addr, method, path, &all, body).await
    }

    pub async fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", path, &[], b"").await
    }

    /// `PUT /api/v1/policies/{name}` (with `query` such as `?dry_run=true`).
    pub async fn put_policy(
        &self,
        name: &str,
        query: &str,
        if_match: Option<&str>,
        body: &str,
    ) -> HttpResponse {
        let path = format!("/api/v1/policies/{name}{query}");
        let headers: Vec<(&str, &str)> = if_match.map(|e| ("If-Match", e)).into_iter().collect();
        self.request("PUT", &path, &headers, body.as_bytes()).await
    }

    pub async fn delete_policy(&self, name: &str, if_match: Option<&str>) -> HttpResponse {
        let path = format!("/api/v1/policies/{name}");
        let headers: Vec<(&str, &str)> = if_match.map(|e| ("If-Match", e)).into_iter().collect();
        self.request("DELETE", &path, &headers, b"").await
    }

    /// The policy's TOML and ETag; panics unless 200.
    pub async fn policy(&self, name: &str) -> (String, String) {
        let r = self.get(&format!("/api/v1/policies/{name}")).await;
        assert_eq!(r.status, 200, "GET {name}: {r}");
        let etag = r.header("etag").expect("ETag").to_owned();
        (r.body, etag)
    }

    /// Set (`Some`) or clear (`None`) a target's health override; returns the generation.
    pub async fn set_health(&self, target: &str, state: Option<&str>) -> u64 {
        let path = format!("/api/v1/health/{target}");
        let r = match state {
            Some(s) => {
                let body = format!("{{\"state\":\"{s}\"}}");
                self.request("PUT", &path, &[], body.as_bytes()).await
            }
            None => self.request("DELETE", &path, &[], b"").await,
        };
        assert_eq!(r.status, 200, "health {target} {state:?}: {r}");
        r.json()["generation"]
            .as_u64()
            .unwrap_or_else(|| panic!("no generation: {r}"))
    }

    /// `GET /api/v1/explain`; panics unless 200.
    pub async fn explain(&self, name: &str, client: &str) -> serde_json::Value {
        let r = self
            .get(&format!("/api/v1/explain?name={name}&client={client}"))
            .await;
        assert_eq!(r.status, 200, "explain {name} {client}: {r}");
        r.json()
    }
}

/// An edit's response must carry the generation that serves it, already published.
pub fn assert_published(running: &Running, response: &HttpResponse) -> u64 {
    let generation = response.json()["generation"]
        .as_u64()
        .unwrap_or_else(|| panic!("no generation in {response}"));
    let serving = running.published.load().generation;
    assert!(
        serving >= generation,
        "generation {generation} acknowledged but {serving} serving"
    );
    generation
}

// ---------------------------------------------------------------------------------------------
// Answers in one call

/// The CNAME target (or the A addresses, space separated) for `qname` as seen from `subnet`
/// (`None`: no ECS), over UDP.
pub async fn answer_of(server: SocketAddr, qname: &str, subnet: Option<&str>) -> String {
    let q = match subnet {
        Some(s) => ecs_query(qname, RecordType::A, s),
        None => with_edns(query(qname, RecordType::A), 1232),
    };
    let reply = udp(server, &q).await;
    match reply.metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return "NXDOMAIN".into(),
        other => return format!("{other:?}"),
    }
    let cnames = cname_targets(&reply);
    if let Some(first) = cnames.first() {
        return first.clone();
    }
    let addrs = addresses(&reply.answers);
    if addrs.is_empty() {
        "NODATA".into()
    } else {
        addrs.join(" ")
    }
}

/// Poll `answer_of` until it equals `want` (at most `within`); returns the last answer.
pub async fn wait_for_answer(
    server: SocketAddr,
    qname: &str,
    subnet: Option<&str>,
    want: &str,
    within: Duration,
) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got = answer_of(server, qname, subnet).await;
        if got == want || tokio::time::Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Polling

/// Poll `probe` every 20 ms until it returns `Ok`, at most `within`; panics with the last error.
pub async fn eventually<T>(
    what: &str,
    within: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("{what}: not within {within:?}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Poll `check` every 20 ms for the whole of `during`; panics at the first `Err`.
pub async fn holds(
    what: &str,
    during: Duration,
    mut check: impl AsyncFnMut() -> Result<(), String>,
) {
    let end = tokio::time::Instant::now() + during;
    while tokio::time::Instant::now() < end {
        if let Err(e) = check().await {
            panic!(
                "{what}: broke after {:?} of {during:?}: {e}",
                tokio::time::Instant::now() + during - end
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
