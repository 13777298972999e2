//! Deterministic simulation: a hub and six nodes (one of them malicious) in one thread, a
//! simulated clock and a seeded RNG. The network loses, duplicates, delays and reorders
//! frames within a connection, breaks connections (partitions) with frames of the old
//! connection arriving after the new one started, and restarts replicas from what they
//! persisted. Nodes change their rosters and the hub its policy throughout. Then the faults
//! stop, the network heals, and every replica must converge: same heads everywhere, the
//! hub's rosters equal to the nodes', no revoked code active anywhere, and nothing the
//! malicious node forged merged anywhere.

mod common;

use std::collections::BTreeSet;
use std::time::Instant;

use common::*;
use menjin_proto::credential::{CredId, HolderId};
use menjin_sync::automerge::ReadDoc;
use menjin_sync::automerge::sync::{ChunkList, Message, MessageVersion};
use menjin_sync::{
    CodeEntry, CodeStatus, Config, DocId, PolicyBatch, Replica, Role, RosterBatch, SyncBody,
    SyncError, SyncFrame,
};

const SEEDS: u64 = 300;
const HONEST: u32 = 5;
const EVIL: u32 = 99;
const FAULT_MS: u64 = 10_000;
/// Simulated time allowed to converge once the faults stop: a few anti-entropy periods
/// (2 s here) and stall timeouts (0.8 s), with room for the escalation to fresh sync states.
/// Runs converge in well under 3 s; a protocol change that makes one take longer is a bug.
const HEAL_MS_MAX: u64 = 15_000;
const TICK_MS: u64 = 100;
const T0: u64 = 1_700_000_000;

/// splitmix64: small, seedable, good enough to drive a simulation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `per_mille` / 1000.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

fn config() -> Config {
    Config {
        anti_entropy_interval_ms: 2_000,
        stall_timeout_ms: 800,
        roster_shards: 4,
        snapshot_after_chunks: 10,
        ..Config::default()
    }
}

struct Actor {
    role: Role,
    replica: Replica,
    store: Store,
    incarnation: u32,
    /// Down (restarting) until this time.
    down_until: Option<u64>,
}

impl Actor {
    fn new(role: Role) -> Actor {
        Actor {
            role,
            replica: Replica::new(role, 1, config()),
            store: Store::default(),
            incarnation: 1,
            down_until: None,
        }
    }

    fn up(&self) -> bool {
        self.down_until.is_none()
    }

    fn persist(&mut self) {
        self.store.drain(&mut self.replica);
    }
}

struct Frame {
    at: u64,
    seq: u64,
    node: usize,
    to_hub: bool,
    bytes: Vec<u8>,
}

struct Link {
    partitioned_until: Option<u64>,
    connected: bool,
    /// Last delivery time per direction, to keep a connection in order.
    last_at: [u64; 2],
}

/// What each node wrote: the truth the replicas must agree with.
#[derive(Default)]
struct Model {
    active: Vec<CodeEntry>,
    revoked: BTreeSet<CredId>,
    persons: u64,
}

struct World {
    seed: u64,
    rng: Rng,
    now: u64,
    faults: bool,
    hub: Actor,
    nodes: Vec<Actor>,
    links: Vec<Link>,
    frames: Vec<Frame>,
    seq: u64,
    models: Vec<Model>,
    forged_holders: BTreeSet<HolderId>,
    forgeries_sent: u64,
    delivered: u64,
    dropped: u64,
    /// Hub roster shards turned cold during the run.
    cooled: u64,
}

