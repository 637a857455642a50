//! File permissions of the SQLite database (issue 8, item 6): it holds password hashes
//! and, unless encrypted, the private signing keys.
//!
//! Before SQLite opens a database that does not exist yet, its directory is created
//! `0700` and the file itself `0600`. SQLite then creates the `-wal` and `-shm` files
//! with the database file's own mode (its unix VFS copies it), so all three are private
//! from the first byte — no window in which a loose umask applies, and no need to change
//! the process-wide umask. An existing database, its `-wal`/`-shm` files and its
//! directory are checked at start-up: a looser mode is logged as a warning (not
//! changed: the operator may share the directory on purpose).

use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use sqlx::sqlite::SqliteConnectOptions;

use crate::error::{Error, Result};

/// The database file behind a `sqlite:` URL; `None` for in-memory databases.
pub(crate) fn sqlite_path(url: &str) -> Result<Option<PathBuf>> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| Error::config("database_url", e.to_string()))?;
    let path = options.get_filename();
    let memory = url.contains("mode=memory")
        || path
            .to_str()
            .is_some_and(|p| p.starts_with("file:sqlx-in-memory"));
    Ok((!memory).then(|| path.to_path_buf()))
}

/// Creates `dir` (and missing parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Prepares the database file of a `sqlite:` URL: a missing directory is created 0700,
/// a missing file 0600 (empty: SQLite initialises an empty file as a new database).
/// Returns warnings about existing files or directories readable by others.
pub(crate) fn prepare_sqlite(url: &str) -> Result<Vec<String>> {
    let Some(path) = sqlite_path(url)? else {
        return Ok(Vec::new());
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        create_private_dir(&dir).map_err(|e| {
            Error::config(
                "database_url",
                format!("cannot create directory {}: {e}", dir.display()),
            )
        })?;
    }
    if !path.exists() {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        match options.open(&path) {
            Ok(_) => {}
            // Another process created it meanwhile: fine, check it below.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(Error::config(
                    "database_url",
                    format!("cannot create {}: {e}", path.display()),
                ));
            }
        }
    }
    Ok(loose_permissions(&path, &dir))
}

/// Warnings for the database, its `-wal`/`-shm` files and its directory when group or
/// others have any access.
pub(crate) fn loose_permissions(db: &Path, dir: &Path) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut files = vec![db.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    for file in files {
        if let Some(mode) = mode_of(&file).filter(|m| m & 0o077 != 0) {
            warnings.push(format!(
                "{} has mode {mode:04o}: it holds password hashes and signing keys; \
                 `chmod 600` it (and its -wal/-shm files)",
                file.display()
            ));
        }
    }
    if let Some(mode) = mode_of(dir).filter(|m| m & 0o077 != 0) {
        warnings.push(format!(
            "the database directory {} has mode {mode:04o}; `chmod 700` it so that only \
             the issuer's user can reach the database",
            dir.display()
        ));
    }
    warnings
}

#[cfg(unix)]
fn mode_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn mode_of(_path: &Path) -> Option<u32> {
    None
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn new_database_and_directory_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data/nested");
        let db = dir.join("issuer.db");
        let warnings = prepare_sqlite(&format!("sqlite://{}", db.display())).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(mode_of(&db), Some(0o600));
        assert_eq!(mode_of(&dir), Some(0o700));
        assert_eq!(mode_of(&tmp.path().join("data")), Some(0o700));
    }

    #[test]
    fn loose_existing_files_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let db = tmp.path().join("issuer.db");
        std::fs::write(&db, b"").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let warnings = prepare_sqlite(&format!("sqlite://{}", db.display())).unwrap();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("0644"));
        assert!(warnings[1].contains("0755"));
    }

    #[test]
    fn in_memory_databases_are_skipped() {
        assert!(sqlite_path("sqlite::memory:").unwrap().is_none());
        assert!(prepare_sqlite("sqlite::memory:").unwrap().is_empty());
    }
}
