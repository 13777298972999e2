//! `menjin visitor`: a resident's consent to a named visitor, and its withdrawal.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use menjin_proto::credential::CredId;
use menjin_proto::wire::ConsoleRequest;

use crate::console::ask;
use crate::exit::usage;
use crate::form::{now_secs, parse_holder, parse_time};
use crate::output::{self, QrArgs, write_qr};

#[derive(Subcommand)]
pub enum VisitorCmd {
    /// A resident consents to a named visitor for a time window.
    Invite {
        #[arg(long)]
        node_dir: PathBuf,
        /// Holder id of the consenting resident.
        #[arg(long)]
        host: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        phone: String,
        /// now, +30m, +4h, +2d or Unix seconds.
        #[arg(long, default_value = "now")]
        from: String,
        #[arg(long, default_value = "+4h")]
        until: String,
        #[command(flatten)]
        qr: QrArgs,
    },
    /// Withdraw a consent: the visitor's code is refused from then on.
    Withdraw {
        #[arg(long)]
        node_dir: PathBuf,
        /// The visitor code's id (from `visitor invite`).
        #[arg(long)]
        code_id: String,
    },
}

pub async fn run(cmd: VisitorCmd, json: bool) -> Result<ExitCode> {
    let resp = match cmd {
        VisitorCmd::Invite {
            node_dir,
            host,
            name,
            phone,
            from,
            until,
            qr,
        } => {
            let now = now_secs();
            let req = ConsoleRequest::InviteVisitor {
                host: parse_holder(&host)?,
                visitor_name: name,
                visitor_phone: phone,
                from: parse_time(&from, now).map_err(usage).context("--from")?,
                until: parse_time(&until, now).map_err(usage).context("--until")?,
            };
            let resp = ask(&node_dir, req).await?;
            write_qr(&resp, &qr, json)?;
            resp
        }
        VisitorCmd::Withdraw { node_dir, code_id } => {
            let id: CredId =
                code_id
                    .parse()
                    .map_err(|e: menjin_proto::credential::HexIdError| {
                        usage(format!("--code-id: {e}"))
                    })?;
            ask(
                &node_dir,
                ConsoleRequest::WithdrawConsent { visitor_code: id },
            )
            .await?
        }
    };
    Ok(output::response(json, &resp))
}
