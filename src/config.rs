//! The server configuration: one TOML file, or the embedded demo when none is given.
//!
//! Raw file → [`Config`] with every path resolved relative to the file and every address
//! parsed. Unknown keys are errors. Depends on `geo` (for [`DbSource`]). No I/O except reading
//! the file (and loading the TLS files it names). Every key is documented in [`reference`],
//! whose tests hold the table to the `Raw*` structs and defaults below.

mod override_file;
pub mod reference;
#[cfg(test)]
mod shape;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::api::limit::HttpRateConfig;
use crate::api::serve::HttpLimits;
use crate::api::tls::TlsPair;
use crate::dns::rrl::RrlConfig;
use crate::dns::tcp::TcpLimits;
use crate::geo::{DbSource, Location, Override, iso};
use crate::health::tracker::Thresholds;
use crate::store::redis::{Endpoint, TlsFiles};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {field}{sep}{reason}", sep = if field.is_empty() { "" } else { ": " })]
pub struct ConfigError {
    pub file: String,
    pub field: String,
    pub reason: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    dns: RawDns,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    geoip: RawGeoip,
    #[serde(default, rename = "zone")]
    zones: Vec<RawZone>,
    #[serde(default)]
    policies: RawPolicies,
    #[serde(default)]
    health: RawHealth,
    #[serde(default)]
    probes: RawProbes,
    rum: Option<RawRum>,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    log: RawLog,
}

/// `[log]`: what the server logs besides its own events.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    query_sample: Option<f64>,
}

/// `[store]`: where a fleet shares its state. Absent: the single-node stores.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    redis: Option<String>,
    prefix: Option<String>,
    refresh_ms: Option<u64>,
    timeout_ms: Option<u64>,
    cache_dir: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

/// `[rum]`: real-user measurements (the beacon, its ingest, resolver mapping). Absent: off.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRum {
    secret_file: Option<PathBuf>,
    zone: String,
    #[serde(default)]
    init_addresses: Vec<String>,
    init_scheme: Option<String>,
    init_port: Option<u16>,
    sample_rate: Option<f64>,
    window_minutes: Option<u32>,
    token_ttl_s: Option<u64>,
    beacons_per_network_per_minute: Option<u32>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    timeout_ms: Option<u32>,
    max_failure_rate: Option<f64>,
    #[serde(default, rename = "target")]
    targets: Vec<RawRumTarget>,
    #[serde(default)]
    resolver_map: RawResolverMap,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRumTarget {
    id: String,
    small: String,
    large: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawResolverMap {
    min_sessions: Option<u64>,
    min_share: Option<f64>,
    window_h: Option<u32>,
}

/// `[health]`: how probe results become health. Every field is optional (see
/// `health::tracker::Thresholds` for the defaults and their reasons).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    down_after_failures: Option<u32>,
    up_after_successes: Option<u32>,
    hold_down_ms: Option<u64>,
    stale_after_ms: Option<u64>,
    window_ms: Option<u64>,
    min_samples: Option<usize>,
    min_availability: Option<f64>,
    p95_factor: Option<f64>,
    max_error_rate: Option<f64>,
    error_rate_minutes: Option<u32>,
    quorum: Option<usize>,
    unreachable_from: Option<usize>,
    /// Agent location → ISO country, so probe latencies also count for that country and its
    /// continent in the performance step.
    #[serde(default)]
    agent_countries: std::collections::BTreeMap<String, String>,
}

/// `[probes]`: run probe checks inside `serve` (a single-box setup).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProbes {
    targets: Option<PathBuf>,
    location: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDns {
    listen: Option<Vec<String>>,
    max_udp_payload: Option<u16>,
    tcp_idle_timeout_ms: Option<u64>,
    tcp_max_connections: Option<usize>,
    tcp_max_per_network: Option<usize>,
    tcp_max_queries: Option<usize>,
    explain_names: Option<bool>,
    udp_threads: Option<usize>,
    #[serde(default)]
    rate_limit: RawRateLimit,
}

/// `[dns.rate_limit]`: response rate limiting on UDP.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    responses_per_second: Option<u32>,
    slip: Option<u32>,
    ipv4_prefix: Option<u8>,
    ipv6_prefix: Option<u8>,
    exempt: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    token_file: Option<PathBuf>,
    probe_token_file: Option<PathBuf>,
    read_token_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    max_connections: Option<usize>,
    header_timeout_ms: Option<u64>,
    request_timeout_ms: Option<u64>,
    #[serde(default)]
    rate_limit: RawHttpRateLimit,
}

/// `[http.rate_limit]`: request rate limits per client network, on both HTTP listeners.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttpRateLimit {
    requests_per_second: Option<u32>,
    burst: Option<u32>,
    auth_failures_per_minute: Option<u32>,
    ipv4_prefix: Option<u8>,
    ipv6_prefix: Option<u8>,
    exempt: Option<Vec<String>>,
    max_networks: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGeoip {
    city: Option<PathBuf>,
    asn: Option<PathBuf>,
    #[serde(default, rename = "override")]
    overrides: Vec<RawOverride>,
    override_file: Option<PathBuf>,
}

