//! A gate agent against a real node on loopback.

use std::sync::Arc;
use std::time::Duration;

use menjin_community::Node;
use menjin_community::testing::{new_node, resident};
use menjin_gate::{Clock, GateAgent, Notice};
use menjin_net::clock::now_ms;
use menjin_proto::declaration::Declaration;
use menjin_proto::wire::{ConsoleRequest, Response};
use menjin_store::files::{GateDir, read_public_key, read_signing_key};
use menjin_store::provision::create_gate;

fn form() -> Declaration {
    resident("王芳", "19830521", 2, "301")
}

/// A node serving on loopback, a gate enrolled at it (`lane-1`) and one resident's code.
struct Site {
    _tmp: tempfile::TempDir,
    node: Arc<Node>,
    node_dir: menjin_store::files::NodeDir,
    gate_dir: GateDir,
    code: String,
    now: u64,
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<()>,
}

impl Site {
    fn start() -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let node_dir = new_node(tmp.path());
        let node = Node::open(&node_dir).unwrap();
        let server = menjin_community::bind(node.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let gate_dir = GateDir(tmp.path().join("gate"));
        let public_key = create_gate(&gate_dir, "lane-1", &node_dir, addr).unwrap();
        let now = now_ms() / 1000;
        let enrolled = node.console(
            ConsoleRequest::EnrolGate {
                gate_id: "lane-1".into(),
                public_key,
            },
            now,
        );
        assert!(matches!(enrolled, Response::Done(_)), "{enrolled:?}");
        let Response::Declared(receipt) =
            node.console(ConsoleRequest::Declare { form: form() }, now)
        else {
            panic!("declaration refused")
        };
        let code = receipt.code.expect("cleared");
        Site {
            _tmp: tmp,
            node,
            node_dir,
            gate_dir,
            code,
            now,
            stop,
            serving,
        }
    }

    /// Stops the node's server and waits for it.
    async fn stop(self) {
        let _ = self.stop.send(());
        self.serving.await.unwrap();
    }
}

/// A gate whose clock is a day behind: it is told so, and alone it judges a code issued
/// just now by the node's time (a naive verifier would say "not valid yet").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_with_a_wound_back_clock_decides_by_the_node_time() {
    let s = Site::start();
    let (node_dir, gate_dir, code, now) = (&s.node_dir, &s.gate_dir, s.code.clone(), s.now);

    let day_behind: Clock = Arc::new(|| now_ms() - 86_400_000);
    let (agent, mut notices) = GateAgent::start_with_clock(
        gate_dir.read_config().unwrap(),
        read_signing_key(&gate_dir.key()).unwrap(),
        read_public_key(&node_dir.root_pub()).unwrap(),
        &gate_dir.cache(),
        day_behind,
    )
    .unwrap();
    assert!(agent.wait_online(Duration::from_secs(10)).await);
    let skew = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match notices.recv().await {
                Some(Notice::ClockSkew { skew_ms }) => return skew_ms,
                Some(_) => continue,
                None => panic!("notices ended"),
            }
        }
    })
    .await
    .expect("a clock skew notice");
    assert!((-86_410_000..=-86_390_000).contains(&skew), "{skew}");

    s.stop().await;
    let d = agent.check(&code, 365, None).await.unwrap();
    assert!(d.offline, "{d:?}");
    assert!(d.answer.allowed, "judged by the node's time: {d:?}");
    assert!(d.answer.node_time_ms >= now * 1000, "{d:?}");
}

/// A guard's screen that stops reading notices (a stuck reader, a bench that never reads)
/// cost the gate memory without bound: the channel was unbounded. Now at most
/// `NOTICES_MAX` wait; the gate decides on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_nobody_reads_stay_bounded_and_the_gate_decides_on() {
    let s = Site::start();
    let (node, node_dir, gate_dir, code, now) =
        (&s.node, &s.node_dir, &s.gate_dir, s.code.clone(), s.now);
    let (agent, notices) = GateAgent::start(
        gate_dir.read_config().unwrap(),
        read_signing_key(&gate_dir.key()).unwrap(),
        read_public_key(&node_dir.root_pub()).unwrap(),
        &gate_dir.cache(),
    )
    .unwrap();
    assert!(agent.wait_online(Duration::from_secs(10)).await);
    // Each lockdown and lift the gate applies is a notice; nobody reads them.
    let mut applied = agent.applied();
    let rounds = 2 * menjin_gate::NOTICES_MAX as u64;
    for i in 0..rounds {
        let locked = i % 2 == 0;
        let r = node.console(
            ConsoleRequest::LocalLockdown {
                locked,
                reason: format!("drill {i}"),
                by: "test".into(),
            },
            now,
        );
        assert!(matches!(r, Response::Done(_)), "{r:?}");
        tokio::time::timeout(
            Duration::from_secs(10),
            applied.wait_for(|a| a.lockdown.locked == locked),
        )
        .await
        .expect("the gate applies it")
        .unwrap();
    }
    assert!(
        notices.len() <= menjin_gate::NOTICES_MAX,
        "{} notices waiting",
        notices.len()
    );
    let d = agent.check(&code, 365, None).await.unwrap();
    assert!(!d.offline && d.answer.allowed, "{d:?}");
    drop(notices);
    s.stop().await;
}
