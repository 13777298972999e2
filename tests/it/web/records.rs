//! The office's records: finding a person (every search and record view in the audit log,
//! which only the head reads), the gate log with its filters and CSV export, and the local
//! lockdown started and lifted by the head after confirming.

use super::clerk::{get_as, header, http_login, log_in, staff};
use super::*;
use crate::support::{menjin, p};

const PASSWORD: &str = "correct horse battery";

/// A clerk 李文 and a head 王五.
fn with_staff(n: &WebNode) {
    for (name, role) in [("李文", "clerk"), ("王五", "head")] {
        let out = staff(n, &["add", "--name", name, "--role", role], Some(PASSWORD));
        assert_eq!(out.code(), 0, "{out:?}");
    }
}

/// `menjin declare` through the CLI: (holder, code).
fn declare(n: &WebNode, person: &Person) -> (String, String) {
    let mut args = vec!["declare".to_string(), "--node-dir".into(), p(&n.dir).into()];
    args.extend(person.args());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = menjin(&argv).ok();
    assert_eq!(r["outcome"], "cleared", "{r}");
    (
        r["holder"].as_str().unwrap().to_string(),
        r["code"].as_str().unwrap().to_string(),
    )
}

fn gate_check(n: &WebNode, code: &str, temp: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "gate",
        "check",
        "--dir",
        p(&n.gate),
        "--code",
        code,
        "--temp",
        temp,
    ];
    args.extend_from_slice(extra);
    menjin(&args).json()
}

