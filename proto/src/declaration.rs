//! The declaration form (the five groups of fields of the order of 9 February 2020, with the
//! document fields of GB/T 38962) and its automatic review.

use crate::civil::{Date, parse_date};
use crate::credential::{Credential, HolderKind};
use crate::idnum::{DocumentType, check_document};

/// Names longer than this are typing accidents (the longest Chinese names are far shorter).
pub const NAME_LEN_MAX: usize = 64;
/// Bytes of a phone number, after trimming: room for `+852` and separators.
pub const PHONE_LEN_MAX: usize = 20;
/// Bytes of `underlying_conditions`: a short note, not a medical record.
pub const NOTE_LEN_MAX: usize = 256;
/// The age from which a person may declare for others in the household.
pub const ADULT_AGE: i32 = 18;

/// Group 1: gender as on the identity document; for a resident ID it must match the
/// number's gender digit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gender {
    /// Male.
    Male,
    /// Female.
    Female,
}

/// Group 2: person type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersonType {
    /// Owns the home.
    Owner,
    /// Rents the home.
    Tenant,
    /// Lives with the owner or tenant (relative, nanny, ...).
    Household,
    /// Works in a shop, restaurant or hostel inside the compound.
    ShopStaff,
}

/// Group 3: the declared quarantine or treatment situation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quarantine {
    /// Under no measure.
    None,
    /// Under home quarantine: no code.
    Home,
    /// In central quarantine: no code.
    Central,
    /// Under hospital treatment: no code.
    Hospital,
}

/// Group 4: how the home is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tenure {
    /// Owned by someone in the household.
    Owned,
    /// Rented.
    Rented,
}

/// A declaration as the resident, a relative or a staff member fills it in.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Declaration {
    // 1. Basic information.
    /// Full name as on the document, at most [`NAME_LEN_MAX`] bytes.
    pub name: String,
    /// As on the document.
    pub gender: Gender,
    /// GB/T 38962's document type: resident ID, travel permits, passport.
    pub document_type: DocumentType,
    /// The number, checked against its type ([`crate::idnum::check_document`]), at most
    /// 32 bytes. Stays on the node; it leaves only as an [`crate::idnum::IdHash`].
    pub document_number: String,
    /// `YYYY-MM-DD`; required unless the document is a resident ID, which carries it.
    pub birth_date: Option<String>,
    /// GB/T 38962's nationality, as typed (`CN`, ...), at most 32 bytes.
    pub nationality: String,
    /// Digits, spaces, `+` and `-`, at most [`PHONE_LEN_MAX`] bytes.
    pub phone: String,
    // 2. Person type.
    /// Decides the code's holder kind: shop staff get staff codes, everyone else resident.
    pub person_type: PersonType,
    // 3. Quarantine.
    /// As declared; anything but `None` means no code.
    pub quarantine: Quarantine,
    // 4. Residence.
    /// Building of the home, 1 to [`crate::credential::LABEL_LEN_MAX`] bytes: printed on
    /// the code and the pass.
    pub building: String,
    /// Door number, 1 to [`crate::credential::LABEL_LEN_MAX`] bytes.
    pub door: String,
    /// Owned or rented.
    pub tenure: Tenure,
    // 5. Other.
    /// Passed through a high-risk area in the last 14 days.
    pub travel_high_risk: bool,
    /// Close contact with a confirmed or suspected case.
    pub contact_with_case: bool,
    /// Fever, cough or shortness of breath.
    pub symptoms: bool,
    /// GB/T 38962's underlying conditions, free text, at most [`NOTE_LEN_MAX`] bytes; may
    /// be empty. Not used by the review.
    pub underlying_conditions: String,
}

/// The result of the automatic review.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Needs neither home quarantine, central quarantine nor hospital treatment: gets a code.
    Cleared,
    /// Declared under home quarantine, or through a high-risk area: no code.
    HomeQuarantine,
    /// Declared in central quarantine, or in contact with a case: no code.
    CentralQuarantine,
    /// Declared under treatment, or with symptoms: no code.
    Hospital,
}

impl Outcome {
    /// The stable snake_case name (the serde form, and the roster documents' `outcome`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Cleared => "cleared",
            Outcome::HomeQuarantine => "home_quarantine",
            Outcome::CentralQuarantine => "central_quarantine",
            Outcome::Hospital => "hospital",
        }
    }
}

/// What the review decided and why, in words for the person at the counter.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Review {
    /// The measure the answers call for; only [`Outcome::Cleared`] gets a code.
    pub outcome: Outcome,
    /// One sentence for the person at the counter or on the phone.
    pub why: String,
}

/// A declaration that passed validation, with what it tells about the person.
#[derive(Clone, Debug)]
pub struct Checked {
    /// From the resident ID number, or the declared birth date for other documents.
    pub birth: Date,
    /// `Staff` for shop staff, `Resident` otherwise; a proxy declaration makes the caller
    /// issue a `Dependent` code instead.
    pub kind: HolderKind,
    /// The automatic review.
    pub review: Review,
}

