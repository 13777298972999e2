//! The node and a gate deciding alone give the same answer: every case of `menjin demo` is put
//! to the node (`Node::check`, what its QUIC endpoint runs for a gate) and to a gate agent
//! whose cache was fed by that node over QUIC (`GateAgent::decide_alone`), and both must
//! reach the decision and reason of the table. Where the two legitimately differ, the table
//! says so (`Want::Differs`) and why.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use menjin_community::Node;
use menjin_gate::{Decision, GateAgent, GateError};
use menjin_net::clock::now_ms;
use menjin_proto::credential::{CredId, Credential, HolderId, HolderKind, encode_text};
use menjin_proto::declaration::{Declaration, PersonType, Tenure};
use menjin_proto::rule::Reason;
use menjin_proto::wire::{CheckAnswer, CheckRequest, ConsoleRequest, Direction, Receipt, Response};
use menjin_proto::{KeyId, SignedCode, UnixTime};
use menjin_store::files::{DistrictDir, GateDir, NodeDir, read_public_key, read_signing_key};
use menjin_store::provision::{NodeSpec, create_district, create_gate, create_node};

use crate::support::{COMMUNITY, DEADLINE, png_photo, within};

const NORMAL_DC: i16 = 364;

/// What both deciders must answer for one case.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// Decided with this reason (allowed exactly when it is `ok`), by both.
    Same(Reason),
    /// Decided by both, differently, for a reason the comment in the table gives.
    Differs { node: Reason, gate: Reason },
    /// Refused before deciding, by both (nothing logged or buffered).
    Refused,
}

/// One person at one gate.
struct Case {
    what: &'static str,
    code: String,
    direction: Direction,
    temperature_dc: i16,
    plate: Option<&'static str>,
    want: Want,
}

fn case(what: &'static str, code: &str, want: Want) -> Case {
    Case {
        what,
        code: code.to_string(),
        direction: Direction::In,
        temperature_dc: NORMAL_DC,
        plate: None,
        want,
    }
}

impl Case {
    fn out(self) -> Case {
        Case {
            direction: Direction::Out,
            ..self
        }
    }
    fn at(self, temperature_dc: i16) -> Case {
        Case {
            temperature_dc,
            ..self
        }
    }
    fn plate(self, plate: &'static str) -> Case {
        Case {
            plate: Some(plate),
            ..self
        }
    }
}

/// A declaration that is cleared at once (the demo's form); `serial` keeps ID numbers apart.
fn person(name: &str, serial: u32, building: &str, door: &str) -> Declaration {
    let birth = format!("198203{:02}", 1 + serial % 28);
    menjin_harness::person(name, serial % 2 == 1, &birth, serial, building, door)
}

/// A node serving on loopback, and two gate agents fed by it (one lane in, one out).
struct World {
    _tmp: tempfile::TempDir,
    node_dir: NodeDir,
    node: Arc<Node>,
    gate_in: GateAgent,
    gate_out: GateAgent,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<()>>,
}

impl World {
    async fn start() -> World {
        let tmp = tempfile::tempdir().expect("tempdir");
        let district = DistrictDir(tmp.path().join("d"));
        create_district(&district).expect("district");
        let node_dir = NodeDir(tmp.path().join("n"));
        let spec = NodeSpec {
            community: COMMUNITY,
            community_name: "香蜜湖社区".into(),
            listen: "127.0.0.1:0".parse().expect("literal"),
            campaign_start: 0,
            code_validity_days: 30,
            hub: None,
        };
        create_node(&district, &node_dir, &spec).expect("node");
        let node = Node::open(&node_dir).expect("open node");
        let server = menjin_community::bind(node.clone(), spec.listen).expect("bind");
        let addr = server.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        World {
            gate_in: gate(&tmp, &node_dir, &node, addr, "north-1", Direction::In).await,
            gate_out: gate(&tmp, &node_dir, &node, addr, "south-1", Direction::Out).await,
            _tmp: tmp,
            node_dir,
            node,
            stop: Some(stop),
            serving: Some(serving),
        }
    }

