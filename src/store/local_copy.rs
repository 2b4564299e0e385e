//! A fleet node's local copy of the fleet's policies (`[store] cache_dir`), written off the
//! path that installs them: the copy is only read by a node that starts while Redis is
//! down, so a slow disk (an fsync that waits behind other writers' data, hundreds of
//! milliseconds to seconds on a busy machine) must never delay serving what was listed.
//!
//! [`LocalCopy::offer`] leaves the newest listing and hands the write to a blocking task;
//! writes run one at a time and each takes the newest listing offered so far, so the copy
//! ends at the last listing whatever order the tasks run in. A failed write is logged and
//! retried with the next listing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;
use tracing::warn;

use super::StoreError;
use super::policy_dir::write_atomic;

type Listing = BTreeMap<String, String>;

pub struct LocalCopy {
    dir: PathBuf,
    /// The newest listing not yet taken by a write.
    pending: Mutex<Option<Listing>>,
    /// Held while writing: one write at a time.
    writing: Mutex<()>,
    /// The last write failed: write the next listing even if it is unchanged.
    failed: AtomicBool,
}

impl LocalCopy {
    pub fn new(dir: &Path) -> Arc<Self> {
        Arc::new(LocalCopy {
            dir: dir.to_owned(),
            pending: Mutex::new(None),
            writing: Mutex::new(()),
            failed: AtomicBool::new(false),
        })
    }

    /// Whether the last write failed (so an unchanged listing must be offered again).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Write `policies` (one `<key>.toml` each, others removed) in the background.
    pub fn offer(self: &Arc<Self>, policies: Listing, handle: &Handle) {
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = Some(policies);
        let copy = self.clone();
        handle.spawn_blocking(move || copy.flush());
    }

    /// Write the newest pending listing, if another write has not taken it already.
    pub fn flush(&self) {
        let _one_at_a_time = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let Some(policies) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        match self.write(&policies) {
            Ok(()) => self.failed.store(false, Ordering::Release),
            Err(e) => {
                self.failed.store(true, Ordering::Release);
                warn!(%e, "could not update the local copy of the fleet's policies");
            }
        }
    }

    fn write(&self, policies: &Listing) -> Result<(), StoreError> {
        let err = |e: std::io::Error| StoreError {
            path: self.dir.display().to_string(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(&self.dir).map_err(err)?;
        for (key, text) in policies {
            write_atomic(&self.dir.join(format!("{key}.toml")), text.as_bytes())?;
        }
        for entry in std::fs::read_dir(&self.dir)
            .map_err(err)?
            .filter_map(Result::ok)
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(key) = name.strip_suffix(".toml")
                && !name.starts_with('.')
                && !policies.contains_key(key)
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever order the writes run in, the copy ends at the newest listing offered, and
    /// keys no longer listed are removed.
    #[test]
    fn the_copy_ends_at_the_newest_listing() {
        let dir = std::env::temp_dir().join(format!("steerdns-local-copy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let copy = LocalCopy::new(&dir);
        let listing = |pairs: &[(&str, &str)]| -> Listing {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        copy.offer(
            listing(&[("a.example.com", "one"), ("b.example.com", "x")]),
            rt.handle(),
        );
        copy.offer(listing(&[("a.example.com", "two")]), rt.handle());
        // The blocking tasks run when the runtime is dropped at the latest; the second
        // write (whichever task runs it) takes the newest listing.
        drop(rt);
        copy.flush();
        let read = |k: &str| std::fs::read_to_string(dir.join(format!("{k}.toml"))).ok();
        assert_eq!(read("a.example.com").as_deref(), Some("two"));
        assert_eq!(read("b.example.com"), None);
        assert!(!copy.failed());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
