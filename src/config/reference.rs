//! The config file reference: every section and key with its type, default, allowed range and
//! meaning, in one table ([`SECTIONS`]), rendered as `docs/config.md` ([`markdown`]).
//!
//! The table is the single place a key is documented. Its tests hold it to the parser: the
//! keys and value kinds must be exactly those the `Raw*` structs accept (read off their
//! `Deserialize` impls), every example must parse, every default must be what the parser
//! yields when the key is absent, every range bound must be accepted and the value just past it
//! rejected naming the key, and `docs/config.md` must be the current rendering. The config
//! the other docs show is checked against the parser and this table too (`snippets`).

use std::fmt::Write;

/// One `[section]` or `[[array]]` of the file.
#[derive(Debug)]
pub struct Section {
    /// Dotted path: `dns`, `dns.rate_limit`, `rum.target`.
    pub name: &'static str,
    /// `[[name]]`: may appear many times.
    pub array: bool,
    pub about: &'static str,
    pub keys: &'static [Key],
}

#[derive(Debug)]
pub struct Key {
    pub name: &'static str,
    pub ty: Type,
    pub default: DefaultValue,
    pub range: Range,
    /// A value (TOML) for the complete example.
    pub example: &'static str,
    /// The example names a file that must exist and hold a certificate or key (the parser
    /// loads it): commented out in the complete example.
    pub example_is_a_file: bool,
    /// Other keys of the same section the key needs, as TOML lines (checks only).
    pub needs: &'static str,
    pub about: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Integer,
    Float,
    Bool,
    String,
    /// A string; relative to the config file's directory.
    Path,
    /// `ADDR:PORT`, like `127.0.0.1:5353` or `[::1]:5353`.
    Address,
    Strings,
    /// A table of free-form keys.
    Table,
}

