//! Files and directories only their owner may read: the SQLite database holds password
//! hashes, sealed wallet keys and API-key digests, and its `-wal` and `-shm` files hold the
//! same pages. SQLite gives those two (and its journal) the database file's own mode, so
//! creating the database owner-only is what makes them owner-only.

use std::fs;
use std::io;
use std::path::Path;

/// Creates `dir` and any missing parents with mode 0700 (existing ones are left as they are).
///
/// # Errors
/// A component cannot be created.
pub fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Options that create a file with mode 0600 when it does not exist yet.
pub fn private_file_options() -> fs::OpenOptions {
    #[allow(unused_mut, reason = "only Unix sets a mode")]
    let mut options = fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Creates an empty file with mode 0600 unless one exists (an empty file is an empty SQLite
/// database). An existing file that others may read is left as it is, with a warning: the
/// operator may have meant it, and SQLite copies its mode to the WAL.
///
/// # Errors
/// The file could not be created or inspected.
pub fn create_private_file(path: &Path) -> io::Result<()> {
    match private_file_options()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            warn_if_shared(path);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Logs a warning when group or others may read or write `path`.
pub fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "this file holds secrets and others may read it; `chmod 600` it (and its \
                     directory 700)"
                );
            }
        }
    }
}
