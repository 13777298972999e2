//! `menjin demo --serve`: one gate's screen for the guard. The demo's gates are connections
//! in this process, not `gate run` daemons, so a real gate agent (`kiosk-1`, its own cache and
//! feed) runs here with the screen, fed by lines typed on standard input as `gate run` reads
//! a scanner (`36.6 MJ:...`); two scans of a resident declared for it are shown first.

use std::net::SocketAddr;

use anyhow::{Result, bail};
use menjin_gate::GateAgent;
use menjin_harness::{LocalNode, person};
use menjin_proto::wire::{ConsoleRequest, Response};
use menjin_web::screen::{Screen, ScreenServer, Shown};

use crate::cmd::gate::screen_conditions;
use crate::form::parse_temperature;
use crate::scanner::printable;

/// The gate the screen belongs to.
const KIOSK: &str = "kiosk-1";
/// A scanner line longer than this is not a code (as `gate run`).
const LINE_LEN_MAX: usize = 1024;
/// At start, how long to wait for the kiosk gate's feed.
const ONLINE_WAIT_MS: u64 = 10_000;

/// A running kiosk gate and its screen's server.
pub struct Kiosk {
    /// The screen's address.
    pub addr: SocketAddr,
    /// A resident's code to type (`36.6 <code>`).
    pub code: String,
    stop: tokio::sync::oneshot::Sender<()>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Kiosk {
    /// Enrols `kiosk-1` at `node`, starts its agent and screen on `listen` (port 0: any), and
    /// scans a resident declared for it at 36.5 and at 38.5 °C.
    pub async fn start(node: &LocalNode, listen: SocketAddr) -> Result<Kiosk> {
        let console = node.console().await?;
        let form = person("赵敏", false, "19900312", 401, "12", "1208");
        let code = match console.request(&ConsoleRequest::Declare { form }).await? {
            Response::Declared(r) => r.code,
            other => bail!("declaring the kiosk's resident: {other:?}"),
        };
        let Some(code) = code else {
            bail!("the kiosk's resident got no code");
        };
        let (agent, mut notices) = node.gate_agent(&console, KIOSK).await?;
        console.close().await;
        agent
            .wait_online(std::time::Duration::from_millis(ONLINE_WAIT_MS))
            .await;
        let screen = Screen::new(KIOSK);
        let server = ScreenServer::bind(screen.clone(), SocketAddr::new(listen.ip(), 0))
            .map_err(|e| anyhow::anyhow!("cannot serve the gate screen: {e}"))?;
        let addr = server.local_addr()?;
        for t in [365, 385] {
            scan(&agent, &screen, t, &code).await;
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        let watched = screen.clone();
        let watching = tokio::spawn(async move {
            while let Some(n) = notices.recv().await {
                watched.conditions(|c| screen_conditions(c, &n));
            }
        });
        let scanning = tokio::spawn(scanner(agent, screen));
        Ok(Kiosk {
            addr,
            code,
            stop,
            tasks: vec![serving, watching, scanning],
        })
    }

    /// Stops the screen and the gate.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

/// One person at the kiosk gate: decided, printed, then drawn.
async fn scan(agent: &GateAgent, screen: &Screen, temperature_dc: i16, code: &str) {
    match agent.check(code, temperature_dc, None).await {
        Ok(d) => {
            print!("{}: {}", KIOSK, crate::output::check_text(&d.answer));
            screen.show(&Shown {
                answer: d.answer,
                temperature_dc,
                offline: d.offline,
                degraded: d.degraded,
                plate: None,
            });
        }
        Err(e) => println!("{KIOSK}: ?? {}", printable(&e.to_string())),
    }
}

/// Lines typed and not yet scanned at most (a paste of many waits for the gate).
const TYPED_MAX: usize = 16;

/// Standard input as the kiosk gate's scanner, until it ends. Read on a thread of its own:
/// a read still waiting for the keyboard at Ctrl-C must not hold the runtime's shutdown.
async fn scanner(agent: GateAgent, screen: Screen) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(TYPED_MAX);
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { return };
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let parsed = (line.len() <= LINE_LEN_MAX)
            .then(|| line.split_once(' '))
            .flatten()
            .and_then(|(t, code)| Some((parse_temperature(t).ok()?, code.trim())));
        match parsed {
            Some((t, code)) => scan(&agent, &screen, t, code).await,
            None => println!("{KIOSK}: ?? expected: <temperature> <code>, e.g. 36.6 MJ:..."),
        }
    }
}
