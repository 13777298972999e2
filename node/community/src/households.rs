//! Household codes: the printed code the office hands each home (building and door) so its
//! people can open the resident pages on a phone. Sled tree `households`.
//!
//! Keys: `h` + building + NUL + door → [`HouseholdRecord`]; `c` + keyed hash of the code in
//! force → the home's `h` key. A code is [`CODE_BYTES`] random bytes (80 bits), written as
//! 16 base32 characters in four groups; the tree holds only its HMAC-SHA256 under a key
//! derived from the node's secret key, so a copy of the database gives no code back.
//! Issuing a code for a home replaces the one in force; revoking leaves the home without one
//! until the next issue. Members (people declared through the home's sessions) stay with the
//! home across reissues.
//!
//! Architecture invariant: this module is the only reader and writer of tree `households`;
//! every change is flushed before the call returns.

use std::sync::Mutex;

use hmac::{Hmac, KeyInit, Mac};
use menjin_proto::UnixTime;
use menjin_proto::credential::HolderId;
use menjin_proto::record::HouseholdRecord;
use menjin_proto::wire;
use sha2::Sha256;

/// 80 bits: guessing one of 10,000 homes' codes at the web's rate limit would take far
/// longer than any epidemic (the order asks for at least 60).
pub const CODE_BYTES: usize = 10;
/// Characters of a code without its separators.
pub const CODE_CHARS: usize = 16;
/// People one home's sessions may declare: a large family, or a shop's dormitory room.
pub const MEMBERS_MAX: usize = 64;
/// Records are small; anything bigger read back from disk is corruption.
const RECORD_LEN_MAX: usize = 16 * 1024;
const KEY_LABEL: &[u8] = b"menjin household code v1";

/// Why a household code could not be issued, revoked or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HouseholdError {
    /// sled failed: the node's disk.
    #[error("household storage: {0}")]
    Storage(#[from] sled::Error),
    /// A record read back does not decode: the disk was changed or damaged.
    #[error("household record {0} is corrupt")]
    Corrupt(String),
    /// Revoking a home that has no code in force.
    #[error("no household code is in force for building {building} door {door}")]
    NoCode {
        /// The home's building.
        building: String,
        /// The home's door.
        door: String,
    },
    /// [`MEMBERS_MAX`] people were declared through the home's sessions already.
    #[error("the home has {MEMBERS_MAX} members declared online already; ask the office")]
    TooManyMembers,
}

/// A household code as printed: `ABCD-EFGH-JKLM-NOPQ`.
#[derive(Clone, PartialEq, Eq)]
pub struct HouseholdCode([u8; CODE_BYTES]);

impl std::fmt::Debug for HouseholdCode {
    // A code is a credential: never in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HouseholdCode(..)")
    }
}

impl HouseholdCode {
    /// A new code from the operating system's random source (80 bits).
    pub fn random() -> HouseholdCode {
        let mut b = [0u8; CODE_BYTES];
        rand::fill(&mut b);
        HouseholdCode(b)
    }

    /// The printed form: 16 base32 characters in groups of four.
    pub fn to_text(&self) -> String {
        let plain = data_encoding::BASE32_NOPAD.encode(&self.0);
        debug_assert_eq!(plain.len(), CODE_CHARS);
        plain
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).expect("base32 is ASCII"))
            .collect::<Vec<_>>()
            .join("-")
    }

    /// Reads a code as a person types it: case, spaces and dashes do not matter, and the
    /// digits 0, 1 and 8 (absent from base32) are read as the letters they look like.
    pub fn parse(text: &str) -> Option<HouseholdCode> {
        if text.len() > 64 {
            return None;
        }
        let plain: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| match c.to_ascii_uppercase() {
                '0' => 'O',
                '1' => 'I',
                '8' => 'B',
                c => c,
            })
            .collect();
        if plain.len() != CODE_CHARS {
            return None;
        }
        let bytes = data_encoding::BASE32_NOPAD.decode(plain.as_bytes()).ok()?;
        Some(HouseholdCode(bytes.try_into().ok()?))
    }
}

/// A home a code opens, as the web keeps it in a session: the hash of its code (a session
/// ends when the code is revoked or reissued) and the home.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Household {
    /// Keyed hash of the code that opened it.
    pub code_hash: [u8; 32],
    /// The home's building.
    pub building: String,
    /// The home's door.
    pub door: String,
}

/// Owner of sled tree `households`: each home's code (as a keyed hash) and its members.
pub struct Households {
    db: sled::Db,
    tree: sled::Tree,
    key: [u8; 32],
    /// Read, change, write of one record at a time (issue, revoke, add a member).
    write: Mutex<()>,
}

