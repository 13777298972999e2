//! The node's QUIC endpoint below the CLI: who may connect, what a peer may ask, and what the
//! node does with bytes that are not a request. The node is a real process; the test speaks
//! through `menjin_net::client::NodeClient`.

use std::path::PathBuf;

use ed25519_dalek::SigningKey;
use menjin_net::client::{ClientError, NodeClient};
use menjin_proto::declaration::{Declaration, Gender, PersonType, Quarantine, Tenure};
use menjin_proto::idnum::DocumentType;
use menjin_proto::wire::{
    self, CheckRequest, ConsoleRequest, Direction, ErrorKind, GATE_REQUEST_LEN_MAX, GateRequest,
    LogQuery, NodeStatus, PHOTO_LEN_MAX, Response, RoleRequest,
};
use menjin_store::files::{NodeDir, random32, read_public_key, read_signing_key, write_secret};

use crate::support::*;

/// A community with gate `north-1` enrolled and one cleared resident.
struct Fixture {
    c: Community,
    gate: PathBuf,
    code: String,
    rt: tokio::runtime::Runtime,
}

fn fixture() -> Fixture {
    let c = Community::start();
    let gate = c.enrol_gate("north-1");
    let (_, code) = c.declare_cleared(&Person::new("李伟", true, "19800312", 1, "12", "1203"));
    Fixture {
        c,
        gate,
        code,
        rt: runtime(),
    }
}

fn check(code: &str, temperature_dc: i16) -> GateRequest {
    GateRequest::Check(CheckRequest {
        code: code.to_string(),
        direction: Direction::In,
        temperature_dc,
        plate: None,
    })
}

async fn ask<R: RoleRequest>(client: &NodeClient, req: &R) -> Response {
    within("request", client.request(req))
        .await
        .expect("the node answers")
}

#[track_caller]
fn assert_error(resp: &Response, want: ErrorKind) -> String {
    match resp {
        Response::Error { kind, message } if *kind == want => {
            assert!(!message.trim().is_empty(), "an error says why");
            message.clone()
        }
        other => panic!("expected {want:?}, got {other:?}"),
    }
}

#[track_caller]
fn assert_allowed(resp: &Response) -> u64 {
    match resp {
        Response::Check(a) => {
            assert!(a.allowed, "{a:?}");
            a.seq
        }
        other => panic!("expected a check answer, got {other:?}"),
    }
}

async fn status(console: &NodeClient) -> NodeStatus {
    match ask(console, &ConsoleRequest::Status).await {
        Response::Status(s) => s,
        other => panic!("status: {other:?}"),
    }
}

fn form() -> Declaration {
    let person = Person::new("马桂兰", false, "19450315", 7, "3", "102");
    Declaration {
        name: person.name.clone(),
        gender: Gender::Female,
        document_type: DocumentType::ResidentId,
        document_number: person.id_number(),
        birth_date: None,
        nationality: "CN".into(),
        phone: "13800138000".into(),
        person_type: PersonType::Owner,
        quarantine: Quarantine::None,
        building: person.building,
        door: person.door,
        tenure: Tenure::Owned,
        travel_high_risk: false,
        contact_with_case: false,
        symptoms: false,
        underlying_conditions: String::new(),
    }
}

#[test]
fn unenrolled_gate_key_is_refused_at_connect() {
    let f = fixture();
    let root = read_public_key(&NodeDir(f.c.node_dir.clone()).root_pub()).expect("root.pub");
    let stranger = SigningKey::from_bytes(&random32());
    let addr = f.c.node.addr;
    f.rt.block_on(async {
        let console = console_client(&f.c.node_dir, addr).await;
        let before = status(&console).await;
        let attempt = within(
            "unenrolled connect",
            NodeClient::connect(addr, &stranger, root, Some(COMMUNITY)),
        )
        .await;
        match attempt {
            Err(ClientError::Connect { .. }) => {}
            Err(other) => panic!("unexpected error kind: {other}"),
            Ok(client) => {
                // In TLS 1.3 the client finishes its side of the handshake before the server
                // has judged the client certificate, so `connect` can return; the node's
                // refusal then closes the connection and no request is ever answered.
                match within("unenrolled request", client.request(&check(&f.code, 366))).await {
                    Err(ClientError::Stream(_)) => {}
                    other => panic!("an unenrolled key got {other:?}"),
                }
            }
        }
        let after = status(&console).await;
        assert_eq!(after.events_logged, before.events_logged);
        assert_eq!(after.gates, vec!["north-1".to_string()]);
    });
}

