//! The beacon's wire format and its validation.
//!
//! A browser posts one JSON object per page view ([`RawBeacon`]); [`validate`] turns it into
//! a [`Beacon`] or says why not ([`Reject`], whose label is what `/metrics` counts). Parsing
//! is strict: unknown fields, wrong types, out-of-range or non-finite numbers, unknown or
//! repeated targets are all refusals, so a malformed beacon can never reach a ranking. Pure.
//! Depends on `rum::token` (the nonce).

use std::collections::HashSet;

use serde::Deserialize;

use super::token::Nonce;

/// The largest body accepted. A beacon with 16 targets is under 3 KiB.
pub const MAX_BODY: usize = 16 * 1024;
/// Targets per beacon, at most (as many as can be configured).
pub const MAX_RESULTS: usize = crate::config::RUM_MAX_TARGETS;
/// The longest time accepted, in ms: a minute. Fetches time out far earlier.
pub const MAX_MS: f64 = 60_000.0;
/// The highest throughput accepted, in kbit/s (10 Gbit/s).
pub const MAX_KBPS: f64 = 10_000_000.0;

/// What the browser sends. Field names are the wire names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBeacon {
    pub nonce: String,
    pub token: String,
    pub results: Vec<RawResult>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResult {
    pub target: String,
    pub cold_ms: Option<f64>,
    pub warm_ms: Option<f64>,
    pub dns_ms: Option<f64>,
    pub connect_ms: Option<f64>,
    pub tls_ms: Option<f64>,
    pub ttfb_ms: Option<f64>,
    pub throughput_kbps: Option<f64>,
    #[serde(default)]
    pub failed: bool,
}

/// A beacon that passed validation (its token is checked separately).
#[derive(Debug, Clone, PartialEq)]
pub struct Beacon {
    pub nonce: Nonce,
    pub token: String,
    pub results: Vec<TargetResult>,
}

/// One target's measurement from one page view.
///
/// `cold_ms` is the first fetch (resolver, connection and CDN cache as a new visitor meets
/// them), `warm_ms` a second one on the open connection. The phases come from the cold fetch
/// and need the CDN's `Timing-Allow-Origin`; `ttfb_ms` is from the warm fetch when there is
/// one. `failed`: a fetch errored or timed out (its timing, if any, is not used).
#[derive(Debug, Clone, PartialEq)]
pub struct TargetResult {
    pub target: String,
    pub cold_ms: Option<f64>,
    pub warm_ms: Option<f64>,
    pub dns_ms: Option<f64>,
    pub connect_ms: Option<f64>,
    pub tls_ms: Option<f64>,
    pub ttfb_ms: Option<f64>,
    pub throughput_kbps: Option<f64>,
    pub failed: bool,
}

impl TargetResult {
    /// What a ranking records: the warm time if there is one, else the cold one; `None` for
    /// a failure (availability counts it).
    pub fn timing(&self) -> Option<f64> {
        if self.failed {
            None
        } else {
            self.warm_ms.or(self.cold_ms)
        }
    }
}

/// Why a beacon was refused. [`Reject::label`] is the `reason` label in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Reject {
    #[error("too many beacons from this network; slow down")]
    RateLimited,
    #[error("the body is larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("the content type must be text/plain or application/json")]
    ContentType,
    #[error("the body is not a beacon (strict JSON, known fields only)")]
    BadJson,
    #[error("the nonce must be 32 lower-case hex digits")]
    BadNonce,
    #[error("a beacon needs between 1 and {MAX_RESULTS} results")]
    ResultCount,
    #[error("a result names a target that is not configured")]
    UnknownTarget,
    #[error("a result repeats a target")]
    DuplicateTarget,
    #[error("a number is out of range (times 0..=60000 ms, throughput 0..=10^7 kbit/s)")]
    OutOfRange,
    #[error("a result that did not fail needs cold_ms or warm_ms")]
    MissingTiming,
    #[error("the token is malformed")]
    TokenMalformed,
    #[error("the token was not issued by this server")]
    Forged,
    #[error("the token has expired")]
    Expired,
    #[error("the token was issued to another client network")]
    WrongNetwork,
    #[error("the token was already used")]
    Replayed,
    #[error("too many beacons in flight; try later")]
    Busy,
}

