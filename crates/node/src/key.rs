//! A member's key file: created by `init` when missing, never overwritten.

use std::path::{Path, PathBuf};

use ordo_core::{CoreError, KeyPair};

/// The key in `path`, generated (with its directory) when the file is missing; and whether
/// this call created it. Runs off the async workers: it reads and writes a file.
pub async fn load_or_create(path: PathBuf) -> Result<(KeyPair, bool), CoreError> {
    let file = path.display().to_string();
    tokio::task::spawn_blocking(move || load_or_create_blocking(&path))
        .await
        .map_err(|e| CoreError::KeyFile {
            path: file,
            reason: e.to_string(),
        })?
}

fn load_or_create_blocking(path: &Path) -> Result<(KeyPair, bool), CoreError> {
    if path.exists() {
        return Ok((KeyPair::read_file(path)?, false));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| CoreError::KeyFile {
            path: path.display().to_string(),
            reason: format!("creating its directory: {e}"),
        })?;
    }
    let key = KeyPair::generate();
    match key.write_file(path) {
        Ok(()) => Ok((key, true)),
        // Another replica's `init` wrote it first: use that one.
        Err(_) if path.exists() => Ok((KeyPair::read_file(path)?, false)),
        Err(e) => Err(e),
    }
}
