//! `outpost-hub audit …`: read the audit trail — a page as a table, or every matching record as
//! JSON lines for an auditor's tools (`audit export`), paged through the API so a large trail
//! never sits in memory.

use std::io::Write as _;

use anyhow::{anyhow, Result};
use clap::{Args, Subcommand};
use outpost_api::{AuditQuery, AuditRecord};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::admin::{asked, connect, failed, text};
use super::{parse_duration, ApiArgs};

/// `outpost-hub audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// One page of records, newest first.
    List {
        /// Which records.
        #[command(flatten)]
        filter: AuditFilter,
        /// Page (from 1).
        #[arg(long, default_value_t = 1)]
        page: u32,
        /// Records per page (1 to 1000).
        #[arg(long, default_value_t = 100)]
        per_page: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every matching record, newest first, one JSON object per line.
    Export {
        /// Which records.
        #[command(flatten)]
        filter: AuditFilter,
    },
}

/// Which records: by credential, device and time.
#[derive(Clone, Debug, Args)]
pub struct AuditFilter {
    /// Only this credential's calls.
    #[arg(long)]
    who: Option<String>,
    /// Only calls about this endpoint id.
    #[arg(long)]
    endpoint: Option<u64>,
    /// From this time: RFC 3339 (`2026-12-01T00:00:00Z`) or a duration ago (`2h`, `7d`).
    #[arg(long)]
    since: Option<String>,
    /// Before this time, the same way.
    #[arg(long)]
    until: Option<String>,
}

/// `text` as Unix milliseconds: an RFC 3339 time, or a duration before now.
fn when(text: &str) -> Result<String> {
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok((at.unix_timestamp_nanos() / 1_000_000).to_string());
    }
    let ago = parse_duration(text)
        .map_err(|e| anyhow!("{text:?} is neither an RFC 3339 time nor a duration: {e}"))?;
    let at = OffsetDateTime::now_utc() - ago;
    Ok((at.unix_timestamp_nanos() / 1_000_000).to_string())
}

impl AuditFilter {
    fn query(&self, page: u32, per_page: u32) -> Result<AuditQuery> {
        Ok(AuditQuery {
            who: self.who.clone(),
            endpoint: self.endpoint.map(|id| id.to_string()),
            since: self.since.as_deref().map(when).transpose()?,
            until: self.until.as_deref().map(when).transpose()?,
            page: Some(page.to_string()),
            per_page: Some(per_page.to_string()),
        })
    }
}

/// Records per request while exporting.
const EXPORT_PAGE: u32 = 1000;

/// Run an audit command.
pub async fn run(args: &ApiArgs, command: AuditCommand) -> Result<()> {
    let api = connect(args)?;
    let failed = |e| failed(api.base_url(), e);
    match command {
        AuditCommand::List {
            filter,
            page,
            per_page,
            json,
        } => {
            let Some(answer) = asked(&api, api.audit(&filter.query(page, per_page)?), json).await?
            else {
                return Ok(());
            };
            print_records(&answer.items);
            eprintln!("{} of {} records", answer.items.len(), answer.total);
            Ok(())
        }
        AuditCommand::Export { filter } => {
            // Pin the end, so records written while exporting do not shift the pages.
            let mut filter = filter;
            filter.until.get_or_insert_with(|| "0s".to_owned());
            let mut out = std::io::stdout().lock();
            for page in 1.. {
                let answer = api
                    .audit(&filter.query(page, EXPORT_PAGE)?)
                    .await
                    .map_err(failed)?;
                for record in &answer.items {
                    writeln!(out, "{}", serde_json::to_string(record)?)?;
                }
                if answer.items.len() < EXPORT_PAGE as usize {
                    break;
                }
            }
            Ok(())
        }
    }
}

fn print_records(records: &[AuditRecord]) {
    println!(
        "{:<24} {:<16} {:<8} {:<7} {:<6} {:>9} {:>9} {:>8}  PATH",
        "AT", "WHO", "ENDPOINT", "METHOD", "STATUS", "IN", "OUT", "MS"
    );
    for r in records {
        let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(r.at_ms) * 1_000_000)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_default();
        let endpoint = r
            .endpoint
            .map_or_else(|| "-".to_owned(), |id| id.to_string());
        let method = if r.hijacked {
            format!("{}*", r.method)
        } else {
            r.method.clone()
        };
        println!(
            "{:<24} {:<16} {:<8} {:<7} {:<6} {:>9} {:>9} {:>8}  {}",
            at,
            text(Some(&r.who)),
            endpoint,
            text(Some(&method)),
            r.status,
            r.bytes_in,
            r.bytes_out,
            r.duration_ms,
            text(Some(&r.path)),
        );
    }
}
