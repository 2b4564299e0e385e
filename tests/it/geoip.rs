//! GeoIP databases replaced on disk: a database swapped in by rename while the server reloads
//! (SIGHUP's reload, in-process) is taken whole, old or new, and queries during the swaps
//! always get the answer of one or the other; corrupt databases (MaxMind's broken test
//! databases, a truncated file, an empty one, noise) are refused with their path and reason
//! while the old database keeps serving.
//!
//! The two databases tell apart `214.0.1.0/24`: Oceania in GeoIP2-City-Test (the demo's
//! pop policy answers pop-sin, 192.0.2.3), not found in GeoLite2-City-Test (the default,
//! pop-iad, 192.0.2.1).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::*;

const CLIENT: &str = "214.0.1.0/24";
const NAME: &str = "pop.example.com";
/// The answer with GeoIP2-City-Test (Oceania) and with GeoLite2-City-Test (not found).
const WITH_CITY: &str = "192.0.2.3";
const WITH_LITE: &str = "192.0.2.1";

fn fixture(name: &str) -> PathBuf {
    Path::new(REPO).join("tests/fixtures/geoip").join(name)
}

/// A server whose `[geoip] city` is `geo/city.mmdb` in its own directory (a copy of
/// GeoIP2-City-Test), and that path.
async fn start_with_own_city(tag: &str) -> (TempDir, steerdns::app::Running, PathBuf) {
    let dir = TempDir::new(tag);
    let city = dir.join("geo/city.mmdb");
    std::fs::create_dir_all(city.parent().unwrap()).unwrap();
    std::fs::copy(fixture("GeoIP2-City-Test.mmdb"), &city).unwrap();
    let config = write_config(&dir, DEMO_ZONE, &demo_policies());
    let text = std::fs::read_to_string(&config).unwrap();
    let fixtures = fixture("GeoIP2-City-Test.mmdb").display().to_string();
    let replaced = text.replace(&format!("city = {fixtures:?}"), "city = \"geo/city.mmdb\"");
    assert_ne!(replaced, text, "write_config changed shape");
    std::fs::write(&config, replaced).unwrap();
    let running = start_file(&config).await;
    (dir, running, city)
}

