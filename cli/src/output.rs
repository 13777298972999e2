//! What the commands print: a few readable lines by default, one JSON object with `--json`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;

use menjin_proto::NodeCert;
use menjin_proto::civil::Date;
use menjin_proto::wire::{
    CheckAnswer, GateEvent, HubStatus, NodeStatus, Receipt, Response, RosterSummary,
};
use menjin_store::files::write_private;

use crate::exit::{EXIT_DENIED, EXIT_REFUSED};
use crate::json;

/// Where a command that issues a code shows it, besides its text.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct QrArgs {
    /// Show the code as a QR in the terminal.
    #[arg(long)]
    qr: bool,
    /// Write the code as a PNG QR image.
    #[arg(long)]
    qr_png: Option<PathBuf>,
    /// Write the code as an SVG QR image.
    #[arg(long)]
    qr_svg: Option<PathBuf>,
}

/// Writes the code of a declaration or invitation as `qr` asks (nothing for other answers).
pub fn write_qr(resp: &Response, qr: &QrArgs, json: bool) -> Result<()> {
    let code = match resp {
        Response::Declared(r) => r.code.clone(),
        Response::Visitor(v) => Some(v.code.clone()),
        _ => None,
    };
    let Some(code) = code else { return Ok(()) };
    if let Some(path) = &qr.qr_png {
        write_private(path, &menjin_render::qr::qr_png(&code, 8)?)?;
    }
    if let Some(path) = &qr.qr_svg {
        write_private(path, menjin_render::qr::qr_svg(&code)?.as_bytes())?;
    }
    if qr.qr && !json {
        println!("{}", menjin_render::qr::qr_terminal(&code)?);
    }
    Ok(())
}

pub fn created_district(json: bool, dir: &Path, root: &ed25519_dalek::VerifyingKey) {
    let public = menjin_proto::keys::public_key_hex(root);
    if json {
        json::print(&json::DistrictCreated {
            dir: dir.to_path_buf(),
            root_public_key: public,
        });
    } else {
        println!("district created in {}", dir.display());
        println!("root public key: {public}");
        println!("keep root.key and idhash.key secret and backed up offline");
    }
}

pub fn created_node(json: bool, dir: &Path, cert: &NodeCert) {
    if json {
        json::print(&json::NodeCreated {
            community: cert.community,
            community_name: cert.community_name.clone(),
            dir: dir.to_path_buf(),
            node_key_id: cert.key_id().to_string(),
            not_after: cert.not_after,
        });
    } else {
        println!(
            "node for community {} ({}) created in {}",
            cert.community,
            cert.community_name,
            dir.display()
        );
        println!(
            "node key id {}; certificate valid until {}",
            cert.key_id(),
            Date::from_unix(cert.not_after)
        );
        println!("start it with: menjin node run --dir {}", dir.display());
    }
}

fn event_line(e: &GateEvent) -> String {
    let secs = e.time_ms / 1000;
    let date = Date::from_unix(secs);
    let tod = secs % 86_400;
    format!(
        "#{:<6} {} {:02}:{:02}:{:02}Z {:<10} {:<3} {:<5} {:<16} {:>4.1}°C {}{}{}",
        e.seq,
        date,
        tod / 3600,
        tod / 60 % 60,
        tod % 60,
        e.gate,
        e.direction.as_str(),
        if e.allowed { "allow" } else { "deny" },
        e.reason.as_str(),
        f32::from(e.temperature_dc) / 10.0,
        e.holder.map(|h| format!("holder {h}")).unwrap_or_default(),
        e.plate
            .as_ref()
            .map(|p| format!(" plate {p}"))
            .unwrap_or_default(),
        match e.offline {
            Some(m) if m.degraded => " (offline, degraded)",
            Some(_) => " (offline)",
            None => "",
        },
    )
}

