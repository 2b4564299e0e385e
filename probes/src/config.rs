//! Target files: one TOML file per target under `probes/targets/*.toml`.
//!
//! Parsing walks the TOML table by hand rather than through a serde derive so that every error
//! names the exact field (`checks[1].timeout_ms`) with a reason. Unknown fields are rejected
//! (the equivalent of serde's `deny_unknown_fields`), and so are fields that do not belong to
//! the check's kind (`address` on an `http` check).

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::rr::{Name, RecordType};
use toml::{Table, Value};

/// Default `interval_ms`.
pub const DEFAULT_INTERVAL_MS: u64 = 5_000;
/// Default `timeout_ms`.
pub const DEFAULT_TIMEOUT_MS: u64 = 2_000;
/// Smallest `interval_ms` a target file may ask for ("a check down to 1 s").
pub const MIN_INTERVAL_MS: u64 = 1_000;
/// Largest `interval_ms` (one hour): anything above is almost certainly a unit mistake.
pub const MAX_INTERVAL_MS: u64 = 3_600_000;
/// Default `expect_status`.
pub const DEFAULT_EXPECT_STATUS: u16 = 200;
/// Longest target id.
pub const MAX_TARGET_LEN: usize = 64;

/// A problem in a target file: which file, which field (empty for the whole file) and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(
        file: impl Into<String>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError {
            file: file.into(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file, self.field, self.reason)
        }
    }
}

/// All checks of one target (one file).
#[derive(Debug, Clone, PartialEq)]
pub struct TargetChecks {
    /// The policy target id, e.g. `cdn-a`.
    pub target: String,
    pub checks: Vec<Check>,
}

/// One check of one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// Stable, human readable, unique within the target, e.g.
    /// `http https://cdn-a.example.net/health`. Set by `id = "..."` or derived from the check.
    pub id: String,
    pub kind: CheckKind,
    pub interval: Duration,
    /// Always less than `interval`.
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    Http {
        url: String,
        /// Host header and TLS SNI name (and the name the certificate must match).
        host: Option<String>,
        /// Connect here instead of resolving the URL host (keeps the URL's host, or `host`,
        /// for SNI and the Host header).
        connect_to: Option<SocketAddr>,
        expect_status: u16,
        body_contains: Option<String>,
    },
    Tcp {
        address: SocketAddr,
    },
    Dns {
        server: SocketAddr,
        name: String,
        /// Upper case record type: "A", "AAAA", ...
        qtype: String,
    },
}

impl CheckKind {
    /// `http`, `tcp` or `dns`.
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Http { .. } => "http",
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::Dns { .. } => "dns",
        }
    }

    /// The id a check gets when its file does not set one.
    pub fn default_id(&self) -> String {
        match self {
            CheckKind::Http {
                url,
                host,
                connect_to,
                ..
            } => {
                let mut id = format!("http {url}");
                if let Some(host) = host {
                    id.push_str(&format!(" host={host}"));
                }
                if let Some(addr) = connect_to {
                    id.push_str(&format!(" via {addr}"));
                }
                id
            }
            CheckKind::Tcp { address } => format!("tcp {address}"),
            CheckKind::Dns {
                server,
                name,
                qtype,
            } => format!("dns {qtype} {name} @{server}"),
        }
    }
}

const TOP_FIELDS: &[&str] = &["target", "checks"];
const COMMON_FIELDS: &[&str] = &["kind", "id", "interval_ms", "timeout_ms"];
const HTTP_FIELDS: &[&str] = &[
    "url",
    "host",
    "connect_to",
    "expect_status",
    "body_contains",
];
const TCP_FIELDS: &[&str] = &["address"];
const DNS_FIELDS: &[&str] = &["server", "name", "qtype"];

/// Parse one target file; `file` only names it in errors. Returns the first error found.
pub fn parse_target(file: &str, text: &str) -> Result<TargetChecks, ConfigError> {
    parse_target_all(file, text).map_err(|mut errors| errors.swap_remove(0))
}