/// A POST with the staff session cookie and this body (no token unless the body has one).
pub(super) fn post_as(n: &WebNode, path: &str, session: &str, body: &str) -> u16 {
    let addr = n.web.to_string();
    let answer = http(
        &addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nSec-Fetch-Site: same-origin\r\n\
             Cookie: mj_staff={session}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .expect("an answer");
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

async fn rows(c: &Client, css: &str, attr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in c.find_all(Locator::Css(css)).await.unwrap() {
        out.push(e.attr(attr).await.unwrap().unwrap_or_default());
    }
    out
}

#[test]
fn a_clerk_finds_a_person_by_name_and_door_and_every_look_is_in_the_audit_log() {
    if !browser_available() {
        return;
    }
    let n = WebNode::start();
    with_staff(&n);
    let driver = Driver::start();
    let person = Person::new("张<script>三", true, "19800101", 11, "5", "502");
    let (holder, _) = declare(&n, &person);
    let (other, _) = declare(&n, &Person::new("李四", true, "19810101", 12, "6", "601"));
    let id = person.id_number();
    runtime().block_on(within("the search", async {
        let c = browser(&driver).await;
        c.set_window_size(1280, 800).await.unwrap();
        log_in(&c, &n, "李文", PASSWORD).await;
        click(&c, "#to-people").await;
        shoot(&c, "30-people", None).await;

        // Nothing typed: the error beside the field, no results.
        submit(&c, "#search-name").await;
        assert_eq!(text(&c, "#err-name").await, "必填");
        assert!(c.find(Locator::Css("#results")).await.is_err());

        // By name: the one person, the name shown as text.
        fill(&c, "#name", "张<script>").await;
        submit(&c, "#search-name").await;
        find(&c, Locator::Css("#results")).await;
        assert_eq!(
            rows(&c, "tr.person", "data-holder").await,
            [holder.as_str()]
        );
        assert_eq!(text(&c, "tr.person a").await, "张<script>三");
        // Not in the URL: the search was posted.
        assert_eq!(c.current_url().await.unwrap().query(), None);
        shoot(&c, "31-people-by-name", Some("#results")).await;

        // By door: building 6, door 601 is the other person only; building 5 alone, ours.
        fill(&c, "#building", "6").await;
        fill(&c, "#door", "601").await;
        submit(&c, "#search-door").await;
        find(&c, Locator::Css("#results")).await;
        assert_eq!(rows(&c, "tr.person", "data-holder").await, [other.as_str()]);
        fill(&c, "#building", "5").await;
        fill(&c, "#door", "").await;
        submit(&c, "#search-door").await;
        find(&c, Locator::Css("#results")).await;
        assert_eq!(
            rows(&c, "tr.person", "data-holder").await,
            [holder.as_str()]
        );
        shoot(&c, "32-people-by-door", Some("#results")).await;

        // The record: status, code, masked number.
        click(&c, "tr.person a").await;
        find(&c, Locator::Css("#record")).await;
        assert_eq!(text(&c, "#person-name").await, "张<script>三");
        let shown = text(&c, "#number").await;
        assert_eq!(shown, format!("{}{}", "*".repeat(14), &id[14..]));
        let state = find(&c, Locator::Css("#code-state")).await;
        assert_eq!(
            state.attr("data-state").await.unwrap().as_deref(),
            Some("active")
        );
        assert_eq!(
            find(&c, Locator::Css("#photo-state"))
                .await
                .attr("data-photo")
                .await
                .unwrap()
                .as_deref(),
            Some("false")
        );
        assert!(
            !c.source().await.unwrap().contains(&id),
            "the ID number on the page"
        );
        assert!(!c.current_url().await.unwrap().as_str().contains(&id));
        shoot(&c, "33-person", None).await;
        c.close().await.unwrap();
    }));

    // The clerk may not read the audit log; a search without the form's token is refused.
    let clerk = http_login(&n, "李文", PASSWORD).expect("the clerk logs in");
    assert_eq!(get_as(&n, "/staff/audit", &clerk).0, 403);
    assert_eq!(
        post_as(&n, "/staff/people", &clerk, "by=name&name=%E6%9D%8E"),
        403
    );

    // The head reads it: three searches (one refused before it ran is not one) and a view.
    runtime().block_on(within("the audit log", async {
        let c = browser(&driver).await;
        c.set_window_size(1280, 800).await.unwrap();
        log_in(&c, &n, "王五", PASSWORD).await;
        click(&c, "#to-audit").await;
        find(&c, Locator::Css("#audit")).await;
        let mut seen = Vec::new();
        for e in c.find_all(Locator::Css("tr.entry")).await.unwrap() {
            let staff = e
                .find(Locator::Css(".staff"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let what = e
                .find(Locator::Css(".what"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let detail = e
                .find(Locator::Css(".detail"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            seen.push((staff, what, detail));
        }
        // Newest first.
        let whats: Vec<&str> = seen.iter().map(|s| s.1.as_str()).collect();
        assert_eq!(
            whats,
            ["查看档案", "按住址查找", "按住址查找", "按姓名查找"],
            "{seen:?}"
        );
        assert!(seen.iter().all(|s| s.0 == "李文"), "{seen:?}");
        assert!(seen[0].2.contains(&holder), "{seen:?}");
        assert!(seen[3].2.contains("张<script>"), "{seen:?}");
        assert!(!c.source().await.unwrap().contains(&id));
        shoot(&c, "34-audit", None).await;
        c.close().await.unwrap();
    }));
    let log = n.node.log_text();
    assert!(!log.contains(&id), "ID number in the node's log");
}

#[test]
fn the_gate_log_filters_by_decision_and_its_csv_neutralises_formulas() {
    if !browser_available() {
        return;
    }
    let n = WebNode::start();
    with_staff(&n);
    let driver = Driver::start();
    let person = Person::new("=HYPERLINK(1)", false, "19850101", 21, "7", "701");
    let (holder, code) = declare(&n, &person);
    assert_eq!(gate_check(&n, &code, "36.5", &[])["allowed"], true);
    assert_eq!(gate_check(&n, &code, "38.6", &[])["allowed"], false);
    let (_, other) = declare(&n, &Person::new("@丁", true, "19860101", 22, "7", "702"));
    assert_eq!(gate_check(&n, &other, "39.0", &[])["allowed"], false);
    runtime().block_on(within("the gate log", async {
        let c = browser(&driver).await;
        c.set_window_size(1280, 800).await.unwrap();
        log_in(&c, &n, "李文", PASSWORD).await;
        click(&c, "#to-gatelog").await;
        find(&c, Locator::Css("#events")).await;
        assert_eq!(rows(&c, "tr.event", "data-seq").await.len(), 3);
        shoot(&c, "35-gatelog", None).await;

        c.goto(&n.url("/staff/gatelog?decision=deny"))
            .await
            .unwrap();
        find(&c, Locator::Css("#events")).await;
        assert_eq!(
            rows(&c, "tr.event", "data-allowed").await,
            ["false", "false"]
        );
        // The reason in words, its code beside it for machines.
        assert_eq!(
            rows(&c, "tr.event td.why", "data-reason").await,
            ["fever", "fever"]
        );
        assert_eq!(
            text(&c, "tr.event td.why").await,
            "体温 37.3 °C 或以上，请到健康点"
        );
        // The Filter and CSV buttons side by side, at desktop and phone width.
        for (w, h) in [(1280, 800), (390, 844)] {
            c.set_window_size(w, h).await.unwrap();
            assert!(buttons_side_by_side(&c).await, "stacked at {w} px");
        }
        shoot(&c, "35-gatelog-deny", None).await;
        c.set_window_size(1280, 800).await.unwrap();
        // The filter is kept in the form.
        let chosen = find(&c, Locator::Css("#decision"))
            .await
            .prop("value")
            .await
            .unwrap();
        assert_eq!(chosen.as_deref(), Some("deny"));
        select_decision_and_filter(&c, "allow").await;
        find(&c, Locator::Css("#events")).await;
        assert_eq!(rows(&c, "tr.event", "data-allowed").await, ["true"]);
        assert!(
            c.current_url()
                .await
                .unwrap()
                .query()
                .unwrap()
                .contains("decision=allow")
        );
        assert_eq!(text(&c, "tr.event .name").await, "=HYPERLINK(1)");
        shoot(&c, "36-gatelog-allowed", None).await;

        // By holder (an id, not an ID number): the two checks of that person.
        c.goto(&n.url(&format!("/staff/gatelog?holder={holder}")))
            .await
            .unwrap();
        find(&c, Locator::Css("#events")).await;
        assert_eq!(rows(&c, "tr.event", "data-seq").await.len(), 2);

        // A bad time: its error beside the field.
        c.goto(&n.url("/staff/gatelog?from=yesterday"))
            .await
            .unwrap();
        assert_eq!(text(&c, "#err-from").await, "时间格式不正确");
        assert!(c.find(Locator::Css("#events")).await.is_err());
        shoot(&c, "37-gatelog-bad-time", None).await;
        c.close().await.unwrap();
    }));

    let clerk = http_login(&n, "李文", PASSWORD).expect("the clerk logs in");
    let (status, answer) = get_as(&n, "/staff/gatelog.csv?decision=allow", &clerk);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(header(&answer, "content-type"), ["text/csv; charset=utf-8"]);
    let disposition = header(&answer, "content-disposition").join("");
    assert!(
        disposition.starts_with("attachment; filename=\"gatelog-"),
        "{disposition}"
    );
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let lines: Vec<&str> = body.trim_start_matches('\u{feff}').lines().collect();
    assert_eq!(lines.len(), 2, "a head and one row: {body}");
    assert!(lines[0].starts_with("\"序号\""), "{body}");
    assert!(lines[1].contains("\"'=HYPERLINK(1)\""), "{body}");
    assert!(!lines[1].contains(",\"=HYPERLINK"), "{body}");
    assert!(lines[1].contains(&holder), "{body}");
    assert!(
        !body.contains(&person.id_number()),
        "an ID number in the CSV"
    );
    let (_, answer) = get_as(&n, "/staff/gatelog.csv?decision=deny", &clerk);
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(body.lines().count(), 3, "a head and two rows: {body}");
    assert!(body.contains("\"'@丁\""), "{body}");
    assert!(
        body.contains("\"体温 37.3 °C 或以上，请到健康点\",\"fever\""),
        "{body}"
    );
}

/// Whether the gate log's Filter and CSV buttons sit on one line.
async fn buttons_side_by_side(c: &Client) -> bool {
    let tops = c
        .execute(
            "return ['#filter', '#csv'].map(s => \
             Math.round(document.querySelector(s).getBoundingClientRect().top));",
            vec![],
        )
        .await
        .unwrap();
    let tops = tops.as_array().cloned().unwrap_or_default();
    tops.len() == 2
        && (tops[0].as_f64().unwrap_or(0.0) - tops[1].as_f64().unwrap_or(-99.0)).abs() < 12.0
}

async fn select_decision_and_filter(c: &Client, value: &str) {
    c.execute(
        "document.querySelector('#decision').value = arguments[0];",
        vec![json!(value)],
    )
    .await
    .unwrap();
    click(c, "#filter").await;
    let want = format!("decision={value}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !c
        .current_url()
        .await
        .unwrap()
        .query()
        .is_some_and(|q| q.contains(&want))
    {
        assert!(Instant::now() < deadline, "the filtered page did not come");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn the_head_starts_and_lifts_a_local_lockdown_after_confirming_and_a_clerk_cannot() {
    if !browser_available() {
        return;
    }
    let n = WebNode::start();
    with_staff(&n);
    let driver = Driver::start();
    let (_, code) = declare(&n, &Person::new("陈静", false, "19900101", 31, "8", "801"));
    let locked = || menjin(&["node", "status", "--dir", p(&n.dir)]).ok()["locked"] == true;
    let by_car = || gate_check(&n, &code, "36.5", &["--plate", "粤B12345"]);
    let before = by_car();
    assert_ne!(before["reason"], "lockdown", "{before}");

    // A clerk: refused, and nothing changes.
    let clerk = http_login(&n, "李文", PASSWORD).expect("the clerk logs in");
    assert_eq!(get_as(&n, "/staff/lockdown", &clerk).0, 403);
    let (_, form) = get_as(&n, "/staff/home", &clerk);
    let token = form
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the clerk's form token")
        .to_string();
    let start = format!("csrf={token}&action=start&reason=x&confirm=yes");
    assert_eq!(post_as(&n, "/staff/lockdown", &clerk, &start), 403);
    assert!(!locked());
    // The head without the form's token: refused.
    let head = http_login(&n, "王五", PASSWORD).expect("the head logs in");
    assert_eq!(
        post_as(
            &n,
            "/staff/lockdown",
            &head,
            "action=start&reason=x&confirm=yes"
        ),
        403
    );
    assert!(!locked());

    runtime().block_on(within("the lockdown", async {
        let c = browser(&driver).await;
        c.set_window_size(1280, 800).await.unwrap();
        log_in(&c, &n, "王五", PASSWORD).await;
        click(&c, "#to-lockdown").await;
        let state = find(&c, Locator::Css("#lock-state")).await;
        assert_eq!(
            state.attr("data-locked").await.unwrap().as_deref(),
            Some("false")
        );
        shoot(&c, "38-lockdown", None).await;

        // Not confirmed; too long; a control character: each beside its field, not locked.
        fill(&c, "#reason", "3 栋确诊一例，街道来电").await;
        submit(&c, "#lock-submit").await;
        assert_eq!(text(&c, "#err-confirm").await, "请勾选确认");
        assert_eq!(
            find(&c, Locator::Css("#reason"))
                .await
                .prop("value")
                .await
                .unwrap()
                .as_deref(),
            Some("3 栋确诊一例，街道来电")
        );
        shoot(&c, "39-lockdown-unconfirmed", Some("#err-confirm")).await;
        assert!(!locked());
        fill(&c, "#reason", "").await;
        c.execute(
            "document.querySelector('#reason').removeAttribute('maxlength');\
             document.querySelector('#reason').value = 'x'.repeat(201);",
            vec![],
        )
        .await
        .unwrap();
        click(&c, "#confirm").await;
        submit(&c, "#lock-submit").await;
        assert_eq!(text(&c, "#err-reason").await, "太长（不超过 200 字节）");
        c.execute(
            "document.querySelector('#reason').value = '确诊\\u0007一例';",
            vec![],
        )
        .await
        .unwrap();
        click(&c, "#confirm").await;
        submit(&c, "#lock-submit").await;
        assert_eq!(text(&c, "#err-reason").await, "不能含控制字符");
        assert!(!locked());

        // Confirmed: locked, by the head; a car is refused at the gate.
        fill(&c, "#reason", "3 栋确诊一例，街道来电").await;
        click(&c, "#confirm").await;
        submit(&c, "#lock-submit").await;
        let state = find(&c, Locator::Css("#lock-state[data-locked=true]")).await;
        let words = state.text().await.unwrap();
        assert!(
            words.contains("3 栋确诊一例") && words.contains("王五"),
            "{words}"
        );
        shoot(&c, "40-lockdown-on", None).await;
        assert!(locked());
        let refused = by_car();
        assert_eq!(refused["allowed"], false, "{refused}");
        assert_eq!(refused["reason"], "lockdown", "{refused}");

        // The reason and who decided in the page's words, not the node's English.
        assert!(!words.contains("decided at the node"), "{words}");
        assert_eq!(text(&c, "#lock-by").await, "决定人：王五");

        // A lift without a reason: refused beside its field, still locked.
        fill(&c, "#reason", "").await;
        click(&c, "#confirm").await;
        submit(&c, "#lock-submit").await;
        assert_eq!(text(&c, "#err-reason").await, "必填");
        find(&c, Locator::Css("#lock-state[data-locked=true]")).await;
        shoot(&c, "41-lockdown-lift-no-reason", Some("#err-reason")).await;
        assert!(locked());

        // Lifted the same way, with its reason: on the page and at the node.
        fill(&c, "#reason", "街道通知解除").await;
        click(&c, "#confirm").await;
        submit(&c, "#lock-submit").await;
        find(&c, Locator::Css("#lock-state[data-locked=false]")).await;
        assert_eq!(text(&c, "#lock-reason").await, "原因：街道通知解除");
        assert_eq!(text(&c, "#lock-by").await, "决定人：王五");
        shoot(&c, "42-lockdown-lifted", None).await;
        assert!(!locked());
        let status = menjin(&["node", "status", "--dir", p(&n.dir)]).ok();
        let why = status["lockdown_reason"].as_str().unwrap_or_default();
        assert!(
            why.contains("街道通知解除") && why.contains("王五"),
            "{status}"
        );
        let after = by_car();
        assert_ne!(after["reason"], "lockdown", "{after}");
        c.close().await.unwrap();
    }));
}