/// `[[geoip.override]]`: a network placed by hand, ahead of the databases.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    cidr: String,
    continent: Option<String>,
    country: Option<String>,
    subdivision: Option<String>,
    asn: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZone {
    origin: String,
    file: Option<PathBuf>,
    #[serde(default)]
    records: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicies {
    dir: Option<PathBuf>,
}

/// Where a piece of zone or policy text comes from.
#[derive(Debug, Clone)]
pub enum TextSource {
    File(PathBuf),
    Embedded { name: String, text: &'static str },
}

#[derive(Debug, Clone)]
pub struct ZoneConfig {
    pub origin: String,
    pub file: Option<TextSource>,
    /// Inline master-file lines, relative to the origin.
    pub records: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum PolicySource {
    /// Every `*.toml` file in the directory is one steered name.
    Dir(PathBuf),
    Embedded(Vec<TextSource>),
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The config file, or `embedded demo`.
    pub source: String,
    /// Each address gets a UDP socket and a TCP listener.
    pub dns_listen: Vec<SocketAddr>,
    pub max_udp_payload: u16,
    /// TCP: the idle timeout per message and the connection caps.
    pub tcp: TcpLimits,
    /// `[dns.rate_limit]`: UDP response rate limiting.
    pub rate_limit: RrlConfig,
    /// UDP serving threads per listen address, each with its own socket; `None`: one per CPU
    /// this process may run on.
    pub udp_threads: Option<usize>,
    /// Answer TXT `_explain.<steered name>` with the decision for the asker.
    pub explain_names: bool,
    /// `None` disables the HTTP listener.
    pub http_listen: Option<SocketAddr>,
    /// `[http]` bounds, for the public and the admin listener alike.
    pub http_limits: HttpLimits,
    /// `[http.rate_limit]`: per-network request limits, for both listeners (each its own).
    pub http_rate_limit: HttpRateConfig,
    /// `[http] tls_cert`, `tls_key`: the public listener speaks HTTPS only.
    pub http_tls: Option<TlsPair>,
    /// `[admin] tls_cert`, `tls_key`: the admin listener speaks HTTPS only.
    pub admin_tls: Option<TlsPair>,
    /// The admin API (policy edits, health overrides, explain); `None` disables it.
    pub admin_listen: Option<SocketAddr>,
    /// File holding the admin bearer token (`STEERDNS_ADMIN_TOKEN` wins over it).
    pub admin_token_file: Option<PathBuf>,
    /// File holding the token probe agents carry: it may only post probe results
    /// (`STEERDNS_PROBE_TOKEN` wins over it). `None`: agents need the admin token.
    pub probe_token_file: Option<PathBuf>,
    /// File holding a read-only token (every `GET` of the admin API, nothing else;
    /// `STEERDNS_READ_TOKEN` wins over it).
    pub read_token_file: Option<PathBuf>,
    pub geoip_city: DbSource,
    pub geoip_asn: Option<DbSource>,
    pub geoip_overrides: Vec<Override>,
    pub zones: Vec<ZoneConfig>,
    pub policies: PolicySource,
    pub health: Thresholds,
    /// Agent location → country, for latency windows.
    pub agent_countries: AgentCountries,
    /// Probe target directory to run inside `serve`, and the location label it reports as.
    pub probes: Option<(PathBuf, String)>,
    /// Real-user measurements; `None` (no `[rum]`): off.
    pub rum: Option<RumConfig>,
    /// `[store]`: the fleet's shared store, if any.
    pub store: StoreConfig,
    /// `[log] query_sample`: the fraction of queries logged, one line each (0: none).
    pub query_sample: f64,
}

/// `[store]`, validated (`crate::store::redis` documents the key schema).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// `redis://host:port/db` (`rediss://` for TLS, `redis+unix://`), a Redis Cluster's seed
    /// nodes separated by commas, or `redis+sentinel://host:port/<primary name>`; `None`: the
    /// single-node stores.
    pub redis: Option<String>,
    /// Every key starts with `{prefix}:`, so several fleets can share one Redis (default
    /// `steerdns`; letters, digits, `-`, `_`, `.`).
    pub prefix: String,
    /// How often every node rebuilds from the shared state even without a change notice
    /// (default 2000 ms; notices can be lost).
    pub refresh: Duration,
    /// Our deadline for every Redis call (default 500 ms).
    pub timeout: Duration,
    /// The node's local copy of the fleet's policies, to start from while Redis is down
    /// (default `steerdns-cache` next to the config file).
    pub cache_dir: PathBuf,
    /// `tls_ca`, `tls_cert`, `tls_key` (PEM; relative to the config file).
    pub tls: TlsFiles,
}

impl StoreConfig {
    pub const DEFAULT_PREFIX: &str = "steerdns";
    pub const DEFAULT_REFRESH_MS: u64 = 2000;
    pub const DEFAULT_TIMEOUT_MS: u64 = 500;
}

/// `[rum]`, validated. Field docs give the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct RumConfig {
    /// File holding the HMAC key for beacon tokens (at least 32 bytes); the environment
    /// variable `STEERDNS_RUM_SECRET` wins over it. Read at start, not here.
    pub secret_file: Option<PathBuf>,
    /// The resolver-mapping zone, lower case without the trailing dot: browsers fetch
    /// `<nonce>.<zone>`, and steerdns answers those names.
    pub zone: String,
    /// What `<nonce>.<zone>` resolves to: where this server's HTTP listener is reachable.
    pub init_addresses: Vec<std::net::IpAddr>,
    /// Scheme of the init URL (`https`, or `http` for tests and plain-HTTP setups).
    pub init_scheme: String,
    /// Port of the init URL; `None`: the port the browser used to reach `/rum/v1/config`.
    pub init_port: Option<u16>,
    /// Share of page views that measure, 0..=1 (default 1).
    pub sample_rate: f64,
    /// Minutes of beacons a ranking reads, 1..=60 (default 5).
    pub window_minutes: u32,
    /// How long a token from `/rum/v1/config` is good for (default 300 s, 10..=3600).
    pub token_ttl: Duration,
    /// Beacons accepted per client /24 or /48 per minute (a token bucket; default 60).
    pub beacons_per_network_per_minute: u32,
    /// Peers whose `X-Forwarded-For` is believed (a load balancer in front).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Fetch timeout in the browser; a slower fetch counts as a failure (default 4000 ms).
    pub timeout_ms: u32,
    /// Failure rate over which a target is out in a region (seed guidance: 5%).
    pub max_failure_rate: f64,
    /// What browsers time, at most [`RUM_MAX_TARGETS`].
    pub targets: Vec<RumTarget>,
    pub resolver_map: ResolverMapConfig,
}

/// One `[[rum.target]]`: a target id used by policies and its test objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RumTarget {
    pub id: String,
    /// A small object (a 1x1 GIF, a few bytes): latency and availability.
    pub small: String,
    /// Optional larger object (about 100 KB): throughput.
    pub large: Option<String>,
}

/// `[rum.resolver_map]` (defaults, ranges and meaning: `rum::resolver_map`).
pub use crate::rum::resolver_map::ResolverMapConfig;

/// Targets one beacon times, at most: each costs the visitor two or three fetches.
pub const RUM_MAX_TARGETS: usize = 16;

pub const DEFAULT_DNS_LISTEN: &str = "127.0.0.1:5353";
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8081";
/// RFC 9715 / DNS Flag Day 2020: avoids IP fragmentation on almost every path.
pub const DEFAULT_MAX_UDP_PAYLOAD: u16 = 1232;
const DEFAULT_TCP_IDLE_TIMEOUT_MS: u64 = 10_000;

