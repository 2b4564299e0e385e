//! The gdnsd side of zone files: find the `DYNA`/`DYNC` records (dynamic addresses / CNAME
//! from a plugin resource) and return the zone text without them, for steerdns's own RFC 1035
//! parser. Only enough lexing to find owners, TTLs and types: comments, quotes, parentheses,
//! `$ORIGIN` and `$TTL`. Removed lines become comments so line numbers stay the same.

use super::Problem;

/// Largest zone file accepted.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynKind {
    /// `DYNA`: addresses.
    A,
    /// `DYNC`: a CNAME (or addresses).
    C,
}

impl DynKind {
    pub fn rr(self) -> &'static str {
        match self {
            DynKind::A => "DYNA",
            DynKind::C => "DYNC",
        }
    }
}

/// One `owner ttl DYNA plugin!resource` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynRecord {
    pub line: usize,
    /// Absolute, without the trailing dot, lower case.
    pub owner: String,
    pub ttl: u32,
    pub kind: DynKind,
    pub plugin: String,
    pub resource: String,
}

#[derive(Debug, Default)]
pub struct Stripped {
    pub text: String,
    pub records: Vec<DynRecord>,
}

/// Split a gdnsd zone file into its static text and its dynamic records. `file` names the
/// file in problems.
pub fn strip(file: &str, origin: &str, text: &str) -> Result<Stripped, Vec<Problem>> {
    let problem = |line: usize, what: String| Problem {
        file: file.to_owned(),
        line,
        what,
    };
    if text.len() > MAX_BYTES {
        return Err(vec![problem(0, format!("larger than {MAX_BYTES} bytes"))]);
    }
    let mut out = Stripped::default();
    let mut problems = Vec::new();
    let mut origin = origin.trim_end_matches('.').to_ascii_lowercase();
    let mut default_ttl: Option<u32> = None;
    let mut last_owner: Option<String> = None;
    // The owner of the last removed line, while the next record might inherit it.
    let mut removed_owner: Option<(usize, String)> = None;
    let mut depth = 0usize;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let (code, opens, closes) = lex(raw);
        let starts_record = depth == 0;
        depth = (depth + opens).saturating_sub(closes);
        let tokens: Vec<&str> = code.split_whitespace().collect();
        if !starts_record || tokens.is_empty() {
            out.text.push_str(raw);
            out.text.push('\n');
            continue;
        }
        if let Some(directive) = tokens[0].strip_prefix('$') {
            match directive.to_ascii_uppercase().as_str() {
                "ORIGIN" if tokens.len() == 2 => {
                    origin = absolute(tokens[1], &origin);
                }
                "TTL" if tokens.len() == 2 => match parse_ttl(tokens[1]) {
                    Some(t) => default_ttl = Some(t),
                    None => problems.push(problem(line, format!("bad $TTL {:?}", tokens[1]))),
                },
                _ => problems.push(problem(
                    line,
                    format!("directive {:?} is not supported by the importer", tokens[0]),
                )),
            }
            out.text.push_str(raw);
            out.text.push('\n');
            continue;
        }
        let has_owner = !raw.starts_with([' ', '\t']);
        let mut rest = &tokens[..];
        let owner = if has_owner {
            rest = &rest[1..];
            let o = absolute(tokens[0], &origin);
            last_owner = Some(o.clone());
            Some(o)
        } else {
            last_owner.clone()
        };
        if !has_owner && let Some((removed_line, name)) = removed_owner.take() {
            problems.push(problem(
                line,
                format!(
                    "this record inherits owner {name} from the DYNA/DYNC on line \
                     {removed_line}; a steered name cannot have static records in steerdns"
                ),
            ));
        }
        removed_owner = None;
        let mut ttl = None;
        while let Some(t) = rest.first() {
            if t.eq_ignore_ascii_case("IN") {
                rest = &rest[1..];
            } else if t.starts_with(|c: char| c.is_ascii_digit()) {
                ttl = parse_ttl(t);
                if ttl.is_none() {
                    problems.push(problem(line, format!("bad TTL {t:?}")));
                }
                rest = &rest[1..];
            } else {
                break;
            }
        }
        let kind = match rest.first().map(|t| t.to_ascii_uppercase()) {
            Some(t) if t == "DYNA" => DynKind::A,
            Some(t) if t == "DYNC" => DynKind::C,
            _ => {
                out.text.push_str(raw);
                out.text.push('\n');
                continue;
            }
        };
        let Some(owner) = owner else {
            problems.push(problem(
                line,
                format!("{} record without an owner", kind.rr()),
            ));
            continue;
        };
        if opens > 0 {
            problems.push(problem(
                line,
                format!("a {} record split over lines is not supported", kind.rr()),
            ));
        }
        let target = match rest.get(1..) {
            Some([one]) => *one,
            _ => {
                problems.push(problem(
                    line,
                    format!("{} needs exactly one plugin!resource", kind.rr()),
                ));
                continue;
            }
        };
        let Some((plugin, resource)) = target.split_once('!') else {
            problems.push(problem(
                line,
                format!("{} data {target:?} is not plugin!resource", kind.rr()),
            ));
            continue;
        };
        let Some(ttl) = ttl.or(default_ttl) else {
            problems.push(problem(line, "no TTL and no $TTL before it".into()));
            continue;
        };
        removed_owner = Some((line, owner.clone()));
        out.records.push(DynRecord {
            line,
            owner,
            ttl,
            kind,
            plugin: plugin.to_ascii_lowercase(),
            resource: resource.to_owned(),
        });
        out.text
            .push_str(&format!("; {} (now a steerdns policy)\n", raw.trim()));
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// The code part of a line (no comment) and how many parentheses it opens and closes.
fn lex(line: &str) -> (String, usize, usize) {
    let (mut code, mut opens, mut closes) = (String::new(), 0, 0);
    let mut quoted = false;
    let mut escaped = false;
    for c in line.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if !quoted {
            match c {
                ';' => break,
                '(' => opens += 1,
                ')' => closes += 1,
                _ => {}
            }
        }
        code.push(c);
    }
    (code, opens, closes)
}