/// One gate as its node sees it: link, applied lockdown epoch, last contact.
pub fn gate_link_line(g: &menjin_proto::wire::GateLink, now_ms: u64) -> String {
    let contact = if g.last_contact_ms == 0 {
        "never".to_string()
    } else {
        format!(
            "{:.1} s ago",
            now_ms.saturating_sub(g.last_contact_ms) as f64 / 1000.0
        )
    };
    format!(
        "{:<12} {:<12} lockdown epoch {} {} (feed version {}), last contact {contact}, offline events uploaded {}, waiting {}, clock skew {} ms",
        g.gate,
        if g.connected {
            "subscribed"
        } else {
            "not connected"
        },
        g.lockdown_epoch,
        if g.locked { "LOCKED" } else { "open" },
        g.applied_version,
        g.uploaded_upto,
        g.pending_events,
        g.skew_ms
    )
}

/// What the guard reads for one decision: allow or deny, who, why; the fever and photo
/// warnings on their own lines.
pub fn check_text(a: &CheckAnswer) -> String {
    let who = a
        .holder
        .as_ref()
        .map(|h| format!("{} {}-{} {}", h.name, h.building, h.door, h.kind.as_str()))
        .unwrap_or_else(|| "unknown person".into());
    let mut out = format!(
        "{} {who}: {} ({})\n",
        if a.allowed { "ALLOW" } else { "DENY " },
        a.reason.explain(),
        a.reason
    );
    if a.fever {
        out.push_str("!! FEVER: refer to the health post\n");
    }
    if a.passback {
        out.push_str(
            "!! PASSBACK: this code went in before and never came out: check the person\n",
        );
    }
    if let Some(photo) = a.holder.as_ref().and_then(|h| h.photo.as_ref()) {
        out.push_str(&format!(
            "   compare the face with the pass photo ({photo})\n"
        ));
    }
    out
}

/// Prints a node's answer and returns the exit code it stands for.
pub fn response(json: bool, resp: &Response) -> ExitCode {
    if let Response::Error { kind, message } = resp {
        if json {
            json::print_response(resp);
        }
        eprintln!("refused ({}): {message}", json::error_kind(*kind));
        return ExitCode::from(EXIT_REFUSED);
    }
    if json {
        json::print_response(resp);
    } else {
        response_text(resp);
    }
    match resp {
        Response::Check(a) if !a.allowed => ExitCode::from(EXIT_DENIED),
        _ => ExitCode::SUCCESS,
    }
}

/// The text of an answer other than an error.
fn response_text(resp: &Response) {
    match resp {
        Response::HouseholdCode {
            building,
            door,
            code,
        } => {
            // The only time the code is shown: the office prints or copies it now.
            println!("household code for building {building} door {door}: {code}");
        }
        Response::Check(a) => {
            print!("{}", check_text(a));
            println!("logged as #{}", a.seq);
        }
        Response::Declared(r) => declared_text(r),
        Response::Pass { holder, .. } => println!("printed pass for {holder} written"),
        Response::Visitor(v) => {
            println!(
                "visitor {} may come from {} to {} (host {})",
                v.visitor_name, v.from, v.until, v.host
            );
            println!("code id: {}", v.cred);
            println!("code:    {}", v.code);
        }
        Response::Log(events) => {
            for e in events {
                println!("{}", event_line(e));
            }
            println!("{} events", events.len());
        }
        Response::Summary(s) => summary_text(s),
        Response::Status(s) => status_text(s),
        Response::Done(m) => println!("{m}"),
        Response::HubStatus(s) => hub_status_text(s),
        Response::Uploaded {
            upto_gate_seq,
            stored,
        } => println!("{stored} offline events stored; gate cursor {upto_gate_seq}"),
        Response::DistrictLog(events) => {
            for e in events {
                println!("{} {}", e.community, event_line(&e.event));
            }
            println!("{} events", events.len());
        }
        Response::SyncStats(c) => println!(
            "replication: {} frames ({} bytes) sent, {} frames ({} bytes) received",
            c.frames_sent, c.bytes_sent, c.frames_received, c.bytes_received
        ),
        Response::Error { .. } => unreachable!("handled by response"),
    }
}

