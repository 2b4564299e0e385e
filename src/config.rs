//! The server configuration: one TOML file, or the embedded demo when none is given.
//!
//! Raw file → [`Config`] with every path resolved relative to the file and every address
//! parsed. Unknown keys are errors. Depends on `geo` (for [`DbSource`]). No I/O except reading
//! the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::geo::{DbSource, Location, Override, iso};
use crate::health::tracker::Thresholds;
use crate::rum::init_zone::InitZoneConfig;
use crate::rum::resolver_map::ResolverMapConfig;

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
}

/// `[rum]`, the keys resolver mapping reads: the zone whose `<nonce>.<zone>` names steerdns
/// answers, what they resolve to, and `[rum.resolver_map]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRum {
    zone: Option<String>,
    #[serde(default)]
    init_addresses: Vec<String>,
    #[serde(default)]
    resolver_map: ResolverMapConfig,
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
    explain_names: Option<bool>,
    udp_threads: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    token_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGeoip {
    city: Option<PathBuf>,
    asn: Option<PathBuf>,
    #[serde(default, rename = "override")]
    overrides: Vec<RawOverride>,
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
    pub tcp_idle_timeout: Duration,
    /// UDP serving threads per listen address, each with its own socket; `None`: one per CPU
    /// this process may run on.
    pub udp_threads: Option<usize>,
    /// Answer TXT `_explain.<steered name>` with the decision for the asker.
    pub explain_names: bool,
    /// `None` disables the HTTP listener.
    pub http_listen: Option<SocketAddr>,
    /// The admin API (policy edits, health overrides, explain); `None` disables it.
    pub admin_listen: Option<SocketAddr>,
    /// File holding the admin bearer token (`STEERDNS_ADMIN_TOKEN` wins over it).
    pub admin_token_file: Option<PathBuf>,
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
    /// `[rum] zone` and `init_addresses`: resolver mapping's nonce names; `None`: off.
    pub rum_zone: Option<InitZoneConfig>,
    /// `[rum.resolver_map]`.
    pub rum_resolver_map: ResolverMapConfig,
}

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
        } = raw;
        let RawDns {
            listen,
            max_udp_payload,
            tcp_idle_timeout_ms,
            explain_names,
            udp_threads,
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
        let RawAdmin { listen, token_file } = admin;
        let admin_listen =
            optional_listen("admin.listen", listen.as_deref(), DEFAULT_ADMIN_LISTEN)?;

        let geoip_overrides = geoip
            .overrides
            .into_iter()
            .enumerate()
            .map(|(i, raw)| {
                parse_override(raw).map_err(|(f, r)| err(&format!("geoip.override[{i}].{f}"), r))
            })
            .collect::<Result<Vec<_>, _>>()?;
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

        let (rum_zone, rum_resolver_map) = match rum {
            None => (None, ResolverMapConfig::default()),
            Some(RawRum {
                zone,
                init_addresses,
                resolver_map,
            }) => {
                let zone = match zone {
                    Some(zone) => Some(
                        InitZoneConfig::parse(&zone, &init_addresses)
                            .map_err(|(f, r)| err(&format!("rum.{f}"), r))?,
                    ),
                    None if !init_addresses.is_empty() => {
                        return Err(err(
                            "rum.zone",
                            "required when rum.init_addresses is set".into(),
                        ));
                    }
                    None => None,
                };
                let map = resolver_map
                    .validate()
                    .map_err(|e| err(&format!("rum.resolver_map.{}", e.field), e.reason))?;
                (zone, map)
            }
        };

        Ok(Config {
            source: file.to_owned(),
            dns_listen,
            max_udp_payload,
            tcp_idle_timeout: Duration::from_millis(tcp_idle_timeout_ms),
            udp_threads,
            explain_names: explain_names.unwrap_or(false),
            http_listen,
            admin_listen,
            admin_token_file: token_file.map(resolve),
            geoip_city,
            geoip_asn,
            geoip_overrides,
            zones,
            policies,
            health,
            agent_countries,
            probes,
            rum_zone,
            rum_resolver_map,
        })
    }
}

type FieldError = (&'static str, String);
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
            city: None,
            coordinates: None,
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
    fn rum_resolver_mapping_keys() {
        let zone = "[[zone]]\norigin = \"example.com\"\n";
        let text = format!(
            "{zone}[rum]\nzone = \"rum.example.com\"\ninit_addresses = [\"127.0.0.1\"]\n\
             [rum.resolver_map]\nmin_sessions = 3\n"
        );
        let c = Config::parse("x.toml", &text, Path::new(".")).unwrap();
        assert_eq!(
            c.rum_zone.as_ref().map(|z| z.zone.to_ascii()).as_deref(),
            Some("rum.example.com.")
        );
        assert_eq!(c.rum_resolver_map.min_sessions, 3);
        assert_eq!(c.rum_resolver_map.min_share, 0.8);
        let none = Config::parse("x.toml", zone, Path::new(".")).unwrap();
        assert!(none.rum_zone.is_none());
        let cases = [
            ("zone = \"rum.example.com\"", "rum.init_addresses"),
            ("init_addresses = [\"127.0.0.1\"]", "rum.zone"),
            (
                "zone = \"rum.example.com\"\ninit_addresses = [\"x\"]",
                "rum.init_addresses",
            ),
            (
                "[rum.resolver_map]\nmin_share = 0.3",
                "rum.resolver_map.min_share",
            ),
        ];
        for (body, field) in cases {
            let text = format!("{zone}[rum]\n{body}\n");
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
}
