//! `menjin declare`: a person's declaration, online, by proxy (`--by`) or typed in from paper
//! by staff (`--offline`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use menjin_proto::wire::ConsoleRequest;

use crate::console::ask;
use crate::form::{FormArgs, parse_holder};
use crate::output::{self, QrArgs, write_qr};

/// The arguments of `menjin declare` (its help text is that variant's doc in `main.rs`).
#[derive(Args)]
pub struct Declare {
    #[arg(long)]
    node_dir: PathBuf,
    /// Proxy declaration: the holder id of the adult relative of the same home.
    #[arg(long, conflicts_with = "offline")]
    by: Option<String>,
    /// A paper declaration typed in by staff: needs --photo and --staff.
    #[arg(long, requires_all = ["photo", "staff"])]
    offline: bool,
    #[arg(long)]
    photo: Option<PathBuf>,
    #[arg(long)]
    staff: Option<String>,
    #[command(flatten)]
    qr: QrArgs,
    #[command(flatten)]
    form: FormArgs,
}

pub async fn run(cmd: Declare, json: bool) -> Result<ExitCode> {
    let form = cmd.form.to_declaration()?;
    let req = match (cmd.by, cmd.offline) {
        (Some(by), _) => ConsoleRequest::DeclareProxy {
            by: parse_holder(&by)?,
            form,
        },
        (None, true) => {
            let path = cmd.photo.expect("clap requires --photo");
            let photo = super::pass::read_photo(&path)?;
            ConsoleRequest::DeclareOffline {
                form,
                photo,
                staff: cmd.staff.expect("clap requires --staff"),
            }
        }
        (None, false) => ConsoleRequest::Declare { form },
    };
    let resp = ask(&cmd.node_dir, req).await?;
    write_qr(&resp, &cmd.qr, json)?;
    Ok(output::response(json, &resp))
}
