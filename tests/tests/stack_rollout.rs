//! A stack rolled out through the whole product (issue #15): the real hub stores it, a rollout
//! assigns it, the hub delivers it over the agent's QUIC session, the real agent applies it to the
//! real engine and reports back, and `rollout show` / `endpoint show` say what the engine runs.
//!
//! - v1 (two services: one with a healthcheck, a named volume and a published port) ends
//!   `healthy` and `completed`; the engine runs both services with Compose's labels. (Groups,
//!   offline devices and late joiners: `stack_fleet.rs`.)
//! - v2 changes one service only: the other keeps its container.
//! - v3 names an image that does not exist: the device reports the engine's message, the
//!   rollout (`--waves 1,100% --max-failures 0`) pauses saying so, and v2 still runs.
//! - Removing a container by hand: the device reports drift, re-applies, and is healthy again;
//!   under `--on-drift report` it reports the drift and leaves the device as it is.
//! - A new version whose healthcheck fails is rolled back to the one it replaced.
//! - v5 names a device the host lacks: the engine refuses web's new container, the device puts
//!   the previous one back and reports `rolled_back` with the engine's words.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::process::Command;
use std::time::Duration;

use outpost_api::{EndpointDetail, RolloutDetail, RolloutSummary};
use outpost_tests::docker::{direct, require_engine, DOCKER_SOCKET, TEST_IMAGE};
use outpost_tests::stacks::{self, project_rows, rollout, save, ProjectCleanup};
use outpost_tests::{bin_dir, wait_for, Agent, Hub};

/// Long enough for an apply on a busy machine (no pull: the image is local).
const CONVERGE: Duration = Duration::from_secs(90);