/// PRODUCT BUG (fails in most runs): the node refuses the key during the handshake with the
/// reason "client key is not enrolled at this node", but the client usually reports only
/// "connection to the node failed: read error: connection lost": quinn's `ReadError` display
/// drops the connection's close reason, and `NodeClient::request_raw` (node/src/client.rs)
/// formats only that. Whether the reason shows depends on which stream operation hits the
/// closed connection first. The operator of a new gate is not told to enrol it.
#[test]
fn gate_check_from_an_unenrolled_gate_fails_with_a_clear_message() {
    let f = fixture();
    // A copy of the enrolled gate's configuration with a key the node never saw.
    let stranger = f.c.file("gate-stranger");
    std::fs::create_dir(&stranger).expect("mkdir");
    std::fs::copy(f.gate.join("gate.toml"), stranger.join("gate.toml")).expect("copy gate.toml");
    write_secret(&stranger.join("gate.key"), &random32()).expect("gate.key");
    let before = f.c.status();
    let out = f.c.check(&stranger, &f.code, "36.6", &[]);
    assert_eq!(out.code(), EXIT_FAILURE, "{out:?}");
    assert!(out.stderr.contains("not enrolled"), "{out:?}");
    assert_eq!(f.c.status()["events_logged"], before["events_logged"]);
}

#[test]
fn garbage_bytes_from_a_gate_get_bad_request_and_are_not_logged() {
    let f = fixture();
    let addr = f.c.node.addr;
    f.rt.block_on(async {
        let gate = gate_client(&f.gate, addr).await;
        let console = console_client(&f.c.node_dir, addr).await;
        let before = status(&console).await;
        let valid = wire::encode(&check(&f.code, 366));
        let mut trailing = valid.clone();
        trailing.push(0);
        let garbage: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"GET / HTTP/1.1\r\nHost: node\r\n\r\n".to_vec(),
            vec![0xff; 64],
            vec![
                0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
            valid[..valid.len() - 3].to_vec(),
            valid[..1].to_vec(),
            trailing,
        ];
        for bytes in &garbage {
            let resp = within("garbage", gate.request_raw(bytes))
                .await
                .unwrap_or_else(|e| panic!("{bytes:?}: the node should answer, got {e}"));
            assert_error(&resp, ErrorKind::BadRequest);
        }
        let after = status(&console).await;
        assert_eq!(
            after.events_logged, before.events_logged,
            "garbage is not a gate event"
        );
        // The same connection still works.
        assert_allowed(&ask(&gate, &check(&f.code, 366)).await);
    });
}

#[test]
fn oversized_gate_request_is_refused_and_the_node_keeps_answering() {
    let f = fixture();
    let addr = f.c.node.addr;
    f.rt.block_on(async {
        let gate = gate_client(&f.gate, addr).await;
        let console = console_client(&f.c.node_dir, addr).await;
        let before = status(&console).await;
        for size in [GATE_REQUEST_LEN_MAX + 1, 64 * 1024, 1024 * 1024] {
            // A well-formed check with a huge code: only its size is wrong.
            let req = check(&format!("MJ:{}", "A".repeat(size)), 366);
            let bytes = wire::encode(&req);
            assert!(bytes.len() > GATE_REQUEST_LEN_MAX);
            match within("oversized", gate.request_raw(&bytes)).await {
                Ok(resp) => {
                    let why = assert_error(&resp, ErrorKind::BadRequest);
                    assert!(why.contains("exceeds"), "{why}");
                }
                Err(ClientError::Stream(_)) => {} // the node stopped reading: also a refusal
                Err(other) => panic!("{size} bytes: unexpected failure {other}"),
            }
            // A new stream on the same connection.
            assert_allowed(&ask(&gate, &check(&f.code, 366)).await);
        }
        // A new connection.
        let again = gate_client(&f.gate, addr).await;
        assert_allowed(&ask(&again, &check(&f.code, 365)).await);
        let after = status(&console).await;
        assert_eq!(
            after.events_logged,
            before.events_logged + 4,
            "only the valid checks are logged"
        );
    });
}

