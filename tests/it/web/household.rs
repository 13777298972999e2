//! The rest of the residents' side: a dependent declared by a relative of the same home, a
//! photo for the dependent's printed pass, a visitor invited and the consent withdrawn; each
//! code read from the page and checked at a real gate; bad input and forged members refused.

use super::*;
use crate::support::{menjin, p, png_photo};

/// `menjin gate check` of a code read from a page: allowed or not.
fn gate_allows(n: &WebNode, code: &str) -> bool {
    let out = menjin(&[
        "gate",
        "check",
        "--dir",
        p(&n.gate),
        "--code",
        code,
        "--temp",
        "36.5",
    ]);
    out.json()["allowed"] == true
}

/// A person of another home, declared at the office (`menjin declare`): their holder id.
fn declare_elsewhere(n: &WebNode, person: &Person) -> String {
    let mut args = vec!["declare".to_string(), "--node-dir".into(), p(&n.dir).into()];
    args.extend(person.args());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    menjin(&argv).ok()["holder"]
        .as_str()
        .expect("a holder")
        .to_string()
}

fn has_photo(n: &WebNode, holder: &str) -> bool {
    menjin(&["show", "--node-dir", p(&n.dir), "--holder", holder]).ok()["has_photo"] == true
}

/// The page at 360 px, the narrowest phones the residents use (`NAME-360.png`).
async fn shoot_narrow(c: &Client, name: &str) {
    c.set_window_size(360, 740).await.expect("window size");
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_dir().join(format!("{name}-360.png")), png).expect("written");
    c.set_window_size(390, 844).await.expect("window size");
}

/// Removes the form's CSRF token and submits it: the page says the form expired.
async fn post_without_token(c: &Client, form: &str) {
    c.execute(
        "var f = document.querySelector(arguments[0]);\
         f.querySelector('input[name=csrf]').remove(); f.submit();",
        vec![json!(form)],
    )
    .await
    .expect("posted");
    assert_eq!(
        text(c, "#message").await,
        "页面已过期，请返回刷新后重新提交。"
    );
}

/// Replaces the value of the first option of `select` (as a forged post would).
async fn forge_option(c: &Client, select: &str, value: &str) {
    c.execute(
        "var s = document.querySelector(arguments[0]); s.options[0].value = arguments[1]; \
         s.selectedIndex = 0;",
        vec![json!(select), json!(value)],
    )
    .await
    .expect("forged");
}

