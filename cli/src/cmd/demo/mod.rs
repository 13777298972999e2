//! `menjin demo`: a community node with two gates on loopback, about twenty people covering
//! every case of the rule, each case run through a real QUIC gate check.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Result, bail};
use menjin_proto::KeyId;
use menjin_proto::credential::{CredId, Credential, HolderId, HolderKind};
use menjin_proto::declaration::{PersonType, Tenure};
use menjin_proto::wire::{
    CheckAnswer, ConsoleRequest, Direction, HubRequest, Receipt, Response, VisitorReceipt,
};
use menjin_render::qr as render;
use menjin_store::files::{NodeDir, read_signing_key};

use crate::form::now_secs;
use menjin_harness::{LocalDistrict, LocalGate, LocalHub, LocalNode, person};

mod screen;
mod serve;

/// `menjin demo [--serve [ADDR]]`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// After the story, keep the district up and serve the main community's pages on ADDR
    /// (default 127.0.0.1:8080) until Ctrl-C, with household codes and staff logins printed.
    #[arg(long, num_args = 0..=1, default_missing_value = "127.0.0.1:8080", value_name = "ADDR")]
    serve: Option<std::net::SocketAddr>,
}

const COMMUNITY: u32 = 440_304_001;
const OTHER_COMMUNITY: u32 = 440_304_002;
const THIRD_COMMUNITY: u32 = 440_304_003;
/// How long the demo waits for the hub to hold every node's events.
const CONVERGE_SECS: u64 = 15;
const NORMAL_DC: i16 = 364;

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

    async fn declare(&mut self, req: ConsoleRequest) -> Result<Option<Receipt>> {
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

    /// A person coming in at a normal temperature.
    async fn check_in(
        &mut self,
        what: &str,
        north: bool,
        code: &str,
        plate: Option<&str>,
    ) -> Result<CheckAnswer> {
        self.check(what, north, code, Direction::In, NORMAL_DC, plate)
            .await
    }
}

/// The story, scene by scene: the main community (declarations, gate checks, visitors,
/// false codes, a lockdown from the hub), two smaller communities, a gate deciding alone
/// while its node is down; then every node's log and roster at the hub.
pub async fn run(args: DemoArgs, json: bool) -> Result<ExitCode> {
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
    let mut d = Demo::open(&node, json).await?;
    d.say(&format!(
        "district hub on {} (QUIC); {} community nodes linked to it",
        hub.addr,
        1 + others.len()
    ));
    d.say(&format!(
        "district, node {COMMUNITY} on {} (QUIC), gates north-1 and south-1 enrolled",
        node.addr
    ));
    let people = d.declarations(&node).await?;
    d.say("gate checks:");
    d.everyone_comes_in(&people).await?;
    let residents = &people.residents;
    d.out_by_car_with_fever(residents).await?;
    d.revocation(&residents[4]).await?;
    let now = now_secs();
    let visitor = d.visitors(&residents[5], now).await?;
    d.false_codes(&residents[6], &node, &others[0].dir, now)
        .await?;
    let propagation_ms = d.lockdown(&hub, &node, residents, &visitor).await?;
    d.progress_per_building().await?;
    let mut tally = d.close().await;
    for other in &others {
        let t = small_community(other, json).await?;
        tally.add(&t);
    }
    // The third community's node goes down; its gate decides alone, then uploads.
    let [second, third] = others;
    let (third, offline) = offline_gate(&district, third, &hub, json).await?;
    tally.add(&offline.tally);
    let others = [second, third];

    let nodes: Vec<&LocalNode> = std::iter::once(&node).chain(others.iter()).collect();
    let at_hub = AtHub::converge(&hub, &nodes).await;
    let summary = Summary {
        communities: nodes.len(),
        tally,
        at_hub,
        propagation_ms,
        offline,
    };
    summary.print(json, started.elapsed().as_millis() as u64);
    if let Some(listen) = args.serve {
        serve::pages(&node, listen).await?;
    }
    for n in others {
        n.stop().await;
    }
    node.stop().await;
    hub.stop().await;
    summary.verdict()
}

/// The main community's roster, as declared.
struct People {
    /// Declared online, each with a code.
    residents: Vec<Receipt>,
    /// Declared by proxy by `residents[0]`.
    grandma: Option<Receipt>,
    child: Option<Receipt>,
    /// Declared on paper by staff, with printed passes.
    passes: Vec<Receipt>,
}

