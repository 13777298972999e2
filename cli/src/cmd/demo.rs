//! `menjin demo`: a community node with two gates on loopback, about twenty people covering
//! every case of the rule, each case run through a real QUIC gate check.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Result, bail};
use menjin_proto::KeyId;
use menjin_proto::credential::{CredId, Credential, HolderId, HolderKind};
use menjin_proto::declaration::{Declaration, Gender, PersonType, Quarantine, Tenure};
use menjin_proto::idnum::{DocumentType, complete_resident_id};
use menjin_proto::wire::{CheckAnswer, Direction, Receipt, Request, Response};
use menjin_render::qr as render;
use menjin_store::files::read_signing_key;
use serde_json::json;

use crate::form::now_secs;
use menjin_harness::{LocalDistrict, LocalGate, LocalNode};

const COMMUNITY: u32 = 440_304_001;
const OTHER_COMMUNITY: u32 = 440_304_002;
const THIRD_COMMUNITY: u32 = 440_304_003;
/// How long the demo waits for the hub to hold every node's events.
const CONVERGE_SECS: u64 = 15;
const NORMAL_DC: i16 = 364;

/// A resident of the demo roster.
pub fn person(
    name: &str,
    male: bool,
    birth: &str,
    serial: u32,
    building: &str,
    door: &str,
) -> Declaration {
    // Region 440304 (Futian, Shenzhen); the 17th digit is odd for men.
    let serial = serial % 500 * 2 + u32::from(male);
    let id = complete_resident_id(&format!("440304{birth}{serial:03}")).expect("17 digits");
    Declaration {
        name: name.to_string(),
        gender: if male { Gender::Male } else { Gender::Female },
        document_type: DocumentType::ResidentId,
        document_number: id,
        birth_date: None,
        nationality: "CN".into(),
        phone: format!("1380013{serial:04}"),
        person_type: PersonType::Owner,
        quarantine: Quarantine::None,
        building: building.into(),
        door: door.into(),
        tenure: Tenure::Owned,
        travel_high_risk: false,
        contact_with_case: false,
        symptoms: false,
        underlying_conditions: String::new(),
    }
}

#[derive(Default)]
struct Tally {
    declared: u64,
    refused_declarations: u64,
    not_cleared: u64,
    codes_issued: u64,
    passes_printed: u64,
    checks: u64,
    allowed: u64,
    denied: u64,
    fever_flagged: u64,
    by_reason: BTreeMap<String, u64>,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.declared += o.declared;
        self.refused_declarations += o.refused_declarations;
        self.not_cleared += o.not_cleared;
        self.codes_issued += o.codes_issued;
        self.passes_printed += o.passes_printed;
        self.checks += o.checks;
        self.allowed += o.allowed;
        self.denied += o.denied;
        self.fever_flagged += o.fever_flagged;
        for (k, v) in &o.by_reason {
            *self.by_reason.entry(k.clone()).or_default() += v;
        }
    }
}

struct Demo {
    console: menjin_net::client::NodeClient,
    north: LocalGate,
    /// A second gate; communities with one gate use `north` for both.
    south: Option<LocalGate>,
    tally: Tally,
    json: bool,
}

impl Demo {
    fn say(&self, line: &str) {
        if !self.json {
            println!("{line}");
        }
    }

    async fn declare(&mut self, req: Request) -> Result<Option<Receipt>> {
        match self.console.request(&req).await? {
            Response::Declared(r) => {
                self.tally.declared += 1;
                if r.code.is_some() {
                    if r.cred.is_some() {
                        self.tally.codes_issued += 1;
                    }
                } else {
                    self.tally.not_cleared += 1;
                }
                Ok(Some(r))
            }
            Response::Error { message, .. } => {
                self.tally.refused_declarations += 1;
                self.say(&format!("  declaration refused: {message}"));
                Ok(None)
            }
            other => bail!("unexpected answer {other:?}"),
        }
    }

