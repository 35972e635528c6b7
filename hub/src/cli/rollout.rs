//! `outpost-hub rollout …`: list, show and steer rollouts (`stack deploy` starts them).

use anyhow::Result;
use clap::Subcommand;
use outpost_api::{ApiClient, RolloutSummary, StackListQuery};

use super::admin::{connect, failed, print_json, text};
use super::ApiArgs;

/// `outpost-hub rollout …`.
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// List rollouts, newest first.
    List {
        /// Page (from 1).
        #[arg(long, default_value_t = 1)]
        page: u32,
        /// Rollouts per page.
        #[arg(long, default_value_t = 100)]
        per_page: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A rollout's state, counts by state and one page of its devices.
    Show {
        /// The rollout.
        id: i64,
        /// Page of devices (from 1).
        #[arg(long, default_value_t = 1)]
        page: u32,
        /// Devices per page.
        #[arg(long, default_value_t = 100)]
        per_page: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop assigning devices.
    Pause {
        /// The rollout.
        id: i64,
        /// Why, for whoever looks next.
        #[arg(long, default_value = "")]
        note: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Go on, accepting the failures so far.
    Resume {
        /// The rollout.
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop for good; devices keep what they were given.
    Abort {
        /// The rollout.
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Run a rollout command.
pub async fn run(args: &ApiArgs, command: RolloutCommand) -> Result<()> {
    let api = connect(args)?;
    let failed = |e| failed(api.base_url(), e);
    match command {
        RolloutCommand::List {
            page,
            per_page,
            json,
        } => {
            let rollouts = api.rollouts(&query(page, per_page)).await.map_err(failed)?;
            if json {
                return print_json(&rollouts);
            }
            for rollout in &rollouts.items {
                print_summary(rollout);
            }
            println!("({} in all)", rollouts.total);
            Ok(())
        }
        RolloutCommand::Show {
            id,
            page,
            per_page,
            json,
        } => show(&api, id, query(page, per_page), json).await,
        RolloutCommand::Pause { id, note, json } => control(&api, id, "pause", &note, json).await,
        RolloutCommand::Resume { id, json } => control(&api, id, "resume", "", json).await,
        RolloutCommand::Abort { id, json } => control(&api, id, "abort", "", json).await,
    }
}

fn query(page: u32, per_page: u32) -> StackListQuery {
    StackListQuery {
        page: Some(page.to_string()),
        per_page: Some(per_page.to_string()),
    }
}

async fn show(api: &ApiClient, id: i64, query: StackListQuery, json: bool) -> Result<()> {
    let detail = api
        .rollout(id, &query)
        .await
        .map_err(|e| failed(api.base_url(), e))?;
    if json {
        return print_json(&detail);
    }
    print_summary(&detail.summary);
    println!(
        "{:<10} {:>5} {:<9} {:<8} {:>22}  REASON",
        "ENDPOINT", "WAVE", "STATE", "ONLINE", "PULLED"
    );
    for target in &detail.targets {
        let pulled = target
            .pulled
            .map(|[done, total]| format!("{done}/{total}"))
            .unwrap_or_else(|| "-".into());
        let wave = target.wave.map_or_else(|| "-".into(), |w| w.to_string());
        println!(
            "{:<10} {:>5} {:<9} {:<8} {:>22}  {}",
            target.endpoint,
            wave,
            target.state,
            if target.online { "yes" } else { "no" },
            pulled,
            text(target.reason.as_deref())
        );
    }
    Ok(())
}

async fn control(api: &ApiClient, id: i64, action: &str, note: &str, json: bool) -> Result<()> {
    let summary = api
        .control_rollout(id, action, note)
        .await
        .map_err(|e| failed(api.base_url(), e))?;
    if json {
        return print_json(&summary);
    }
    print_summary(&summary);
    Ok(())
}

fn print_summary(rollout: &RolloutSummary) {
    let counts: Vec<String> = rollout
        .counts
        .iter()
        .filter(|(state, n)| **n > 0 && state.as_str() != "total")
        .map(|(state, n)| format!("{state} {n}"))
        .collect();
    println!(
        "rollout {} {}:{} {} (wave {} of {}; {}) {} devices: {}",
        rollout.id,
        text(Some(&rollout.stack)),
        rollout.version,
        rollout.state,
        rollout.wave,
        rollout.waves,
        rollout.plan,
        rollout.counts.get("total").copied().unwrap_or_default(),
        counts.join(", ")
    );
    if let Some(reason) = &rollout.reason {
        println!("  why: {}", text(Some(reason)));
    }
}