#[test]
fn console_operations_sent_by_a_gate_are_refused_and_change_nothing() {
    let f = fixture();
    let addr = f.c.node.addr;
    let rogue = SigningKey::from_bytes(&random32());
    f.rt.block_on(async {
        let gate = gate_client(&f.gate, addr).await;
        let console = console_client(&f.c.node_dir, addr).await;
        let before_roster = ask(&console, &ConsoleRequest::RosterSummary).await;
        // A gate's connection decodes only `GateRequest`s: a console request is malformed.
        let forbidden = [
            ConsoleRequest::RosterSummary,
            ConsoleRequest::Status,
            ConsoleRequest::QueryLog(LogQuery {
                limit: 10,
                ..LogQuery::default()
            }),
            ConsoleRequest::Declare { form: form() },
            ConsoleRequest::EnrolGate {
                gate_id: "rogue".into(),
                public_key: rogue.verifying_key().to_bytes(),
            },
            ConsoleRequest::RevokeGate {
                gate_id: "north-1".into(),
            },
        ];
        for req in &forbidden {
            assert_error(&ask(&gate, req).await, ErrorKind::BadRequest);
        }
        assert_eq!(
            ask(&console, &ConsoleRequest::RosterSummary).await,
            before_roster
        );
        let s = status(&console).await;
        assert_eq!(
            s.gates,
            vec!["north-1".to_string()],
            "no gate enrolled by a gate"
        );
        assert_eq!(s.residents, 1);
    });
}

/// No request names a gate: a check is filed under the gate whose key made the connection,
/// even when another gate is enrolled.
#[test]
fn a_gate_check_is_logged_under_the_gate_its_key_authenticated() {
    let f = fixture();
    let _south = f.c.enrol_gate("south-1");
    let addr = f.c.node.addr;
    f.rt.block_on(async {
        let gate = gate_client(&f.gate, addr).await;
        let console = console_client(&f.c.node_dir, addr).await;
        let seq = assert_allowed(&ask(&gate, &check(&f.code, 366)).await);
        let log = ask(
            &console,
            &ConsoleRequest::QueryLog(LogQuery {
                limit: 10,
                ..LogQuery::default()
            }),
        )
        .await;
        let Response::Log(events) = log else {
            panic!("log: {log:?}")
        };
        let event = events.iter().find(|e| e.seq == seq).expect("logged");
        assert_eq!(event.gate, "north-1");
    });
}

#[test]
fn console_cannot_submit_gate_checks() {
    let f = fixture();
    let addr = f.c.node.addr;
    f.rt.block_on(async {
        let console = console_client(&f.c.node_dir, addr).await;
        let before = status(&console).await;
        // A console's connection decodes only `ConsoleRequest`s: a check is malformed.
        assert_error(
            &ask(&console, &check(&f.code, 366)).await,
            ErrorKind::BadRequest,
        );
        assert_eq!(status(&console).await.events_logged, before.events_logged);
    });
}

#[test]
fn invalid_check_fields_from_a_gate_are_bad_requests_and_not_logged() {
    let f = fixture();
    let addr = f.c.node.addr;
    f.rt.block_on(async {
        let gate = gate_client(&f.gate, addr).await;
        let console = console_client(&f.c.node_dir, addr).await;
        let before = status(&console).await;
        for dc in [250, 299, 451, i16::MIN, i16::MAX] {
            let why = assert_error(
                &ask(&gate, &check(&f.code, dc)).await,
                ErrorKind::BadRequest,
            );
            assert!(why.contains("temperature"), "{why}");
        }
        for plate in ["", "   ", "粤B123456789012345"] {
            let req = GateRequest::Check(CheckRequest {
                code: f.code.clone(),
                direction: Direction::In,
                temperature_dc: 366,
                plate: Some(plate.into()),
            });
            assert_error(&ask(&gate, &req).await, ErrorKind::BadRequest);
        }
        assert_eq!(status(&console).await.events_logged, before.events_logged);
    });
}

#[test]
fn photo_over_1_mb_sent_to_the_node_is_refused() {
    let f = fixture();
    let addr = f.c.node.addr;
    f.rt.block_on(async {
        let console = console_client(&f.c.node_dir, addr).await;
        let before = status(&console).await;
        let mut photo = png_photo();
        photo.resize(PHOTO_LEN_MAX + 1, 0);
        let req = ConsoleRequest::DeclareOffline {
            form: form(),
            photo,
            staff: "陈主任".into(),
        };
        let why = assert_error(&ask(&console, &req).await, ErrorKind::BadRequest);
        assert!(why.contains("photo"), "{why}");
        let after = status(&console).await;
        assert_eq!(after.residents, before.residents);
        assert_eq!(after.codes_active, before.codes_active);
    });
}