/// Parse one target file, collecting every error found (never an empty `Vec` on error).
pub fn parse_target_all(file: &str, text: &str) -> Result<TargetChecks, Vec<ConfigError>> {
    let table: Table = match text.parse::<Table>() {
        Ok(table) => table,
        Err(e) => {
            return Err(vec![ConfigError::new(file, "", syntax_reason(text, &e))]);
        }
    };
    let mut p = Parser {
        file,
        errors: Vec::new(),
    };

    for key in table.keys() {
        if !TOP_FIELDS.contains(&key.as_str()) {
            p.err(
                key,
                format!("unknown field (expected one of: {})", TOP_FIELDS.join(", ")),
            );
        }
    }

    let target = match table.get("target") {
        None => {
            p.err("target", "missing");
            None
        }
        Some(v) => p
            .string("target", v)
            .and_then(|t| match target_id_problem(&t) {
                Some(reason) => {
                    p.err("target", reason);
                    None
                }
                None => Some(t),
            }),
    };

    let mut checks = Vec::new();
    match table.get("checks") {
        None => p.err("checks", "missing: a target needs at least one [[checks]]"),
        Some(Value::Array(items)) => {
            if items.is_empty() {
                p.err("checks", "empty: a target needs at least one [[checks]]");
            }
            let mut ids = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                let path = format!("checks[{i}]");
                let Value::Table(t) = item else {
                    p.err(
                        &path,
                        format!("expected a table, found {}", type_name(item)),
                    );
                    continue;
                };
                if let Some(check) = p.check(&path, t) {
                    if !ids.insert(check.id.clone()) {
                        let field = if t.contains_key("id") {
                            format!("{path}.id")
                        } else {
                            path.clone()
                        };
                        p.err(
                            &field,
                            format!("duplicate check id {:?} (set a distinct `id`)", check.id),
                        );
                    } else {
                        checks.push(check);
                    }
                }
            }
        }
        Some(v) => p.err(
            "checks",
            format!(
                "expected an array of tables ([[checks]]), found {}",
                type_name(v)
            ),
        ),
    }

    if !p.errors.is_empty() {
        return Err(p.errors);
    }
    Ok(TargetChecks {
        target: target.expect("no error means the target was parsed"),
        checks,
    })
}

/// Load every `*.toml` file of `dir`, sorted by file name. Every error of every file is
/// collected; a target id defined by two files is an error too.
pub fn load_targets(dir: &Path) -> Result<Vec<TargetChecks>, Vec<ConfigError>> {
    let dir_name = dir.display().to_string();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            return Err(vec![ConfigError::new(
                dir_name,
                "",
                format!("cannot read directory: {e}"),
            )]);
        }
    };
    let mut paths = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let path = entry.path();
                if path.extension().is_some_and(|ext| ext == "toml") && path.is_file() {
                    paths.push(path);
                }
            }
            Err(e) => errors.push(ConfigError::new(
                &dir_name,
                "",
                format!("cannot list directory: {e}"),
            )),
        }
    }
    paths.sort();

    let mut targets: Vec<TargetChecks> = Vec::new();
    let mut seen: Vec<(String, String)> = Vec::new(); // (target, file)
    for path in paths {
        let file = path.display().to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                errors.push(ConfigError::new(&file, "", format!("cannot read: {e}")));
                continue;
            }
        };
        match parse_target_all(&file, &text) {
            Ok(t) => {
                if let Some((_, other)) = seen.iter().find(|(id, _)| *id == t.target) {
                    errors.push(ConfigError::new(
                        &file,
                        "target",
                        format!("{:?} is already defined in {other}", t.target),
                    ));
                } else {
                    seen.push((t.target.clone(), file));
                    targets.push(t);
                }
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(targets)
    } else {
        Err(errors)
    }
}