    fn console(&self, req: ConsoleRequest) -> Response {
        let now = now_ms() / 1000;
        tokio::task::block_in_place(|| self.node.console(req, now))
    }

    fn declare(&self, req: ConsoleRequest) -> Receipt {
        match self.console(req) {
            Response::Declared(r) => r,
            other => panic!("declaration refused: {other:?}"),
        }
    }

    fn code(&self, req: ConsoleRequest) -> String {
        self.declare(req).code.expect("cleared: a code")
    }

    fn invite(&self, host: HolderId, from: UnixTime, until: UnixTime) -> (CredId, String) {
        let req = ConsoleRequest::InviteVisitor {
            host,
            visitor_name: "访客 钱先生".into(),
            visitor_phone: "13900139000".into(),
            from,
            until,
        };
        match self.console(req) {
            Response::Visitor(v) => (v.cred, v.code),
            other => panic!("invitation refused: {other:?}"),
        }
    }

    /// Waits until both gates have applied everything the node has changed so far.
    async fn gates_caught_up(&self) {
        let want = self.node.feed_snapshot();
        let deadline = Instant::now() + DEADLINE;
        for gate in [&self.gate_in, &self.gate_out] {
            let mut applied = gate.applied();
            while applied.borrow().version != want.version {
                assert!(Instant::now() < deadline, "gate cache never caught up");
                let _ = tokio::time::timeout(Duration::from_millis(100), applied.changed()).await;
            }
        }
    }

    async fn ask_node(&self, c: &Case) -> Result<CheckAnswer, String> {
        let gate = match c.direction {
            Direction::In => "north-1",
            Direction::Out => "south-1",
        };
        let req = CheckRequest {
            code: c.code.clone(),
            direction: c.direction,
            temperature_dc: c.temperature_dc,
            plate: c.plate.map(str::to_string),
        };
        within(c.what, self.node.check(gate, req))
            .await
            .map_err(|r| r.message)
    }

    fn ask_gate(&self, c: &Case) -> Result<Decision, String> {
        let gate = match c.direction {
            Direction::In => &self.gate_in,
            Direction::Out => &self.gate_out,
        };
        tokio::task::block_in_place(|| gate.decide_alone(&c.code, c.temperature_dc, c.plate))
            .map_err(|e| match e {
                GateError::Input(why) => why.to_string(),
                e => panic!("{}: the gate failed: {e}", c.what),
            })
    }

    /// Puts every case to both and checks the answers against the table and each other.
    async fn run(&self, cases: &[Case]) {
        self.gates_caught_up().await;
        for c in cases {
            let node = self.ask_node(c).await;
            let gate = self.ask_gate(c);
            let what = c.what;
            match (c.want, node, gate) {
                (Want::Refused, Err(n), Err(g)) => assert_eq!(n, g, "{what}: refusals differ"),
                (want, Ok(n), Ok(g)) => {
                    assert!(g.offline, "{what}: {g:?}");
                    let g = g.answer;
                    let (wn, wg) = match want {
                        Want::Same(r) => (r, r),
                        Want::Differs { node, gate } => (node, gate),
                        Want::Refused => panic!("{what}: decided, not refused: {n:?} {g:?}"),
                    };
                    assert_eq!(
                        (n.reason, n.allowed),
                        (wn, wn == Reason::Ok),
                        "{what}: node"
                    );
                    assert_eq!(
                        (g.reason, g.allowed),
                        (wg, wg == Reason::Ok),
                        "{what}: gate"
                    );
                    assert_eq!(n.fever, g.fever, "{what}: fever flag");
                    if wn == wg {
                        // The same code recognised the same way (the name stays on the node).
                        let seen = |a: &CheckAnswer| {
                            a.holder
                                .as_ref()
                                .map(|h| (h.kind, h.building.clone(), h.door.clone()))
                        };
                        assert_eq!(seen(&n), seen(&g), "{what}: holder shown");
                    }
                }
                (want, n, g) => panic!("{what}: want {want:?}, node {n:?}, gate {g:?}"),
            }
        }
    }

