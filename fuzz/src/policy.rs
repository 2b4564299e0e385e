//! Target `policy`: a policy file (`policies/*.toml`, also the body of a policy PUT).
//!
//! Invariants: nothing panics; a policy that validates is checked against the demo's zones
//! and GeoIP data as a load would, and one that passes is compiled into its decision table
//! and rendered, so the whole way from text to what DNS serves is exercised.

use std::sync::LazyLock;
use std::time::SystemTime;

use steerdns::snapshot::{Snapshot, Steered, check_policy};

static DEMO: LazyLock<Snapshot> = LazyLock::new(|| {
    steerdns::control::build_snapshot(&steerdns::demo::config(), 1).expect("the demo loads")
});

pub fn check(data: &[u8]) {
    if data.len() > crate::MAX_INPUT {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policy = match steerdns::policy::parse("fuzz.toml", text) {
        Ok(policy) => policy,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an empty error");
            return;
        }
    };
    let demo = &*DEMO;
    if check_policy(&policy, &demo.zones, &demo.geo).is_err() {
        return;
    }
    let steered = Steered::compile(policy, &demo.geo, &demo.inputs(SystemTime::now()));
    assert_eq!(
        steered.wire.len(),
        steered.policy.targets.len(),
        "every target is rendered"
    );
}
