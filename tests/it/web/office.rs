//! The office's household codes and progress: a clerk prints a building's sheet of slips
//! and a code read from it opens that home; reissue and revoke behind a confirmation (revoke
//! is the head's); the progress page's bar moves after a declaration and lists the homes not
//! yet declared; bad input and forged posts change nothing.

use super::clerk::{get_as, http_login, log_in, pdf_pages, staff, urlencode};
use super::*;

const CLERK: (&str, &str) = ("王芳", "clerk password one");
const HEAD: (&str, &str) = ("陈主任", "head password two");

fn add_staff(n: &WebNode) {
    let out = staff(n, &["add", "--name", CLERK.0], Some(CLERK.1));
    assert_eq!(out.code(), 0, "{out:?}");
    let out = staff(
        n,
        &["add", "--name", HEAD.0, "--role", "head"],
        Some(HEAD.1),
    );
    assert_eq!(out.code(), 0, "{out:?}");
}

/// The undeclared doors listed for `building` on the progress page.
async fn undeclared(c: &Client, building: &str) -> Vec<String> {
    let mut out = Vec::new();
    let css = format!("[data-building='{building}'] .undeclared span");
    for e in c.find_all(Locator::Css(&css)).await.expect("doors") {
        out.push(e.text().await.unwrap());
    }
    out
}

/// The code on the slip of `door` (its groups, however the browser joins them).
async fn slip_code(c: &Client, door: &str) -> String {
    let groups = c
        .find_all(Locator::Css(&format!(
            ".slip[data-door='{door}'] .slip-code span"
        )))
        .await
        .expect("groups");
    let mut code = Vec::new();
    for g in groups {
        code.push(g.text().await.unwrap());
    }
    assert_eq!(code.len(), 4, "four groups on the slip of {door}");
    code.join("-")
}

/// Opens the home with `code` at `/` in a fresh session (a phone that has none open): its
/// home line, or the code page's error.
async fn open_home(c: &Client, n: &WebNode, code: &str) -> Result<String, String> {
    c.goto(&n.url("/")).await.expect("code page");
    c.delete_all_cookies().await.expect("cookies cleared");
    enter_code(c, n, code).await;
    let shown = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(".home-line, #login-error"))
        .await
        .expect("a page after the code");
    let text = shown.text().await.unwrap();
    if shown.attr("id").await.unwrap().as_deref() == Some("login-error") {
        Err(text)
    } else {
        Ok(text)
    }
}

async fn print_a4(c: &Client) -> Vec<u8> {
    let config = fantoccini::wd::PrintConfiguration::builder()
        .size(fantoccini::wd::PrintSize {
            width: 21.0,
            height: 29.7,
        })
        .margins(fantoccini::wd::PrintMargins {
            top: 0.0,
            bottom: 0.0,
            left: 0.0,
            right: 0.0,
        })
        .build()
        .expect("print configuration");
    let pdf = c.print(config).await.expect("printed to PDF");
    assert!(pdf.starts_with(b"%PDF"), "not a PDF");
    pdf
}

