//! A directory of policy files: `<name>.toml`, plus `.history/<name>/<unix-ms>.toml` holding
//! every version that was replaced or deleted.
//!
//! Every write goes to a temporary file in the same directory, is fsynced, renamed over the
//! target and the directory is fsynced: a crash (even `kill -9`) leaves the old file or the
//! new one, never a torn one, and an acknowledged write survives a power cut.
//!
//! As a [`PolicyStore`], each compare-and-set holds an advisory lock (`flock` on `.lock` in
//! the directory) from reading the current version to renaming the new one into place, so
//! two writers on one directory, even in two processes, cannot both win. Change notices come
//! from inotify.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{CasError, Expect, FeedGuard, PolicyStore, StoredPolicy, etag};

#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct StoreError {
    pub path: String,
    pub reason: String,
}

fn error(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// A stored earlier version of a policy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Version {
    /// Milliseconds since the Unix epoch when it was replaced; also its id.
    pub id: u64,
    pub etag: String,
}

#[derive(Debug, Clone)]
pub struct PolicyDir {
    dir: PathBuf,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl PolicyDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path_of(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.toml"))
    }

    /// The `*.toml` files, sorted. A missing directory holds no policies.
    pub fn files(&self) -> Result<Vec<PathBuf>, StoreError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(error(
                    &self.dir,
                    format!("cannot read policy directory: {e}"),
                ));
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "toml")
                    && p.file_name()
                        .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
                    && p.is_file()
            })
            .collect();
        files.sort();
        Ok(files)
    }

    /// Write `<key>.toml` atomically and durably; the replaced version, if any, goes to history.
    pub fn write(&self, key: &str, text: &str) -> Result<(), StoreError> {
        fs::create_dir_all(&self.dir).map_err(|e| error(&self.dir, e))?;
        let path = self.path_of(key);
        self.keep_history(key, &path)?;
        write_atomic(&path, text.as_bytes())
    }

    /// Remove `<key>.toml`, keeping it in history.
    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path_of(key);
        self.keep_history(key, &path)?;
        fs::remove_file(&path).map_err(|e| error(&path, e))?;
        sync_dir(&self.dir)
    }

    /// Earlier versions, newest first.
    pub fn history(
        &self,
        key: &str,
        etag_of: impl Fn(&str) -> String,
    ) -> Result<Vec<Version>, StoreError> {
        let dir = self.history_dir(key);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(error(&dir, e)),
        };
        let mut versions = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name
                .strip_suffix(".toml")
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let text = fs::read_to_string(entry.path()).map_err(|e| error(&entry.path(), e))?;
            versions.push(Version {
                id,
                etag: etag_of(&text),
            });
        }
        versions.sort_by_key(|v| std::cmp::Reverse(v.id));
        Ok(versions)
    }

    pub fn version(&self, key: &str, id: u64) -> Result<Option<String>, StoreError> {
        let path = self.history_dir(key).join(format!("{id}.toml"));
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(error(&path, e)),
        }
    }

    fn history_dir(&self, key: &str) -> PathBuf {
        self.dir.join(".history").join(key)
    }

    /// Remove temporary files left by writers that were killed mid-write (they were never
    /// renamed into place, so nothing refers to them): beside the policies (policy files
    /// and the state file) and in each policy's history.
    pub fn clean_temp_files(&self) {
        let is_temp = |name: &str| {
            name.starts_with('.') && (name.contains(".toml.tmp-") || name.contains(".json.tmp-"))
        };
        let clean = |dir: &Path| {
            for entry in fs::read_dir(dir)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
            {
                if is_temp(&entry.file_name().to_string_lossy()) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        };
        clean(&self.dir);
        let histories = fs::read_dir(self.dir.join(".history"))
            .into_iter()
            .flatten();
        for entry in histories.filter_map(Result::ok) {
            clean(&entry.path());
        }
    }

    fn keep_history(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        let old = match fs::read_to_string(path) {
            Ok(old) => old,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(error(path, e)),
        };
        let dir = self.history_dir(key);
        fs::create_dir_all(&dir).map_err(|e| error(&dir, e))?;
        // Never overwrite an earlier entry, even for two edits in one millisecond. Only names
        // are listed here: reading every version made edits slower as history grew.
        let newest = fs::read_dir(&dir)
            .map_err(|e| error(&dir, e))?
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .strip_suffix(".toml")
                    .and_then(|s| s.parse::<u64>().ok())
            })
            .max();
        let id = newest.map_or(now_ms(), |n| now_ms().max(n + 1));
        write_atomic(&dir.join(format!("{id}.toml")), old.as_bytes())
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Temp file in the same directory → write → fsync → rename → fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&temp);
        return Err(error(path, e));
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| error(dir, e))
}

