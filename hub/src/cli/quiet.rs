//! `outpost-hub quiet …`: put a group's devices on the `quiet` check-in policy (check-ins minutes
//! apart; a summon waits for the next one), take it off again, list the quiet groups.

use anyhow::Result;
use clap::Subcommand;
use outpost_api::SetQuiet;

use super::admin::{asked, connect, failed, text};
use super::ApiArgs;

/// `outpost-hub quiet …`.
#[derive(Debug, Subcommand)]
pub enum QuietCommand {
    /// Put GROUP on the quiet policy: its devices check in every INTERVAL (from their next
    /// check-in), and a summon waits for the next check-in.
    Set {
        /// The group.
        group: String,
        /// Between check-ins, such as 5m (1m to 1h; 50m if left out: ≤ 1 B/s even where every
        /// check-in finds its NAT binding expired).
        #[arg(long)]
        interval: Option<String>,
    },
    /// Put GROUP back on the hub's adaptive interval.
    Off {
        /// The group.
        group: String,
    },
    /// List the quiet groups.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Run a quiet command.
pub async fn run(args: &ApiArgs, command: QuietCommand) -> Result<()> {
    let api = connect(args)?;
    let failed = |e| failed(api.base_url(), e);
    match command {
        QuietCommand::Set { group, interval } => {
            let set = SetQuiet {
                group,
                quiet: true,
                interval,
            };
            let quiet = api.set_quiet(&set).await.map_err(failed)?;
            println!(
                "group {} is quiet: check-ins every {}s, a summon waits for the next one",
                text(Some(&quiet.group)),
                quiet.interval_secs.unwrap_or_default()
            );
        }
        QuietCommand::Off { group } => {
            let set = SetQuiet {
                group,
                quiet: false,
                interval: None,
            };
            let quiet = api.set_quiet(&set).await.map_err(failed)?;
            println!(
                "group {} is back on the adaptive check-in interval",
                text(Some(&quiet.group))
            );
        }
        QuietCommand::List { json } => {
            let Some(groups) = asked(&api, api.quiet_groups(), json).await? else {
                return Ok(());
            };
            println!("{:<24} {:>10}", "GROUP", "INTERVAL");
            for g in &groups {
                println!(
                    "{:<24} {:>9}s",
                    text(Some(&g.group)),
                    g.interval_secs.unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}