#[test]
fn clerk_prints_a_sheet_of_slips_whose_codes_open_their_homes_until_revoked() {
    if !browser_available() {
        return;
    }
    let n = WebNode::start();
    let driver = Driver::start();
    add_staff(&n);
    runtime().block_on(within("the slips", async {
        let c = browser(&driver).await;
        c.set_window_size(1280, 800).await.unwrap();
        // A resident's phone beside the clerk's PC.
        let r = browser(&driver).await;
        log_in(&c, &n, CLERK.0, CLERK.1).await;
        click(&c, "#to-homes").await;
        assert_eq!(text(&c, "h1").await, "住户码");
        // A clerk cannot revoke: the page says who can and why.
        assert!(text(&c, "#revoke-head-only").await.contains("负责人"));
        shoot(&c, "30-homes", None).await;

        fill(&c, "#building", "9").await;
        fill(&c, "#doors", "101-109, 201").await;
        submit(&c, "#slips-submit").await;
        find(&c, Locator::Css(".sheet")).await;
        let slips = c.find_all(Locator::Css(".slip")).await.unwrap();
        assert_eq!(slips.len(), 10);
        assert_eq!(c.find_all(Locator::Css(".sheet")).await.unwrap().len(), 2);
        assert!(text(&c, "#slips-summary").await.contains("10"));
        let first = slip_code(&c, "101").await;
        let second = slip_code(&c, "102").await;
        assert_ne!(first, second);
        // Neither in the URL (a POST's answer) nor cached.
        let url = c.current_url().await.unwrap();
        assert_eq!(url.path(), "/staff/homes/slips");
        assert!(url.query().is_none());
        let slip = text(&c, ".slip[data-door='101']").await;
        assert!(slip.contains("9 栋 101 室"), "{slip}");
        assert!(slip.contains(&format!("http://{}/", n.web)), "{slip}");
        shoot(&c, "31-slips", None).await;
        // Printed to PDF on A4: ten slips, eight a page, two pages.
        let pdf = print_a4(&c).await;
        assert_eq!(pdf_pages(&pdf), 2, "pages of the slips");
        std::fs::write(screenshot_dir().join("31-slips-a4.pdf"), &pdf).unwrap();

        // The code from the sheet opens that home.
        assert_eq!(
            open_home(&r, &n, &first).await.unwrap(),
            "住址：9 栋 101 室"
        );

        // Again without "reissue": 101 keeps its code, only 110 is new.
        c.goto(&n.url("/staff/homes")).await.unwrap();
        fill(&c, "#building", "9").await;
        fill(&c, "#doors", "101 110").await;
        submit(&c, "#slips-submit").await;
        find(&c, Locator::Css(".sheet")).await;
        assert_eq!(c.find_all(Locator::Css(".slip")).await.unwrap().len(), 1);
        find(&c, Locator::Css(".slip[data-door='110']")).await;
        assert!(text(&c, "#slips-kept").await.contains("101"));
        shoot(&c, "32-slips-kept", None).await;
        assert!(
            open_home(&r, &n, &first).await.is_ok(),
            "101 was left alone"
        );

        // With "reissue": a confirmation first, then a new code; the old one stops.
        c.goto(&n.url("/staff/homes")).await.unwrap();
        fill(&c, "#building", "9").await;
        fill(&c, "#doors", "101").await;
        click(&c, "#reissue").await;
        submit(&c, "#slips-submit").await;
        assert!(text(&c, "#confirm-homes").await.contains("9 栋 101 室"));
        shoot(&c, "33-reissue-confirm", None).await;
        assert!(
            open_home(&r, &n, &first).await.is_ok(),
            "nothing before confirming"
        );
        click(&c, "#confirm").await;
        find(&c, Locator::Css(".slip[data-door='101'] .slip-new")).await;
        let reissued = slip_code(&c, "101").await;
        shoot(&c, "34-slip-reissued", None).await;
        assert!(
            open_home(&r, &n, &first).await.is_err(),
            "the old code is void"
        );
        assert_eq!(
            open_home(&r, &n, &reissued).await.unwrap(),
            "住址：9 栋 101 室"
        );

        // The head revokes 102, after confirming; its code no longer opens the home.
        assert!(open_home(&r, &n, &second).await.is_ok());
        c.goto(&n.url("/staff/home")).await.unwrap();
        click(&c, "#staff-logout").await;
        log_in(&c, &n, HEAD.0, HEAD.1).await;
        c.goto(&n.url("/staff/homes")).await.unwrap();
        fill(&c, "#r-building", "9").await;
        fill(&c, "#r-door", "102").await;
        shoot(&c, "35-homes-head", None).await;
        submit(&c, "#revoke-submit").await;
        assert!(text(&c, "#confirm-homes").await.contains("9 栋 102 室"));
        assert!(
            open_home(&r, &n, &second).await.is_ok(),
            "nothing before confirming"
        );
        click(&c, "#confirm").await;
        assert!(text(&c, "#revoked").await.contains("9 栋 102 室"));
        shoot(&c, "36-revoked", None).await;
        assert!(open_home(&r, &n, &second).await.is_err(), "revoked");
        // Revoking it again: nothing in force, said beside the door.
        c.goto(&n.url("/staff/homes")).await.unwrap();
        fill(&c, "#r-building", "9").await;
        fill(&c, "#r-door", "102").await;
        submit(&c, "#revoke-submit").await;
        assert_eq!(text(&c, "#err-r-door").await, "这户没有有效的住户码");
        r.close().await.unwrap();
        c.close().await.unwrap();
    }));
}

