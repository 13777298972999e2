//! What the hub knows of the rosters without decoding them: which communities' rosters hold
//! each keyed ID hash (where a health flag goes) and each shard's counts (for the status).
//! The roster shards themselves stay cold on disk until a node's frame needs one
//! (`Replica::insert_cold`); these two small trees answer the hub's questions in the
//! meantime.
//!
//! Trees: `id_routes`: ID hash (16 bytes) ++ community (u32 BE) → empty, one key per person
//! per community; `roster_indexed`: document id → the heads (32 bytes each) up to which its
//! persons are in `id_routes`, and the shard's persons and codes in force at those heads
//! (u64 BE each, first). Both are derived data: written without a flush, and a start
//! catches up every shard whose heads moved past what was indexed ([`RosterIndex::catch_up`]).
//! An entry is never removed: a person whose ID hash changed leaves a route to a
//! community that no longer holds it, so a flag may reach a node where it matches no one.

use std::collections::{HashMap, HashSet};

use menjin_proto::CommunityId;
use menjin_proto::idnum::IdHash;
use menjin_replication::Replication;
use menjin_sync::automerge::ChangeHash;
use menjin_sync::{CodeStatus, DocId};

/// The owner of trees `id_routes` and `roster_indexed`.
pub struct RosterIndex {
    routes: sled::Tree,
    indexed: sled::Tree,
}

/// What `roster_indexed` holds for one shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Indexed {
    /// The shard's heads when it was indexed.
    pub heads: Vec<ChangeHash>,
    /// Persons in the shard then.
    pub persons: u64,
    /// Codes in force (active) then.
    pub active: u64,
}

fn encode(i: &Indexed) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + 32 * i.heads.len());
    v.extend_from_slice(&i.persons.to_be_bytes());
    v.extend_from_slice(&i.active.to_be_bytes());
    for h in &i.heads {
        v.extend_from_slice(&h.0);
    }
    v
}

fn decode(v: &[u8]) -> Option<Indexed> {
    if v.len() < 16 || !(v.len() - 16).is_multiple_of(32) {
        return None;
    }
    Some(Indexed {
        persons: u64::from_be_bytes(v[..8].try_into().ok()?),
        active: u64::from_be_bytes(v[8..16].try_into().ok()?),
        heads: v[16..]
            .chunks_exact(32)
            .map(|c| c.try_into().map(ChangeHash))
            .collect::<Result<_, _>>()
            .ok()?,
    })
}

fn same(a: &[ChangeHash], b: &[ChangeHash]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort();
    b.sort();
    a == b
}

impl RosterIndex {
    /// Opens (or creates) the two trees.
    ///
    /// # Errors
    /// If sled fails.
    pub fn open(db: &sled::Db) -> Result<RosterIndex, sled::Error> {
        Ok(RosterIndex {
            routes: db.open_tree("id_routes")?,
            indexed: db.open_tree("roster_indexed")?,
        })
    }

    /// What was indexed of `doc` (None: never, or a corrupt record).
    pub fn indexed(&self, doc: DocId) -> Option<Indexed> {
        let v = self.indexed.get(doc.to_string().as_bytes()).ok()??;
        decode(&v)
    }

    /// Indexes what changed in the roster shards `docs` since they were last indexed: their
    /// persons' routes and their counts. The shards must be warm (they just changed, or the
    /// caller warmed them).
    ///
    /// # Errors
    /// If sled fails.
    pub fn update(&self, repl: &Replication, docs: &[DocId]) -> Result<(), sled::Error> {
        let mut batch = sled::Batch::default();
        let mut records = sled::Batch::default();
        for &doc in docs {
            let DocId::Roster { community, .. } = doc else {
                continue;
            };
            let since = self.indexed(doc).unwrap_or_default();
            let Some((changed, whole, heads)) = repl.read(|r| {
                if r.is_cold(doc) {
                    return None;
                }
                let heads = r.heads(doc);
                Some((
                    r.roster_changes_since(doc, &since.heads),
                    r.roster_shard(doc).unwrap_or_default(),
                    heads,
                ))
            }) else {
                continue;
            };
            if same(&heads, &since.heads) {
                continue;
            }
            for p in changed.persons.values() {
                let mut k = p.id_hash.0.to_vec();
                k.extend_from_slice(&community.to_be_bytes());
                batch.insert(k, &[][..]);
            }
            let record = Indexed {
                heads,
                persons: whole.persons.len() as u64,
                active: whole
                    .codes
                    .values()
                    .filter(|c| c.status == CodeStatus::Active)
                    .count() as u64,
            };
            records.insert(doc.to_string().as_bytes(), encode(&record));
        }
        self.routes.apply_batch(batch)?;
        self.indexed.apply_batch(records)?;
        Ok(())
    }

    /// At start: every roster shard whose heads are not the indexed ones (never indexed: a
    /// hub of an older version; or the hub stopped between a change and its index) is
    /// decoded and indexed. Returns how many.
    ///
    /// # Errors
    /// If sled fails.
    pub fn catch_up(&self, repl: &Replication) -> Result<usize, sled::Error> {
        let behind: Vec<DocId> = repl.read(|r| {
            r.docs()
                .filter(|d| matches!(d, DocId::Roster { .. }))
                .filter(|d| {
                    self.indexed(*d)
                        .is_none_or(|i| !same(&i.heads, &r.heads(*d)))
                })
                .collect()
        });
        // A few shards at a time, each dropped from memory again once indexed: a hub of an
        // older version would otherwise hold every roster decoded after its first start.
        for chunk in behind.chunks(64) {
            repl.warm(chunk)
                .map_err(|e| sled::Error::Unsupported(e.to_string()))?;
            self.update(repl, chunk)?;
            repl.cool(chunk);
        }
        Ok(behind.len())
    }

    /// The communities whose rosters hold each of `wanted`.
    pub fn routes(&self, wanted: &HashSet<IdHash>) -> HashMap<IdHash, Vec<CommunityId>> {
        let mut out: HashMap<IdHash, Vec<CommunityId>> = HashMap::new();
        for h in wanted {
            for item in self.routes.scan_prefix(h.0) {
                let Ok((k, _)) = item else { continue };
                let Some(c) = k
                    .get(16..20)
                    .and_then(|b| b.try_into().ok())
                    .map(CommunityId::from_be_bytes)
                else {
                    continue;
                };
                out.entry(*h).or_default().push(c);
            }
        }
        out
    }

    /// Persons and codes in force of `community`'s shards as indexed, and the shards whose
    /// index is behind their heads (counted again by the caller after warming them).
    pub fn counts(&self, repl: &Replication, community: CommunityId) -> ((u64, u64), Vec<DocId>) {
        let shards: Vec<(DocId, Vec<ChangeHash>)> = repl.read(|r| {
            r.docs()
                .filter(|d| matches!(d, DocId::Roster { community: c, .. } if *c == community))
                .map(|d| (d, r.heads(d)))
                .collect()
        });
        let mut total = (0, 0);
        let mut behind = Vec::new();
        for (doc, heads) in shards {
            match self.indexed(doc) {
                Some(i) if same(&i.heads, &heads) => {
                    total.0 += i.persons;
                    total.1 += i.active;
                }
                _ => behind.push(doc),
            }
        }
        (total, behind)
    }
}