impl World {
    fn new(seed: u64) -> World {
        let mut nodes: Vec<Actor> = (1..=HONEST).map(|c| Actor::new(Role::Node(c))).collect();
        nodes.push(Actor::new(Role::Node(EVIL)));
        let links = nodes
            .iter()
            .map(|_| Link {
                partitioned_until: None,
                connected: false,
                last_at: [0; 2],
            })
            .collect();
        let mut w = World {
            seed,
            rng: Rng(seed),
            now: 0,
            faults: true,
            hub: Actor::new(Role::Hub),
            models: nodes.iter().map(|_| Model::default()).collect(),
            nodes,
            links,
            frames: Vec::new(),
            seq: 0,
            forged_holders: BTreeSet::new(),
            cooled: 0,
            forgeries_sent: 0,
            delivered: 0,
            dropped: 0,
        };
        let enrol = (0..w.nodes.len())
            .map(|i| menjin_sync::NodeEnrolment {
                community: w.community(i),
                node_key: [i as u8; 32],
                name: format!("community {}", w.community(i)),
            })
            .collect();
        w.hub
            .replica
            .apply_policy(
                &PolicyBatch {
                    enrol,
                    ..PolicyBatch::default()
                },
                T0,
            )
            .unwrap();
        w.hub.store.drain(&mut w.hub.replica);
        w
    }

    fn community(&self, i: usize) -> u32 {
        match self.nodes[i].role {
            Role::Node(c) => c,
            Role::Hub => unreachable!(),
        }
    }

    fn fail(&self, what: &str) -> ! {
        let mut state = String::new();
        for n in &self.nodes {
            state += &self.hub.replica.describe_session(n.role);
            state += &n.replica.describe_session(Role::Hub);
            state += &format!("  node stats {:?}\n", n.replica.stats());
        }
        state += &format!("hub stats {:?}\n", self.hub.replica.stats());
        for n in &self.nodes {
            for d in n.replica.docs() {
                let (Some(a), Some(b)) = (self.hub.replica.doc(d), n.replica.doc(d)) else {
                    continue;
                };
                if a.get_heads() == b.get_heads() {
                    continue;
                }
                let has = |x: &menjin_sync::automerge::Automerge,
                           h: &[menjin_sync::automerge::ChangeHash]| {
                    h.iter()
                        .map(|h| x.get_change_meta_by_hash(h).is_some())
                        .collect::<Vec<_>>()
                };
                state += &format!(
                    "{d}: hub {} changes, node {} changes; hub has node heads {:?}, node has hub heads {:?}; hub missing deps {:?}; node missing {:?}\n",
                    a.get_changes(&[]).len(),
                    b.get_changes(&[]).len(),
                    has(a, &b.get_heads()),
                    has(b, &a.get_heads()),
                    a.get_missing_deps(&b.get_heads()).len(),
                    b.get_missing_deps(&a.get_heads()).len(),
                );
                let actors = |x: &menjin_sync::automerge::Automerge| {
                    let mut v: Vec<String> = x
                        .get_changes(&[])
                        .iter()
                        .map(|c| format!("{}:{}", hex::encode(c.actor_id().to_bytes()), c.seq()))
                        .collect();
                    v.sort();
                    v.join(" ")
                };
                state += &format!(
                    "  hub changes {}\n  node changes {}\n",
                    actors(a),
                    actors(b)
                );
            }
        }
        for f in &self.frames {
            let what = match SyncFrame::decode(&f.bytes).map(|f| f.body) {
                Ok(SyncBody::Doc { doc, .. }) => doc,
                Ok(SyncBody::Summary { reply, .. }) => format!("summary reply={reply}"),
                Err(e) => e.to_string(),
            };
            state += &format!(
                "frame at {} node {} to hub {} {what}\n",
                f.at, f.node, f.to_hub
            );
        }
        panic!("seed {}: at {} ms: {what}\n{state}", self.seed, self.now);
    }

    fn link_should_be_up(&self, i: usize) -> bool {
        self.hub.up() && self.nodes[i].up() && self.links[i].partitioned_until.is_none()
    }

