//! `[geoip] override_file`: overrides kept in a file of one network per line, for maps too
//! large to write as `[[geoip.override]]` tables (a carrier's or a corporate network's
//! prefixes: hundreds of thousands of lines), like gdnsd's `nets` files.
//!
//! ```text
//! # network    what it is (the keys of [[geoip.override]])
//! 198.51.100.0/24  country=DE subdivision=DE-BE
//! 2001:db8::/32    continent=EU asn=64512
//! ```
//!
//! Blank lines and `#` comments are ignored. Each line is checked as a `[[geoip.override]]`
//! table is, and an error names the file, the line and the key.

use std::path::Path;

use super::{RawOverride, parse_override};
use crate::geo::Override;

/// Read and check `path`; the error is the reason text, starting with `path:line`.
pub(super) fn read(path: &Path) -> Result<Vec<Override>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    parse(&path.display().to_string(), &text)
}

/// Check the text of an override file named `name`.
pub(super) fn parse(name: &str, text: &str) -> Result<Vec<Override>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split_once('#').map_or(line, |(before, _)| before);
        let mut words = line.split_whitespace();
        let Some(cidr) = words.next() else { continue };
        let at = |field: &str, reason: String| format!("{name}:{}: {field}: {reason}", i + 1);
        let mut raw = RawOverride {
            cidr: cidr.to_owned(),
            continent: None,
            country: None,
            subdivision: None,
            asn: None,
        };
        for word in words {
            let Some((key, value)) = word.split_once('=') else {
                return Err(at(
                    word,
                    "expected key=value (continent, country, subdivision, asn)".into(),
                ));
            };
            let slot = match key {
                "continent" => &mut raw.continent,
                "country" => &mut raw.country,
                "subdivision" => &mut raw.subdivision,
                "asn" => {
                    let asn = value
                        .parse()
                        .map_err(|_| at("asn", format!("{value:?} is not an AS number")))?;
                    raw.asn = Some(asn);
                    continue;
                }
                other => {
                    return Err(at(
                        other,
                        "unknown key (continent, country, subdivision, asn)".into(),
                    ));
                }
            };
            *slot = Some(value.to_owned());
        }
        out.push(parse_override(raw).map_err(|(field, reason)| at(field, reason))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_overrides_and_errors_name_the_line() {
        let got = parse(
            "nets.txt",
            "# comment\n\n198.51.100.0/24 country=DE subdivision=DE-BE  # Berlin\n2001:db8::/32 continent=eu asn=64512\n",
        )
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].location.country, Some(*b"DE"));
        assert_eq!(got[0].location.subdivision.as_deref(), Some("BE"));
        assert_eq!(got[1].asn, Some(64512));
        for (text, expected) in [
            ("10.0.0.0/8\n", "nets.txt:1: cidr: an override needs"),
            (
                "\n10.0.0.1/8 country=DE\n",
                "nets.txt:2: cidr: \"10.0.0.1/8\" has host bits",
            ),
            ("10.0.0.0/8 country=UK\n", "nets.txt:1: country: \"UK\""),
            ("10.0.0.0/8 city=Berlin\n", "nets.txt:1: city: unknown key"),
            ("10.0.0.0/8 DE\n", "nets.txt:1: DE: expected key=value"),
            (
                "10.0.0.0/8 asn=x\n",
                "nets.txt:1: asn: \"x\" is not an AS number",
            ),
        ] {
            let e = parse("nets.txt", text).unwrap_err();
            assert!(e.starts_with(expected), "{text:?}: {e}");
        }
    }
}