impl Config {
    /// Read a config file. Relative paths in it are relative to the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            field: String::new(),
            reason: format!("cannot read: {e}"),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&file, &text, base)
    }

    /// Parse config text; `base` resolves relative paths.
    pub fn parse(file: &str, text: &str, base: &Path) -> Result<Self, ConfigError> {
        let err = |field: &str, reason: String| ConfigError {
            file: file.to_owned(),
            field: field.to_owned(),
            reason,
        };
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| err("", e.to_string().trim_end().replace('\n', "\n    ")))?;
        let RawConfig {
            dns,
            http,
            admin,
            geoip,
            zones,
            policies,
            health,
            probes,
            rum,
            store,
            log,
        } = raw;
        let RawDns {
            listen,
            max_udp_payload,
            tcp_idle_timeout_ms,
            tcp_max_connections,
            tcp_max_per_network,
            tcp_max_queries,
            explain_names,
            udp_threads,
            rate_limit,
        } = dns;
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };

        let dns_listen = listen
            .unwrap_or_else(|| vec![DEFAULT_DNS_LISTEN.to_owned()])
            .iter()
            .enumerate()
            .map(|(i, a)| parse_addr(a).map_err(|r| err(&format!("dns.listen[{i}]"), r)))
            .collect::<Result<Vec<_>, _>>()?;
        if dns_listen.is_empty() {
            return Err(err("dns.listen", "at least one address is required".into()));
        }
        let max_udp_payload = max_udp_payload.unwrap_or(DEFAULT_MAX_UDP_PAYLOAD);
        if !(512..=4096).contains(&max_udp_payload) {
            return Err(err(
                "dns.max_udp_payload",
                format!("{max_udp_payload} is out of range 512..=4096"),
            ));
        }
        let tcp_idle_timeout_ms = tcp_idle_timeout_ms.unwrap_or(DEFAULT_TCP_IDLE_TIMEOUT_MS);
        if !(100..=600_000).contains(&tcp_idle_timeout_ms) {
            return Err(err(
                "dns.tcp_idle_timeout_ms",
                format!("{tcp_idle_timeout_ms} is out of range 100..=600000"),
            ));
        }
        let tcp = parse_tcp(
            Duration::from_millis(tcp_idle_timeout_ms),
            tcp_max_connections,
            tcp_max_per_network,
            tcp_max_queries,
        )
        .map_err(|(f, r)| err(&format!("dns.{f}"), r))?;
        let rate_limit = parse_rate_limit(rate_limit)
            .map_err(|(f, r)| err(&format!("dns.rate_limit.{f}"), r))?;
        if let Some(n) = udp_threads.filter(|n| !(1..=256).contains(n)) {
            return Err(err(
                "dns.udp_threads",
                format!("{n} is out of range 1..=256"),
            ));
        }
        let optional_listen = |field: &str, value: Option<&str>, default: &str| match value {
            Some("off" | "") => Ok(None),
            value => parse_addr(value.unwrap_or(default))
                .map(Some)
                .map_err(|r| err(field, r)),
        };
        let http_listen =
            optional_listen("http.listen", http.listen.as_deref(), DEFAULT_HTTP_LISTEN)?;
        let http_limits = parse_http(&http).map_err(|(f, r)| err(&format!("http.{f}"), r))?;
        let http_rate_limit = parse_http_rate_limit(http.rate_limit)
            .map_err(|(f, r)| err(&format!("http.rate_limit.{f}"), r))?;
        let http_tls = tls_pair(http.tls_cert, http.tls_key, &resolve)
            .map_err(|(f, r)| err(&format!("http.{f}"), r))?;
        let RawAdmin {
            listen,
            tls_cert,
            tls_key,
            token_file,
            probe_token_file,
            read_token_file,
        } = admin;
        let admin_listen =
            optional_listen("admin.listen", listen.as_deref(), DEFAULT_ADMIN_LISTEN)?;
        let admin_tls = tls_pair(tls_cert, tls_key, &resolve)
            .map_err(|(f, r)| err(&format!("admin.{f}"), r))?;

        let geoip_overrides = geoip
            .overrides
            .into_iter()
            .enumerate()
            .map(|(i, raw)| {
                parse_override(raw).map_err(|(f, r)| err(&format!("geoip.override[{i}].{f}"), r))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // After the inline ones: of two equal networks, the inline table wins.
        let mut geoip_overrides = geoip_overrides;
        if let Some(path) = geoip.override_file {
            let from_file =
                override_file::read(&resolve(path)).map_err(|r| err("geoip.override_file", r))?;
            geoip_overrides.extend(from_file);
        }
        let (geoip_city, geoip_asn) = match (geoip.city, geoip.asn) {
            (None, None) => (crate::demo::city_db(), Some(crate::demo::asn_db())),
            (Some(city), asn) => (
                DbSource::File(resolve(city)),
                asn.map(|p| DbSource::File(resolve(p))),
            ),
            (None, Some(_)) => {
                return Err(err(
                    "geoip.city",
                    "required when geoip.asn is set (omit both to use the bundled test databases)"
                        .into(),
                ));
            }
        };

        if zones.is_empty() {
            return Err(err(
                "zone",
                "no zones configured: add at least one [[zone]]".into(),
            ));
        }
        let zones = zones
            .into_iter()
            .map(|z| ZoneConfig {
                origin: z.origin,
                file: z.file.map(|p| TextSource::File(resolve(p))),
                records: z.records,
            })
            .collect();

        let policies = PolicySource::Dir(resolve(
            policies.dir.unwrap_or_else(|| PathBuf::from("policies")),
        ));
        let (health, agent_countries) =
            parse_health(health).map_err(|(f, r)| err(&format!("health.{f}"), r))?;
        let probes = match (probes.targets, probes.location) {
            (None, None) => None,
            (Some(dir), location) => {
                let location = location.unwrap_or_else(|| "local".to_owned());
                if location.is_empty() || location.len() > 64 {
                    return Err(err("probes.location", "must be 1 to 64 characters".into()));
                }
                Some((resolve(dir), location))
            }
            (None, Some(_)) => {
                return Err(err(
                    "probes.targets",
                    "required when probes.location is set".into(),
                ));
            }
        };

        let rum = rum
            .map(|raw| parse_rum(raw, &resolve))
            .transpose()
            .map_err(|(f, r)| err(&format!("rum.{f}"), r))?;

        let store = parse_store(store, &resolve).map_err(|(f, r)| err(&format!("store.{f}"), r))?;
        let query_sample = log.query_sample.unwrap_or(0.0);
        check_query_sample(query_sample).map_err(|r| err("log.query_sample", r))?;

        Ok(Config {
            source: file.to_owned(),
            dns_listen,
            max_udp_payload,
            tcp,
            rate_limit,
            udp_threads,
            explain_names: explain_names.unwrap_or(false),
            http_listen,
            http_limits,
            http_rate_limit,
            http_tls,
            admin_listen,
            admin_tls,
            admin_token_file: token_file.map(resolve),
            probe_token_file: probe_token_file.map(resolve),
            read_token_file: read_token_file.map(resolve),
            geoip_city,
            geoip_asn,
            geoip_overrides,
            zones,
            policies,
            health,
            agent_countries,
            probes,
            rum,
            store,
            query_sample,
        })
    }
}

