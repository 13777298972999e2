//! `menjin hub import-health`: a district health list (CSV: document type, document number,
//! status) hashed on the operator's console with the district's ID-hash key, so plain ID
//! numbers never leave the file, then sent to the hub in batches.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use menjin_proto::civil::Date;
use menjin_proto::idnum::{DocumentType, IdHashKey, check_document};
use menjin_proto::wire::{HEALTH_STATUSES, HealthEntry, HubRequest, Response};
use menjin_store::files::NodeDir;

use crate::exit::EXIT_REFUSED;
use crate::form::now_secs;
use crate::output;

/// Bad rows named one by one on standard error; past that, only their number.
const BAD_ROWS_SHOWN_MAX: usize = 50;

/// `menjin hub import-health`: hashes the list, sends its good rows to the hub in batches,
/// reports the bad ones (exit 3 if any).
pub async fn import(hub_dir: &Path, file: &Path, json: bool) -> Result<ExitCode> {
    let dir = NodeDir(hub_dir.to_path_buf());
    let key = IdHashKey(menjin_store::files::read_secret(&dir.idhash_key())?);
    let text = read(file)?;
    let (good, bad) = parse(&text, &key, Date::from_unix(now_secs()));
    let client = crate::console::hub(hub_dir).await?;
    let bar = indicatif::ProgressBar::new(good.len() as u64);
    if json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut applied = 0usize;
    for chunk in good.chunks(menjin_proto::wire::HEALTH_BATCH_MAX) {
        match client
            .request(&HubRequest::SetHealth {
                flags: chunk.to_vec(),
            })
            .await?
        {
            Response::Done(_) => applied += chunk.len(),
            other => {
                bar.abandon();
                output::response(json, &other);
                anyhow::bail!("the hub refused a batch after {applied} rows were applied");
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    client.close().await;
    report(file, good.len() + bad.len(), applied, &bad, json);
    Ok(if bad.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REFUSED)
    })
}

fn report(file: &Path, rows: usize, applied: usize, bad: &[RowError], json: bool) {
    if json {
        crate::json::print(&crate::json::HealthImport {
            applied,
            errors: bad
                .iter()
                .map(|e| crate::json::RowError {
                    line: e.line,
                    why: e.why.clone(),
                })
                .collect(),
            refused: bad.len(),
            rows,
        });
        return;
    }
    for e in bad.iter().take(BAD_ROWS_SHOWN_MAX) {
        eprintln!("{}:{}: {}", file.display(), e.line, e.why);
    }
    if bad.len() > BAD_ROWS_SHOWN_MAX {
        eprintln!("... and {} more bad rows", bad.len() - BAD_ROWS_SHOWN_MAX);
    }
    println!("{rows} rows: {applied} applied, {} refused", bad.len());
}

/// A row that was refused, with its line number (1-based) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: usize,
    pub why: String,
}

/// Parses the list: every good row hashed, every bad row reported; a header line
/// (`document_type,...`) and blank lines are skipped.
pub fn parse(text: &str, key: &IdHashKey, today: Date) -> (Vec<HealthEntry>, Vec<RowError>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let row = raw.trim();
        if row.is_empty() || (line == 1 && row.starts_with("document_type")) {
            continue;
        }
        let fields: Vec<&str> = row.split(',').map(str::trim).collect();
        let [kind, number, status] = fields[..] else {
            bad.push(RowError {
                line,
                why: format!(
                    "expected 3 fields (document_type,document_number,status), got {}",
                    fields.len()
                ),
            });
            continue;
        };
        let kind = match DocumentType::parse(kind) {
            Ok(k) => k,
            Err(why) => {
                bad.push(RowError {
                    line,
                    why: why.to_string(),
                });
                continue;
            }
        };
        if let Err(e) = check_document(kind, number, today) {
            bad.push(RowError {
                line,
                why: e.to_string(),
            });
            continue;
        }
        if !HEALTH_STATUSES.contains(&status) {
            bad.push(RowError {
                line,
                why: format!(
                    "unknown status {status:?}: use {}",
                    HEALTH_STATUSES.join(", ")
                ),
            });
            continue;
        }
        good.push(HealthEntry {
            id_hash: key.hash(kind, number),
            status: status.to_string(),
        });
    }
    (good, bad)
}

pub fn read(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rows_are_reported_and_good_rows_kept() {
        let key = IdHashKey([3; 32]);
        let today = Date::new(2026, 11, 27).unwrap();
        let text = "document_type,document_number,status\n\
                    resident_id,11010519491231002X,central_quarantine\n\
                    resident_id,110105194912310021,hospital\n\
                    passport,E1234567,home_quarantine\n\
                    passport,E1234567,sick\n\
                    just,two\n\
                    \n\
                    resident_id,11010519491231002x,cleared\n";
        let (good, bad) = parse(text, &key, today);
        assert_eq!(good.len(), 3);
        assert_eq!(
            good[0].id_hash,
            key.hash(DocumentType::ResidentId, "11010519491231002X")
        );
        // Lower-case x is the same person.
        assert_eq!(good[2].id_hash, good[0].id_hash);
        assert_eq!(
            bad.iter().map(|e| e.line).collect::<Vec<_>>(),
            vec![3, 5, 6]
        );
        assert!(bad[0].why.contains("check digit"), "{:?}", bad[0]);
        assert!(bad[1].why.contains("sick"), "{:?}", bad[1]);
    }
}
