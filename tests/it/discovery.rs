//! mDNS discovery on real interfaces: real node processes advertising, `menjin gate discover`
//! and `menjin gate run` browsing, each side in a network namespace this test creates (two
//! namespaces joined by a veth pair, or one namespace's own loopback). Nothing is sent on the
//! machine's interfaces: mdns-sd joins its group on every interface of its namespace when it
//! starts, and these namespaces hold only the test's interfaces. Without the right to create
//! namespaces (not root), each test prints "skipped: ..." and returns.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use menjin_store::files::GateDir;
use serde_json::Value;

use crate::support::{
    COMMUNITY, DEADLINE, EXIT_FAILURE, NodeProc, Out, Person, bin, gate_run_lines, menjin, p,
    run_with_stdin,
};

/// The node side's address on the veth pair.
const NODE_IP: &str = "10.77.0.1";
const GATE_IP: &str = "10.77.0.2";
/// Long enough for mDNS probing, announcing and resolving inside namespaces, with margin for
/// a loaded 2-core machine; browsing stops earlier once answers stop coming.
const BROWSE_MS: &str = "4000";

/// Network namespaces and their interfaces; deleted when dropped, pass or panic (deleting a
/// namespace deletes the veth ends inside it).
struct Lab {
    namespaces: Vec<String>,
    /// Prefix of this lab's names: unique per test process and lab.
    tag: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = run_with_stdin("ip", args, None);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), out.stderr.trim()))
    }
}

impl Lab {
    /// A lab, or the reason it cannot be made here.
    fn new(name: &str) -> Result<Lab, String> {
        let available = Command::new("ip")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !available {
            return Err("the ip command (iproute2) is not installed".into());
        }
        // Interface names are at most 15 bytes: "mj" + pid + the lab's letter + a suffix.
        Ok(Lab {
            namespaces: Vec::new(),
            tag: format!("mj{}{name}", std::process::id()),
        })
    }