/// A query log sampling fraction (`[log] query_sample`, `serve --query-sample`): 0 to 1.
pub fn check_query_sample(fraction: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&fraction) {
        Ok(())
    } else {
        Err(format!(
            "{fraction} is not a fraction in [0, 1] (0: no query log, 1: every query)"
        ))
    }
}

fn parse_store(
    raw: RawStore,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
) -> Result<StoreConfig, FieldError> {
    let RawStore {
        redis,
        prefix,
        refresh_ms,
        timeout_ms,
        cache_dir,
        tls_ca,
        tls_cert,
        tls_key,
    } = raw;
    if let Some(url) = &redis {
        check_redis_url(url).map_err(|r| ("redis", r))?;
    }
    let prefix = prefix.unwrap_or_else(|| StoreConfig::DEFAULT_PREFIX.to_owned());
    check_prefix(&prefix).map_err(|r| ("prefix", r))?;
    let refresh_ms = refresh_ms.unwrap_or(StoreConfig::DEFAULT_REFRESH_MS);
    if !(50..=60_000).contains(&refresh_ms) {
        return Err(("refresh_ms", format!("{refresh_ms} is not in 50..=60000")));
    }
    let timeout_ms = timeout_ms.unwrap_or(StoreConfig::DEFAULT_TIMEOUT_MS);
    if !(10..=10_000).contains(&timeout_ms) {
        return Err(("timeout_ms", format!("{timeout_ms} is not in 10..=10000")));
    }
    if tls_cert.is_some() != tls_key.is_some() {
        let missing = if tls_cert.is_some() {
            "tls_key"
        } else {
            "tls_cert"
        };
        return Err((missing, "tls_cert and tls_key go together".to_owned()));
    }
    let tls = TlsFiles {
        ca: tls_ca.map(resolve),
        cert: tls_cert.map(resolve),
        key: tls_key.map(resolve),
    };
    for (field, path) in [
        ("tls_ca", &tls.ca),
        ("tls_cert", &tls.cert),
        ("tls_key", &tls.key),
    ] {
        if let Some(path) = path {
            check_pem(path).map_err(|r| (field, r))?;
        }
    }
    if !tls.is_empty()
        && let Some(url) = &redis
        && !Endpoint::parse(url).is_ok_and(|e| e.uses_tls())
    {
        return Err((
            "redis",
            format!("{url:?}: tls_ca, tls_cert and tls_key need a TLS URL (rediss://)"),
        ));
    }
    Ok(StoreConfig {
        redis,
        prefix,
        refresh: Duration::from_millis(refresh_ms),
        timeout: Duration::from_millis(timeout_ms),
        cache_dir: resolve(cache_dir.unwrap_or_else(|| PathBuf::from("steerdns-cache"))),
        tls,
    })
}

/// A Redis URL this build can connect to: one server, a Redis Cluster's seed nodes separated
/// by commas, or Sentinel (`crate::store::redis::Endpoint` has the forms).
pub fn check_redis_url(urls: &str) -> Result<(), String> {
    Endpoint::parse(urls).map(drop)
}

/// A readable PEM file (certificate or key).
fn check_pem(path: &Path) -> Result<(), String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: cannot read ({e})", path.display()))?;
    if text.windows(11).any(|w| w == b"-----BEGIN ") {
        Ok(())
    } else {
        Err(format!(
            "{}: not a PEM file (no -----BEGIN line)",
            path.display()
        ))
    }
}

/// A key prefix: letters, digits, `-`, `_`, `.`; 1 to 64 characters (no braces, which would
/// break the hash tag).
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{prefix:?}: 1 to 64 letters, digits, '-', '_' or '.'"
        ))
    }
}

type FieldError = (&'static str, String);

/// `value` if it is in `range`, else an error naming `field` and the range.
fn in_range<T: PartialOrd + std::fmt::Display>(
    field: &'static str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, FieldError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        let (lo, hi) = (range.start(), range.end());
        Err((field, format!("{value} is out of range {lo}..={hi}")))
    }
}

/// For a rate whose 0 means off: say so in the error.
fn zero_is_off((field, reason): FieldError) -> FieldError {
    (field, format!("{reason} (0 turns it off)"))
}

/// A certificate and its key, both or neither; they must load now.
fn tls_pair(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
) -> Result<Option<TlsPair>, FieldError> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(("tls_key", "tls_cert needs tls_key".to_owned())),
        (None, Some(_)) => Err(("tls_cert", "tls_key needs tls_cert".to_owned())),
        (Some(cert), Some(key)) => {
            let pair = TlsPair {
                cert: resolve(cert),
                key: resolve(key),
            };
            let field = |r: &str| {
                if r.starts_with(&pair.key.display().to_string()) {
                    "tls_key"
                } else {
                    "tls_cert"
                }
            };
            pair.load().map_err(|r| (field(&r), r))?;
            Ok(Some(pair))
        }
    }
}

