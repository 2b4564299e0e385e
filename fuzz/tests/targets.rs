//! The fuzz targets, one test each (the names `fuzz/run.sh` takes).
//!
//! Built by cargo-bolero (`cfg(fuzzing)`), each test is a coverage-guided fuzz target fed raw
//! bytes. In plain `cargo test`, each replays its seed corpus (`fuzz/corpus/<name>/`) and then
//! runs bolero's random engine for about a second (`BOLERO_RANDOM_TEST_TIME_MS` changes it,
//! `BOLERO_RANDOM_SEED` replays a failure) on mutations of the seeds: random bytes alone
//! rarely get past the first length check of a DNS message or a TOML parser.

use steerdns_fuzz::seeds::{self, Edit};

macro_rules! target {
    ($name:ident) => {
        #[test]
        fn $name() {
            if cfg!(fuzzing) {
                bolero::check!().for_each(|data: &[u8]| steerdns_fuzz::$name::check(data));
                return;
            }
            let seeds = seeds::load(stringify!($name));
            for (file, seed) in &seeds {
                eprintln!("seed {file}");
                steerdns_fuzz::$name::check(seed);
            }
            bolero::check!()
                .with_type::<(u16, Vec<Edit>)>()
                .for_each(|(pick, edits)| {
                    let (_, seed) = &seeds[usize::from(*pick) % seeds.len()];
                    steerdns_fuzz::$name::check(&seeds::mutate(seed, edits));
                });
        }
    };
}

target!(udp_query);
target!(zone_file);
target!(config);
target!(policy);
target!(admin_api);
target!(beacon);
target!(probe_results);
