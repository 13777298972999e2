//! Node certificates: the district root key vouches that a node key speaks for a community.
//!
//! Layout (version 1, big-endian):
//! `version u8 | community u32 | node key [32] | not_before u64 | not_after u64 |
//!  name length u8 | name (UTF-8, at most 64 bytes) | root signature [64]`

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::{CommunityId, KeyId, UnixTime};

/// The layout version written first in every certificate; others are refused
/// ([`CertError::UnknownVersion`]).
pub const CERT_VERSION: u8 = 1;
/// The community number of a district hub's own certificate: the hub is certified by the same
/// root, and no community is numbered 0.
pub const HUB_COMMUNITY: CommunityId = 0;
/// Community names are for people reading logs; 64 bytes holds 21 CJK characters.
pub const COMMUNITY_NAME_LEN_MAX: usize = 64;
/// Node keys a district may revoke in all (`menjin hub revoke-node`): revocations are never
/// removed, and each is small (key, community, time, who), so the policy document every node
/// loads and the trust feed every gate caches stay small (4,096 keys are 128 KiB in a feed
/// snapshot): about 20 rekeys or stolen laptops for each of a district's 200 nodes.
pub const NODE_REVOCATIONS_MAX: usize = 4_096;
const FIXED_LEN: usize = 1 + 4 + 32 + 8 + 8 + 1;
const SIG_LEN: usize = 64;

/// Why a node certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The bytes are not a certificate (truncated, a bad key, a name that is too long or
    /// not UTF-8); the text says which.
    #[error("node certificate is malformed: {0}")]
    Malformed(&'static str),
    /// Written by a newer (or foreign) version of Menjin than this one reads.
    #[error("node certificate has unknown version {0}")]
    UnknownVersion(u8),
    /// Not signed by the district root this side trusts: another district's node, a
    /// tampered certificate, or a root key that was replaced. The peer is not let in.
    #[error("node certificate is not signed by this district's root key")]
    BadSignature,
    /// The certificate is expired or not yet valid. Either the node needs a new
    /// certificate from the district, or one of the two clocks is wrong.
    #[error("node certificate is outside its validity window")]
    OutsideValidity,
}

/// A district root's statement that `node_key` may issue codes for `community`.
#[derive(Clone, Debug, PartialEq, Eq)]
///
/// The fields are covered by the signature: changing one makes [`NodeCert::verify`] fail.
pub struct NodeCert {
    /// The community the node speaks for ([`HUB_COMMUNITY`] for the hub itself).
    pub community: CommunityId,
    /// For people reading logs, at most [`COMMUNITY_NAME_LEN_MAX`] bytes.
    pub community_name: String,
    /// The key that signs the community's codes and the node's TLS handshakes.
    pub node_key: VerifyingKey,
    /// First second of validity (inclusive).
    pub not_before: UnixTime,
    /// Last second of validity (inclusive).
    pub not_after: UnixTime,
    signature: [u8; SIG_LEN],
}

impl NodeCert {
    /// Signs a new certificate with the district root key.
    ///
    /// # Panics
    /// If `community_name` is longer than [`COMMUNITY_NAME_LEN_MAX`] (callers validate first).
    pub fn issue(
        root: &SigningKey,
        community: CommunityId,
        community_name: &str,
        node_key: VerifyingKey,
        not_before: UnixTime,
        not_after: UnixTime,
    ) -> NodeCert {
        assert!(community_name.len() <= COMMUNITY_NAME_LEN_MAX);
        let mut cert = NodeCert {
            community,
            community_name: community_name.to_string(),
            node_key,
            not_before,
            not_after,
            signature: [0; SIG_LEN],
        };
        cert.signature = root.sign(&cert.body()).to_bytes();
        cert
    }

    /// The id that codes signed by this node carry as their issuer.
    pub fn key_id(&self) -> KeyId {
        KeyId::of(&self.node_key)
    }

    fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED_LEN + self.community_name.len());
        out.push(CERT_VERSION);
        out.extend_from_slice(&self.community.to_be_bytes());
        out.extend_from_slice(self.node_key.as_bytes());
        out.extend_from_slice(&self.not_before.to_be_bytes());
        out.extend_from_slice(&self.not_after.to_be_bytes());
        out.push(self.community_name.len() as u8);
        out.extend_from_slice(self.community_name.as_bytes());
        out
    }

    /// The certificate in the layout of the module doc, signature last.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.body();
        out.extend_from_slice(&self.signature);
        out
    }

    /// Parses a certificate without checking its signature; see [`NodeCert::verify`].
    ///
    /// # Errors
    /// [`CertError::Malformed`] or [`CertError::UnknownVersion`].
    pub fn decode(bytes: &[u8]) -> Result<NodeCert, CertError> {
        let Some(&version) = bytes.first() else {
            return Err(CertError::Malformed("empty"));
        };
        if version != CERT_VERSION {
            return Err(CertError::UnknownVersion(version));
        }
        if bytes.len() < FIXED_LEN + SIG_LEN {
            return Err(CertError::Malformed("truncated"));
        }
        let community = u32::from_be_bytes(bytes[1..5].try_into().expect("4 bytes"));
        let key: [u8; 32] = bytes[5..37].try_into().expect("32 bytes");
        let node_key =
            VerifyingKey::from_bytes(&key).map_err(|_| CertError::Malformed("bad node key"))?;
        let not_before = u64::from_be_bytes(bytes[37..45].try_into().expect("8 bytes"));
        let not_after = u64::from_be_bytes(bytes[45..53].try_into().expect("8 bytes"));
        let name_len = bytes[53] as usize;
        if name_len > COMMUNITY_NAME_LEN_MAX {
            return Err(CertError::Malformed("community name too long"));
        }
        if bytes.len() != FIXED_LEN + name_len + SIG_LEN {
            return Err(CertError::Malformed("length does not match name length"));
        }
        let community_name = std::str::from_utf8(&bytes[FIXED_LEN..FIXED_LEN + name_len])
            .map_err(|_| CertError::Malformed("community name is not UTF-8"))?
            .to_string();
        let signature = bytes[FIXED_LEN + name_len..].try_into().expect("64 bytes");
        Ok(NodeCert {
            community,
            community_name,
            node_key,
            not_before,
            not_after,
            signature,
        })
    }

    /// Checks the root's signature and that `now` is inside the validity window.
    ///
    /// # Errors
    /// [`CertError::BadSignature`] or [`CertError::OutsideValidity`].
    pub fn verify(&self, root: &VerifyingKey, now: UnixTime) -> Result<(), CertError> {
        root.verify(&self.body(), &Signature::from_bytes(&self.signature))
            .map_err(|_| CertError::BadSignature)?;
        if now < self.not_before || now > self.not_after {
            return Err(CertError::OutsideValidity);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::signing_key_from_seed;

    fn sample() -> (SigningKey, NodeCert) {
        let root = signing_key_from_seed([1; 32]);
        let node = signing_key_from_seed([2; 32]);
        let cert = NodeCert::issue(&root, 440_304, "香蜜湖", node.verifying_key(), 100, 1_000);
        (root, cert)
    }

    #[test]
    fn certificate_round_trips_and_verifies() {
        let (root, cert) = sample();
        let back = NodeCert::decode(&cert.encode()).unwrap();
        assert_eq!(back, cert);
        back.verify(&root.verifying_key(), 500).unwrap();
    }

    #[test]
    fn certificate_from_another_root_is_refused() {
        let (_, cert) = sample();
        let other = signing_key_from_seed([9; 32]);
        assert_eq!(
            cert.verify(&other.verifying_key(), 500),
            Err(CertError::BadSignature)
        );
    }

    #[test]
    fn certificate_outside_window_is_refused() {
        let (root, cert) = sample();
        assert_eq!(
            cert.verify(&root.verifying_key(), 1_001),
            Err(CertError::OutsideValidity)
        );
        assert_eq!(
            cert.verify(&root.verifying_key(), 99),
            Err(CertError::OutsideValidity)
        );
    }

    #[test]
    fn tampered_certificate_is_refused() {
        let (root, cert) = sample();
        let mut bytes = cert.encode();
        bytes[2] ^= 1; // another community
        let forged = NodeCert::decode(&bytes).unwrap();
        assert_eq!(
            forged.verify(&root.verifying_key(), 500),
            Err(CertError::BadSignature)
        );
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = NodeCert::decode(&bytes);
        }
    }
}
