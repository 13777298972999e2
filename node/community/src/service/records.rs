//! The office's look-ups: finding a person (by name, home or holder id) and opening their
//! record, each written to the audit log (`crate::audit`) with the staff member before the
//! answer is returned; the audit log itself; and a page of the gate log with a decision
//! filter. Storage is `crate::roster`, `crate::audit` and `crate::gatelog`.
//!
//! What leaves here never holds an ID number: a record carries it masked (all but the
//! last 4 characters).

use menjin_proto::declaration::Outcome;
use menjin_proto::idnum::DocumentType;
use menjin_proto::record::{AuditAction, AuditEntry};
use menjin_proto::wire::{GateEvent, LogQuery};

use super::*;
use crate::audit::AuditError;

/// People on one page of a search.
pub(crate) const FIND_PAGE_MAX: usize = 50;
/// Most gate events one log request reads while filtering by decision: a page of a rare
/// decision among many events ends early and says where to go on.
pub(crate) const LOG_SCAN_MAX: usize = 50_000;
/// A name searched: as long as a name may be.
const SEARCH_TEXT_LEN_MAX: usize = NAME_LEN_MAX;

impl From<AuditError> for Refusal {
    fn from(e: AuditError) -> Refusal {
        tracing::error!(error = %e, "audit log failure");
        Refusal {
            kind: ErrorKind::Internal,
            message: e.to_string(),
        }
    }
}

/// A search of the roster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PersonSearch {
    /// Names containing this text.
    Name(String),
    /// The people of a home (`door` empty: of the whole building).
    Door {
        /// The building.
        building: String,
        /// The door, or empty.
        door: String,
    },
    /// One person by holder id.
    Holder(HolderId),
}

/// A person as a search result lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonCard {
    /// Their id here.
    pub holder: HolderId,
    /// As declared.
    pub name: String,
    /// The home's building.
    pub building: String,
    /// The home's door.
    pub door: String,
    /// Resident, dependent, staff.
    pub kind: HolderKind,
    /// The review of their latest declaration.
    pub outcome: Outcome,
}

/// Where a person's code stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordCode {
    /// No code (not cleared).
    None,
    /// In force until then (Unix seconds; it may have expired since).
    Active {
        /// End of validity.
        until: UnixTime,
    },
    /// Revoked.
    Revoked {
        /// When.
        at: UnixTime,
        /// Why, in words.
        why: String,
    },
}

/// A person's record as the office sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonFile {
    /// Who and where.
    pub card: PersonCard,
    /// The document's type.
    pub document_type: DocumentType,
    /// The document number with all but its last 4 characters masked.
    pub number_masked: String,
    /// Online, by proxy or on paper.
    pub channel: Channel,
    /// The review's reason in words.
    pub why: String,
    /// When the latest declaration was recorded.
    pub declared_at: UnixTime,
    /// The relative who declared for them: holder id and name.
    pub declared_by: Option<(HolderId, String)>,
    /// The staff member who typed in their paper form.
    pub staff: Option<String>,
    /// Their code.
    pub code: RecordCode,
    /// A photo is on file.
    pub has_photo: bool,
    /// Printed passes handed out.
    pub passes_printed: u32,
}

/// `440304********1234`: the number's length kept, all but the last 4 characters masked.
pub(crate) fn mask_number(number: &str) -> String {
    let n = number.chars().count();
    number
        .chars()
        .enumerate()
        .map(|(i, c)| if i + 4 < n { '*' } else { c })
        .collect()
}

fn card(p: &PersonRecord) -> PersonCard {
    PersonCard {
        holder: p.holder,
        name: p.form.name.clone(),
        building: p.form.building.clone(),
        door: p.form.door.clone(),
        kind: p.kind,
        outcome: p.review.outcome,
    }
}

fn check_text(field: &str, v: &str, max: usize) -> Result<(), Refusal> {
    if v.chars().any(char::is_control) {
        return Err(bad(format!("{field}: contains control characters")));
    }
    if v.len() > max {
        return Err(bad(format!("{field}: at most {max} bytes")));
    }
    Ok(())
}

