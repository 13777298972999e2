//! What every integration test needs: the `menjin` binary run with a deadline, a node process
//! that is killed when the test ends (pass or panic), a district with one community node in a
//! temporary directory, declaration forms, and QUIC clients for the tests that talk to the node
//! below the CLI.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use menjin_net::client::NodeClient;
use menjin_proto::idnum::complete_resident_id;
use menjin_store::files::{GateDir, NodeDir, read_public_key, read_signing_key};
use serde_json::Value;

/// Every wait in these tests ends by then: a CLI command, a node start, a QUIC request.
pub const DEADLINE: Duration = Duration::from_secs(20);
/// How often a poll looks again (for a file, a process exit).
const POLL: Duration = Duration::from_millis(5);

pub const COMMUNITY: u32 = 440_304_001;

/// Exit codes of `menjin` (cli/src/main.rs).
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_REFUSED: i32 = 3;
pub const EXIT_DENIED: i32 = 4;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_menjin")
}

/// A path as an argument (temporary directories are UTF-8 here).
pub fn p(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// A finished `menjin` command.
#[derive(Debug)]
pub struct Out {
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("menjin {:?} ended by a signal: {self:?}", self.args))
    }

    /// The one JSON object a `--json` command prints on stdout.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!("menjin {:?}: stdout is not JSON ({e}): {self:?}", self.args)
        })
    }

    /// Asserts the exit code, then returns the JSON.
    #[track_caller]
    pub fn expect(&self, code: i32) -> Value {
        assert_eq!(
            self.code(),
            code,
            "menjin {:?}: unexpected exit code\nstdout: {}\nstderr: {}",
            self.args,
            self.stdout,
            self.stderr
        );
        self.json()
    }

    /// Asserts success and returns the JSON.
    #[track_caller]
    pub fn ok(&self) -> Value {
        self.expect(EXIT_OK)
    }
}

/// Waits for `child` to exit, polling until [`DEADLINE`]; kills it and panics if it does not.
fn wait_bounded(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(POLL);
    }
}

/// Runs `menjin` with these arguments exactly, bounded by [`DEADLINE`].
pub fn menjin_raw(args: &[&str]) -> Out {
    menjin_with_stdin(args, None)
}

/// Runs `menjin` with these arguments and, if given, this text on standard input.
pub fn menjin_with_stdin(args: &[&str], input: Option<&str>) -> Out {
    run_with_stdin(bin(), args, input)
}

/// Runs `program` (`menjin`, or `ip netns exec ...`) bounded by [`DEADLINE`].
pub fn run_with_stdin(program: &str, args: &[&str], input: Option<&str>) -> Out {
    let mut child = Command::new(program)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn menjin");
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("piped stdin");
        // A scanner line is short: it fits the pipe buffer, so this cannot block. A command
        // that refuses its arguments may exit before it reads: its answer is the outcome.
        match std::io::Write::write_all(&mut stdin, input.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("write stdin: {e}"),
            _ => {}
        }
    }
    let mut so = child.stdout.take().expect("piped stdout");
    let mut se = child.stderr.take().expect("piped stderr");
    // Read both pipes while the command runs, so a full pipe cannot stall it.
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let status = wait_bounded(&mut child, &format!("{program} {args:?}"));
    Out {
        args: args.iter().map(|s| s.to_string()).collect(),
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}

/// Runs `menjin --json` with these arguments.
pub fn menjin(args: &[&str]) -> Out {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    menjin_raw(&all)
}

/// A running `menjin node run` process; killed (SIGKILL) when dropped.
pub struct NodeProc {
    child: Option<Child>,
    pub dir: PathBuf,
    pub addr: SocketAddr,
    log: PathBuf,
    /// `node` or `hub`: which daemon this is.
    role: &'static str,
    /// The network namespace it runs in (`ip netns exec`), if not the test's own.
    netns: Option<String>,
}