    /// Brings each connection in line with partitions and restarts.
    fn update_links(&mut self) {
        for i in 0..self.nodes.len() {
            let want = self.link_should_be_up(i);
            if want == self.links[i].connected {
                continue;
            }
            let node_role = self.nodes[i].role;
            if want {
                self.hub.replica.connect(node_role, self.now).unwrap();
                self.nodes[i].replica.connect(Role::Hub, self.now).unwrap();
                self.links[i].last_at = [self.now; 2];
            } else {
                if self.hub.up() {
                    self.hub.replica.disconnect(node_role);
                }
                if self.nodes[i].up() {
                    self.nodes[i].replica.disconnect(Role::Hub);
                }
                // Frames of the broken connection: some are lost, the others arrive late,
                // into whatever connection exists then (stale sessions).
                let mut kept = Vec::new();
                for mut f in std::mem::take(&mut self.frames) {
                    if f.node == i {
                        if self.rng.chance(500) {
                            self.dropped += 1;
                            continue;
                        }
                        f.at += self.rng.range(100, 3_000);
                    }
                    kept.push(f);
                }
                self.frames = kept;
            }
            self.links[i].connected = want;
        }
    }

    fn restart(&mut self, who: Option<usize>) {
        let down = self.rng.range(200, 2_000);
        let actor = match who {
            None => &mut self.hub,
            Some(i) => &mut self.nodes[i],
        };
        if !actor.up() {
            return;
        }
        actor.down_until = Some(self.now + down);
        // In-flight frames to and from a crashed process are gone.
        match who {
            None => self.frames.clear(),
            Some(i) => self.frames.retain(|f| f.node != i),
        }
        self.update_links();
    }

    fn revive(&mut self) {
        let now = self.now;
        for actor in std::iter::once(&mut self.hub).chain(self.nodes.iter_mut()) {
            if actor.down_until.is_some_and(|t| t <= now) {
                actor.incarnation += 1;
                // The hub starts with every roster shard cold, as `Replication::open` does.
                actor.replica = if actor.role == Role::Hub {
                    actor
                        .store
                        .rebuild_cold(actor.role, actor.incarnation, config())
                } else {
                    actor.store.rebuild(actor.role, actor.incarnation, config())
                };
                actor.down_until = None;
            }
        }
        for l in &mut self.links {
            if l.partitioned_until.is_some_and(|t| t <= now) {
                l.partitioned_until = None;
            }
        }
        self.update_links();
    }

    fn send(&mut self, node: usize, to_hub: bool, bytes: Vec<u8>) {
        let dir = usize::from(to_hub);
        let mut at = (self.now + self.rng.range(2, 40)).max(self.links[node].last_at[dir]);
        self.links[node].last_at[dir] = at;
        let mut copies = 1;
        if self.faults {
            if self.rng.chance(20) {
                self.dropped += 1;
                return;
            }
            if self.rng.chance(20) {
                copies = 2;
            }
            if self.rng.chance(30) {
                at += self.rng.range(50, 600);
            }
        }
        for c in 0..copies {
            self.seq += 1;
            self.frames.push(Frame {
                at: at + c * self.rng.range(0, 200),
                seq: self.seq,
                node,
                to_hub,
                bytes: bytes.clone(),
            });
        }
    }

    /// Persist, then send, for every live replica: the driver's order.
    fn flush(&mut self) {
        self.hub.store.drain(&mut self.hub.replica);
        for n in &mut self.nodes {
            n.store.drain(&mut n.replica);
        }
        for i in 0..self.nodes.len() {
            if !self.links[i].connected {
                continue;
            }
            let role = self.nodes[i].role;
            for _ in 0..1_000 {
                let mut moved = false;
                if let Some(b) = self.hub.replica.poll_transmit(role, self.now) {
                    self.send(i, false, b);
                    moved = true;
                }
                if let Some(b) = self.nodes[i].replica.poll_transmit(Role::Hub, self.now) {
                    self.send(i, true, b);
                    moved = true;
                }
                if !moved {
                    break;
                }
            }
        }
    }

