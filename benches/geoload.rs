//! Loading real GeoIP databases: `GeoDb::load` of GeoLite2-City (and an ASN database, and an
//! override file of many prefixes, when given), the startup cost that dominates `/readyz`.
//!
//! Needs the real databases, which are not in the repository and are never downloaded here:
//! `STEERDNS_BENCH_CITY_DB` (default: the cache `bench/memory/run.sh` and `bench/compare.sh`
//! fill, `~/.cache/steerdns-bench/GeoLite2-City.mmdb`), optionally `STEERDNS_BENCH_ASN_DB`
//! and `STEERDNS_BENCH_OVERRIDE_FILE` (`[geoip] override_file` format). Without a City
//! database the bench says so and measures nothing.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use steerdns::config::Config;
use steerdns::geo::{DbSource, GeoDb};

fn city_db() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("STEERDNS_BENCH_CITY_DB") {
        return Some(PathBuf::from(path));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
    let path = cache.join("steerdns-bench/GeoLite2-City.mmdb");
    path.is_file().then_some(path)
}

fn bench(c: &mut Criterion) {
    let Some(city) = city_db() else {
        eprintln!(
            "geoload: skipped: no real City database (set STEERDNS_BENCH_CITY_DB, or run \
             bench/memory/run.sh once to fill the cache); nothing is downloaded here"
        );
        return;
    };
    let asn = std::env::var_os("STEERDNS_BENCH_ASN_DB").map(PathBuf::from);
    let mut group = c.benchmark_group("geoload");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    let city_source = DbSource::File(city.clone());
    group.bench_function("city", |b| {
        b.iter(|| black_box(GeoDb::load(&city_source, None, &[]).expect("City DB loads")))
    });
    if let Some(asn) = &asn {
        let asn_source = DbSource::File(asn.clone());
        group.bench_function("city_and_asn", |b| {
            b.iter(|| {
                black_box(GeoDb::load(&city_source, Some(&asn_source), &[]).expect("DBs load"))
            })
        });
    }
    if let Some(file) = std::env::var_os("STEERDNS_BENCH_OVERRIDE_FILE") {
        // Through the config, as the server reads it: the file's parse is part of the cost.
        let text = format!(
            "[geoip]\ncity = {:?}\noverride_file = {:?}\n\n[[zone]]\norigin = \"example.com\"\nrecords = [\"@ 3600 IN SOA ns1 hostmaster 1 3600 600 604800 30\", \"@ 3600 IN NS ns1\"]\n",
            city.display().to_string(),
            PathBuf::from(file).display().to_string(),
        );
        group.bench_function("city_and_override_file", |b| {
            b.iter(|| {
                let config = Config::parse("bench.toml", &text, Path::new(".")).expect("parses");
                black_box(
                    GeoDb::load(&config.geoip_city, None, &config.geoip_overrides).expect("loads"),
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
