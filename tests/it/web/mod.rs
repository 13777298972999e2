//! The pages in a real browser: a node process with `[web]`, the system
//! `chromedriver` on loopback, headless Chromium driven over WebDriver (fantoccini). Each
//! page is saved as a screenshot at phone (390×844) and desktop (1280×800) width into
//! `target/web-screenshots/`.
//!
//! Without chromium or chromedriver the tests print SKIP and pass, unless `CI` is set.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::support::{
    COMMUNITY, NodeProc, Person, create_node, enrol_gate, init_district, menjin, p, runtime,
};

pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";
pub(crate) const CHROMEDRIVER: &str = "chromedriver";
/// Chromium's first start on a busy 2-core machine takes seconds.
pub(crate) const DRIVER_START: Duration = Duration::from_secs(30);
/// A whole visit: a browser start and a dozen pages, each screenshot twice.
pub(crate) const VISIT: Duration = Duration::from_secs(180);

pub(crate) async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(VISIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not done within {VISIT:?}"),
    }
}

/// Whether the browser tests can run here; `false` (with a SKIP line) when not, and a
/// failure when `CI` says they must.
pub(crate) fn browser_available() -> bool {
    let driver = Command::new(CHROMEDRIVER)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let chromium = Path::new(CHROMIUM).exists();
    if driver && chromium {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but chromium ({chromium}) or chromedriver ({driver}) is missing"
    );
    println!("SKIP: web browser tests need {CHROMIUM} and {CHROMEDRIVER}");
    false
}

/// The system chromedriver on a free loopback port, killed when dropped.
pub(crate) struct Driver {
    child: Child,
    pub(crate) url: String,
}

impl Driver {
    pub(crate) fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(CHROMEDRIVER)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + DRIVER_START;
        while http_get(&format!("127.0.0.1:{port}"), "/status").is_none() {
            assert!(Instant::now() < deadline, "chromedriver did not answer");
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One raw HTTP/1.1 exchange on loopback: the head and the body (as long as its
/// `Content-Length`; chromedriver keeps the connection open).
pub(crate) fn http(addr: &str, request: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).ok()?;
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return Some(text);
            }
        }
        if n == 0 {
            return (!got.is_empty()).then(|| String::from_utf8_lossy(&got).to_string());
        }
    }
}

pub(crate) fn http_get(addr: &str, path: &str) -> Option<String> {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
}

/// A district, a node with `[web]` on a free loopback port, a gate; all in `tmp`.
pub(crate) struct WebNode {
    pub(crate) node: NodeProc,
    pub(crate) dir: PathBuf,
    pub(crate) web: SocketAddr,
    pub(crate) gate: PathBuf,
    _tmp: tempfile::TempDir,
}

impl WebNode {
    pub(crate) fn start() -> WebNode {
        WebNode::start_with("")
    }

    /// As [`WebNode::start`], with `web` (lines of `[web]`) in `node.toml`.
    pub(crate) fn start_with(web: &str) -> WebNode {
        let tmp = tempfile::Builder::new()
            .prefix("menjin-web-")
            .tempdir()
            .expect("temporary directory");
        let district = init_district(tmp.path());
        let dir = tmp.path().join("node");
        create_node(&district, &dir, COMMUNITY, "香蜜湖社区", None);
        let mut toml = std::fs::read_to_string(dir.join("node.toml")).unwrap();
        toml.push_str(&format!("\n[web]\nlisten = \"127.0.0.1:0\"\n{web}"));
        std::fs::write(dir.join("node.toml"), toml).unwrap();
        let node = NodeProc::start(&dir, "127.0.0.1:0", &tmp.path().join("node.log"));
        // Written before node.addr, which `start` waited for.
        let web = std::fs::read_to_string(dir.join("web.addr"))
            .expect("web.addr")
            .trim()
            .parse()
            .expect("an address");
        let gate = tmp.path().join("gate");
        enrol_gate(&dir, "north-1", &gate);
        WebNode {
            node,
            dir,
            web,
            gate,
            _tmp: tmp,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.web)
    }

