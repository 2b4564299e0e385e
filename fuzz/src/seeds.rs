//! The seed corpus in `fuzz/corpus/<target>/`, and the cheap mutator the bounded `cargo test`
//! run applies to it (the coverage-guided engines bring their own).

use std::path::PathBuf;

/// The corpus directory of a target.
pub fn dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

/// Every seed of a target, sorted by file name. Panics if there are none: a target without
/// seeds would test almost nothing in a bounded run.
pub fn load(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = dir(target);
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| {
            let bytes = std::fs::read(e.path())
                .unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    assert!(!seeds.is_empty(), "{}: no seeds", dir.display());
    seeds.sort();
    seeds
}

/// One edit of a seed: what it does depends on `op`, at `at` (modulo the length), with
/// `value`. Random tuples of these make a mutation; bolero generates them.
pub type Edit = (u8, u16, u8);

/// Apply `edits` to `seed`: overwrite, insert, delete, flip a bit, truncate, duplicate a
/// span, or write an interesting value (0, 0xff, 0x7f, 0x80, 0xc0: lengths, flags and
/// compression pointers in DNS).
pub fn mutate(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for &(op, at, value) in edits {
        let len = out.len();
        let at = if len == 0 { 0 } else { usize::from(at) % len };
        match op % 8 {
            0 if len > 0 => out[at] = value,
            1 => out.insert(at, value),
            2 if len > 0 => {
                out.remove(at);
            }
            3 if len > 0 => out[at] ^= 1 << (value % 8),
            4 if value < 32 => out.truncate(at),
            5 if len > 0 => {
                let end = (at + usize::from(value % 16) + 1).min(len);
                let span = out[at..end].to_vec();
                let to = usize::from(value) % (len + 1);
                out.splice(to..to, span);
            }
            6 if len > 0 => out[at] = [0, 0xff, 0x7f, 0x80, 0xc0][usize::from(value % 5)],
            _ => {}
        }
    }
    out
}
