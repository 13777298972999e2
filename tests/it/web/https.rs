//! HTTPS at the node: a certificate from `menjin node web-cert`, a node process serving its
//! pages over TLS to a rustls client that trusts that certificate (and only it), the session
//! cookie `Secure`; a missing or mismatched key refused at start with `node.toml:LINE:COL`;
//! plain HTTP without them.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::support::{
    COMMUNITY, EXIT_FAILURE, NodeProc, create_node, init_district, menjin, menjin_raw,
    menjin_with_stdin, p, runtime,
};

/// A node directory with `[web]` on a free loopback port (the given extra lines in it).
fn node_dir(tmp: &std::path::Path, web: &str) -> std::path::PathBuf {
    let district = init_district(tmp);
    let dir = tmp.join("node");
    create_node(&district, &dir, COMMUNITY, "香蜜湖社区", None);
    let mut toml = std::fs::read_to_string(dir.join("node.toml")).unwrap();
    toml.push_str(&format!("\n[web]\nlisten = \"127.0.0.1:0\"\n{web}"));
    std::fs::write(dir.join("node.toml"), toml).unwrap();
    dir
}

fn web_cert(dir: &std::path::Path) {
    let out = menjin(&["node", "web-cert", "--dir", p(dir), "--name", "127.0.0.1"]).ok();
    assert_eq!(out["names"][0], "127.0.0.1", "{out}");
    let mode = std::fs::metadata(dir.join("web.key"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
}

fn web_addr(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("web.addr"))
        .expect("web.addr")
        .trim()
        .to_string()
}

/// One HTTP/1.1 exchange over TLS, trusting only `ca` (PEM): the whole answer.
async fn https(addr: &str, ca: &[u8], request: &str) -> std::io::Result<String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca) {
        roots.add(cert.expect("PEM")).expect("a root");
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").expect("a name");
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(request.as_bytes()).await?;
    let mut got = Vec::new();
    // The server closes after `Connection: close`; a TLS close_notify may be missing.
    let _ = tls.read_to_end(&mut got).await;
    Ok(String::from_utf8_lossy(&got).into_owned())
}

fn header<'a>(answer: &'a str, name: &str) -> Vec<&'a str> {
    let head = answer.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

#[test]
fn node_serves_its_pages_over_https_with_secure_cookies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = node_dir(
        tmp.path(),
        "tls_cert = \"web.crt\"\ntls_key = \"web.key\"\n",
    );
    web_cert(&dir);
    let _node = NodeProc::start(&dir, "127.0.0.1:0", &tmp.path().join("node.log"));
    let addr = web_addr(&dir);
    let ca = std::fs::read(dir.join("web.crt")).unwrap();
    let code = menjin(&[
        "node",
        "household",
        "issue",
        "--dir",
        p(&dir),
        "--building",
        "1",
        "--door",
        "101",
    ])
    .ok()["code"]
        .as_str()
        .expect("a code")
        .to_string();
    runtime().block_on(async {
        let get = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        let page = tokio::time::timeout(Duration::from_secs(20), https(&addr, &ca, &get))
            .await
            .expect("in time")
            .expect("a TLS exchange with the node's certificate");
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains("输入住户码"), "{page}");
        assert_eq!(
            header(&page, "strict-transport-security"),
            ["max-age=31536000"]
        );
        let pre = header(&page, "set-cookie");
        assert!(
            pre.iter()
                .any(|c| c.starts_with("mj_pre=") && c.contains("; Secure")),
            "{pre:?}"
        );
        let token = page
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the form's token");
        let body = format!("csrf={token}&code={code}");
        let post = format!(
            "POST /login HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Cookie: mj_pre={token}\r\nSec-Fetch-Site: same-origin\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let opened = https(&addr, &ca, &post).await.expect("login over TLS");
        assert!(opened.starts_with("HTTP/1.1 303"), "{opened}");
        let cookies = header(&opened, "set-cookie");
        let session = cookies
            .iter()
            .find(|c| c.starts_with("mj_s="))
            .expect("a session cookie");
        assert!(session.contains("; Secure"), "{session}");
        assert!(session.contains("HttpOnly"), "{session}");

        staff_cookie_is_secure(&dir, &addr, &ca).await;

        // A client that trusts another certificate is refused at the handshake.
        let (other, _) = menjin_web::tls::self_signed(&["127.0.0.1".into()], 1_796_083_200, 30)
            .expect("another certificate");
        assert!(https(&addr, other.as_bytes(), &get).await.is_err());
    });
    // Plain HTTP on the HTTPS port gets no page.
    let plain = super::http_get(&addr, "/").unwrap_or_default();
    assert!(!plain.contains("输入住户码"), "{plain}");
}