#[test]
fn client_trusting_another_district_refuses_the_node() {
    let f = fixture();
    let addr = f.c.node.addr;
    let nd = NodeDir(f.c.node_dir.clone());
    let console_key = read_signing_key(&nd.console_key()).expect("console.key");
    let root = read_public_key(&nd.root_pub()).expect("root.pub");
    let other_root = SigningKey::from_bytes(&random32()).verifying_key();
    f.rt.block_on(async {
        let wrong_district = within(
            "connect",
            NodeClient::connect(addr, &console_key, other_root, Some(COMMUNITY)),
        )
        .await;
        assert!(
            matches!(wrong_district, Err(ClientError::Connect { .. })),
            "a node certified by another root must be refused"
        );
        let wrong_community = within(
            "connect",
            NodeClient::connect(addr, &console_key, root, Some(COMMUNITY + 1)),
        )
        .await;
        assert!(
            matches!(wrong_community, Err(ClientError::Connect { .. })),
            "a node of another community must be refused"
        );
        // The right district and community: let in.
        let right = console_client(&f.c.node_dir, addr).await;
        status(&right).await;
    });
}

/// One offline event as a gate would upload it.
fn offline_event(gate_seq: u64) -> menjin_proto::feed::OfflineEvent {
    menjin_proto::feed::OfflineEvent {
        cache: 0,
        gate_seq,
        event: wire::GateEvent {
            seq: 0,
            time_ms: 1,
            gate: "north-1".into(),
            direction: Direction::In,
            allowed: true,
            reason: menjin_proto::rule::Reason::Ok,
            fever: false,
            temperature_dc: 366,
            cred: None,
            holder: None,
            kind: None,
            plate: None,
            offline: Some(wire::OfflineMark {
                gate_seq,
                decided_ms: 1,
                degraded: false,
            }),
            passback: false,
        },
    }
}

#[test]
fn uploads_out_of_order_or_unmarked_store_nothing_and_a_good_one_is_stored_once() {
    let f = fixture();
    let _south = f.c.enrol_gate("south-1");
    let addr = f.c.node.addr;
    f.rt.block_on(async {
        let gate = gate_client(&f.gate, addr).await;
        let console = console_client(&f.c.node_dir, addr).await;
        let before = status(&console).await;

        let mut feed = gate.subscribe().await.expect("feed stream");
        match within("feed frame", feed.next()).await {
            Ok(Some(menjin_proto::feed::GateFeed::Snapshot(_))) => {}
            other => panic!("expected a snapshot, got {other:?}"),
        }
        let upload = |events| GateRequest::Upload { events };
        let why = assert_error(
            &ask(&gate, &upload(vec![offline_event(2), offline_event(1)])).await,
            ErrorKind::BadRequest,
        );
        assert!(why.contains("order"), "{why}");
        let mut unmarked = offline_event(1);
        unmarked.event.offline = None;
        assert_error(
            &ask(&gate, &upload(vec![unmarked])).await,
            ErrorKind::BadRequest,
        );
        assert_eq!(status(&console).await.events_logged, before.events_logged);

        // A good upload is stored once; the same upload again stores nothing.
        for stored in [1, 0] {
            match ask(&gate, &upload(vec![offline_event(1)])).await {
                Response::Uploaded {
                    upto_gate_seq: 1,
                    stored: s,
                } => assert_eq!(s, stored),
                other => panic!("expected an upload receipt, got {other:?}"),
            }
        }
        assert_eq!(
            status(&console).await.events_logged,
            before.events_logged + 1
        );
    });
}

/// A gate whose key the node no longer admits gets no answer: either the handshake fails, or
/// (TLS 1.3: the client may finish first) the node closes the connection before answering
/// `req`.
async fn assert_refused_at_connect(
    gate_dir: &std::path::Path,
    addr: std::net::SocketAddr,
    req: &GateRequest,
) {
    let gd = menjin_store::files::GateDir(gate_dir.to_path_buf());
    let cfg = gd.read_config().expect("gate.toml");
    let key = read_signing_key(&gd.key()).expect("gate.key");
    let root = menjin_proto::keys::parse_public_key_hex(&cfg.root_public_key).expect("root key");
    let attempt = within(
        "revoked gate connect",
        NodeClient::connect(addr, &key, root, Some(cfg.community)),
    )
    .await;
    match attempt {
        Err(ClientError::Connect { .. }) => {}
        Err(other) => panic!("unexpected error kind: {other}"),
        Ok(client) => match within("revoked gate request", client.request(req)).await {
            Err(ClientError::Stream(_)) => {}
            other => panic!("a revoked gate got {other:?}"),
        },
    }
}

