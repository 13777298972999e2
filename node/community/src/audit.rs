//! The audit log of the staff pages: every roster search and every view of a person's record,
//! with the staff member and the time, in sled tree `audit` (`seq` big-endian → an
//! [`AuditEntry`]). Read by the head of the office on their page.
//!
//! Retention: entries older than [`AUDIT_RETENTION_SECS`] (180 days) and all but the newest
//! [`AUDIT_ENTRIES_MAX`] are pruned, a bounded number at each append, oldest first.
//!
//! Architecture invariant: this module is the only reader and writer of tree `audit`; an
//! entry is flushed before [`Audit::append`] returns (so before the page that caused it
//! answers); no entry holds an ID number.

use std::sync::Mutex;

use menjin_proto::UnixTime;
use menjin_proto::record::AuditEntry;
use menjin_proto::wire;

/// Half a year: long enough to answer "who looked at my record" after an epidemic wave,
/// short enough that the log is not a second roster.
pub const AUDIT_RETENTION_SECS: u64 = 180 * 86_400;
/// A busy office does a few thousand searches a day: half a year of them.
pub const AUDIT_ENTRIES_MAX: u64 = 500_000;
/// Entries pruned at most per append: an append stays short even after a long pause.
const PRUNE_PER_APPEND_MAX: usize = 64;
/// An entry is a name, a search and a time; anything longer read back is corruption.
const ENTRY_LEN_MAX: usize = 4 * 1024;
/// Most entries one page of the audit log shows.
pub const AUDIT_PAGE_MAX: usize = 200;

/// Why the audit log could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// sled failed (disk full, IO error).
    #[error("audit storage: {0}")]
    Storage(#[from] sled::Error),
    /// An entry read back does not decode.
    #[error("audit entry {0} is corrupt")]
    Corrupt(u64),
}

/// Owner of sled tree `audit`.
pub struct Audit {
    db: sled::Db,
    tree: sled::Tree,
    /// Appends one at a time (the next sequence number, then prune).
    write: Mutex<()>,
}

fn seq_of(k: &[u8]) -> u64 {
    k.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

impl Audit {
    /// Opens the tree.
    ///
    /// # Errors
    /// [`AuditError::Storage`].
    pub fn open(db: &sled::Db) -> Result<Audit, AuditError> {
        Ok(Audit {
            db: db.clone(),
            tree: db.open_tree("audit")?,
            write: Mutex::new(()),
        })
    }

    /// Writes one entry and flushes it; prunes what is past retention. Returns its
    /// sequence number.
    ///
    /// # Errors
    /// [`AuditError`]: then nothing was recorded and the caller must not show the result.
    pub fn append(&self, entry: &AuditEntry, now: UnixTime) -> Result<u64, AuditError> {
        let bytes = wire::encode(entry);
        assert!(bytes.len() <= ENTRY_LEN_MAX, "audit entry too long");
        let _guard = self.write.lock().expect("audit lock");
        let last = self.tree.last()?.map_or(0, |(k, _)| seq_of(&k));
        let seq = last + 1;
        self.tree.insert(seq.to_be_bytes(), bytes)?;
        self.prune(seq, now)?;
        self.db.flush()?;
        Ok(seq)
    }

    /// Removes, oldest first, entries older than the retention and those beyond the count.
    fn prune(&self, newest: u64, now: UnixTime) -> Result<(), AuditError> {
        let oldest_kept_at = now.saturating_sub(AUDIT_RETENTION_SECS);
        let mut gone = Vec::new();
        for item in self.tree.iter().take(PRUNE_PER_APPEND_MAX) {
            let (k, v) = item?;
            let seq = seq_of(&k);
            let too_many = newest - seq >= AUDIT_ENTRIES_MAX;
            let at = self.decode(seq, &v)?.at;
            if !too_many && at >= oldest_kept_at {
                break;
            }
            gone.push(k);
        }
        for k in gone {
            self.tree.remove(k)?;
        }
        Ok(())
    }

    fn decode(&self, seq: u64, v: &[u8]) -> Result<AuditEntry, AuditError> {
        wire::decode(v, ENTRY_LEN_MAX).map_err(|_| AuditError::Corrupt(seq))
    }

    /// Entries newest first, before `before` (all when `None`), at most `limit` (capped at
    /// [`AUDIT_PAGE_MAX`]).
    ///
    /// # Errors
    /// [`AuditError`].
    pub fn page(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, AuditEntry)>, AuditError> {
        let limit = limit.clamp(1, AUDIT_PAGE_MAX);
        let end = before.unwrap_or(u64::MAX);
        let mut out = Vec::new();
        for item in self.tree.range(..end.to_be_bytes()).rev().take(limit) {
            let (k, v) = item?;
            let seq = seq_of(&k);
            out.push((seq, self.decode(seq, &v)?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use menjin_proto::credential::HolderId;
    use menjin_proto::record::AuditAction;

    fn view(at: UnixTime) -> AuditEntry {
        AuditEntry {
            at,
            staff: "李文".into(),
            action: AuditAction::RecordView {
                holder: HolderId([1; 8]),
            },
        }
    }

    #[test]
    fn entries_are_paged_newest_first_and_pruned_after_retention() {
        let tmp = tempfile::tempdir().unwrap();
        let db = sled::open(tmp.path()).unwrap();
        let audit = Audit::open(&db).unwrap();
        let day = 86_400;
        for i in 0..5 {
            audit.append(&view(i * day), i * day).unwrap();
        }
        let page = audit.page(None, 2).unwrap();
        assert_eq!(page.iter().map(|e| e.0).collect::<Vec<_>>(), [5, 4]);
        let next = audit.page(Some(4), 10).unwrap();
        assert_eq!(next.iter().map(|e| e.0).collect::<Vec<_>>(), [3, 2, 1]);

        // 180 days and two more later: the first three (days 0, 1, 2) are past retention.
        let now = AUDIT_RETENTION_SECS + 2 * day + 1;
        audit.append(&view(now), now).unwrap();
        let all = audit.page(None, 100).unwrap();
        assert_eq!(all.iter().map(|e| e.0).collect::<Vec<_>>(), [6, 5, 4]);
        drop(audit);
        // Flushed and kept across a reopen.
        let audit = Audit::open(&db).unwrap();
        assert_eq!(audit.page(None, 100).unwrap().len(), 3);
    }
}