#[test]
fn relative_declares_a_dependent_and_asks_for_a_printed_pass() {
    if !browser_available() {
        return;
    }
    let n = WebNode::start();
    let driver = Driver::start();
    let code = n.issue("5", "502");
    let stranger = declare_elsewhere(&n, &Person::new("赵六", true, "19750505", 21, "6", "601"));
    let files = tempfile::tempdir().unwrap();
    runtime().block_on(within("the relative's visit", async {
        let c = browser(&driver).await;
        enter_code(&c, &n, &code).await;
        // Nobody of the home holds a code yet: no one to declare for others.
        click(&c, "#dependent-link").await;
        find(&c, Locator::Css("#message")).await;
        c.goto(&n.url("/declare")).await.unwrap();
        let parent = Person::new("陈静", false, "19850312", 11, "5", "502");
        fill_form(&c, &parent).await;
        submit(&c, "#declare-submit").await;
        find(&c, Locator::Css("#outcome")).await;
        click(&c, "#to-mine").await;
        shoot(&c, "h01-mine-actions", None).await;

        click(&c, "#dependent-link").await;
        assert_eq!(text(&c, "h1").await, "代家人申报");
        find(&c, Locator::Css("#by")).await;
        shoot(&c, "h02-dependent-form", None).await;

        // No name: the error beside the field, nothing stored.
        let child = Person::new("陈小宇", true, "20180304", 12, "5", "502");
        fill_form(&c, &child).await;
        click(&c, "input[name=person_type][value=household]").await;
        fill(&c, "#name", "").await;
        submit(&c, "#declare-submit").await;
        let beside = find(
            &c,
            Locator::XPath("//input[@id='name']/following-sibling::p[@id='err-name']"),
        )
        .await;
        assert_eq!(beside.text().await.unwrap(), "必填");
        shoot(&c, "h03-dependent-errors", Some("#err-name")).await;
        assert_eq!(n.residents(), 2, "nothing stored");

        // A forged `by`: a person of another home. Refused beside the field.
        fill(&c, "#name", &child.name).await;
        forge_option(&c, "#by", &stranger).await;
        submit(&c, "#declare-submit").await;
        assert_eq!(text(&c, "#err-by").await, "请选择本户持有效通行码的成员");
        shoot(&c, "h04-dependent-forged-by", Some("#err-by")).await;
        assert_eq!(n.residents(), 2, "nothing stored");

        // The dependent, declared by the parent: cleared, their code on the page.
        submit(&c, "#declare-submit").await;
        let outcome = find(&c, Locator::Css("#outcome")).await;
        assert_eq!(
            outcome.attr("data-outcome").await.unwrap().as_deref(),
            Some("cleared")
        );
        let child_code = find(&c, Locator::Css(".qr"))
            .await
            .attr("data-code")
            .await
            .unwrap()
            .expect("data-code");
        click(&c, "#to-mine").await;
        // On "my declarations" (the result page may still be there a moment).
        find(&c, Locator::Css("#declare-link")).await;
        let card = find(&c, Locator::Css(".member:has(.tag)")).await;
        let holder = card.attr("data-holder").await.unwrap().expect("holder");
        let on_page = find(&c, Locator::Css(".member:has(.tag) .qr"))
            .await
            .attr("data-code")
            .await
            .unwrap();
        assert_eq!(on_page.as_deref(), Some(child_code.as_str()));
        // Two members with their QR: a page big enough to travel gzip-compressed.
        let sizes = c
            .execute(
                "const n = performance.getEntriesByType('navigation')[0]; \
                 return [n.encodedBodySize, n.decodedBodySize];",
                vec![],
            )
            .await
            .expect("navigation timing");
        let (encoded, decoded) = (sizes[0].as_u64().unwrap(), sizes[1].as_u64().unwrap());
        assert!(
            decoded > 8 * 1024 && encoded * 2 < decoded,
            "my declarations: {encoded} bytes over the wire for {decoded}"
        );
        shoot(&c, "h05-mine-dependent", Some(".member:has(.tag)")).await;
        shoot_narrow(&c, "h05-mine-dependent").await;

        // A printed pass: a wrong file first (its error, nothing stored), then a photo.
        click(&c, &format!("#photo-{holder}")).await;
        shoot(&c, "h06-photo", None).await;
        shoot_narrow(&c, "h06-photo").await;
        // A photo posted without the form's token: refused, nothing stored.
        let good = files.path().join("face.png");
        std::fs::write(&good, png_photo()).unwrap();
        find(&c, Locator::Css("#photo"))
            .await
            .send_keys(good.to_str().unwrap())
            .await
            .unwrap();
        post_without_token(&c, "form[action='/my/photo']").await;
        assert!(!has_photo(&n, &holder), "nothing stored");
        c.back().await.unwrap();
        c.refresh().await.unwrap();
        let text_file = files.path().join("notes.txt");
        std::fs::write(&text_file, "not a photo").unwrap();
        find(&c, Locator::Css("#photo"))
            .await
            .send_keys(text_file.to_str().unwrap())
            .await
            .unwrap();
        submit(&c, "#photo-submit").await;
        assert_eq!(text(&c, "#err-photo").await, "只能上传 JPEG 或 PNG 照片");
        shoot(&c, "h07-photo-wrong-file", Some("#err-photo")).await;
        let big = files.path().join("big.png");
        let mut bytes = png_photo();
        bytes.resize(1024 * 1024 + 10_000, 0);
        std::fs::write(&big, bytes).unwrap();
        find(&c, Locator::Css("#photo"))
            .await
            .send_keys(big.to_str().unwrap())
            .await
            .unwrap();
        submit(&c, "#photo-submit").await;
        assert_eq!(
            text(&c, "#err-photo").await,
            "照片超过 1 MB，请换一张较小的"
        );
        assert!(!has_photo(&n, &holder), "nothing stored");
        find(&c, Locator::Css("#photo"))
            .await
            .send_keys(good.to_str().unwrap())
            .await
            .unwrap();
        submit(&c, "#photo-submit").await;
        assert!(text(&c, "#photo-done").await.contains("物业办公室领取"));
        shoot(&c, "h08-photo-done", None).await;
        assert!(has_photo(&n, &holder));
        click(&c, "#to-mine").await;
        find(&c, Locator::Css(".member:has(.tag) .photo-on-file")).await;
        // Another home's person: no photo page for them here.
        c.goto(&n.url(&format!("/my/photo?for={stranger}")))
            .await
            .unwrap();
        assert_eq!(text(&c, "#message").await, "本户没有这位成员。");
        c.close().await.unwrap();

        assert!(gate_allows(&n, &child_code), "the dependent's code passes");
    }));
    // Neither ID number in the node's log.
    let log = n.node.log_text();
    for person in [
        Person::new("陈静", false, "19850312", 11, "5", "502"),
        Person::new("陈小宇", true, "20180304", 12, "5", "502"),
    ] {
        assert!(!log.contains(&person.id_number()), "ID number in the log");
    }
}

