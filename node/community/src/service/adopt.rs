//! What a node takes back from its replicated roster: the final statuses of its own codes.
//! The node is the only writer of its community's roster, so the hub sends changes of it
//! back only when the node lost them: restored from an older backup, it finds there the
//! revocations made after the backup. A revoked code never comes back, so those win over
//! the node's roster (sled), which the gates read.

use menjin_proto::record::CredStatus;
use menjin_replication::{Replication, code_entry};
use menjin_sync::{CodeStatus, DocId, RosterView};

use super::Node;
use crate::roster::{Change, RosterError};

impl Node {
    /// Brings into the node's roster (sled, the gates' view and feed) every code the
    /// replicated roster `view` holds as revoked or withdrawn while sled holds it in force.
    /// Not mirrored again: the replica holds these already. Returns how many changed.
    /// Callers hold `write`.
    ///
    /// # Errors
    /// [`RosterError`] if sled fails (nothing changed).
    pub(super) fn adopt_final_statuses(&self, view: &RosterView) -> Result<usize, RosterError> {
        let mut change = Change::default();
        for entry in view.codes.values().filter(|c| c.status.is_final()) {
            let Some(mut cred) = self.roster.cred(&entry.id)? else {
                continue;
            };
            if code_entry(&cred).status.is_final() {
                continue;
            }
            let at = entry
                .revoked_at
                .unwrap_or_else(|| menjin_net::clock::now_ms() / 1000);
            cred.status = match entry.status {
                CodeStatus::ConsentWithdrawn => CredStatus::ConsentWithdrawn { at },
                _ => CredStatus::Revoked {
                    at,
                    why: "revoked in the district's copy of the roster".into(),
                },
            };
            change.creds.push(cred);
        }
        let n = change.creds.len();
        if n == 0 {
            return Ok(0);
        }
        let touched: Vec<crate::feed::CodeTouch> = change
            .creds
            .iter()
            .map(crate::feed::CodeTouch::of)
            .collect();
        let pending = self.roster.mirror_pending()?;
        self.roster.commit(change)?;
        if !pending {
            // Nothing else waited to be mirrored, and these are in the replica already.
            self.roster.mirror_done()?;
        }
        self.feed.on_commit(&touched, menjin_net::clock::now_ms());
        self.changed();
        tracing::warn!(
            codes = n,
            "codes revoked in the district's copy of the roster are revoked here too \
             (was this node restored from an older backup?)"
        );
        Ok(n)
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