/// Why a declaration was refused. Nothing is stored for a refused declaration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeclarationError {
    /// A required field is empty (or blank); the field's name, for the form to point at.
    #[error("missing field: {0}")]
    Missing(&'static str),
    /// A field is filled in but wrong.
    #[error("invalid {field}: {why}")]
    Invalid {
        /// The field's name as in [`Declaration`] (`building/door` for the pair).
        field: &'static str,
        /// What is wrong, for the person filling it in.
        why: String,
    },
}

fn invalid(field: &'static str, why: impl Into<String>) -> DeclarationError {
    DeclarationError::Invalid {
        field,
        why: why.into(),
    }
}

fn text(field: &'static str, value: &str, max: usize) -> Result<(), DeclarationError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(DeclarationError::Missing(field));
    }
    if v.len() > max {
        return Err(invalid(field, format!("at most {max} bytes")));
    }
    if v.chars().any(char::is_control) {
        return Err(invalid(field, "contains control characters"));
    }
    Ok(())
}

impl Declaration {
    /// Validates every field and runs the automatic review.
    ///
    /// # Errors
    /// The first field that is missing or wrong.
    pub fn check(&self, today: Date) -> Result<Checked, DeclarationError> {
        text("name", &self.name, NAME_LEN_MAX)?;
        text("document_number", &self.document_number, 32)?;
        text("nationality", &self.nationality, 32)?;
        text("phone", &self.phone, PHONE_LEN_MAX)?;
        if !self
            .phone
            .trim()
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'+' || b == b'-' || b == b' ')
        {
            return Err(invalid("phone", "only digits, spaces, + and -"));
        }
        text("building", &self.building, crate::credential::LABEL_LEN_MAX)?;
        text("door", &self.door, crate::credential::LABEL_LEN_MAX)?;
        Credential::check_labels(self.building.trim(), self.door.trim())
            .map_err(|why| invalid("building/door", why.to_string()))?;
        if self.underlying_conditions.len() > NOTE_LEN_MAX {
            return Err(invalid(
                "underlying_conditions",
                format!("at most {NOTE_LEN_MAX} bytes"),
            ));
        }
        let facts = check_document(self.document_type, &self.document_number, today)
            .map_err(|e| invalid("document_number", e.to_string()))?;
        let birth = match (facts, &self.birth_date) {
            (Some(facts), given) => {
                let male = self.gender == Gender::Male;
                if facts.male != male {
                    return Err(invalid("gender", "does not match the ID number"));
                }
                if let Some(given) = given.as_deref().filter(|g| !g.trim().is_empty())
                    && parse_date(given.trim()) != Some(facts.birth)
                {
                    return Err(invalid("birth_date", "does not match the ID number"));
                }
                facts.birth
            }
            (None, Some(given)) => {
                let d = parse_date(given.trim()).ok_or_else(|| {
                    invalid("birth_date", format!("{given:?} is not a date YYYY-MM-DD"))
                })?;
                if d > today || d.year < 1900 {
                    return Err(invalid("birth_date", "outside 1900 to today"));
                }
                d
            }
            (None, None) => return Err(DeclarationError::Missing("birth_date")),
        };
        let kind = match self.person_type {
            PersonType::ShopStaff => HolderKind::Staff,
            _ => HolderKind::Resident,
        };
        Ok(Checked {
            birth,
            kind,
            review: self.review(),
        })
    }

    /// The automatic review: the strictest measure any answer calls for.
    pub fn review(&self) -> Review {
        let reason = if self.quarantine == Quarantine::Hospital {
            ReviewReason::Hospital
        } else if self.symptoms {
            ReviewReason::Symptoms
        } else if self.quarantine == Quarantine::Central {
            ReviewReason::CentralQuarantine
        } else if self.contact_with_case {
            ReviewReason::Contact
        } else if self.quarantine == Quarantine::Home {
            ReviewReason::HomeQuarantine
        } else if self.travel_high_risk {
            ReviewReason::HighRiskArea
        } else {
            ReviewReason::Cleared
        };
        Review {
            outcome: reason.outcome(),
            why: reason.text().to_string(),
        }
    }
}

/// Why the automatic review decided as it did. [`Review::why`] holds its [`text`]
/// (English, as the CLI prints and the roster stores it); pages in another language find
/// the reason again with [`ReviewReason::of_text`] and say it in their own words.
///
/// [`text`]: ReviewReason::text
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReviewReason {
    /// Declared under hospital treatment.
    Hospital,
    /// Fever, cough or shortness of breath declared.
    Symptoms,
    /// Declared in central quarantine.
    CentralQuarantine,
    /// Close contact with a case.
    Contact,
    /// Declared under home quarantine.
    HomeQuarantine,
    /// Through a high-risk area in the last 14 days.
    HighRiskArea,
    /// None of the above.
    Cleared,
}

