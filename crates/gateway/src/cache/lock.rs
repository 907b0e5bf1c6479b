//! The advisory lock that keeps a cache file to one user: a running gateway holds an
//! exclusive `flock` on `<cache file>.lock` for as long as it runs, so that a second
//! gateway, or `ordo gateway rebuild-cache`, configured with the same file refuses to
//! start instead of corrupting it. The lock goes with the process: a gateway that crashed
//! holds nothing.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::CacheError;

pub struct CacheLock {
    _held: Flock<File>,
}

/// `<cache file>.lock`.
fn lock_path(cache_file: &Path) -> PathBuf {
    let mut name = cache_file.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl CacheLock {
    /// Takes the lock of `cache_file` without waiting; `CacheError::InUse` when another
    /// holds it. The lock file is created (with the cache file's folder) if need be.
    pub fn acquire(cache_file: &Path) -> Result<Self, CacheError> {
        let path = lock_path(cache_file);
        let file_error = |reason: String| CacheError::File {
            file: path.clone(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| file_error(format!("cannot create its folder: {e}")))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| file_error(e.to_string()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(held) => Ok(Self { _held: held }),
            Err((_, Errno::EWOULDBLOCK)) => Err(CacheError::InUse {
                file: cache_file.to_owned(),
                lock: path,
            }),
            Err((_, e)) => Err(file_error(format!("cannot lock it: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_user_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/cache.sqlite");
        let first = CacheLock::acquire(&file).unwrap();
        assert!(dir.path().join("sub/cache.sqlite.lock").exists());
        let e = CacheLock::acquire(&file).err().unwrap();
        assert!(matches!(&e, CacheError::InUse { .. }), "{e}");
        assert!(e.to_string().contains("cache.sqlite"), "{e}");
        drop(first);
        assert!(CacheLock::acquire(&file).is_ok());
    }
}
