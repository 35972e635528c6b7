//! Jobs through the whole product (issue #15): the real hub queues a job for every device with a
//! tag, sends it over each agent's QUIC session, the real agents run it against the real engine
//! and report back, and `job show` says what each device did.
//!
//! - `POST /images/prune` on every `kiosk`: the online device answers at once, a device that was
//!   offline when the job was created runs it when it connects, and a device that never connects
//!   shows `expired` once the job expires. The job then finishes.
//! - A one-shot container (`run --rm`) that prints and exits 3: `failed`, exit 3, its output kept.
//! - `job cancel` of a one-shot container that runs: stopped and removed, the device `cancelled`.
//! - Every result, output included, survives a hub restart.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_api::{JobDetail, JobOutput, JobSummary};
use outpost_tests::docker::{direct, require_engine, TEST_IMAGE};
use outpost_tests::{wait_for, wait_for_result, Agent, Hub};

/// Long enough for a session, a tick and a job on a busy machine.
const SETTLE: Duration = Duration::from_secs(60);

/// The shortest expiry the hub accepts: the device that never connects waits this long.
const EXPIRES: Duration = Duration::from_secs(10);

fn show(hub: &Hub, id: i64) -> JobDetail {
    hub.cli_json(&["job", "show", &id.to_string(), "--json"])
}

/// Wait until `done` holds for the job, printing its last view if it never does.
fn wait_job(hub: &Hub, id: i64, what: &str, done: impl Fn(&JobDetail) -> bool) -> JobDetail {
    let mut last = None;
    let found = wait_for_result(SETTLE, || {
        let detail = show(hub, id);
        let ok = done(&detail);
        last = Some(detail.clone());
        ok.then_some(detail)
    });
    found.unwrap_or_else(|| panic!("job {id}: never {what}: {last:#?}"))
}

fn device(detail: &JobDetail, endpoint: u64) -> &outpost_api::JobDevice {
    detail
        .devices
        .iter()
        .find(|d| d.endpoint == endpoint)
        .unwrap_or_else(|| panic!("endpoint {endpoint} is not a target: {detail:#?}"))
}

fn start_agent(dir: &Path, key: &str) -> Agent {
    Agent::start(
        dir,
        &[
            ("EDGE_KEY", key),
            ("DOCKER_HOST", "unix:///var/run/docker.sock"),
        ],
    )
}

fn agent_dir(hub: &Hub, name: &str) -> PathBuf {
    hub.data_dir.parent().unwrap().join(name)
}

#[test]
fn a_job_reaches_online_late_and_never_seen_devices_and_its_results_survive_a_restart() {
    require_engine();
    let mut hub = Hub::start();
    let tag = ["--tag", "kiosk"];
    let (online, online_key) = hub.create_endpoint("kiosk-a", &tag);
    let (late, late_key) = hub.create_endpoint("kiosk-b", &tag);
    let (never, _) = hub.create_endpoint("kiosk-c", &tag);
    let dir_a = agent_dir(&hub, "agent-a");
    let _a = start_agent(&dir_a, &online_key);
    hub.wait_status(online, "standby", Duration::from_secs(20));

    let expires = format!("{}s", EXPIRES.as_secs());
    let created: JobSummary = hub.cli_json(&[
        "job",
        "run",
        "--tag",
        "kiosk",
        "--expires",
        &expires,
        "--json",
        "--",
        "POST",
        "/images/prune",
    ]);
    assert_eq!(created.counts["total"], 3, "{created:#?}");
    let prune = created.id;

    let detail = wait_job(&hub, prune, "succeeded on the online device", |d| {
        device(d, online).state == "succeeded"
    });
    let answered = device(&detail, online);
    assert_eq!(answered.http_status, Some(200), "{answered:#?}");
    assert_eq!(device(&detail, late).state, "queued", "offline: waits");
    // The hub acknowledged the stored result: the agent let go of it (a done marker is left).
    let done = dir_a.join("jobs").join(format!("{prune}.done"));
    wait_for(SETTLE, "the agent to be told its result is stored", || {
        done.exists().then_some(())
    });
    let output: JobOutput = hub.cli_json(&[
        "job",
        "show",
        &prune.to_string(),
        "--device",
        &online.to_string(),
        "--json",
    ]);
    assert!(
        output.head.contains("SpaceReclaimed"),
        "the engine's answer is the output: {output:#?}"
    );

    // The device that was offline runs it when it connects.
    let _b = start_agent(&agent_dir(&hub, "agent-b"), &late_key);
    wait_job(&hub, prune, "succeeded on the late device", |d| {
        device(d, late).state == "succeeded"
    });

    // The one that never connects expires, and the job is done.
    let finished = wait_job(&hub, prune, "finished", |d| d.summary.state == "finished");
    assert_eq!(device(&finished, never).state, "expired", "{finished:#?}");
    assert_eq!(
        (
            finished.summary.counts["succeeded"],
            finished.summary.counts["expired"]
        ),
        (2, 1)
    );

    // A one-shot container that prints and fails.
    let script = "echo to-stdout; echo to-stderr >&2; exit 3";
    let online_id = online.to_string();
    let run: JobSummary = hub.cli_json(&[
        "job",
        "run",
        "--endpoint",
        &online_id,
        "--json",
        "--",
        "run",
        "--rm",
        TEST_IMAGE,
        "sh",
        "-c",
        script,
    ]);
    let failed = wait_job(&hub, run.id, "failed with exit 3", |d| {
        device(d, online).state == "failed"
    });
    assert_eq!(device(&failed, online).exit_code, Some(3), "{failed:#?}");
    let printed = |hub: &Hub| -> JobOutput {
        hub.cli_json(&[
            "job",
            "show",
            &run.id.to_string(),
            "--device",
            &online_id,
            "--json",
        ])
    };
    let before = printed(&hub);
    assert!(
        before.head.contains("to-stdout") && before.head.contains("to-stderr"),
        "{before:#?}"
    );

    // Cancelling stops a one-shot container that runs the job.
    let sleeper: JobSummary = hub.cli_json(&[
        "job",
        "run",
        "--endpoint",
        &online_id,
        "--json",
        "--",
        "run",
        TEST_IMAGE,
        "sleep",
        "120",
    ]);
    wait_job(&hub, sleeper.id, "running", |d| {
        device(d, online).state == "running"
    });
    let cancelled = hub.cli(&["job", "cancel", &sleeper.id.to_string()]);
    assert!(cancelled.status.success(), "{cancelled:?}");
    let stopped = wait_job(&hub, sleeper.id, "cancelled on the device", |d| {
        device(d, online).state == "cancelled" && d.summary.finished_at.is_some()
    });
    assert_eq!(
        device(&stopped, online).outcome.as_deref(),
        Some("cancelled"),
        "{stopped:#?}"
    );
    let name = outpost_agent::job::container_name(sleeper.id as u64);
    let left = direct(&["ps", "-aq", "--filter", &format!("name=^{name}$")]);
    assert!(left.stdout.is_empty(), "its container is gone: {left:?}");

    // Results and output survive a restart of the hub.
    hub.restart();
    let after = show(&hub, prune);
    assert_eq!(after.summary.state, "finished");
    for (endpoint, state) in [
        (online, "succeeded"),
        (late, "succeeded"),
        (never, "expired"),
    ] {
        assert_eq!(device(&after, endpoint).state, state, "{after:#?}");
    }
    let kept = printed(&hub);
    assert_eq!(
        (kept.head, kept.output_bytes),
        (before.head, before.output_bytes)
    );
}
