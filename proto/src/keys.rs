//! Key identifiers and the ed25519 helpers every layer shares.

use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The first 8 bytes of SHA-256 of an ed25519 public key: names an issuer inside a code.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// The id of `key`. 8 bytes keep codes short: the id only picks the certificate, the
    /// signature decides.
    pub fn of(key: &VerifyingKey) -> KeyId {
        KeyId::of_bytes(key.as_bytes())
    }

    /// The id of the public key whose bytes are `key` (a revoked key travels as bytes).
    pub fn of_bytes(key: &[u8; 32]) -> KeyId {
        let digest = Sha256::digest(key);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        KeyId(id)
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A full SHA-256 fingerprint of a public key, shown to operators when they enrol a key.
pub fn fingerprint(key: &VerifyingKey) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Makes a signing key from 32 random bytes supplied by the caller (this crate draws none).
pub fn signing_key_from_seed(seed: [u8; 32]) -> SigningKey {
    SigningKey::from_bytes(&seed)
}

/// Parses 64 hex characters into a public key.
///
/// # Errors
/// [`PublicKeyError`] saying what is wrong with the text.
pub fn parse_public_key_hex(text: &str) -> Result<VerifyingKey, PublicKeyError> {
    let text = text.trim();
    if text.len() != 64 {
        return Err(PublicKeyError::Length(text.len()));
    }
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
            .map_err(|_| PublicKeyError::NotHex(2 * i + 1))?;
    }
    VerifyingKey::from_bytes(&bytes).map_err(|_| PublicKeyError::NotEd25519)
}

/// Text that is not a public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublicKeyError {
    /// Not 64 characters after trimming; the length given.
    #[error("a public key is 64 hex characters, got {0}")]
    Length(usize),
    /// At this 1-based character.
    #[error("not hex at character {0}")]
    NotHex(usize),
    /// 32 bytes that are not a point of the curve: a damaged or wrong key.
    #[error("not a valid ed25519 public key")]
    NotEd25519,
}

/// A public key as 64 lowercase hex characters (what [`parse_public_key_hex`] reads).
pub fn public_key_hex(key: &VerifyingKey) -> String {
    key.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}