/// `menjin gate revoke` cuts a gate off at once: its open connection is closed (its feed ends,
/// its next request fails), a new connection is refused (so it can neither check nor upload
/// offline events), and it stays out after the node restarts; the other gate is untouched.
#[test]
fn a_revoked_gate_is_cut_off_at_once_and_stays_out_after_a_restart() {
    let mut f = fixture();
    let south = f.c.enrol_gate("south-1");
    let addr = f.c.node.addr;
    let (gate, mut feed) = f.rt.block_on(async {
        let gate = gate_client(&f.gate, addr).await;
        assert_allowed(&ask(&gate, &check(&f.code, 366)).await);
        let mut feed = gate.subscribe().await.expect("feed stream");
        match within("feed frame", feed.next()).await {
            Ok(Some(menjin_proto::feed::GateFeed::Snapshot(_))) => {}
            other => panic!("expected a snapshot, got {other:?}"),
        }
        (gate, feed)
    });
    let before = f.c.status();

    let out = menjin(&[
        "gate",
        "revoke",
        "--node-dir",
        f.c.nd(),
        "--gate-id",
        "north-1",
    ]);
    out.ok();
    let again = menjin(&[
        "gate",
        "revoke",
        "--node-dir",
        f.c.nd(),
        "--gate-id",
        "north-1",
    ]);
    assert_ne!(again.code(), EXIT_OK, "{again:?}");
    assert!(again.stderr.contains("no gate north-1"), "{again:?}");

    let upload = GateRequest::Upload {
        events: vec![offline_event(1)],
    };
    f.rt.block_on(async {
        // Heartbeats every 2 s would keep an open feed going: it must end instead.
        within("the revoked gate's feed ends", async {
            while let Ok(Some(_)) = feed.next().await {}
        })
        .await;
        match within(
            "request on the revoked connection",
            gate.request(&check(&f.code, 366)),
        )
        .await
        {
            Err(ClientError::Stream(_)) => {}
            other => panic!("the revoked gate's open connection got {other:?}"),
        }
        assert_refused_at_connect(&f.gate, addr, &upload).await;
    });
    let after = f.c.status();
    assert_eq!(after["events_logged"], before["events_logged"]);
    assert_eq!(after["gates"], serde_json::json!(["south-1"]));

    f.c.node.restart_after_kill9();
    let addr = f.c.node.addr;
    let out = f.c.check(&f.gate, &f.code, "36.6", &[]);
    assert_eq!(out.code(), EXIT_FAILURE, "{out:?}");
    f.rt.block_on(async {
        assert_refused_at_connect(&f.gate, addr, &upload).await;
        let south = gate_client(&south, addr).await;
        assert_allowed(&ask(&south, &check(&f.code, 366)).await);
    });
    let restarted = f.c.status();
    assert_eq!(restarted["gates"], serde_json::json!(["south-1"]));
    assert_eq!(
        restarted["events_logged"],
        serde_json::json!(before["events_logged"].as_u64().expect("a count") + 1),
        "only the south gate's check was logged"
    );
}

