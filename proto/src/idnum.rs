//! Identity documents: validation of their numbers and the keyed hash under which they
//! leave a node.
//!
//! Shenzhen has many holders of Hong Kong, Macao and Taiwan travel permits and of foreign
//! passports, so the 18-digit resident ID card is one document type among several (GB/T
//! 38962 lists "document type and number").

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::civil::Date;

/// The kind of identity document a person declares with (GB/T 38962 "document type").
/// Part of the keyed hash: the same number under two types gives two hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentType {
    /// 居民身份证, 18 characters, ISO 7064 MOD 11-2 check digit.
    ResidentId,
    /// 港澳居民来往内地通行证: H or M then 8 (or 10) digits.
    HkMacaoPermit,
    /// 台湾居民来往大陆通行证: 8 or 10 digits.
    TaiwanPermit,
    /// 护照, any country's: 5 to 20 letters and digits.
    Passport,
}

impl DocumentType {
    /// The stable snake_case name (the serde form); hashed into [`IdHash`], so it never
    /// changes.
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentType::ResidentId => "resident_id",
            DocumentType::HkMacaoPermit => "hk_macao_permit",
            DocumentType::TaiwanPermit => "taiwan_permit",
            DocumentType::Passport => "passport",
        }
    }

    /// The name printed on a pass.
    pub fn label(self) -> &'static str {
        match self {
            DocumentType::ResidentId => "居民身份证 Resident ID",
            DocumentType::HkMacaoPermit => "港澳居民来往内地通行证",
            DocumentType::TaiwanPermit => "台湾居民来往大陆通行证",
            DocumentType::Passport => "护照 Passport",
        }
    }

    /// Parses a name from [`DocumentType::as_str`] (or `id` for a resident ID), as typed on
    /// the command line or in an import file.
    ///
    /// # Errors
    /// [`UnknownDocumentType`], whose message lists the accepted names.
    pub fn parse(s: &str) -> Result<DocumentType, UnknownDocumentType> {
        Ok(match s {
            "resident_id" | "id" => DocumentType::ResidentId,
            "hk_macao_permit" => DocumentType::HkMacaoPermit,
            "taiwan_permit" => DocumentType::TaiwanPermit,
            "passport" => DocumentType::Passport,
            other => return Err(UnknownDocumentType(other.to_string())),
        })
    }
}

/// A document type name that [`DocumentType::parse`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown document type {0:?}: use resident_id, hk_macao_permit, taiwan_permit or passport")]
pub struct UnknownDocumentType(pub String);

/// What a resident ID number itself says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResidentIdFacts {
    /// Digits 7 to 14 (`YYYYMMDD`).
    pub birth: Date,
    /// Digit 17 is odd.
    pub male: bool,
}

/// Why a document number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// Not 17 digits and a check character; the number of characters given.
    #[error(
        "resident ID number must be 17 digits and a check character (0-9 or X), got {0} characters"
    )]
    BadShape(usize),
    /// The ISO 7064 MOD 11-2 check character does not match: usually a mistyped digit.
    #[error("resident ID number check digit is wrong: expected {expected}, got {got}")]
    BadCheckDigit {
        /// The check character the first 17 digits call for.
        expected: char,
        /// The one typed (upper-cased).
        got: char,
    },
    /// The birth date digits are not a real date, or before 1900; `YYYY-MM-DD` as read.
    #[error("resident ID number has an impossible birth date {0}")]
    BadBirthDate(String),
    /// The birth date digits are after `today`.
    #[error("resident ID number has a birth date in the future")]
    BirthInFuture,
    /// A permit or passport number of the wrong shape; the document's name.
    #[error("{0} number is not in its expected format")]
    BadFormat(&'static str),
}

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];

/// Validates an 18-digit resident ID number (GB 11643-1999).
///
/// # Errors
/// [`IdError`] naming what is wrong: shape, check digit, birth date.
pub fn check_resident_id(number: &str, today: Date) -> Result<ResidentIdFacts, IdError> {
    let chars: Vec<char> = number.chars().collect();
    if chars.len() != 18
        || !chars[..17].iter().all(char::is_ascii_digit)
        || !(chars[17].is_ascii_digit() || chars[17] == 'X' || chars[17] == 'x')
    {
        return Err(IdError::BadShape(chars.len()));
    }
    let digit = |i: usize| chars[i].to_digit(10).expect("checked digit");
    let sum: u32 = (0..17).map(|i| digit(i) * WEIGHTS[i]).sum();
    let expected = CHECK[(sum % 11) as usize];
    let got = chars[17].to_ascii_uppercase();
    if expected != got {
        return Err(IdError::BadCheckDigit { expected, got });
    }
    let num = |from: usize, len: usize| (from..from + len).fold(0u32, |acc, i| acc * 10 + digit(i));
    let (y, m, d) = (num(6, 4), num(10, 2), num(12, 2));
    let birth = Date::new(y as i32, m, d)
        .filter(|date| date.year >= 1900)
        .ok_or_else(|| IdError::BadBirthDate(format!("{y:04}-{m:02}-{d:02}")))?;
    if birth > today {
        return Err(IdError::BirthInFuture);
    }
    Ok(ResidentIdFacts {
        birth,
        male: digit(16) % 2 == 1,
    })
}

/// Completes 17 digits with their check character (for tools that make test rosters).
/// `None` unless `first17` is exactly 17 ASCII digits.
pub fn complete_resident_id(first17: &str) -> Option<String> {
    if first17.len() != 17 || !first17.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sum: u32 = first17
        .bytes()
        .zip(WEIGHTS)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    Some(format!("{first17}{}", CHECK[(sum % 11) as usize]))
}

