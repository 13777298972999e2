//! The resident pages in a real browser: a node process with `[web]`, the system
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

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "chromedriver";
/// Chromium's first start on a busy 2-core machine takes seconds.
const DRIVER_START: Duration = Duration::from_secs(30);
/// A whole visit: a browser start and a dozen pages, each screenshot twice.
const VISIT: Duration = Duration::from_secs(180);

async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(VISIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not done within {VISIT:?}"),
    }
}

/// Whether the browser tests can run here; `false` (with a SKIP line) when not, and a
/// failure when `CI` says they must.
fn browser_available() -> bool {
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
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
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
fn http(addr: &str, request: &str) -> Option<String> {
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

fn http_get(addr: &str, path: &str) -> Option<String> {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
}

/// A district, a node with `[web]` on a free loopback port, a gate; all in `tmp`.
struct WebNode {
    node: NodeProc,
    dir: PathBuf,
    web: SocketAddr,
    gate: PathBuf,
    _tmp: tempfile::TempDir,
}

impl WebNode {
    fn start() -> WebNode {
        let tmp = tempfile::Builder::new()
            .prefix("menjin-web-")
            .tempdir()
            .expect("temporary directory");
        let district = init_district(tmp.path());
        let dir = tmp.path().join("node");
        create_node(&district, &dir, COMMUNITY, "香蜜湖社区", None);
        let mut toml = std::fs::read_to_string(dir.join("node.toml")).unwrap();
        toml.push_str("\n[web]\nlisten = \"127.0.0.1:0\"\n");
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

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.web)
    }

    /// `menjin node household issue`: the printed code.
    fn issue(&self, building: &str, door: &str) -> String {
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

    fn residents(&self) -> u64 {
        menjin(&["node", "status", "--dir", p(&self.dir)]).ok()["residents"]
            .as_u64()
            .expect("residents")
    }
}

async fn browser(driver: &Driver) -> Client {
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

fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/web-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

/// Saves the page at phone and desktop width (`NAME-phone.png`, `NAME-desktop.png`), the
/// element `focus` (if any) scrolled into view; leaves the window at phone size.
async fn shoot(c: &Client, name: &str, focus: Option<&str>) {
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
async fn find(c: &Client, locator: Locator<'_>) -> fantoccini::elements::Element {
    let what = format!("{locator:?}");
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(locator)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

async fn text(c: &Client, css: &str) -> String {
    find(c, Locator::Css(css)).await.text().await.expect("text")
}

async fn fill(c: &Client, css: &str, value: &str) {
    let e = find(c, Locator::Css(css)).await;
    e.clear().await.expect("clear");
    e.send_keys(value).await.expect("typed");
}

async fn click(c: &Client, css: &str) {
    find(c, Locator::Css(css))
        .await
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

async fn enter_code(c: &Client, n: &WebNode, code: &str) {
    c.goto(&n.url("/")).await.expect("code page");
    fill(c, "#code", code).await;
    click(c, "#enter").await;
}

/// Fills the declaration form for `person` (resident ID, cleared unless told otherwise).
async fn fill_form(c: &Client, person: &Person) {
    fill(c, "#name", &person.name).await;
    let gender = if person.male { "male" } else { "female" };
    click(c, &format!("input[name=gender][value={gender}]")).await;
    fill(c, "#document_number", &person.id_number()).await;
    fill(c, "#phone", "13800138000").await;
    click(c, "input[name=person_type][value=owner]").await;
    click(c, "input[name=tenure][value=owned]").await;
}

#[test]
fn resident_declares_on_a_phone_and_the_code_on_the_page_passes_a_gate() {
    if !browser_available() {
        return;
    }
    let n = WebNode::start();
    let driver = Driver::start();
    let code = n.issue("12", "1203");
    runtime().block_on(within("the resident's visit", async {
        let c = browser(&driver).await;
        c.goto(&n.url("/")).await.expect("code page");
        assert_eq!(text(&c, "h1").await, "输入住户码");
        shoot(&c, "01-code", None).await;
        // Typed as a person might: lower case, spaces for dashes.
        enter_code(&c, &n, &code.to_lowercase().replace('-', " ")).await;
        assert_eq!(text(&c, ".home-line").await, "住址：12 栋 1203 室");
        assert!(c.current_url().await.unwrap().path().ends_with("/my"));
        shoot(&c, "02-mine-empty", None).await;

        click(&c, "#declare-link").await;
        let person = Person::new("王芳", false, "19830521", 7, "12", "1203");
        fill_form(&c, &person).await;
        shoot(&c, "03-declare", None).await;
        click(&c, "#declare-submit").await;
        let outcome = find(&c, Locator::Css("#outcome")).await;
        assert_eq!(
            outcome.attr("data-outcome").await.unwrap().as_deref(),
            Some("cleared")
        );
        shoot(&c, "04-result", None).await;

        click(&c, "#to-mine").await;
        find(&c, Locator::Css("#declare-link")).await;
        let qr = find(&c, Locator::Css(".member .qr")).await;
        let page_code = qr.attr("data-code").await.unwrap().expect("data-code");
        assert!(page_code.starts_with("MJ:"), "{page_code}");
        find(&c, Locator::Css(".member .qr svg")).await;
        assert_eq!(text(&c, ".member .status").await, "通行码有效");
        // The clock runs (clock.js, no inline script): the seconds change.
        let first = text(&c, "[data-server-ms]").await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while text(&c, "[data-server-ms]").await == first {
            assert!(Instant::now() < deadline, "the clock does not run");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        shoot(&c, "05-mine-code", Some(".member")).await;
        // No ID number in any URL the resident went through, nor in the page's links.
        let source = c.source().await.unwrap();
        assert!(
            !c.current_url()
                .await
                .unwrap()
                .as_str()
                .contains(&person.id_number())
        );
        assert!(!source.contains(&person.id_number()));

        // English by the switch, remembered.
        click(&c, "#lang-switch").await;
        find(&c, Locator::Css("html[lang=en]")).await;
        assert_eq!(text(&c, "h1").await, "My declarations");
        c.goto(&n.url("/declare")).await.unwrap();
        assert_eq!(text(&c, "h1").await, "Self-declaration");
        c.goto(&n.url("/my")).await.unwrap();
        shoot(&c, "06-mine-en", Some(".member")).await;

        // Log out: the session ends.
        click(&c, "#logout").await;
        find(&c, Locator::Css("#code")).await;
        c.goto(&n.url("/my")).await.unwrap();
        find(&c, Locator::Css("#code")).await;
        assert_eq!(c.current_url().await.unwrap().path(), "/");
        c.close().await.unwrap();

        // The code read from the page passes a real gate.
        let out = menjin(&[
            "gate",
            "check",
            "--dir",
            p(&n.gate),
            "--code",
            &page_code,
            "--temp",
            "36.5",
        ]);
        assert_eq!(out.code(), 0, "{out:?}");
        assert_eq!(out.json()["allowed"], true, "{out:?}");
    }));
    // The household code, the ID number: not in the node's log.
    let log = n.node.log_text();
    assert!(!log.contains(&code), "household code in the log");
    assert!(!log.contains(&Person::new("王芳", false, "19830521", 7, "12", "1203").id_number()));
}

#[test]
fn bad_forms_forged_posts_and_guessed_codes_are_refused_and_store_nothing() {
    if !browser_available() {
        return;
    }
    let n = WebNode::start();
    let driver = Driver::start();
    let code = n.issue("3", "301");
    runtime().block_on(within("the refusals", async {
        let c = browser(&driver).await;
        enter_code(&c, &n, &code).await;
        c.goto(&n.url("/declare")).await.unwrap();

        // No person type chosen, a control character in the name: each shown beside its field.
        let person = Person::new("李四", true, "19900101", 3, "3", "301");
        fill_form(&c, &person).await;
        c.execute(
            "document.querySelector('input[name=person_type]:checked').checked = false;\
             document.querySelector('#name').value = '李\\u0007四';",
            vec![],
        )
        .await
        .unwrap();
        click(&c, "#declare-submit").await;
        find(&c, Locator::Css("#form-errors")).await;
        let beside = find(
            &c,
            Locator::XPath("//input[@id='name']/following-sibling::p[@id='err-name']"),
        )
        .await;
        assert_eq!(beside.text().await.unwrap(), "含有不允许的控制字符");
        assert_eq!(text(&c, "#err-person_type").await, "请选择一项");
        shoot(&c, "07-declare-errors", Some("#err-name")).await;
        assert_eq!(n.residents(), 0, "nothing stored");

        // A wrong check digit: the document number's error, never the number itself.
        let mut wrong = person.id_number();
        let last = if wrong.ends_with('0') { '1' } else { '0' };
        wrong.pop();
        wrong.push(last);
        fill(&c, "#name", "李四").await;
        click(&c, "input[name=person_type][value=owner]").await;
        fill(&c, "#document_number", &wrong).await;
        click(&c, "#declare-submit").await;
        let beside = find(
            &c,
            Locator::XPath(
                "//input[@id='document_number']/following-sibling::p[@id='err-document_number']",
            ),
        )
        .await;
        assert!(!beside.text().await.unwrap().contains(&wrong));
        shoot(&c, "08-declare-bad-id", Some("#err-document_number")).await;
        assert_eq!(n.residents(), 0, "nothing stored");

        // A POST without the CSRF token: refused, nothing stored.
        fill(&c, "#document_number", &person.id_number()).await;
        c.execute(
            "document.querySelector('form.declare input[name=csrf]').remove();\
             document.querySelector('form.declare').submit();",
            vec![],
        )
        .await
        .unwrap();
        let message = find(&c, Locator::Css("#message")).await;
        assert_eq!(
            message.text().await.unwrap(),
            "页面已过期，请返回刷新后重新提交。"
        );
        shoot(&c, "09-csrf-refused", None).await;
        assert_eq!(n.residents(), 0, "nothing stored");
        c.close().await.unwrap();

        // A POST from another site (the browser says so): refused before any handler.
        let addr = n.web.to_string();
        let forged = http(
            &addr,
            &format!(
                "POST /login HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://evil.example\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 9\r\n\
                 Connection: close\r\n\r\ncode=AAAA"
            ),
        )
        .expect("an answer");
        assert!(forged.starts_with("HTTP/1.1 403"), "{forged}");

        // A wrong household code, tried again and again: rate-limited.
        let c = browser(&driver).await;
        for _ in 0..10 {
            enter_code(&c, &n, "AAAA-BBBB-CCCC-DDDD").await;
            assert!(text(&c, "#login-error").await.contains("住户码不正确"));
        }
        shoot(&c, "10-code-wrong", None).await;
        enter_code(&c, &n, "AAAA-BBBB-CCCC-DDDD").await;
        assert_eq!(
            text(&c, "#login-error").await,
            "尝试次数过多，请 10 分钟后再试。"
        );
        // Even the right code, from this address, until the window passes.
        enter_code(&c, &n, &code).await;
        assert_eq!(
            text(&c, "#login-error").await,
            "尝试次数过多，请 10 分钟后再试。"
        );
        shoot(&c, "11-code-limited", None).await;
        c.close().await.unwrap();
    }));
}