/// Put `bytes` at `path` the way `geoipupdate` does: a temp file beside it, renamed over it.
fn replace_by_rename(path: &Path, bytes: &[u8], n: usize) {
    let temp = path.with_file_name(format!(".city.mmdb.new-{n}"));
    std::fs::write(&temp, bytes).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_geoip_database_replaced_by_rename_during_reloads_is_taken_whole() {
    let (_dir, running, city) = start_with_own_city("geoip-swap").await;
    let server = v4(&running);
    assert_eq!(answer_of(server, NAME, Some(CLIENT)).await, WITH_CITY);
    let databases = [
        std::fs::read(fixture("GeoIP2-City-Test.mmdb")).unwrap(),
        std::fs::read(fixture("GeoLite2-City-Test.mmdb")).unwrap(),
    ];

    // Swap the file back and forth, reload again and again, and query all the while.
    let done = Arc::new(AtomicBool::new(false));
    let seen = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let querier = {
        let (done, seen) = (done.clone(), seen.clone());
        tokio::spawn(async move {
            let mut wrong = Vec::new();
            while !done.load(Ordering::Relaxed) {
                match answer_of(server, NAME, Some(CLIENT)).await.as_str() {
                    WITH_CITY => seen[0].fetch_add(1, Ordering::Relaxed),
                    WITH_LITE => seen[1].fetch_add(1, Ordering::Relaxed),
                    other => {
                        wrong.push(other.to_owned());
                        0
                    }
                };
            }
            wrong
        })
    };
    let swapper = {
        let (done, city) = (done.clone(), city.clone());
        let databases = databases.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while !done.load(Ordering::Relaxed) {
                replace_by_rename(&city, &databases[n % 2], n);
                n += 1;
                std::thread::sleep(Duration::from_micros(200 * (n as u64 % 7)));
            }
            n
        })
    };
    let (mut reloads, mut failed) = (0, Vec::new());
    let mut last_generation = running.published.load().generation;
    while reloads < 60 {
        match running.reload().await {
            Ok(generation) => {
                assert!(
                    generation > last_generation,
                    "{generation} after {last_generation}"
                );
                last_generation = generation;
            }
            Err(e) => failed.push(e.to_string()),
        }
        reloads += 1;
    }
    done.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    let wrong = querier.await.unwrap();
    let (city_answers, lite_answers) = (
        seen[0].load(Ordering::Relaxed),
        seen[1].load(Ordering::Relaxed),
    );
    eprintln!(
        "{reloads} reloads during {swaps} swaps; answers: {city_answers} from the City DB, \
         {lite_answers} from the Lite DB"
    );
    assert!(
        failed.is_empty(),
        "a reload read a torn database: {failed:?}"
    );
    assert!(wrong.is_empty(), "answers from neither database: {wrong:?}");
    assert!(swaps >= 2, "the file was swapped");

    // Whatever the file holds last is what serves after one more reload.
    running.reload().await.expect("the last file loads");
    let last = std::fs::read(&city).unwrap();
    let want = if last == databases[0] {
        WITH_CITY
    } else {
        WITH_LITE
    };
    assert_eq!(answer_of(server, NAME, Some(CLIENT)).await, want);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_geoip_database_is_refused_and_the_old_one_serves() {
    let (_dir, running, city) = start_with_own_city("geoip-corrupt").await;
    let server = v4(&running);
    let http = running.http_addr.unwrap();
    assert_eq!(answer_of(server, NAME, Some(CLIENT)).await, WITH_CITY);
    let good = std::fs::read(fixture("GeoIP2-City-Test.mmdb")).unwrap();
    let noise: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let corrupt: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "MaxMind's GeoIP2-City-Test-Broken-Double-Format",
            std::fs::read(fixture("broken/GeoIP2-City-Test-Broken-Double-Format.mmdb")).unwrap(),
            "double of size",
        ),
        (
            "MaxMind's GeoIP2-City-Test-Invalid-Node-Count",
            std::fs::read(fixture("broken/GeoIP2-City-Test-Invalid-Node-Count.mmdb")).unwrap(),
            "search tree",
        ),
        (
            "the first half of a good one",
            good[..good.len() / 2].to_vec(),
            "valid MaxMind DB",
        ),
        ("an empty file", Vec::new(), "valid MaxMind DB"),
        ("noise", noise, "valid MaxMind DB"),
    ];
    let generation = running.published.load().generation;
    for (n, (what, bytes, reason)) in corrupt.iter().enumerate() {
        replace_by_rename(&city, bytes, n);
        let error = running
            .reload()
            .await
            .expect_err(&format!("{what} is refused"))
            .to_string();
        eprintln!("{what}: {error}");
        assert!(
            error.contains(&city.display().to_string()) && error.contains(reason),
            "{what}: the error names the file and why: {error}"
        );
        assert_eq!(running.published.load().generation, generation, "{what}");
        assert_eq!(
            answer_of(server, NAME, Some(CLIENT)).await,
            WITH_CITY,
            "{what}: the old database keeps serving"
        );
        let ready = http_request(http, "GET", "/readyz", &[], b"").await;
        assert!(ready.body.contains("stale"), "{what}: {ready}");
    }
    // A good database again: taken at the next reload.
    replace_by_rename(
        &city,
        &std::fs::read(fixture("GeoLite2-City-Test.mmdb")).unwrap(),
        99,
    );
    running.reload().await.expect("a good database loads");
    assert_eq!(answer_of(server, NAME, Some(CLIENT)).await, WITH_LITE);
    let ready = http_request(http, "GET", "/readyz", &[], b"").await;
    assert!(!ready.body.contains("stale"), "{ready}");
    running.shutdown().await;
}