    /// Creates a namespace with its loopback up; returns its name.
    fn netns(&mut self, suffix: &str) -> Result<String, String> {
        let ns = format!("{}{suffix}", self.tag);
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Joins two namespaces with a veth pair, addresses `a_ip` and `b_ip` (/24); returns the
    /// interface names (in `a`, in `b`).
    fn veth(&self, a: &str, a_ip: &str, b: &str, b_ip: &str) -> Result<(String, String), String> {
        let (ia, ib) = self.veth_down(a, b)?;
        for (ns, ifname, addr) in [(a, &ia, a_ip), (b, &ib, b_ip)] {
            add_addr(ns, ifname, addr)?;
            ip(&["-n", ns, "link", "set", ifname, "up"])?;
        }
        // The kernel reports a new link operationally up up to a second later (linkwatch),
        // and mdns-sd skips interfaces that are not up, looking again only every 5 s.
        for (ns, ifname) in [(a, &ia), (b, &ib)] {
            wait_oper_up(ns, ifname)?;
        }
        Ok((ia, ib))
    }

    /// Joins two namespaces with a veth pair, both ends down and without addresses; returns
    /// the interface names (in `a`, in `b`).
    fn veth_down(&self, a: &str, b: &str) -> Result<(String, String), String> {
        let (ia, ib) = (format!("{}va", self.tag), format!("{}vb", self.tag));
        ip(&[
            "link", "add", &ia, "netns", a, "type", "veth", "peer", "name", &ib, "netns", b,
        ])?;
        Ok((ia, ib))
    }
}

/// Adds `addr`/24 to `ifname` in `ns`.
fn add_addr(ns: &str, ifname: &str, addr: &str) -> Result<(), String> {
    ip(&[
        "-n",
        ns,
        "addr",
        "add",
        &format!("{addr}/24"),
        "dev",
        ifname,
    ])
}

/// Polls until `ifname` in `ns` is operationally up, for at most [`DEADLINE`].
fn wait_oper_up(ns: &str, ifname: &str) -> Result<(), String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let out = run_with_stdin("ip", &["-n", ns, "-o", "link", "show", "dev", ifname], None);
        if out.stdout.contains("state UP") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{ifname} in {ns} not up within {DEADLINE:?}: {}",
                out.stdout
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Makes a lab or explains why the test is skipped.
macro_rules! lab_or_skip {
    ($name:expr) => {
        match Lab::new($name) {
            Ok(lab) => lab,
            Err(why) => {
                println!("skipped: {why}");
                return;
            }
        }
    };
}

/// Creates a namespace, or skips the test if this user may not (not root).
macro_rules! netns_or_skip {
    ($lab:expr, $suffix:expr) => {
        match $lab.netns($suffix) {
            Ok(ns) => ns,
            Err(why) if why.contains("Permission") || why.contains("Operation not permitted") => {
                println!("skipped: cannot create network namespaces here ({why})");
                return;
            }
            Err(why) => panic!("{why}"),
        }
    };
}

/// `menjin --json ARGS` inside namespace `ns`.
fn menjin_in(ns: &str, args: &[&str]) -> Out {
    let mut all = vec!["netns", "exec", ns, bin(), "--json"];
    all.extend_from_slice(args);
    run_with_stdin("ip", &all, None)
}

fn menjin_in_with_stdin(ns: &str, args: &[&str], input: &str) -> Out {
    let mut all = vec!["netns", "exec", ns, bin(), "--json"];
    all.extend_from_slice(args);
    run_with_stdin("ip", &all, Some(input))
}

/// A district directory and a node of [`COMMUNITY`] in it, advertising on `mdns` if given.
fn create_node(base: &Path, name: &str, mdns: Option<&str>) -> (PathBuf, PathBuf) {
    let district = base.join(format!("district-{name}"));
    let node = base.join(format!("node-{name}"));
    menjin(&["district", "init", "--dir", p(&district)]).ok();
    let community = COMMUNITY.to_string();
    let mut args = vec![
        "node",
        "create",
        "--district",
        p(&district),
        "--dir",
        p(&node),
        "--community",
        &community,
        "--name",
        "香蜜湖社区",
    ];
    if let Some(ifaces) = mdns {
        args.extend(["--mdns", ifaces]);
    }
    menjin(&args).ok();
    (district, node)
}

/// Enrols a gate at the node running in `ns`, discovering on `ifaces`; then points its static
/// `node` address at `static_addr`.
fn enrol_gate(ns: &str, node: &Path, gate: &Path, ifaces: &str, static_addr: &str) {
    menjin_in(
        ns,
        &[
            "gate",
            "enrol",
            "--node-dir",
            p(node),
            "--gate-id",
            "lane-1",
            "--dir",
            p(gate),
            "--discover",
            ifaces,
        ],
    )
    .ok();
    let gd = GateDir(gate.to_path_buf());
    let mut cfg = gd.read_config().expect("gate.toml");
    assert!(cfg.discovery.enabled);
    assert_eq!(cfg.discovery.interfaces, [ifaces]);
    cfg.node = static_addr.parse().expect("static address");
    gd.write_config(&cfg).expect("gate.toml");
}

fn candidates(v: &Value) -> Vec<Value> {
    v["candidates"].as_array().expect("candidates").clone()
}

/// A temporary directory for one test's district.
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("menjin-it-mdns-")
        .tempdir()
        .expect("temporary directory")
}

/// Starts the node in `node_dir` inside `ns`, bound to its LAN address (`NODE_IP`), logging to
/// `base/node.log`.
fn start_at_lan_address(ns: &str, node_dir: &Path, base: &Path) -> NodeProc {
    NodeProc::start_in(
        ns,
        node_dir,
        &format!("{NODE_IP}:0"),
        &base.join("node.log"),
    )
}