/// A stack whose services exit at once on SIGTERM (busybox `sleep` and `httpd` as PID 1 ignore
/// it, and every replace would wait out the stop timeout).
fn compose(port: u16, web_env: &str, db_image: &str) -> String {
    format!(
        "services:
  db:
    image: {db_image}
    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]
    volumes: [\"data:/data\"]
  web:
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; mkdir -p /www; httpd -f -p 80 -h /www & wait\"]
    environment:
      MODE: {web_env}
    ports: [\"127.0.0.1:{port}:80\"]
    depends_on: [db]
    healthcheck:
      test: [\"CMD-SHELL\", \"true\"]
      interval: 1s
      retries: 2
volumes:
  data: {{}}
"
    )
}

/// `stack deploy STACK --endpoint ID PLAN…`: the rollout's id.
fn deploy(hub: &Hub, stack: &str, id: u64, plan: &[&str]) -> i64 {
    let id = id.to_string();
    let mut args = vec!["--endpoint", id.as_str()];
    args.extend_from_slice(plan);
    stacks::deploy(hub, stack, &args)
}

/// Wait for the rollout to reach `state`, printing its last view if it does not.
fn wait_rollout(hub: &Hub, id: i64, state: &str) -> RolloutDetail {
    stacks::wait_rollout_state(hub, id, state, CONVERGE)
}

/// `service container-id` of the project's running containers, by service.
fn running(project: &str) -> Vec<(String, String)> {
    let engine = format!("unix://{DOCKER_SOCKET}");
    let rows = project_rows(&engine, project).expect("the engine answers");
    let live = rows.into_iter().filter(|r| r.state == "running");
    live.map(|r| (r.service, r.id)).collect()
}

/// A device named `name` with a real agent on the main engine, connected.
fn device(hub: &Hub, name: &str) -> (u64, Agent) {
    let (endpoint, key) = hub.create_endpoint(name, &[]);
    let agent_dir = hub.data_dir.parent().unwrap().join("agent");
    let agent = Agent::start(
        &agent_dir,
        &[
            ("EDGE_KEY", &key),
            ("DOCKER_HOST", "unix:///var/run/docker.sock"),
        ],
    );
    hub.wait_status(endpoint, "standby", Duration::from_secs(20));
    (endpoint, agent)
}

#[test]
fn a_stack_rolls_out_upgrades_one_service_fails_safely_and_repairs_drift() {
    require_engine();
    let hub = Hub::start();
    let (endpoint, _agent) = device(&hub, "kiosk");
    let project = format!("pos{}", std::process::id());
    let _cleanup = ProjectCleanup(project.clone());
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    let dir = tempfile::tempdir().unwrap();

    // v1: rolled out, applied, healthy.
    save(
        &hub,
        dir.path(),
        &project,
        &compose(port, "one", TEST_IMAGE),
    );
    let first = deploy(&hub, &project, endpoint, &["--soak", "2s"]);
    let done = wait_rollout(&hub, first, "completed");
    assert_eq!(done.summary.counts["healthy"], 1, "{done:#?}");
    assert_eq!(done.targets[0].state, "healthy");
    let v1 = running(&project);
    let services: Vec<&str> = v1.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        services,
        ["db", "web"],
        "both services run under the project's label"
    );
    let detail: EndpointDetail =
        hub.cli_json(&["endpoint", "show", &endpoint.to_string(), "--json"]);
    assert_eq!(detail.stacks.len(), 1);
    assert_eq!(
        (detail.stacks[0].version, detail.stacks[0].phase.as_str()),
        (1, "healthy")
    );

    // v2 changes web only: db keeps its container.
    save(
        &hub,
        dir.path(),
        &project,
        &compose(port, "two", TEST_IMAGE),
    );
    let second = deploy(&hub, &project, endpoint, &["--soak", "2s"]);
    // Followed until it stops running (no terminal here: a summary line per change, then the last).
    let followed = Command::new("timeout")
        .arg(CONVERGE.as_secs().to_string())
        .arg(bin_dir().join("outpost-hub"))
        .args([
            "rollout",
            "show",
            &second.to_string(),
            "--follow",
            "--data-dir",
        ])
        .arg(&hub.data_dir)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&followed.stdout);
    assert!(followed.status.success(), "{printed}");
    let last = printed.lines().last().unwrap_or_default();
    assert!(
        last.contains(" completed ") && last.contains("healthy 1"),
        "{printed}"
    );
    let v2 = running(&project);
    assert_eq!(v2[0], v1[0], "db was not touched");
    assert_ne!(v2[1].1, v1[1].1, "web was replaced");

    // v3 names an image the engine cannot get: the rollout pauses with the engine's message and
    // v2 still runs, untouched.
    save(
        &hub,
        dir.path(),
        &project,
        &compose(port, "two", "outpost-test/does-not-exist:3"),
    );
    let third = deploy(
        &hub,
        &project,
        endpoint,
        &["--waves", "1,100%", "--max-failures", "0", "--soak", "2s"],
    );
    let paused = wait_rollout(&hub, third, "paused");
    let reason = paused.summary.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("wave 1: 1 of 1 devices failed") && reason.contains("does-not-exist"),
        "the pause names the failure and the engine's message: {reason}"
    );
    assert_eq!(paused.targets[0].state, "failed");
    assert_eq!(
        running(&project),
        v2,
        "the previous version still runs, the same containers"
    );

    // Drift: v2 is what the device runs; put it back as the desired state, then remove a
    // container by hand. (Aborting v3 first: one rollout of a stack at a time.)
    hub.cli_json::<RolloutSummary>(&["rollout", "abort", &third.to_string(), "--json"]);
    save(
        &hub,
        dir.path(),
        &project,
        &compose(port, "two", TEST_IMAGE),
    );
    let fourth = deploy(&hub, &project, endpoint, &["--soak", "2s"]);
    wait_rollout(&hub, fourth, "completed");
    let web = running(&project)[1].1.clone();
    let removed = direct(&["rm", "-f", &web]);
    assert!(removed.status.success());
    let repaired = wait_for(CONVERGE, "the drifted service to be re-created", || {
        let now = running(&project);
        (now.len() == 2 && now[1].1 != web).then_some(now)
    });
    assert_eq!(
        repaired[0], v2[0],
        "only the removed service was re-created"
    );

    // A version the engine refuses after web's container was replaced (a device that does not
    // exist): the device puts the previous web back and reports `rolled_back` with the engine's
    // words; the rollout pauses on it.
    let missing_device = compose(port, "two", TEST_IMAGE).replace(
        "    depends_on: [db]",
        "    depends_on: [db]\n    devices: [\"/dev/outpost-missing:/dev/outpost-missing\"]",
    );
    save(&hub, dir.path(), &project, &missing_device);
    let fifth = deploy(
        &hub,
        &project,
        endpoint,
        &["--waves", "1,100%", "--max-failures", "0", "--soak", "2s"],
    );
    let paused = wait_rollout(&hub, fifth, "paused");
    let target = &paused.targets[0];
    assert_eq!(target.state, "rolled_back", "{paused:#?}");
    assert!(
        target
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("outpost-missing")),
        "the engine's reason: {paused:#?}"
    );
    assert_eq!(paused.summary.counts["rolled_back"], 1);
    assert_eq!(
        running(&project),
        repaired,
        "the previous version runs again, in its own containers"
    );
}