impl PolicyDir {
    /// Hold the directory's advisory lock until the returned file is dropped.
    fn lock(&self) -> Result<File, StoreError> {
        fs::create_dir_all(&self.dir).map_err(|e| error(&self.dir, e))?;
        let path = self.dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| error(&path, e))?;
        // SAFETY: flock on a file descriptor we own; it is released when the file closes.
        #[cfg(unix)]
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) } != 0 {
            return Err(error(&path, io::Error::last_os_error()));
        }
        Ok(file)
    }

    fn current_etag(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.get_text(key).map(|t| t.as_deref().map(etag))
    }

    fn get_text(&self, key: &str) -> Result<Option<String>, StoreError> {
        let path = self.path_of(key);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(error(&path, e)),
        }
    }
}

impl PolicyStore for PolicyDir {
    fn source_of(&self, key: &str) -> String {
        self.path_of(key).display().to_string()
    }

    fn list(&self) -> Result<Vec<StoredPolicy>, StoreError> {
        let mut out = Vec::new();
        for path in self.files()? {
            let text =
                fs::read_to_string(&path).map_err(|e| error(&path, format!("cannot read: {e}")))?;
            let key = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push(StoredPolicy {
                key,
                source: path.display().to_string(),
                text,
            });
        }
        Ok(out)
    }

    fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.get_text(key)
    }

    fn put_if(&self, key: &str, text: &str, expect: &Expect) -> Result<String, CasError> {
        let _lock = self.lock()?;
        let current = self.current_etag(key)?;
        if !expect.holds(current.as_deref()) {
            return Err(CasError::PreconditionFailed {
                current: current.unwrap_or_default(),
            });
        }
        self.write(key, text)?;
        Ok(etag(text))
    }

    fn delete_if(&self, key: &str, expect: &Expect) -> Result<(), CasError> {
        let _lock = self.lock()?;
        let current = self.current_etag(key)?;
        if !expect.holds(current.as_deref()) {
            return Err(CasError::PreconditionFailed {
                current: current.unwrap_or_default(),
            });
        }
        Ok(self.delete(key)?)
    }

    fn history(&self, key: &str) -> Result<Vec<Version>, StoreError> {
        PolicyDir::history(self, key, etag)
    }

    fn version(&self, key: &str, id: u64) -> Result<Option<String>, StoreError> {
        PolicyDir::version(self, key, id)
    }

    fn watch(&self, tx: tokio::sync::mpsc::Sender<()>) -> Option<FeedGuard> {
        watch_dir(&self.dir, tx).map(|w| Box::new(w) as FeedGuard)
    }
}

/// Watch a policy directory; each change to a `*.toml` file sends a (coalesced) notice.
pub fn watch_dir(
    dir: &Path,
    tx: tokio::sync::mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = event.is_ok_and(|e| {
            changes_content(&e.kind)
                && e.paths.iter().any(|p| {
                    p.extension().is_some_and(|x| x == "toml")
                        && p.file_name()
                            .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
                })
        });
        if relevant {
            let _ = tx.try_send(());
        }
    })
    .map_err(|e| tracing::warn!(%e, "cannot watch the policy directory; reload with SIGHUP"))
    .ok()?;
    if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
        tracing::warn!(%e, dir = %dir.display(), "cannot watch the policy directory; reload with SIGHUP");
        return None;
    }
    Some(watcher)
}

