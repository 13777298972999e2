//! The clerks' side: staff accounts made with `menjin staff`, the staff login (rate-limited,
//! CSRF), a paper declaration typed in with its photo, and its pass printed on one page.

use super::*;
use crate::support::{menjin, menjin_with_stdin, p};

/// `menjin --json staff ARGS` with `password` (and a newline) on standard input.
pub(super) fn staff(n: &WebNode, args: &[&str], password: Option<&str>) -> crate::support::Out {
    let mut all = vec!["--json", "staff"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--dir", p(&n.dir)]);
    let input = password.map(|pw| format!("{pw}\n"));
    menjin_with_stdin(&all, input.as_deref())
}

/// A header's value in a raw HTTP answer (first one, case-insensitive name).
pub(super) fn header<'a>(answer: &'a str, name: &str) -> Vec<&'a str> {
    let head = answer.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

pub(super) fn cookie_value<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    header(answer, "set-cookie").into_iter().find_map(|c| {
        let (k, rest) = c.split_once('=')?;
        (k == name).then(|| rest.split(';').next().unwrap_or_default())
    })
}

/// Logs in over plain HTTP (as a browser's form would): the staff session cookie, or the
/// status line of the refusal.
pub(super) fn http_login(n: &WebNode, name: &str, password: &str) -> Result<String, String> {
    let addr = n.web.to_string();
    let form = http_get(&addr, "/staff").expect("login page");
    let token = cookie_value(&form, "mj_spre")
        .expect("token cookie")
        .to_string();
    let body = format!(
        "csrf={token}&name={}&password={}",
        urlencode(name),
        urlencode(password)
    );
    let answer = http(
        &addr,
        &format!(
            "POST /staff/login HTTP/1.1\r\nHost: {addr}\r\nSec-Fetch-Site: same-origin\r\n\
             Cookie: mj_spre={token}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .expect("an answer");
    match cookie_value(&answer, "mj_staff") {
        Some(id) if !id.is_empty() => Ok(id.to_string()),
        _ => Err(answer.lines().next().unwrap_or_default().to_string()),
    }
}

/// The status code of a GET with the staff session cookie.
pub(super) fn get_as(n: &WebNode, path: &str, session: &str) -> (u16, String) {
    let addr = n.web.to_string();
    let answer = http(
        &addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: mj_staff={session}\r\n\
             Connection: close\r\n\r\n"
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

pub(super) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn staff_accounts_are_added_refused_changed_and_removed_through_the_cli() {
    let n = WebNode::start();
    let out = staff(
        &n,
        &["add", "--name", "李文"],
        Some("correct horse battery"),
    );
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.json()["done"].as_str().unwrap().contains("李文"));
    let session = http_login(&n, "李文", "correct horse battery").expect("logs in");
    assert_eq!(get_as(&n, "/staff/home", &session).0, 200);

    // Wrong input: a clear message, exit 3 (refused by the node) or 2, and nothing changed.
    let cases: [(&[&str], Option<&str>, i32, &str); 6] = [
        (
            &["add", "--name", "李文"],
            Some("another password"),
            3,
            "exists already",
        ),
        (
            &["add", "--name", "王\u{7}五"],
            Some("correct horse battery"),
            3,
            "printable",
        ),
        (
            &["add", "--name", &"字".repeat(33)],
            Some("correct horse battery"),
            3,
            "longer than 32",
        ),
        (
            &["add", "--name", "王五"],
            Some("short"),
            3,
            "shorter than 10",
        ),
        (
            &["add", "--name", "王五"],
            None,
            2,
            "no password on standard input",
        ),
        (
            &["add", "--name", "王五", "--role", "admin"],
            Some("correct horse battery"),
            2,
            "admin",
        ),
    ];
    for (args, pw, code, says) in cases {
        let out = staff(&n, args, pw);
        assert_eq!(out.code(), code, "{args:?}: {out:?}");
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
    }
    // The password was never on the command line, and the existing account is unchanged.
    assert!(http_login(&n, "李文", "another password").is_err());
    assert!(http_login(&n, "王五", "correct horse battery").is_err());
    assert_eq!(get_as(&n, "/staff/home", &session).0, 200);
    let out = staff(
        &n,
        &["passwd", "--name", "nobody"],
        Some("correct horse battery"),
    );
    assert_eq!(out.code(), 3, "{out:?}");
    assert!(
        out.stderr.contains("no staff member named"),
        "{}",
        out.stderr
    );

    // A new password: the old one no longer opens, and the open session has ended.
    let out = staff(
        &n,
        &["passwd", "--name", "李文"],
        Some("a brand new secret"),
    );
    assert_eq!(out.code(), 0, "{out:?}");
    let (status, answer) = get_as(&n, "/staff/home", &session);
    assert_eq!(status, 303, "{answer}");
    assert_eq!(header(&answer, "location"), ["/staff"]);
    assert!(http_login(&n, "李文", "correct horse battery").is_err());
    let session = http_login(&n, "李文", "a brand new secret").expect("the new password");
    assert_eq!(get_as(&n, "/staff/home", &session).0, 200);

    // Removed: the session ends and the login is refused.
    let out = staff(&n, &["remove", "--name", "李文"], None);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(get_as(&n, "/staff/home", &session).0, 303);
    assert!(http_login(&n, "李文", "a brand new secret").is_err());
    let out = staff(&n, &["remove", "--name", "李文"], None);
    assert_eq!(out.code(), 3, "{out:?}");

    // Neither password reached the node's log; nothing about them either.
    let log = n.node.log_text();
    for secret in [
        "correct horse battery",
        "a brand new secret",
        "another password",
    ] {
        assert!(!log.contains(secret), "password in the log");
    }
    assert!(!log.contains("argon2"), "a hash in the log");
    let _ = menjin(&["node", "status", "--dir", p(&n.dir)]).ok();
}

/// A real PNG the test writes (a QR code's image: 8-bit greyscale, a few hundred pixels a
/// side), standing in for a scanned photo.
fn photo_file(dir: &Path, name: &str) -> PathBuf {
    let png = menjin_render::qr::qr_png("a stand-in for a passport photo", 8).expect("png");
    let path = dir.join(name);
    std::fs::write(&path, png).expect("photo written");
    path
}

/// Logs the browser in at `/staff`.
pub(super) async fn log_in(c: &Client, n: &WebNode, name: &str, password: &str) {
    c.goto(&n.url("/staff")).await.expect("staff login");
    fill(c, "#staff-name", name).await;
    fill(c, "#staff-password", password).await;
    // Waits for the answer: its cookie is set before the caller goes to another page
    // (argon2 takes a while on a loaded machine; a `goto` racing it found no session).
    submit(c, "#staff-enter").await;
}

/// Pages in a PDF: its page objects (`/Type /Page`, not `/Pages`).
pub(super) fn pdf_pages(pdf: &[u8]) -> usize {
    let text = String::from_utf8_lossy(pdf);
    text.match_indices("/Type /Page")
        .filter(|(i, _)| !text[i + 11..].starts_with('s'))
        .count()
}

/// Passes printed for `holder`, as the staff record page shows them.
fn printed_count(n: &WebNode, holder: &str) -> u32 {
    let session = http_login(n, "李文", "correct horse battery").expect("the clerk logs in");
    let (status, page) = get_as(n, &format!("/staff/people/{holder}"), &session);
    assert_eq!(status, 200, "{page}");
    page.split("data-printed=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .expect("the printed count")
}

#[test]
fn clerk_types_a_paper_declaration_with_a_photo_and_prints_a_one_page_pass() {
    if !browser_available() {
        return;
    }
    let mut n = WebNode::start();
    let driver = Driver::start();
    let out = staff(
        &n,
        &["add", "--name", "李文"],
        Some("correct horse battery"),
    );
    assert_eq!(out.code(), 0, "{out:?}");
    let tmp = tempfile::tempdir().unwrap();
    let photo = photo_file(tmp.path(), "photo.png");
    let person = Person::new("赵敏", false, "19450302", 5, "7", "702");
    let holder = runtime().block_on(within("the clerk's morning", async {
        let c = browser(&driver).await;
        c.set_window_size(1280, 800).await.unwrap();
        c.goto(&n.url("/staff")).await.unwrap();
        assert_eq!(text(&c, "h1").await, "工作人员登录");
        shoot(&c, "20-staff-login", None).await;
        log_in(&c, &n, "李文", "correct horse battery").await;
        assert_eq!(text(&c, "#staff-who").await, "李文 · 办事员");
        assert_eq!(c.current_url().await.unwrap().path(), "/staff/home");
        shoot(&c, "21-staff-home", None).await;

        click(&c, "#to-paper").await;
        assert_eq!(text(&c, "h1").await, "纸质申报录入");
        let input = find(&c, Locator::Css("#photo")).await;
        assert_eq!(
            input.attr("accept").await.unwrap().as_deref(),
            Some("image/jpeg,image/png,image/*")
        );
        assert!(input.attr("capture").await.unwrap().is_some());
        fill_form(&c, &person).await;
        fill(&c, "#building", "7").await;
        fill(&c, "#door", "702").await;
        find(&c, Locator::Css("#photo"))
            .await
            .send_keys(p(&photo))
            .await
            .expect("photo chosen");
        shoot(&c, "22-paper-form", None).await;
        submit(&c, "#declare-submit").await;
        let outcome = find(&c, Locator::Css("#outcome")).await;
        assert_eq!(
            outcome.attr("data-outcome").await.unwrap().as_deref(),
            Some("cleared")
        );
        assert_eq!(text(&c, "#why").await, "无需隔离或治疗");
        shoot(&c, "23-paper-result", None).await;
        let holder = find(&c, Locator::Css("#holder"))
            .await
            .attr("data-holder")
            .await
            .unwrap()
            .expect("holder id");
        assert_eq!(n.residents(), 1);
        // Recorded as a paper declaration typed in by this clerk.
        let shown = menjin(&["show", "--node-dir", p(&n.dir), "--holder", &holder]).ok();
        assert_eq!(shown["channel"], "offline", "{shown}");
        assert_eq!(shown["has_photo"], true, "{shown}");

        click(&c, "#to-pass").await;
        find(&c, Locator::Css(".pass img.photo")).await;
        assert!(text(&c, ".pass").await.contains("赵敏"));
        // The photo really shows (the CSP of this page allows its data: image).
        let loaded = c
            .execute(
                "const i = document.querySelector('.pass img.photo'); \
                 return i.complete && i.naturalWidth > 0;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(loaded, serde_json::json!(true), "the photo did not load");
        // The pass's print CSS came from its stylesheet: the pass is 93 mm wide.
        let width = c
            .execute(
                "return getComputedStyle(document.querySelector('.pass')).width;",
                vec![],
            )
            .await
            .unwrap();
        let px: f64 = width
            .as_str()
            .unwrap()
            .trim_end_matches("px")
            .parse()
            .unwrap();
        assert!((px - 93.0 / 25.4 * 96.0).abs() < 2.0, "pass width {width}");
        shoot(&c, "24-pass", None).await;
        // The Print button runs print.js: window.print is called (replaced here: a real
        // print dialog would block the headless browser).
        // Shown twice (this view and a reload), printed not once yet: a view is no print.
        c.refresh().await.unwrap();
        find(&c, Locator::Css(".pass img.photo")).await;
        assert_eq!(printed_count(&n, &holder), 0);
        c.execute(
            "window.printed = 0; window.print = () => { window.printed += 1; };",
            vec![],
        )
        .await
        .unwrap();
        click(&c, "#print").await;
        // The print is counted at the node first, then the dialog opens.
        let deadline = Instant::now() + Duration::from_secs(20);
        while c.execute("return window.printed;", vec![]).await.unwrap() != serde_json::json!(1) {
            assert!(Instant::now() < deadline, "window.print was not called");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(printed_count(&n, &holder), 1);
        // Without the form's token: refused, not counted.
        let session = http_login(&n, "李文", "correct horse battery").expect("a session");
        let path = format!("/staff/pass/{holder}/printed");
        assert_eq!(super::records::post_as(&n, &path, &session, "csrf="), 403);
        assert_eq!(printed_count(&n, &holder), 1);

        // Printed to PDF by the browser, on A6 paper and on A4: one page each.
        for (w, h) in [(10.5, 14.8), (21.0, 29.7)] {
            let config = fantoccini::wd::PrintConfiguration::builder()
                .size(fantoccini::wd::PrintSize {
                    width: w,
                    height: h,
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
            assert_eq!(pdf_pages(&pdf), 1, "{w}×{h} cm: pages");
            std::fs::write(screenshot_dir().join(format!("25-pass-{w}x{h}.pdf")), &pdf).unwrap();
        }

        // English: the staff pages switch too.
        c.goto(&n.url("/staff/declare")).await.unwrap();
        click(&c, "#lang-switch").await;
        find(&c, Locator::Css("html[lang=en]")).await;
        assert_eq!(text(&c, "h1").await, "Paper declaration");
        shoot(&c, "26-paper-form-en", None).await;

        click(&c, "#staff-logout").await;
        find(&c, Locator::Css("#staff-name")).await;
        c.goto(&n.url("/staff/home")).await.unwrap();
        find(&c, Locator::Css("#staff-name")).await;
        c.close().await.unwrap();
        holder
    }));
    let log = n.node.log_text();
    assert!(!log.contains(&person.id_number()), "ID number in the log");
    assert!(
        !log.contains("correct horse battery"),
        "password in the log"
    );
    // The clerk is recorded as the one who typed it in.
    n.node.terminate();
    let db = sled::open(n.dir.join("db")).expect("the node's database");
    let holder: menjin_proto::credential::HolderId = holder.parse().unwrap();
    let mut key = vec![b'p'];
    key.extend_from_slice(&holder.0);
    let bytes = db
        .open_tree("roster")
        .unwrap()
        .get(key)
        .unwrap()
        .expect("a person");
    let record: menjin_proto::record::PersonRecord =
        menjin_proto::wire::decode(&bytes, 1 << 20).expect("a person record");
    assert_eq!(record.staff.as_deref(), Some("李文"));
}

#[test]
fn bad_paper_forms_forged_posts_and_guessed_passwords_are_refused_and_store_nothing() {
    if !browser_available() {
        return;
    }
    let n = WebNode::start();
    let driver = Driver::start();
    let out = staff(
        &n,
        &["add", "--name", "王五", "--role", "head"],
        Some("correct horse battery"),
    );
    assert_eq!(out.code(), 0, "{out:?}");
    let tmp = tempfile::tempdir().unwrap();
    let photo = photo_file(tmp.path(), "photo.png");
    let not_a_photo = tmp.path().join("scan.png");
    std::fs::write(&not_a_photo, "姓名,证件号码\n这不是照片\n").unwrap();
    let person = Person::new("孙丽", false, "19500101", 4, "9", "901");
    runtime().block_on(within("the refusals", async {
        let c = browser(&driver).await;
        c.set_window_size(1280, 800).await.unwrap();
        log_in(&c, &n, "王五", "correct horse battery").await;
        assert_eq!(text(&c, "#staff-who").await, "王五 · 负责人");
        c.goto(&n.url("/staff/declare")).await.unwrap();

        // No door, and a text file for the photo: each error beside its field, nothing stored.
        fill_form(&c, &person).await;
        fill(&c, "#building", "9").await;
        find(&c, Locator::Css("#photo"))
            .await
            .send_keys(p(&not_a_photo))
            .await
            .unwrap();
        submit(&c, "#declare-submit").await;
        find(&c, Locator::Css("#form-errors")).await;
        let beside = find(
            &c,
            Locator::XPath("//input[@id='door']/following-sibling::p[@id='err-door']"),
        )
        .await;
        assert_eq!(beside.text().await.unwrap(), "必填");
        let beside = find(
            &c,
            Locator::XPath("//input[@id='photo']/following-sibling::p[@id='err-photo']"),
        )
        .await;
        assert_eq!(beside.text().await.unwrap(), "只能上传 JPEG 或 PNG 照片");
        // What was typed is kept (the file input cannot be, by the browser's rule).
        assert_eq!(
            find(&c, Locator::Css("#name"))
                .await
                .prop("value")
                .await
                .unwrap()
                .as_deref(),
            Some("孙丽")
        );
        shoot(&c, "27-paper-errors", Some("#err-door")).await;
        assert_eq!(n.residents(), 0, "nothing stored");

        // Every field right but no photo: refused, nothing stored.
        fill(&c, "#door", "901").await;
        submit(&c, "#declare-submit").await;
        assert_eq!(text(&c, "#err-photo").await, "请附照片");
        assert_eq!(n.residents(), 0, "nothing stored");

        // A wrong check digit with a good photo: the number's error, never the number.
        let mut wrong = person.id_number();
        let last = if wrong.ends_with('0') { '1' } else { '0' };
        wrong.pop();
        wrong.push(last);
        fill(&c, "#document_number", &wrong).await;
        find(&c, Locator::Css("#photo"))
            .await
            .send_keys(p(&photo))
            .await
            .unwrap();
        submit(&c, "#declare-submit").await;
        let e = text(&c, "#err-document_number").await;
        assert!(!e.contains(&wrong), "{e}");
        assert!(
            c.find(Locator::Css("#err-photo")).await.is_err(),
            "the photo was fine"
        );
        shoot(&c, "28-paper-bad-id", Some("#err-document_number")).await;
        assert_eq!(n.residents(), 0, "nothing stored");

        // A POST without the CSRF token: refused, nothing stored.
        fill(&c, "#document_number", &person.id_number()).await;
        find(&c, Locator::Css("#photo"))
            .await
            .send_keys(p(&photo))
            .await
            .unwrap();
        c.execute(
            "document.querySelector('form.declare input[name=csrf]').remove();\
             document.querySelector('form.declare').submit();",
            vec![],
        )
        .await
        .unwrap();
        assert_eq!(
            text(&c, "#message").await,
            "页面已过期，请返回刷新后重新提交。"
        );
        shoot(&c, "29-paper-csrf-refused", None).await;
        assert_eq!(n.residents(), 0, "nothing stored");

        // Not a pass for a holder that does not exist; not an ID number in the URL either.
        c.goto(&n.url("/staff/pass/0123456789abcdef"))
            .await
            .unwrap();
        assert!(text(&c, "#message").await.contains("no declared person"));
        c.goto(&n.url(&format!("/staff/pass/{}", person.id_number())))
            .await
            .unwrap();
        assert_eq!(text(&c, "#message").await, "没有这个持证人编号。");
        c.close().await.unwrap();

        // Wrong passwords, and a wrong name: the same message; then rate-limited, even for
        // the right password, until the window passes.
        let c = browser(&driver).await;
        c.set_window_size(1280, 800).await.unwrap();
        log_in(&c, &n, "nobody", "correct horse battery").await;
        let unknown_name = text(&c, "#staff-login-error").await;
        assert_eq!(unknown_name, "用户名或密码不正确。");
        for _ in 0..4 {
            log_in(&c, &n, "王五", "wrong password!").await;
            assert_eq!(text(&c, "#staff-login-error").await, unknown_name);
        }
        shoot(&c, "30-staff-login-wrong", None).await;
        log_in(&c, &n, "王五", "wrong password!").await;
        assert_eq!(text(&c, "#staff-login-error").await, unknown_name);
        log_in(&c, &n, "王五", "correct horse battery").await;
        assert_eq!(
            text(&c, "#staff-login-error").await,
            "尝试次数过多，请 10 分钟后再试。"
        );
        shoot(&c, "31-staff-login-limited", None).await;
        c.close().await.unwrap();
    }));

    let addr = n.web.to_string();
    // A login POST from another site: refused before any handler.
    let forged = http(
        &addr,
        &format!(
            "POST /staff/login HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://evil.example\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 9\r\n\
             Connection: close\r\n\r\nname=AAAA"
        ),
    )
    .expect("an answer");
    assert!(forged.starts_with("HTTP/1.1 403"), "{forged}");
    // Only the paper form takes a photo-sized body: 200 KB to the login form is refused.
    let big = "x".repeat(200 * 1024);
    let answer = http(
        &addr,
        &format!(
            "POST /staff/login HTTP/1.1\r\nHost: {addr}\r\nSec-Fetch-Site: same-origin\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\nname={big}",
            big.len() + 5
        ),
    );
    assert!(
        answer
            .as_deref()
            .is_none_or(|a| a.starts_with("HTTP/1.1 413")),
        "{answer:?}"
    );
    assert_eq!(n.residents(), 0, "nothing stored");
}

/// A multipart POST of the paper form with these text fields and a photo of `photo` bytes.
fn post_paper(n: &WebNode, session: &str, fields: &[(&str, &str)], photo: &[u8]) -> String {
    let addr = n.web.to_string();
    let boundary = "----menjin-test-boundary";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; \
             filename=\"p.png\"\r\nContent-Type: image/png\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(photo);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let head = format!(
        "POST /staff/declare HTTP/1.1\r\nHost: {addr}\r\nSec-Fetch-Site: same-origin\r\n\
         Cookie: mj_staff={session}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut s = TcpStream::connect(&addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) and close before the whole body is sent.
    let _ = s.write_all(&body);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    String::from_utf8_lossy(&got).to_string()
}

#[test]
fn photos_are_bounded_to_a_megabyte_on_the_paper_form_only() {
    let n = WebNode::start();
    let out = staff(
        &n,
        &["add", "--name", "李文"],
        Some("correct horse battery"),
    );
    assert_eq!(out.code(), 0, "{out:?}");
    let session = http_login(&n, "李文", "correct horse battery").expect("logs in");
    let (_, page) = get_as(&n, "/staff/declare", &session);
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the form's token")
        .to_string();
    let person = Person::new("周杰", true, "19600101", 6, "2", "201");
    let id = person.id_number();
    let fields = [
        ("csrf", csrf.as_str()),
        ("name", "周杰"),
        ("gender", "male"),
        ("document_type", "resident_id"),
        ("document_number", id.as_str()),
        ("nationality", "CN"),
        ("phone", "13800138000"),
        ("person_type", "owner"),
        ("quarantine", "none"),
        ("building", "2"),
        ("door", "201"),
        ("tenure", "owned"),
    ];
    let png = menjin_render::qr::qr_png("a stand-in for a passport photo", 8).unwrap();
    // Over the photo's 1 MB but within the route's body limit: the photo's error, beside it.
    let mut large = png.clone();
    large.resize(menjin_proto::wire::PHOTO_LEN_MAX + 10 * 1024, 0);
    let answer = post_paper(&n, &session, &fields, &large);
    assert!(
        answer.starts_with("HTTP/1.1 422"),
        "{}",
        &answer[..answer.len().min(300)]
    );
    assert!(answer.contains("照片超过 1 MB，请换一张较小的"));
    // Over the route's limit: refused whole.
    let mut huge = png.clone();
    huge.resize(2 * 1024 * 1024, 0);
    let answer = post_paper(&n, &session, &fields, &huge);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 413"),
        "{}",
        &answer[..answer.len().min(300)]
    );
    assert_eq!(n.residents(), 0, "nothing stored");
    // The same form with the real photo is stored: the test's form was right.
    let answer = post_paper(&n, &session, &fields, &png);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{}",
        &answer[..answer.len().min(300)]
    );
    assert!(answer.contains("data-outcome=\"cleared\""));
    assert_eq!(n.residents(), 1);
}
