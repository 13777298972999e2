//! Decisions staff take at the node itself: sled tree `local_policy`, the only module that
//! reads or writes it. Today: a local lockdown (`record::LocalLockdown`).

use menjin_proto::record::LocalLockdown;
use menjin_proto::wire;

const LOCKDOWN: &[u8] = b"lockdown";

/// The owner of sled tree `local_policy`: decisions staff take at the node itself.
#[derive(Clone)]
pub struct LocalPolicy {
    db: sled::Db,
    tree: sled::Tree,
}

impl LocalPolicy {
    /// Opens (or creates) the `local_policy` tree.
    ///
    /// # Errors
    /// If sled fails.
    pub fn open(db: &sled::Db) -> Result<LocalPolicy, sled::Error> {
        Ok(LocalPolicy {
            db: db.clone(),
            tree: db.open_tree("local_policy")?,
        })
    }

    /// The stored local lockdown; a corrupt record is reported and ignored (the hub's policy
    /// then decides alone).
    pub fn lockdown(&self) -> Result<Option<LocalLockdown>, sled::Error> {
        Ok(self
            .tree
            .get(LOCKDOWN)?
            .and_then(|v| match wire::decode(&v, 4096) {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::error!(error = %e, "stored local lockdown is corrupt; ignored");
                    None
                }
            }))
    }

    /// Forgets the local lockdown decision (the district adopted it), flushed.
    ///
    /// # Errors
    /// A sled error.
    pub fn clear_lockdown(&self) -> Result<(), sled::Error> {
        self.tree.remove(LOCKDOWN)?;
        self.db.flush()?;
        Ok(())
    }

    /// Stores a local lockdown decision, flushed before it returns.
    pub fn set_lockdown(&self, l: &LocalLockdown) -> Result<(), sled::Error> {
        self.tree.insert(LOCKDOWN, wire::encode(l))?;
        self.db.flush()?;
        Ok(())
    }
}
