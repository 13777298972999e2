//! The live part of "my declarations": an open page shows, without a reload, a code revoked
//! by a declaration made elsewhere (the CLI), a lockdown started and lifted at the node, and
//! the end of its session when the household code is revoked.

use super::*;
use crate::support::{menjin, p};

/// How long a pushed change may take to show (it is pushed within a fraction of a second;
/// the rest is a busy machine).
const SHOWN_WITHIN: Duration = Duration::from_secs(20);

/// Waits until `css` matches an element whose text contains `want` (or any element when
/// `want` is empty).
async fn shows(c: &Client, css: &str, want: &str) {
    let deadline = Instant::now() + SHOWN_WITHIN;
    loop {
        let found = match c.find(Locator::Css(css)).await {
            Ok(e) => want.is_empty() || e.text().await.unwrap_or_default().contains(want),
            Err(_) => false,
        };
        if found {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{css} with {want:?} did not show within {SHOWN_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The page has not been reloaded since the marker was set.
async fn not_reloaded(c: &Client) {
    let marker = c
        .execute("return window.menjinMarker === 7;", vec![])
        .await
        .expect("script");
    assert_eq!(marker, json!(true), "the page was reloaded");
}

#[test]
fn open_page_shows_a_revoked_code_a_lockdown_and_an_ended_home_without_a_reload() {
    if !browser_available() {
        return;
    }
    let n = WebNode::start();
    let driver = Driver::start();
    let code = n.issue("12", "1203");
    let person = Person::new("王芳", false, "19830521", 7, "12", "1203");
    runtime().block_on(within("the live page", async {
        let c = browser(&driver).await;
        enter_code(&c, &n, &code).await;
        click(&c, "#declare-link").await;
        fill_form(&c, &person).await;
        submit(&c, "#declare-submit").await;
        find(&c, Locator::Css("#outcome")).await;
        click(&c, "#to-mine").await;
        shows(&c, ".member .status", "通行码有效").await;
        // The stream is open before anything changes (htmx-ext-sse marks it).
        let deadline = Instant::now() + SHOWN_WITHIN;
        loop {
            let open = c
                .execute(
                    "var e = document.querySelector('#live');\
                     return !!(e && htmx && e['htmx-internal-data'] &&\
                       e['htmx-internal-data'].sseEventSource &&\
                       e['htmx-internal-data'].sseEventSource.readyState === 1);",
                    vec![],
                )
                .await
                .expect("script");
            if open == json!(true) {
                break;
            }
            assert!(Instant::now() < deadline, "the live stream did not open");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        c.execute("window.menjinMarker = 7;", vec![])
            .await
            .expect("marker");
        assert!(c.find(Locator::Css("#lockdown")).await.is_err());

        // Declared again elsewhere (the office's CLI) with symptoms: the code is revoked.
        let sick = person.clone().with(&["--symptoms"]);
        let mut args = vec!["declare".to_string(), "--node-dir".into(), p(&n.dir).into()];
        args.extend(sick.args());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = menjin(&argv).ok();
        assert!(out["revoked"].is_string(), "{out}");
        // Its status turns red (the code void, the review's outcome) and the live code is gone.
        shows(&c, ".member .status.bad", "").await;
        // Why, in the page's language (the node words it in English for the CLI).
        shows(&c, ".member .why", "").await;
        assert_eq!(
            text(&c, ".member .why").await,
            "申报有发热、咳嗽或气促：需要就医检查"
        );
        assert!(
            c.find(Locator::Css(".member .qr:not(.void)"))
                .await
                .is_err()
        );
        not_reloaded(&c).await;
        shoot(&c, "20-live-revoked", Some(".member")).await;

        // A lockdown decided at the node: the banner; lifted: gone.
        menjin(&[
            "node",
            "lockdown",
            "--dir",
            p(&n.dir),
            "--reason",
            "确诊病例",
            "--by",
            "张三",
        ])
        .ok();
        shows(&c, "#lockdown", "封闭").await;
        not_reloaded(&c).await;
        shoot(&c, "21-live-lockdown", None).await;
        menjin(&["node", "lift", "--dir", p(&n.dir), "--by", "张三"]).ok();
        let deadline = Instant::now() + SHOWN_WITHIN;
        while c.find(Locator::Css("#lockdown")).await.is_ok() {
            assert!(Instant::now() < deadline, "the lockdown banner stayed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        not_reloaded(&c).await;

        // The office revokes the household code: the page says the visit ended, and the
        // member's details are gone from it.
        menjin(&[
            "node",
            "household",
            "revoke",
            "--dir",
            p(&n.dir),
            "--building",
            "12",
            "--door",
            "1203",
        ])
        .ok();
        shows(&c, "#live-ended", "住户码").await;
        assert!(c.find(Locator::Css(".member")).await.is_err());
        not_reloaded(&c).await;
        shoot(&c, "22-live-ended", None).await;
        c.close().await.unwrap();
    }));
}
