//! Per-class outcome rows shared between tables. A row has one entry per location class
//! (3,672 on GeoLite2-City, 14 KiB), and names of one policy shape compile to equal rows
//! (outcomes are numbered in the order they are first met, and targets named per name do not
//! change the numbering): 1,000 names of four shapes hold a handful of rows, not 1,000
//! copies. Control plane only: a table holds its `Arc`, queries never touch this map.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::OutcomeId;

/// Rows by content hash; entries whose tables are all gone are pruned now and then.
struct Interner {
    rows: HashMap<u64, Vec<Weak<[OutcomeId]>>>,
    since_prune: usize,
}

static ROWS: Mutex<Option<Interner>> = Mutex::new(None);

/// How many interns between sweeps of dead entries (a dead `Weak` still holds its row's
/// memory until it is dropped).
const PRUNE_EVERY: usize = 1024;

/// The shared row equal to `row`, or `row` itself, newly shared.
pub(super) fn intern(row: Vec<OutcomeId>) -> Arc<[OutcomeId]> {
    let mut hasher = DefaultHasher::new();
    row.hash(&mut hasher);
    let key = hasher.finish();
    let mut guard = ROWS.lock().unwrap_or_else(PoisonError::into_inner);
    let interner = guard.get_or_insert_with(|| Interner {
        rows: HashMap::new(),
        since_prune: 0,
    });
    interner.since_prune += 1;
    if interner.since_prune >= PRUNE_EVERY {
        interner.since_prune = 0;
        interner.rows.retain(|_, rows| {
            rows.retain(|r| r.strong_count() > 0);
            !rows.is_empty()
        });
    }
    let bucket = interner.rows.entry(key).or_default();
    if let Some(shared) = bucket
        .iter()
        .filter_map(Weak::upgrade)
        .find(|shared| **shared == *row)
    {
        return shared;
    }
    bucket.retain(|r| r.strong_count() > 0);
    let shared: Arc<[OutcomeId]> = row.into();
    bucket.push(Arc::downgrade(&shared));
    shared
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_rows_share_one_allocation_and_different_ones_do_not() {
        let row = |ids: &[u32]| ids.iter().map(|i| OutcomeId(*i)).collect::<Vec<_>>();
        let a = intern(row(&[0, 1, 1, 2, 7_000_001]));
        let b = intern(row(&[0, 1, 1, 2, 7_000_001]));
        let c = intern(row(&[0, 1, 2, 2, 7_000_001]));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(*c, *row(&[0, 1, 2, 2, 7_000_001]));
        drop((a, b));
        let d = intern(row(&[0, 1, 1, 2, 7_000_001]));
        assert_eq!(*d, *row(&[0, 1, 1, 2, 7_000_001]));
    }
}