fn home_key(building: &str, door: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + building.len() + door.len());
    k.push(b'h');
    k.extend_from_slice(building.as_bytes());
    k.push(0);
    k.extend_from_slice(door.as_bytes());
    k
}

fn code_key(hash: &[u8; 32]) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(b'c');
    k.extend_from_slice(hash);
    k
}

impl Households {
    /// Opens the tree; `secret` is the node's secret key (the hashing key is derived from it).
    ///
    /// # Errors
    /// [`HouseholdError::Storage`].
    pub fn open(db: &sled::Db, secret: &[u8; 32]) -> Result<Households, HouseholdError> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("any key length");
        mac.update(KEY_LABEL);
        Ok(Households {
            db: db.clone(),
            tree: db.open_tree("households")?,
            key: mac.finalize().into_bytes().into(),
            write: Mutex::new(()),
        })
    }

    fn hash(&self, code: &HouseholdCode) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("any key length");
        mac.update(&code.0);
        mac.finalize().into_bytes().into()
    }

    fn record(&self, key: &[u8]) -> Result<Option<HouseholdRecord>, HouseholdError> {
        let Some(v) = self.tree.get(key)? else {
            return Ok(None);
        };
        let r: HouseholdRecord = wire::decode(&v, RECORD_LEN_MAX)
            .map_err(|_| HouseholdError::Corrupt(hex::encode(key)))?;
        Ok(Some(r))
    }

    /// A new code for the home (building and door checked by the caller), replacing the one
    /// in force. Returns the code: the only time it exists outside the printed slip.
    ///
    /// # Errors
    /// [`HouseholdError::Storage`].
    pub fn issue(
        &self,
        building: &str,
        door: &str,
        now: UnixTime,
    ) -> Result<HouseholdCode, HouseholdError> {
        let _guard = self.write.lock().expect("households lock");
        let hk = home_key(building, door);
        let code = HouseholdCode::random();
        let hash = self.hash(&code);
        let mut record = self.record(&hk)?.unwrap_or_else(|| HouseholdRecord {
            building: building.to_string(),
            door: door.to_string(),
            code_hash: None,
            issued_at: now,
            revoked_at: None,
            members: Vec::new(),
        });
        let mut batch = sled::Batch::default();
        if let Some(old) = record.code_hash {
            batch.remove(code_key(&old));
        }
        record.code_hash = Some(hash);
        record.issued_at = now;
        record.revoked_at = None;
        batch.insert(code_key(&hash), hk.as_slice());
        batch.insert(hk, wire::encode(&record));
        self.tree.apply_batch(batch)?;
        self.db.flush()?;
        Ok(code)
    }

    /// The home's code stops working.
    ///
    /// # Errors
    /// [`HouseholdError::NoCode`] if none is in force.
    pub fn revoke(&self, building: &str, door: &str, now: UnixTime) -> Result<(), HouseholdError> {
        let _guard = self.write.lock().expect("households lock");
        let hk = home_key(building, door);
        let no_code = || HouseholdError::NoCode {
            building: building.to_string(),
            door: door.to_string(),
        };
        let mut record = self.record(&hk)?.ok_or_else(no_code)?;
        let hash = record.code_hash.take().ok_or_else(no_code)?;
        record.revoked_at = Some(now);
        let mut batch = sled::Batch::default();
        batch.remove(code_key(&hash));
        batch.insert(hk, wire::encode(&record));
        self.tree.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// The home a code opens, if it is in force.
    ///
    /// # Errors
    /// [`HouseholdError::Storage`] or a corrupt record.
    pub fn lookup(&self, code: &HouseholdCode) -> Result<Option<Household>, HouseholdError> {
        self.by_hash(&self.hash(code))
    }

    /// The home of a code hash (a session's), if that code is still in force.
    ///
    /// # Errors
    /// [`HouseholdError::Storage`] or a corrupt record.
    pub fn by_hash(&self, hash: &[u8; 32]) -> Result<Option<Household>, HouseholdError> {
        let Some(hk) = self.tree.get(code_key(hash))? else {
            return Ok(None);
        };
        let Some(r) = self.record(&hk)? else {
            return Err(HouseholdError::Corrupt(hex::encode(&hk)));
        };
        // The index and the record are written in one batch: they agree, or the disk lies.
        if r.code_hash.as_ref() != Some(hash) {
            return Err(HouseholdError::Corrupt(hex::encode(&hk)));
        }
        Ok(Some(Household {
            code_hash: *hash,
            building: r.building,
            door: r.door,
        }))
    }

    /// Remembers that `holder` was declared through the home's sessions.
    ///
    /// # Errors
    /// [`HouseholdError::TooManyMembers`] past [`MEMBERS_MAX`]; storage.
    pub fn add_member(
        &self,
        household: &Household,
        holder: HolderId,
    ) -> Result<(), HouseholdError> {
        let _guard = self.write.lock().expect("households lock");
        let hk = home_key(&household.building, &household.door);
        let mut record = self.record(&hk)?.ok_or_else(|| HouseholdError::NoCode {
            building: household.building.clone(),
            door: household.door.clone(),
        })?;
        if record.members.contains(&holder) {
            return Ok(());
        }
        if record.members.len() >= MEMBERS_MAX {
            return Err(HouseholdError::TooManyMembers);
        }
        record.members.push(holder);
        self.tree.insert(hk, wire::encode(&record))?;
        self.db.flush()?;
        Ok(())
    }

    /// The homes of the tree (every home ever issued a code), in key order: building, then
    /// door; with whether a code is in force. Read by the office's progress page.
    ///
    /// # Errors
    /// Storage or a corrupt record.
    pub fn homes(&self) -> Result<Vec<(String, String, bool)>, HouseholdError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(b"h") {
            let (k, _) = item?;
            let r = self
                .record(&k)?
                .ok_or_else(|| HouseholdError::Corrupt(hex::encode(&k)))?;
            out.push((r.building, r.door, r.code_hash.is_some()));
        }
        Ok(out)
    }

    /// Whether the home has a code in force.
    ///
    /// # Errors
    /// Storage or a corrupt record.
    pub fn in_force(&self, building: &str, door: &str) -> Result<bool, HouseholdError> {
        Ok(self
            .record(&home_key(building, door))?
            .is_some_and(|r| r.code_hash.is_some()))
    }

    /// The people declared through the home's sessions, in the order they were declared.
    ///
    /// # Errors
    /// Storage or a corrupt record.
    pub fn members(&self, household: &Household) -> Result<Vec<HolderId>, HouseholdError> {
        let hk = home_key(&household.building, &household.door);
        Ok(self.record(&hk)?.map(|r| r.members).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_text_round_trips_as_people_type_it() {
        let code = HouseholdCode::random();
        let text = code.to_text();
        assert_eq!(text.len(), CODE_CHARS + 3);
        assert_eq!(HouseholdCode::parse(&text), Some(code.clone()));
        let typed = text.to_lowercase().replace('-', " ").replace('o', "0");
        assert_eq!(HouseholdCode::parse(&typed), Some(code));
        assert_eq!(HouseholdCode::parse("ABCD-EFGH"), None);
        assert_eq!(HouseholdCode::parse("ABCD-EFGH-JKLM-NPQ9"), None);
        assert!(!format!("{:?}", HouseholdCode::random()).contains('-'));
    }

    #[test]
    fn reissue_replaces_and_revoke_ends_the_code() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let h = Households::open(&db, &[7; 32]).unwrap();
        let first = h.issue("12", "1203", 10).unwrap();
        let home = h.lookup(&first).unwrap().expect("in force");
        assert_eq!((home.building.as_str(), home.door.as_str()), ("12", "1203"));
        h.add_member(&home, HolderId([1; 8])).unwrap();
        let second = h.issue("12", "1203", 20).unwrap();
        assert_eq!(h.lookup(&first).unwrap(), None, "the old code is replaced");
        assert_eq!(
            h.by_hash(&home.code_hash).unwrap(),
            None,
            "its sessions end"
        );
        let home = h.lookup(&second).unwrap().expect("in force");
        assert_eq!(h.members(&home).unwrap(), vec![HolderId([1; 8])]);
        assert!(h.in_force("12", "1203").unwrap());
        h.issue("3", "101", 25).unwrap();
        h.revoke("12", "1203", 30).unwrap();
        assert_eq!(h.lookup(&second).unwrap(), None);
        assert!(!h.in_force("12", "1203").unwrap());
        assert!(!h.in_force("12", "9999").unwrap());
        assert_eq!(
            h.homes().unwrap(),
            vec![
                ("12".to_string(), "1203".to_string(), false),
                ("3".to_string(), "101".to_string(), true)
            ]
        );
        assert!(matches!(
            h.revoke("12", "1203", 31),
            Err(HouseholdError::NoCode { .. })
        ));
        // Nothing on disk is the code itself.
        for item in db.open_tree("households").unwrap().iter() {
            let (k, v) = item.unwrap();
            for needle in [&first.0[..], &second.0[..]] {
                assert!(!k.windows(CODE_BYTES).any(|w| w == needle));
                assert!(!v.windows(CODE_BYTES).any(|w| w == needle));
            }
        }
    }
}