#[test]
fn gate_finds_its_node_by_mdns_and_refuses_a_node_of_another_district() {
    let mut lab = lab_or_skip!("a");
    let node_ns = netns_or_skip!(lab, "n");
    let gate_ns = netns_or_skip!(lab, "g");
    let (node_if, gate_if) = lab
        .veth(&node_ns, NODE_IP, &gate_ns, GATE_IP)
        .expect("veth pair");
    let tmp = scratch();
    let base = tmp.path();
    let listen = format!("{NODE_IP}:0");

    let (_, good_dir) = create_node(base, "good", Some(&node_if));
    let good = NodeProc::start_in(&node_ns, &good_dir, &listen, &base.join("good.log"));
    // Same community id, but certified by another district's root.
    let (_, rogue_dir) = create_node(base, "rogue", Some(&node_if));
    let rogue = NodeProc::start_in(&node_ns, &rogue_dir, &listen, &base.join("rogue.log"));
    for n in [&good, &rogue] {
        assert!(
            n.log_text().contains("advertising by mDNS"),
            "{}",
            n.log_text()
        );
    }

    // The static address leads nowhere: only mDNS can find the node.
    let gate = base.join("gate");
    enrol_gate(
        &node_ns,
        &good_dir,
        &gate,
        &gate_if,
        &format!("{NODE_IP}:9"),
    );
    let found = menjin_in(
        &gate_ns,
        &[
            "gate",
            "discover",
            "--dir",
            p(&gate),
            "--browse-ms",
            BROWSE_MS,
        ],
    );
    let v = found.ok();
    assert_eq!(v["advertised"], 2, "{v:#}");
    assert_eq!(v["chosen"]["via"], "mdns", "{v:#}");
    assert_eq!(v["chosen"]["addr"], good.addr.to_string(), "{v:#}");
    let all = candidates(&v);
    let by_addr = |addr: &str| {
        all.iter()
            .find(|c| c["addr"] == addr)
            .unwrap_or_else(|| panic!("no candidate at {addr}: {v:#}"))
            .clone()
    };
    let g = by_addr(&good.addr.to_string());
    assert_eq!(g["verified"], true, "{g}");
    assert!(g["rtt_us"].as_u64().is_some(), "{g}");
    let r = by_addr(&rogue.addr.to_string());
    assert_eq!(r["verified"], false, "{r}");
    let why = r["error"].as_str().expect("a reason");
    assert!(
        why.starts_with("refused:") && why.contains("certificate"),
        "{why}"
    );

    // The gate daemon itself finds the node the same way and decides a scanned code.
    let (_, code) = {
        let person = Person::new("王芳", false, "19830521", 1, "3", "301");
        let mut args = vec!["declare", "--node-dir", p(&good_dir)];
        let form = person.args();
        args.extend(form.iter().map(String::as_str));
        let r = menjin_in(&node_ns, &args).ok();
        (
            r["holder"].as_str().expect("holder").to_string(),
            r["code"].as_str().expect("code").to_string(),
        )
    };
    let out = menjin_in_with_stdin(
        &gate_ns,
        &["gate", "run", "--dir", p(&gate)],
        &format!("36.6 {code}\n"),
    );
    assert!(out.status.success(), "{out:?}");
    let decisions = gate_run_lines(&out.stdout);
    assert_eq!(decisions.len(), 1, "{out:?}");
    let line = &decisions[0];
    assert_eq!(line["answer"]["allowed"], true, "{out:?}");
}

