//! Bulk import of residents (the list a community office already holds, typed in once):
//! every form is validated and reviewed exactly like a declaration, the cleared get a code
//! signed by this node, and everything is stored as *one* roster change: one sled batch
//! (flushed) and one Automerge change per roster shard. Declaring the same people one by
//! one costs a flush and an Automerge change each (about a minute for 30,000 residents);
//! the import takes seconds, and its few large changes are what the replicated roster
//! syncs best (see `menjin_sync`'s crate doc).
//!
//! An import is all or nothing: one invalid form, or one person declared twice (in the
//! import or already at this node), refuses the whole import and nothing is stored.

use std::collections::HashMap;

use menjin_proto::idnum::IdHash;

use super::*;

/// Persons in one import. The import is one sled batch and one Automerge change per shard
/// held in memory at once (about 1 KB per person), and each shard's change travels whole
/// when a peer catches up: this keeps both bounded. The largest communities hold about
/// 100,000 residents; import larger lists in parts.
pub const IMPORT_PERSONS_MAX: usize = 200_000;
/// Threads that validate forms and sign codes (signing is most of the work).
const IMPORT_THREADS_MAX: usize = 8;

/// Why an import was refused. Nothing of a refused import is stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// No forms, or more than `IMPORT_PERSONS_MAX`.
    #[error("an import holds 1 to {IMPORT_PERSONS_MAX} persons; this one holds {0}")]
    Size(usize),
    /// The responsible staff member's name is missing or over `NAME_LEN_MAX` bytes.
    #[error(
        "staff: the name of who is responsible for the import is required (at most {NAME_LEN_MAX} bytes)"
    )]
    Staff,
    /// A form fails validation.
    #[error("form {index}: {why}")]
    Invalid {
        /// The form's position in the import, from 0.
        index: usize,
        /// Why the form is refused (validation).
        why: String,
    },
    /// A form for a person (by keyed ID hash) already in the roster.
    #[error("form {index}: this person is already declared here (holder {holder})")]
    AlreadyDeclared {
        /// The form's position in the import, from 0.
        index: usize,
        /// The person as already declared.
        holder: HolderId,
    },
    /// Two forms of the import for the same person (by keyed ID hash).
    #[error("forms {first} and {index} are the same person")]
    Duplicate {
        /// The earlier form's position, from 0.
        first: usize,
        /// The later form's position, from 0.
        index: usize,
    },
    /// The roster could not be read or written.
    #[error(transparent)]
    Roster(#[from] RosterError),
}

/// What the import did with one form (same order as the forms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    /// The person, new or as already declared.
    pub holder: HolderId,
    /// The automatic review's result.
    pub outcome: Outcome,
    /// The code issued, if the person is cleared.
    pub cred: Option<CredId>,
}

