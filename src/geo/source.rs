//! Where a database's bytes come from: a file the operator named, mapped into memory, or bytes
//! bundled in the binary.
//!
//! A file is mapped, not read: its pages belong to the page cache, only those that lookups
//! touch stay resident, and two servers (or the old and the new database during a reload)
//! share them. The mapping is read-only and private to this process.
//!
//! A mapped file must be replaced by renaming a new file over it (as `geoipupdate` does): the
//! old mapping keeps the old inode until the last reader is dropped. Writing into the file in
//! place (`cp` over it, a truncate) would change or remove pages under a running server.

use std::path::PathBuf;
use std::sync::Arc;

use maxminddb::{Mmap, Reader};

use super::GeoError;

/// Where a database comes from: a file the operator named, or bytes bundled in the binary.
#[derive(Debug, Clone)]
pub enum DbSource {
    File(PathBuf),
    Bundled {
        name: &'static str,
        bytes: &'static [u8],
    },
}

/// A database's bytes: a mapped file or a bundled slice (never copied).
pub enum DbBytes {
    Mapped(Arc<Mmap>),
    Bundled(&'static [u8]),
}

impl AsRef<[u8]> for DbBytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            DbBytes::Mapped(map) => map,
            DbBytes::Bundled(bytes) => bytes,
        }
    }
}

/// The mapping behind a reader, to let go of the pages the load walk touched.
pub(crate) struct Mapping(Arc<Mmap>);

impl Mapping {
    /// Drop this process's references to the mapped pages (they stay in the page cache).
    /// The load walk reads every page once; queries need only the few along their lookups
    /// (most steered queries none), which fault back in when read. Without this the whole
    /// file would count as resident for good.
    pub(crate) fn release_pages(&self) {
        // SAFETY: the range is exactly this live, read-only, private file mapping; after
        // MADV_DONTNEED its pages read back from the file unchanged, so no reader sees a
        // difference (this is not so for writable private maps, which this is not).
        unsafe {
            libc::madvise(
                self.0.as_ptr() as *mut libc::c_void,
                self.0.len(),
                libc::MADV_DONTNEED,
            );
        }
    }
}

impl DbSource {
    pub(crate) fn describe(&self) -> String {
        match self {
            DbSource::File(path) => path.display().to_string(),
            DbSource::Bundled { name, .. } => format!("bundled {name}"),
        }
    }

    /// The reader, and for a file its mapping (see [`Mapping::release_pages`]).
    pub(crate) fn load(&self) -> Result<(Reader<DbBytes>, Option<Mapping>), GeoError> {
        let mut mapping = None;
        let bytes = match self {
            DbSource::File(path) => {
                let read_error = |e: std::io::Error| GeoError::Read {
                    db: self.describe(),
                    reason: e.to_string(),
                };
                let file = std::fs::File::open(path).map_err(read_error)?;
                if file.metadata().map_err(read_error)?.len() == 0 {
                    // An empty file cannot be mapped; say what it is, not what mmap says.
                    return Err(GeoError::Invalid {
                        db: self.describe(),
                        reason: "the file is empty".into(),
                    });
                }
                // SAFETY: the map is read-only and private. The file may change under it only
                // if someone writes into it in place, which the module documentation and the
                // README rule out (replace GeoIP files by rename, as geoipupdate does).
                let map = Arc::new(unsafe { Mmap::map(&file) }.map_err(read_error)?);
                mapping = Some(Mapping(map.clone()));
                DbBytes::Mapped(map)
            }
            DbSource::Bundled { bytes, .. } => DbBytes::Bundled(bytes),
        };
        let reader = Reader::from_source(bytes).map_err(|e| GeoError::Invalid {
            db: self.describe(),
            reason: e.to_string(),
        })?;
        Ok((reader, mapping))
    }
}
