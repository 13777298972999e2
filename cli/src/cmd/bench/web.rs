//! `menjin bench web`: concurrent phones against the resident pages of a node in this
//! process, over HTTP/1.1 on loopback. Each client opens homes with their household codes
//! (issued in-process through the console operation), GETs the form for its CSRF token and
//! submits declarations of new people; the figures are declarations per second, the submit's
//! p50 and p99, and the bytes over the wire of each page.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use menjin_harness::{LocalDistrict, person};
use menjin_proto::wire::{ConsoleRequest, Response};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::{COMMUNITY, identity, percentile_us};
use crate::json::figures::{BenchWeb, PageBytes};

/// Bounds that keep a mistyped command from running for hours.
pub const CLIENTS_MAX: usize = 1_000;
pub const DECLARATIONS_MAX: usize = 1_000_000;
pub const SECONDS_MAX: u64 = 3_600;
/// People declared per home before a client moves to the next home: a family (a home takes
/// up to `households::MEMBERS_MAX` = 64; "my declarations" grows by a QR of ~8 KB each).
const PER_HOME: usize = 4;
/// One request that takes longer than this is a failure, not a figure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Answers bigger than this are not pages.
const BODY_LEN_MAX: usize = 1024 * 1024;

type Http = Client<HttpConnector, Full<Bytes>>;

/// One answer: status, headers, body, and its bytes over the wire (status line, headers and
/// body as HTTP/1.1 sends them, the body compressed if the server compressed it).
struct Answer {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: String,
    wire: usize,
}

/// A phone: one keep-alive connection, its cookies.
struct Phone {
    http: Http,
    base: String,
    cookies: HashMap<String, String>,
}