    /// `menjin node household issue`: the printed code.
    pub(crate) fn issue(&self, building: &str, door: &str) -> String {
        let out = menjin(&[
            "node",
            "household",
            "issue",
            "--dir",
            p(&self.dir),
            "--building",
            building,
            "--door",
            door,
        ])
        .ok();
        out["code"].as_str().expect("a code").to_string()
    }

    pub(crate) fn residents(&self) -> u64 {
        menjin(&["node", "status", "--dir", p(&self.dir)]).ok()["residents"]
            .as_u64()
            .expect("residents")
    }
}

pub(crate) async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                     "--lang=zh-CN", "--window-size=390,844"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session")
}

pub(crate) fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/web-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

/// Saves the page at phone and desktop width (`NAME-phone.png`, `NAME-desktop.png`), the
/// element `focus` (if any) scrolled into view; leaves the window at phone size.
pub(crate) async fn shoot(c: &Client, name: &str, focus: Option<&str>) {
    for (w, h, suffix) in [(1280, 800, "desktop"), (390, 844, "phone")] {
        c.set_window_size(w, h).await.expect("window size");
        if let Some(sel) = focus {
            c.execute(
                "document.querySelector(arguments[0]).scrollIntoView({block: 'center'});",
                vec![json!(sel)],
            )
            .await
            .expect("scroll");
        }
        let png = c.screenshot().await.expect("screenshot");
        std::fs::write(screenshot_dir().join(format!("{name}-{suffix}.png")), png)
            .expect("screenshot written");
    }
}

/// The element, waiting for it (a click that submits a form returns before the next page
/// is there).
pub(crate) async fn find(c: &Client, locator: Locator<'_>) -> fantoccini::elements::Element {
    let what = format!("{locator:?}");
    // Generous: on a loaded 2-core machine a page with a QR per member can take seconds.
    c.wait()
        .at_most(Duration::from_secs(60))
        .for_element(locator)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Clicks a button that submits a form and waits for the next page to have replaced this one
/// (an element of the same id on both pages would otherwise be read from the old one).
pub(crate) async fn submit(c: &Client, css: &str) {
    c.execute("window.__menjin_old_page = true;", vec![])
        .await
        .expect("mark the page");
    click(c, css).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let old = c
            .execute("return window.__menjin_old_page === true;", vec![])
            .await
            .map(|v| v.as_bool() == Some(true))
            .unwrap_or(true);
        if !old && c.find(Locator::Css("body")).await.is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "no new page after {css}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn text(c: &Client, css: &str) -> String {
    find(c, Locator::Css(css)).await.text().await.expect("text")
}

pub(crate) async fn fill(c: &Client, css: &str, value: &str) {
    let e = find(c, Locator::Css(css)).await;
    e.clear().await.expect("clear");
    e.send_keys(value).await.expect("typed");
}

pub(crate) async fn click(c: &Client, css: &str) {
    find(c, Locator::Css(css))
        .await
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

pub(crate) async fn enter_code(c: &Client, n: &WebNode, code: &str) {
    c.goto(&n.url("/")).await.expect("code page");
    fill(c, "#code", code).await;
    click(c, "#enter").await;
}

/// Fills the declaration form for `person` (resident ID, cleared unless told otherwise).
pub(crate) async fn fill_form(c: &Client, person: &Person) {
    fill(c, "#name", &person.name).await;
    let gender = if person.male { "male" } else { "female" };
    click(c, &format!("input[name=gender][value={gender}]")).await;
    fill(c, "#document_number", &person.id_number()).await;
    fill(c, "#phone", "13800138000").await;
    click(c, "input[name=person_type][value=owner]").await;
    click(c, "input[name=tenure][value=owned]").await;
}

mod clerk;
mod household;
mod https;
mod live;
mod office;
mod records;
mod resident;
mod screen;