#[test]
fn progress_bar_moves_after_a_declaration_and_lists_the_homes_not_declared() {
    if !browser_available() {
        return;
    }
    let n = WebNode::start();
    let driver = Driver::start();
    add_staff(&n);
    let code = n.issue("5", "501");
    n.issue("5", "502");
    n.issue("6", "601");
    runtime().block_on(within("the progress", async {
        let c = browser(&driver).await;
        c.set_window_size(1280, 800).await.unwrap();
        log_in(&c, &n, CLERK.0, CLERK.1).await;
        click(&c, "#to-progress").await;
        assert_eq!(text(&c, "h1").await, "申报进度");
        assert!(text(&c, "#days-left").await.contains("天"));
        let bar = find(&c, Locator::Css("[data-building='5'] progress")).await;
        assert_eq!(bar.attr("value").await.unwrap().as_deref(), Some("0"));
        assert_eq!(bar.attr("max").await.unwrap().as_deref(), Some("2"));
        assert_eq!(undeclared(&c, "5").await, ["501", "502"]);
        assert_eq!(text(&c, "#total").await, "0 / 3");
        shoot(&c, "37-progress-before", None).await;

        // A resident of 501 declares on the page.
        enter_code(&c, &n, &code).await;
        click(&c, "#declare-link").await;
        fill_form(&c, &Person::new("刘洋", true, "19790812", 3, "5", "501")).await;
        submit(&c, "#declare-submit").await;
        find(&c, Locator::Css("#outcome")).await;

        c.goto(&n.url("/staff/progress")).await.unwrap();
        let bar = find(&c, Locator::Css("[data-building='5'] progress")).await;
        assert_eq!(bar.attr("value").await.unwrap().as_deref(), Some("1"));
        assert_eq!(bar.attr("max").await.unwrap().as_deref(), Some("2"));
        assert_eq!(undeclared(&c, "5").await, ["502"]);
        assert!(
            text(&c, "[data-building='5'] .figures")
                .await
                .contains("50%")
        );
        assert_eq!(undeclared(&c, "6").await, ["601"]);
        assert_eq!(text(&c, "#total").await, "1 / 3");
        // The bar is drawn by CSS: its filled part is about half its width.
        let filled = c
            .execute(
                "const p = document.querySelector(\"[data-building='5'] progress\"); \
                 return p.position;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(filled, serde_json::json!(0.5));
        shoot(&c, "38-progress-after", None).await;
        click(&c, "#lang-switch").await;
        find(&c, Locator::Css("html[lang=en]")).await;
        assert_eq!(text(&c, "h1").await, "Declaration progress");
        shoot(&c, "39-progress-en", None).await;
        c.close().await.unwrap();
    }));
}

/// The CSRF token in a staff page's form.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[at..at + 32].to_string()
}

/// POSTs a form with the staff session: the status and the answer.
fn post_as(n: &WebNode, path: &str, session: &str, body: &str) -> (u16, String) {
    post_as_host(n, &n.web.to_string(), path, session, body)
}

