//! Helpers shared by the sync tests: entries, a store that takes what a replica persists
//! and rebuilds it, and a lossless in-memory link between two replicas.

#![allow(dead_code)]

use std::collections::BTreeMap;

use menjin_proto::credential::{CredId, HolderId, HolderKind};
use menjin_proto::declaration::Outcome;
use menjin_proto::idnum::IdHash;
use menjin_sync::{CodeEntry, CodeStatus, Config, DocId, Persist, Replica, Role, RosterEntry};

pub fn holder(n: u64) -> HolderId {
    HolderId(n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes())
}

pub fn cred(n: u64) -> CredId {
    CredId(
        (n ^ 0xc0de)
            .wrapping_mul(0xbf58_476d_1ce4_e5b9)
            .to_be_bytes(),
    )
}

pub fn person(n: u64, code: Option<CredId>) -> RosterEntry {
    RosterEntry {
        holder: holder(n),
        id_hash: IdHash([(n % 251) as u8; 16]),
        building: format!("{}", n % 40),
        door: format!("{}", 100 + n % 900),
        kind: HolderKind::Resident,
        outcome: Outcome::Cleared,
        cred: code,
        declared_at: 1_700_000_000 + n,
    }
}

pub fn code(n: u64, of: HolderId) -> CodeEntry {
    CodeEntry {
        id: cred(n),
        holder: of,
        kind: HolderKind::Resident,
        status: CodeStatus::Active,
        valid_from: 1_700_000_000,
        valid_until: 1_700_000_000 + 30 * 86_400,
        host: None,
        revoked_at: None,
    }
}

pub fn revoked(mut c: CodeEntry, at: u64) -> CodeEntry {
    c.status = CodeStatus::Revoked;
    c.revoked_at = Some(at);
    c
}

/// What a driver would keep in sled.
#[derive(Clone, Debug, Default)]
pub struct Store {
    pub snapshots: BTreeMap<DocId, Vec<u8>>,
    pub chunks: BTreeMap<DocId, Vec<Vec<u8>>>,
    pub peer_states: BTreeMap<(Role, DocId), Vec<u8>>,
    /// The heads stored with each document's last chunk or snapshot.
    pub heads: BTreeMap<DocId, Vec<menjin_sync::automerge::ChangeHash>>,
    pub writes: usize,
}

impl Store {
    pub fn drain(&mut self, r: &mut Replica) {
        while let Some(p) = r.poll_persist() {
            self.take(p);
        }
    }

    pub fn take(&mut self, p: Persist) {
        self.writes += 1;
        match p {
            Persist::Chunk { doc, bytes, heads } => {
                self.chunks.entry(doc).or_default().push(bytes);
                self.heads.insert(doc, heads);
            }
            Persist::Snapshot { doc, bytes, heads } => {
                self.snapshots.insert(doc, bytes);
                self.chunks.remove(&doc);
                self.heads.insert(doc, heads);
            }
            Persist::PeerState { peer, doc, bytes } => {
                self.peer_states.insert((peer, doc), bytes);
            }
        }
    }

    /// A replica rebuilt from what was stored, as after a process restart.
    pub fn rebuild(&self, me: Role, incarnation: u32, config: Config) -> Replica {
        self.rebuild_with(me, incarnation, config, false)
    }

    /// [`Store::rebuild`] with the roster shards held cold (as the hub starts).
    pub fn rebuild_cold(&self, me: Role, incarnation: u32, config: Config) -> Replica {
        self.rebuild_with(me, incarnation, config, true)
    }

    fn rebuild_with(&self, me: Role, incarnation: u32, config: Config, cold: bool) -> Replica {
        let mut r = Replica::new(me, incarnation, config);
        let mut ids: Vec<DocId> = self.snapshots.keys().copied().collect();
        ids.extend(self.chunks.keys().copied());
        ids.sort();
        ids.dedup();
        for doc in ids {
            if cold && matches!(doc, DocId::Roster { .. }) {
                let bytes = self.snapshots.get(&doc).map_or(0, Vec::len)
                    + self
                        .chunks
                        .get(&doc)
                        .map_or(0, |c| c.iter().map(Vec::len).sum());
                r.insert_cold(doc, self.heads[&doc].clone(), bytes)
                    .expect("stored document held cold");
                continue;
            }
            self.load(&mut r, doc);
        }
        for ((peer, doc), bytes) in &self.peer_states {
            r.load_peer_state(*peer, *doc, bytes)
                .expect("stored peer state loads");
        }
        r
    }
}