impl Demo {
    /// The main community's console and its two gates.
    async fn open(node: &LocalNode, json: bool) -> Result<Demo> {
        let console = node.console().await?;
        let north = node.gate(&console, "north-1").await?;
        let south = node.gate(&console, "south-1").await?;
        Ok(Demo {
            console,
            north,
            south: Some(south),
            tally: Tally::default(),
            json,
        })
    }

    async fn declarations(&mut self, node: &LocalNode) -> Result<People> {
        self.say("declarations:");
        let residents = self.residents_online().await?;
        self.not_cleared().await?;
        let (grandma, child) = self.by_proxy(&residents[0]).await?;
        let passes = self.on_paper(node).await?;
        Ok(People {
            residents,
            grandma,
            child,
            passes,
        })
    }

    async fn residents_online(&mut self) -> Result<Vec<Receipt>> {
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
            if let Some(r) = self.declare(ConsoleRequest::Declare { form }).await? {
                residents.push(r);
            }
        }
        self.say(&format!(
            "  {} residents declared online, {} codes",
            residents.len(),
            residents.iter().filter(|r| r.code.is_some()).count()
        ));
        Ok(residents)
    }

    /// A traveller and a contact of a case: quarantined, no code.
    async fn not_cleared(&mut self) -> Result<()> {
        let mut home = person("郑浩", true, "19910202", 40, "2", "301");
        home.travel_high_risk = true;
        let home = self.declare(ConsoleRequest::Declare { form: home }).await?;
        let mut contact = person("冯雪", false, "19860606", 41, "3", "302");
        contact.contact_with_case = true;
        let contact = self
            .declare(ConsoleRequest::Declare { form: contact })
            .await?;
        for r in [&home, &contact].into_iter().flatten() {
            self.say(&format!(
                "  {}: {} ({}), no code",
                r.name,
                r.outcome.as_str(),
                r.why
            ));
        }
        Ok(())
    }

    /// Proxy declarations: an adult for the elderly and a child of the same home.
    async fn by_proxy(&mut self, adult: &Receipt) -> Result<(Option<Receipt>, Option<Receipt>)> {
        let mut grandma = person("李秀英", false, "19400101", 42, "1", "101");
        grandma.person_type = PersonType::Household;
        let grandma = self
            .declare(ConsoleRequest::DeclareProxy {
                by: adult.holder,
                form: grandma,
            })
            .await?;
        let mut child = person("李小宝", true, "20160808", 43, "1", "101");
        child.person_type = PersonType::Household;
        let child = self
            .declare(ConsoleRequest::DeclareProxy {
                by: adult.holder,
                form: child,
            })
            .await?;
        if let (Some(g), Some(c)) = (&grandma, &child) {
            self.say(&format!(
                "  {} and {} declared by proxy by {}",
                g.name, c.name, adult.name
            ));
            // A child cannot declare for others.
            let mut cousin = person("李小妹", false, "20180303", 44, "1", "101");
            cousin.person_type = PersonType::Household;
            self.declare(ConsoleRequest::DeclareProxy {
                by: c.holder,
                form: cousin,
            })
            .await?;
        }
        Ok((grandma, child))
    }

    /// Offline: paper forms typed in by staff, with a photo, giving printed passes.
    async fn on_paper(&mut self, node: &LocalNode) -> Result<Vec<Receipt>> {
        let photo = render::qr_png("PHOTO PLACEHOLDER", 4)?;
        let mut passes = Vec::new();
        for (i, (name, male, birth)) in
            [("马桂兰", false, "19450315"), ("胡建国", true, "19480720")]
                .iter()
                .enumerate()
        {
            let form = person(name, *male, birth, 50 + i as u32, "3", "102");
            let req = ConsoleRequest::DeclareOffline {
                form,
                photo: photo.clone(),
                staff: "工作站 陈主任".into(),
            };
            if let Some(r) = self.declare(req).await? {
                if let Response::Pass { html, .. } = self
                    .console
                    .request(&ConsoleRequest::PrintPass { holder: r.holder })
                    .await?
                {
                    let path = node.dir.0.join(format!("pass-{}.html", r.holder));
                    menjin_store::files::write_private(&path, html.as_bytes())?;
                    self.tally.passes_printed += 1;
                    self.say(&format!(
                        "  printed pass for {} ({})",
                        r.name,
                        path.display()
                    ));
                }
                passes.push(r);
            }
        }
        Ok(passes)
    }

    /// Everyone with a code comes in, through the north and south gates in turn.
    async fn everyone_comes_in(&mut self, people: &People) -> Result<()> {
        let all: Vec<Receipt> = people
            .residents
            .iter()
            .chain(people.grandma.iter())
            .chain(people.child.iter())
            .chain(people.passes.iter())
            .cloned()
            .collect();
        for (i, r) in all.iter().enumerate() {
            let Some(code) = &r.code else { continue };
            let kind = if people.passes.iter().any(|p| p.holder == r.holder) {
                "printed pass"
            } else {
                r.kind.as_str()
            };
            self.check(
                &format!("{} ({kind})", r.name),
                i % 2 == 0,
                code,
                Direction::In,
                NORMAL_DC,
                None,
            )
            .await?;
        }
        Ok(())
    }

    async fn out_by_car_with_fever(&mut self, residents: &[Receipt]) -> Result<()> {
        let r0 = residents[1].clone();
        self.check(
            &format!("{} going out", r0.name),
            false,
            r0.code.as_deref().unwrap_or_default(),
            Direction::Out,
            NORMAL_DC,
            None,
        )
        .await?;
        self.check(
            &format!("{} driving in, 粤B12345", r0.name),
            true,
            r0.code.as_deref().unwrap_or_default(),
            Direction::In,
            NORMAL_DC,
            Some("粤B12345"),
        )
        .await?;
        let r1 = residents[2].clone();
        self.check(
            &format!("{} at 38.1 °C", r1.name),
            true,
            r1.code.as_deref().unwrap_or_default(),
            Direction::In,
            381,
            None,
        )
        .await?;
        Ok(())
    }

    /// A new declaration with symptoms revokes the earlier code.
    async fn revocation(&mut self, r2: &Receipt) -> Result<()> {
        let mut sick = person(&r2.name, false, "19881230", 4, "2", "202");
        sick.symptoms = true;
        if let Some(r) = self.declare(ConsoleRequest::Declare { form: sick }).await? {
            self.say(&format!(
                "  {} declared again with symptoms: {}; earlier code revoked: {}",
                r.name,
                r.outcome.as_str(),
                r.revoked.is_some()
            ));
        }
        self.check(
            &format!("{} with the revoked code", r2.name),
            true,
            r2.code.as_deref().unwrap_or_default(),
            Direction::In,
            NORMAL_DC,
            None,
        )
        .await?;
        Ok(())
    }

    async fn invite(
        &mut self,
        host: &Receipt,
        name: &str,
        from: u64,
        until: u64,
    ) -> Result<VisitorReceipt> {
        let req = ConsoleRequest::InviteVisitor {
            host: host.holder,
            visitor_name: name.into(),
            visitor_phone: "13900139000".into(),
            from,
            until,
        };
        match self.console.request(&req).await? {
            Response::Visitor(v) => Ok(v),
            other => bail!("invite: {other:?}"),
        }
    }

    /// Visitors of `host`: with consent (on foot, in a car), withdrawn, not yet due. Returns
    /// the visitor whose consent stays in force.
    async fn visitors(&mut self, host: &Receipt, now: u64) -> Result<VisitorReceipt> {
        let v1 = self
            .invite(host, "访客 钱先生", now, now + 4 * 3600)
            .await?;
        self.check_in("visitor with consent", true, &v1.code, None)
            .await?;
        self.check_in(
            "the same visitor in a car",
            true,
            &v1.code,
            Some("粤B99999"),
        )
        .await?;
        let v2 = self
            .invite(host, "访客 孙女士", now, now + 4 * 3600)
            .await?;
        self.console
            .request(&ConsoleRequest::WithdrawConsent {
                visitor_code: v2.cred,
            })
            .await?;
        self.check_in("visitor whose consent was withdrawn", false, &v2.code, None)
            .await?;
        let v3 = self
            .invite(host, "访客 周先生", now + 86_400, now + 90_000)
            .await?;
        self.check_in("visitor invited for tomorrow", false, &v3.code, None)
            .await?;
        Ok(v1)
    }

    /// Codes that are not what they claim: altered, expired, another community's, not a code.
    async fn false_codes(
        &mut self,
        genuine: &Receipt,
        node: &LocalNode,
        other: &NodeDir,
        now: u64,
    ) -> Result<()> {
        let good = genuine.code.clone().unwrap_or_default();
        let mut forged = menjin_proto::SignedCode::from_text(&good)?
            .as_bytes()
            .to_vec();
        let at = forged.len() - 65; // the door's last character, just before the signature
        forged[at] ^= 0x01;
        let forged_text = menjin_proto::credential::encode_text(&forged);
        self.check_in("altered code (door changed)", true, &forged_text, None)
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
        self.check_in("code that expired 10 days ago", false, &old.to_text(), None)
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
        self.check_in(
            "resident of another community",
            false,
            &foreign.to_text(),
            None,
        )
        .await?;
        self.check_in(
            "a scan of something else",
            false,
            "HTTPS://EXAMPLE.COM/123",
            None,
        )
        .await?;
        Ok(())
    }

    /// A confirmed case: the district locks the community down from the hub, then lifts it.
    /// Returns how long the lockdown took from the hub's console to the node, in ms.
    async fn lockdown(
        &mut self,
        hub: &LocalHub,
        node: &LocalNode,
        residents: &[Receipt],
        visitor: &VisitorReceipt,
    ) -> Result<u64> {
        self.say("lockdown:");
        let hub_console = hub.console().await?;
        let lockdown = |locked: bool| HubRequest::SetLockdown {
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
        let propagation = wait_lockdown(node, true).await?;
        let propagation_ms = started_lockdown.elapsed().as_millis() as u64;
        self.say(&format!(
            "  hub → node in {propagation_ms} ms (epoch {})",
            propagation
        ));
        self.during_lockdown(&residents[3], &residents[7], visitor)
            .await?;
        expect_done(hub_console.request(&lockdown(false)).await?)?;
        wait_lockdown(node, false).await?;
        self.say("  lockdown lifted");
        self.check_in(
            "the visitor again, consent still in its window",
            true,
            &visitor.code,
            None,
        )
        .await?;
        hub_console.close().await;
        Ok(propagation_ms)
    }

    /// Visitors and vehicles are refused, residents come in and stay in, staff may leave.
    async fn during_lockdown(
        &mut self,
        staff: &Receipt,
        r7: &Receipt,
        visitor: &VisitorReceipt,
    ) -> Result<()> {
        let code = |r: &Receipt| r.code.clone().unwrap_or_default();
        self.check_in(
            "visitor with consent, during lockdown",
            true,
            &visitor.code,
            None,
        )
        .await?;
        self.check_in(&format!("{} coming home", r7.name), true, &code(r7), None)
            .await?;
        self.check(
            &format!("{} going out", r7.name),
            false,
            &code(r7),
            Direction::Out,
            NORMAL_DC,
            None,
        )
        .await?;
        self.check(
            &format!("{} (shop staff) going out", staff.name),
            false,
            &code(staff),
            Direction::Out,
            NORMAL_DC,
            None,
        )
        .await?;
        self.check_in(
            &format!("{} driving in", r7.name),
            true,
            &code(r7),
            Some("粤B54321"),
        )
        .await?;
        Ok(())
    }

    async fn progress_per_building(&mut self) -> Result<()> {
        if let Response::Summary(s) = self.console.request(&ConsoleRequest::RosterSummary).await? {
            self.say("progress per building:");
            for b in &s.buildings {
                self.say(&format!(
                    "  building {}: {} households, {} residents, {} cleared, {} codes, {} passes",
                    b.building,
                    b.households,
                    b.residents,
                    b.cleared,
                    b.codes_active,
                    b.passes_printed
                ));
            }
        }
        Ok(())
    }

    /// Closes the console and the gates; returns what was counted.
    async fn close(self) -> Tally {
        let Demo {
            console,
            north,
            south,
            tally,
            ..
        } = self;
        console.close().await;
        drop((north, south));
        tally
    }
}