/// Why `id` is not a usable target id, if it is not. Target ids appear in URLs
/// (`/api/v1/health/{target}`), so they are kept to a plain character set.
fn target_id_problem(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("must not be empty".into());
    }
    if id.len() > MAX_TARGET_LEN {
        return Some(format!("longer than {MAX_TARGET_LEN} characters"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Some(format!(
            "{id:?} has the character {c:?}; use letters, digits, '-', '_' and '.'"
        ));
    }
    None
}

fn syntax_reason(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("invalid TOML at line {line}, column {column}: {message}")
        }
        None => format!("invalid TOML: {message}"),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a datetime",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

struct Parser<'a> {
    file: &'a str,
    errors: Vec<ConfigError>,
}

impl Parser<'_> {
    fn err(&mut self, field: &str, reason: impl Into<String>) {
        self.errors.push(ConfigError::new(self.file, field, reason));
    }

    fn string(&mut self, field: &str, v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            other => {
                self.err(
                    field,
                    format!("expected a string, found {}", type_name(other)),
                );
                None
            }
        }
    }

    fn int(&mut self, field: &str, v: &Value) -> Option<i64> {
        match v {
            Value::Integer(i) => Some(*i),
            other => {
                self.err(
                    field,
                    format!("expected an integer, found {}", type_name(other)),
                );
                None
            }
        }
    }

    fn socket_addr(
        &mut self,
        field: &str,
        v: &Value,
        default_port: Option<u16>,
    ) -> Option<SocketAddr> {
        let s = self.string(field, v)?;
        let parsed = SocketAddr::from_str(&s).ok().or_else(|| {
            let port = default_port?;
            IpAddr::from_str(&s)
                .ok()
                .map(|ip| SocketAddr::new(ip, port))
        });
        match parsed {
            Some(addr) if addr.port() == 0 => {
                self.err(field, format!("{s:?}: port 0 is not a port to connect to"));
                None
            }
            Some(addr) => Some(addr),
            None => {
                let example = if default_port.is_some() {
                    "an IP address with an optional port, e.g. \"192.0.2.53:53\" or \"[2001:db8::53]:53\""
                } else {
                    "IP:port, e.g. \"192.0.2.10:443\" or \"[2001:db8::10]:443\""
                };
                self.err(field, format!("{s:?} is not {example}"));
                None
            }
        }
    }

    /// Milliseconds within `min..=max`.
    fn millis(
        &mut self,
        field: &str,
        v: Option<&Value>,
        default: u64,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        let Some(v) = v else { return Some(default) };
        let i = self.int(field, v)?;
        if i < min as i64 {
            self.err(field, format!("{i} is below the minimum of {min}"));
            return None;
        }
        if i > max as i64 {
            self.err(field, format!("{i} is above the maximum of {max}"));
            return None;
        }
        Some(i as u64)
    }

    fn check(&mut self, path: &str, t: &Table) -> Option<Check> {
        let errors_before = self.errors.len();
        let field = |name: &str| format!("{path}.{name}");

        let kind = match t.get("kind") {
            None => {
                self.err(&field("kind"), "missing (one of: http, tcp, dns)");
                None
            }
            Some(v) => match self.string(&field("kind"), v) {
                Some(k) if ["http", "tcp", "dns"].contains(&k.as_str()) => Some(k),
                Some(k) => {
                    self.err(
                        &field("kind"),
                        format!("{k:?} is not one of: http, tcp, dns"),
                    );
                    None
                }
                None => None,
            },
        };

        // Unknown fields, and fields of another kind.
        let own: &[&str] = match kind.as_deref() {
            Some("http") => HTTP_FIELDS,
            Some("tcp") => TCP_FIELDS,
            Some("dns") => DNS_FIELDS,
            _ => &[],
        };
        for key in t.keys() {
            let key = key.as_str();
            if COMMON_FIELDS.contains(&key) || own.contains(&key) {
                continue;
            }
            let owner = [
                ("http", HTTP_FIELDS),
                ("tcp", TCP_FIELDS),
                ("dns", DNS_FIELDS),
            ]
            .into_iter()
            .find(|(_, fields)| fields.contains(&key));
            match (owner, kind.as_deref()) {
                (Some((owner, _)), Some(kind)) => self.err(
                    &field(key),
                    format!("not allowed in a {kind} check (it belongs to {owner} checks)"),
                ),
                (Some(_), None) => {} // the kind error already says what is wrong
                (None, _) => {
                    let mut allowed: Vec<&str> = COMMON_FIELDS.to_vec();
                    allowed.extend_from_slice(own);
                    self.err(
                        &field(key),
                        format!("unknown field (expected one of: {})", allowed.join(", ")),
                    )
                }
            }
        }

        let id = match t.get("id") {
            None => None,
            Some(v) => match self.string(&field("id"), v) {
                Some(id) if id.trim().is_empty() => {
                    self.err(&field("id"), "must not be empty");
                    None
                }
                Some(id) if id.chars().any(char::is_control) => {
                    self.err(&field("id"), "must not contain control characters");
                    None
                }
                other => other,
            },
        };

        let interval_ms = self.millis(
            &field("interval_ms"),
            t.get("interval_ms"),
            DEFAULT_INTERVAL_MS,
            MIN_INTERVAL_MS,
            MAX_INTERVAL_MS,
        );
        let timeout_ms = self.millis(
            &field("timeout_ms"),
            t.get("timeout_ms"),
            DEFAULT_TIMEOUT_MS,
            1,
            MAX_INTERVAL_MS,
        );
        if let (Some(interval), Some(timeout)) = (interval_ms, timeout_ms) {
            if timeout >= interval {
                self.err(
                    &field("timeout_ms"),
                    format!("{timeout} must be less than interval_ms {interval}"),
                );
            }
        }

        let check_kind = match kind.as_deref() {
            Some("http") => self.http(path, t),
            Some("tcp") => self.tcp(path, t),
            Some("dns") => self.dns(path, t),
            _ => None,
        };

        if self.errors.len() != errors_before {
            return None;
        }
        let kind = check_kind?;
        Some(Check {
            id: id.unwrap_or_else(|| kind.default_id()),
            kind,
            interval: Duration::from_millis(interval_ms?),
            timeout: Duration::from_millis(timeout_ms?),
        })
    }

    fn required<'t>(
        &mut self,
        path: &str,
        t: &'t Table,
        name: &str,
        what: &str,
    ) -> Option<&'t Value> {
        let v = t.get(name);
        if v.is_none() {
            self.err(&format!("{path}.{name}"), format!("missing ({what})"));
        }
        v
    }

    fn http(&mut self, path: &str, t: &Table) -> Option<CheckKind> {
        let field = |name: &str| format!("{path}.{name}");
        let url = self
            .required(
                path,
                t,
                "url",
                "the URL to request, e.g. \"https://cdn-a.example.net/health\"",
            )
            .and_then(|v| self.string(&field("url"), v))
            .and_then(|u| match reqwest::Url::parse(&u) {
                Err(e) => {
                    self.err(&field("url"), format!("{u:?} is not a URL: {e}"));
                    None
                }
                Ok(parsed) if !matches!(parsed.scheme(), "http" | "https") => {
                    self.err(
                        &field("url"),
                        format!("{u:?}: the scheme must be http or https"),
                    );
                    None
                }
                Ok(parsed) if parsed.host_str().is_none_or(str::is_empty) => {
                    self.err(&field("url"), format!("{u:?} has no host"));
                    None
                }
                Ok(parsed) => Some((u, parsed)),
            });

        let host = match t.get("host") {
            None => None,
            Some(v) => self
                .string(&field("host"), v)
                .and_then(|h| match host_problem(&h) {
                    Some(reason) => {
                        self.err(&field("host"), reason);
                        None
                    }
                    None => Some(h.to_ascii_lowercase()),
                }),
        };

        let connect_to = t
            .get("connect_to")
            .and_then(|v| self.socket_addr(&field("connect_to"), v, None));
        if let (Some((u, parsed)), Some(_)) = (&url, t.get("connect_to")) {
            if host.is_none() && url_host_is_ip(parsed) {
                self.err(
                    &field("connect_to"),
                    format!("the host of url {u:?} is an IP address: put the address in the URL, or set `host`"),
                );
            }
        }

        let expect_status = match t.get("expect_status") {
            None => Some(DEFAULT_EXPECT_STATUS),
            Some(v) => self.int(&field("expect_status"), v).and_then(|s| {
                if (100..=599).contains(&s) {
                    Some(s as u16)
                } else {
                    self.err(
                        &field("expect_status"),
                        format!("{s} is not an HTTP status (100-599)"),
                    );
                    None
                }
            }),
        };

        let body_contains = match t.get("body_contains") {
            None => None,
            Some(v) => self.string(&field("body_contains"), v).and_then(|b| {
                if b.is_empty() {
                    self.err(
                        &field("body_contains"),
                        "must not be empty (leave it out to skip the body check)",
                    );
                    None
                } else if b.len() > crate::check::MAX_BODY_BYTES / 2 {
                    self.err(&field("body_contains"), "too long");
                    None
                } else {
                    Some(b)
                }
            }),
        };

        Some(CheckKind::Http {
            url: url?.0,
            host,
            connect_to,
            expect_status: expect_status?,
            body_contains,
        })
    }

    fn tcp(&mut self, path: &str, t: &Table) -> Option<CheckKind> {
        let address = self
            .required(
                path,
                t,
                "address",
                "IP:port to connect to, e.g. \"192.0.2.10:443\"",
            )
            .and_then(|v| self.socket_addr(&format!("{path}.address"), v, None))?;
        Some(CheckKind::Tcp { address })
    }

    fn dns(&mut self, path: &str, t: &Table) -> Option<CheckKind> {
        let field = |name: &str| format!("{path}.{name}");
        let server = self
            .required(
                path,
                t,
                "server",
                "the DNS server to ask, e.g. \"192.0.2.53:53\"",
            )
            .and_then(|v| self.socket_addr(&field("server"), v, Some(53)));
        let name = self
            .required(
                path,
                t,
                "name",
                "the name to look up, e.g. \"www.example.com\"",
            )
            .and_then(|v| self.string(&field("name"), v))
            .and_then(|n| {
                if n.is_empty() {
                    self.err(&field("name"), "must not be empty");
                    return None;
                }
                match Name::from_utf8(&n) {
                    Ok(_) => Some(n),
                    Err(e) => {
                        self.err(&field("name"), format!("{n:?} is not a domain name: {e}"));
                        None
                    }
                }
            });
        let qtype = self
            .required(path, t, "qtype", "the record type, e.g. \"A\" or \"AAAA\"")
            .and_then(|v| self.string(&field("qtype"), v))
            .and_then(|q| {
                let upper = q.to_ascii_uppercase();
                match RecordType::from_str(&upper) {
                    Ok(rt) if !matches!(rt, RecordType::Unknown(_)) => Some(rt.to_string()),
                    _ => {
                        self.err(
                            &field("qtype"),
                            format!("{q:?} is not a DNS record type (A, AAAA, CNAME, ...)"),
                        );
                        None
                    }
                }
            });
        Some(CheckKind::Dns {
            server: server?,
            name: name?,
            qtype: qtype?,
        })
    }
}

/// Whether the URL's host is an IP literal (`http://192.0.2.1/`, `http://[2001:db8::1]/`).
pub(crate) fn url_host_is_ip(url: &reqwest::Url) -> bool {
    url.host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .is_some_and(|h| h.parse::<IpAddr>().is_ok())
}

/// Why `host` is not a usable Host header / SNI name, if it is not.
fn host_problem(host: &str) -> Option<String> {
    if host.is_empty() {
        return Some("must not be empty".into());
    }
    if host.parse::<IpAddr>().is_ok() {
        return Some(format!(
            "{host:?} is an IP address; `host` must be a DNS name (it is the TLS SNI name)"
        ));
    }
    if host.len() > 253 {
        return Some("longer than 253 characters".into());
    }
    let labels_ok = host.trim_end_matches('.').split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    });
    if !labels_ok {
        return Some(format!(
            "{host:?} is not a DNS name (letters, digits, '-', '_', dot-separated; no port)"
        ));
    }
    None
}

#[cfg(test)]
mod tests;
