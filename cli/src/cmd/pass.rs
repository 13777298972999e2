//! `menjin pass`: printed passes: a person's photo, the printable pass.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use menjin_proto::wire::{ConsoleRequest, Response};

use crate::console::ask;
use crate::exit::Refused;
use crate::form::parse_holder;
use crate::output;

#[derive(Subcommand)]
pub enum PassCmd {
    /// Attach a photo (JPEG or PNG, at most 1 MB) for a printed pass.
    Photo {
        #[arg(long)]
        node_dir: PathBuf,
        #[arg(long)]
        holder: String,
        #[arg(long)]
        photo: PathBuf,
    },
    /// Write the printable pass (HTML with print CSS) of a cleared person.
    Print {
        #[arg(long)]
        node_dir: PathBuf,
        #[arg(long)]
        holder: String,
        #[arg(long)]
        out: PathBuf,
    },
}

pub async fn run(cmd: PassCmd, json: bool) -> Result<ExitCode> {
    let resp = match cmd {
        PassCmd::Photo {
            node_dir,
            holder,
            photo,
        } => {
            let photo = read_photo(&photo)?;
            let req = ConsoleRequest::AttachPhoto {
                holder: parse_holder(&holder)?,
                photo,
            };
            ask(&node_dir, req).await?
        }
        PassCmd::Print {
            node_dir,
            holder,
            out,
        } => {
            let req = ConsoleRequest::PrintPass {
                holder: parse_holder(&holder)?,
            };
            let resp = ask(&node_dir, req).await?;
            if let Response::Pass { html, .. } = &resp {
                menjin_store::files::write_private(&out, html.as_bytes())?;
            }
            resp
        }
    };
    Ok(output::response(json, &resp))
}

/// A photo file, refused here (exit 3) when it is larger than the node would take.
pub fn read_photo(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).with_context(|| format!("photo {}", path.display()))?;
    if meta.len() > menjin_proto::wire::PHOTO_LEN_MAX as u64 {
        return Err(Refused(format!(
            "photo {} is {:.1} MB; the limit is {:.1} MB",
            path.display(),
            meta.len() as f64 / 1e6,
            menjin_proto::wire::PHOTO_LEN_MAX as f64 / 1e6
        ))
        .into());
    }
    std::fs::read(path).with_context(|| format!("photo {}", path.display()))
}
