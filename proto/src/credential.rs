//! The signed code a resident shows at the gate, on a phone (QR) or on a printed pass.
//!
//! Binary layout, version 1 (big-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version (1) |
//! | 1 | holder kind |
//! | 8 | credential id |
//! | 4 | community id |
//! | 8 | opaque holder id (never the ID number) |
//! | 4 | valid from, Unix seconds |
//! | 4 | valid until, Unix seconds |
//! | 8 | issuer key id ([`KeyId`]) |
//! | 1 + n | building, n ≤ 16 bytes UTF-8 |
//! | 1 + n | door, n ≤ 16 bytes UTF-8 |
//! | 64 | ed25519 signature of everything before it by the issuing node key |
//!
//! At most 136 bytes; the text form is `MJ:` followed by base45 (the QR alphanumeric
//! alphabet), at most 207 characters, which fits QR version 10 at error correction M
//! (311 alphanumeric characters).

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};

use crate::rule::Reason;
use crate::{CommunityId, KeyId, NodeCert, UnixTime};

/// The layout version, first byte of every code; others are `unknown_version`.
pub const CODE_VERSION: u8 = 1;
/// Text prefix: tells a scanner line apart from other QR payloads before any decoding.
pub const TEXT_PREFIX: &str = "MJ:";
/// Building and door numbers are short labels ("12", "1203", "B-3"); 16 bytes keeps the code
/// inside QR version 10-M.
pub const LABEL_LEN_MAX: usize = 16;
const FIXED_LEN: usize = 1 + 1 + 8 + 4 + 8 + 4 + 4 + 8;
const SIG_LEN: usize = 64;
/// The longest binary code: both labels at [`LABEL_LEN_MAX`] (136 bytes).
pub const CODE_LEN_MAX: usize = FIXED_LEN + 2 + 2 * LABEL_LEN_MAX + SIG_LEN;
/// Longest text form we accept before even trying to decode it.
pub const TEXT_LEN_MAX: usize = TEXT_PREFIX.len() + CODE_LEN_MAX.div_ceil(2) * 3;

/// Who holds a code. The gate rule treats visitors differently from everyone living inside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HolderKind {
    /// Lives in the compound: owner, tenant or household member.
    Resident,
    /// Declared by an adult relative of the same household (elderly, children, ...).
    Dependent,
    /// From outside, let in with a resident's consent (order item 6); refused in a lockdown.
    Visitor,
    /// Staff of the shops, restaurants and hostels inside the compound.
    Staff,
}

impl HolderKind {
    fn to_byte(self) -> u8 {
        match self {
            HolderKind::Resident => 0,
            HolderKind::Dependent => 1,
            HolderKind::Visitor => 2,
            HolderKind::Staff => 3,
        }
    }

    fn from_byte(b: u8) -> Option<HolderKind> {
        Some(match b {
            0 => HolderKind::Resident,
            1 => HolderKind::Dependent,
            2 => HolderKind::Visitor,
            3 => HolderKind::Staff,
            _ => return None,
        })
    }

    /// The stable snake_case name (the serde form, and the roster documents' `kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            HolderKind::Resident => "resident",
            HolderKind::Dependent => "dependent",
            HolderKind::Visitor => "visitor",
            HolderKind::Staff => "staff",
        }
    }

    /// Lives or works inside the compound (everyone but visitors).
    pub fn is_inside(self) -> bool {
        self != HolderKind::Visitor
    }
}

/// Eight random bytes naming one issued code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CredId(pub [u8; 8]);

/// Eight random bytes naming a person inside one node; carries no personal data.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HolderId(pub [u8; 8]);

macro_rules! hex_id {
    ($t:ident) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                for b in self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($t), "({})"), self)
            }
        }
        // Hex text in JSON (people and scripts read it), raw bytes in postcard.
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.collect_str(self)
                } else {
                    serde::Serialize::serialize(&self.0, s)
                }
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let text = <String as serde::Deserialize>::deserialize(d)?;
                    text.parse().map_err(serde::de::Error::custom)
                } else {
                    <[u8; 8] as serde::Deserialize>::deserialize(d).map($t)
                }
            }
        }
        impl std::str::FromStr for $t {
            type Err = HexIdError;
            fn from_str(s: &str) -> Result<Self, HexIdError> {
                let s = s.trim();
                if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(HexIdError {
                        id: stringify!($t),
                        text: s.to_string(),
                    });
                }
                let mut out = [0u8; 8];
                for (i, b) in out.iter_mut().enumerate() {
                    *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("checked hex");
                }
                Ok($t(out))
            }
        }
    };
}
/// Text that is not a [`CredId`] or [`HolderId`] (16 hex characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{id} is 16 hex characters, got {text:?}")]
pub struct HexIdError {
    /// `CredId` or `HolderId`.
    pub id: &'static str,
    /// The text given, trimmed.
    pub text: String,
}

