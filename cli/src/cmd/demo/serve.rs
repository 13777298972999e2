//! `menjin demo --serve`: the main community's pages on loopback after the story, so a
//! newcomer can try every page in a browser: household codes for a few homes, a clerk's and
//! a head's login, the URL of each page; and one gate's screen for the guard
//! (`super::screen`), fed by lines typed here. Stops at Ctrl-C.

use std::net::SocketAddr;

use anyhow::{Result, bail};
use menjin_harness::LocalNode;
use menjin_proto::staff::{Password, StaffRole};
use menjin_proto::wire::{ConsoleRequest, Response};

/// Homes that get a household code (building, door): empty homes of the demo's buildings.
const HOMES: [(&str, &str); 3] = [("12", "1205"), ("12", "1206"), ("7", "702")];
/// The demo's staff: name, role, password (printed: this is a demonstration on loopback).
const STAFF: [(&str, StaffRole, &str); 2] = [
    ("李文", StaffRole::Clerk, "demo-clerk-2026"),
    ("王五", StaffRole::Head, "demo-head-2026"),
];

/// Serves `node`'s pages on `listen` until Ctrl-C.
pub async fn pages(node: &LocalNode, listen: SocketAddr) -> Result<()> {
    let console = node.console().await?;
    let mut codes = Vec::new();
    for (building, door) in HOMES {
        let req = ConsoleRequest::IssueHouseholdCode {
            building: building.into(),
            door: door.into(),
        };
        match console.request(&req).await? {
            Response::HouseholdCode { code, .. } => codes.push((building, door, code)),
            other => bail!("household code for {building}-{door}: {other:?}"),
        }
    }
    for (name, role, password) in STAFF {
        let req = ConsoleRequest::AddStaff {
            name: name.into(),
            role,
            password: Password(password.into()),
        };
        if let Response::Error { message, .. } = console.request(&req).await? {
            bail!("staff account {name}: {message}");
        }
    }
    let server = menjin_web::WebServer::bind(node.node.clone(), listen, None)
        .map_err(|e| anyhow::anyhow!("cannot serve the pages on {listen}: {e}"))?;
    let addr = server.local_addr()?;
    let kiosk = super::screen::Kiosk::start(node, listen).await?;
    // Listening for Ctrl-C before the URL is printed: a SIGINT right after it must stop the
    // district, not kill the process.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    println!();
    println!(
        "pages of community {} served on http://{addr}/",
        node.node.config.community
    );
    println!("  residents (a phone, 360 px and up): http://{addr}/ with a household code:");
    for (building, door, code) in &codes {
        println!("    building {building}, door {door}: {code}");
    }
    println!("  staff (the office PC): http://{addr}/staff");
    for (name, role, password) in STAFF {
        let role = if role == StaffRole::Head {
            "head"
        } else {
            "clerk"
        };
        println!("    {role}: name {name}, password {password}");
    }
    println!("  staff pages: /staff/declare (paper form + photo), /staff/homes (code slips),");
    println!(
        "    /staff/progress, /staff/people, /staff/gatelog, /staff/lockdown (head), /staff/audit (head)"
    );
    println!(
        "guard screen of gate kiosk-1 (a kiosk, 1024x600 and up): http://{}/",
        kiosk.addr
    );
    println!("  scan at kiosk-1 by typing here: <temperature> <code>, e.g.");
    println!("    36.6 {}", kiosk.code);
    println!("Ctrl-C stops the district.");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    let _ = interrupt.recv().await;
    let _ = stop.send(());
    let _ = serving.await;
    kiosk.stop().await;
    Ok(())
}