#[test]
fn gate_falls_back_to_its_static_address_when_no_node_advertises() {
    let mut lab = lab_or_skip!("b");
    let node_ns = netns_or_skip!(lab, "n");
    let gate_ns = netns_or_skip!(lab, "g");
    let (_, gate_if) = lab
        .veth(&node_ns, NODE_IP, &gate_ns, GATE_IP)
        .expect("veth pair");
    let tmp = scratch();
    let base = tmp.path();
    // No --mdns: the node does not advertise.
    let (_, node_dir) = create_node(base, "quiet", None);
    let node = start_at_lan_address(&node_ns, &node_dir, base);
    assert!(
        node.log_text().contains("mDNS advertisement off"),
        "{}",
        node.log_text()
    );
    let gate = base.join("gate");
    enrol_gate(&node_ns, &node_dir, &gate, &gate_if, &node.addr.to_string());
    let v = menjin_in(
        &gate_ns,
        &["gate", "discover", "--dir", p(&gate), "--browse-ms", "800"],
    )
    .ok();
    assert_eq!(v["advertised"], 0, "{v:#}");
    assert_eq!(v["chosen"]["via"], "static", "{v:#}");
    assert_eq!(v["chosen"]["addr"], node.addr.to_string(), "{v:#}");

    // Nothing advertised and the static address dead: exit 1 with the reason.
    let mut cfg = GateDir(gate.clone()).read_config().expect("gate.toml");
    cfg.node = format!("{NODE_IP}:9").parse().expect("address");
    GateDir(gate.clone()).write_config(&cfg).expect("gate.toml");
    let out = menjin_in(
        &gate_ns,
        &["gate", "discover", "--dir", p(&gate), "--browse-ms", "300"],
    );
    let v = out.expect(EXIT_FAILURE);
    assert!(v["chosen"].is_null(), "{v:#}");
    assert_eq!(candidates(&v)[0]["via"], "static", "{v:#}");
    assert!(
        candidates(&v)[0]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("unreachable")),
        "{v:#}"
    );
}

#[test]
fn node_and_gate_find_each_other_on_loopback_when_it_is_listed() {
    let mut lab = lab_or_skip!("c");
    let ns = netns_or_skip!(lab, "l");
    // Loopback has no MULTICAST flag by default. Here (Linux 6.18) mDNS on a namespace's
    // loopback worked without it; set it so the test does not depend on that.
    ip(&["-n", &ns, "link", "set", "lo", "multicast", "on"]).expect("lo multicast");
    let tmp = scratch();
    let base = tmp.path();
    let (_, node_dir) = create_node(base, "lo", Some("lo"));
    let node = NodeProc::start_in(&ns, &node_dir, "127.0.0.1:0", &base.join("node.log"));
    let gate = base.join("gate");
    enrol_gate(&ns, &node_dir, &gate, "lo", "127.0.0.1:9");
    let v = menjin_in(
        &ns,
        &[
            "gate",
            "discover",
            "--dir",
            p(&gate),
            "--browse-ms",
            BROWSE_MS,
        ],
    )
    .ok();
    assert_eq!(v["chosen"]["via"], "mdns", "{v:#}");
    assert_eq!(v["chosen"]["addr"], node.addr.to_string(), "{v:#}");
}

/// Runs `gate discover` in `gate_ns` until it chooses the node at `want` by mDNS, for at most
/// [`DEADLINE`]; returns its report, or panics with the last one. Each attempt browses for
/// `browse_ms`, then falls back to the static address (the node itself: quick).
fn discover_until_found_by_mdns(gate_ns: &str, gate: &Path, want: &str, browse_ms: &str) -> Value {
    let deadline = Instant::now() + DEADLINE;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let v = menjin_in(
            gate_ns,
            &[
                "gate",
                "discover",
                "--dir",
                p(gate),
                "--browse-ms",
                browse_ms,
            ],
        )
        .ok();
        if v["chosen"]["via"] == "mdns" && v["chosen"]["addr"] == want {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "no gate discover chose {want} by mDNS in {attempts} attempts within {DEADLINE:?}; the last said: {v:#}"
            );
        }
    }
}