impl Type {
    pub fn name(self) -> &'static str {
        match self {
            Type::Integer => "integer",
            Type::Float => "float",
            Type::Bool => "boolean",
            Type::String => "string",
            Type::Path => "path",
            Type::Address => "address",
            Type::Strings => "array of strings",
            Type::Table => "table",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum DefaultValue {
    /// Must be given (in a section that is present).
    Required,
    /// What leaving the key out means, as a TOML value.
    Value(&'static str),
    /// Computed from other keys: `text` says how; with the keys `given` (TOML lines of the same
    /// section) it `equals` this TOML value (checked).
    Derived {
        text: &'static str,
        given: &'static str,
        equals: &'static str,
    },
    /// No value: what its absence means.
    Unset(&'static str),
}

#[derive(Debug, Clone, Copy)]
pub enum Range {
    /// Anything of the type (any further rule is in the description).
    Any,
    /// An integer in `min..=max` (`max: None`: no upper bound).
    /// `max_text` replaces the upper bound in the docs when it is another key.
    Int {
        min: u64,
        max: Option<u64>,
        max_text: Option<&'static str>,
    },
    /// A float between `min` and `max`, each bound included unless open.
    Float {
        min: f64,
        min_open: bool,
        max: Option<f64>,
        max_open: bool,
    },
    /// One of these strings.
    OneOf(&'static [&'static str]),
}

const fn int(min: u64, max: u64) -> Range {
    Range::Int {
        min,
        max: Some(max),
        max_text: None,
    }
}

const fn at_least(min: u64) -> Range {
    Range::Int {
        min,
        max: None,
        max_text: None,
    }
}

const fn closed(min: f64, max: f64) -> Range {
    Range::Float {
        min,
        min_open: false,
        max: Some(max),
        max_open: false,
    }
}

/// A key with the usual extras off; the table sets the rest by struct update.
const fn key(name: &'static str, ty: Type, default: DefaultValue, example: &'static str) -> Key {
    Key {
        name,
        ty,
        default,
        range: Range::Any,
        example,
        example_is_a_file: false,
        needs: "",
        about: "",
    }
}

const NONE_TLS: DefaultValue = DefaultValue::Unset("plain HTTP");

/// Every section and key, in the order of the complete example.
pub const SECTIONS: &[Section] = &[
    Section {
        name: "dns",
        array: false,
        about: "The DNS listeners (UDP and TCP) and their bounds.",
        keys: &[
            Key {
                about: "Addresses to answer on; each gets a UDP socket and a TCP listener. At least one.",
                ..key(
                    "listen",
                    Type::Strings,
                    DefaultValue::Value(r#"["127.0.0.1:5353"]"#),
                    r#"["0.0.0.0:53", "[::]:53"]"#,
                )
            },
            Key {
                range: int(512, 4096),
                about: "Largest UDP reply, whatever the client advertises (1232: no IP fragmentation on almost every path, DNS Flag Day 2020).",
                ..key(
                    "max_udp_payload",
                    Type::Integer,
                    DefaultValue::Value("1232"),
                    "1232",
                )
            },
            Key {
                range: int(100, 600_000),
                about: "A TCP client has this long to send each whole message.",
                ..key(
                    "tcp_idle_timeout_ms",
                    Type::Integer,
                    DefaultValue::Value("10000"),
                    "10000",
                )
            },
            Key {
                range: int(1, 1_000_000),
                about: "Open TCP connections, over every address; one over is closed at once.",
                ..key(
                    "tcp_max_connections",
                    Type::Integer,
                    DefaultValue::Value("1024"),
                    "1024",
                )
            },
            Key {
                range: Range::Int {
                    min: 1,
                    max: Some(1_000_000),
                    max_text: Some("`tcp_max_connections`"),
                },
                needs: "tcp_max_connections = 1000000",
                about: "Open TCP connections from one client network (/24 for IPv4, /56 for IPv6). The default is lowered to `tcp_max_connections` when that is smaller.",
                ..key(
                    "tcp_max_per_network",
                    Type::Integer,
                    DefaultValue::Value("64"),
                    "64",
                )
            },
            Key {
                about: "Queries answered on one connection, then it is closed (0: no cap).",
                ..key(
                    "tcp_max_queries",
                    Type::Integer,
                    DefaultValue::Value("1000"),
                    "1000",
                )
            },
            Key {
                range: int(1, 256),
                about: "UDP serving threads per listen address, each with its own socket.",
                ..key(
                    "udp_threads",
                    Type::Integer,
                    DefaultValue::Unset("one per CPU this process may run on"),
                    "2",
                )
            },
            Key {
                about: "Answer TXT `_explain.<steered name>` with the decision for the asker.",
                ..key(
                    "explain_names",
                    Type::Bool,
                    DefaultValue::Value("false"),
                    "false",
                )
            },
        ],
    },
    Section {
        name: "dns.rate_limit",
        array: false,
        about: "Response rate limiting on UDP, per client network (on by default). TCP is bounded by the `[dns]` connection caps instead.",
        keys: &[
            Key {
                range: int(0, 1_000_000),
                about: "Replies per second to one client network; 0 turns the limit off.",
                ..key(
                    "responses_per_second",
                    Type::Integer,
                    DefaultValue::Value("1000"),
                    "1000",
                )
            },
            Key {
                range: int(0, 10),
                about: "Every `slip`-th limited reply goes out truncated (TC), so a real client retries over TCP; the rest are dropped. 0 drops them all.",
                ..key("slip", Type::Integer, DefaultValue::Value("2"), "2")
            },
            Key {
                range: int(8, 32),
                about: "A client network, for IPv4: this prefix length.",
                ..key(
                    "ipv4_prefix",
                    Type::Integer,
                    DefaultValue::Value("24"),
                    "24",
                )
            },
            Key {
                range: int(16, 128),
                about: "A client network, for IPv6: this prefix length.",
                ..key(
                    "ipv6_prefix",
                    Type::Integer,
                    DefaultValue::Value("56"),
                    "56",
                )
            },
            Key {
                about: "Addresses or networks never limited; add your monitoring here.",
                ..key(
                    "exempt",
                    Type::Strings,
                    DefaultValue::Value(r#"["127.0.0.0/8", "::1"]"#),
                    r#"["127.0.0.0/8", "::1", "192.0.2.0/24"]"#,
                )
            },
        ],
    },
    Section {
        name: "http",
        array: false,
        about: "The public HTTP listener: `/healthz`, `/readyz`, `/metrics` and, with `[rum]`, the beacon. `max_connections` and the timeouts bound the `[admin]` listener too.",
        keys: &[
            Key {
                about: "Address to listen on, or `\"off\"` (or `\"\"`) for no public listener.",
                ..key(
                    "listen",
                    Type::Address,
                    DefaultValue::Value(r#""127.0.0.1:8080""#),
                    r#""127.0.0.1:8080""#,
                )
            },
            Key {
                example_is_a_file: true,
                about: "PEM certificate chain: this listener speaks HTTPS only (the beacon needs HTTPS on HTTPS pages). Needs `tls_key`; renewed files are picked up within a second, no restart.",
                ..key("tls_cert", Type::Path, NONE_TLS, r#""fullchain.pem""#)
            },
            Key {
                example_is_a_file: true,
                about: "PEM private key for `tls_cert`.",
                ..key("tls_key", Type::Path, NONE_TLS, r#""privkey.pem""#)
            },
            Key {
                range: int(1, 1_000_000),
                about: "Open connections per HTTP listener (this one and `[admin]`'s); one over is closed at once.",
                ..key(
                    "max_connections",
                    Type::Integer,
                    DefaultValue::Value("1024"),
                    "1024",
                )
            },
            Key {
                range: int(100, 600_000),
                about: "A request head must arrive within this, also between kept-alive requests.",
                ..key(
                    "header_timeout_ms",
                    Type::Integer,
                    DefaultValue::Value("5000"),
                    "5000",
                )
            },
            Key {
                range: int(100, 600_000),
                about: "A whole request, body included, or 408.",
                ..key(
                    "request_timeout_ms",
                    Type::Integer,
                    DefaultValue::Value("15000"),
                    "15000",
                )
            },
        ],
    },
    Section {
        name: "http.rate_limit",
        array: false,
        about: "Token buckets per client network, on both HTTP listeners (each its own table). Loopback is not exempt: a reverse proxy on the same host would exempt everyone behind it.",
        keys: &[
            Key {
                range: int(0, 1_000_000),
                about: "Every request but beacons (they have `[rum] beacons_per_network_per_minute`); 0 turns it off.",
                ..key(
                    "requests_per_second",
                    Type::Integer,
                    DefaultValue::Value("50"),
                    "50",
                )
            },
            Key {
                range: int(1, 10_000_000),
                about: "Requests at once before the rate applies.",
                ..key(
                    "burst",
                    Type::Integer,
                    DefaultValue::Derived {
                        text: "ten seconds' worth of `requests_per_second` (at least 1)",
                        given: "requests_per_second = 7",
                        equals: "70",
                    },
                    "500",
                )
            },
            Key {
                range: int(0, 1_000_000),
                about: "Admin API 401s per minute, in bursts of as many; past it the network gets only 429 until the bucket refills. 0 turns it off.",
                ..key(
                    "auth_failures_per_minute",
                    Type::Integer,
                    DefaultValue::Value("10"),
                    "10",
                )
            },
            Key {
                range: int(8, 32),
                about: "A client network, for IPv4: this prefix length.",
                ..key(
                    "ipv4_prefix",
                    Type::Integer,
                    DefaultValue::Value("24"),
                    "24",
                )
            },
            Key {
                range: int(16, 128),
                about: "A client network, for IPv6: this prefix length.",
                ..key(
                    "ipv6_prefix",
                    Type::Integer,
                    DefaultValue::Value("56"),
                    "56",
                )
            },
            Key {
                about: "Addresses or networks never limited (default: none, not even loopback).",
                ..key("exempt", Type::Strings, DefaultValue::Value("[]"), "[]")
            },
            Key {
                range: int(1, 10_000_000),
                about: "Networks each table tracks at once; when full, refilled ones are forgotten and a new network is refused until room frees up.",
                ..key(
                    "max_networks",
                    Type::Integer,
                    DefaultValue::Value("100000"),
                    "100000",
                )
            },
        ],
    },
    Section {
        name: "admin",
        array: false,
        about: "The admin listener: `/api/v1` (bearer tokens) and `/dashboard/`.",
        keys: &[
            Key {
                about: "Address to listen on, or `\"off\"` (or `\"\"`) for no admin API.",
                ..key(
                    "listen",
                    Type::Address,
                    DefaultValue::Value(r#""127.0.0.1:8081""#),
                    r#""127.0.0.1:8081""#,
                )
            },
            Key {
                example_is_a_file: true,
                about: "PEM certificate chain: the admin API speaks HTTPS only (bearer tokens cross the network). Needs `tls_key`.",
                ..key("tls_cert", Type::Path, NONE_TLS, r#""admin.pem""#)
            },
            Key {
                example_is_a_file: true,
                about: "PEM private key for `tls_cert`.",
                ..key("tls_key", Type::Path, NONE_TLS, r#""admin.key""#)
            },
            Key {
                about: "File holding the admin token, which may do everything; `$STEERDNS_ADMIN_TOKEN` wins over it.",
                ..key(
                    "token_file",
                    Type::Path,
                    DefaultValue::Unset(
                        "`$STEERDNS_ADMIN_TOKEN`, else one generated for the run and logged",
                    ),
                    r#""admin.token""#,
                )
            },
            Key {
                about: "File holding the probe agents' token: it may only post probe results; `$STEERDNS_PROBE_TOKEN` wins over it.",
                ..key(
                    "probe_token_file",
                    Type::Path,
                    DefaultValue::Unset("agents need the admin token"),
                    r#""probe.token""#,
                )
            },
            Key {
                about: "File holding a read-only token (every `GET`, nothing else); `$STEERDNS_READ_TOKEN` wins over it. Tokens must differ.",
                ..key(
                    "read_token_file",
                    Type::Path,
                    DefaultValue::Unset("no read-only token"),
                    r#""read.token""#,
                )
            },
        ],
    },
    Section {
        name: "geoip",
        array: false,
        about: "MaxMind-format databases (GeoLite2, GeoIP2, or any `.mmdb` of the same layout).",
        keys: &[
            Key {
                about: "City or Country database. Omit both keys for the small bundled test databases (the demo's).",
                ..key(
                    "city",
                    Type::Path,
                    DefaultValue::Unset("the bundled test databases"),
                    r#""/var/lib/GeoIP/GeoLite2-City.mmdb""#,
                )
            },
            Key {
                needs: r#"city = "GeoLite2-City.mmdb""#,
                about: "ASN database, needed for `asn` rules; requires `city`.",
                ..key(
                    "asn",
                    Type::Path,
                    DefaultValue::Unset("no ASN data (the bundled one when `city` is unset too)"),
                    r#""/var/lib/GeoIP/GeoLite2-ASN.mmdb""#,
                )
            },
            Key {
                example_is_a_file: true,
                about: "A file of overrides, one network per line: `198.51.100.0/24 country=DE subdivision=DE-BE` (the keys of `[[geoip.override]]` as key=value; `#` comments). For maps of many networks (hundreds of thousands load in well under a second); read at start and on every reload. Where it and a `[[geoip.override]]` give the same network, the table wins; otherwise the most specific network does.",
                ..key(
                    "override_file",
                    Type::Path,
                    DefaultValue::Unset("no file"),
                    r#""geoip-overrides.txt""#,
                )
            },
        ],
    },
    Section {
        name: "geoip.override",
        array: true,
        about: "A network you place by hand, ahead of the databases. Needs at least one of `continent`, `country`, `subdivision`, `asn`.",
        keys: &[
            Key {
                needs: r#"country = "DE""#,
                about: "The network (an address is not enough: host bits must be zero).",
                ..key(
                    "cidr",
                    Type::String,
                    DefaultValue::Required,
                    r#""198.51.100.0/24""#,
                )
            },
            Key {
                needs: r#"cidr = "198.51.100.0/24""#,
                about: "Continent code: AF, AN, AS, EU, NA, OC or SA.",
                ..key(
                    "continent",
                    Type::String,
                    DefaultValue::Unset("from the databases"),
                    r#""EU""#,
                )
            },
            Key {
                needs: r#"cidr = "198.51.100.0/24""#,
                about: "ISO 3166-1 alpha-2 country code.",
                ..key(
                    "country",
                    Type::String,
                    DefaultValue::Unset("from the databases"),
                    r#""DE""#,
                )
            },
            Key {
                needs: r#"cidr = "198.51.100.0/24""#,
                about: "ISO 3166-2 subdivision, like `DE-BE`; sets the country too (a `country` given must match).",
                ..key(
                    "subdivision",
                    Type::String,
                    DefaultValue::Unset("from the databases"),
                    r#""DE-BE""#,
                )
            },
            Key {
                needs: r#"cidr = "198.51.100.0/24""#,
                about: "Autonomous system number.",
                ..key(
                    "asn",
                    Type::Integer,
                    DefaultValue::Unset("from the databases"),
                    "64512",
                )
            },
        ],
    },
    Section {
        name: "zone",
        array: true,
        about: "A zone this server is authoritative for. At least one.",
        keys: &[
            Key {
                about: "The zone's apex.",
                ..key(
                    "origin",
                    Type::String,
                    DefaultValue::Required,
                    r#""example.com""#,
                )
            },
            Key {
                about: "A standard RFC 1035 master file (bring your existing one).",
                ..key(
                    "file",
                    Type::Path,
                    DefaultValue::Unset("only `records`"),
                    r#""zones/example.com.zone""#,
                )
            },
            Key {
                about: "Inline master-file lines, relative to the origin.",
                ..key(
                    "records",
                    Type::Strings,
                    DefaultValue::Value("[]"),
                    r#"['demo 300 IN TXT "inline records, zone-file syntax"']"#,
                )
            },
        ],
    },
    Section {
        name: "policies",
        array: false,
        about: "Steering policies (see `policies/README.md`).",
        keys: &[Key {
            about: "Directory with one `<steered name>.toml` per steered name; steerdns writes admin API edits, their history and its state file here too.",
            ..key(
                "dir",
                Type::Path,
                DefaultValue::Value(r#""policies""#),
                r#""policies""#,
            )
        }],
    },
    Section {
        name: "health",
        array: false,
        about: "How probe results become health, per target and probe location, then across locations.",
        keys: &[
            Key {
                range: at_least(1),
                about: "Consecutive failures after which a location says down.",
                ..key(
                    "down_after_failures",
                    Type::Integer,
                    DefaultValue::Value("2"),
                    "2",
                )
            },
            Key {
                range: at_least(1),
                about: "Consecutive successes before a location says up again (and `hold_down_ms` must have passed).",
                ..key(
                    "up_after_successes",
                    Type::Integer,
                    DefaultValue::Value("3"),
                    "3",
                )
            },
            Key {
                about: "A recovering location says up only after a run of successes this long; a reporting gap does not shorten it.",
                ..key(
                    "hold_down_ms",
                    Type::Integer,
                    DefaultValue::Value("30000"),
                    "30000",
                )
            },
            Key {
                range: at_least(1000),
                about: "An agent silent this long is unknown, never healthy.",
                ..key(
                    "stale_after_ms",
                    Type::Integer,
                    DefaultValue::Value("5000"),
                    "5000",
                )
            },
            Key {
                range: int(60_000, 3_600_000),
                about: "The window for availability, p95 latency and error rate, counted from the last recovery.",
                ..key(
                    "window_ms",
                    Type::Integer,
                    DefaultValue::Value("300000"),
                    "300000",
                )
            },
            Key {
                about: "Samples the window needs before availability and error rate count.",
                ..key(
                    "min_samples",
                    Type::Integer,
                    DefaultValue::Value("100"),
                    "100",
                )
            },
            Key {
                range: closed(0.0, 1.0),
                about: "Below this availability over the window, a location says down.",
                ..key(
                    "min_availability",
                    Type::Float,
                    DefaultValue::Value("0.995"),
                    "0.995",
                )
            },
            Key {
                range: Range::Float {
                    min: 1.0,
                    min_open: true,
                    max: None,
                    max_open: false,
                },
                about: "p95 latency over this many times its baseline: down.",
                ..key("p95_factor", Type::Float, DefaultValue::Value("2.0"), "2.0")
            },
            Key {
                range: closed(0.0, 1.0),
                about: "An error rate above this in each of the last `error_rate_minutes` minutes: down.",
                ..key(
                    "max_error_rate",
                    Type::Float,
                    DefaultValue::Value("0.01"),
                    "0.01",
                )
            },
            Key {
                about: "Minutes in a row the error rate must be over `max_error_rate`.",
                ..key(
                    "error_rate_minutes",
                    Type::Integer,
                    DefaultValue::Value("3"),
                    "3",
                )
            },
            Key {
                about: "Locations that must say down for the target to be down; 0: a majority of those reporting.",
                ..key("quorum", Type::Integer, DefaultValue::Value("0"), "0")
            },
            Key {
                range: at_least(1),
                about: "This many locations saying down take the target down, whatever the quorum.",
                ..key(
                    "unreachable_from",
                    Type::Integer,
                    DefaultValue::Value("3"),
                    "3",
                )
            },
            Key {
                about: "Probe agent location → ISO country, so its latencies also count for that country and its continent in the `performance` step.",
                ..key(
                    "agent_countries",
                    Type::Table,
                    DefaultValue::Value("{}"),
                    r#"{ fra = "DE", iad = "US" }"#,
                )
            },
        ],
    },
    Section {
        name: "probes",
        array: false,
        about: "Run the probe checks inside `serve` (a single box) rather than with `steerdns probe` agents.",
        keys: &[
            Key {
                about: "Directory of probe target files (`probes/README.md`).",
                ..key(
                    "targets",
                    Type::Path,
                    DefaultValue::Unset("no probes inside `serve`"),
                    r#""probes/targets""#,
                )
            },
            Key {
                needs: r#"targets = "probes/targets""#,
                about: "The location label results are reported as (1 to 64 characters); requires `targets`.",
                ..key(
                    "location",
                    Type::String,
                    DefaultValue::Value(r#""local""#),
                    r#""local""#,
                )
            },
        ],
    },
    Section {
        name: "rum",
        array: false,
        about: "Real-user measurements: the beacon, its ingest and resolver mapping (`rum-beacon/README.md`). Absent: off.",
        keys: &[
            Key {
                about: "HMAC key for beacon tokens, at least 32 bytes, read at start; `$STEERDNS_RUM_SECRET` wins over it.",
                ..key(
                    "secret_file",
                    Type::Path,
                    DefaultValue::Unset("only `$STEERDNS_RUM_SECRET`"),
                    r#""rum.secret""#,
                )
            },
            Key {
                about: "The resolver-mapping zone: browsers fetch `<nonce>.<zone>` and steerdns answers those names.",
                ..key(
                    "zone",
                    Type::String,
                    DefaultValue::Required,
                    r#""rum.example.com""#,
                )
            },
            Key {
                about: "What `<nonce>.<zone>` resolves to: where this server's HTTP listener is reachable.",
                ..key(
                    "init_addresses",
                    Type::Strings,
                    DefaultValue::Value("[]"),
                    r#"["192.0.2.10"]"#,
                )
            },
            Key {
                range: Range::OneOf(&["https", "http"]),
                about: "Scheme of the init URL (`http` for tests and plain-HTTP setups).",
                ..key(
                    "init_scheme",
                    Type::String,
                    DefaultValue::Value(r#""https""#),
                    r#""https""#,
                )
            },
            Key {
                range: int(1, 65_535),
                about: "Port of the init URL.",
                ..key(
                    "init_port",
                    Type::Integer,
                    DefaultValue::Unset("the port the browser reached `/rum/v1/config` on"),
                    "443",
                )
            },
            Key {
                range: closed(0.0, 1.0),
                about: "Share of page views that measure.",
                ..key(
                    "sample_rate",
                    Type::Float,
                    DefaultValue::Value("1.0"),
                    "1.0",
                )
            },
            Key {
                range: int(1, 60),
                about: "Minutes of beacons a ranking reads.",
                ..key(
                    "window_minutes",
                    Type::Integer,
                    DefaultValue::Value("5"),
                    "5",
                )
            },
            Key {
                range: int(10, 3600),
                about: "Seconds a token from `/rum/v1/config` may be used.",
                ..key(
                    "token_ttl_s",
                    Type::Integer,
                    DefaultValue::Value("300"),
                    "300",
                )
            },
            Key {
                range: int(1, 100_000),
                about: "Beacons accepted per client /24 or /48 per minute (a token bucket).",
                ..key(
                    "beacons_per_network_per_minute",
                    Type::Integer,
                    DefaultValue::Value("60"),
                    "60",
                )
            },
            Key {
                about: "Networks whose `X-Forwarded-For` is believed (a load balancer in front); also used by the public listener's rate limit.",
                ..key(
                    "trusted_proxies",
                    Type::Strings,
                    DefaultValue::Value("[]"),
                    r#"["10.0.0.0/8"]"#,
                )
            },
            Key {
                range: int(100, 60_000),
                about: "Fetch timeout in the browser, ms; a slower fetch counts as a failure.",
                ..key(
                    "timeout_ms",
                    Type::Integer,
                    DefaultValue::Value("4000"),
                    "4000",
                )
            },
            Key {
                range: Range::Float {
                    min: 0.0,
                    min_open: false,
                    max: Some(1.0),
                    max_open: true,
                },
                about: "Over this failure rate (of at least 20 fetches), a target is out in that network or country only.",
                ..key(
                    "max_failure_rate",
                    Type::Float,
                    DefaultValue::Value("0.05"),
                    "0.05",
                )
            },
        ],
    },
    Section {
        name: "rum.target",
        array: true,
        about: "What browsers time: a target id policies use and its test objects. At least one, at most 16.",
        keys: &[
            Key {
                about: "The target id, 1 to 64 of `A-Z a-z 0-9 - _ .`; unique.",
                ..key("id", Type::String, DefaultValue::Required, r#""cdn-a""#)
            },
            Key {
                about: "A small object (a 1x1 GIF): latency and availability. An absolute http(s) URL without a fragment.",
                ..key(
                    "small",
                    Type::String,
                    DefaultValue::Required,
                    r#""https://cdn-a.example.net/rum/test.gif""#,
                )
            },
            Key {
                about: "A larger object (about 100 KB): throughput.",
                ..key(
                    "large",
                    Type::String,
                    DefaultValue::Unset("no throughput measurement"),
                    r#""https://cdn-a.example.net/rum/100k.bin""#,
                )
            },
        ],
    },
    Section {
        name: "rum.resolver_map",
        array: false,
        about: "When a resolver without ECS is located as its users.",
        keys: &[
            Key {
                range: at_least(1),
                about: "Sessions via a resolver within the window before it is mapped.",
                ..key(
                    "min_sessions",
                    Type::Integer,
                    DefaultValue::Value("50"),
                    "50",
                )
            },
            Key {
                range: Range::Float {
                    min: 0.5,
                    min_open: true,
                    max: Some(1.0),
                    max_open: false,
                },
                about: "Share of those sessions its dominant (country, ASN) must hold.",
                ..key("min_share", Type::Float, DefaultValue::Value("0.8"), "0.8")
            },
            Key {
                range: int(1, 168),
                about: "The sliding window of sessions, in hours.",
                ..key("window_h", Type::Integer, DefaultValue::Value("24"), "24")
            },
        ],
    },
    Section {
        name: "store",
        array: false,
        about: "Fleet mode: where the nodes share policies, overrides, ramp state and probe results. `serve --redis` overrides `redis`.",
        keys: &[
            Key {
                about: "`redis://host:port/db` (`rediss://` for TLS, `redis+unix://`), a Redis Cluster's seed nodes separated by commas, or `redis+sentinel://host:port/<primary>`.",
                ..key(
                    "redis",
                    Type::String,
                    DefaultValue::Unset("single node, no shared store"),
                    r#""redis://10.0.0.5:6379/0""#,
                )
            },
            Key {
                about: "Every key starts with `{prefix}:`, so several fleets can share one Redis; 1 to 64 letters, digits, `-`, `_`, `.`.",
                ..key(
                    "prefix",
                    Type::String,
                    DefaultValue::Value(r#""steerdns""#),
                    r#""steerdns""#,
                )
            },
            Key {
                range: int(50, 60_000),
                about: "Every node rebuilds from the shared state at least this often, even without a change notice (notices can be lost).",
                ..key(
                    "refresh_ms",
                    Type::Integer,
                    DefaultValue::Value("2000"),
                    "2000",
                )
            },
            Key {
                range: int(10, 10_000),
                about: "Our deadline for every Redis call.",
                ..key(
                    "timeout_ms",
                    Type::Integer,
                    DefaultValue::Value("500"),
                    "500",
                )
            },
            Key {
                about: "The node's local copy of the fleet's policies, to start from while Redis is down.",
                ..key(
                    "cache_dir",
                    Type::Path,
                    DefaultValue::Value(r#""steerdns-cache""#),
                    r#""steerdns-cache""#,
                )
            },
            Key {
                example_is_a_file: true,
                about: "`rediss://`: trust this CA (PEM) instead of the system's roots.",
                ..key(
                    "tls_ca",
                    Type::Path,
                    DefaultValue::Unset("the system's roots"),
                    r#""redis-ca.pem""#,
                )
            },
            Key {
                example_is_a_file: true,
                about: "`rediss://`: client certificate (PEM), if Redis requires one; needs `tls_key`.",
                ..key(
                    "tls_cert",
                    Type::Path,
                    DefaultValue::Unset("no client certificate"),
                    r#""node.pem""#,
                )
            },
            Key {
                example_is_a_file: true,
                about: "`rediss://`: the client certificate's private key (PEM).",
                ..key(
                    "tls_key",
                    Type::Path,
                    DefaultValue::Unset("no client certificate"),
                    r#""node.key""#,
                )
            },
        ],
    },
    Section {
        name: "log",
        array: false,
        about: "What the server logs besides its own events (on stderr; `--log-format json` makes each line a JSON object). `serve --query-sample` overrides `query_sample`.",
        keys: &[Key {
            range: closed(0.0, 1.0),
            about: "The fraction of DNS queries logged, one line each: `client` (the ECS subnet, else the source's /24 or /56, never the whole address), `name`, `qtype`, `rcode`, `answer`, `targets` and `reason` (steered names), `path` (`fast`, `full`, `tcp`). 0: none. Sampled queries wait for the log in a bounded queue; when it is full they are dropped and counted in `steerdns_query_log_total`. Read at start: a reload does not change it.",
            ..key(
                "query_sample",
                Type::Float,
                DefaultValue::Value("0.0"),
                "0.01",
            )
        }],
    },
];

/// The section named `name`.
pub fn section(name: &str) -> Option<&'static Section> {
    SECTIONS.iter().find(|s| s.name == name)
}

/// A complete config with every key at its example value; keys whose example must be a real
/// certificate or key file are commented out.
pub fn full_example() -> String {
    let mut out = String::new();
    for (i, s) in SECTIONS.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let (open, close) = if s.array { ("[[", "]]") } else { ("[", "]") };
        let _ = writeln!(out, "{open}{}{close}", s.name);
        for k in s.keys {
            let comment = if k.example_is_a_file { "# " } else { "" };
            let _ = writeln!(out, "{comment}{} = {}", k.name, k.example);
        }
    }
    out
}

/// `docs/config.md`.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         <!-- Generated from src/config/reference.rs; do not edit. Regenerate with\n     \
         UPDATE_DOCS=1 cargo test --lib config::reference -->\n\n\
         steerdns reads one TOML file (`steerdns serve --config FILE`; `steerdns check FILE` \
         validates it). Every key is optional unless marked *required*, and only `[[zone]]` \
         must appear; unknown keys are errors. Paths are relative to the config file's \
         directory. Ranges are inclusive unless written with a parenthesis.\n\n",
    );
    for s in SECTIONS {
        let _ = writeln!(out, "- [`{}`](#{})", header(s), anchor(s));
    }
    for s in SECTIONS {
        let _ = write!(
            out,
            "\n## `{}`\n\n{}\n\n| Key | Type | Default | Allowed | Description |\n\
             |---|---|---|---|---|\n",
            header(s),
            s.about
        );
        for k in s.keys {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                k.name,
                k.ty.name(),
                cell(&default_text(k.default)),
                cell(&range_text(k.range)),
                cell(k.about)
            );
        }
    }
    let _ = write!(
        out,
        "\n## A complete example\n\nEvery key at an example value (the TLS files are commented \
         out: the parser loads them). `steerdns check` accepts it once the files it names \
         exist.\n\n```toml\n{}```\n",
        full_example()
    );
    out
}

fn header(s: &Section) -> String {
    if s.array {
        format!("[[{}]]", s.name)
    } else {
        format!("[{}]", s.name)
    }
}

/// GitHub's heading anchor for `` ## `[name]` ``: punctuation but `-` and `_` dropped.
fn anchor(s: &Section) -> String {
    header(s)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .collect()
}

fn default_text(d: DefaultValue) -> String {
    match d {
        DefaultValue::Required => "*required*".to_owned(),
        DefaultValue::Value(v) => format!("`{v}`"),
        DefaultValue::Derived { text, .. } | DefaultValue::Unset(text) => text.to_owned(),
    }
}

fn range_text(r: Range) -> String {
    match r {
        Range::Any => String::new(),
        Range::Int { min, max, max_text } => match (max_text, max) {
            (Some(text), _) => format!("{min}..={text}"),
            (None, Some(max)) => format!("{min}..={max}"),
            (None, None) => format!("≥ {min}"),
        },
        Range::Float {
            min,
            min_open,
            max,
            max_open,
        } => {
            let open = if min_open { '(' } else { '[' };
            match max {
                Some(max) => {
                    let close = if max_open { ')' } else { ']' };
                    format!("{open}{min:?}, {max:?}{close}")
                }
                None if min_open => format!("> {min:?}"),
                None => format!("≥ {min:?}"),
            }
        }
        Range::OneOf(values) => values
            .iter()
            .map(|v| format!("`\"{v}\"`"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// A table cell: `|` would end it.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod snippets;
#[cfg(test)]
mod tests;
