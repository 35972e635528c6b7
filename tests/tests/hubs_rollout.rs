//! A rollout across the hubs of one PostgreSQL store (issue #18): started on one hub for a device
//! another hub holds, steered through either hub, taken over when its hub dies. Real hubs, a
//! real agent on the local engine, the real Compose apply.
//!
//! The hub that starts a rollout coordinates it; the device's hub tells its session of the new
//! desired state when the coordinator announces it, stores the device's reports and announces
//! them back (`hub/src/fleet_relay.rs`).
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::Duration;

use outpost_api::RolloutSummary;
use outpost_tests::docker::{require_engine, TEST_IMAGE};
use outpost_tests::hubs::TwoHubs;
use outpost_tests::stacks::{self, rollout, save, ProjectCleanup};

/// An apply on a busy machine (no pull: the image is local), and a relay or two.
const CONVERGE: Duration = Duration::from_secs(90);
/// A dead hub is released after 30 s without a heartbeat, checked every 5 s.
const TAKE_OVER: Duration = Duration::from_secs(60);

fn compose(mode: &str) -> String {
    format!(
        "services:
  web:
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]
    environment:
      MODE: {mode}
"
    )
}

#[test]
fn a_rollout_started_on_one_hub_reaches_a_device_another_holds_and_survives_its_hub() {
    require_engine();
    let mut hubs = TwoHubs::start();
    let (a, b, id) = (&mut hubs.a, &hubs.b, hubs.id);
    let project = format!("till{}", std::process::id());
    let _cleanup = ProjectCleanup(project.clone());

    // v1 through hub-a, which coordinates the rollout; hub-b holds the device.
    let files = tempfile::tempdir().unwrap();
    save(a, files.path(), &project, &compose("one"));
    let endpoint = id.to_string();
    let first = stacks::deploy(a, &project, &["--endpoint", &endpoint, "--soak", "1s"]);
    let done = stacks::wait_rollout_state(a, first, "completed", CONVERGE);
    assert_eq!(done.summary.counts["healthy"], 1, "{done:#?}");
    assert_eq!(
        rollout(b, first).summary.state,
        "completed",
        "hub-b reads the same rows"
    );

    // v2 with a long soak; paused through hub-b, which forwards the command to hub-a.
    save(a, files.path(), &project, &compose("two"));
    let second = stacks::deploy(a, &project, &["--endpoint", &endpoint, "--soak", "10m"]);
    stacks::wait_rollout(a, second, CONVERGE, |d| {
        d.targets
            .first()
            .is_some_and(|t| t.state == "soaking" || t.state == "healthy")
    });
    let paused: RolloutSummary = b.cli_json(&[
        "rollout",
        "pause",
        &second.to_string(),
        "--note",
        "checked from hub-b",
        "--json",
    ]);
    assert_eq!(paused.state, "paused", "{paused:#?}");
    assert_eq!(rollout(a, second).summary.state, "paused");

    // hub-a dies: hub-b takes the rollout over once hub-a is silent, and resumes it.
    a.crash();
    let resumed = stacks::wait_rollout(b, second, TAKE_OVER, |_| {
        let answer = b.cli(&["rollout", "resume", &second.to_string(), "--json"]);
        answer.status.success()
    });
    assert_ne!(resumed.summary.state, "aborted");
    let aborted: RolloutSummary = b.cli_json(&["rollout", "abort", &second.to_string(), "--json"]);
    assert_eq!(
        aborted.state, "aborted",
        "hub-b now coordinates it: {aborted:#?}"
    );
}