impl Reject {
    pub const ALL: [Reject; 16] = [
        Reject::RateLimited,
        Reject::TooLarge,
        Reject::ContentType,
        Reject::BadJson,
        Reject::BadNonce,
        Reject::ResultCount,
        Reject::UnknownTarget,
        Reject::DuplicateTarget,
        Reject::OutOfRange,
        Reject::MissingTiming,
        Reject::TokenMalformed,
        Reject::Forged,
        Reject::Expired,
        Reject::WrongNetwork,
        Reject::Replayed,
        Reject::Busy,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Reject::RateLimited => "rate_limited",
            Reject::TooLarge => "too_large",
            Reject::ContentType => "content_type",
            Reject::BadJson => "bad_json",
            Reject::BadNonce => "bad_nonce",
            Reject::ResultCount => "result_count",
            Reject::UnknownTarget => "unknown_target",
            Reject::DuplicateTarget => "duplicate_target",
            Reject::OutOfRange => "out_of_range",
            Reject::MissingTiming => "missing_timing",
            Reject::TokenMalformed => "token_malformed",
            Reject::Forged => "forged",
            Reject::Expired => "expired",
            Reject::WrongNetwork => "wrong_network",
            Reject::Replayed => "replayed",
            Reject::Busy => "busy",
        }
    }

    /// Position in [`Reject::ALL`] (for counters).
    pub fn index(self) -> usize {
        Reject::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }

    /// The HTTP status to answer with.
    pub fn status(self) -> u16 {
        match self {
            Reject::RateLimited => 429,
            Reject::TooLarge => 413,
            Reject::ContentType => 415,
            Reject::TokenMalformed
            | Reject::Forged
            | Reject::Expired
            | Reject::WrongNetwork
            | Reject::Replayed => 403,
            Reject::Busy => 503,
            _ => 400,
        }
    }
}

impl From<super::token::TokenError> for Reject {
    fn from(e: super::token::TokenError) -> Self {
        use super::token::TokenError;
        match e {
            TokenError::Malformed => Reject::TokenMalformed,
            TokenError::Forged => Reject::Forged,
            TokenError::Expired => Reject::Expired,
            TokenError::WrongNetwork => Reject::WrongNetwork,
        }
    }
}

/// Parse and validate a body against the configured target ids.
pub fn parse(body: &[u8], targets: &HashSet<String>) -> Result<Beacon, Reject> {
    if body.len() > MAX_BODY {
        return Err(Reject::TooLarge);
    }
    let raw: RawBeacon = serde_json::from_slice(body).map_err(|_| Reject::BadJson)?;
    validate(raw, targets)
}