/// As [`post_as`], naming `host` in the Host header (a forged one, say).
fn post_as_host(n: &WebNode, host: &str, path: &str, session: &str, body: &str) -> (u16, String) {
    let addr = n.web.to_string();
    let answer = http(
        &addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nSec-Fetch-Site: same-origin\r\n\
             Cookie: mj_staff={session}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .expect("an answer");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

#[test]
fn bad_doors_too_many_doors_and_forged_posts_issue_nothing() {
    if !browser_available() {
        return;
    }
    let n = WebNode::start();
    let driver = Driver::start();
    add_staff(&n);
    let clerk = http_login(&n, CLERK.0, CLERK.1).expect("clerk session");
    let (status, page) = get_as(&n, "/staff/homes", &clerk);
    assert_eq!(status, 200);
    let csrf = csrf_of(&page);
    let nothing_issued = || {
        let (status, page) = get_as(&n, "/staff/progress", &clerk);
        assert_eq!(status, 200);
        assert!(page.contains("id=\"no-buildings\""), "something was issued");
    };
    for (building, doors, field, message) in [
        ("9", "9-10", "err-doors", "门牌号有误"),
        ("9", "101, 1000-1300", "err-doors", "门牌太多"),
        ("9", "", "err-doors", "必填"),
        ("9", "101 12345678901234567", "err-doors", "门牌号有误"),
        ("9\u{1}", "101", "err-building", "控制字符"),
        ("<script>", "1\u{0}1", "err-doors", "控制字符"),
    ] {
        let body = format!(
            "csrf={csrf}&building={}&doors={}",
            urlencode(building),
            urlencode(doors)
        );
        let (status, answer) = post_as(&n, "/staff/homes/slips", &clerk, &body);
        assert_eq!(status, 422, "{building:?} {doors:?}");
        let at = answer
            .find(&format!("id=\"{field}\""))
            .unwrap_or_else(|| panic!("{field} for {doors:?}"));
        assert!(answer[at..].contains(message), "{doors:?}: {message}");
        assert!(!answer.contains("<script>"), "unescaped");
        assert!(!answer.contains("class=\"slip\""));
        nothing_issued();
    }
    // Without the token, or with another one: refused, nothing issued.
    let (status, _) = post_as(&n, "/staff/homes/slips", &clerk, "building=9&doors=101");
    assert_eq!(status, 403);
    let (status, _) = post_as(
        &n,
        "/staff/homes/slips",
        &clerk,
        &format!("csrf={}&building=9&doors=101", "0".repeat(32)),
    );
    assert_eq!(status, 403);
    nothing_issued();
    // A clerk may not revoke, token or not.
    let code = n.issue("9", "101");
    let (status, _) = post_as(
        &n,
        "/staff/homes/revoke",
        &clerk,
        &format!("csrf={csrf}&building=9&door=101&confirm=1"),
    );
    assert_eq!(status, 403);
    let head = http_login(&n, HEAD.0, HEAD.1).expect("head session");
    let (status, _) = post_as(
        &n,
        "/staff/homes/revoke",
        &head,
        "building=9&door=101&confirm=1",
    );
    assert_eq!(status, 403, "revoke without the token");

    // In the browser: the error beside its field, the typed value kept, nothing issued.
    runtime().block_on(within("bad slips in the browser", async {
        let c = browser(&driver).await;
        c.set_window_size(1280, 800).await.unwrap();
        log_in(&c, &n, CLERK.0, CLERK.1).await;
        c.goto(&n.url("/staff/homes")).await.unwrap();
        fill(&c, "#building", "9").await;
        fill(&c, "#doors", "101, 301-299").await;
        submit(&c, "#slips-submit").await;
        assert!(text(&c, "#err-doors").await.starts_with("门牌号有误"));
        assert_eq!(
            find(&c, Locator::Css("#doors"))
                .await
                .prop("value")
                .await
                .unwrap()
                .as_deref(),
            Some("101, 301-299")
        );
        shoot(&c, "40-slips-bad-door", Some("#slips-form")).await;
        // The home issued above still opens: nothing was reissued.
        assert!(open_home(&c, &n, &code).await.is_ok());
        c.close().await.unwrap();
    }));
}

#[test]
fn slips_print_the_configured_public_url_not_the_host_the_request_names() {
    let n = WebNode::start_with("public_url = \"https://menjin.example.cn/\"\n");
    add_staff(&n);
    let clerk = http_login(&n, CLERK.0, CLERK.1).expect("clerk session");
    let (status, page) = get_as(&n, "/staff/homes", &clerk);
    assert_eq!(status, 200);
    let body = format!("csrf={}&building=9&doors=101", csrf_of(&page));
    let (status, answer) = post_as_host(&n, "evil.example", "/staff/homes/slips", &clerk, &body);
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("class=\"slip\""), "{answer}");
    assert!(
        answer.contains("<span class=\"slip-addr\">https://menjin.example.cn/</span>"),
        "{answer}"
    );
    assert!(!answer.contains("evil.example"), "the forged Host printed");
}