fn parse_http(raw: &RawHttp) -> Result<HttpLimits, FieldError> {
    let d = HttpLimits::default();
    let max_connections = in_range(
        "max_connections",
        raw.max_connections.unwrap_or(d.max_connections),
        1..=1_000_000,
    )?;
    let ms = |field: &'static str, v: Option<u64>, default: Duration| match v {
        None => Ok(default),
        Some(ms) => in_range(field, ms, 100..=600_000).map(Duration::from_millis),
    };
    Ok(HttpLimits {
        max_connections,
        header_timeout: ms("header_timeout_ms", raw.header_timeout_ms, d.header_timeout)?,
        request_timeout: ms(
            "request_timeout_ms",
            raw.request_timeout_ms,
            d.request_timeout,
        )?,
    })
}

fn parse_tcp(
    idle_timeout: Duration,
    max_connections: Option<usize>,
    max_per_network: Option<usize>,
    max_queries: Option<usize>,
) -> Result<TcpLimits, FieldError> {
    let d = TcpLimits::default();
    let max_connections = in_range(
        "tcp_max_connections",
        max_connections.unwrap_or(d.max_connections),
        1..=1_000_000,
    )?;
    // The default never exceeds a smaller total cap.
    let max_per_network = max_per_network.unwrap_or(d.max_per_network.min(max_connections));
    if !(1..=max_connections).contains(&max_per_network) {
        return Err((
            "tcp_max_per_network",
            format!(
                "{max_per_network} is out of range 1..=tcp_max_connections ({max_connections})"
            ),
        ));
    }
    Ok(TcpLimits {
        idle_timeout,
        max_connections,
        max_per_network,
        max_queries: max_queries.unwrap_or(d.max_queries),
    })
}

/// An `exempt` list: addresses or networks.
fn parse_exempt(list: Vec<String>) -> Result<Vec<ipnet::IpNet>, FieldError> {
    list.iter()
        .map(|n| {
            n.parse::<ipnet::IpNet>()
                .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| ("exempt", format!("{n:?} is not an address or a network")))
        })
        .collect()
}

/// The client-network keys every per-network limit has: `ipv4_prefix`, `ipv6_prefix` and
/// `exempt`, each defaulting to `d`'s.
fn parse_networks(
    ipv4_prefix: Option<u8>,
    ipv6_prefix: Option<u8>,
    exempt: Option<Vec<String>>,
    d: (u8, u8, Vec<ipnet::IpNet>),
) -> Result<(u8, u8, Vec<ipnet::IpNet>), FieldError> {
    Ok((
        in_range("ipv4_prefix", ipv4_prefix.unwrap_or(d.0), 8..=32)?,
        in_range("ipv6_prefix", ipv6_prefix.unwrap_or(d.1), 16..=128)?,
        exempt.map_or(Ok(d.2), parse_exempt)?,
    ))
}

fn parse_http_rate_limit(raw: RawHttpRateLimit) -> Result<HttpRateConfig, FieldError> {
    let RawHttpRateLimit {
        requests_per_second,
        burst,
        auth_failures_per_minute,
        ipv4_prefix,
        ipv6_prefix,
        exempt,
        max_networks,
    } = raw;
    let d = HttpRateConfig::default();
    let requests_per_second = in_range(
        "requests_per_second",
        requests_per_second.unwrap_or(d.requests_per_second),
        0..=1_000_000,
    )
    .map_err(zero_is_off)?;
    // Ten seconds' worth unless given, so that a client's start-up burst goes through.
    let burst = in_range(
        "burst",
        burst.unwrap_or_else(|| requests_per_second.saturating_mul(10).max(1)),
        1..=10_000_000,
    )?;
    let auth_failures_per_minute = in_range(
        "auth_failures_per_minute",
        auth_failures_per_minute.unwrap_or(d.auth_failures_per_minute),
        0..=1_000_000,
    )
    .map_err(zero_is_off)?;
    let (ipv4_prefix, ipv6_prefix, exempt) = parse_networks(
        ipv4_prefix,
        ipv6_prefix,
        exempt,
        (d.ipv4_prefix, d.ipv6_prefix, d.exempt),
    )?;
    let max_networks = in_range(
        "max_networks",
        max_networks.unwrap_or(d.max_networks),
        1..=10_000_000,
    )?;
    Ok(HttpRateConfig {
        requests_per_second,
        burst,
        auth_failures_per_minute,
        ipv4_prefix,
        ipv6_prefix,
        exempt,
        max_networks,
    })
}

fn parse_rate_limit(raw: RawRateLimit) -> Result<RrlConfig, FieldError> {
    let RawRateLimit {
        responses_per_second,
        slip,
        ipv4_prefix,
        ipv6_prefix,
        exempt,
    } = raw;
    let d = RrlConfig::default();
    let responses_per_second = in_range(
        "responses_per_second",
        responses_per_second.unwrap_or(d.responses_per_second),
        0..=1_000_000,
    )
    .map_err(zero_is_off)?;
    let slip = in_range("slip", slip.unwrap_or(d.slip), 0..=10)?;
    let (ipv4_prefix, ipv6_prefix, exempt) = parse_networks(
        ipv4_prefix,
        ipv6_prefix,
        exempt,
        (d.ipv4_prefix, d.ipv6_prefix, d.exempt),
    )?;
    Ok(RrlConfig {
        responses_per_second,
        slip,
        ipv4_prefix,
        ipv6_prefix,
        exempt,
    })
}
/// Agent location → country.
type AgentCountries = Vec<(String, [u8; 2])>;

