//! The single-node [`MeasurementStore`]: the durable state in memory, written through to a
//! small JSON file (atomically, like the policy files) so that a restart keeps health
//! overrides and halted ramps. Without a path (the embedded demo) it is memory only.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::policy_dir::write_atomic;
use super::{Durable, MeasurementStore, StoreError, StoredOverride};

/// The file name used inside a policy directory (not `*.toml`, so the policy watch ignores it).
pub const FILE_NAME: &str = ".steerdns-state.json";

pub struct StateFile {
    path: Option<PathBuf>,
    data: Mutex<Durable>,
}

impl StateFile {
    /// Memory only.
    pub fn memory() -> Self {
        Self {
            path: None,
            data: Mutex::new(Durable::default()),
        }
    }

    /// Backed by `path`; reads what it holds (a missing file holds nothing).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let data = match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| StoreError {
                path: path.display().to_string(),
                reason: format!("not valid steerdns state: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Durable::default(),
            Err(e) => {
                return Err(StoreError {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                });
            }
        };
        Ok(Self {
            path: Some(path.to_owned()),
            data: Mutex::new(data),
        })
    }

    fn change(&self, f: impl FnOnce(&mut Durable) -> bool) -> Result<(), StoreError> {
        let mut data = self.data.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = data.clone();
        if !f(&mut next) {
            return Ok(());
        }
        if let Some(path) = &self.path {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| StoreError {
                    path: dir.display().to_string(),
                    reason: e.to_string(),
                })?;
            }
            let json = serde_json::to_vec_pretty(&next).map_err(|e| StoreError {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            write_atomic(path, &json)?;
        }
        *data = next;
        Ok(())
    }
}

impl MeasurementStore for StateFile {
    fn load(&self) -> Result<Durable, StoreError> {
        Ok(self.data.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn set_override(&self, target: &str, value: Option<StoredOverride>) -> Result<(), StoreError> {
        self.change(|d| match value {
            Some(v) => d.overrides.insert(target.to_owned(), v.clone()) != Some(v),
            None => d.overrides.remove(target).is_some(),
        })
    }

    fn set_halted(&self, target: &str, halted: bool) -> Result<(), StoreError> {
        self.change(|d| {
            if halted {
                d.halted_ramps.insert(target.to_owned())
            } else {
                d.halted_ramps.remove(target)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_and_halted_ramps_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("steerdns-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join(FILE_NAME);
        let store = StateFile::open(&path).unwrap();
        let up = StoredOverride {
            state: "down".into(),
            since_ms: 7,
        };
        store.set_override("cdn-a", Some(up.clone())).unwrap();
        store.set_override("cdn-b", Some(up.clone())).unwrap();
        store.set_override("cdn-b", None).unwrap();
        store.set_halted("cdn-c", true).unwrap();
        drop(store);
        let again = StateFile::open(&path).unwrap().load().unwrap();
        assert_eq!(again.overrides.len(), 1);
        assert_eq!(again.overrides["cdn-a"], up);
        assert!(again.halted_ramps.contains("cdn-c"));
        std::fs::write(&path, "{not json").unwrap();
        let err = StateFile::open(&path)
            .err()
            .expect("a broken file is an error");
        assert!(err.to_string().contains(FILE_NAME), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