hex_id!(CredId);
hex_id!(HolderId);

/// The signed statement inside a code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// What the gate rule lets the holder do.
    pub kind: HolderKind,
    /// Names this code in the node's roster and on revocation lists.
    pub id: CredId,
    /// The only community whose gates accept it.
    pub community: CommunityId,
    /// The person, without personal data.
    pub holder: HolderId,
    /// First valid second, Unix time (u32 keeps the code short; good until 2106).
    pub valid_from: u32,
    /// Last valid second, Unix time; not before `valid_from`.
    pub valid_until: u32,
    /// The issuing node's key id; must match the key that signs.
    pub issuer: KeyId,
    /// The holder's building, 1 to [`LABEL_LEN_MAX`] bytes: what the guard sees.
    pub building: String,
    /// The holder's door number, 1 to [`LABEL_LEN_MAX`] bytes.
    pub door: String,
}

/// A building or door label that does not fit in a code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LabelError {
    /// The building is empty or over [`LABEL_LEN_MAX`] bytes; the text given.
    #[error("building must be 1 to {max} bytes, got {0:?}", max = LABEL_LEN_MAX)]
    Building(String),
    /// The door is empty or over [`LABEL_LEN_MAX`] bytes; the text given.
    #[error("door must be 1 to {max} bytes, got {0:?}", max = LABEL_LEN_MAX)]
    Door(String),
}

/// Why a code could not even be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeError {
    /// Not a code: wrong prefix, not base45, truncated, too long, a bad label or window.
    /// The text says which.
    #[error("malformed code: {0}")]
    Malformed(&'static str),
    /// A layout version other than [`CODE_VERSION`].
    #[error("unknown code version {0}")]
    UnknownVersion(u8),
}

impl CodeError {
    /// The gate reason the error is refused with (`malformed`, `unknown_version`).
    pub fn reason(&self) -> Reason {
        match self {
            CodeError::Malformed(_) => Reason::Malformed,
            CodeError::UnknownVersion(_) => Reason::UnknownVersion,
        }
    }
}

/// A parsed code with the exact bytes it was made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCode {
    /// The decoded statement. Not re-signed if changed: [`SignedCode::as_bytes`] keeps the
    /// original bytes.
    pub credential: Credential,
    bytes: Vec<u8>,
}

impl Credential {
    /// Checks label lengths; [`Credential::sign`] refuses to build an oversized code.
    ///
    /// # Errors
    /// [`LabelError`] naming the field that is empty or too long.
    pub fn check_labels(building: &str, door: &str) -> Result<(), LabelError> {
        if building.is_empty() || building.len() > LABEL_LEN_MAX {
            return Err(LabelError::Building(building.to_string()));
        }
        if door.is_empty() || door.len() > LABEL_LEN_MAX {
            return Err(LabelError::Door(door.to_string()));
        }
        Ok(())
    }

    fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CODE_LEN_MAX);
        out.push(CODE_VERSION);
        out.push(self.kind.to_byte());
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&self.community.to_be_bytes());
        out.extend_from_slice(&self.holder.0);
        out.extend_from_slice(&self.valid_from.to_be_bytes());
        out.extend_from_slice(&self.valid_until.to_be_bytes());
        out.extend_from_slice(&self.issuer.0);
        out.push(self.building.len() as u8);
        out.extend_from_slice(self.building.as_bytes());
        out.push(self.door.len() as u8);
        out.extend_from_slice(self.door.as_bytes());
        out
    }

    /// Signs the credential with the issuing node's key.
    ///
    /// # Panics
    /// If the labels are too long or `issuer` is not the key id of `key`: both are caller bugs.
    pub fn sign(self, key: &SigningKey) -> SignedCode {
        Credential::check_labels(&self.building, &self.door).expect("labels checked by caller");
        assert_eq!(
            self.issuer,
            KeyId::of(&key.verifying_key()),
            "issuer must name the signing key"
        );
        let mut bytes = self.body();
        let sig = key.sign(&bytes);
        bytes.extend_from_slice(&sig.to_bytes());
        SignedCode {
            credential: self,
            bytes,
        }
    }
}