impl ReviewReason {
    /// Every reason, in the review's order (strictest first): for tables of words.
    pub const ALL: [ReviewReason; 7] = [
        ReviewReason::Hospital,
        ReviewReason::Symptoms,
        ReviewReason::CentralQuarantine,
        ReviewReason::Contact,
        ReviewReason::HomeQuarantine,
        ReviewReason::HighRiskArea,
        ReviewReason::Cleared,
    ];

    /// The measure this reason calls for.
    pub fn outcome(self) -> Outcome {
        match self {
            ReviewReason::Hospital | ReviewReason::Symptoms => Outcome::Hospital,
            ReviewReason::CentralQuarantine | ReviewReason::Contact => Outcome::CentralQuarantine,
            ReviewReason::HomeQuarantine | ReviewReason::HighRiskArea => Outcome::HomeQuarantine,
            ReviewReason::Cleared => Outcome::Cleared,
        }
    }

    /// The sentence [`Review::why`] carries.
    pub fn text(self) -> &'static str {
        match self {
            ReviewReason::Hospital => "declared under hospital treatment",
            ReviewReason::Symptoms => {
                "fever, cough or shortness of breath declared: needs a medical check"
            }
            ReviewReason::CentralQuarantine => "declared in central quarantine",
            ReviewReason::Contact => "close contact with a case: central quarantine",
            ReviewReason::HomeQuarantine => "declared under home quarantine",
            ReviewReason::HighRiskArea => {
                "passed through a high-risk area in the last 14 days: home quarantine"
            }
            ReviewReason::Cleared => "no quarantine or treatment needed",
        }
    }

    /// The reason whose [`text`](ReviewReason::text) `why` is; `None` for a reason of
    /// another source (the district's health list).
    pub fn of_text(why: &str) -> Option<ReviewReason> {
        ReviewReason::ALL.into_iter().find(|r| r.text() == why)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Declaration {
        Declaration {
            name: "王小明".into(),
            gender: Gender::Female,
            document_type: DocumentType::ResidentId,
            document_number: "11010519491231002X".into(),
            birth_date: None,
            nationality: "CN".into(),
            phone: "13800138000".into(),
            person_type: PersonType::Owner,
            quarantine: Quarantine::None,
            building: "12".into(),
            door: "1203".into(),
            tenure: Tenure::Owned,
            travel_high_risk: false,
            contact_with_case: false,
            symptoms: false,
            underlying_conditions: String::new(),
        }
    }

    fn today() -> Date {
        Date::new(2026, 11, 27).unwrap()
    }

    #[test]
    fn healthy_declaration_is_cleared() {
        let c = sample().check(today()).unwrap();
        assert_eq!(c.review.outcome, Outcome::Cleared);
        assert_eq!(c.kind, HolderKind::Resident);
        assert_eq!(c.birth, Date::new(1949, 12, 31).unwrap());
    }

    #[test]
    fn review_picks_the_strictest_measure() {
        let mut d = sample();
        d.travel_high_risk = true;
        assert_eq!(d.review().outcome, Outcome::HomeQuarantine);
        assert_eq!(
            ReviewReason::of_text(&d.review().why),
            Some(ReviewReason::HighRiskArea)
        );
        d.contact_with_case = true;
        assert_eq!(d.review().outcome, Outcome::CentralQuarantine);
        d.symptoms = true;
        assert_eq!(d.review().outcome, Outcome::Hospital);
    }

    #[test]
    fn missing_and_wrong_fields_are_named() {
        let mut d = sample();
        d.name = "  ".into();
        assert_eq!(
            d.check(today()).unwrap_err(),
            DeclarationError::Missing("name")
        );
        let mut d = sample();
        d.gender = Gender::Male;
        assert!(matches!(
            d.check(today()).unwrap_err(),
            DeclarationError::Invalid {
                field: "gender",
                ..
            }
        ));
        let mut d = sample();
        d.document_number = "110105194912310021".into();
        assert!(matches!(
            d.check(today()).unwrap_err(),
            DeclarationError::Invalid {
                field: "document_number",
                ..
            }
        ));
        let mut d = sample();
        d.document_type = DocumentType::Passport;
        d.document_number = "E12345678".into();
        assert_eq!(
            d.check(today()).unwrap_err(),
            DeclarationError::Missing("birth_date")
        );
        d.birth_date = Some("1990-02-30".into());
        assert!(d.check(today()).is_err());
        d.birth_date = Some("1990-02-28".into());
        assert!(d.check(today()).is_ok());
        let mut d = sample();
        d.door = "X".repeat(17);
        assert!(d.check(today()).is_err());
    }
}