    async fn check(
        &mut self,
        what: &str,
        north: bool,
        code: &str,
        dir: Direction,
        t: i16,
        plate: Option<&str>,
    ) -> Result<CheckAnswer> {
        let gate = if north {
            &self.north
        } else {
            self.south.as_ref().unwrap_or(&self.north)
        };
        let a = gate.check(code, dir, t, plate).await?;
        self.tally.checks += 1;
        if a.allowed {
            self.tally.allowed += 1;
        } else {
            self.tally.denied += 1;
            *self
                .tally
                .by_reason
                .entry(a.reason.as_str().to_string())
                .or_default() += 1;
        }
        if a.fever {
            self.tally.fever_flagged += 1;
        }
        let who = a
            .holder
            .as_ref()
            .map(|h| format!("{} {}-{}", h.name, h.building, h.door))
            .unwrap_or_else(|| "-".into());
        self.say(&format!(
            "  {:<5} {:<3} {:<34} {:<18} {}",
            if a.allowed { "ALLOW" } else { "DENY" },
            dir.as_str(),
            what,
            a.reason.as_str(),
            who
        ));
        Ok(a)
    }
}

pub async fn run(json: bool) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let district = LocalDistrict::new()?;
    let hub = district.start_hub("福田区 Futian district hub")?;
    let node = district
        .start_linked_node(COMMUNITY, "香蜜湖社区 Xiangmihu", &hub)
        .await?;
    let others = [
        district
            .start_linked_node(OTHER_COMMUNITY, "景田社区 Jingtian", &hub)
            .await?,
        district
            .start_linked_node(THIRD_COMMUNITY, "莲花北社区 Lianhuabei", &hub)
            .await?,
    ];
    let other = others[0].dir.clone();
    let console = node.console().await?;
    let north = node.gate(&console, "north-1").await?;
    let south = node.gate(&console, "south-1").await?;
    let mut d = Demo {
        console,
        north,
        south: Some(south),
        tally: Tally::default(),
        json,
    };
    if !json {
        println!(
            "district hub on {} (QUIC); {} community nodes linked to it",
            hub.addr,
            1 + others.len()
        );
    }
    d.say(&format!(
        "district, node {COMMUNITY} on {} (QUIC), gates north-1 and south-1 enrolled",
        node.addr
    ));

    d.say("declarations:");
    let names = [
        ("李伟", true, "19800312"),
        ("王芳", false, "19830521"),
        ("张敏", false, "19751102"),
        ("刘洋", true, "19900817"),
        ("陈静", false, "19881230"),
        ("杨磊", true, "19790405"),
        ("赵丽", false, "19920611"),
        ("黄强", true, "19850923"),
        ("周婷", false, "19950114"),
        ("吴军", true, "19700228"),
        ("徐娜", false, "19870709"),
        ("孙涛", true, "19930319"),
    ];
    let mut residents = Vec::new();
    for (i, (name, male, birth)) in names.iter().enumerate() {
        let building = format!("{}", 1 + i % 3);
        let door = format!("{}0{}", 1 + i / 3, 1 + i % 2);
        let mut form = person(name, *male, birth, i as u32, &building, &door);
        if i == 3 {
            form.person_type = PersonType::ShopStaff;
            form.tenure = Tenure::Rented;
        }
        if let Some(r) = d.declare(Request::Declare { form }).await? {
            residents.push(r);
        }
    }
    d.say(&format!(
        "  {} residents declared online, {} codes",
        residents.len(),
        residents.iter().filter(|r| r.code.is_some()).count()
    ));

    let mut home = person("郑浩", true, "19910202", 40, "2", "301");
    home.travel_high_risk = true;
    let home = d.declare(Request::Declare { form: home }).await?;
    let mut contact = person("冯雪", false, "19860606", 41, "3", "302");
    contact.contact_with_case = true;
    let contact = d.declare(Request::Declare { form: contact }).await?;
    for r in [&home, &contact].into_iter().flatten() {
        d.say(&format!(
            "  {}: {} ({}), no code",
            r.name,
            r.outcome.as_str(),
            r.why
        ));
    }

    // Proxy declarations: an adult for the elderly and a child of the same home.
    let adult = residents[0].clone();
    let mut grandma = person("李秀英", false, "19400101", 42, "1", "101");
    grandma.person_type = PersonType::Household;
    let grandma = d
        .declare(Request::DeclareProxy {
            by: adult.holder,
            form: grandma,
        })
        .await?;
    let mut child = person("李小宝", true, "20160808", 43, "1", "101");
    child.person_type = PersonType::Household;
    let child = d
        .declare(Request::DeclareProxy {
            by: adult.holder,
            form: child,
        })
        .await?;
    if let (Some(g), Some(c)) = (&grandma, &child) {
        d.say(&format!(
            "  {} and {} declared by proxy by {}",
            g.name, c.name, adult.name
        ));
        // A child cannot declare for others.
        let mut cousin = person("李小妹", false, "20180303", 44, "1", "101");
        cousin.person_type = PersonType::Household;
        d.declare(Request::DeclareProxy {
            by: c.holder,
            form: cousin,
        })
        .await?;
    }

    // Offline: paper forms typed in by staff, with a photo, giving printed passes.
    let photo = render::qr_png("PHOTO PLACEHOLDER", 4)?;
    let mut passes = Vec::new();
    for (i, (name, male, birth)) in [("马桂兰", false, "19450315"), ("胡建国", true, "19480720")]
        .iter()
        .enumerate()
    {
        let form = person(name, *male, birth, 50 + i as u32, "3", "102");
        let req = Request::DeclareOffline {
            form,
            photo: photo.clone(),
            staff: "工作站 陈主任".into(),
        };
        if let Some(r) = d.declare(req).await? {
            if let Response::Pass { html, .. } = d
                .console
                .request(&Request::PrintPass { holder: r.holder })
                .await?
            {
                let path = node.dir.0.join(format!("pass-{}.html", r.holder));
                std::fs::write(&path, html)?;
                d.tally.passes_printed += 1;
                d.say(&format!(
                    "  printed pass for {} ({})",
                    r.name,
                    path.display()
                ));
            }
            passes.push(r);
        }
    }

    d.say("gate checks:");
    let all: Vec<Receipt> = residents
        .iter()
        .chain(grandma.iter())
        .chain(child.iter())
        .chain(passes.iter())
        .cloned()
        .collect();
    for (i, r) in all.iter().enumerate() {
        let Some(code) = &r.code else { continue };
        let kind = if passes.iter().any(|p| p.holder == r.holder) {
            "printed pass"
        } else {
            r.kind.as_str()
        };
        d.check(
            &format!("{} ({kind})", r.name),
            i % 2 == 0,
            code,
            Direction::In,
            NORMAL_DC,
            None,
        )
        .await?;
    }
    let r0 = residents[1].clone();
    d.check(
        &format!("{} going out", r0.name),
        false,
        r0.code.as_deref().unwrap_or_default(),
        Direction::Out,
        NORMAL_DC,
        None,
    )
    .await?;
    d.check(
        &format!("{} driving in, 粤B12345", r0.name),
        true,
        r0.code.as_deref().unwrap_or_default(),
        Direction::In,
        NORMAL_DC,
        Some("粤B12345"),
    )
    .await?;
    let r1 = residents[2].clone();
    d.check(
        &format!("{} at 38.1 °C", r1.name),
        true,
        r1.code.as_deref().unwrap_or_default(),
        Direction::In,
        381,
        None,
    )
    .await?;

    // A new declaration with symptoms revokes the earlier code.
    let r2 = residents[4].clone();
    let mut sick = person(&r2.name, false, "19881230", 4, "2", "202");
    sick.symptoms = true;
    if let Some(r) = d.declare(Request::Declare { form: sick }).await? {
        d.say(&format!(
            "  {} declared again with symptoms: {}; earlier code revoked: {}",
            r.name,
            r.outcome.as_str(),
            r.revoked.is_some()
        ));
    }
    d.check(
        &format!("{} with the revoked code", r2.name),
        true,
        r2.code.as_deref().unwrap_or_default(),
        Direction::In,
        NORMAL_DC,
        None,
    )
    .await?;

    // Visitors.
    let host = residents[5].clone();
    let now = now_secs();
    let visit = |name: &str, from: u64, until: u64| Request::InviteVisitor {
        host: host.holder,
        visitor_name: name.into(),
        visitor_phone: "13900139000".into(),
        from,
        until,
    };
    let v1 = match d
        .console
        .request(&visit("访客 钱先生", now, now + 4 * 3600))
        .await?
    {
        Response::Visitor(v) => v,
        other => bail!("invite: {other:?}"),
    };
    d.check(
        "visitor with consent",
        true,
        &v1.code,
        Direction::In,
        NORMAL_DC,
        None,
    )
    .await?;
    d.check(
        "the same visitor in a car",
        true,
        &v1.code,
        Direction::In,
        NORMAL_DC,
        Some("粤B99999"),
    )
    .await?;
    let v2 = match d
        .console
        .request(&visit("访客 孙女士", now, now + 4 * 3600))
        .await?
    {
        Response::Visitor(v) => v,
        other => bail!("invite: {other:?}"),
    };
    d.console
        .request(&Request::WithdrawConsent {
            visitor_code: v2.cred,
        })
        .await?;
    d.check(
        "visitor whose consent was withdrawn",
        false,
        &v2.code,
        Direction::In,
        NORMAL_DC,
        None,
    )
    .await?;
    let v3 = match d
        .console
        .request(&visit("访客 周先生", now + 86_400, now + 90_000))
        .await?
    {
        Response::Visitor(v) => v,
        other => bail!("invite: {other:?}"),
    };
    d.check(
        "visitor invited for tomorrow",
        false,
        &v3.code,
        Direction::In,
        NORMAL_DC,
        None,
    )
    .await?;

    // Codes that are not what they claim.
    let good = residents[6].code.clone().unwrap_or_default();
    let mut forged = menjin_proto::SignedCode::from_text(&good)?
        .as_bytes()
        .to_vec();
    let at = forged.len() - 65; // the door's last character, just before the signature
    forged[at] ^= 0x01;
    let forged_text = menjin_proto::credential::encode_text(&forged);
    d.check(
        "altered code (door changed)",
        true,
        &forged_text,
        Direction::In,
        NORMAL_DC,
        None,
    )
    .await?;
    let node_key = read_signing_key(&node.dir.key())?;
    let old = Credential {
        kind: HolderKind::Resident,
        id: CredId([7; 8]),
        community: COMMUNITY,
        holder: HolderId([7; 8]),
        valid_from: (now - 40 * 86_400) as u32,
        valid_until: (now - 10 * 86_400) as u32,
        issuer: KeyId::of(&node_key.verifying_key()),
        building: "1".into(),
        door: "101".into(),
    }
    .sign(&node_key);
    d.check(
        "code that expired 10 days ago",
        false,
        &old.to_text(),
        Direction::In,
        NORMAL_DC,
        None,
    )
    .await?;
    let other_key = read_signing_key(&other.key())?;
    let foreign = Credential {
        community: OTHER_COMMUNITY,
        id: CredId([8; 8]),
        valid_from: now as u32,
        valid_until: (now + 86_400) as u32,
        issuer: KeyId::of(&other_key.verifying_key()),
        ..old.credential.clone()
    }
    .sign(&other_key);
    d.check(
        "resident of another community",
        false,
        &foreign.to_text(),
        Direction::In,
        NORMAL_DC,
        None,
    )
    .await?;
    d.check(
        "a scan of something else",
        false,
        "HTTPS://EXAMPLE.COM/123",
        Direction::In,
        NORMAL_DC,
        None,
    )
    .await?;

    // A confirmed case: the district locks the community down from the hub.
    d.say("lockdown:");
    let hub_console = hub.console().await?;
    let lockdown = |locked: bool| Request::SetLockdown {
        community: COMMUNITY,
        locked,
        reason: if locked {
            "confirmed case in building 2".into()
        } else {
            String::new()
        },
        by: "district operator 刘".into(),
    };
    let started_lockdown = std::time::Instant::now();
    expect_done(hub_console.request(&lockdown(true)).await?)?;
    let propagation = wait_lockdown(&node, true).await?;
    let propagation_ms = started_lockdown.elapsed().as_millis() as u64;
    d.say(&format!(
        "  hub → node in {propagation_ms} ms (epoch {})",
        propagation
    ));
    let staff = residents[3].clone();
    let r7 = residents[7].clone();
    let code = |r: &Receipt| r.code.clone().unwrap_or_default();
    d.check(
        "visitor with consent, during lockdown",
        true,
        &v1.code,
        Direction::In,
        NORMAL_DC,
        None,
    )
    .await?;
    d.check(
        &format!("{} coming home", r7.name),
        true,
        &code(&r7),
        Direction::In,
        NORMAL_DC,
        None,
    )
    .await?;
    d.check(
        &format!("{} going out", r7.name),
        false,
        &code(&r7),
        Direction::Out,
        NORMAL_DC,
        None,
    )
    .await?;
    d.check(
        &format!("{} (shop staff) going out", staff.name),
        false,
        &code(&staff),
        Direction::Out,
        NORMAL_DC,
        None,
    )
    .await?;
    d.check(
        &format!("{} driving in", r7.name),
        true,
        &code(&r7),
        Direction::In,
        NORMAL_DC,
        Some("粤B54321"),
    )
    .await?;
    expect_done(hub_console.request(&lockdown(false)).await?)?;
    wait_lockdown(&node, false).await?;
    d.say("  lockdown lifted");
    d.check(
        "the visitor again, consent still in its window",
        true,
        &v1.code,
        Direction::In,
        NORMAL_DC,
        None,
    )
    .await?;
    hub_console.close().await;

    if let Response::Summary(s) = d.console.request(&Request::RosterSummary).await? {
        d.say("progress per building:");
        for b in &s.buildings {
            d.say(&format!(
                "  building {}: {} households, {} residents, {} cleared, {} codes, {} passes",
                b.building, b.households, b.residents, b.cleared, b.codes_active, b.passes_printed
            ));
        }
    }
    let Demo {
        console,
        north,
        south,
        mut tally,
        ..
    } = d;
    console.close().await;
    drop((north, south));
    for other in &others {
        let t = small_community(other, json).await?;
        tally.add(&t);
    }
    // The third community's node goes down; its gate decides alone, then uploads.
    let [second, third] = others;
    let (third, offline) = offline_gate(&district, third, &hub, json).await?;
    tally.add(&offline.tally);
    let others = [second, third];

    // Every node's gate log must reach the hub, each event exactly once.
    let nodes: Vec<&LocalNode> = std::iter::once(&node).chain(others.iter()).collect();
    let events: u64 = nodes.iter().map(|n| n.node.events_logged()).sum();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(CONVERGE_SECS);
    let (converged, hub_events) = loop {
        let status = hub.hub.status();
        let all_there = nodes.iter().all(|n| {
            status.communities.iter().any(|c| {
                c.community == n.node.config.community && c.events == n.node.events_logged()
            })
        });
        // And every replicated document (rosters, policy) has the same heads at both ends.
        let hub_heads: std::collections::BTreeMap<_, _> =
            hub.hub.replication().heads().into_iter().collect();
        let docs_equal = nodes.iter().all(|n| {
            n.node
                .wait_replica()
                .expect("replica")
                .heads()
                .iter()
                .all(|(doc, heads)| hub_heads.get(doc) == Some(heads))
        });
        if all_there && status.events == events && docs_equal {
            break (true, status.events);
        }
        if std::time::Instant::now() > deadline {
            break (false, status.events);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let hub_residents = hub.hub.replication().read(|r| {
        nodes
            .iter()
            .map(|n| r.roster(n.node.config.community).persons.len())
            .sum::<usize>()
    });
    let t = &tally;
    let summary = json!({
        "communities": nodes.len(),
        "declared": t.declared,
        "refused_declarations": t.refused_declarations,
        "not_cleared": t.not_cleared,
        "codes_issued": t.codes_issued,
        "passes_printed": t.passes_printed,
        "checks": t.checks,
        "allowed": t.allowed,
        "denied": t.denied,
        "fever_flagged": t.fever_flagged,
        "denied_by_reason": t.by_reason,
        "events_logged": events,
        "hub_events": hub_events,
        "hub_residents": hub_residents,
        "lockdown_propagation_ms": propagation_ms,
        "offline_decisions": offline.decisions,
        "uploaded_after_reconnect": offline.uploaded,
        "converged": converged,
        "elapsed_ms": started.elapsed().as_millis() as u64,
    });
    if json {
        println!("{summary}");
    } else {
        println!(
            "summary: {} communities; {} declared ({} not cleared, {} refused), {} codes, {} passes; {} checks: {} allowed, {} denied {:?}",
            nodes.len(),
            t.declared,
            t.not_cleared,
            t.refused_declarations,
            t.codes_issued,
            t.passes_printed,
            t.checks,
            t.allowed,
            t.denied,
            t.by_reason,
        );
        println!(
            "hub: {hub_events} gate events (nodes logged {events}), rosters of {hub_residents} people replicated: {}",
            if converged {
                "converged"
            } else {
                "NOT converged"
            }
        );
    }
    for n in others {
        n.stop().await;
    }
    node.stop().await;
    hub.stop().await;
    if offline.decisions != offline.uploaded {
        bail!(
            "{} offline decisions, {} uploaded after the node came back",
            offline.decisions,
            offline.uploaded
        );
    }
    if events != t.checks || !converged {
        bail!(
            "{events} events logged for {} checks; hub holds {hub_events}",
            t.checks
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn expect_done(resp: Response) -> Result<()> {
    match resp {
        Response::Done(_) => Ok(()),
        other => bail!("unexpected answer {other:?}"),
    }
}

/// Waits (bounded) until the node enforces `locked`; returns the epoch.
async fn wait_lockdown(node: &LocalNode, locked: bool) -> Result<u64> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(CONVERGE_SECS);
    loop {
        let l = node.node.lockdown();
        if l.locked == locked && l.epoch > 0 {
            return Ok(l.epoch);
        }
        if std::time::Instant::now() > deadline {
            bail!("the node did not apply the lockdown change within {CONVERGE_SECS} s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// A smaller community: a few residents declared online, each checked in and out.
async fn small_community(node: &LocalNode, json: bool) -> Result<Tally> {
    let console = node.console().await?;
    let gate = node.gate(&console, "main-1").await?;
    let mut d = Demo {
        console,
        north: gate,
        south: None,
        tally: Tally::default(),
        json,
    };
    let community = node.node.config.community;
    let mut hosts = Vec::new();
    d.say(&format!(
        "community {community} ({}):",
        node.node.config.community_name
    ));
    for i in 0..4u32 {
        let form = person(
            &format!("居民{}", i + 1),
            i % 2 == 0,
            &format!("19{}0{}15", 70 + i, 1 + i),
            60 + i,
            "8",
            &format!("80{}", 1 + i % 2),
        );
        if let Some(r) = d.declare(Request::Declare { form }).await? {
            hosts.push(r.holder);
            let code = r.code.clone().unwrap_or_default();
            d.check(&r.name, true, &code, Direction::In, NORMAL_DC, None)
                .await?;
            d.check(&r.name, true, &code, Direction::Out, NORMAL_DC, None)
                .await?;
        }
    }
    if let Some(host) = hosts.first() {
        let now = now_secs();
        let req = Request::InviteVisitor {
            host: *host,
            visitor_name: "访客 王女士".into(),
            visitor_phone: "13700137000".into(),
            from: now,
            until: now + 3600,
        };
        if let Response::Visitor(v) = d.console.request(&req).await? {
            d.check(
                "visitor (this community is not locked down)",
                true,
                &v.code,
                Direction::In,
                NORMAL_DC,
                None,
            )
            .await?;
        }
    }
    d.console.close().await;
    Ok(d.tally)
}

struct Offline {
    tally: Tally,
    decisions: u64,
    uploaded: u64,
}

/// A gate agent (the real gate device) at `node`'s community: online first, then the node
/// stops and the gate decides alone from its cache, then the node restarts and the gate
/// uploads what it decided. Counts the offline decisions and the offline events the node
/// holds afterwards (they must be equal: exactly once).
async fn offline_gate(
    district: &menjin_harness::LocalDistrict,
    node: LocalNode,
    hub: &menjin_harness::LocalHub,
    json: bool,
) -> Result<(LocalNode, Offline)> {
    let say = |line: &str| {
        if !json {
            println!("{line}");
        }
    };
    let community = node.node.config.community;
    let console = node.console().await?;
    let (mut codes, mut declared) = (Vec::new(), 0u64);
    for i in 0..3u32 {
        let form = person(
            &format!("住户{}", i + 1),
            i % 2 == 1,
            "19820707",
            70 + i,
            "9",
            "901",
        );
        match console.request(&Request::Declare { form }).await? {
            Response::Declared(r) => {
                declared += 1;
                codes.extend(r.code);
            }
            other => bail!("declaring at community {community}: {other:?}"),
        }
    }
    // One more, whose code is revoked by a new declaration (symptoms): refused offline too.
    let mut sick = person("住户4", false, "19820707", 73, "9", "902");
    if let Response::Declared(r) = console
        .request(&Request::Declare { form: sick.clone() })
        .await?
    {
        declared += 1;
        codes.extend(r.code);
    }
    sick.symptoms = true;
    if let Response::Declared(_) = console.request(&Request::Declare { form: sick }).await? {
        declared += 1;
    }
    let (agent, _notices) = node.gate_agent(&console, "east-1").await?;
    console.close().await;
    if !agent.wait_online(std::time::Duration::from_secs(10)).await {
        bail!("the gate of community {community} did not reach its node");
    }
    say(&format!(
        "community {community}: gate east-1 subscribed; the node goes down"
    ));
    let events_before = node.node.events_logged();
    let (mut tally, mut decisions) = (Tally::default(), 0u64);
    tally.declared = declared;
    tally.codes_issued = codes.len() as u64;
    tally.not_cleared = 1;
    let stopped = node.stop_for_restart().await?;
    for code in &codes {
        let d = agent.check(code, NORMAL_DC, None).await?;
        if !d.offline {
            bail!("the gate still reached its stopped node");
        }
        decisions += 1;
        tally.checks += 1;
        if d.answer.allowed {
            tally.allowed += 1;
        } else {
            tally.denied += 1;
            *tally
                .by_reason
                .entry(d.answer.reason.to_string())
                .or_default() += 1;
        }
        say(&format!(
            "  offline: {} {} (decided by the gate alone, buffered as #{})",
            if d.answer.allowed { "ALLOW" } else { "DENY " },
            d.answer.reason,
            d.gate_seq.unwrap_or_default()
        ));
    }
    let node = district.restart_linked_node(stopped, hub)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(CONVERGE_SECS);
    while agent.pending() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let log = node.node.gate_log().query(&menjin_proto::wire::LogQuery {
        after_seq: Some(events_before),
        limit: 1000,
        ..Default::default()
    })?;
    let uploaded = log.iter().filter(|e| e.offline.is_some()).count() as u64;
    say(&format!(
        "  node back: {uploaded} offline events uploaded, {} still buffered",
        agent.pending()
    ));
    Ok((
        node,
        Offline {
            tally,
            decisions,
            uploaded,
        },
    ))
}