fn parse_health(raw: RawHealth) -> Result<(Thresholds, AgentCountries), FieldError> {
    let RawHealth {
        down_after_failures,
        up_after_successes,
        hold_down_ms,
        stale_after_ms,
        window_ms,
        min_samples,
        min_availability,
        p95_factor,
        max_error_rate,
        error_rate_minutes,
        quorum,
        unreachable_from,
        agent_countries,
    } = raw;
    let d = Thresholds::default();
    let ms =
        |v: Option<u64>, default: std::time::Duration| v.map_or(default, Duration::from_millis);
    let t = Thresholds {
        down_after_failures: down_after_failures.unwrap_or(d.down_after_failures),
        up_after_successes: up_after_successes.unwrap_or(d.up_after_successes),
        hold_down: ms(hold_down_ms, d.hold_down),
        stale_after: ms(stale_after_ms, d.stale_after),
        window: ms(window_ms, d.window),
        min_samples: min_samples.unwrap_or(d.min_samples),
        min_availability: min_availability.unwrap_or(d.min_availability),
        p95_factor: p95_factor.unwrap_or(d.p95_factor),
        max_error_rate: max_error_rate.unwrap_or(d.max_error_rate),
        error_rate_minutes: error_rate_minutes.unwrap_or(d.error_rate_minutes),
        quorum: quorum.unwrap_or(d.quorum),
        unreachable_from: unreachable_from.unwrap_or(d.unreachable_from),
    };
    if t.down_after_failures == 0 {
        return Err(("down_after_failures", "must be at least 1".into()));
    }
    if t.up_after_successes == 0 {
        return Err(("up_after_successes", "must be at least 1".into()));
    }
    if t.stale_after < Duration::from_secs(1) {
        return Err((
            "stale_after_ms",
            "must be at least 1000 (probes run at most once a second)".into(),
        ));
    }
    if t.window < Duration::from_secs(60) || t.window > Duration::from_secs(3600) {
        return Err(("window_ms", "must be between 60000 and 3600000".into()));
    }
    if !(0.0..=1.0).contains(&t.min_availability) {
        return Err((
            "min_availability",
            format!("{} is not in [0, 1]", t.min_availability),
        ));
    }
    if !(0.0..=1.0).contains(&t.max_error_rate) {
        return Err((
            "max_error_rate",
            format!("{} is not in [0, 1]", t.max_error_rate),
        ));
    }
    if t.p95_factor <= 1.0 {
        return Err(("p95_factor", format!("{} must be above 1", t.p95_factor)));
    }
    if t.unreachable_from == 0 {
        return Err(("unreachable_from", "must be at least 1".into()));
    }
    let mut countries = Vec::new();
    for (agent, code) in agent_countries {
        let c =
            iso::parse_country(&code).map_err(|r| ("agent_countries", format!("{agent}: {r}")))?;
        countries.push((agent, c));
    }
    Ok((t, countries))
}

/// [`in_range`] for `[rum]`, whose errors carry an owned field name.
fn within<T: PartialOrd + std::fmt::Display>(
    field: &'static str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, (String, String)> {
    in_range(field, value, range).map_err(|(f, r)| (f.to_owned(), r))
}