impl NodeProc {
    /// Starts `menjin node run --dir DIR --listen LISTEN` and waits until it serves (it writes
    /// `node.addr` once bound). Its log goes to `LOG`, shown if it fails to start.
    pub fn start(dir: &Path, listen: &str, log: &Path) -> NodeProc {
        NodeProc::spawn("node", dir, listen, log, None)
    }

    /// As [`NodeProc::start`], inside the network namespace `netns` (`ip netns exec` execs
    /// `menjin`, so the child is the node itself).
    pub fn start_in(netns: &str, dir: &Path, listen: &str, log: &Path) -> NodeProc {
        NodeProc::spawn("node", dir, listen, log, Some(netns.to_string()))
    }

    /// Starts `menjin hub run` the same way (a hub writes `node.addr` too).
    pub fn start_hub(dir: &Path, listen: &str, log: &Path) -> NodeProc {
        NodeProc::spawn("hub", dir, listen, log, None)
    }

    fn spawn(
        role: &'static str,
        dir: &Path,
        listen: &str,
        log: &Path,
        netns: Option<String>,
    ) -> NodeProc {
        // A node killed with SIGKILL leaves its node.addr behind: only a fresh one means
        // this process is serving.
        let addr_file = NodeDir(dir.to_path_buf()).addr();
        match std::fs::remove_file(&addr_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("removing {}: {e}", addr_file.display()),
        }
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("node log file");
        let mut command = match &netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, bin()]);
                c
            }
            None => Command::new(bin()),
        };
        let child = command
            .args([role, "run", "--dir", p(dir), "--listen", listen])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn menjin node run");
        let mut node = NodeProc {
            child: Some(child),
            dir: dir.to_path_buf(),
            addr: "0.0.0.0:0".parse().expect("literal"),
            log: log.to_path_buf(),
            role,
            netns,
        };
        let deadline = Instant::now() + DEADLINE;
        loop {
            let written = std::fs::read_to_string(&addr_file).ok();
            if let Some(addr) = written.and_then(|text| text.trim().parse().ok()) {
                node.addr = addr;
                return node;
            }
            let child = node.child.as_mut().expect("child");
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!(
                    "menjin {role} run exited with {status} before serving:\n{}",
                    node.log_text()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "menjin {role} run did not write {} within {DEADLINE:?}:\n{}",
                    addr_file.display(),
                    node.log_text()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, as a power cut or the OOM killer would: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the node");
            let status = wait_bounded(&mut child, "killed node");
            assert!(status.code().is_none(), "node ended by a signal: {status}");
        }
    }

    /// SIGTERM, as systemd sends it: the node drains and exits; returns its exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("node is running");
        let pid = child.id().to_string();
        let sent = send_signal(&["-TERM", &pid]);
        assert!(sent.success(), "kill -TERM {pid}: {sent}");
        wait_bounded(&mut child, "terminated node")
    }

    /// Kills the node and starts it again on the same directory and the same address (gates
    /// keep the node's address in gate.toml).
    pub fn restart_after_kill9(&mut self) {
        self.kill9();
        let listen = self.addr.to_string();
        let fresh = NodeProc::spawn(self.role, &self.dir, &listen, &self.log, self.netns.clone());
        *self = fresh;
    }
}