impl SignedCode {
    /// Parses the binary form.
    ///
    /// # Errors
    /// [`CodeError`] saying what is wrong; never panics on any input.
    pub fn decode(bytes: &[u8]) -> Result<SignedCode, CodeError> {
        let Some(&version) = bytes.first() else {
            return Err(CodeError::Malformed("empty"));
        };
        if version != CODE_VERSION {
            return Err(CodeError::UnknownVersion(version));
        }
        if bytes.len() > CODE_LEN_MAX {
            return Err(CodeError::Malformed("too long"));
        }
        if bytes.len() < FIXED_LEN + 2 + SIG_LEN {
            return Err(CodeError::Malformed("truncated"));
        }
        let kind =
            HolderKind::from_byte(bytes[1]).ok_or(CodeError::Malformed("unknown holder kind"))?;
        let id = CredId(bytes[2..10].try_into().expect("8 bytes"));
        let community = u32::from_be_bytes(bytes[10..14].try_into().expect("4 bytes"));
        let holder = HolderId(bytes[14..22].try_into().expect("8 bytes"));
        let valid_from = u32::from_be_bytes(bytes[22..26].try_into().expect("4 bytes"));
        let valid_until = u32::from_be_bytes(bytes[26..30].try_into().expect("4 bytes"));
        let issuer = KeyId(bytes[30..38].try_into().expect("8 bytes"));
        let mut at = FIXED_LEN;
        let building = read_label(bytes, &mut at)?;
        let door = read_label(bytes, &mut at)?;
        if bytes.len() != at + SIG_LEN {
            return Err(CodeError::Malformed("length does not match its labels"));
        }
        if valid_until < valid_from {
            return Err(CodeError::Malformed(
                "validity window ends before it starts",
            ));
        }
        let credential = Credential {
            kind,
            id,
            community,
            holder,
            valid_from,
            valid_until,
            issuer,
            building,
            door,
        };
        Ok(SignedCode {
            credential,
            bytes: bytes.to_vec(),
        })
    }

    /// Parses the text form (`MJ:` + base45), as a scanner types it.
    ///
    /// # Errors
    /// [`CodeError`] saying what is wrong; never panics on any input.
    pub fn from_text(text: &str) -> Result<SignedCode, CodeError> {
        let text = text.trim();
        if text.len() > TEXT_LEN_MAX {
            return Err(CodeError::Malformed("text too long"));
        }
        let Some(body) = text.strip_prefix(TEXT_PREFIX) else {
            return Err(CodeError::Malformed("does not start with MJ:"));
        };
        let bytes = base45::decode(body).map_err(|_| CodeError::Malformed("not base45"))?;
        SignedCode::decode(&bytes)
    }

    /// The text form for the QR code and scanners (`MJ:` + base45, at most
    /// [`TEXT_LEN_MAX`] characters).
    pub fn to_text(&self) -> String {
        encode_text(&self.bytes)
    }

    /// The exact bytes signed or decoded, signature included: what the node stores and
    /// compares a scanned code with.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Checks the signature against the issuer's certificate (already verified against the
    /// district root by the caller), then community and time.
    ///
    /// # Errors
    /// The [`Reason`] for the refusal: `UnknownIssuer`, `BadSignature`, `WrongCommunity`,
    /// `Expired` or `NotYetValid`.
    pub fn verify(
        &self,
        issuer: Option<&NodeCert>,
        community: CommunityId,
        now: UnixTime,
    ) -> Result<(), Reason> {
        let c = &self.credential;
        // A code of another community is refused as such whoever signed it: the guard needs
        // to know the person belongs elsewhere, and no key of ours vouches for it anyway.
        if c.community != community {
            return Err(Reason::WrongCommunity);
        }
        let Some(cert) = issuer.filter(|cert| cert.key_id() == c.issuer) else {
            return Err(Reason::UnknownIssuer);
        };
        // A node may only speak for its own community: a code for another community signed by
        // this node's key is a forgery as far as the district is concerned.
        if cert.community != c.community {
            return Err(Reason::BadSignature);
        }
        let (body, sig) = self.bytes.split_at(self.bytes.len() - SIG_LEN);
        let sig = Signature::from_bytes(sig.try_into().expect("64 bytes"));
        cert.node_key
            .verify(body, &sig)
            .map_err(|_| Reason::BadSignature)?;
        self.check_context(community, now)
    }

    /// The checks that need no signature: right community, inside the validity window.
    ///
    /// # Errors
    /// `WrongCommunity`, `Expired` or `NotYetValid`.
    pub fn check_context(&self, community: CommunityId, now: UnixTime) -> Result<(), Reason> {
        let c = &self.credential;
        if c.community != community {
            return Err(Reason::WrongCommunity);
        }
        if now > u64::from(c.valid_until) {
            return Err(Reason::Expired);
        }
        if now < u64::from(c.valid_from) {
            return Err(Reason::NotYetValid);
        }
        Ok(())
    }
}

/// The text form of any bytes (a signed code, or for tests a damaged one).
pub fn encode_text(bytes: &[u8]) -> String {
    format!("{TEXT_PREFIX}{}", base45::encode(bytes))
}

