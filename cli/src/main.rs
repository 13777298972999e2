//! `menjin`: one binary for the district operator, the community workstation, the gate and
//! the engineer (demo and benchmarks).
//!
//! Exit codes (`exit.rs`): 0 done (or, for `gate check`, allowed); 1 failure (files,
//! network); 2 usage error; 3 refused by the node (invalid input or a rule); 4 a gate check
//! that denied entry.
//!
//! This file parses the command line and hands each command group to its module in `cmd/`.

#![warn(unused_crate_dependencies)]
// Used by the integration tests (tests/it), which share the dev-dependencies.
#[cfg(test)]
use {fantoccini as _, quinn as _, sled as _, tokio_rustls as _};

mod cmd;
mod console;
mod exit;
mod form;
mod json;
mod output;
mod scanner;
mod web;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::cmd::hub::HubCmd;
use crate::cmd::node::NodeCmd;

#[derive(Parser)]
#[command(
    name = "menjin",
    version,
    about = "Pass-based entry control for residential communities"
)]
struct Cli {
    /// Print JSON instead of text (for scripts and turnstile controllers).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// District root keys.
    District {
        #[command(subcommand)]
        cmd: cmd::district::DistrictCmd,
    },
    /// The district hub: create, run, enrol nodes, status, district log.
    Hub {
        #[command(subcommand)]
        cmd: HubCmd,
    },
    /// Community nodes: create, run, status.
    Node {
        #[command(subcommand)]
        cmd: NodeCmd,
    },
    /// Gates: enrol, revoke, check a code.
    Gate {
        #[command(subcommand)]
        cmd: cmd::gate::GateCmd,
    },
    /// Declare a person (online; --by for a relative; --offline with --photo and --staff).
    Declare(cmd::declare::Declare),
    /// "My declarations": a person's status and code again.
    Show(cmd::show::Show),
    /// Printed passes.
    Pass {
        #[command(subcommand)]
        cmd: cmd::pass::PassCmd,
    },
    /// Visitor consents.
    Visitor {
        #[command(subcommand)]
        cmd: cmd::visitor::VisitorCmd,
    },
    /// Staff accounts for the node's pages: add, passwd, remove (password on stdin).
    Staff {
        #[command(subcommand)]
        cmd: cmd::staff::StaffCmd,
    },
    /// Query the gate log.
    Log(cmd::log::Log),
    /// Declaration progress per building (the 5-day deadline).
    Roster(cmd::roster::Roster),
    /// Run a demonstration district on loopback: a hub, three nodes, gates and thirty people.
    Demo(cmd::demo::DemoArgs),
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        cmd: cmd::bench::BenchCmd,
    },
}

impl Command {
    /// Daemons log what they do; one-shot commands only what went wrong.
    fn default_log_level(&self) -> &'static str {
        match self {
            Command::Node {
                cmd: NodeCmd::Run { .. },
            }
            | Command::Hub {
                cmd: HubCmd::Run { .. },
            } => "info",
            // The demo tells its own story; its daemons' warnings (a fever, a lockdown) are
            // part of it already.
            // So do benchmarks: their in-process daemons' lockdown and revocation warnings are
            // the load, not news.
            Command::Demo(_) | Command::Bench { .. } => "error",
            _ => "warn",
        }
    }

    async fn run(self, json: bool) -> Result<ExitCode> {
        match self {
            Command::District { cmd } => cmd::district::run(cmd, json),
            Command::Hub { cmd } => cmd::hub::run(cmd, json).await,
            Command::Node { cmd } => cmd::node::run(cmd, json).await,
            Command::Gate { cmd } => cmd::gate::run(cmd, json).await,
            Command::Declare(cmd) => cmd::declare::run(cmd, json).await,
            Command::Show(cmd) => cmd::show::run(cmd, json).await,
            Command::Pass { cmd } => cmd::pass::run(cmd, json).await,
            Command::Visitor { cmd } => cmd::visitor::run(cmd, json).await,
            Command::Staff { cmd } => cmd::staff::run(cmd, json).await,
            Command::Log(cmd) => cmd::log::run(cmd, json).await,
            Command::Roster(cmd) => cmd::roster::run(cmd, json).await,
            Command::Demo(args) => cmd::demo::run(args, json).await,
            Command::Bench { cmd } => cmd::bench::run(cmd, json).await,
        }
    }
}

/// mimalloc rather than glibc's malloc: a gate check allocates a few dozen small buffers
/// (QUIC frames, the request, the event, the answer) on one thread and frees many on another;
/// glibc's allocator took ~8 % of the CPU of `menjin bench gate`, mimalloc about half that
/// (15.6k → 19k checks/s).
///
/// Without transparent huge pages: mimalloc gives freed pages back to the kernel and takes
/// them again, and where the kernel backs them with 2 MB huge pages every such fault zeroes
/// 2 MB for a few KB of use. Profiled under `menjin bench web` (release, 8 clients), the
/// kernel's `clear_page_erms` was 17-19 % of all CPU; with THP disabled it is gone, and the
/// bench went from 560-670 to ~700 declarations/s with its p99 halved.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Best effort: a kernel without the prctl (or THP) leaves things as they are.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let cli = Cli::parse();
    let default_level = cli.command.default_log_level();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli.command.run(cli.json)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::of_error(&e)
        }
    }
}
