//! What a node takes back from its replicated roster. The node is the only writer of its
//! community's roster, so the hub sends changes of it back only when the node lost them:
//! restored from an older backup, it finds there the revocations made after the backup, and
//! the codes it issued after the backup. A revoked code never comes back, so revocations win
//! over the node's roster (sled), which the gates read; a code it issued and lost is adopted
//! (`roster::AdoptedCode`) so that its holder is let in as the gates deciding alone let them
//! in, until they declare again.

use menjin_proto::credential::HolderKind;
use menjin_proto::record::CredStatus;
use menjin_replication::{Replication, code_entry};
use menjin_sync::{CodeEntry, CodeStatus, DocId, RosterView};

use super::Node;
use crate::roster::{AdoptedCode, Change, RosterError};

/// The status a replicated code entry stands for.
fn status_of(entry: &CodeEntry) -> CredStatus {
    let at = entry
        .revoked_at
        .unwrap_or_else(|| menjin_net::clock::now_ms() / 1000);
    match entry.status {
        CodeStatus::Active => CredStatus::Active,
        CodeStatus::ConsentWithdrawn => CredStatus::ConsentWithdrawn { at },
        CodeStatus::Revoked => CredStatus::Revoked {
            at,
            why: "revoked in the district's copy of the roster".into(),
        },
    }
}

impl Node {
    /// Brings into the node's roster (sled, the gates' view and feed) every code the
    /// replicated roster `view` holds as revoked or withdrawn while sled holds it in force,
    /// and every code of a person it holds that sled does not know (adopted; visitors'
    /// invitations are not). Not mirrored again: the replica holds these already. Returns
    /// how many changed. Callers hold `write`.
    ///
    /// # Errors
    /// [`RosterError`] if sled fails (nothing changed).
    pub(super) fn adopt_final_statuses(&self, view: &RosterView) -> Result<usize, RosterError> {
        let mut change = Change::default();
        for entry in view.codes.values() {
            // The in-memory view first: the usual case (nothing lost) reads no disk.
            match self.roster.lookup(&entry.id) {
                Some(known) if !entry.status.is_final() || known.status != CredStatus::Active => {}
                Some(known) if known.code.is_empty() => {
                    if let Some(mut a) = self.roster.adopted(&entry.id)? {
                        a.status = status_of(entry);
                        change.adopted.push(a);
                    }
                }
                Some(_) => {
                    if let Some(mut cred) = self.roster.cred(&entry.id)?
                        && !code_entry(&cred).status.is_final()
                    {
                        cred.status = status_of(entry);
                        change.creds.push(cred);
                    }
                }
                None => {
                    let person = view.persons.get(&entry.holder);
                    if let (Some(p), false) = (person, entry.kind == HolderKind::Visitor) {
                        change.adopted.push(AdoptedCode {
                            id: entry.id,
                            holder: entry.holder,
                            id_hash: p.id_hash,
                            kind: entry.kind,
                            status: status_of(entry),
                            valid_from: entry.valid_from,
                            valid_until: entry.valid_until,
                            building: p.building.clone(),
                            door: p.door.clone(),
                        });
                    }
                }
            }
        }
        let (n, adopted) = (change.creds.len(), change.adopted.len());
        if n + adopted == 0 {
            return Ok(0);
        }
        let touched = super::touched_by(&change);
        let pending = self.roster.mirror_pending()?;
        self.roster.commit(change)?;
        if !pending {
            // Nothing else waited to be mirrored, and these are in the replica already.
            self.roster.mirror_done()?;
        }
        self.feed.on_commit(&touched, menjin_net::clock::now_ms());
        self.changed();
        tracing::warn!(
            revoked = n,
            adopted,
            "codes the district's copy of the roster holds and this node did not are taken \
             from it (was this node restored from an older backup? see `node status`)"
        );
        Ok(n + adopted)
    }
    /// After a sync frame from the hub changed `docs`: adopts the final statuses found in
    /// this community's roster shards among them (none in the usual case: only this node
    /// writes them).
    ///
    /// # Errors
    /// [`RosterError`] if sled fails.
    pub fn adopt_from_sync(
        &self,
        repl: &Replication,
        docs: &[DocId],
    ) -> Result<usize, RosterError> {
        let community = self.config.community;
        let mut view = RosterView::default();
        for doc in docs {
            if matches!(doc, DocId::Roster { community: c, .. } if *c == community)
                && let Some(shard) = repl.read(|r| r.roster_shard(*doc))
            {
                view.merge(shard);
            }
        }
        if view.codes.is_empty() {
            return Ok(0);
        }
        let _guard = self.write.lock().expect("declaration lock");
        self.adopt_final_statuses(&view)
    }
}