    fn deliver_due(&mut self) {
        self.frames.sort_by_key(|f| (f.at, f.seq));
        let due = self.frames.partition_point(|f| f.at <= self.now);
        let batch: Vec<Frame> = self.frames.drain(..due).collect();
        for f in batch {
            if !self.links[f.node].connected {
                self.dropped += 1;
                continue;
            }
            self.delivered += 1;
            let node_role = self.nodes[f.node].role;
            let result = if f.to_hub {
                self.hub
                    .store
                    .deliver(&mut self.hub.replica, node_role, &f.bytes, self.now)
            } else {
                self.nodes[f.node]
                    .replica
                    .handle_message(Role::Hub, &f.bytes, self.now)
            };
            if let Err(e) = result {
                self.fail(&format!("honest frame refused: {e}"));
            }
            // Persist what the frame changed before anything else happens.
            if f.to_hub {
                self.hub.store.drain(&mut self.hub.replica);
            } else {
                self.nodes[f.node].persist();
            }
        }
    }

    fn roster_change(&mut self, i: usize) {
        let c = self.community(i);
        let model = &mut self.models[i];
        let mut batch = RosterBatch::default();
        let n = u64::from(c) << 32 | model.persons;
        if model.active.is_empty() || self.rng.chance(600) {
            // A declaration: a person and their code, sometimes replacing the old code.
            model.persons += 1;
            let entry = code(n, holder(n));
            batch.put_person(person(n, Some(entry.id)));
            batch.put_code(entry.clone());
            model.active.push(entry);
        } else {
            let k = self.rng.below(model.active.len() as u64) as usize;
            let entry = model.active.swap_remove(k);
            model.revoked.insert(entry.id);
            batch.put_code(revoked(entry, T0 + self.now / 1000));
        }
        if let Err(e) = self.nodes[i]
            .replica
            .apply_roster(c, &batch, T0 + self.now / 1000)
        {
            self.fail(&format!("roster write refused: {e}"));
        }
        self.nodes[i].persist();
    }

    fn policy_change(&mut self) {
        let c = self.rng.range(1, u64::from(HONEST)) as u32;
        if self.rng.chance(500) {
            let locked = !self.hub.replica.policy().is_locked(c);
            self.hub
                .replica
                .set_lockdown(c, locked, "case", "op", T0 + self.now / 1000)
                .unwrap();
        } else {
            let flag = menjin_sync::HealthFlag {
                id_hash: menjin_proto::idnum::IdHash([self.rng.below(50) as u8; 16]),
                community: c,
                status: ["red", "yellow", "green"][self.rng.below(3) as usize].into(),
                at: T0 + self.now,
            };
            self.hub
                .replica
                .apply_policy(
                    &PolicyBatch {
                        health: vec![flag],
                        ..PolicyBatch::default()
                    },
                    T0,
                )
                .unwrap();
        }
        self.hub.store.drain(&mut self.hub.replica);
    }

    /// The malicious node sends the hub changes to another community's roster or to the
    /// policy, inside its own authenticated connection.
    fn forge(&mut self) {
        let evil = self.nodes.len() - 1;
        if !self.links[evil].connected {
            return;
        }
        let Some(session) = self.nodes[evil].replica.session_id(Role::Hub) else {
            return;
        };
        self.forgeries_sent += 1;
        let victim = self.rng.range(1, u64::from(HONEST)) as u32;
        let (doc, msg, roster) = if self.rng.chance(500) {
            let mut forger = Replica::new(Role::Node(victim), 1_000, config());
            let n = 0xdead_0000 + self.forgeries_sent;
            self.forged_holders.insert(holder(n));
            forger
                .apply_roster(
                    victim,
                    &RosterBatch {
                        persons: vec![person(n, None)],
                        codes: vec![],
                    },
                    T0,
                )
                .unwrap();
            let doc = forger.docs().next().unwrap();
            (doc, changes_of(forger.doc(doc).unwrap()), true)
        } else {
            // A lockdown lift in another community's policy (not shared with this node) or in
            // its own (shared, but only the hub writes it), or an enrolment in the district
            // document.
            let mut forger = Replica::new(Role::Hub, 1_000, config());
            let target = if self.rng.chance(500) { victim } else { EVIL };
            forger
                .set_lockdown(target, false, "forged", "evil", T0)
                .unwrap();
            let doc = DocId::CommunityPolicy { community: target };
            let own = target == EVIL;
            if self.rng.chance(300) {
                forger
                    .apply_policy(
                        &PolicyBatch {
                            enrol: vec![menjin_sync::NodeEnrolment {
                                community: victim,
                                node_key: [0xee; 32],
                                name: "forged".into(),
                            }],
                            ..PolicyBatch::default()
                        },
                        T0,
                    )
                    .unwrap();
                (
                    DocId::Policy,
                    changes_of(forger.doc(DocId::Policy).unwrap()),
                    false,
                )
            } else {
                (doc, changes_of(forger.doc(doc).unwrap()), !own)
            }
        };
        let bytes = SyncFrame {
            session,
            body: SyncBody::Doc {
                doc: doc.to_string(),
                msg,
            },
        }
        .encode();
        let r = self
            .hub
            .replica
            .handle_message(Role::Node(EVIL), &bytes, self.now);
        match (roster, r) {
            (true, Err(SyncError::NotShared { .. })) => {}
            (false, Err(SyncError::NotWriter { .. })) => {}
            (_, other) => self.fail(&format!("forgery not refused as expected: {other:?}")),
        }
    }

