//! `outpost-hub rollout …`: list, show (or follow, with an `indicatif` bar) and steer rollouts
//! (`stack deploy` starts them).

use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use outpost_api::{ApiClient, RolloutSummary, StackListQuery};

use super::admin::{asked, connect, failed, text};
use super::{ApiArgs, PageArgs};

/// `outpost-hub rollout …`.
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// List rollouts, newest first.
    List(PageArgs),
    /// A rollout's state, counts by state and one page of its devices.
    Show {
        /// The rollout.
        id: i64,
        /// The page of devices.
        #[command(flatten)]
        page: PageArgs,
        /// Follow it with a progress bar until it completes, pauses or is aborted.
        #[arg(long, conflicts_with = "json")]
        follow: bool,
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
    match command {
        RolloutCommand::List(page) => {
            let Some(rollouts) = asked(&api, api.rollouts(&page.query()), page.json).await? else {
                return Ok(());
            };
            for rollout in &rollouts.items {
                print_summary(rollout);
            }
            println!("({} in all)", rollouts.total);
            Ok(())
        }
        RolloutCommand::Show {
            id, follow: true, ..
        } => follow(&api, id).await,
        RolloutCommand::Show {
            id,
            page,
            follow: false,
        } => show(&api, id, page).await,
        RolloutCommand::Pause { id, note, json } => control(&api, id, "pause", &note, json).await,
        RolloutCommand::Resume { id, json } => control(&api, id, "resume", "", json).await,
        RolloutCommand::Abort { id, json } => control(&api, id, "abort", "", json).await,
    }
}

async fn show(api: &ApiClient, id: i64, page: PageArgs) -> Result<()> {
    let Some(detail) = asked(api, api.rollout(id, &page.query()), page.json).await? else {
        return Ok(());
    };
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

/// How often `--follow` asks the hub.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// `rollout show --follow`: a bar of settled devices (healthy, failed or lost) over all, with the
/// counts by state beside it, until the rollout stops running; then its summary line. Without a
/// terminal indicatif draws nothing, so the summary line is printed at each change instead.
async fn follow(api: &ApiClient, id: i64) -> Result<()> {
    let one = StackListQuery {
        page: None,
        per_page: Some("1".into()),
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} settled  {msg}")
            .map_err(|e| anyhow::anyhow!("progress style: {e}"))?,
    );
    let mut last = None;
    loop {
        let detail = api
            .rollout(id, &one)
            .await
            .map_err(|e| failed(api.base_url(), e))?;
        let summary = detail.summary;
        let count = |state: &str| summary.counts.get(state).copied().unwrap_or_default();
        bar.set_length(count("total").into());
        bar.set_position((count("healthy") + count("failed") + count("lost")).into());
        bar.set_message(counts_text(&summary));
        if bar.is_hidden() && last.as_ref() != Some(&summary) {
            print_summary(&summary);
        }
        if summary.state != "running" {
            bar.finish_and_clear();
            print_summary(&summary);
            return Ok(());
        }
        last = Some(summary);
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

async fn control(api: &ApiClient, id: i64, action: &str, note: &str, json: bool) -> Result<()> {
    let Some(summary) = asked(api, api.control_rollout(id, action, note), json).await? else {
        return Ok(());
    };
    print_summary(&summary);
    Ok(())
}

/// The non-zero counts by state: `healthy 9950, failed 10, …`.
fn counts_text(rollout: &RolloutSummary) -> String {
    let counts: Vec<String> = rollout
        .counts
        .iter()
        .filter(|(state, n)| **n > 0 && state.as_str() != "total")
        .map(|(state, n)| format!("{state} {n}"))
        .collect();
    counts.join(", ")
}

fn print_summary(rollout: &RolloutSummary) {
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
        counts_text(rollout)
    );
    if let Some(reason) = &rollout.reason {
        println!("  why: {}", text(Some(reason)));
    }
}
