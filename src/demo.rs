//! The embedded default: what `steerdns serve` runs with no config file.
//!
//! It is `examples/steerdns.toml` with its files compiled into the binary (the demo zone, the
//! policies in `policies/`, MaxMind's fake test databases), so a newcomer needs nothing but
//! the binary. Depends on `config` and `geo`.

use std::path::Path;

use crate::config::{Config, PolicySource, TextSource};
use crate::geo::DbSource;

const CONFIG: &str = include_str!("../examples/steerdns.toml");
const ZONE: &str = include_str!("../examples/zones/example.com.zone");
const POLICIES: [(&str, &str); 8] = [
    (
        "policies/www.example.com.toml",
        include_str!("../policies/www.example.com.toml"),
    ),
    (
        "policies/pop.example.com.toml",
        include_str!("../policies/pop.example.com.toml"),
    ),
    (
        "policies/weighted.example.com.toml",
        include_str!("../policies/weighted.example.com.toml"),
    ),
    (
        "policies/ramp.example.com.toml",
        include_str!("../policies/ramp.example.com.toml"),
    ),
    (
        "policies/failover.example.com.toml",
        include_str!("../policies/failover.example.com.toml"),
    ),
    (
        "policies/ap.example.com.toml",
        include_str!("../policies/ap.example.com.toml"),
    ),
    (
        "policies/perf.example.com.toml",
        include_str!("../policies/perf.example.com.toml"),
    ),
    (
        "policies/rum.example.com.toml",
        include_str!("../policies/rum.example.com.toml"),
    ),
];
const CITY_DB: &[u8] = include_bytes!("../tests/fixtures/geoip/GeoIP2-City-Test.mmdb");
const ASN_DB: &[u8] = include_bytes!("../tests/fixtures/geoip/GeoLite2-ASN-Test.mmdb");

/// MaxMind's fake GeoIP2-City test database (MIT OR Apache-2.0).
pub fn city_db() -> DbSource {
    DbSource::Bundled {
        name: "GeoIP2-City-Test.mmdb (fake test data)",
        bytes: CITY_DB,
    }
}

/// MaxMind's fake GeoLite2-ASN test database (MIT OR Apache-2.0).
pub fn asn_db() -> DbSource {
    DbSource::Bundled {
        name: "GeoLite2-ASN-Test.mmdb (fake test data)",
        bytes: ASN_DB,
    }
}

/// The demo configuration, entirely from the binary.
pub fn config() -> Config {
    // The example file is part of the build and covered by tests; failing here is a bug.
    let mut config = Config::parse(
        "embedded demo (examples/steerdns.toml)",
        CONFIG,
        Path::new("."),
    )
    .expect("examples/steerdns.toml is valid");
    config.geoip_city = city_db();
    config.geoip_asn = Some(asn_db());
    for zone in &mut config.zones {
        zone.file = Some(TextSource::Embedded {
            name: "examples/zones/example.com.zone".into(),
            text: ZONE,
        });
    }
    config.policies = PolicySource::Embedded(
        POLICIES
            .iter()
            .map(|(name, text)| TextSource::Embedded {
                name: (*name).into(),
                text,
            })
            .collect(),
    );
    config
}