    fn tick(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].up() && self.rng.chance(80) {
                self.roster_change(i);
            }
        }
        if self.hub.up() && self.rng.chance(60) {
            self.policy_change();
        }
        if !self.faults {
            return;
        }
        for i in 0..self.nodes.len() {
            if self.links[i].partitioned_until.is_none() && self.rng.chance(8) {
                self.links[i].partitioned_until = Some(self.now + self.rng.range(300, 4_000));
                self.update_links();
            }
            if self.rng.chance(4) {
                self.restart(Some(i));
            }
        }
        if self.rng.chance(2) {
            self.restart(None);
        }
        if self.hub.up() && self.rng.chance(50) {
            self.forge();
        }
        if self.hub.up() && self.rng.chance(100) {
            self.cool_hub_shard();
        }
    }

    /// The hub drops one decoded roster shard (if idle), as it does with shards it has not
    /// used for a while; a later frame about it loads it again.
    fn cool_hub_shard(&mut self) {
        let warm: Vec<DocId> = self
            .hub
            .replica
            .docs()
            .filter(|d| matches!(d, DocId::Roster { .. }) && !self.hub.replica.is_cold(*d))
            .collect();
        if warm.is_empty() {
            return;
        }
        let doc = warm[self.rng.range(0, warm.len() as u64 - 1) as usize];
        self.hub.store.drain(&mut self.hub.replica);
        if self.hub.replica.cool(doc) {
            self.cooled += 1;
        }
    }

    /// Decodes every cold shard at the hub (before reading the rosters whole).
    fn warm_hub(&mut self) {
        for doc in self.hub.replica.cold_docs(None) {
            self.hub.store.load(&mut self.hub.replica, doc);
        }
    }

    fn next_event(&self, next_tick: u64) -> u64 {
        let mut t = next_tick;
        if let Some(f) = self.frames.iter().map(|f| f.at).min() {
            t = t.min(f);
        }
        for a in std::iter::once(&self.hub).chain(&self.nodes) {
            match a.down_until {
                Some(d) => t = t.min(d),
                None => {
                    if let Some(d) = a.replica.poll_timeout() {
                        t = t.min(d);
                    }
                }
            }
        }
        for l in &self.links {
            if let Some(p) = l.partitioned_until {
                t = t.min(p);
            }
        }
        t.max(self.now + 1)
    }

    fn step_until(&mut self, end: u64, mut done: impl FnMut(&World) -> bool) -> bool {
        let mut next_tick = self.now + TICK_MS;
        while self.now < end {
            let t = self.next_event(next_tick);
            self.now = t;
            self.revive();
            self.deliver_due();
            for a in std::iter::once(&mut self.hub).chain(self.nodes.iter_mut()) {
                if a.up() && a.replica.poll_timeout().is_some_and(|d| d <= t) {
                    a.replica.handle_timeout(t);
                }
            }
            if t >= next_tick {
                next_tick += TICK_MS;
                if self.faults {
                    self.tick();
                }
                if done(self) {
                    return true;
                }
            }
            self.flush();
        }
        false
    }

    /// Everything agrees; returns a description of the first difference otherwise.
    fn difference(&self) -> Option<String> {
        if !self.frames.is_empty() {
            return Some(format!("{} frames in flight", self.frames.len()));
        }
        let hub = &self.hub.replica;
        for (i, n) in self.nodes.iter().enumerate() {
            let c = self.community(i);
            let mut docs: BTreeSet<DocId> = n.replica.docs().collect();
            docs.extend(
                hub.docs()
                    .filter(|d| matches!(d, DocId::Roster { community, .. } if *community == c)),
            );
            docs.insert(DocId::Policy);
            docs.insert(DocId::CommunityPolicy { community: c });
            for d in docs {
                let mut a = hub.heads(d);
                let mut b = n.replica.heads(d);
                a.sort();
                b.sort();
                if a != b {
                    return Some(format!("{d} differs between hub and {}", n.role));
                }
            }
            if !hub.is_settled(n.role) || !n.replica.is_settled(Role::Hub) {
                return Some(format!("session with {} not settled", n.role));
            }
        }
        None
    }

    fn check_final(&self) {
        let hub = &self.hub.replica;
        let hub_policy = hub.policy();
        for (i, n) in self.nodes.iter().enumerate() {
            let c = self.community(i);
            let at_hub = hub.roster(c);
            let at_node = n.replica.roster(c);
            if at_hub != at_node {
                self.fail(&format!("rosters of {c} differ"));
            }
            let model = &self.models[i];
            assert_eq!(
                at_node.codes.len() as u64,
                model.persons,
                "seed {}",
                self.seed
            );
            for id in &model.revoked {
                for (who, view) in [("hub", &at_hub), ("node", &at_node)] {
                    if view.codes.get(id).map(|e| e.status) != Some(CodeStatus::Revoked) {
                        self.fail(&format!("revoked code {id} not revoked at {who} {c}"));
                    }
                }
            }
            for e in &model.active {
                if at_hub.codes.get(&e.id) != Some(e) {
                    self.fail(&format!("code {} wrong at hub", e.id));
                }
            }
            // A node holds the district document and its own community's policy, the same as
            // the hub's, and nothing of another community's.
            let mut expected = hub.district_policy();
            expected.merge(hub.community_policy(c));
            if n.replica.policy() != expected {
                self.fail(&format!("policy differs at {}", n.role));
            }
            let foreign = n
                .replica
                .docs()
                .any(|d| matches!(d, DocId::CommunityPolicy { community } if community != c));
            if foreign || n.replica.policy().health.values().any(|f| f.community != c) {
                self.fail(&format!("{} holds another community's policy", n.role));
            }
            for h in &self.forged_holders {
                if at_hub.persons.contains_key(h) || at_node.persons.contains_key(h) {
                    self.fail("a forged person was merged");
                }
            }
        }
        // No change written by a forger's actor (incarnation 1000) is anywhere.
        for a in std::iter::once(&self.hub).chain(&self.nodes) {
            for d in a.replica.docs() {
                for c in a.replica.doc(d).unwrap().get_changes(&[]) {
                    let actor = c.actor_id().to_bytes();
                    let incarnation = u32::from_be_bytes(actor[7..11].try_into().unwrap());
                    if incarnation >= 1_000 {
                        self.fail(&format!("a forged change is in {d} at {}", a.role));
                    }
                }
            }
        }
        if hub_policy.lockdowns.values().any(|l| l.reason == "forged") {
            self.fail("a forged lockdown was merged");
        }
        assert_eq!(hub_policy.malformed, 0);
    }
}