/// Validates any document number; returns the facts a resident ID carries, if it is one.
///
/// # Errors
/// [`IdError`] naming what is wrong.
pub fn check_document(
    kind: DocumentType,
    number: &str,
    today: Date,
) -> Result<Option<ResidentIdFacts>, IdError> {
    let n = number.trim();
    let alnum = |min: usize, max: usize| {
        (min..=max).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric())
    };
    match kind {
        DocumentType::ResidentId => check_resident_id(n, today).map(Some),
        DocumentType::HkMacaoPermit => {
            let ok = matches!(n.as_bytes().first(), Some(b'H' | b'M'))
                && (n.len() == 9 || n.len() == 11)
                && n.bytes().skip(1).all(|b| b.is_ascii_digit());
            if ok {
                Ok(None)
            } else {
                Err(IdError::BadFormat("hk/macao permit"))
            }
        }
        DocumentType::TaiwanPermit => {
            let ok = (n.len() == 8 || n.len() == 10) && n.bytes().all(|b| b.is_ascii_digit());
            if ok {
                Ok(None)
            } else {
                Err(IdError::BadFormat("taiwan permit"))
            }
        }
        DocumentType::Passport => {
            if alnum(5, 20) {
                Ok(None)
            } else {
                Err(IdError::BadFormat("passport"))
            }
        }
    }
}

/// The district's secret for hashing document numbers. Every node and the hub hold the same
/// key, so a health list imported at the hub matches the hashes made at the nodes, while
/// nobody without the key can test a guessed ID number against a hash.
#[derive(Clone)]
pub struct IdHashKey(pub [u8; 32]);

/// A keyed hash of a document: the only form in which an ID number leaves a node.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct IdHash(pub [u8; 16]);

impl std::fmt::Debug for IdHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdHash(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl IdHashKey {
    /// HMAC-SHA256 over `type:NUMBER` (number trimmed and upper-cased), truncated to 16 bytes.
    pub fn hash(&self, kind: DocumentType, number: &str) -> IdHash {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("any key length");
        mac.update(kind.as_str().as_bytes());
        mac.update(b":");
        mac.update(number.trim().to_ascii_uppercase().as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        IdHash(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> Date {
        Date::new(2026, 11, 27).unwrap()
    }

    fn with_check(first17: &str) -> String {
        complete_resident_id(first17).unwrap()
    }

    #[test]
    fn published_sample_number_is_valid() {
        // The example number from GB 11643-1999.
        let facts = check_resident_id("11010519491231002X", today()).unwrap();
        assert_eq!(facts.birth, Date::new(1949, 12, 31).unwrap());
        assert!(!facts.male);
    }

    #[test]
    fn wrong_check_digit_is_refused() {
        assert_eq!(
            check_resident_id("110105194912310021", today()),
            Err(IdError::BadCheckDigit {
                expected: 'X',
                got: '1'
            })
        );
    }

    #[test]
    fn impossible_or_future_birth_date_is_refused() {
        let feb30 = with_check("44030419900230001");
        assert!(matches!(
            check_resident_id(&feb30, today()),
            Err(IdError::BadBirthDate(_))
        ));
        let future = with_check("44030420300101001");
        assert_eq!(
            check_resident_id(&future, today()),
            Err(IdError::BirthInFuture)
        );
    }

    #[test]
    fn wrong_shape_is_refused() {
        assert_eq!(
            check_resident_id("12345", today()),
            Err(IdError::BadShape(5))
        );
        assert!(check_resident_id("4403041990010100A1", today()).is_err());
    }

    #[test]
    fn other_documents_have_their_formats() {
        assert!(check_document(DocumentType::HkMacaoPermit, "H12345678", today()).is_ok());
        assert!(check_document(DocumentType::HkMacaoPermit, "X12345678", today()).is_err());
        assert!(check_document(DocumentType::TaiwanPermit, "12345678", today()).is_ok());
        assert!(check_document(DocumentType::Passport, "E1234567", today()).is_ok());
        assert!(check_document(DocumentType::Passport, "E1", today()).is_err());
    }

    #[test]
    fn hash_is_keyed_and_normalised() {
        let a = IdHashKey([1; 32]);
        let b = IdHashKey([2; 32]);
        let n = "11010519491231002X";
        assert_eq!(
            a.hash(DocumentType::ResidentId, n),
            a.hash(DocumentType::ResidentId, " 11010519491231002x")
        );
        assert_ne!(
            a.hash(DocumentType::ResidentId, n),
            b.hash(DocumentType::ResidentId, n)
        );
        assert_ne!(
            a.hash(DocumentType::ResidentId, n),
            a.hash(DocumentType::Passport, n)
        );
    }

    proptest::proptest! {
        #[test]
        fn random_numbers_never_panic(s in ".{0,40}") {
            let _ = check_resident_id(&s, today());
            for kind in [DocumentType::HkMacaoPermit, DocumentType::TaiwanPermit, DocumentType::Passport] {
                let _ = check_document(kind, &s, today());
            }
        }

        #[test]
        fn every_generated_valid_number_passes(n in 0u32..99_999) {
            let first17 = format!("440304198803{:02}{:03}", 1 + n % 28, n % 1000);
            let id = with_check(&first17);
            proptest::prop_assert!(check_resident_id(&id, today()).is_ok());
        }
    }
}