#[test]
fn node_started_before_its_link_came_up_is_found_once_the_link_is_up() {
    let mut lab = lab_or_skip!("d");
    let node_ns = netns_or_skip!(lab, "n");
    let gate_ns = netns_or_skip!(lab, "g");
    let (node_if, gate_if) = lab.veth_down(&node_ns, &gate_ns).expect("veth pair");
    // The node's end has its address and is up, the gate's end is still down: no carrier,
    // as on a LAN port whose link is still settling when the node starts (in the lab, about a
    // second after the veth came up). mdns-sd takes only running interfaces at its start.
    add_addr(&node_ns, &node_if, NODE_IP).expect("node address");
    add_addr(&gate_ns, &gate_if, GATE_IP).expect("gate address");
    ip(&["-n", &node_ns, "link", "set", &node_if, "up"]).expect("node link up");
    let link = run_with_stdin(
        "ip",
        &["-n", &node_ns, "-o", "link", "show", "dev", &node_if],
        None,
    );
    assert!(link.stdout.contains("NO-CARRIER"), "{}", link.stdout);

    let tmp = scratch();
    let base = tmp.path();
    let (_, node_dir) = create_node(base, "early", Some(&node_if));
    // Bound to its LAN address, as in the lab and the examples: an advertisement with a fixed
    // address, not one that follows the interfaces.
    let node = start_at_lan_address(&node_ns, &node_dir, base);
    assert!(
        node.log_text().contains("advertising by mDNS"),
        "{}",
        node.log_text()
    );
    // Enrolled from the node's namespace (its own address answers without a carrier); the
    // static fallback is the node itself, so only `via` tells how the gate found it.
    let gate = base.join("gate");
    enrol_gate(&node_ns, &node_dir, &gate, &gate_if, &node.addr.to_string());

    // The link comes up with the node already running.
    ip(&["-n", &gate_ns, "link", "set", &gate_if, "up"]).expect("gate link up");
    wait_oper_up(&node_ns, &node_if).expect("node link");
    wait_oper_up(&gate_ns, &gate_if).expect("gate link");

    let v = discover_until_found_by_mdns(&gate_ns, &gate, &node.addr.to_string(), "2000");
    assert_eq!(v["advertised"], 1, "{v:#}");
    let log = node.log_text();
    assert!(
        log.contains("re-advertising by mDNS"),
        "the node did not say why it advertised again:\n{log}"
    );
}

#[test]
fn node_bound_to_any_address_is_found_at_an_address_its_link_got_after_it_started() {
    let mut lab = lab_or_skip!("e");
    let node_ns = netns_or_skip!(lab, "n");
    let gate_ns = netns_or_skip!(lab, "g");
    let (node_if, gate_if) = lab
        .veth(&node_ns, NODE_IP, &gate_ns, GATE_IP)
        .expect("veth pair");
    let tmp = scratch();
    let base = tmp.path();
    let (_, node_dir) = create_node(base, "any", Some(&node_if));
    // The gate is enrolled at the node's address (enrolment dials node.addr), then the node
    // restarts bound to 0.0.0.0 on a link that has lost its address.
    let mut node = start_at_lan_address(&node_ns, &node_dir, base);
    let gate = base.join("gate");
    enrol_gate(
        &node_ns,
        &node_dir,
        &gate,
        &gate_if,
        &format!("{NODE_IP}:9"),
    );
    assert!(node.terminate().success(), "{}", node.log_text());
    ip(&[
        "-n",
        &node_ns,
        "addr",
        "del",
        &format!("{NODE_IP}/24"),
        "dev",
        &node_if,
    ])
    .expect("address removed");
    let node = NodeProc::start_in(&node_ns, &node_dir, "0.0.0.0:0", &base.join("node.log"));
    let want = format!("{NODE_IP}:{}", node.addr.port());
    // The static fallback is the node's future address: quick either way.
    let gd = GateDir(gate.clone());
    let mut cfg = gd.read_config().expect("gate.toml");
    cfg.node = want.parse().expect("address");
    gd.write_config(&cfg).expect("gate.toml");

    add_addr(&node_ns, &node_if, NODE_IP).expect("address back");
    let v = discover_until_found_by_mdns(&gate_ns, &gate, &want, "2000");
    assert_eq!(v["advertised"], 1, "{v:#}");
}
