//! Jobs across the hubs of one PostgreSQL store (issue #18: "any hub accepts any admin request"):
//! a job created on one hub for a device another hub holds runs there and its output shows
//! through the first; a cancel through the device's hub reaches the job's coordinator; a
//! restarted hub dispatches nothing twice; when the coordinator is killed, the survivor takes the
//! job over and finishes it. Real hubs, a real agent on the local engine.
//!
//! The hub a job is created on coordinates it; the device's hub sends it the order read from the
//! store, stores what the device did and announces it back (`hub/src/job_relay.rs`).
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::Duration;

use outpost_api::{JobDetail, JobOutput, JobSummary};
use outpost_tests::docker::{direct, require_engine, TEST_IMAGE};
use outpost_tests::hubs::{hub_flags, TwoHubs};
use outpost_tests::{wait_for_result, Hub};

/// A session, a tick, a relay or two and a job on a busy machine.
const SETTLE: Duration = Duration::from_secs(60);
/// A dead hub is released after 30 s without a heartbeat, checked every 5 s.
const TAKE_OVER: Duration = Duration::from_secs(90);

fn show(hub: &Hub, id: i64) -> JobDetail {
    hub.cli_json(&["job", "show", &id.to_string(), "--json"])
}

/// Wait until `done` holds for the job as `hub` shows it, printing its last view if it never does.
fn wait_job(
    hub: &Hub,
    id: i64,
    within: Duration,
    what: &str,
    done: impl Fn(&JobDetail) -> bool,
) -> JobDetail {
    let mut last = None;
    let found = wait_for_result(within, || {
        let detail = show(hub, id);
        let ok = done(&detail);
        last = Some(detail.clone());
        ok.then_some(detail)
    });
    found.unwrap_or_else(|| panic!("job {id}: never {what}: {last:#?}"))
}

fn state(detail: &JobDetail) -> &str {
    detail.devices.first().map_or("", |d| d.state.as_str())
}

/// `job run --endpoint ENDPOINT -- WHAT…` through `hub`.
fn run(hub: &Hub, endpoint: &str, what: &[&str]) -> JobSummary {
    let mut args = vec!["job", "run", "--endpoint", endpoint, "--json", "--"];
    args.extend_from_slice(what);
    hub.cli_json(&args)
}

/// A container the exec jobs run in, removed when the test ends.
struct Helper(String);

impl Helper {
    fn start() -> Self {
        let name = format!("hubs-jobs-{}", std::process::id());
        let _ = direct(&["rm", "-f", &name]);
        let out = direct(&["run", "-d", "--name", &name, TEST_IMAGE, "sleep", "3600"]);
        assert!(out.status.success(), "{out:?}");
        Self(name)
    }

    /// How many times the exec jobs appended to `file`.
    fn runs(&self, file: &str) -> usize {
        let out = direct(&["exec", &self.0, "cat", file]);
        String::from_utf8_lossy(&out.stdout).lines().count()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = direct(&["rm", "-f", &self.0]);
    }
}

#[test]
fn a_job_created_on_one_hub_runs_on_a_device_another_holds_and_survives_its_coordinator() {
    require_engine();
    let mut hubs = TwoHubs::start();
    let (a, b, id) = (&mut hubs.a, &mut hubs.b, hubs.id);
    let endpoint = id.to_string();
    let helper = Helper::start();

    // Created on hub-a, which coordinates it; run by the device hub-b holds; seen through hub-a.
    let echo = run(
        a,
        &endpoint,
        &["run", "--rm", TEST_IMAGE, "echo", "from-hub-b"],
    );
    let done = wait_job(a, echo.id, SETTLE, "finished", |d| {
        d.summary.state == "finished"
    });
    assert_eq!(state(&done), "succeeded", "{done:#?}");
    let output: JobOutput = a.cli_json(&[
        "job",
        "show",
        &echo.id.to_string(),
        "--device",
        &endpoint,
        "--json",
    ]);
    assert!(output.head.contains("from-hub-b"), "{output:#?}");

    // Cancelled through hub-b: forwarded to hub-a, which tells hub-b's session to stop it.
    let sleeper = run(a, &endpoint, &["run", TEST_IMAGE, "sleep", "120"]);
    // Running as its coordinator counts it (in memory, a tick behind hub-b's rows).
    wait_job(b, sleeper.id, SETTLE, "running", |d| state(d) == "running");
    wait_job(a, sleeper.id, SETTLE, "counted running on hub-a", |d| {
        d.summary.counts["running"] == 1
    });
    let cancelled: JobSummary = b.cli_json(&["job", "cancel", &sleeper.id.to_string(), "--json"]);
    assert_eq!(cancelled.state, "cancelled", "{cancelled:#?}");
    let stopped = wait_job(a, sleeper.id, SETTLE, "cancelled on the device", |d| {
        state(d) == "cancelled" && d.summary.finished_at.is_some()
    });
    assert_eq!(
        stopped.devices[0].outcome.as_deref(),
        Some("cancelled"),
        "the device stopped it: {stopped:#?}"
    );

    // hub-b restarts while the device runs hub-a's job: it takes no job over, and the device
    // runs the job once.
    let once = "sleep 8; echo ran >> /tmp/once";
    let exec = run(a, &endpoint, &["exec", &helper.0, "sh", "-c", once]);
    wait_job(a, exec.id, SETTLE, "running", |d| state(d) == "running");
    let flags = hub_flags(&hubs.db, "hub-b");
    b.restart_with(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    let ran = wait_job(a, exec.id, SETTLE, "finished", |d| {
        d.summary.state == "finished"
    });
    assert_eq!(state(&ran), "succeeded", "{ran:#?}");
    assert_eq!(helper.runs("/tmp/once"), 1, "the device ran it once");
    assert!(
        !b.log().contains("took over the jobs"),
        "a restarted hub leaves a live hub's jobs alone"
    );

    // hub-a, which coordinates the next job, is killed while the device runs it (wherever the
    // restart handed it to): hub-b takes the job over once hub-a is silent, and finishes it.
    let long = "sleep 15; echo ran >> /tmp/taken";
    let taken = run(a, &endpoint, &["exec", &helper.0, "sh", "-c", long]);
    wait_job(a, taken.id, SETTLE, "running", |d| state(d) == "running");
    a.crash();
    let finished = wait_job(b, taken.id, TAKE_OVER, "finished by hub-b", |d| {
        d.summary.state == "finished"
    });
    assert_eq!(state(&finished), "succeeded", "{finished:#?}");
    assert_eq!(helper.runs("/tmp/taken"), 1, "the device ran it once");
    assert!(b.log().contains("took over the jobs of a hub that died"));
}
