//! Staff accounts for the node's pages (clerks and the head of the office). Sled tree
//! `staff`: `s` + name → [`StaffRecord`], the password only as an argon2id hash (PHC string,
//! random 16-byte salt, argon2's default cost: 19 MiB, 2 passes).
//!
//! A login always runs one argon2 verification, against a fixed dummy hash when the name is
//! unknown, so the time taken does not tell a wrong name from a wrong password.
//!
//! Architecture invariant: this module is the only reader and writer of tree `staff`; every
//! change is flushed before the call returns; passwords exist only in the request that
//! carries them and are never logged or stored, only their argon2 hashes.

use std::sync::{Mutex, OnceLock};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use menjin_proto::UnixTime;
use menjin_proto::record::StaffRecord;
use menjin_proto::staff::{Password, STAFF_MAX, StaffRole};
use menjin_proto::wire;

/// Records are small; anything bigger read back from disk is corruption.
const RECORD_LEN_MAX: usize = 4 * 1024;

/// Why a staff account could not be added, changed, removed or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StaffStoreError {
    /// sled failed: the node's disk.
    #[error("staff storage: {0}")]
    Storage(#[from] sled::Error),
    /// A record read back does not decode: the disk was changed or damaged.
    #[error("staff record {0:?} is corrupt")]
    Corrupt(String),
    /// `add` with a name that has an account already.
    #[error("a staff member named {0:?} exists already")]
    Exists(String),
    /// `passwd` or `remove` with a name that has no account.
    #[error("no staff member named {0:?}")]
    Unknown(String),
    /// [`STAFF_MAX`] accounts exist already.
    #[error("the node has {STAFF_MAX} staff accounts already; remove one first")]
    Full,
    /// argon2 refused (cannot happen with its default parameters and a 16-byte salt).
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// A staff member as a page session holds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaffMember {
    /// The account's name.
    pub name: String,
    /// Clerk or head.
    pub role: StaffRole,
    /// The record's stamp: a session opened under another stamp has ended.
    pub stamp: u64,
}

/// Owner of sled tree `staff`.
pub struct Staff {
    db: sled::Db,
    tree: sled::Tree,
    /// Read, check, write one account at a time (add, passwd, remove).
    write: Mutex<()>,
}

fn key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(b's');
    k.extend_from_slice(name.as_bytes());
    k
}

/// An argon2id PHC string for `password` with a fresh random salt.
fn hash(password: &Password) -> Result<String, StaffStoreError> {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    argon2::Argon2::default()
        .hash_password_with_salt(password.0.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StaffStoreError::Hash(e.to_string()))
}

/// The hash checked when the name is unknown: the same cost as a real one.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        hash(&Password("not anyone's password".into())).expect("argon2 with default parameters")
    })
}