impl Node {
    /// One page of the people a search finds (after `after`, in holder-id order) and the
    /// holder to go on after when there are more; written to the audit log with `staff`
    /// (flushed) before it returns. Blocking: reads every person record.
    ///
    /// # Errors
    /// A [`Refusal`] for a bad search (nothing recorded), or on storage failure (the result
    /// is not returned when its audit entry could not be written).
    pub fn find_people(
        &self,
        search: &PersonSearch,
        after: Option<HolderId>,
        staff: &str,
        now: UnixTime,
    ) -> Result<(Vec<PersonCard>, Option<HolderId>), Refusal> {
        let (found, more, action) = match search {
            PersonSearch::Name(text) => {
                let text = text.trim();
                check_text("name", text, SEARCH_TEXT_LEN_MAX)?;
                if text.is_empty() {
                    return Err(bad("name: type part of a name"));
                }
                let (found, more) =
                    self.roster
                        .find(|p| p.form.name.contains(text), after, FIND_PAGE_MAX)?;
                // A digit: perhaps an ID number typed into the name field. Not kept.
                let kept = (!text.chars().any(|c| c.is_ascii_digit())).then(|| text.to_string());
                let n = found.len() as u32;
                (
                    found,
                    more,
                    AuditAction::NameSearch {
                        text: kept,
                        found: n,
                    },
                )
            }
            PersonSearch::Door { building, door } => {
                let (building, door) = (building.trim(), door.trim());
                check_text(
                    "building",
                    building,
                    menjin_proto::credential::LABEL_LEN_MAX,
                )?;
                check_text("door", door, menjin_proto::credential::LABEL_LEN_MAX)?;
                if building.is_empty() {
                    return Err(bad("building: required"));
                }
                let (found, more) = self.roster.find(
                    |p| p.form.building == building && (door.is_empty() || p.form.door == door),
                    after,
                    FIND_PAGE_MAX,
                )?;
                let action = AuditAction::DoorSearch {
                    building: building.to_string(),
                    door: door.to_string(),
                    found: found.len() as u32,
                };
                (found, more, action)
            }
            PersonSearch::Holder(holder) => {
                let found: Vec<PersonRecord> = self.roster.person(holder)?.into_iter().collect();
                let action = AuditAction::HolderSearch {
                    holder: *holder,
                    found: !found.is_empty(),
                };
                (found, false, action)
            }
        };
        self.audit(staff, action, now)?;
        let next = more.then(|| found.last().map(|p| p.holder)).flatten();
        Ok((found.iter().map(card).collect(), next))
    }

    /// A person's record (`None`: not declared here), its view written to the audit log
    /// with `staff` (flushed) before it returns. Blocking.
    ///
    /// # Errors
    /// A [`Refusal`] on storage failure (then nothing is returned).
    pub fn person_file(
        &self,
        holder: HolderId,
        staff: &str,
        now: UnixTime,
    ) -> Result<Option<PersonFile>, Refusal> {
        let Some(p) = self.roster.person(&holder)? else {
            return Ok(None);
        };
        let code = match p
            .cred
            .map(|id| self.roster.cred(&id))
            .transpose()?
            .flatten()
        {
            None => RecordCode::None,
            Some(c) => match c.status {
                CredStatus::Active => RecordCode::Active {
                    until: SignedCode::decode(&c.code)
                        .map_or(0, |s| u64::from(s.credential.valid_until)),
                },
                CredStatus::Revoked { at, why } => RecordCode::Revoked { at, why },
                CredStatus::ConsentWithdrawn { at } => RecordCode::Revoked {
                    at,
                    why: menjin_proto::record::WHY_CONSENT_WITHDRAWN.into(),
                },
            },
        };
        let declared_by = match p.declared_by {
            Some(by) => {
                let name = self.roster.person(&by)?.map(|r| r.form.name);
                Some((by, name.unwrap_or_default()))
            }
            None => None,
        };
        self.audit(staff, AuditAction::RecordView { holder }, now)?;
        Ok(Some(PersonFile {
            card: card(&p),
            document_type: p.form.document_type,
            number_masked: mask_number(&p.form.document_number),
            channel: p.channel,
            why: p.review.why.clone(),
            declared_at: p.declared_at,
            declared_by,
            staff: p.staff.clone(),
            code,
            has_photo: p.has_photo,
            passes_printed: p.passes_printed,
        }))
    }

    fn audit(&self, staff: &str, action: AuditAction, now: UnixTime) -> Result<(), Refusal> {
        let entry = AuditEntry {
            at: now,
            staff: staff.to_string(),
            action,
        };
        self.audit.append(&entry, now)?;
        Ok(())
    }

    /// The audit log, newest first, before sequence number `before`, at most `limit`
    /// (capped at `audit::AUDIT_PAGE_MAX`). Only the head of the office may be shown it.
    ///
    /// # Errors
    /// A [`Refusal`] on storage failure.
    pub fn audit_page(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, AuditEntry)>, Refusal> {
        Ok(self.audit.page(before, limit)?)
    }

