//! `outpost-hub job …`: run something once on every device of a selection, list jobs, show one
//! (or follow it, with an `indicatif` bar), show one device's output, cancel.
//!
//! What to run is written after `--` the way a user would type it on the device (`exec web df
//! -h`, `run --rm busybox true`, `POST /images/prune`), parsed by clap like any subcommand and
//! checked by [`outpost_api::JobWhat::spec`] — the hub's own check — so a bad one is refused
//! here, in the hub's words, before any request.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use outpost_api::{ApiClient, JobDevice, JobOutput, JobShowQuery, JobSummary, JobWhat, NewJob};
use outpost_protocol::job::{EngineMethod, JobSpecError};

use super::admin::{asked, connect, failed, text, texts};
use super::escape::escape_controls;
use super::{ApiArgs, PageArgs, Selection};
use crate::jobs::TargetState;

/// `outpost-hub job …`.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Run something once on every device of a selection; offline devices run it when they
    /// return, until it expires.
    #[command(after_help = RUN_EXAMPLES)]
    Run(Box<RunArgs>),
    /// List jobs, newest first.
    List(PageArgs),
    /// A job's state, counts by state and one page of its devices; or one device's output.
    Show {
        /// The job.
        id: i64,
        /// Only devices in this state (queued, sent, running, succeeded, failed, expired, lost,
        /// cancelled).
        #[arg(long)]
        state: Option<String>,
        /// Show this device's outcome and output instead.
        #[arg(long, value_name = "ENDPOINT", conflicts_with_all = ["state", "follow"])]
        device: Option<u64>,
        /// The page of devices.
        #[command(flatten)]
        page: PageArgs,
        /// Follow it with a progress bar until every device has settled.
        #[arg(long, conflicts_with = "json")]
        follow: bool,
    },
    /// Cancel a job: devices that have not started it will not; running ones finish.
    Cancel {
        /// The job.
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

const RUN_EXAMPLES: &str = "Examples:
  outpost-hub job run --group stores-eu -- POST /images/prune
  outpost-hub job run --tag kiosk --timeout 1m -- exec --user root web df -h
  outpost-hub job run --endpoint 7 --endpoint 9 -- run --rm busybox:1.36 uptime
  outpost-hub job run --group lab -- POST /containers/prune '{\"filters\":{}}'";

/// `outpost-hub job run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Its devices and limits.
    #[command(flatten)]
    job: JobArgs,
    /// What to run, after `--`: `exec [--user USER] CONTAINER CMD…` (in a running container),
    /// `run [--rm] IMAGE [CMD…]` (a one-shot container, always removed), or `METHOD PATH
    /// [BODY-JSON]` (an Engine API call; METHOD is GET, POST, PUT or DELETE).
    #[arg(last = true, required = true, value_name = "WHAT")]
    what: Vec<String>,
}

