//! The node's household operations: issue and revoke a home's code (console), open a home
//! with a code, declare through it, and the home's members with their codes (the resident
//! pages). Storage is `crate::households`.

use menjin_proto::record::CredRecord;
use menjin_proto::wire::ConsoleRequest;

use super::*;
use crate::households::{Household, HouseholdCode, HouseholdError};

/// A code as "my declarations" shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodeState {
    /// In force: the gate lets its holder through (the rule permitting).
    Active,
    /// Past its validity: the person declares again for a new one.
    Expired,
    /// Revoked (a new declaration, a health list, staff).
    Revoked {
        /// Why, in the words of the record.
        why: String,
    },
}

/// One person of a home, as the resident pages show them.
#[derive(Clone, Debug)]
pub struct Member {
    /// The person's holder id (never their ID number).
    pub holder: HolderId,
    /// As declared.
    pub name: String,
    /// Resident, dependent, staff.
    pub kind: HolderKind,
    /// The automatic review's outcome.
    pub outcome: Outcome,
    /// Why the review decided so, in words.
    pub why: String,
    /// The code text (`MJ:...`), its end of validity and state, if the person has one.
    pub code: Option<(String, UnixTime, CodeState)>,
}

impl From<HouseholdError> for Refusal {
    fn from(e: HouseholdError) -> Refusal {
        match e {
            HouseholdError::NoCode { .. } => not_found(e.to_string()),
            HouseholdError::TooManyMembers => refused(e.to_string()),
            _ => {
                tracing::error!(error = %e, "household storage failure");
                Refusal {
                    kind: ErrorKind::Internal,
                    message: e.to_string(),
                }
            }
        }
    }
}

fn home_labels(building: &str, door: &str) -> Result<(String, String), Refusal> {
    let (building, door) = (building.trim(), door.trim());
    if building.chars().chain(door.chars()).any(char::is_control) {
        return Err(bad("building and door: no control characters"));
    }
    Credential::check_labels(building, door).map_err(|e| bad(e.to_string()))?;
    Ok((building.to_string(), door.to_string()))
}

impl Node {
    pub(super) fn issue_household(
        &self,
        building: &str,
        door: &str,
        now: UnixTime,
    ) -> Result<Response, Refusal> {
        let (building, door) = home_labels(building, door)?;
        let code = self.households.issue(&building, &door, now)?;
        tracing::info!(%building, %door, "household code issued");
        Ok(Response::HouseholdCode {
            building,
            door,
            code: code.to_text(),
        })
    }

    pub(super) fn revoke_household(
        &self,
        building: &str,
        door: &str,
        now: UnixTime,
    ) -> Result<Response, Refusal> {
        let (building, door) = home_labels(building, door)?;
        self.households.revoke(&building, &door, now)?;
        tracing::info!(%building, %door, "household code revoked");
        Ok(Response::Done(format!(
            "household code of building {building} door {door} revoked"
        )))
    }

    /// Whether the home (building and door checked as the console checks them) has a code in
    /// force: the office's slip sheet reissues such a home's code only when asked to.
    ///
    /// # Errors
    /// A [`Refusal`] for a bad building or door, or on storage failure.
    pub fn household_in_force(&self, building: &str, door: &str) -> Result<bool, Refusal> {
        let (building, door) = home_labels(building, door)?;
        Ok(self.households.in_force(&building, &door)?)
    }

    /// Per building, the homes with a household code in force where nobody is declared yet
    /// (online or on paper), sorted by building then door; buildings with every such home
    /// declared are listed with no doors. One pass over the roster and the household tree:
    /// the office's progress page, not a hot path. Blocking.
    ///
    /// # Errors
    /// A [`Refusal`] on storage failure.
    pub fn homes_not_declared(&self) -> Result<Vec<(String, Vec<String>)>, Refusal> {
        use std::collections::{BTreeMap, BTreeSet};
        let mut declared: BTreeSet<(String, String)> = BTreeSet::new();
        for p in self.roster.persons() {
            let p = p?;
            declared.insert((p.form.building, p.form.door));
        }
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (building, door, in_force) in self.households.homes()? {
            if !in_force {
                continue;
            }
            let doors = out.entry(building.clone()).or_default();
            if !declared.contains(&(building, door.clone())) {
                doors.push(door);
            }
        }
        Ok(out.into_iter().collect())
    }