impl Node {
    /// Imports residents who are not declared here yet, as paper declarations typed in by
    /// `staff` (channel offline, no photo yet: attach one before printing a pass). Each form
    /// is checked and reviewed like [`ConsoleRequest::Declare`]; the cleared get a code valid for
    /// the node's `code_validity_days`. Blocking (validation, signing, one flush): call from
    /// a blocking thread.
    ///
    /// # Errors
    /// [`ImportError`]; nothing is stored then. The replicated roster is updated after the
    /// sled commit like every roster change (repaired at the next start if that fails).
    pub fn import_roster(
        &self,
        mut forms: Vec<Declaration>,
        staff: &str,
        now: UnixTime,
    ) -> Result<Vec<Imported>, ImportError> {
        if forms.is_empty() || forms.len() > IMPORT_PERSONS_MAX {
            return Err(ImportError::Size(forms.len()));
        }
        let staff = staff.trim();
        if staff.is_empty() || staff.len() > NAME_LEN_MAX {
            return Err(ImportError::Staff);
        }
        let _guard = self.write.lock().expect("declaration lock");
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, IMPORT_THREADS_MAX);
        let per_thread = forms.len().div_ceil(threads);
        let mut chunks = Vec::with_capacity(threads);
        while !forms.is_empty() {
            let rest = forms.split_off(forms.len().min(per_thread));
            chunks.push(std::mem::replace(&mut forms, rest));
        }
        let records: Vec<Result<Entry, ImportError>> = std::thread::scope(|s| {
            let workers: Vec<_> = chunks
                .into_iter()
                .enumerate()
                .map(|(t, chunk)| {
                    s.spawn(move || {
                        chunk
                            .into_iter()
                            .enumerate()
                            .map(|(i, form)| self.import_one(t * per_thread + i, form, staff, now))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("import worker"))
                .collect()
        });
        let mut change = Change::default();
        let mut out = Vec::with_capacity(records.len());
        let mut seen: HashMap<IdHash, usize> = HashMap::with_capacity(records.len());
        for (index, entry) in records.into_iter().enumerate() {
            let Entry { person, cred } = entry?;
            if let Some(first) = seen.insert(person.id_hash, index) {
                return Err(ImportError::Duplicate { first, index });
            }
            if let Some(p) = self.roster.person_by_hash(&person.id_hash)? {
                return Err(ImportError::AlreadyDeclared {
                    index,
                    holder: p.holder,
                });
            }
            out.push(Imported {
                holder: person.holder,
                outcome: person.review.outcome,
                cred: person.cred,
            });
            change.creds.extend(cred);
            change.persons.push(person);
        }
        let codes = change.creds.len();
        self.commit(change)?;
        tracing::info!(persons = out.len(), codes, staff, "roster imported");
        Ok(out)
    }

    /// Validates, reviews and (if cleared) issues a code for one imported form.
    fn import_one(
        &self,
        index: usize,
        mut form: Declaration,
        staff: &str,
        now: UnixTime,
    ) -> Result<Entry, ImportError> {
        trim_form(&mut form);
        let checked = form
            .check(Self::today(now))
            .map_err(|e| ImportError::Invalid {
                index,
                why: e.to_string(),
            })?;
        let holder = HolderId(menjin_store::files::random8());
        let cleared = checked.review.outcome == Outcome::Cleared;
        let cred = cleared.then(|| self.issue_declared(checked.kind, holder, &form, now));
        let person = PersonRecord {
            holder,
            id_hash: self.idhash.hash(form.document_type, &form.document_number),
            form,
            kind: checked.kind,
            channel: Channel::Offline,
            review: checked.review,
            declared_at: now,
            declared_by: None,
            staff: Some(staff.to_string()),
            cred: cred.as_ref().map(|c| c.id),
            has_photo: false,
            passes_printed: 0,
        };
        Ok(Entry { person, cred })
    }
}

struct Entry {
    person: PersonRecord,
    cred: Option<CredRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{COMMUNITY, gate_check, new_node, now, resident};
    use menjin_proto::declaration::Quarantine;

    fn node_dir() -> (tempfile::TempDir, NodeDir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = new_node(tmp.path());
        (tmp, dir)
    }

    fn form(serial: u32, door: &str) -> Declaration {
        resident(&format!("R{serial}"), "19800101", serial, door)
    }

    fn code_text(node: &Node, holder: HolderId) -> String {
        match node.console(ConsoleRequest::ShowHolder { holder }, now()) {
            Response::Declared(r) => r.code.expect("a code"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn imported_residents_pass_the_gate_and_reach_the_replicated_roster() {
        let (_tmp, dir) = node_dir();
        let mut quarantined = form(3, "103");
        quarantined.quarantine = Quarantine::Home;
        let forms = vec![form(1, "101"), form(2, "102"), quarantined];
        let imported = {
            let node = Node::open(&dir).unwrap();
            let imported = node.import_roster(forms, "office", now()).unwrap();
            assert_eq!(imported.len(), 3);
            assert!(imported[..2].iter().all(|p| p.outcome == Outcome::Cleared));
            assert_eq!(imported[2].outcome, Outcome::HomeQuarantine);
            assert!(imported[2].cred.is_none());
            let a = gate_check(&node, "g1", code_text(&node, imported[0].holder)).await;
            assert!(a.allowed, "{a:?}");
            let view = node.wait_replica().unwrap().read(|r| r.roster(COMMUNITY));
            assert_eq!(view.persons.len(), 3);
            assert_eq!(view.codes.len(), 2);
            assert!(!node.roster.mirror_pending().unwrap());
            imported
        };
        // Everything is on disk: the gate view and the replica come back after a restart.
        let node = Node::open(&dir).unwrap();
        assert_eq!(node.status().residents, 3);
        let a = gate_check(&node, "g1", code_text(&node, imported[1].holder)).await;
        assert!(a.allowed, "{a:?}");
        assert_eq!(
            node.wait_replica()
                .unwrap()
                .read(|r| r.roster(COMMUNITY))
                .persons
                .len(),
            3
        );
        // An imported person declares again like anyone else.
        let mut sick = form(1, "101");
        sick.symptoms = true;
        match node.console(ConsoleRequest::Declare { form: sick }, now()) {
            Response::Declared(r) => {
                assert_eq!(r.holder, imported[0].holder);
                assert_eq!(r.revoked, imported[0].cred);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refused_import_stores_nothing() {
        let (_tmp, dir) = node_dir();
        let node = Node::open(&dir).unwrap();
        let twice = vec![form(1, "101"), form(2, "102"), form(1, "101")];
        assert!(matches!(
            node.import_roster(twice, "office", now()),
            Err(ImportError::Duplicate { first: 0, index: 2 })
        ));
        let mut bad = form(2, "102");
        bad.phone = "call me".into();
        assert!(matches!(
            node.import_roster(vec![form(1, "101"), bad], "office", now()),
            Err(ImportError::Invalid { index: 1, .. })
        ));
        assert!(matches!(
            node.import_roster(vec![form(1, "101")], " ", now()),
            Err(ImportError::Staff)
        ));
        assert!(matches!(
            node.import_roster(Vec::new(), "office", now()),
            Err(ImportError::Size(0))
        ));
        assert_eq!(node.status().residents, 0);
        assert_eq!(node.roster.code_counts(), (0, 0));
        assert!(
            node.wait_replica()
                .unwrap()
                .read(|r| r.roster(COMMUNITY))
                .persons
                .is_empty()
        );

        let first = node
            .import_roster(vec![form(1, "101")], "office", now())
            .unwrap();
        match node.import_roster(vec![form(2, "102"), form(1, "101")], "office", now()) {
            Err(ImportError::AlreadyDeclared { index: 1, holder }) => {
                assert_eq!(holder, first[0].holder)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(node.status().residents, 1);
    }
}