pub fn validate(raw: RawBeacon, targets: &HashSet<String>) -> Result<Beacon, Reject> {
    let RawBeacon {
        nonce,
        token,
        results,
    } = raw;
    let nonce = Nonce::parse(&nonce).ok_or(Reject::BadNonce)?;
    if results.is_empty() || results.len() > MAX_RESULTS {
        return Err(Reject::ResultCount);
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        let RawResult {
            target,
            cold_ms,
            warm_ms,
            dns_ms,
            connect_ms,
            tls_ms,
            ttfb_ms,
            throughput_kbps,
            failed,
        } = r;
        if !targets.contains(&target) {
            return Err(Reject::UnknownTarget);
        }
        if !seen.insert(target.clone()) {
            return Err(Reject::DuplicateTarget);
        }
        // Whole fetches take time; phases may be 0 (a reused connection, a cached name).
        let positive = |v: Option<f64>| v.is_none_or(|v| v.is_finite() && v > 0.0 && v <= MAX_MS);
        let phase = |v: Option<f64>| v.is_none_or(|v| v.is_finite() && (0.0..=MAX_MS).contains(&v));
        let kbps = throughput_kbps.is_none_or(|v| v.is_finite() && v > 0.0 && v <= MAX_KBPS);
        if !(positive(cold_ms)
            && positive(warm_ms)
            && positive(ttfb_ms)
            && phase(dns_ms)
            && phase(connect_ms)
            && phase(tls_ms)
            && kbps)
        {
            return Err(Reject::OutOfRange);
        }
        if !failed && cold_ms.is_none() && warm_ms.is_none() {
            return Err(Reject::MissingTiming);
        }
        out.push(TargetResult {
            target,
            cold_ms,
            warm_ms,
            dns_ms,
            connect_ms,
            tls_ms,
            ttfb_ms,
            throughput_kbps,
            failed,
        });
    }
    Ok(Beacon {
        nonce,
        token,
        results: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: &str = "0123456789abcdef0123456789abcdef";

    fn targets() -> HashSet<String> {
        ["cdn-a", "cdn-b"].iter().map(|s| s.to_string()).collect()
    }

    fn body(results: &str) -> String {
        format!(r#"{{"nonce":"{NONCE}","token":"t","results":[{results}]}}"#)
    }

    #[test]
    fn a_good_beacon_parses() {
        let b = parse(
            body(
                r#"{"target":"cdn-a","cold_ms":80.5,"warm_ms":20,"dns_ms":0,"connect_ms":10,"tls_ms":12,"ttfb_ms":18,"throughput_kbps":5000},
                   {"target":"cdn-b","failed":true}"#,
            )
            .as_bytes(),
            &targets(),
        )
        .unwrap();
        assert_eq!(b.nonce.to_string(), NONCE);
        assert_eq!(b.results.len(), 2);
        assert_eq!(b.results[0].timing(), Some(20.0));
        assert_eq!(b.results[1].timing(), None);
    }

    #[test]
    fn bad_beacons_are_refused_with_their_reason() {
        let cases = [
            ("{", Reject::BadJson),
            (
                r#"{"nonce":"x","token":"t","results":[],"extra":1}"#,
                Reject::BadJson,
            ),
            (
                &body(r#"{"target":"cdn-a","cold_ms":"5"}"#),
                Reject::BadJson,
            ),
            (
                &body(r#"{"target":"cdn-a","cold_ms":5,"colour":1}"#),
                Reject::BadJson,
            ),
            (
                &body(r#"{"target":"cdn-a","cold_ms":5}"#).replace(NONCE, "ABCDEF"),
                Reject::BadNonce,
            ),
            (&body(""), Reject::ResultCount),
            (
                &body(r#"{"target":"cdn-z","cold_ms":5}"#),
                Reject::UnknownTarget,
            ),
            (
                &body(r#"{"target":"cdn-a","cold_ms":5},{"target":"cdn-a","cold_ms":6}"#),
                Reject::DuplicateTarget,
            ),
            (
                &body(r#"{"target":"cdn-a","cold_ms":0}"#),
                Reject::OutOfRange,
            ),
            (
                &body(r#"{"target":"cdn-a","cold_ms":-3}"#),
                Reject::OutOfRange,
            ),
            (
                &body(r#"{"target":"cdn-a","cold_ms":60001}"#),
                Reject::OutOfRange,
            ),
            (
                &body(r#"{"target":"cdn-a","cold_ms":5,"dns_ms":-1}"#),
                Reject::OutOfRange,
            ),
            (
                &body(r#"{"target":"cdn-a","cold_ms":5,"throughput_kbps":1e9}"#),
                Reject::OutOfRange,
            ),
            (&body(r#"{"target":"cdn-a"}"#), Reject::MissingTiming),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text.as_bytes(), &targets()), Err(want), "{text}");
        }
        let many: Vec<String> = (0..17)
            .map(|i| format!(r#"{{"target":"t{i}","cold_ms":5}}"#))
            .collect();
        let lots: HashSet<String> = (0..17).map(|i| format!("t{i}")).collect();
        assert_eq!(
            parse(body(&many.join(",")).as_bytes(), &lots),
            Err(Reject::ResultCount)
        );
        assert_eq!(
            parse(&vec![b' '; MAX_BODY + 1], &targets()),
            Err(Reject::TooLarge)
        );
    }

    #[test]
    fn labels_are_distinct() {
        let labels: HashSet<&str> = Reject::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), Reject::ALL.len());
        for (i, r) in Reject::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