    async fn stop(mut self) {
        drop((self.gate_in, self.gate_out));
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            within("node stops", serving).await.expect("server task");
        }
    }
}

/// Enrols a gate at the node and starts its agent on `direction`'s lane, online.
async fn gate(
    tmp: &tempfile::TempDir,
    node_dir: &NodeDir,
    node: &Node,
    addr: SocketAddr,
    gate_id: &str,
    direction: Direction,
) -> GateAgent {
    let dir = GateDir(tmp.path().join(gate_id));
    let public_key = create_gate(&dir, gate_id, node_dir, addr).expect("gate dir");
    let req = ConsoleRequest::EnrolGate {
        gate_id: gate_id.into(),
        public_key,
    };
    let enrolled = tokio::task::block_in_place(|| node.console(req, now_ms() / 1000));
    assert!(matches!(enrolled, Response::Done(_)), "{enrolled:?}");
    let mut cfg = dir.read_config().expect("gate.toml");
    cfg.direction = direction;
    let (agent, _notices) = GateAgent::start(
        cfg,
        read_signing_key(&dir.key()).expect("gate key"),
        read_public_key(&node_dir.root_pub()).expect("root key"),
        &dir.cache(),
    )
    .expect("gate agent");
    assert!(agent.wait_online(DEADLINE).await, "{gate_id} never online");
    agent
}