/// What the hub holds once every node's log and roster reached it (or the wait ended).
struct AtHub {
    /// Events the nodes logged.
    events: u64,
    hub_events: u64,
    hub_residents: usize,
    converged: bool,
}

impl AtHub {
    /// Waits (bounded) until every node's gate log reached the hub, each event exactly once,
    /// and every replicated document (rosters, policy) has the same heads at both ends.
    async fn converge(hub: &LocalHub, nodes: &[&LocalNode]) -> AtHub {
        let events: u64 = nodes.iter().map(|n| n.node.events_logged()).sum();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(CONVERGE_SECS);
        let (converged, hub_events) = loop {
            let status = hub.hub.status();
            let all_there = nodes.iter().all(|n| {
                status.communities.iter().any(|c| {
                    c.community == n.node.config.community && c.events == n.node.events_logged()
                })
            });
            let hub_heads: BTreeMap<_, _> = hub.hub.replication().heads().into_iter().collect();
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
        AtHub {
            events,
            hub_events,
            hub_residents,
            converged,
        }
    }
}

/// The demo's figures: its last lines, or its one `--json` object.
struct Summary {
    communities: usize,
    tally: Tally,
    at_hub: AtHub,
    propagation_ms: u64,
    offline: Offline,
}

impl Summary {
    fn print(&self, json: bool, elapsed_ms: u64) {
        let (t, h) = (&self.tally, &self.at_hub);
        if json {
            crate::json::print(&crate::json::figures::Demo {
                allowed: t.allowed,
                checks: t.checks,
                codes_issued: t.codes_issued,
                communities: self.communities,
                converged: h.converged,
                declared: t.declared,
                denied: t.denied,
                denied_by_reason: t.by_reason.clone(),
                elapsed_ms,
                events_logged: h.events,
                fever_flagged: t.fever_flagged,
                hub_events: h.hub_events,
                hub_residents: h.hub_residents,
                lockdown_propagation_ms: self.propagation_ms,
                not_cleared: t.not_cleared,
                offline_decisions: self.offline.decisions,
                passes_printed: t.passes_printed,
                refused_declarations: t.refused_declarations,
                uploaded_after_reconnect: self.offline.uploaded,
            });
            return;
        }
        println!(
            "summary: {} communities; {} declared ({} not cleared, {} refused), {} codes, {} passes; {} checks: {} allowed, {} denied {:?}",
            self.communities,
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
            "hub: {} gate events (nodes logged {}), rosters of {} people replicated: {}",
            h.hub_events,
            h.events,
            h.hub_residents,
            if h.converged {
                "converged"
            } else {
                "NOT converged"
            }
        );
    }

