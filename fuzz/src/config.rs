//! Target `config`: the TOML config file, as `steerdns check` and `serve --config` read it.
//!
//! Invariants: nothing panics; a refusal names a reason. Paths resolve against an empty
//! directory, so the target reads no files of its own.

use std::path::Path;

use steerdns::config::Config;

pub fn check(data: &[u8]) {
    if data.len() > crate::MAX_INPUT {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::parse("fuzz.toml", text, Path::new("/nonexistent-fuzz-base")) {
        assert!(!e.to_string().is_empty(), "an empty error");
    }
}