/// A job's devices and limits, and how to print it (`job run`, `image pull`).
#[derive(Debug, Args)]
pub(super) struct JobArgs {
    /// The devices.
    #[command(flatten)]
    selection: Selection,
    /// How long devices that have not started it may still be sent it, from 10s to 30d (the
    /// hub's default: 24h).
    #[arg(long)]
    expires: Option<String>,
    /// Most devices running it at once, 1 to 10000 (the hub's default: 500).
    #[arg(long)]
    concurrency: Option<u32>,
    /// Longest one device may run it, from 1s to 24h (the hub's default: 10m).
    #[arg(long)]
    timeout: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// What to run, as written after `--`.
#[derive(Debug, Parser)]
#[command(name = "WHAT", no_binary_name = true, disable_help_subcommand = true)]
struct WhatLine {
    #[command(subcommand)]
    what: WhatArgs,
}

#[derive(Debug, Subcommand)]
enum WhatArgs {
    /// A command in a running container.
    #[command(disable_help_flag = true)]
    Exec {
        /// Run it as this user.
        #[arg(long, short)]
        user: Option<String>,
        /// The container.
        container: String,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// A one-shot container.
    #[command(disable_help_flag = true)]
    Run {
        /// Accepted as `docker run` spells it: the container is always removed.
        #[arg(long)]
        rm: bool,
        /// The image.
        image: String,
        /// The command and its arguments (the image's own when none).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// An Engine API call: METHOD PATH [BODY-JSON].
    #[command(external_subcommand)]
    Engine(Vec<String>),
}

/// Run a job command.
pub async fn run(args: &ApiArgs, command: JobCommand) -> Result<()> {
    let api = || connect(args);
    match command {
        JobCommand::Run(run) => {
            // A bad job is refused before anything else, an unreachable hub included.
            let what = what_of(&run.what)?;
            create(&api()?, *run, what).await
        }
        JobCommand::List(page) => list(&api()?, page).await,
        JobCommand::Show {
            id, follow: true, ..
        } => follow(&api()?, id).await,
        JobCommand::Show {
            id,
            device: Some(endpoint),
            page,
            ..
        } => device_output(&api()?, id, endpoint, page.json).await,
        JobCommand::Show {
            id, state, page, ..
        } => show(&api()?, id, state, page).await,
        JobCommand::Cancel { id, json } => cancel(&api()?, id, json).await,
    }
}

/// The job written after `--`, checked as the hub checks it.
fn what_of(words: &[String]) -> Result<JobWhat> {
    let line = WhatLine::try_parse_from(words).map_err(|e| {
        let message = e.to_string();
        let message = message.trim_start_matches("error: ").trim_end();
        anyhow!("what to run (after --) is not understood: {message}")
    })?;
    let what = match line.what {
        WhatArgs::Exec {
            user,
            container,
            cmd,
        } => JobWhat::Exec {
            container,
            cmd,
            user,
        },
        WhatArgs::Run { rm: _, image, cmd } => JobWhat::Run { image, cmd },
        WhatArgs::Engine(words) => engine_of(&words)?,
    };
    what.spec()?;
    Ok(what)
}

/// `METHOD PATH [BODY-JSON]`.
fn engine_of(words: &[String]) -> Result<JobWhat> {
    let Some((method, rest)) = words.split_first() else {
        bail!("say what to run after --");
    };
    if EngineMethod::parse(method).is_none() {
        bail!(
            "{:?} is neither exec, run nor an Engine API method (GET, POST, PUT or DELETE)",
            escape_controls(method)
        );
    }
    let (path, body) = match rest {
        [path] => (path, None),
        [path, body] => (path, Some(body)),
        _ => bail!("an Engine API call is METHOD PATH [BODY-JSON]"),
    };
    let body = body
        .map(|text| serde_json::from_str(text))
        .transpose()
        .map_err(|e| JobSpecError::BadBody(e.to_string()))?;
    Ok(JobWhat::Engine {
        method: method.clone(),
        path: path.clone(),
        body,
    })
}

/// Create the job `what` as `args` ask; `None` once it is printed as JSON.
pub(super) async fn create_job(
    api: &ApiClient,
    args: JobArgs,
    what: JobWhat,
) -> Result<Option<JobSummary>> {
    let Selection {
        groups,
        tags,
        endpoints,
    } = args.selection;
    let new = NewJob {
        groups,
        tags,
        endpoints,
        what,
        expires: args.expires,
        concurrency: args.concurrency,
        timeout: args.timeout,
    };
    asked(api, api.create_job(&new), args.json).await
}

async fn create(api: &ApiClient, run: RunArgs, what: JobWhat) -> Result<()> {
    let Some(job) = create_job(api, run.job, what).await? else {
        return Ok(());
    };
    println!(
        "job {} created for {} devices: {}; follow it with `outpost-hub job show {} --follow`",
        job.id,
        count(&job, "total"),
        text(Some(&job.what)),
        job.id
    );
    Ok(())
}

async fn cancel(api: &ApiClient, id: i64, json: bool) -> Result<()> {
    let Some(summary) = asked(api, api.cancel_job(id), json).await? else {
        return Ok(());
    };
    print_summary(&summary);
    Ok(())
}

async fn list(api: &ApiClient, page: PageArgs) -> Result<()> {
    let Some(jobs) = asked(api, api.jobs(&page.query()), page.json).await? else {
        return Ok(());
    };
    println!(
        "{:<6} {:<9} {:>7} {:>9} {:>6} {:>6} {:>7} {:>6} {:>11}  WHAT",
        "ID", "STATE", "DEVICES", "SUCCEEDED", "FAILED", "QUEUED", "RUNNING", "ENDED", "CREATED"
    );
    for job in &jobs.items {
        println!(
            "{:<6} {:<9} {:>7} {:>9} {:>6} {:>6} {:>7} {:>6} {:>11}  {}",
            job.id,
            job.state,
            count(job, "total"),
            count(job, "succeeded"),
            count(job, "failed"),
            count(job, "queued"),
            count(job, "sent") + count(job, "running"),
            count(job, "expired") + count(job, "lost") + count(job, "cancelled"),
            job.created_at,
            text(Some(&job.what))
        );
    }
    println!("({} in all)", jobs.total);
    Ok(())
}

async fn show(api: &ApiClient, id: i64, state: Option<String>, page: PageArgs) -> Result<()> {
    let query = JobShowQuery {
        page: Some(page.page.to_string()),
        per_page: Some(page.per_page.to_string()),
        state,
    };
    let Some(detail) = asked(api, api.job(id, &query), page.json).await? else {
        return Ok(());
    };
    let job = &detail.summary;
    print_summary(job);
    println!(
        "  concurrency {}, timeout {}, created {}, expires {}, finished {}; groups {}, tags {}, endpoints {}",
        job.concurrency,
        job.timeout,
        job.created_at,
        job.expires_at,
        text(job.finished_at.map(|t| t.to_string()).as_deref()),
        texts(&job.groups),
        texts(&job.tags),
        texts(&job.endpoints.iter().map(u64::to_string).collect::<Vec<_>>()),
    );
    println!(
        "{:<10} {:<24} {:<9} {:>9}  OUTCOME",
        "ENDPOINT", "NAME", "STATE", "DURATION"
    );
    for device in &detail.devices {
        println!(
            "{:<10} {:<24} {:<9} {:>9}  {}",
            device.endpoint,
            text(device.name.as_deref()),
            device.state,
            duration_text(device),
            outcome_text(device)
        );
    }
    Ok(())
}

/// How it ended, or how far an image pull has come while it runs.
fn outcome_text(device: &JobDevice) -> String {
    match (&device.outcome, device.progress) {
        (None, Some(p)) => match p.deferred {
            Some(cause) => format!(
                "deferred: {} ({} of {} bytes pulled)",
                cause.as_str(),
                p.done,
                p.total
            ),
            None => format!("pulling: {} of {} bytes", p.done, p.total),
        },
        (outcome, _) => text(outcome.as_deref()),
    }
}

fn duration_text(device: &JobDevice) -> String {
    match device.duration_ms {
        None => "-".into(),
        Some(ms) if ms < 1000 => format!("{ms}ms"),
        Some(ms) => format!("{:.1}s", Duration::from_millis(ms).as_secs_f64()),
    }
}

/// `job show ID --device EP`: the device's row, then its output with what was not kept marked.
async fn device_output(api: &ApiClient, id: i64, endpoint: u64, json: bool) -> Result<()> {
    let Some(output) = asked(api, api.job_output(id, endpoint), json).await? else {
        return Ok(());
    };
    let device = &output.device;
    let mut line = format!(
        "job {id} on endpoint {} ({}): {}",
        device.endpoint,
        text(device.name.as_deref()),
        device.state
    );
    if let Some(outcome) = &device.outcome {
        line += &format!(", {}", text(Some(outcome)));
    }
    if device.duration_ms.is_some() {
        line += &format!(" after {}", duration_text(device));
    }
    println!("{line}; {} output bytes", output.output_bytes);
    print_output(&output);
    Ok(())
}

/// The kept output, escaped line by line; a head and tail that meet are one text.
fn print_output(output: &JobOutput) {
    let print = |part: &str| {
        part.lines()
            .for_each(|l| println!("{}", escape_controls(l)))
    };
    if output.omitted == 0 {
        return print(&format!("{}{}", output.head, output.tail));
    }
    print(&output.head);
    println!("… {} bytes omitted …", output.omitted);
    print(&output.tail);
}

/// How often `--follow` asks the hub.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// `job show --follow`: a bar of settled devices over all, with the counts by state beside it,
/// until every device has settled; then its summary line. Without a terminal indicatif draws
/// nothing, so the summary line is printed at each change instead.
pub(super) async fn follow(api: &ApiClient, id: i64) -> Result<()> {
    let one = JobShowQuery {
        per_page: Some("1".into()),
        ..JobShowQuery::default()
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} settled  {msg}")
            .map_err(|e| anyhow!("progress style: {e}"))?,
    );
    let mut last = None;
    loop {
        let job = api
            .job(id, &one)
            .await
            .map_err(|e| failed(api.base_url(), e))?
            .summary;
        bar.set_length(count(&job, "total").into());
        bar.set_position(settled(&job).into());
        bar.set_message(counts_text(&job));
        if bar.is_hidden() && last.as_ref() != Some(&job) {
            print_summary(&job);
        }
        if job.finished_at.is_some() {
            bar.finish_and_clear();
            print_summary(&job);
            return Ok(());
        }
        last = Some(job);
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

/// Devices in a state nothing more happens in.
fn settled(job: &JobSummary) -> u32 {
    TargetState::ALL
        .into_iter()
        .filter(|s| s.settled())
        .map(|s| count(job, s.as_str()))
        .sum()
}

fn count(job: &JobSummary, state: &str) -> u32 {
    job.counts.get(state).copied().unwrap_or_default()
}

/// The non-zero counts by state: `succeeded 9950, failed 10, …`.
fn counts_text(job: &JobSummary) -> String {
    let counts: Vec<String> = TargetState::ALL
        .into_iter()
        .map(|s| (s.as_str(), count(job, s.as_str())))
        .filter(|(_, n)| *n > 0)
        .map(|(state, n)| format!("{state} {n}"))
        .collect();
    counts.join(", ")
}

fn print_summary(job: &JobSummary) {
    println!(
        "job {} {}: {}; {} devices: {}",
        job.id,
        job.state,
        text(Some(&job.what)),
        count(job, "total"),
        counts_text(job)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn what(line: &str) -> Result<JobWhat> {
        let words: Vec<String> = line.split(' ').map(str::to_owned).collect();
        what_of(&words)
    }

    #[test]
    fn each_kind_reads_as_typed() {
        let exec = what("exec --user root web df -h").expect("exec");
        let expected = JobWhat::Exec {
            container: "web".into(),
            cmd: vec!["df".into(), "-h".into()],
            user: Some("root".into()),
        };
        assert_eq!(exec, expected);
        let run = what("run --rm busybox ls -l /").expect("run");
        assert!(matches!(run, JobWhat::Run { image, cmd } if image == "busybox" && cmd.len() == 3));
        let prune = what("POST /images/prune").expect("engine");
        assert!(matches!(prune, JobWhat::Engine { body: None, .. }));
        let with_body = what(r#"POST /containers/prune {"filters":{}}"#).expect("body");
        assert!(matches!(with_body, JobWhat::Engine { body: Some(_), .. }));
    }

    #[test]
    fn a_bad_job_is_refused_in_the_hubs_words() {
        let refused = |line: &str| what(line).expect_err(line).to_string();
        assert!(refused("exec web").contains("the job is empty: no command"));
        assert!(refused("run").contains("IMAGE"));
        assert!(refused("POST /images/prune nope").contains("the Engine API body is not JSON"));
        assert!(refused("GET /containers/x/attach").contains("is not allowed"));
        assert!(refused("PATCH /x").contains("neither exec, run nor an Engine API method"));
        assert!(refused("exce web ls").contains("neither exec, run nor"));
        assert!(refused("GET /info {} extra").contains("METHOD PATH [BODY-JSON]"));
    }
}