/// Runs `kill` with these arguments (the signal and the id of a process this test started).
fn send_signal(args: &[&str]) -> ExitStatus {
    let mut child = Command::new("kill")
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn kill");
    wait_bounded(&mut child, "kill")
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `menjin district init` in `base/district`; returns that directory.
pub fn init_district(base: &Path) -> PathBuf {
    let district = base.join("district");
    menjin(&["district", "init", "--dir", p(&district)]).ok();
    district
}

/// `menjin hub create` in `dir` (listening on any loopback port; not started).
pub fn create_hub(district: &Path, dir: &Path) {
    menjin(&[
        "hub",
        "create",
        "--district",
        p(district),
        "--dir",
        p(dir),
        "--name",
        "hub",
        "--listen",
        "127.0.0.1:0",
    ])
    .ok();
}

/// `menjin node create` in `dir` for `community` (listening on any loopback port, dialling
/// `hub` if given; not started); returns its JSON answer.
pub fn create_node(
    district: &Path,
    dir: &Path,
    community: u32,
    name: &str,
    hub: Option<&str>,
) -> Value {
    let community = community.to_string();
    let mut args = vec![
        "node",
        "create",
        "--district",
        p(district),
        "--dir",
        p(dir),
        "--community",
        &community,
        "--name",
        name,
        "--listen",
        "127.0.0.1:0",
    ];
    if let Some(hub) = hub {
        args.extend(["--hub", hub]);
    }
    menjin(&args).ok()
}

/// `menjin hub enrol` of the node in `node_dir`; returns the hub's JSON answer.
pub fn enrol_at_hub(hub_dir: &Path, node_dir: &Path) -> Value {
    menjin(&[
        "hub",
        "enrol",
        "--dir",
        p(hub_dir),
        "--cert",
        p(&node_dir.join("node.cert")),
    ])
    .ok()
}

/// `menjin gate enrol` of `gate_id` at the (running) node in `node_dir`, into `dir`.
pub fn enrol_gate(node_dir: &Path, gate_id: &str, dir: &Path) {
    let out = menjin(&[
        "gate",
        "enrol",
        "--node-dir",
        p(node_dir),
        "--gate-id",
        gate_id,
        "--dir",
        p(dir),
    ])
    .ok();
    assert!(
        out["done"].as_str().is_some_and(|m| m.contains(gate_id)),
        "{out}"
    );
}

/// `menjin declare` at the node in `node_dir` of resident number `serial` (cleared, in
/// building 1, door 101); returns the code text.
pub fn declare_resident(node_dir: &Path, serial: u32) -> String {
    let person = Person::new(
        "居民",
        serial.is_multiple_of(2),
        "19800101",
        serial,
        "1",
        "101",
    );
    let mut args = vec![
        "declare".to_string(),
        "--node-dir".into(),
        p(node_dir).into(),
    ];
    args.extend(person.args());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    menjin(&argv).ok()["code"]
        .as_str()
        .expect("a code")
        .to_string()
}

/// A district with one community node running, all in one temporary directory.
pub struct Community {
    // Dropped first: the node process dies before its directory is removed.
    pub node: NodeProc,
    pub district: PathBuf,
    pub node_dir: PathBuf,
    pub tmp: tempfile::TempDir,
}

impl Community {
    pub fn start() -> Community {
        let tmp = tempfile::Builder::new()
            .prefix("menjin-it-")
            .tempdir()
            .expect("temporary directory");
        let district = init_district(tmp.path());
        let node_dir = tmp.path().join("node");
        let created = create_node(&district, &node_dir, COMMUNITY, "香蜜湖社区", None);
        assert_eq!(created["community"], COMMUNITY);
        let node = NodeProc::start(&node_dir, "127.0.0.1:0", &tmp.path().join("node.log"));
        Community {
            node,
            district,
            node_dir,
            tmp,
        }
    }

    pub fn nd(&self) -> &str {
        p(&self.node_dir)
    }

    /// Enrols a gate through the CLI; returns its directory.
    pub fn enrol_gate(&self, gate_id: &str) -> PathBuf {
        let dir = self.tmp.path().join(format!("gate-{gate_id}"));
        enrol_gate(&self.node_dir, gate_id, &dir);
        dir
    }

    /// `menjin declare` with this form and extra arguments (`--by`, `--offline`, ...).
    pub fn declare(&self, person: &Person, extra: &[&str]) -> Out {
        let form = person.args();
        let mut args = vec!["declare", "--node-dir", self.nd()];
        args.extend(form.iter().map(String::as_str));
        args.extend_from_slice(extra);
        menjin(&args)
    }

    /// Declares and expects a cleared receipt; returns (holder, code).
    #[track_caller]
    pub fn declare_cleared(&self, person: &Person) -> (String, String) {
        let r = self.declare(person, &[]).ok();
        assert_eq!(r["outcome"], "cleared", "{r}");
        (
            r["holder"].as_str().expect("holder").to_string(),
            r["code"].as_str().expect("code").to_string(),
        )
    }

    /// `menjin gate check` at the gate in `gate_dir`.
    pub fn check(&self, gate_dir: &Path, code: &str, temp: &str, extra: &[&str]) -> Out {
        let mut args = vec![
            "gate",
            "check",
            "--dir",
            p(gate_dir),
            "--code",
            code,
            "--temp",
            temp,
        ];
        args.extend_from_slice(extra);
        menjin(&args)
    }

    pub fn status(&self) -> Value {
        menjin(&["node", "status", "--dir", self.nd()]).ok()
    }

    pub fn roster(&self) -> Value {
        menjin(&["roster", "--node-dir", self.nd()]).ok()
    }

    pub fn log(&self) -> Vec<Value> {
        let v = menjin(&["log", "--node-dir", self.nd(), "--limit", "1000"]).ok();
        v.as_array().expect("log is a JSON array").clone()
    }

    pub fn show(&self, holder: &str) -> Value {
        menjin(&["show", "--node-dir", self.nd(), "--holder", holder]).ok()
    }

    /// A file in the test's temporary directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
}

/// A person to declare. The ID number is made valid (region 440304, check digit computed) from
/// the birth date, the serial and the gender, so each serial gives another person.
#[derive(Clone, Debug)]
pub struct Person {
    pub name: String,
    pub male: bool,
    /// YYYYMMDD.
    pub birth: String,
    pub serial: u32,
    pub building: String,
    pub door: String,
    /// Extra form flags (`--symptoms`, `--person-type household`, ...).
    pub flags: Vec<String>,
}

impl Person {
    pub fn new(
        name: &str,
        male: bool,
        birth: &str,
        serial: u32,
        building: &str,
        door: &str,
    ) -> Person {
        Person {
            name: name.into(),
            male,
            birth: birth.into(),
            serial,
            building: building.into(),
            door: door.into(),
            flags: Vec::new(),
        }
    }

    pub fn with(mut self, flags: &[&str]) -> Person {
        self.flags.extend(flags.iter().map(|s| s.to_string()));
        self
    }

    pub fn id_number(&self) -> String {
        // The 17th digit is odd for men.
        let seq = self.serial % 500 * 2 + u32::from(self.male);
        complete_resident_id(&format!("440304{}{seq:03}", self.birth)).expect("17 digits")
    }

    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = [
            "--name",
            &self.name,
            "--gender",
            if self.male { "male" } else { "female" },
            "--doc-number",
            &self.id_number(),
            "--phone",
            "13800138000",
            "--building",
            &self.building,
            "--door",
            &self.door,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(self.flags.iter().cloned());
        a
    }

    /// The form's arguments with the value of `flag` replaced (to make one field wrong).
    pub fn args_replacing(&self, flag: &str, value: &str) -> Vec<String> {
        let mut a = self.args();
        let at = a
            .iter()
            .position(|x| x == flag)
            .unwrap_or_else(|| panic!("form has no {flag}"));
        a[at + 1] = value.to_string();
        a
    }
}

/// A small real PNG (a QR image, 116 px a side): an acceptable pass photo.
pub fn png_photo() -> Vec<u8> {
    menjin_render::qr::qr_png("PHOTO", 4).expect("png")
}

/// A multi-threaded runtime for the tests that use QUIC clients directly: its workers keep
/// the clients' connections alive between calls.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Awaits `fut`, panicking if it takes longer than [`DEADLINE`].
pub async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no result within {DEADLINE:?}"),
    }
}