impl Phone {
    fn new(addr: SocketAddr) -> Phone {
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1)
            .build_http();
        Phone {
            http,
            base: format!("http://{addr}"),
            cookies: HashMap::new(),
        }
    }

    async fn send(&mut self, method: Method, path: &str, form: Option<String>) -> Result<Answer> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            // As a phone's browser asks: the big answers come gzip-compressed, and the bytes
            // over the wire are those (their bodies are not read).
            .header(header::ACCEPT_ENCODING, "gzip");
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header(header::COOKIE, jar.join("; "));
        }
        let body = match form {
            Some(f) => {
                req = req
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    // What a browser sends with its own forms (the cross-site check).
                    .header("sec-fetch-site", "same-origin");
                Full::new(Bytes::from(f))
            }
            None => Full::new(Bytes::new()),
        };
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(req.body(body)?))
            .await
            .context("request timed out")??;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        if body.len() > BODY_LEN_MAX {
            bail!("{path}: an answer of {} bytes", body.len());
        }
        for c in parts.headers.get_all(header::SET_COOKIE) {
            let Some((kv, _)) = c.to_str()?.split_once(';') else {
                continue;
            };
            if let Some((k, v)) = kv.split_once('=') {
                if v.is_empty() {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
        let head: usize = parts
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + 2 + v.len() + 2)
            .sum::<usize>()
            + "HTTP/1.1 200 OK\r\n\r\n".len();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            wire: head + body.len(),
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// The value of the hidden `csrf` input of a page.
fn csrf(page: &str) -> Result<String> {
    let at = page
        .find("name=\"csrf\" value=\"")
        .context("no CSRF token on the page")?;
    let rest = &page[at + "name=\"csrf\" value=\"".len()..];
    Ok(rest[..rest.find('"').context("CSRF token unterminated")?].to_string())
}

/// `application/x-www-form-urlencoded` of one value.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The form a phone submits for resident `i`.
fn form(token: &str, i: usize) -> String {
    let (birth, serial) = identity(i);
    let p = person(
        &format!("居民{i}"),
        i.is_multiple_of(2),
        &birth,
        serial,
        "-",
        "-",
    );
    let gender = if i.is_multiple_of(2) {
        "male"
    } else {
        "female"
    };
    format!(
        "csrf={}&name={}&gender={gender}&document_type=resident_id&document_number={}\
         &birth_date=&nationality=CN&phone={}&person_type=owner&quarantine=none&tenure=owned\
         &underlying_conditions=",
        enc(token),
        enc(&p.name),
        enc(&p.document_number),
        enc(&p.phone)
    )
}

/// What one client measured.
#[derive(Default)]
struct Tally {
    latencies_ns: Vec<u64>,
    pages: HashMap<&'static str, usize>,
}

impl Tally {
    fn page(&mut self, name: &'static str, bytes: usize) {
        let e = self.pages.entry(name).or_default();
        *e = (*e).max(bytes);
    }
}

/// What every client shares: the node (to issue codes), the next resident number, the end.
struct Plan {
    node: Arc<menjin_community::Node>,
    next: AtomicUsize,
    homes: AtomicUsize,
    declarations: usize,
    /// With `--seconds`: the run ends then (set once every client is ready).
    timed: bool,
    until: OnceLock<Instant>,
}

impl Plan {
    /// The next resident to declare, if the run goes on.
    fn take(&self) -> Option<usize> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if self.timed {
            let over = self.until.get().is_some_and(|t| Instant::now() >= *t);
            (!over).then_some(i)
        } else {
            (i < self.declarations).then_some(i)
        }
    }

    /// A new home's household code, issued through the console operation.
    async fn home(self: &Arc<Self>) -> Result<String> {
        let h = self.homes.fetch_add(1, Ordering::Relaxed);
        let plan = self.clone();
        let req = ConsoleRequest::IssueHouseholdCode {
            building: format!("{}", 1 + h / 100),
            door: format!("{}", 101 + h % 100),
        };
        let now = crate::form::now_secs();
        match tokio::task::spawn_blocking(move || plan.node.console(req, now)).await? {
            Response::HouseholdCode { code, .. } => Ok(code),
            other => bail!("issuing a household code: {other:?}"),
        }
    }
}

async fn client(addr: SocketAddr, plan: Arc<Plan>, start: Arc<Barrier>) -> Result<Tally> {
    let mut tally = Tally::default();
    let mut first = Some(start);
    'homes: loop {
        let code = plan.home().await?;
        let mut phone = Phone::new(addr);
        let page = phone.send(Method::GET, "/", None).await?;
        tally.page("code", page.wire);
        let login = format!("csrf={}&code={}", enc(&csrf(&page.body)?), enc(&code));
        let opened = phone.send(Method::POST, "/login", Some(login)).await?;
        if opened.status != StatusCode::SEE_OTHER
            || opened.headers.get(header::LOCATION).map(|v| v.as_bytes()) != Some(b"/my")
        {
            bail!(
                "the household code did not open its home: {}",
                opened.status
            );
        }
        let page = phone.send(Method::GET, "/declare", None).await?;
        tally.page("form", page.wire);
        let token = csrf(&page.body)?;
        if let Some(barrier) = first.take() {
            barrier.wait().await;
        }
        for _ in 0..PER_HOME {
            let Some(i) = plan.take() else {
                break 'homes;
            };
            let started = Instant::now();
            let answer = phone
                .send(Method::POST, "/declare", Some(form(&token, i)))
                .await?;
            tally.latencies_ns.push(started.elapsed().as_nanos() as u64);
            if answer.status != StatusCode::OK || !answer.body.contains("data-outcome=\"cleared\"")
            {
                bail!("declaration {i} was not cleared: {}", answer.status);
            }
            tally.page("result", answer.wire);
        }
        let page = phone.send(Method::GET, "/my", None).await?;
        tally.page("mine", page.wire);
    }
    if let Some(barrier) = first.take() {
        barrier.wait().await;
    }
    Ok(tally)
}

/// The bytes over the wire of each asset the resident pages load.
async fn assets(addr: SocketAddr) -> Result<Vec<PageBytes>> {
    let mut phone = Phone::new(addr);
    let mut out = Vec::new();
    for name in ["style.css", "htmx.min.js", "sse.min.js", "clock.js"] {
        let a = phone
            .send(Method::GET, &format!("/assets/{name}"), None)
            .await?;
        if a.status != StatusCode::OK {
            bail!("asset {name}: {}", a.status);
        }
        out.push(PageBytes {
            page: format!("assets/{name}"),
            bytes: a.wire as u64,
        });
    }
    Ok(out)
}

