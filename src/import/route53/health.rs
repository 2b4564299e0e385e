//! Route 53 health checks into steerdns probe target files. A traffic policy document names
//! health checks only by id; their configurations come from a second file, the JSON of
//! `aws route53 list-health-checks` (or `get-health-check`, or a plain list of them). HTTP,
//! HTTPS, their string-match variants and TCP checks become `http`/`tcp` probe checks of the
//! target the health check is attached to; anything else (calculated, CloudWatch alarm,
//! recovery control, inverted) is a warning and the target keeps its other health inputs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

/// Health check id → its `HealthCheckConfig`, from the file's text.
pub fn parse(text: &str) -> Result<BTreeMap<String, Value>, String> {
    let root: Value = serde_json::from_str(text)
        .map_err(|e| format!("line {}: not valid JSON: {e}", e.line()))?;
    let list: Vec<Value> = match &root {
        Value::Array(items) => items.clone(),
        Value::Object(m) if m.contains_key("HealthChecks") => m["HealthChecks"]
            .as_array()
            .cloned()
            .ok_or("HealthChecks: expected a list")?,
        Value::Object(m) if m.contains_key("HealthCheck") => vec![m["HealthCheck"].clone()],
        _ => {
            return Err(
                "expected {\"HealthChecks\": [...]}, {\"HealthCheck\": {...}} or a list".into(),
            );
        }
    };
    let mut out = BTreeMap::new();
    for (i, hc) in list.iter().enumerate() {
        let id = hc
            .get("Id")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("HealthChecks[{i}].Id: missing"))?;
        let config = hc
            .get("HealthCheckConfig")
            .filter(|c| c.is_object())
            .ok_or_else(|| format!("HealthChecks[{i}].HealthCheckConfig: missing"))?;
        out.insert(id.to_owned(), config.clone());
    }
    Ok(out)
}

/// The probe checks (TOML `[[checks]]` text) of one health check, or why there are none.
pub fn checks(id: &str, config: &Value) -> Result<String, String> {
    let text = |k: &str| config.get(k).and_then(Value::as_str).map(str::to_owned);
    let ty = text("Type").unwrap_or_default();
    if config.get("Inverted").and_then(Value::as_bool) == Some(true) {
        return Err(format!(
            "health check {id:?} is inverted; steerdns probes are not"
        ));
    }
    if config.get("Disabled").and_then(Value::as_bool) == Some(true) {
        return Err(format!(
            "health check {id:?} is disabled (Route 53 counts it healthy)"
        ));
    }
    let ip = text("IPAddress");
    let fqdn = text("FullyQualifiedDomainName");
    let interval_s = config
        .get("RequestInterval")
        .and_then(Value::as_u64)
        .unwrap_or(30)
        .clamp(1, 3600);
    let (scheme, default_port) = match ty.as_str() {
        "HTTP" | "HTTP_STR_MATCH" => ("http", 80),
        "HTTPS" | "HTTPS_STR_MATCH" => ("https", 443),
        "TCP" => ("tcp", 0),
        other => {
            return Err(format!(
                "health check {id:?} is of type {other}, which steerdns probes cannot run \
                 (HTTP, HTTPS, *_STR_MATCH and TCP can)"
            ));
        }
    };
    let port = config
        .get("Port")
        .and_then(Value::as_u64)
        .filter(|p| (1..=65535).contains(p))
        .unwrap_or(default_port);
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let socket = |ip: &str| {
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n[[checks]]\nid = {}",
        quote(&format!("route53 {id}"))
    );
    if scheme == "tcp" {
        let Some(ip) = ip else {
            return Err(format!(
                "health check {id:?} is TCP to a host name; steerdns TCP checks need an address"
            ));
        };
        let _ = writeln!(out, "kind = \"tcp\"\naddress = {}", quote(&socket(&ip)));
    } else {
        let path = text("ResourcePath").unwrap_or_else(|| "/".into());
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        let url = match (&fqdn, &ip) {
            (Some(host), Some(ip)) => {
                let _ = writeln!(out, "connect_to = {}", quote(&socket(ip)));
                format!("{scheme}://{host}{path}")
            }
            (Some(host), None) => format!("{scheme}://{host}:{port}{path}"),
            (None, Some(ip)) if ip.contains(':') => format!("{scheme}://[{ip}]:{port}{path}"),
            (None, Some(ip)) => format!("{scheme}://{ip}:{port}{path}"),
            (None, None) => {
                return Err(format!(
                    "health check {id:?} has neither IPAddress nor FullyQualifiedDomainName"
                ));
            }
        };
        let _ = writeln!(out, "kind = \"http\"\nurl = {}", quote(&url));
        if let Some(search) = text("SearchString").filter(|_| ty.ends_with("_STR_MATCH")) {
            let _ = writeln!(out, "body_contains = {}", quote(&search));
        }
    }
    let _ = writeln!(
        out,
        "interval_ms = {}\ntimeout_ms = {}",
        interval_s * 1000,
        (interval_s * 1000 / 2).min(4000)
    );
    Ok(out)
}