/// Connects as the gate whose directory is `gate_dir` to the node at `addr`.
pub async fn gate_client(gate_dir: &Path, addr: SocketAddr) -> NodeClient {
    let gd = GateDir(gate_dir.to_path_buf());
    let cfg = gd.read_config().expect("gate.toml");
    let key = read_signing_key(&gd.key()).expect("gate.key");
    let root = menjin_proto::keys::parse_public_key_hex(&cfg.root_public_key).expect("root key");
    within(
        "gate connect",
        NodeClient::connect(addr, &key, root, Some(cfg.community)),
    )
    .await
    .expect("gate connects")
}

/// Connects as the node's console.
pub async fn console_client(node_dir: &Path, addr: SocketAddr) -> NodeClient {
    let nd = NodeDir(node_dir.to_path_buf());
    let key = read_signing_key(&nd.console_key()).expect("console.key");
    let root = read_public_key(&nd.root_pub()).expect("root.pub");
    within(
        "console connect",
        NodeClient::connect(addr, &key, root, Some(COMMUNITY)),
    )
    .await
    .expect("console connects")
}

/// What a `gate run --json` printed, one JSON value per line, without the daemon's notices
/// (online, degraded, ...): its decisions and the problems it reported, in order.
pub fn gate_run_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .filter(|v| v.get("notice").is_none())
        .collect()
}

