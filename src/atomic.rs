//! Atomic file replacement for run artifacts.
//!
//! A training run rewrites its checkpoint, metrics and curves every epoch; a run killed in the
//! middle of such a write must still leave the previous, complete file in place. So every
//! artifact is written to a temporary file in the same directory (a rename is only atomic
//! within one file system), flushed and fsynced, and then renamed over the target.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Result};

/// Replaces `path` with `bytes`: either the old file or the new one is there, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        let mut file = File::create(tmp).map_err(|e| Error::io(tmp, "creating", e))?;
        file.write_all(bytes).map_err(|e| Error::io(tmp, "writing", e))?;
        Ok(())
    })
}

/// Like [`write_atomic`], for writers that insist on creating the file themselves (plotters'
/// bitmap backend): `write` gets a temporary path with the same extension as `path` (the
/// image encoder picks the format from it) and must leave the complete file there.
pub(crate) fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let tmp = temp_path(path);
    let result = write(&tmp).and_then(|()| {
        // Flush to disk before the rename: otherwise a crash can leave the new name pointing
        // at a file whose data never reached the disk.
        File::options()
            .write(true)
            .open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&tmp, "syncing", e))?;
        fs::rename(&tmp, path).map_err(|e| Error::io(path, "renaming a temporary file onto", e))
    });
    if result.is_err() {
        // Best effort: a leftover hidden temporary file is harmless, the error is what matters.
        let _ = fs::remove_file(&tmp);
        return result;
    }
    sync_dir(path);
    Ok(())
}

/// `.<name>.tmp-<pid>-<n>.<ext>` beside `path`: hidden, unique per process and call, and with
/// the target's extension.
fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    // No process ids in a browser (std::process::id panics there); writing fails anyway,
    // with an error, since wasm32-unknown-unknown has no files.
    #[cfg(target_arch = "wasm32")]
    let pid = 0;
    #[cfg(not(target_arch = "wasm32"))]
    let pid = std::process::id();
    let mut tmp = format!(".{name}.tmp-{pid}-{n}");
    if let Some(ext) = path.extension() {
        tmp.push('.');
        tmp.push_str(&ext.to_string_lossy());
    }
    path.with_file_name(tmp)
}

/// Makes the rename itself durable (the directory entry) where the OS allows it. Failure is
/// ignored: the file is complete either way, only its survival of a power cut is at stake.
fn sync_dir(path: &Path) {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.txt")]);
    }

    #[test]
    fn a_failed_write_keeps_the_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        write_atomic(&path, b"previous").unwrap();
        let err = write_atomic_with(&path, |tmp| {
            fs::write(tmp, b"half a fi").unwrap();
            Err(Error::io(tmp, "writing", std::io::Error::other("disk full")))
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"previous");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "temporary file left behind");
    }

    #[test]
    fn missing_directory_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/x.csv");
        let err = write_atomic(&path, b"x").unwrap_err().to_string();
        assert!(err.contains("no/such/dir"), "{err}");
    }

    #[test]
    fn temp_path_keeps_extension_and_directory() {
        let t = temp_path(Path::new("runs/x/curves.png"));
        assert_eq!(t.parent(), Some(Path::new("runs/x")));
        assert_eq!(t.extension().unwrap(), "png");
        assert!(t.file_name().unwrap().to_string_lossy().starts_with(".curves.png.tmp-"));
    }
}