    /// Fails unless every offline decision was uploaded once and every check logged and held
    /// by the hub.
    fn verdict(&self) -> Result<ExitCode> {
        let (offline, h) = (&self.offline, &self.at_hub);
        if offline.decisions != offline.uploaded {
            bail!(
                "{} offline decisions, {} uploaded after the node came back",
                offline.decisions,
                offline.uploaded
            );
        }
        if h.events != self.tally.checks || !h.converged {
            bail!(
                "{} events logged for {} checks; hub holds {}",
                h.events,
                self.tally.checks,
                h.hub_events
            );
        }
        Ok(ExitCode::SUCCESS)
    }
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
        if let Some(r) = d.declare(ConsoleRequest::Declare { form }).await? {
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
        let req = ConsoleRequest::InviteVisitor {
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
    let (codes, declared) = offline_roster(&console, community).await?;
    let (agent, _notices) = node.gate_agent(&console, "east-1").await?;
    console.close().await;
    if !agent.wait_online(std::time::Duration::from_secs(10)).await {
        bail!("the gate of community {community} did not reach its node");
    }
    say(&format!(
        "community {community}: gate east-1 subscribed; the node goes down"
    ));
    let events_before = node.node.events_logged();
    let stopped = node.stop_for_restart().await?;
    let mut tally = decide_alone(&agent, &codes, say).await?;
    let decisions = tally.checks;
    tally.declared = declared;
    tally.codes_issued = codes.len() as u64;
    tally.not_cleared = 1;
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

/// The offline gate's community: three residents, and a fourth whose code a second
/// declaration (symptoms) revokes. Returns the codes issued and the declarations made.
async fn offline_roster(
    console: &menjin_net::client::NodeClient,
    community: u32,
) -> Result<(Vec<String>, u64)> {
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
        match console.request(&ConsoleRequest::Declare { form }).await? {
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
        .request(&ConsoleRequest::Declare { form: sick.clone() })
        .await?
    {
        declared += 1;
        codes.extend(r.code);
    }
    sick.symptoms = true;
    if let Response::Declared(_) = console
        .request(&ConsoleRequest::Declare { form: sick })
        .await?
    {
        declared += 1;
    }
    Ok((codes, declared))
}

/// Each code at the gate while its node is down: decided by the gate alone, buffered.
async fn decide_alone(
    agent: &menjin_gate::GateAgent,
    codes: &[String],
    say: impl Fn(&str),
) -> Result<Tally> {
    let mut tally = Tally::default();
    for code in codes {
        let d = agent.check(code, NORMAL_DC, None).await?;
        if !d.offline {
            bail!("the gate still reached its stopped node");
        }
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
    Ok(tally)
}