/// A sync message carrying all of `doc`'s changes.
fn changes_of(doc: &menjin_sync::automerge::Automerge) -> Vec<u8> {
    Message {
        heads: doc.get_heads(),
        need: vec![],
        have: vec![],
        changes: ChunkList::from(
            doc.get_changes(&[])
                .into_iter()
                .map(|c| c.raw_bytes().to_vec())
                .collect::<Vec<_>>(),
        ),
        flags: None,
        version: MessageVersion::V1,
    }
    .encode()
}

#[derive(Default)]
struct Totals {
    delivered: u64,
    dropped: u64,
    restarts: u64,
    stale: u64,
    forgeries: u64,
    heal_ms: u64,
    heal_ms_max: u64,
    cooled: u64,
}

fn run(seed: u64, totals: &mut Totals) {
    let mut w = World::new(seed);
    w.update_links();
    w.flush();
    w.step_until(FAULT_MS, |_| false);

    // Heal: no more faults or writes, every process up, every link up.
    w.faults = false;
    for a in std::iter::once(&mut w.hub).chain(w.nodes.iter_mut()) {
        if a.down_until.is_some() {
            a.down_until = Some(w.now);
        }
    }
    for l in &mut w.links {
        l.partitioned_until = None;
    }
    w.revive();
    w.flush();
    let start = w.now;
    let converged = w.step_until(start + HEAL_MS_MAX, |w| w.difference().is_none());
    if !converged {
        let why = w.difference().unwrap_or_default();
        w.fail(&format!("no convergence after healing: {why}"));
    }
    w.warm_hub();
    w.check_final();
    totals.delivered += w.delivered;
    totals.cooled += w.cooled;
    totals.dropped += w.dropped;
    totals.restarts += w.hub.replica.stats().session_restarts
        + w.nodes
            .iter()
            .map(|n| n.replica.stats().session_restarts)
            .sum::<u64>();
    totals.stale += w.hub.replica.stats().stale_frames;
    totals.forgeries += w.forgeries_sent;
    totals.heal_ms += w.now - start;
    totals.heal_ms_max = totals.heal_ms_max.max(w.now - start);
}