fn declared_text(r: &Receipt) {
    let by = r
        .declared_by
        .map(|b| format!(", declared by {b}"))
        .unwrap_or_default();
    println!("{} ({}, {:?}{by})", r.name, r.kind.as_str(), r.channel);
    println!("holder:  {}", r.holder);
    println!("outcome: {}: {}", r.outcome.as_str(), r.why);
    match &r.code {
        Some(code) => println!("code:    {code}"),
        None => println!("code:    none (not cleared)"),
    }
    if let Some(old) = r.revoked {
        println!("revoked: earlier code {old}");
    }
    if r.has_photo {
        println!("photo:   on file (menjin pass print --holder {})", r.holder);
    }
}

fn summary_text(s: &RosterSummary) {
    let left = s.deadline as i64 - (crate::form::now_secs() as i64);
    println!(
        "{} ({}): deadline {} ({})",
        s.community_name,
        s.community,
        Date::from_unix(s.deadline),
        if left > 0 {
            format!("{} h left", left / 3600)
        } else {
            "passed".into()
        }
    );
    println!(
        "{:<10} {:>10} {:>9} {:>8} {:>11} {:>6} {:>7}",
        "building", "households", "residents", "cleared", "not_cleared", "codes", "passes"
    );
    for b in &s.buildings {
        println!(
            "{:<10} {:>10} {:>9} {:>8} {:>11} {:>6} {:>7}",
            b.building,
            b.households,
            b.residents,
            b.cleared,
            b.not_cleared,
            b.codes_active,
            b.passes_printed
        );
    }
}

fn status_text(s: &NodeStatus) {
    println!(
        "community {} ({}), node key {}",
        s.community, s.community_name, s.node_key_id
    );
    println!(
        "residents {}, codes active {}, revoked {}",
        s.residents, s.codes_active, s.codes_revoked
    );
    if s.residents_to_redeclare > 0 {
        println!(
            "!! {} residents hold codes this node knows only from the district's copy (declared after the backup it was restored from): they must declare again",
            s.residents_to_redeclare
        );
    }
    println!(
        "gates: {}",
        if s.gates.is_empty() {
            "none".to_string()
        } else {
            s.gates.join(", ")
        }
    );
    println!("gate events logged: {}", s.events_logged);
    for g in &s.gate_links {
        println!("  gate {}", gate_link_line(g, s.node_time_ms));
    }
    if s.locked {
        println!(
            "LOCKED DOWN (epoch {}): {}",
            s.lockdown_epoch, s.lockdown_reason
        );
    }
    println!(
        "hub: {}, {} events acknowledged",
        if s.hub_connected {
            "connected"
        } else {
            "not connected"
        },
        s.hub_acked_seq
    );
    if s.mirror_pending {
        println!(
            "roster: changes wait for the replicated roster (mirror-pending; the next start repairs it)"
        );
    }
    if s.revoked {
        println!(
            "REVOKED: the district revoked this node's key; gates refuse it (make a new one: node rekey)"
        );
    }
}

fn hub_status_text(s: &HubStatus) {
    println!(
        "hub {}: {} gate events from {} communities",
        s.name,
        s.events,
        s.communities.len()
    );
    for c in &s.communities {
        let contact = if c.last_contact_ms == 0 {
            "never".to_string()
        } else {
            format!(
                "{} s ago",
                s.hub_time_ms.saturating_sub(c.last_contact_ms) / 1000
            )
        };
        println!(
            "  {} {:<24} {:<12} last contact {contact:<10} events {} residents {} codes {}",
            c.community,
            c.name,
            if c.locked {
                "LOCKED DOWN"
            } else if c.connected {
                "connected"
            } else {
                "disconnected"
            },
            c.events,
            c.residents,
            c.codes_active
        );
        if !c.revoked_node_keys.is_empty() {
            println!(
                "      revoked node keys: {}",
                c.revoked_node_keys.join(", ")
            );
        }
        for g in &c.gates {
            println!("      gate {}", gate_link_line(g, s.hub_time_ms));
        }
    }
}
