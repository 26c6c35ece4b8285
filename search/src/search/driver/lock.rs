//! One driver per search directory: an exclusive `flock` on `DIR/search.lock`, which records
//! who holds it (pid, host, since when). The kernel releases the lock when its holder dies,
//! however it dies, so a stale file never blocks a resume; the file's text only names the
//! holder in the message a second driver gets.
//!
//! `flock` is exclusive between processes on one machine and on local file systems; on NFS it
//! depends on the server (see docs/RELIABILITY.md).

use super::{io, SearchError, R};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

/// The lock file in a search directory.
pub(crate) const LOCK: &str = "search.lock";

/// Who holds a search directory.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// Seconds since the Unix epoch.
    pub since: f64,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "process {} on {}", self.pid, self.host)
    }
}

/// The held lock of a search directory; dropping it releases it.
#[derive(Debug)]
pub(crate) struct DirLock {
    _lock: Flock<File>,
}

/// This machine's name.
pub(crate) fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "an unnamed host".to_string())
}

/// Takes the lock of the search directory `dir` (made beforehand), or fails at once naming
/// the driver that holds it.
pub(crate) fn acquire(dir: &Path) -> R<DirLock> {
    let path = dir.join(LOCK);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io(&path))?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((mut file, errno)) => {
            if errno != nix::errno::Errno::EWOULDBLOCK {
                return Err(SearchError::Io {
                    path,
                    source: std::io::Error::from(errno),
                });
            }
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(SearchError::Locked {
                dir: dir.to_path_buf(),
                holder: serde_json::from_str(&text).ok(),
            });
        }
    };
    let me = Holder {
        pid: std::process::id(),
        host: host(),
        since: crate::search::store::now(),
    };
    let text = serde_json::to_string(&me).map_err(SearchError::Encode)?;
    lock.set_len(0)
        .and_then(|()| lock.rewind())
        .and_then(|()| lock.write_all(text.as_bytes()))
        .and_then(|()| lock.sync_all())
        .map_err(io(&path))?;
    Ok(DirLock { _lock: lock })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_named_and_a_released_lock_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path()).unwrap();
        // flock locks belong to open files: a second open in this process conflicts as a
        // second process would.
        match acquire(dir.path()) {
            Err(SearchError::Locked {
                holder: Some(h), ..
            }) => {
                assert_eq!(h.pid, std::process::id());
                assert_eq!(h.host, host());
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(first);
        assert!(acquire(dir.path()).is_ok());
    }
}