/// A resident's code of this community, valid for the hour around now, changed by `f` and
/// signed by `key`.
fn signed(key: &SigningKey, f: impl FnOnce(&mut Credential)) -> String {
    let now = now_ms() / 1000;
    let mut c = Credential {
        kind: HolderKind::Resident,
        id: CredId([7; 8]),
        community: COMMUNITY,
        holder: HolderId([7; 8]),
        valid_from: (now - 3600) as u32,
        valid_until: (now + 3600) as u32,
        issuer: KeyId::of(&key.verifying_key()),
        building: "1".into(),
        door: "101".into(),
    };
    f(&mut c);
    c.sign(key).to_text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_and_a_gate_alone_decide_every_demo_case_alike() {
    use Reason::*;
    use Want::*;
    let w = World::start().await;
    let now = now_ms() / 1000;

    let resident = w.declare(ConsoleRequest::Declare {
        form: person("李伟", 1, "1", "101"),
    });
    let resident_code = resident.code.clone().expect("cleared");
    let mut staff = person("刘洋", 3, "2", "102");
    staff.person_type = PersonType::ShopStaff;
    staff.tenure = Tenure::Rented;
    let staff = w.code(ConsoleRequest::Declare { form: staff });
    let mut grandma = person("李秀英", 4, "1", "101");
    grandma.person_type = PersonType::Household;
    let dependent = w.code(ConsoleRequest::DeclareProxy {
        by: resident.holder,
        form: grandma,
    });
    let pass = w.code(ConsoleRequest::DeclareOffline {
        form: person("马桂兰", 6, "3", "102"),
        photo: png_photo(),
        staff: "工作站 陈主任".into(),
    });
    let sick = person("陈静", 8, "2", "202");
    let revoked = w.code(ConsoleRequest::Declare { form: sick.clone() });
    w.declare(ConsoleRequest::Declare {
        form: Declaration {
            symptoms: true,
            ..sick
        },
    });
    let host = w.declare(ConsoleRequest::Declare {
        form: person("杨磊", 9, "3", "301"),
    });
    let (_, visitor) = w.invite(host.holder, now, now + 4 * 3600);
    let (withdrawn_id, withdrawn) = w.invite(host.holder, now, now + 4 * 3600);
    w.console(ConsoleRequest::WithdrawConsent {
        visitor_code: withdrawn_id,
    });
    let (_, tomorrow) = w.invite(host.holder, now + 86_400, now + 90_000);
    // A visitor whose host is no longer cleared: the consent falls with the host's code.
    let host2 = person("赵丽", 10, "3", "302");
    let host2_holder = w
        .declare(ConsoleRequest::Declare {
            form: host2.clone(),
        })
        .holder;
    let (_, orphan) = w.invite(host2_holder, now, now + 4 * 3600);
    w.declare(ConsoleRequest::Declare {
        form: Declaration {
            symptoms: true,
            ..host2
        },
    });

    let mut tampered = SignedCode::from_text(&resident_code)
        .expect("code")
        .as_bytes()
        .to_vec();
    let at = tampered.len() - 65; // the door's last character, just before the signature
    tampered[at] ^= 0x01;
    let tampered = encode_text(&tampered);
    let node_key = read_signing_key(&w.node_dir.key()).expect("node key");
    let expired = signed(&node_key, |c| {
        c.valid_from = (now - 40 * 86_400) as u32;
        c.valid_until = (now - 10 * 86_400) as u32;
    });
    let unrecorded = signed(&node_key, |c| c.id = CredId([9; 8]));
    let stranger = SigningKey::from_bytes(&[42; 32]);
    let foreign = signed(&stranger, |c| c.community = COMMUNITY + 1);
    let unknown_issuer = signed(&stranger, |_| {});
    let long_plate = "粤B1234567890ABCD"; // 17 bytes

    let cases = [
        case("resident", &resident_code, Same(Ok)),
        case("resident going out", &resident_code, Same(Ok)).out(),
        case("dependent (declared by proxy)", &dependent, Same(Ok)),
        case("shop staff", &staff, Same(Ok)),
        case("printed pass", &pass, Same(Ok)),
        case("resident at 38.1 °C", &resident_code, Same(Fever)).at(381),
        case("resident driving in", &resident_code, Same(Ok)).plate("粤B12345"),
        case("visitor with consent", &visitor, Same(Ok)),
        case("visitor in a car", &visitor, Same(VehicleBarred)).plate("粤B99999"),
        case("visitor, consent withdrawn", &withdrawn, Same(NoConsent)),
        case("visitor whose host lost the code", &orphan, Same(NoConsent)),
        case("visitor invited for tomorrow", &tomorrow, Same(NotYetValid)),
        case("revoked code", &revoked, Same(Revoked)),
        case("altered code (door changed)", &tampered, Same(BadSignature)),
        case("code expired 10 days ago", &expired, Same(Expired)),
        case(
            "resident of another community",
            &foreign,
            Same(WrongCommunity),
        ),
        case(
            "code signed by an unknown key",
            &unknown_issuer,
            Same(UnknownIssuer),
        ),
        case(
            "a scan of something else",
            "HTTPS://EXAMPLE.COM/123",
            Same(Malformed),
        ),
        // Signed by this node, in its window, but not on the roster (a restored backup, a
        // leaked key): the node knows every code it issued; a gate has only the signature.
        case(
            "validly signed, never issued",
            &unrecorded,
            Differs {
                node: UnknownCode,
                gate: Ok,
            },
        ),
        case("thermometer error", &resident_code, Refused).at(295),
        case("empty plate", &resident_code, Refused).plate(" "),
        case("plate too long", &resident_code, Refused).plate(long_plate),
    ];
    w.run(&cases).await;

    let locked = w.console(ConsoleRequest::LocalLockdown {
        locked: true,
        reason: "confirmed case in building 2".into(),
        by: "staff 陈".into(),
    });
    assert!(matches!(locked, Response::Done(_)), "{locked:?}");
    let cases = [
        case("visitor during lockdown", &visitor, Same(Lockdown)),
        case("resident coming home", &resident_code, Same(Ok)),
        case("resident going out", &resident_code, Same(Lockdown)).out(),
        case("dependent going out", &dependent, Same(Lockdown)).out(),
        case("staff going out", &staff, Same(Ok)).out(),
        case("resident driving in", &resident_code, Same(Lockdown)).plate("粤B54321"),
        case("revoked code during lockdown", &revoked, Same(Revoked)),
    ];
    w.run(&cases).await;
    w.stop().await;
}
