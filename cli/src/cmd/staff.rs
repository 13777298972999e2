//! `menjin staff add|passwd|remove`: the accounts clerks and the head of the office log in
//! with at the node's pages (`/staff`). The node must be running; the console key signs in.
//! The password is read from standard input (its first line), never from the command line,
//! where other users could see it in the process list; the node hashes it (argon2id).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use menjin_proto::staff::{PASSWORD_CHARS_MAX, Password, StaffRole};
use menjin_proto::wire::ConsoleRequest;

use crate::console::ask;
use crate::exit::usage;
use crate::output;

#[derive(Clone, Copy, ValueEnum)]
pub enum Role {
    /// Paper declarations, passes.
    Clerk,
    /// A clerk's pages and the community-wide ones.
    Head,
}

#[derive(Subcommand)]
pub enum StaffCmd {
    /// A new account; the password is the first line of standard input.
    Add {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, value_enum, default_value = "clerk")]
        role: Role,
    },
    /// A new password (first line of standard input); the member's open sessions end.
    Passwd {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
    },
    /// Removes an account; the member's open sessions end.
    Remove {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
    },
}

/// The first line of standard input, without its line end; with a prompt on a terminal
/// (the typing is echoed: pipe it in where that matters).
fn read_password() -> Result<Password> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password for the staff member: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    // A bound on what is read: a password is at most PASSWORD_CHARS_MAX characters.
    let limit = (PASSWORD_CHARS_MAX * 4 + 2) as u64;
    std::io::Read::take(stdin.lock(), limit).read_line(&mut line)?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err(usage(
            "no password on standard input (give it as the first line)",
        ));
    }
    Ok(Password(password.to_string()))
}

pub async fn run(cmd: StaffCmd, json: bool) -> Result<ExitCode> {
    let (dir, req) = match cmd {
        StaffCmd::Add { dir, name, role } => {
            let role = match role {
                Role::Clerk => StaffRole::Clerk,
                Role::Head => StaffRole::Head,
            };
            let password = read_password()?;
            (
                dir,
                ConsoleRequest::AddStaff {
                    name,
                    role,
                    password,
                },
            )
        }
        StaffCmd::Passwd { dir, name } => {
            let password = read_password()?;
            (dir, ConsoleRequest::SetStaffPassword { name, password })
        }
        StaffCmd::Remove { dir, name } => (dir, ConsoleRequest::RemoveStaff { name }),
    };
    let resp = ask(&dir, req).await?;
    Ok(output::response(json, &resp))
}