/// `--on-drift report`: a container removed by hand is reported `drifted` and left alone; the
/// same version deployed again with `--on-drift reapply` (the policy alone changed) re-creates it.
#[test]
fn drift_is_only_reported_under_on_drift_report_until_the_policy_changes() {
    require_engine();
    let hub = Hub::start();
    let (endpoint, _agent) = device(&hub, "till");
    let project = format!("till{}", std::process::id());
    let _cleanup = ProjectCleanup(project.clone());
    let port = 40_000 + (std::process::id() % 20_000) as u16;
    let dir = tempfile::tempdir().unwrap();
    save(
        &hub,
        dir.path(),
        &project,
        &compose(port, "one", TEST_IMAGE),
    );

    let reported = deploy(
        &hub,
        &project,
        endpoint,
        &["--soak", "2s", "--on-drift", "report"],
    );
    let done = wait_rollout(&hub, reported, "completed");
    assert!(done.summary.plan.contains("on-drift report"), "{done:#?}");
    let v1 = running(&project);
    let web = v1[1].1.clone();
    assert!(direct(&["rm", "-f", &web]).status.success());

    let drifted = wait_for(CONVERGE, "the device to report the drift", || {
        let detail = rollout(&hub, reported);
        (detail.targets[0].state == "drifted").then_some(detail)
    });
    let reason = drifted.targets[0].reason.clone().unwrap_or_default();
    assert!(
        reason.contains("web"),
        "the drift names the service: {reason}"
    );
    // Re-applying would have re-created web within a second or two of the report.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        running(&project),
        v1[..1],
        "web left as the technician left it, db untouched"
    );
    let detail: EndpointDetail =
        hub.cli_json(&["endpoint", "show", &endpoint.to_string(), "--json"]);
    assert_eq!(detail.stacks[0].phase, "drifted", "{detail:#?}");

    // The same version, re-applied on drift: only the policy changed, and that reaches the
    // device like a new version.
    let reapplied = deploy(&hub, &project, endpoint, &["--soak", "2s"]);
    let done = wait_rollout(&hub, reapplied, "completed");
    assert!(done.summary.plan.contains("on-drift reapply"), "{done:#?}");
    let repaired = running(&project);
    assert_eq!(repaired.len(), 2, "web is back: {repaired:?}");
    assert_eq!(repaired[0], v1[0], "db kept its container");
}

/// A new version whose healthcheck fails before it was ever healthy is rolled back to the one it
/// replaced; the device reports `rolled_back` for the new version and keeps saying so while the
/// old one runs healthy.
#[test]
fn an_unhealthy_new_version_is_rolled_back_to_the_one_it_replaced() {
    require_engine();
    let hub = Hub::start();
    let (endpoint, _agent) = device(&hub, "signage");
    let project = format!("sign{}", std::process::id());
    let _cleanup = ProjectCleanup(project.clone());
    let port = 30_000 + (std::process::id() % 10_000) as u16;
    let dir = tempfile::tempdir().unwrap();
    save(
        &hub,
        dir.path(),
        &project,
        &compose(port, "one", TEST_IMAGE),
    );
    let first = deploy(&hub, &project, endpoint, &["--soak", "2s"]);
    wait_rollout(&hub, first, "completed");
    let v1 = running(&project);
    let v1_web_hash = config_hash(&v1[1].1);

    let failing = compose(port, "two", TEST_IMAGE).replace(
        "test: [\"CMD-SHELL\", \"true\"]",
        "test: [\"CMD-SHELL\", \"false\"]",
    );
    save(&hub, dir.path(), &project, &failing);
    let second = deploy(
        &hub,
        &project,
        endpoint,
        &["--waves", "1,100%", "--max-failures", "0", "--soak", "2s"],
    );
    let paused = wait_rollout(&hub, second, "paused");
    let target = &paused.targets[0];
    assert_eq!(target.state, "rolled_back", "{paused:#?}");
    let reason = target.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("service web is unhealthy") && reason.contains("version 1 runs again"),
        "{reason}"
    );
    let after = running(&project);
    assert_eq!(after[0], v1[0], "db was never touched");
    assert_eq!(
        config_hash(&after[1].1),
        v1_web_hash,
        "web runs version 1's configuration again"
    );

    // Version 1 runs healthy now; the device still reports version 2 rolled back.
    std::thread::sleep(Duration::from_secs(5));
    let detail: EndpointDetail =
        hub.cli_json(&["endpoint", "show", &endpoint.to_string(), "--json"]);
    assert_eq!(
        (detail.stacks[0].version, detail.stacks[0].phase.as_str()),
        (2, "rolled_back"),
        "{detail:#?}"
    );
}

/// The Compose config hash label of a container.
fn config_hash(container: &str) -> String {
    let out = direct(&[
        "inspect",
        "--format",
        "{{index .Config.Labels \"com.docker.compose.config-hash\"}}",
        container,
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