/// Validate `[rum]`; the error is (field below `rum.`, reason).
fn parse_rum(
    raw: RawRum,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
) -> Result<RumConfig, (String, String)> {
    let RawRum {
        secret_file,
        zone,
        init_addresses,
        init_scheme,
        init_port,
        sample_rate,
        window_minutes,
        token_ttl_s,
        beacons_per_network_per_minute,
        trusted_proxies,
        timeout_ms,
        max_failure_rate,
        targets,
        resolver_map,
    } = raw;
    let field = |f: &str| f.to_owned();
    let zone = zone.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if zone.is_empty() || zone.len() > 200 || !zone.split('.').all(label_ok) {
        return Err((
            field("zone"),
            format!("{zone:?} is not a DNS name like rum.example.com"),
        ));
    }
    let init_addresses = init_addresses
        .iter()
        .enumerate()
        .map(|(i, a)| {
            a.parse::<std::net::IpAddr>().map_err(|_| {
                (
                    format!("init_addresses[{i}]"),
                    format!("{a:?} is not an IP address"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let init_scheme = init_scheme.unwrap_or_else(|| "https".to_owned());
    if init_scheme != "https" && init_scheme != "http" {
        return Err((
            field("init_scheme"),
            format!("{init_scheme:?} must be \"https\" or \"http\""),
        ));
    }
    if init_port == Some(0) {
        return Err((field("init_port"), "must be 1..=65535".into()));
    }
    let max_failure_rate = max_failure_rate.unwrap_or(0.05);
    if !(0.0..1.0).contains(&max_failure_rate) {
        return Err((
            field("max_failure_rate"),
            format!("{max_failure_rate} is not in [0, 1)"),
        ));
    }
    let sample_rate = sample_rate.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_rate) {
        return Err((
            field("sample_rate"),
            format!("{sample_rate} is not in [0, 1]"),
        ));
    }
    let window_minutes = within("window_minutes", window_minutes.unwrap_or(5), 1..=60)?;
    let token_ttl_s = within("token_ttl_s", token_ttl_s.unwrap_or(300), 10..=3600)?;
    let per_minute = within(
        "beacons_per_network_per_minute",
        beacons_per_network_per_minute.unwrap_or(60),
        1..=100_000,
    )?;
    let trusted_proxies = trusted_proxies
        .iter()
        .enumerate()
        .map(|(i, c)| iso::parse_network(c).map_err(|r| (format!("trusted_proxies[{i}]"), r)))
        .collect::<Result<Vec<_>, _>>()?;
    let timeout_ms = within("timeout_ms", timeout_ms.unwrap_or(4000), 100..=60_000)?;
    if targets.is_empty() {
        return Err((
            field("target"),
            "at least one [[rum.target]] is needed (what would browsers time?)".into(),
        ));
    }
    if targets.len() > RUM_MAX_TARGETS {
        return Err((
            field("target"),
            format!("{} targets; at most {RUM_MAX_TARGETS}", targets.len()),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut checked = Vec::with_capacity(targets.len());
    for (i, t) in targets.into_iter().enumerate() {
        let RawRumTarget { id, small, large } = t;
        let id_ok = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !id_ok {
            return Err((
                format!("target[{i}].id"),
                format!("{id:?} must be 1 to 64 of A-Z a-z 0-9 - _ ."),
            ));
        }
        if !seen.insert(id.clone()) {
            return Err((format!("target[{i}].id"), format!("{id:?} appears twice")));
        }
        check_url(&small).map_err(|r| (format!("target[{i}].small"), r))?;
        if let Some(large) = &large {
            check_url(large).map_err(|r| (format!("target[{i}].large"), r))?;
        }
        checked.push(RumTarget { id, small, large });
    }
    let RawResolverMap {
        min_sessions,
        min_share,
        window_h,
    } = resolver_map;
    let d = ResolverMapConfig::default();
    let resolver_map = ResolverMapConfig {
        min_sessions: min_sessions.unwrap_or(d.min_sessions),
        min_share: min_share.unwrap_or(d.min_share),
        window_h: window_h.unwrap_or(d.window_h),
    }
    .validate()
    .map_err(|e| (format!("resolver_map.{}", e.field), e.reason))?;
    Ok(RumConfig {
        secret_file: secret_file.map(resolve),
        zone,
        init_addresses,
        init_scheme,
        init_port,
        sample_rate,
        window_minutes,
        token_ttl: Duration::from_secs(token_ttl_s),
        beacons_per_network_per_minute: per_minute,
        trusted_proxies,
        timeout_ms,
        max_failure_rate,
        targets: checked,
        resolver_map,
    })
}

/// A test-object URL: absolute http(s), no spaces or quotes (it goes into JSON and a fetch).
fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} must be an absolute http:// or https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains('@') {
        return Err(format!("{url:?} has no host (or has credentials)"));
    }
    if url.len() > 2000 || url.bytes().any(|b| b <= b' ' || b == b'"' || b >= 0x7f) {
        return Err(format!(
            "{url:?} must be at most 2000 printable ASCII characters without spaces or quotes"
        ));
    }
    if url.contains('#') {
        return Err(format!(
            "{url:?}: no fragment, please (the beacon appends a query)"
        ));
    }
    Ok(())
}

/// Check one override; the error is (field, reason).
fn parse_override(raw: RawOverride) -> Result<Override, (&'static str, String)> {
    let RawOverride {
        cidr,
        continent,
        country,
        subdivision,
        asn,
    } = raw;
    let net = iso::parse_network(&cidr).map_err(|r| ("cidr", r))?;
    let continent = continent
        .map(|c| iso::parse_continent(&c))
        .transpose()
        .map_err(|r| ("continent", r))?;
    let mut country = country
        .map(|c| iso::parse_country(&c))
        .transpose()
        .map_err(|r| ("country", r))?;
    let subdivision = match subdivision {
        None => None,
        Some(code) => {
            let (sub_country, sub) =
                iso::parse_subdivision(&code).map_err(|r| ("subdivision", r))?;
            if country.is_some_and(|c| c != sub_country) {
                return Err((
                    "subdivision",
                    format!("{code:?} is not in the country given"),
                ));
            }
            country = Some(sub_country);
            Some(sub.into_boxed_str())
        }
    };
    if continent.is_none() && country.is_none() && asn.is_none() {
        return Err((
            "cidr",
            "an override needs at least one of continent, country, subdivision, asn".into(),
        ));
    }
    Ok(Override {
        net,
        location: Location {
            continent,
            country,
            subdivision,
        },
        asn,
    })
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!("{text:?} is not an address with a port, like 127.0.0.1:5353 or [::1]:5353")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let e = Config::parse("x.toml", "[dns]\nlisen = []\n", Path::new(".")).unwrap_err();
        assert!(e.to_string().contains("lisen"), "{e}");
        assert!(e.to_string().starts_with("x.toml: "), "{e}");
    }

    #[test]
    fn bad_address_names_the_field() {
        let text = "[dns]\nlisten = [\"127.0.0.1\"]\n[[zone]]\norigin = \"example.com\"\n";
        let e = Config::parse("x.toml", text, Path::new(".")).unwrap_err();
        assert_eq!(e.field, "dns.listen[0]");
    }

    #[test]
    fn paths_are_relative_to_the_config_file() {
        let text = "[geoip]\ncity = \"db/City.mmdb\"\n[[zone]]\norigin = \"example.com\"\nfile = \"z/example.com.zone\"\n";
        let c = Config::parse("etc/x.toml", text, Path::new("etc")).unwrap();
        assert!(matches!(&c.geoip_city, DbSource::File(p) if p == Path::new("etc/db/City.mmdb")));
        assert!(
            matches!(&c.zones[0].file, Some(TextSource::File(p)) if p == Path::new("etc/z/example.com.zone"))
        );
        assert!(matches!(&c.policies, PolicySource::Dir(p) if p == Path::new("etc/policies")));
        assert_eq!(c.dns_listen, vec![DEFAULT_DNS_LISTEN.parse().unwrap()]);
    }

    #[test]
    fn overrides_are_validated() {
        let zone = "[[zone]]\norigin = \"example.com\"\n";
        let good = format!(
            "[[geoip.override]]\ncidr = \"10.0.0.0/8\"\nsubdivision = \"DE-BE\"\ncontinent = \"eu\"\nasn = 64512\n{zone}"
        );
        let c = Config::parse("x.toml", &good, Path::new(".")).unwrap();
        assert_eq!(c.geoip_overrides[0].location.country, Some(*b"DE"));
        assert_eq!(
            c.geoip_overrides[0].location.subdivision.as_deref(),
            Some("BE")
        );
        let cases = [
            (
                "cidr = \"10.0.0.1/8\"\ncountry = \"DE\"",
                "geoip.override[0].cidr",
            ),
            (
                "cidr = \"10.0.0.0/8\"\ncountry = \"UK\"",
                "geoip.override[0].country",
            ),
            (
                "cidr = \"10.0.0.0/8\"\ncountry = \"FR\"\nsubdivision = \"DE-BE\"",
                "geoip.override[0].subdivision",
            ),
            ("cidr = \"10.0.0.0/8\"", "geoip.override[0].cidr"),
        ];
        for (body, field) in cases {
            let text = format!("[[geoip.override]]\n{body}\n{zone}");
            let e = Config::parse("x.toml", &text, Path::new(".")).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }

    #[test]
    fn payload_out_of_range() {
        let text = "[dns]\nmax_udp_payload = 100\n[[zone]]\norigin = \"example.com\"\n";
        let e = Config::parse("x.toml", text, Path::new(".")).unwrap_err();
        assert_eq!(e.field, "dns.max_udp_payload");
    }

    #[test]
    fn tcp_caps_and_rate_limit_default_and_are_validated() {
        let zone = "[[zone]]\norigin = \"example.com\"\n";
        let c = Config::parse("x.toml", zone, Path::new(".")).unwrap();
        assert_eq!(c.tcp, TcpLimits::default());
        assert_eq!(c.rate_limit, RrlConfig::default());
        let set = "[dns]\ntcp_max_connections = 10\n[dns.rate_limit]\n\
                   responses_per_second = 0\nexempt = [\"192.0.2.7\", \"2001:db8::/32\"]\n";
        let c = Config::parse("x.toml", &format!("{set}{zone}"), Path::new(".")).unwrap();
        assert_eq!(c.tcp.max_connections, 10);
        assert_eq!(c.rate_limit.responses_per_second, 0);
        assert_eq!(c.rate_limit.exempt.len(), 2);
        for (dns, field) in [
            ("tcp_max_connections = 0", "dns.tcp_max_connections"),
            (
                "tcp_max_connections = 4\ntcp_max_per_network = 5",
                "dns.tcp_max_per_network",
            ),
            ("rate_limit = { slip = 11 }", "dns.rate_limit.slip"),
            (
                "rate_limit = { ipv4_prefix = 33 }",
                "dns.rate_limit.ipv4_prefix",
            ),
            (
                "rate_limit = { ipv6_prefix = 8 }",
                "dns.rate_limit.ipv6_prefix",
            ),
            (
                "rate_limit = { exempt = [\"nope\"] }",
                "dns.rate_limit.exempt",
            ),
            (
                "rate_limit = { responses_per_second = 2000000 }",
                "dns.rate_limit.responses_per_second",
            ),
        ] {
            let text = format!("[dns]\n{dns}\n{zone}");
            let e = Config::parse("x.toml", &text, Path::new(".")).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }

    #[test]
    fn http_rate_limit_defaults_and_is_validated() {
        let zone = "[[zone]]\norigin = \"example.com\"\n";
        let c = Config::parse("x.toml", zone, Path::new(".")).unwrap();
        assert_eq!(c.http_rate_limit, HttpRateConfig::default());
        let set = "[http.rate_limit]\nrequests_per_second = 7\nauth_failures_per_minute = 0\n\
                   ipv4_prefix = 32\nexempt = [\"192.0.2.7\", \"2001:db8::/32\"]\n";
        let c = Config::parse("x.toml", &format!("{set}{zone}"), Path::new(".")).unwrap();
        let r = c.http_rate_limit;
        assert_eq!(
            (r.requests_per_second, r.burst),
            (7, 70),
            "burst: ten seconds' worth"
        );
        assert_eq!((r.auth_failures_per_minute, r.ipv4_prefix), (0, 32));
        assert_eq!(r.exempt.len(), 2);
        for (http, field) in [
            ("burst = 0", "http.rate_limit.burst"),
            (
                "requests_per_second = 2000000",
                "http.rate_limit.requests_per_second",
            ),
            ("ipv4_prefix = 33", "http.rate_limit.ipv4_prefix"),
            ("ipv6_prefix = 8", "http.rate_limit.ipv6_prefix"),
            ("exempt = [\"nope\"]", "http.rate_limit.exempt"),
            ("max_networks = 0", "http.rate_limit.max_networks"),
            ("per_hour = 3", ""),
        ] {
            let text = format!("[http.rate_limit]\n{http}\n{zone}");
            let e = Config::parse("x.toml", &text, Path::new(".")).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            if field.is_empty() {
                assert!(e.reason.contains("per_hour"), "{e}");
            }
        }
    }

    const RUM: &str = "[rum]\nzone = \"RUM.example.com.\"\nsecret_file = \"rum.secret\"\n\
        [[rum.target]]\nid = \"cdn-a\"\nsmall = \"https://cdn-a.example.net/rum/test.gif\"\n";

    #[test]
    fn rum_is_off_without_its_table_and_defaults_with_it() {
        let zone = "[[zone]]\norigin = \"example.com\"\n";
        assert!(
            Config::parse("x.toml", zone, Path::new("."))
                .unwrap()
                .rum
                .is_none()
        );
        let c = Config::parse("etc/x.toml", &format!("{zone}{RUM}"), Path::new("etc")).unwrap();
        let rum = c.rum.unwrap();
        assert_eq!(rum.zone, "rum.example.com");
        assert_eq!(
            rum.secret_file.as_deref(),
            Some(Path::new("etc/rum.secret"))
        );
        assert_eq!(rum.window_minutes, 5);
        assert_eq!(rum.sample_rate, 1.0);
        assert_eq!(rum.token_ttl, Duration::from_secs(300));
        assert_eq!(rum.init_scheme, "https");
        assert_eq!(rum.resolver_map.min_sessions, 50);
    }

    #[test]
    fn rum_fields_are_validated() {
        let zone = "[[zone]]\norigin = \"example.com\"\n";
        let cases = [
            ("sample_rate = 1.5", "rum.sample_rate"),
            ("window_minutes = 0", "rum.window_minutes"),
            ("window_minutes = 61", "rum.window_minutes"),
            ("token_ttl_s = 5", "rum.token_ttl_s"),
            ("timeout_ms = 10", "rum.timeout_ms"),
            ("init_scheme = \"ftp\"", "rum.init_scheme"),
            ("init_addresses = [\"nope\"]", "rum.init_addresses[0]"),
            (
                "trusted_proxies = [\"10.0.0.1/8\"]",
                "rum.trusted_proxies[0]",
            ),
            (
                "beacons_per_network_per_minute = 0",
                "rum.beacons_per_network_per_minute",
            ),
            (
                "resolver_map = { min_share = 0.2 }",
                "rum.resolver_map.min_share",
            ),
        ];
        for (line, field) in cases {
            let text = format!(
                "{zone}{}",
                RUM.replace("[[rum.target]]", &format!("{line}\n[[rum.target]]"))
            );
            let e = Config::parse("x.toml", &text, Path::new(".")).unwrap_err();
            assert_eq!(e.field, field, "{line}: {e}");
        }
        let cases = [
            (
                format!("{zone}{RUM}[[rum.target]]\nid = \"cdn-a\"\nsmall = \"https://x/\"\n"),
                "rum.target[1].id",
            ),
            (
                format!("{zone}{}", RUM.replace("https://cdn-a", "cdn-a")),
                "rum.target[0].small",
            ),
            (
                format!("{zone}[rum]\nzone = \"rum.example.com\"\n"),
                "rum.target",
            ),
            (
                format!("{zone}{}", RUM.replace("RUM.example.com.", "-x..com")),
                "rum.zone",
            ),
        ];
        for (text, field) in cases {
            let e = Config::parse("x.toml", &text, Path::new(".")).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
        let unknown = format!(
            "{zone}{}",
            RUM.replace("[[rum.target]]", "colour = 1\n[[rum.target]]")
        );
        assert!(
            Config::parse("x.toml", &unknown, Path::new("."))
                .unwrap_err()
                .to_string()
                .contains("colour")
        );
    }
}
