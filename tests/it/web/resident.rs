//! The resident pages: a home opened with its code, a declaration, the code on the page
//! at a gate; bad input, forged posts and guessed codes.

use super::*;
use crate::support::{menjin, p};

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
        submit(&c, "#declare-submit").await;
        let outcome = find(&c, Locator::Css("#outcome")).await;
        assert_eq!(
            outcome.attr("data-outcome").await.unwrap().as_deref(),
            Some("cleared")
        );
        assert_eq!(text(&c, "#why").await, "无需隔离或治疗");
        shoot(&c, "04-result", None).await;

        click(&c, "#to-mine").await;
        find(&c, Locator::Css("#declare-link")).await;
        let qr = find(&c, Locator::Css(".member .qr")).await;
        let page_code = qr.attr("data-code").await.unwrap().expect("data-code");
        assert!(page_code.starts_with("MJ:"), "{page_code}");
        // What the browser drew scans back to the code, as a gate's camera would read it.
        let drawn = find(&c, Locator::Css(".member .qr svg"))
            .await
            .screenshot()
            .await
            .expect("the QR's pixels");
        assert_eq!(
            menjin_render::qrimage::decode_png(&drawn).expect("the drawn QR decodes"),
            page_code
        );
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
fn big_answers_travel_compressed_to_a_browser_that_accepts_it_and_small_ones_do_not() {
    let n = WebNode::start();
    let addr = n.web.to_string();
    let get = |path: &str, gzip: bool| {
        let accept = if gzip {
            "Accept-Encoding: gzip\r\n"
        } else {
            ""
        };
        http(
            &addr,
            &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n"),
        )
        .expect("an answer")
        .to_ascii_lowercase()
    };
    let length = |answer: &str| -> usize {
        answer
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    let plain = get("/assets/htmx.min.js", false);
    let packed = get("/assets/htmx.min.js", true);
    assert!(!plain.contains("content-encoding"), "{}", &plain[..300]);
    assert!(
        packed.contains("content-encoding: gzip"),
        "{}",
        &packed[..300]
    );
    assert!(length(&plain) > 50_000, "htmx is {} bytes", length(&plain));
    assert!(
        length(&packed) * 2 < length(&plain),
        "gzip: {} of {} bytes",
        length(&packed),
        length(&plain)
    );
    // A small page is sent as it is; a staff page is never compressed (it echoes the
    // request's filters beside a CSRF token: BREACH under HTTPS).
    assert!(!get("/", true).contains("content-encoding"));
    assert!(!get("/staff", true).contains("content-encoding"));
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
        submit(&c, "#declare-submit").await;
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
        submit(&c, "#declare-submit").await;
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
