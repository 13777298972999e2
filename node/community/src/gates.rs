//! Enrolled gates (sled tree `gates`: gate id → ed25519 public key). The only module that
//! reads or writes that tree.

/// Why the `gates` tree could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GateError {
    /// sled failed (disk full, IO error).
    #[error("gate storage: {0}")]
    Storage(#[from] sled::Error),
    /// A gate of this id is enrolled already; re-keying a gate is a separate, deliberate act.
    #[error("gate {0} is already enrolled")]
    Exists(String),
    /// A stored record is not a UTF-8 id → 32-byte key (shown as the id, or hex of the key).
    #[error("gate record {0} is corrupt")]
    Corrupt(String),
}

/// The owner of sled tree `gates`: gate id → ed25519 public key.
#[derive(Clone)]
pub struct Gates {
    db: sled::Db,
    tree: sled::Tree,
}

impl Gates {
    /// Opens (or creates) the `gates` tree.
    ///
    /// # Errors
    /// [`GateError::Storage`] if sled fails.
    pub fn open(db: &sled::Db) -> Result<Gates, GateError> {
        Ok(Gates {
            db: db.clone(),
            tree: db.open_tree("gates")?,
        })
    }

    /// Stores a new gate and flushes before returning.
    ///
    /// # Errors
    /// [`GateError::Exists`] if the id is taken (re-keying a gate is a separate, deliberate act).
    pub fn enrol(&self, gate_id: &str, key: [u8; 32]) -> Result<(), GateError> {
        self.tree
            .compare_and_swap(gate_id.as_bytes(), None as Option<&[u8]>, Some(&key[..]))?
            .map_err(|_| GateError::Exists(gate_id.to_string()))?;
        self.db.flush()?;
        Ok(())
    }

    /// Takes a gate out (`menjin gate revoke`) and flushes before returning; its key, or
    /// `None` if no gate of this id is enrolled. The key is not kept: a gate enrolled again
    /// gets a new key (`gate enrol` makes one).
    ///
    /// # Errors
    /// [`GateError::Storage`], or [`GateError::Corrupt`] if the stored key is not 32 bytes
    /// (the record is removed all the same).
    pub fn revoke(&self, gate_id: &str) -> Result<Option<[u8; 32]>, GateError> {
        let Some(old) = self.tree.remove(gate_id.as_bytes())? else {
            return Ok(None);
        };
        self.db.flush()?;
        let key: [u8; 32] = old
            .as_ref()
            .try_into()
            .map_err(|_| GateError::Corrupt(gate_id.to_string()))?;
        Ok(Some(key))
    }

    /// Every enrolled gate and its key, by id.
    ///
    /// # Errors
    /// [`GateError::Storage`], or [`GateError::Corrupt`] naming the record.
    pub fn all(&self) -> Result<Vec<(String, [u8; 32])>, GateError> {
        self.tree
            .iter()
            .map(|item| {
                let (k, v) = item?;
                let id = String::from_utf8(k.to_vec())
                    .map_err(|_| GateError::Corrupt(hex::encode(&k)))?;
                let key: [u8; 32] = v
                    .as_ref()
                    .try_into()
                    .map_err(|_| GateError::Corrupt(id.clone()))?;
                Ok((id, key))
            })
            .collect()
    }
}