fn read_label(bytes: &[u8], at: &mut usize) -> Result<String, CodeError> {
    let len = *bytes.get(*at).ok_or(CodeError::Malformed("truncated"))? as usize;
    if len == 0 || len > LABEL_LEN_MAX {
        return Err(CodeError::Malformed("label length out of range"));
    }
    let start = *at + 1;
    let raw = bytes
        .get(start..start + len)
        .ok_or(CodeError::Malformed("truncated"))?;
    let label = std::str::from_utf8(raw).map_err(|_| CodeError::Malformed("label is not UTF-8"))?;
    *at = start + len;
    Ok(label.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::signing_key_from_seed;

    const NOW: u64 = 1_800_000_000;

    fn setup() -> (NodeCert, SigningKey, Credential) {
        let root = signing_key_from_seed([1; 32]);
        let node = signing_key_from_seed([2; 32]);
        let cert = NodeCert::issue(&root, 7, "c7", node.verifying_key(), 0, u64::MAX);
        let cred = Credential {
            kind: HolderKind::Resident,
            id: CredId([3; 8]),
            community: 7,
            holder: HolderId([4; 8]),
            valid_from: (NOW - 10) as u32,
            valid_until: (NOW + 100) as u32,
            issuer: cert.key_id(),
            building: "12".into(),
            door: "1203".into(),
        };
        (cert, node, cred)
    }

    #[test]
    fn code_round_trips_through_text() {
        let (cert, key, cred) = setup();
        let code = cred.clone().sign(&key);
        let text = code.to_text();
        assert!(text.starts_with("MJ:"));
        assert!(
            text.bytes()
                .all(|b| b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:".contains(&b))
        );
        let back = SignedCode::from_text(&text).unwrap();
        assert_eq!(back.credential, cred);
        back.verify(Some(&cert), 7, NOW).unwrap();
    }

    #[test]
    fn longest_code_fits_qr_version_10_m() {
        let (_, key, mut cred) = setup();
        cred.building = "B".repeat(LABEL_LEN_MAX);
        cred.door = "D".repeat(LABEL_LEN_MAX);
        let text = cred.sign(&key).to_text();
        assert!(text.len() <= TEXT_LEN_MAX);
        assert!(text.len() <= 311, "{} characters", text.len());
    }

    #[test]
    fn every_refusal_has_its_reason() {
        let (cert, key, cred) = setup();
        let code = cred.clone().sign(&key);
        assert_eq!(code.verify(None, 7, NOW), Err(Reason::UnknownIssuer));
        assert_eq!(
            code.verify(Some(&cert), 8, NOW),
            Err(Reason::WrongCommunity)
        );
        assert_eq!(code.verify(None, 8, NOW), Err(Reason::WrongCommunity));
        assert_eq!(code.verify(Some(&cert), 7, NOW + 101), Err(Reason::Expired));
        assert_eq!(
            code.verify(Some(&cert), 7, NOW - 11),
            Err(Reason::NotYetValid)
        );

        let mut tampered = code.as_bytes().to_vec();
        tampered[FIXED_LEN + 1] ^= 0x01; // building "12" -> "02"
        let tampered = SignedCode::decode(&tampered).unwrap();
        assert_eq!(
            tampered.verify(Some(&cert), 7, NOW),
            Err(Reason::BadSignature)
        );

        let mut v2 = code.as_bytes().to_vec();
        v2[0] = 2;
        assert_eq!(
            SignedCode::decode(&v2).unwrap_err().reason(),
            Reason::UnknownVersion
        );
        let cut = &code.as_bytes()[..code.as_bytes().len() - 1];
        assert_eq!(
            SignedCode::decode(cut).unwrap_err().reason(),
            Reason::Malformed
        );
        assert_eq!(
            SignedCode::from_text("hello").unwrap_err().reason(),
            Reason::Malformed
        );
        assert_eq!(
            SignedCode::from_text("MJ:??").unwrap_err().reason(),
            Reason::Malformed
        );
    }

    #[test]
    fn code_of_another_community_signed_by_this_node_is_a_forgery() {
        let (cert, key, mut cred) = setup();
        cred.community = 8;
        let code = cred.sign(&key);
        assert_eq!(code.verify(Some(&cert), 8, NOW), Err(Reason::BadSignature));
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = SignedCode::decode(&bytes);
        }

        #[test]
        fn random_text_never_panics(text in ".{0,300}") {
            let _ = SignedCode::from_text(&text);
            let _ = SignedCode::from_text(&format!("MJ:{text}"));
        }

        #[test]
        fn any_single_bit_flip_is_refused(pos in 0usize..120, bit in 0u8..8) {
            let (cert, key, cred) = setup();
            let code = cred.sign(&key);
            let mut bytes = code.as_bytes().to_vec();
            let pos = pos % bytes.len();
            bytes[pos] ^= 1 << bit;
            if let Ok(flipped) = SignedCode::decode(&bytes) {
                proptest::prop_assert!(flipped.verify(Some(&cert), 7, NOW).is_err());
            }
        }
    }
}