/// A clerk's login over TLS: the form's token cookie and the staff session cookie `mj_staff`
/// are `Secure`, the session also `HttpOnly` and `SameSite=Strict`.
async fn staff_cookie_is_secure(dir: &std::path::Path, addr: &str, ca: &[u8]) {
    let password = "correct horse battery";
    let add = [
        "--json",
        "staff",
        "add",
        "--name",
        "李文",
        "--role",
        "clerk",
        "--dir",
        p(dir),
    ];
    let out = menjin_with_stdin(&add, Some(&format!("{password}\n")));
    assert_eq!(out.code(), 0, "{out:?}");
    let get = format!("GET /staff HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let form = https(addr, ca, &get).await.expect("the staff login form");
    let pre = header(&form, "set-cookie");
    let pre = pre
        .iter()
        .find(|c| c.starts_with("mj_spre="))
        .expect("the form's token cookie");
    assert!(pre.contains("; Secure"), "{pre}");
    let token = pre["mj_spre=".len()..]
        .split(';')
        .next()
        .unwrap_or_default();
    let body = format!("csrf={token}&name=%E6%9D%8E%E6%96%87&password=correct+horse+battery");
    let post = format!(
        "POST /staff/login HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Cookie: mj_spre={token}\r\nSec-Fetch-Site: same-origin\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let opened = https(addr, ca, &post).await.expect("staff login over TLS");
    assert!(opened.starts_with("HTTP/1.1 303"), "{opened}");
    let cookies = header(&opened, "set-cookie");
    let session = cookies
        .iter()
        .find(|c| c.starts_with("mj_staff=") && !c.starts_with("mj_staff=;"))
        .expect("a staff session cookie");
    for want in ["; Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(session.contains(want), "{want} missing: {session}");
    }
}

#[test]
fn missing_or_mismatched_tls_files_stop_the_node_naming_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = node_dir(
        tmp.path(),
        "tls_cert = \"web.crt\"\ntls_key = \"web.key\"\n",
    );
    let toml = dir.join("node.toml");
    let line_of = |key: &str| {
        std::fs::read_to_string(&toml)
            .unwrap()
            .lines()
            .position(|l| l.starts_with(key))
            .expect("the key's line")
            + 1
    };
    let run = || menjin_raw(&["node", "run", "--dir", p(&dir), "--listen", "127.0.0.1:0"]);
    let refused = |key: &str, want: &str| {
        let out = run();
        assert_eq!(out.code(), EXIT_FAILURE, "{out:?}");
        let prefix = format!("{}:{}:", toml.display(), line_of(key));
        assert!(
            out.stderr.contains(&prefix) && out.stderr.contains(want),
            "want `{prefix}...{want}`; stderr: {}",
            out.stderr
        );
        assert!(!dir.join("node.addr").exists());
    };
    // Neither file yet.
    refused("tls_cert", "tls_cert: cannot read");
    // A certificate, and the key of another one.
    web_cert(&dir);
    let elsewhere = tmp.path().join("other");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::copy(&toml, elsewhere.join("node.toml")).unwrap();
    web_cert(&elsewhere);
    std::fs::copy(elsewhere.join("web.key"), dir.join("web.key")).unwrap();
    refused(
        "tls_key",
        "tls_key: this key does not belong to the certificate",
    );
    // The certificate where the key should be.
    std::fs::copy(dir.join("web.crt"), dir.join("web.key")).unwrap();
    refused("tls_key", "tls_key: no PEM private key");
    // Only one of the two.
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, text.replace("tls_key = \"web.key\"\n", "")).unwrap();
    refused("tls_cert", "give tls_key with it");
}

#[test]
fn a_public_url_that_is_no_plain_address_stops_the_node_naming_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = node_dir(tmp.path(), "public_url = \"javascript:alert(1)\"\n");
    let toml = dir.join("node.toml");
    let line = std::fs::read_to_string(&toml)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("public_url"))
        .expect("the line")
        + 1;
    let out = menjin_raw(&["node", "run", "--dir", p(&dir), "--listen", "127.0.0.1:0"]);
    assert_eq!(out.code(), EXIT_FAILURE, "{out:?}");
    let want = format!("{}:{line}:", toml.display());
    assert!(
        out.stderr.contains(&want) && out.stderr.contains("public_url: must be an http"),
        "{}",
        out.stderr
    );
    assert!(!dir.join("node.addr").exists());
}

#[test]
fn without_tls_files_the_pages_are_plain_http_without_secure_cookies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = node_dir(tmp.path(), "");
    let _node = NodeProc::start(&dir, "127.0.0.1:0", &tmp.path().join("node.log"));
    let page = super::http_get(&web_addr(&dir), "/").expect("a plain HTTP answer");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let cookies = header(&page, "set-cookie");
    assert!(
        cookies.iter().any(|c| c.starts_with("mj_pre=")),
        "{cookies:?}"
    );
    assert!(cookies.iter().all(|c| !c.contains("Secure")), "{cookies:?}");
    assert!(header(&page, "strict-transport-security").is_empty());
}