impl Store {
    /// Decodes one stored document into `r` (warming a cold one).
    pub fn load(&self, r: &mut Replica, doc: DocId) {
        let chunks = self.chunks.get(&doc).cloned().unwrap_or_default();
        r.load_doc(doc, self.snapshots.get(&doc).map(Vec::as_slice), &chunks)
            .expect("stored document loads");
    }

    /// `r.handle_message`, loading the cold documents the frame needs first, as a driver
    /// does.
    pub fn deliver(
        &self,
        r: &mut Replica,
        from: Role,
        frame: &[u8],
        now: u64,
    ) -> Result<Vec<DocId>, menjin_sync::SyncError> {
        match r.handle_message(from, frame, now) {
            Err(menjin_sync::SyncError::NeedsLoad(docs)) => {
                for doc in docs {
                    self.load(r, doc);
                }
                r.handle_message(from, frame, now)
            }
            other => other,
        }
    }
}

/// Traffic counted by [`pump`].
#[derive(Clone, Debug, Default)]
pub struct Traffic {
    pub frames: usize,
    pub bytes: usize,
    pub doc_frames: Vec<(Role, String, usize)>,
}

/// Delivers frames both ways, in order and without loss, until neither side has anything
/// to send. Persists each side before it sends, as a driver must.
pub fn pump(a: &mut Replica, sa: &mut Store, b: &mut Replica, sb: &mut Store, now: u64) -> Traffic {
    let mut t = Traffic::default();
    for _ in 0..10_000 {
        let mut moved = false;
        for flip in [false, true] {
            let (from, sfrom, to, sto) = if flip {
                (&mut *b, &mut *sb, &mut *a, &mut *sa)
            } else {
                (&mut *a, &mut *sa, &mut *b, &mut *sb)
            };
            sfrom.drain(from);
            while let Some(frame) = from.poll_transmit(to.me(), now) {
                moved = true;
                t.frames += 1;
                t.bytes += frame.len();
                if let Ok(menjin_sync::SyncFrame {
                    body: menjin_sync::SyncBody::Doc { doc, .. },
                    ..
                }) = menjin_sync::SyncFrame::decode(&frame)
                {
                    t.doc_frames.push((from.me(), doc, frame.len()));
                }
                to.handle_message(from.me(), &frame, now)
                    .expect("honest frames are accepted");
                sto.drain(to);
            }
        }
        if !moved {
            return t;
        }
    }
    panic!("pump did not settle");
}

pub fn fast_config() -> Config {
    Config {
        anti_entropy_interval_ms: 1_000,
        stall_timeout_ms: 500,
        roster_shards: 4,
        ..Config::default()
    }
}

/// Compares two rosters without printing thousands of entries.
#[track_caller]
pub fn assert_same_roster(a: &menjin_sync::RosterView, b: &menjin_sync::RosterView) {
    if a == b {
        return;
    }
    let first_person = a
        .persons
        .iter()
        .find(|(k, v)| b.persons.get(k) != Some(v))
        .or_else(|| b.persons.iter().find(|(k, _)| !a.persons.contains_key(k)));
    let first_code = a
        .codes
        .iter()
        .find(|(k, v)| b.codes.get(k) != Some(v))
        .or_else(|| b.codes.iter().find(|(k, _)| !a.codes.contains_key(k)));
    panic!(
        "rosters differ: {} / {} persons, {} / {} codes, malformed {} / {}; first person {:?}, first code {:?}",
        a.persons.len(),
        b.persons.len(),
        a.codes.len(),
        b.codes.len(),
        a.malformed,
        b.malformed,
        first_person,
        first_code
    );
}