fn verify(password: &str, phc: &str) -> bool {
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

impl Staff {
    /// Opens the tree (and computes the dummy hash once, off the login path).
    ///
    /// # Errors
    /// [`StaffStoreError::Storage`].
    pub fn open(db: &sled::Db) -> Result<Staff, StaffStoreError> {
        let _ = dummy_hash();
        Ok(Staff {
            db: db.clone(),
            tree: db.open_tree("staff")?,
            write: Mutex::new(()),
        })
    }

    fn record(&self, name: &str) -> Result<Option<StaffRecord>, StaffStoreError> {
        let Some(v) = self.tree.get(key(name))? else {
            return Ok(None);
        };
        let r: StaffRecord = wire::decode(&v, RECORD_LEN_MAX)
            .map_err(|_| StaffStoreError::Corrupt(name.to_string()))?;
        if r.name != name {
            return Err(StaffStoreError::Corrupt(name.to_string()));
        }
        Ok(Some(r))
    }

    fn store(&self, r: &StaffRecord) -> Result<(), StaffStoreError> {
        let bytes = wire::encode(r);
        assert!(bytes.len() <= RECORD_LEN_MAX, "staff record too long");
        self.tree.insert(key(&r.name), bytes)?;
        self.db.flush()?;
        Ok(())
    }

    /// Adds an account (name and password checked by the caller).
    ///
    /// # Errors
    /// [`StaffStoreError::Exists`], [`StaffStoreError::Full`], storage.
    pub fn add(
        &self,
        name: &str,
        role: StaffRole,
        password: &Password,
        now: UnixTime,
    ) -> Result<(), StaffStoreError> {
        let password_hash = hash(password)?;
        let _guard = self.write.lock().expect("staff lock");
        if self.record(name)?.is_some() {
            return Err(StaffStoreError::Exists(name.to_string()));
        }
        if self.tree.len() >= STAFF_MAX {
            return Err(StaffStoreError::Full);
        }
        self.store(&StaffRecord {
            name: name.to_string(),
            role,
            password_hash,
            stamp: u64::from_be_bytes(menjin_store::files::random8()),
            created_at: now,
            password_set_at: now,
        })
    }

    /// A new password for an account, and a new stamp (its sessions end).
    ///
    /// # Errors
    /// [`StaffStoreError::Unknown`], storage.
    pub fn set_password(
        &self,
        name: &str,
        password: &Password,
        now: UnixTime,
    ) -> Result<(), StaffStoreError> {
        let password_hash = hash(password)?;
        let _guard = self.write.lock().expect("staff lock");
        let mut r = self
            .record(name)?
            .ok_or_else(|| StaffStoreError::Unknown(name.to_string()))?;
        r.password_hash = password_hash;
        r.stamp = u64::from_be_bytes(menjin_store::files::random8());
        r.password_set_at = now;
        self.store(&r)
    }

    /// Removes an account (its sessions end).
    ///
    /// # Errors
    /// [`StaffStoreError::Unknown`], storage.
    pub fn remove(&self, name: &str) -> Result<(), StaffStoreError> {
        let _guard = self.write.lock().expect("staff lock");
        if self.tree.remove(key(name))?.is_none() {
            return Err(StaffStoreError::Unknown(name.to_string()));
        }
        self.db.flush()?;
        Ok(())
    }

    /// The account of a session, if it still exists (a read of sled: every page asks).
    ///
    /// # Errors
    /// Storage, corruption.
    pub fn member(&self, name: &str) -> Result<Option<StaffMember>, StaffStoreError> {
        Ok(self.record(name)?.map(|r| StaffMember {
            name: r.name,
            role: r.role,
            stamp: r.stamp,
        }))
    }

    /// The account a name and password open, or `None` for a wrong name or a wrong
    /// password, taking the same time for both (one argon2 verification either way; tens
    /// of milliseconds: call it off the event loop).
    ///
    /// # Errors
    /// Storage, corruption.
    pub fn login(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<StaffMember>, StaffStoreError> {
        // An over-long name cannot be an account; it is still verified against the dummy.
        let record = if name.len() <= 4 * menjin_proto::staff::STAFF_NAME_CHARS_MAX {
            self.record(name)?
        } else {
            None
        };
        let password = if password.len() <= 4 * menjin_proto::staff::PASSWORD_CHARS_MAX {
            password
        } else {
            ""
        };
        let phc = record.as_ref().map_or(dummy_hash(), |r| &r.password_hash);
        let ok = verify(password, phc);
        Ok(record.filter(|_| ok).map(|r| StaffMember {
            name: r.name,
            role: r.role,
            stamp: r.stamp,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Password {
        Password(s.to_string())
    }

    #[test]
    fn accounts_are_added_logged_into_changed_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let db = sled::open(tmp.path()).unwrap();
        let staff = Staff::open(&db).unwrap();
        staff
            .add("李文", StaffRole::Clerk, &pw("correct horse battery"), 1)
            .unwrap();
        let raw = db.open_tree("staff").unwrap().get(key("李文")).unwrap();
        let raw = String::from_utf8_lossy(&raw.unwrap()).to_string();
        assert!(raw.contains("$argon2id$"), "stored as a PHC string");
        assert!(!raw.contains("correct horse"), "never the password");

        let m = staff
            .login("李文", "correct horse battery")
            .unwrap()
            .unwrap();
        assert_eq!(m.role, StaffRole::Clerk);
        assert_eq!(staff.login("李文", "wrong password").unwrap(), None);
        assert_eq!(staff.login("王五", "correct horse battery").unwrap(), None);
        assert!(matches!(
            staff.add("李文", StaffRole::Head, &pw("another password"), 2),
            Err(StaffStoreError::Exists(_))
        ));
        assert_eq!(
            staff.member("李文").unwrap().unwrap().role,
            StaffRole::Clerk
        );

        staff
            .set_password("李文", &pw("a new password"), 3)
            .unwrap();
        assert_ne!(staff.member("李文").unwrap().unwrap().stamp, m.stamp);
        assert_eq!(staff.login("李文", "correct horse battery").unwrap(), None);
        assert!(staff.login("李文", "a new password").unwrap().is_some());

        staff.remove("李文").unwrap();
        assert_eq!(staff.member("李文").unwrap(), None);
        assert!(matches!(
            staff.remove("李文"),
            Err(StaffStoreError::Unknown(_))
        ));
        assert!(matches!(
            staff.set_password("李文", &pw("a new password"), 4),
            Err(StaffStoreError::Unknown(_))
        ));
    }
}