/// An uploaded event is held to what an online check would have logged: a plate, a
/// temperature, a fever flag, a verdict and a holder that the node itself could have written.
#[test]
fn uploaded_events_an_online_check_could_not_have_made_are_refused_and_store_nothing() {
    let f = fixture();
    let addr = f.c.node.addr;
    f.rt.block_on(async {
        let gate = gate_client(&f.gate, addr).await;
        let console = console_client(&f.c.node_dir, addr).await;
        let before = status(&console).await;
        type Spoil = (&'static str, fn(&mut wire::GateEvent));
        let bad: [Spoil; 6] = [
            ("a 60 KiB plate", |e| e.plate = Some("A".repeat(60 * 1024))),
            ("a blank plate", |e| e.plate = Some(" ".into())),
            ("a thermometer error", |e| e.temperature_dc = 999),
            ("a fever not flagged", |e| e.temperature_dc = 380),
            ("allowed for a reason that refuses", |e| {
                e.reason = menjin_proto::rule::Reason::Revoked
            }),
            ("a holder without a code", |e| {
                e.holder = Some(menjin_proto::credential::HolderId([7; 8]))
            }),
        ];
        for (what, spoil) in bad {
            let mut event = offline_event(1);
            spoil(&mut event.event);
            let why = assert_error(
                &ask(
                    &gate,
                    &GateRequest::Upload {
                        events: vec![event],
                    },
                )
                .await,
                ErrorKind::BadRequest,
            );
            assert!(why.contains("event"), "{what}: {why}");
        }
        assert_eq!(status(&console).await.events_logged, before.events_logged);
    });
}

/// The first datagrams of `count` QUIC handshakes (Initial packets with a ClientHello, each
/// with its own connection id), caught on a socket that never answers.
async fn client_hellos(
    key: &SigningKey,
    root: ed25519_dalek::VerifyingKey,
    count: usize,
) -> Vec<Vec<u8>> {
    let trap = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let trap_addr = trap.local_addr().expect("local address");
    let mut client =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("address")).expect("client endpoint");
    client.set_default_client_config(
        menjin_net::tls::client_config(key, root, Some(COMMUNITY), 0, &[]).expect("client config"),
    );
    let mut pending = Vec::with_capacity(count);
    let mut hellos = std::collections::BTreeMap::new();
    let mut buf = vec![0u8; 2048];
    while hellos.len() < count {
        // At most OUTSTANDING Initials not yet read: more overflowed the trap's socket buffer
        // on a loaded machine, and a lost Initial comes again only after quinn's growing
        // retransmission timeout (this flaked past 20 s three times).
        const OUTSTANDING: usize = 64;
        if pending.len() < count && pending.len() < hellos.len() + OUTSTANDING {
            pending.push(
                client
                    .connect(trap_addr, menjin_net::tls::SERVER_NAME)
                    .expect("connect"),
            );
        } else {
            within("client hellos", trap.readable())
                .await
                .expect("readable");
        }
        while let Ok((n, _)) = trap.try_recv_from(&mut buf) {
            // Long header: flags, version (4), DCID length, DCID.
            let dcid_len = usize::from(buf[5]);
            hellos
                .entry(buf[6..6 + dcid_len].to_vec())
                .or_insert_with(|| buf[..n].to_vec());
        }
    }
    drop(pending);
    client.close(0u32.into(), b"");
    hellos.into_values().collect()
}

/// Sends each of `hellos` to `node` from a fresh socket, spread over 200 loopback addresses
/// (127.0.0.2 to 127.0.0.201): each is a new handshake that never completes.
fn flood(hellos: &[Vec<u8>], node: std::net::SocketAddr) {
    for (i, hello) in hellos.iter().enumerate() {
        let ip = std::net::Ipv4Addr::new(127, 0, 0, 2 + u8::try_from(i % 200).expect("small"));
        let socket = std::net::UdpSocket::bind((ip, 0)).expect("bind a loopback address");
        socket.send_to(hello, node).expect("send");
    }
}

/// Defect 2 of the hardening issue: a flood of handshakes that never complete took every
/// connection permit until the idle timeout, and the node refused its gates and console with
/// "connection limit reached".
#[test]
fn a_handshake_flood_does_not_lock_out_the_gate_or_the_console() {
    let f = fixture();
    let addr = f.c.node.addr;
    let root = read_public_key(&NodeDir(f.c.node_dir.clone()).root_pub()).expect("root.pub");
    let stranger = SigningKey::from_bytes(&random32());
    let hellos = f.rt.block_on(client_hellos(&stranger, root, 3_000));
    assert!(
        hellos.iter().all(|h| h.len() >= 1200),
        "Initials are padded"
    );
    // Far more than the node's connection limit, then more all the while the test asks.
    let (first, rest) = hellos.split_at(1_500);
    flood(first, addr);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooder = {
        let stop = stop.clone();
        let rest = rest.to_vec();
        std::thread::spawn(move || {
            for burst in rest.chunks(100).cycle() {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                flood(burst, addr);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
    };
    f.rt.block_on(async {
        let gate = gate_client(&f.gate, addr).await;
        assert_allowed(&ask(&gate, &check(&f.code, 366)).await);
        let console = console_client(&f.c.node_dir, addr).await;
        assert_eq!(status(&console).await.events_logged, 1);
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flooder.join().expect("flooder");
}