#[test]
fn visitor_invited_on_the_page_passes_until_the_consent_is_withdrawn() {
    if !browser_available() {
        return;
    }
    let n = WebNode::start();
    let driver = Driver::start();
    let code = n.issue("8", "803");
    let stranger = declare_elsewhere(&n, &Person::new("孙七", false, "19700707", 31, "9", "901"));
    runtime().block_on(within("the host's visit", async {
        let c = browser(&driver).await;
        enter_code(&c, &n, &code).await;
        c.goto(&n.url("/my/visitors")).await.unwrap();
        find(&c, Locator::Css("#need-member")).await;
        c.goto(&n.url("/declare")).await.unwrap();
        fill_form(&c, &Person::new("刘洋", true, "19880808", 41, "8", "803")).await;
        submit(&c, "#declare-submit").await;
        find(&c, Locator::Css("#outcome")).await;

        c.goto(&n.url("/my/visitors")).await.unwrap();
        assert_eq!(text(&c, "h1").await, "访客邀请");
        shoot(&c, "h09-visitors", None).await;
        shoot_narrow(&c, "h09-visitors").await;
        fill(&c, "#visitor-name", "王五").await;
        fill(&c, "#visitor-phone", "13900000000").await;
        post_without_token(&c, "#invite").await;
        c.goto(&n.url("/my/visitors")).await.unwrap();
        assert!(
            c.find_all(Locator::Css(".invitation"))
                .await
                .unwrap()
                .is_empty()
        );

        // A control character, a phone with letters, a window over a week: each beside its
        // field; nothing stored.
        c.execute(
            "document.querySelector('#visitor-name').value = '张\\u0001三';\
             document.querySelector('#visitor-phone').value = '138abc';\
             var f = document.querySelector('#from').value;\
             var d = new Date(f + ':00Z'); d.setUTCDate(d.getUTCDate() + 8);\
             document.querySelector('#until').value = d.toISOString().slice(0, 16);",
            vec![],
        )
        .await
        .unwrap();
        submit(&c, "#invite-submit").await;
        assert_eq!(text(&c, "#err-name").await, "含有不允许的控制字符");
        assert_eq!(text(&c, "#err-phone").await, "只能包含数字、空格、+ 和 -");
        assert_eq!(
            text(&c, "#err-until").await,
            "最长 7 天；长住人员请作为居民申报"
        );
        shoot(&c, "h10-visitor-errors", Some("#err-name")).await;
        assert!(
            c.find_all(Locator::Css(".invitation"))
                .await
                .unwrap()
                .is_empty()
        );

        // A forged host of another home.
        c.goto(&n.url("/my/visitors")).await.unwrap();
        fill(&c, "#visitor-name", "<script>alert(1)</script>").await;
        fill(&c, "#visitor-phone", "139 0000 0000").await;
        forge_option(&c, "#host", &stranger).await;
        submit(&c, "#invite-submit").await;
        assert_eq!(text(&c, "#err-host").await, "请选择本户持有效通行码的成员");
        assert!(
            c.find_all(Locator::Css(".invitation"))
                .await
                .unwrap()
                .is_empty()
        );

        // The real host: the code at once, the name shown as text.
        c.goto(&n.url("/my/visitors")).await.unwrap();
        fill(&c, "#visitor-name", "<script>alert(1)</script>").await;
        fill(&c, "#visitor-phone", "139 0000 0000").await;
        submit(&c, "#invite-submit").await;
        assert_eq!(text(&c, "#visitor").await, "<script>alert(1)</script>");
        let visitor_code = find(&c, Locator::Css("#visitor-qr"))
            .await
            .attr("data-code")
            .await
            .unwrap()
            .expect("data-code");
        shoot(&c, "h11-visitor-code", None).await;
        assert!(gate_allows(&n, &visitor_code), "the visitor passes");

        click(&c, "#to-visitors").await;
        let card = find(&c, Locator::Css(".invitation[data-state=active]")).await;
        let cred = card.attr("data-cred").await.unwrap().expect("data-cred");
        click(&c, ".invitation summary").await;
        shoot(&c, "h12-visitor-list", Some(".invitation")).await;
        click(&c, &format!("#withdraw-{cred}")).await;
        assert_eq!(
            text(&c, "#visitors-banner").await,
            "已撤回同意：此访客码在门岗将被拒绝。"
        );
        find(&c, Locator::Css(".invitation[data-state=withdrawn]")).await;
        shoot(&c, "h13-visitor-withdrawn", Some(".invitation")).await;
        // In English, by the switch, back on the same page.
        click(&c, "#lang-switch").await;
        find(&c, Locator::Css("html[lang=en]")).await;
        assert_eq!(text(&c, "h1").await, "Visitors");
        assert_eq!(
            text(&c, ".invitation[data-state=withdrawn] .status").await,
            "Withdrawn"
        );
        shoot(&c, "h14-visitors-en", None).await;
        click(&c, "#lang-switch").await;
        find(&c, Locator::Css("html[lang=zh-CN]")).await;
        // Withdrawing it again (a second tab, a stale page): its error.
        c.execute(
            "var f = document.createElement('form'); f.method = 'post';\
             f.action = '/my/visitors/withdraw';\
             for (var [k, v] of [['csrf', document.querySelector('input[name=csrf]').value],\
                                 ['code', arguments[0]]]) {\
               var i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i);\
             }\
             document.body.appendChild(f); f.submit();",
            vec![json!(cred)],
        )
        .await
        .unwrap();
        find(
            &c,
            Locator::XPath("//p[@id='visitors-banner' and text()='此邀请已撤回。']"),
        )
        .await;
        c.close().await.unwrap();
        assert!(!gate_allows(&n, &visitor_code), "withdrawn: refused");
    }));
}