/// Names the seed of a failing run, whatever panicked.
struct SeedGuard(u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("failing seed: {0} (replay with SIM_SEED={0})", self.0);
        }
    }
}

/// Runs seeds `range` (or those the environment asks for) and prints the totals.
fn run_seeds(range: std::ops::Range<u64>) {
    // SIM_SEED=n replays one seed; SIM_SEED=n SIM_COUNT=m runs m seeds from n (a soak).
    let env = |k: &str| std::env::var(k).ok().and_then(|s| s.parse::<u64>().ok());
    let range = match (env("SIM_SEED"), env("SIM_COUNT")) {
        (Some(first), count) if range.start == 0 => first..first + count.unwrap_or(1),
        (Some(_), _) => return,
        (None, _) => range,
    };
    let t = Instant::now();
    let mut totals = Totals::default();
    for seed in range.clone() {
        let _guard = SeedGuard(seed);
        run(seed, &mut totals);
    }
    let count = range.end - range.start;
    println!(
        "seeds {range:?} in {:.1} s: {} frames delivered, {} lost, {} session restarts, {} stale frames dropped at the hub, {} forgeries refused, {} hub shards cooled; healing took {} ms on average, {} ms at most (simulated)",
        t.elapsed().as_secs_f64(),
        totals.delivered,
        totals.dropped,
        totals.restarts,
        totals.stale,
        totals.forgeries,
        totals.cooled,
        totals.heal_ms / count.max(1),
        totals.heal_ms_max
    );
}

// Two halves, so that the test harness runs them on two threads.
#[test]
fn replicas_converge_through_loss_partitions_and_restarts() {
    run_seeds(0..SEEDS / 2);
}

#[test]
fn replicas_converge_through_loss_partitions_and_restarts_more_seeds() {
    run_seeds(SEEDS / 2..SEEDS);
}
