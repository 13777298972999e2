//! Opening a sled database.

use std::path::Path;
use std::time::{Duration, Instant};

/// How long [`open`] waits for a database this process has just closed.
const RELEASE_WAIT_MS: u64 = 1_000;

/// Opens (or creates) the sled database at `path`.
///
/// sled locks its file while open, and lets go of the lock a moment after the last handle
/// is dropped (an IO thread of its own still holds the file until its last write returns).
/// A database that this process has just closed (a node restarted in place, a test that
/// reopens) can therefore be busy for a few milliseconds: `open` waits up to a second for
/// it. One held by another process is still refused, with sled's "could not acquire lock".
///
/// # Errors
/// sled's error, if the database cannot be opened.
pub fn open(path: &Path) -> sled::Result<sled::Db> {
    let deadline = Instant::now() + Duration::from_millis(RELEASE_WAIT_MS);
    loop {
        match sled::Config::new().path(path).open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_database_held_elsewhere_is_refused_after_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let held = super::open(dir.path()).unwrap();
        let started = std::time::Instant::now();
        let err = super::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("could not acquire lock"), "{err}");
        assert!(started.elapsed() >= std::time::Duration::from_millis(super::RELEASE_WAIT_MS));
        drop(held);
        // Once it is let go, it opens (at once or after sled's IO thread is done).
        super::open(dir.path()).unwrap();
    }
}
