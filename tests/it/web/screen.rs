//! The guard's screen at the gate: a real node, a real `menjin gate run --screen` process fed
//! through its standard input as a scanner, the screen open in Chromium at kiosk size. Each
//! decision shows without a reload: ALLOW, DENY for a fever, and with the node stopped the
//! offline banner beside the gate's own decision.

use super::*;
use crate::support::{GateProc, declare_resident};

/// How long a decision may take to show (it is pushed at once; the rest is a busy machine).
const SHOWN_WITHIN: Duration = Duration::from_secs(20);

/// Waits until `css` matches an element whose text contains `want`.
async fn shows(c: &Client, css: &str, want: &str) -> String {
    let deadline = Instant::now() + SHOWN_WITHIN;
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            let text = e.text().await.unwrap_or_default();
            if text.contains(want) {
                return text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{css} with {want:?} did not show within {SHOWN_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The screen's address, once `gate run --screen` has written it.
fn screen_addr(gate: &Path) -> String {
    let file = gate.join("screen.addr");
    let deadline = Instant::now() + SHOWN_WITHIN;
    loop {
        if let Ok(text) = std::fs::read_to_string(&file)
            && !text.trim().is_empty()
        {
            return text.trim().to_string();
        }
        assert!(Instant::now() < deadline, "no {}", file.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Saves the screen at kiosk size (1024×600) and at phone width (390×844).
async fn shoot_screen(c: &Client, name: &str) {
    for (w, h, suffix) in [(390, 844, "phone"), (1024, 600, "kiosk")] {
        c.set_window_size(w, h).await.expect("window size");
        let png = c.screenshot().await.expect("screenshot");
        std::fs::write(screenshot_dir().join(format!("{name}-{suffix}.png")), png)
            .expect("screenshot written");
    }
}

/// Waits until the page's event stream is open (htmx-ext-sse marks it on `#live`).
async fn stream_open(c: &Client) {
    let deadline = Instant::now() + SHOWN_WITHIN;
    loop {
        let open = c
            .execute(
                "var e = document.querySelector('#live');\
                 return !!(e && window.htmx && e['htmx-internal-data'] &&\
                   e['htmx-internal-data'].sseEventSource &&\
                   e['htmx-internal-data'].sseEventSource.readyState === 1);",
                vec![],
            )
            .await
            .expect("script");
        if open == json!(true) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the screen's stream did not open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn not_reloaded(c: &Client) {
    let marker = c
        .execute("return window.menjinMarker === 7;", vec![])
        .await
        .expect("script");
    assert_eq!(marker, json!(true), "the screen was reloaded");
}

#[test]
fn guard_screen_shows_allow_fever_and_the_offline_banner_as_they_happen() {
    if !browser_available() {
        return;
    }
    let mut n = WebNode::start();
    let code = declare_resident(&n.dir, 31);
    let log = n.gate.with_file_name("gate.log");
    let mut g = GateProc::start_with(&n.gate, &log, &["--screen", "127.0.0.1:0"]);
    g.notice("online");
    let addr = screen_addr(&n.gate);
    let page = http_get(&addr, "/").expect("the screen answers");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("等待扫码"), "{page}");
    assert!(
        page.contains("Content-Security-Policy: default-src 'none'")
            || page.contains("content-security-policy: default-src 'none'"),
        "{page}"
    );
    let driver = Driver::start();
    runtime().block_on(within("the guard screen", async {
        let c = browser(&driver).await;
        c.set_window_size(1024, 600).await.expect("window size");
        c.goto(&format!("http://{addr}/")).await.expect("screen");
        shows(&c, "#decision.waiting", "Waiting for a scan").await;
        stream_open(&c).await;
        c.execute("window.menjinMarker = 7;", vec![])
            .await
            .expect("marker");
        shoot_screen(&c, "screen-waiting").await;

        let d = g.scan("36.5", &code);
        assert_eq!(d["answer"]["allowed"], true, "{d}");
        shows(&c, "#decision.allow #verdict", "准许通行").await;
        shows(&c, "#decision #verdict-en", "ALLOW").await;
        shows(&c, "#reason", "码有效").await;
        shows(&c, "#holder-home", "1 栋 101 室").await;
        shows(&c, "#holder-kind", "居民").await;
        shows(&c, "#holder-name", "居民").await;
        shows(&c, "#temperature", "36.5 °C").await;
        shoot_screen(&c, "screen-allow").await;

        let d = g.scan("38.5", &code);
        assert_eq!(d["answer"]["reason"], "fever", "{d}");
        shows(&c, "#decision.deny #verdict", "禁止通行").await;
        shows(&c, "#decision #verdict-en", "DENY").await;
        shows(&c, "#reason", "体温 37.3 °C 或以上").await;
        shows(&c, "#fever", "健康点").await;
        shows(&c, "#temperature.hot", "38.5 °C").await;
        shows(&c, "#recent .recent-row.allow", "准许通行").await;
        shoot_screen(&c, "screen-fever").await;

        n.node.kill9();
        let d = g.scan("36.6", &code);
        assert_eq!(d["offline"], true, "{d}");
        shows(&c, "#offline", "节点离线").await;
        shows(&c, "#decision #alone", "本门岗独立判定").await;
        shows(&c, "#decision #temperature", "36.6 °C").await;
        not_reloaded(&c).await;
        shoot_screen(&c, "screen-offline").await;
        c.close().await.expect("browser closed");
    }));
    assert!(g.finish().success(), "gate run exits 0");
    assert!(
        !n.gate.join("screen.addr").exists(),
        "screen.addr is removed when the gate stops"
    );
}