/// The sequence numbers of a log, in order.
pub fn seqs(log: &[Value]) -> Vec<u64> {
    log.iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect()
}

/// A running `menjin --json gate run`: lines go to its standard input, its JSON lines come
/// back through a reader thread. Killed when dropped.
pub struct GateProc {
    child: Option<Child>,
    stdin: Option<std::process::ChildStdin>,
    lines: std::sync::mpsc::Receiver<Value>,
    /// Every line read so far, for failure messages.
    pub seen: Vec<Value>,
    log: PathBuf,
}

impl GateProc {
    pub fn start(gate_dir: &Path, log: &Path) -> GateProc {
        GateProc::start_with(gate_dir, log, &[])
    }

    /// As [`GateProc::start`], with more arguments to `gate run` (`--screen ADDR`).
    pub fn start_with(gate_dir: &Path, log: &Path, extra: &[&str]) -> GateProc {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("gate log file");
        let mut child = Command::new(bin())
            .args(["--json", "gate", "run", "--dir", p(gate_dir)])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("spawn menjin gate run");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("gate printed a line that is not JSON ({e}): {line}")
                });
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        GateProc {
            child: Some(child),
            stdin,
            lines: rx,
            seen: Vec::new(),
            log: log.to_path_buf(),
        }
    }

    pub fn send(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("gate stdin open");
        writeln!(stdin, "{line}").expect("write to gate");
        stdin.flush().expect("flush gate stdin");
    }

    /// The next line that satisfies `pred`, within [`DEADLINE`].
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(e) => panic!(
                    "gate: no {what} ({e}); lines so far: {:#?}\ngate log:\n{}",
                    self.seen,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ),
            }
        }
    }

    pub fn notice(&mut self, name: &str) -> Value {
        self.wait_for(&format!("notice {name}"), |v| v["notice"] == name)
    }

    /// Scans one person and returns the decision line (or the error line).
    pub fn scan(&mut self, temp: &str, code: &str) -> Value {
        self.send(&format!("{temp} {code}"));
        self.wait_for("decision", |v| {
            v.get("answer").is_some() || v.get("error").is_some()
        })
    }

    /// Closes standard input and waits for the gate to exit.
    pub fn finish(&mut self) -> ExitStatus {
        self.stdin.take();
        let mut child = self.child.take().expect("gate running");
        let status = wait_bounded(&mut child, "gate");
        while let Ok(v) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(v);
        }
        status
    }
}

impl Drop for GateProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