    /// The home a typed household code opens, if it is in force.
    ///
    /// # Errors
    /// A [`Refusal`] on storage failure (an unknown code is `Ok(None)`).
    pub fn open_household(&self, code: &HouseholdCode) -> Result<Option<Household>, Refusal> {
        Ok(self.households.lookup(code)?)
    }

    /// A session's home again, if its code is still in force (revoked or reissued: `None`).
    ///
    /// # Errors
    /// A [`Refusal`] on storage failure.
    pub fn household(&self, code_hash: &[u8; 32]) -> Result<Option<Household>, Refusal> {
        Ok(self.households.by_hash(code_hash)?)
    }

    /// An online declaration through a home's session: the home is the session's whatever
    /// the form says, and a person declared at another home is not moved from here (that
    /// would hand this home their code). Blocking.
    pub fn declare_in_household(
        &self,
        home: &Household,
        mut form: Declaration,
        now: UnixTime,
    ) -> Response {
        form.building = home.building.clone();
        form.door = home.door.clone();
        trim_form(&mut form);
        let id_hash = self.idhash.hash(form.document_type, &form.document_number);
        match self.roster.person_by_hash(&id_hash) {
            Ok(Some(p)) if p.form.building != home.building || p.form.door != home.door => {
                return Response::Error {
                    kind: ErrorKind::Refused,
                    message: "this person is declared at another home: ask the office".into(),
                };
            }
            Ok(_) => {}
            Err(e) => {
                let r = Refusal::from(e);
                return Response::Error {
                    kind: r.kind,
                    message: r.message,
                };
            }
        }
        let resp = self.console(ConsoleRequest::Declare { form }, now);
        if let Response::Declared(r) = &resp
            && let Err(e) = self.households.add_member(home, r.holder)
        {
            // Declared and flushed; only the web's list misses them (the office sees them).
            tracing::warn!(error = %e, holder = %r.holder, "member not added to its household");
        }
        resp
    }

    /// The people declared through a home's sessions who still live there, with their codes.
    ///
    /// # Errors
    /// A [`Refusal`] on storage failure.
    pub fn household_members(
        &self,
        home: &Household,
        now: UnixTime,
    ) -> Result<Vec<Member>, Refusal> {
        let mut out = Vec::new();
        for holder in self.households.members(home)? {
            let Some(p) = self.roster.person(&holder)? else {
                continue;
            };
            // Re-declared at another home by the office: no longer this home's to see.
            if p.form.building != home.building || p.form.door != home.door {
                continue;
            }
            let code = match p.cred {
                Some(id) => self.roster.cred(&id)?.and_then(|c| member_code(&c, now)),
                None => None,
            };
            out.push(Member {
                holder,
                name: p.form.name.clone(),
                kind: p.kind,
                outcome: p.review.outcome,
                why: p.review.why.clone(),
                code,
            });
        }
        Ok(out)
    }
}

fn member_code(c: &CredRecord, now: UnixTime) -> Option<(String, UnixTime, CodeState)> {
    let code = SignedCode::decode(&c.code).ok()?;
    let until = u64::from(code.credential.valid_until);
    let state = match &c.status {
        CredStatus::Active if until <= now => CodeState::Expired,
        CredStatus::Active => CodeState::Active,
        CredStatus::Revoked { why, .. } => CodeState::Revoked { why: why.clone() },
        CredStatus::ConsentWithdrawn { .. } => CodeState::Revoked {
            why: "consent withdrawn".into(),
        },
    };
    Some((code.to_text(), until, state))
}