/// Whether a file event can change what a policy file holds. Opening or reading one cannot,
/// and the reload itself opens every file: counting opens made each reload trigger the next,
/// re-reading the whole directory every 50 ms for as long as the server ran.
fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("steerdns-store-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn temp_files_of_killed_writers_are_cleaned_everywhere() {
        let dir = temp_dir("clean");
        let store = PolicyDir::new(&dir);
        store.write("www.example.com", "one").unwrap();
        store.write("www.example.com", "two").unwrap();
        let history = dir.join(".history/www.example.com");
        let temps = [
            dir.join(".www.example.com.toml.tmp-1-0"),
            dir.join("..steerdns-state.json.tmp-1-1"),
            history.join(".1700000000000.toml.tmp-1-2"),
        ];
        for t in &temps {
            fs::write(t, "half").unwrap();
        }
        store.clean_temp_files();
        for t in &temps {
            assert!(!t.exists(), "{t:?} left");
        }
        assert_eq!(store.files().unwrap().len(), 1);
        assert_eq!(
            store
                .history("www.example.com", str::to_owned)
                .unwrap()
                .len(),
            1
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_replace_history_delete() {
        let dir = temp_dir("history");
        let store = PolicyDir::new(&dir);
        let etag = |t: &str| format!("e{}", t.len());
        store.write("www.example.com", "one").unwrap();
        store.write("www.example.com", "two!").unwrap();
        store.write("www.example.com", "three").unwrap();
        assert_eq!(
            fs::read_to_string(store.path_of("www.example.com")).unwrap(),
            "three"
        );
        let history = store.history("www.example.com", etag).unwrap();
        assert_eq!(
            history.iter().map(|v| v.etag.as_str()).collect::<Vec<_>>(),
            ["e4", "e3"]
        );
        assert_eq!(
            store
                .version("www.example.com", history[1].id)
                .unwrap()
                .as_deref(),
            Some("one")
        );
        store.delete("www.example.com").unwrap();
        assert!(store.files().unwrap().is_empty());
        assert_eq!(store.history("www.example.com", etag).unwrap().len(), 3);
        // No temp files are left behind.
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn compare_and_set_refuses_a_stale_etag() {
        let dir = temp_dir("cas");
        let store = PolicyDir::new(&dir);
        let one = store
            .put_if("a.example.com", "one", &Expect::Absent)
            .unwrap();
        assert!(matches!(
            store.put_if("a.example.com", "again", &Expect::Absent),
            Err(CasError::PreconditionFailed { current }) if current == one
        ));
        let two = store
            .put_if("a.example.com", "two", &Expect::Etag(one.clone()))
            .unwrap();
        assert!(matches!(
            store.put_if("a.example.com", "late", &Expect::Etag(one.clone())),
            Err(CasError::PreconditionFailed { current }) if current == two
        ));
        assert!(
            store
                .delete_if("a.example.com", &Expect::Etag(one))
                .is_err()
        );
        store.delete_if("a.example.com", &Expect::Present).unwrap();
        assert_eq!(store.get("a.example.com").unwrap(), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Receive a notice within `within`, or not.
    fn notice(rx: &mut tokio::sync::mpsc::Receiver<()>, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if rx.try_recv().is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn reading_policy_files_is_not_a_change_but_writing_is() {
        let dir = std::env::temp_dir().join(format!(
            "steerdns-watch-{}-{}",
            std::process::id(),
            etag(&format!("{:?}", SystemTime::now()))
                .trim_matches('"')
                .to_owned()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.example.com.toml");
        std::fs::write(&file, "name = \"a.example.com\"\n").unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let watcher = watch_dir(&dir, tx).expect("inotify is available");
        // What a reload does to every file: open and read it.
        for _ in 0..3 {
            std::fs::read_to_string(&file).unwrap();
            assert!(
                PolicyDir::new(&dir).files().unwrap().len() == 1,
                "one policy file"
            );
        }
        assert!(
            !notice(&mut rx, Duration::from_millis(300)),
            "reading the files must not trigger a reload"
        );
        std::fs::write(&file, "name = \"b.example.com\"\n").unwrap();
        assert!(
            notice(&mut rx, Duration::from_secs(5)),
            "writing a file triggers a reload"
        );
        drop(watcher);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