/// The largest home the pages allow (`households::MEMBERS_MAX` members declared online),
/// declared after the timed run: "my declarations" of it is the heaviest page a resident
/// opens. Returns its bytes over the wire.
async fn full_home(addr: SocketAddr, plan: &Arc<Plan>) -> Result<usize> {
    let code = plan.home().await?;
    let mut phone = Phone::new(addr);
    let page = phone.send(Method::GET, "/", None).await?;
    let login = format!("csrf={}&code={}", enc(&csrf(&page.body)?), enc(&code));
    phone.send(Method::POST, "/login", Some(login)).await?;
    let token = csrf(&phone.send(Method::GET, "/declare", None).await?.body)?;
    for _ in 0..menjin_community::households::MEMBERS_MAX {
        let i = plan.next.fetch_add(1, Ordering::Relaxed);
        let answer = phone
            .send(Method::POST, "/declare", Some(form(&token, i)))
            .await?;
        if answer.status != StatusCode::OK {
            bail!("declaring the full home: {}", answer.status);
        }
    }
    let page = phone.send(Method::GET, "/my", None).await?;
    if page.status != StatusCode::OK {
        bail!("the full home's page: {}", page.status);
    }
    Ok(page.wire)
}

pub async fn run(
    clients: usize,
    declarations: usize,
    seconds: Option<u64>,
    json: bool,
) -> Result<ExitCode> {
    let setup = Instant::now();
    let district = LocalDistrict::new()?;
    let node = district.start_node(COMMUNITY, "网页基准社区")?;
    let web = menjin_web::WebServer::bind(node.node.clone(), "127.0.0.1:0".parse()?, None)?;
    let addr = web.local_addr()?;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(web.serve(async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));

    let asset_bytes = assets(addr).await?;

    let plan = Arc::new(Plan {
        node: node.node.clone(),
        next: AtomicUsize::new(0),
        homes: AtomicUsize::new(0),
        declarations,
        timed: seconds.is_some(),
        until: OnceLock::new(),
    });
    let barrier = Arc::new(Barrier::new(clients + 1));
    let mut set = JoinSet::new();
    for _ in 0..clients {
        set.spawn(client(addr, plan.clone(), barrier.clone()));
    }
    barrier.wait().await;
    let setup_ms = setup.elapsed().as_millis() as u64;
    let started = Instant::now();
    if let Some(s) = seconds {
        let _ = plan.until.set(started + Duration::from_secs(s));
    }
    let mut latencies = Vec::new();
    let mut pages: HashMap<&'static str, usize> = HashMap::new();
    while let Some(done) = set.join_next().await {
        let tally = done.context("client task")??;
        latencies.extend(tally.latencies_ns);
        for (k, v) in tally.pages {
            let e = pages.entry(k).or_default();
            *e = (*e).max(v);
        }
    }
    let elapsed = started.elapsed();
    let residents = node.node.status().residents;
    if residents != latencies.len() as u64 {
        bail!(
            "{} declarations answered but the node holds {residents} residents",
            latencies.len()
        );
    }
    let full = full_home(addr, &plan).await?;
    let _ = stop.send(true);
    let _ = serving.await;
    node.stop().await;
    latencies.sort_unstable();
    let mut page_bytes: Vec<PageBytes> = ["code", "form", "result", "mine"]
        .into_iter()
        .filter_map(|p| {
            pages.get(p).map(|b| PageBytes {
                page: p.to_string(),
                bytes: *b as u64,
            })
        })
        .collect();
    page_bytes.push(PageBytes {
        page: format!(
            "mine ({} members)",
            menjin_community::households::MEMBERS_MAX
        ),
        bytes: full as u64,
    });
    page_bytes.extend(asset_bytes);
    let secs = elapsed.as_secs_f64();
    let round = |x: f64| (x * 10.0).round() / 10.0;
    let figures = BenchWeb {
        clients,
        declarations: latencies.len() as u64,
        seconds: (secs * 1000.0).round() / 1000.0,
        declarations_per_s: latencies.len() as f64 / secs.max(1e-9),
        p50_us: round(percentile_us(&latencies, 50.0)),
        p99_us: round(percentile_us(&latencies, 99.0)),
        max_us: round(percentile_us(&latencies, 100.0)),
        setup_ms,
        pages: page_bytes,
    };
    let figures = BenchWeb {
        declarations_per_s: figures.declarations_per_s.round(),
        ..figures
    };
    print(&figures, json);
    Ok(ExitCode::SUCCESS)
}

fn print(f: &BenchWeb, json: bool) {
    if json {
        crate::json::print(f);
        return;
    }
    println!(
        "web: {} clients, {} declarations in {:.2} s: {:.0} declarations/s; submit p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (setup {} ms)",
        f.clients,
        f.declarations,
        f.seconds,
        f.declarations_per_s,
        f.p50_us / 1_000.0,
        f.p99_us / 1_000.0,
        f.max_us / 1_000.0,
        f.setup_ms
    );
    for p in &f.pages {
        println!("  {:<22} {:>7} bytes", p.page, p.bytes);
    }
}
