//! Fixed keys and certificates shared by the targets and the seeds (deterministic: the
//! seeds of one run decode the same way in the next).

use ed25519_dalek::SigningKey;
use menjin_proto::cert::NodeCert;
use menjin_proto::credential::{CredId, Credential, HolderId, HolderKind};
use menjin_proto::{CommunityId, SignedCode, UnixTime};

/// The community the node fixtures serve.
pub const COMMUNITY: CommunityId = 7;
/// "Now" for every check (2023-11-14).
pub const NOW: UnixTime = 1_700_000_000;

/// The district root key.
pub fn root() -> SigningKey {
    SigningKey::from_bytes(&[1; 32])
}

/// The node key.
pub fn node_key() -> SigningKey {
    SigningKey::from_bytes(&[2; 32])
}

/// The node's certificate, signed by [`root`].
pub fn node_cert() -> NodeCert {
    NodeCert::issue(
        &root(),
        COMMUNITY,
        "Fuzz Garden",
        node_key().verifying_key(),
        NOW - 86_400,
        NOW + 365 * 86_400,
    )
}

/// A code signed by [`node_key`].
pub fn code(kind: HolderKind, n: u8) -> SignedCode {
    Credential {
        kind,
        id: CredId([n; 8]),
        community: COMMUNITY,
        holder: HolderId([n.wrapping_add(1); 8]),
        valid_from: (NOW - 3_600) as u32,
        valid_until: (NOW + 30 * 86_400) as u32,
        issuer: node_cert().key_id(),
        building: format!("B{n}"),
        door: "1203".into(),
    }
    .sign(&node_key())
}