fn absolute(name: &str, origin: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if lower == "@" {
        origin.to_owned()
    } else if let Some(abs) = lower.strip_suffix('.') {
        abs.to_owned()
    } else if origin.is_empty() {
        lower
    } else {
        format!("{lower}.{origin}")
    }
}

/// `3600`, or BIND-style units (`1h30m`).
fn parse_ttl(text: &str) -> Option<u32> {
    if let Ok(n) = text.parse() {
        return Some(n);
    }
    let (mut total, mut n) = (0u64, None::<u64>);
    for c in text.to_ascii_lowercase().chars() {
        if let Some(d) = c.to_digit(10) {
            n = Some(n.unwrap_or(0).checked_mul(10)? + u64::from(d));
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 604800,
            _ => return None,
        };
        total = total.checked_add(n.take()?.checked_mul(unit)?)?;
    }
    if n.is_some() {
        return None;
    }
    u32::try_from(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_dyn_records_and_keeps_the_rest() {
        let text = "$TTL 3600\n@ 60 SOA ns1 hostmaster ( 1\n 2 3 4 5 )\n@ NS ns1\n\
                    www 30 DYNC geoip!www ; comment\npop IN DYNA metafo!pop\n\
                    $ORIGIN sub.example.com.\nx 1m DYNA weighted!w\nns1 A 127.0.0.1\n";
        let s = strip("zones/example.com", "example.com", text).unwrap();
        let got: Vec<(usize, &str, u32, DynKind, &str, &str)> = s
            .records
            .iter()
            .map(|r| {
                (
                    r.line,
                    r.owner.as_str(),
                    r.ttl,
                    r.kind,
                    r.plugin.as_str(),
                    r.resource.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (5, "www.example.com", 30, DynKind::C, "geoip", "www"),
                (6, "pop.example.com", 3600, DynKind::A, "metafo", "pop"),
                (8, "x.sub.example.com", 60, DynKind::A, "weighted", "w"),
            ]
        );
        assert_eq!(s.text.lines().count(), text.lines().count());
        assert!(!s.text.contains("\nwww 30 DYNC"));
        assert!(s.text.contains("ns1 A 127.0.0.1"));
    }

    #[test]
    fn reports_what_it_cannot_take() {
        let text =
            "$INCLUDE other\nwww 30 DYNA geoip\nfoo DYNA a!b\nbar 30 DYNA a!b\n  30 TXT \"x\"\n";
        let problems = strip("z", "example.com", text).unwrap_err();
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 4, "{shown:?}");
        assert!(
            shown[0].starts_with("z:1: directive \"$INCLUDE\""),
            "{shown:?}"
        );
        assert!(
            shown[1].starts_with("z:2: DYNA data \"geoip\""),
            "{shown:?}"
        );
        assert!(shown[2].starts_with("z:3: no TTL"), "{shown:?}");
        assert!(
            shown[3].starts_with("z:5: this record inherits owner bar.example.com"),
            "{shown:?}"
        );
    }

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("30"), Some(30));
        assert_eq!(parse_ttl("1h30m"), Some(5400));
        assert_eq!(parse_ttl("1x"), None);
        assert_eq!(parse_ttl("5h3"), None);
    }
}