    /// A page of the gate log: the events of `q` (its `limit` is the page's size) whose
    /// decision is `allowed` (any when `None`), and the sequence number to go on after when
    /// the log may hold more (reading stops after [`LOG_SCAN_MAX`] events). Blocking.
    ///
    /// # Errors
    /// A [`Refusal`] on storage failure.
    pub fn gate_log_page(
        &self,
        q: &LogQuery,
        allowed: Option<bool>,
    ) -> Result<(Vec<GateEvent>, Option<u64>), Refusal> {
        let want = q.limit.clamp(1, menjin_proto::wire::LOG_PAGE_MAX) as usize;
        let mut out = Vec::new();
        let mut scanned = 0;
        let mut q = q.clone();
        loop {
            let batch = self.log.query(&LogQuery {
                limit: menjin_proto::wire::LOG_PAGE_MAX,
                ..q.clone()
            })?;
            let Some(last) = batch.last().map(|e| e.seq) else {
                return Ok((out, None));
            };
            let full = batch.len() as u32 >= menjin_proto::wire::LOG_PAGE_MAX;
            for ev in batch {
                scanned += 1;
                if allowed.is_none_or(|a| a == ev.allowed) {
                    out.push(ev);
                    if out.len() >= want {
                        let seq = out.last().map(|e| e.seq);
                        return Ok((out, seq));
                    }
                }
            }
            if !full {
                return Ok((out, None));
            }
            if scanned >= LOG_SCAN_MAX {
                return Ok((out, Some(last)));
            }
            q.after_seq = Some(last);
        }
    }

    /// The name the guard sees for a gate event's code (the visitor's own for visitors),
    /// empty when unknown. From the in-memory view: no disk read.
    pub fn event_name(&self, ev: &GateEvent) -> String {
        ev.cred
            .and_then(|c| self.roster.lookup(&c))
            .map(|v| v.display.name.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{new_node, now, resident};

    #[test]
    fn searches_page_through_the_roster_and_each_is_audited_without_id_numbers() {
        let tmp = tempfile::tempdir().unwrap();
        let node = Node::open(&new_node(tmp.path())).unwrap();
        let mut numbers = Vec::new();
        for serial in 1..=(FIND_PAGE_MAX as u32 + 3) {
            let form = resident(&format!("王{serial}"), "19800101", serial, "101");
            numbers.push(form.document_number.clone());
            let r = node.console(ConsoleRequest::Declare { form }, now());
            assert!(matches!(r, Response::Declared(_)), "{r:?}");
        }
        let by_door = PersonSearch::Door {
            building: "1".into(),
            door: "101".into(),
        };
        let (first, next) = node.find_people(&by_door, None, "李文", now()).unwrap();
        assert_eq!(first.len(), FIND_PAGE_MAX);
        let (rest, end) = node.find_people(&by_door, next, "李文", now()).unwrap();
        assert_eq!(rest.len(), 3);
        assert_eq!(end, None);
        // An ID number typed as a name: found nothing, and not kept.
        let typed = PersonSearch::Name(numbers[0].clone());
        assert!(
            node.find_people(&typed, None, "李文", now())
                .unwrap()
                .0
                .is_empty()
        );
        let file = node
            .person_file(first[0].holder, "李文", now())
            .unwrap()
            .unwrap();
        assert!(!file.number_masked.contains(&numbers[0][..14]));
        // A bad search is refused and not recorded.
        let bad = PersonSearch::Name("王\u{7}".into());
        assert!(node.find_people(&bad, None, "李文", now()).is_err());

        let audit = node.audit_page(None, 100).unwrap();
        let actions: Vec<&AuditAction> = audit.iter().map(|(_, e)| &e.action).collect();
        assert_eq!(audit.len(), 4, "{actions:?}");
        assert!(audit.iter().all(|(_, e)| e.staff == "李文"));
        assert_eq!(
            actions[0],
            &AuditAction::RecordView {
                holder: first[0].holder
            }
        );
        assert_eq!(
            actions[1],
            &AuditAction::NameSearch {
                text: None,
                found: 0
            }
        );
        let raw = format!("{audit:?}");
        assert!(numbers.iter().all(|n| !raw.contains(n.as_str())));
    }

    #[test]
    fn numbers_are_masked_but_for_the_last_four() {
        assert_eq!(
            super::mask_number("440304198001010012"),
            "**************0012"
        );
        assert_eq!(super::mask_number("K123"), "K123");
    }
}
