//! The job runner on the machine's real dockerd (run scripts/docker-setup.sh as root first),
//! driven as a session drives it — orders in, messages out — without a hub: what a fleet user
//! sees of an exec, a one-shot container and an Engine API call on one device, and that a job
//! runs at most once however often it is offered.
//!
//! Job ids are the test process's id and a number, so one-shot container names
//! (`outpost-job-<id>`) never meet another run's on the shared engine.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use outpost_agent::docker_host::DockerHost;
use outpost_agent::job::{container_name, JobMail, JobRunner, MAX_RUNNING};
use outpost_protocol::job::{
    EngineMethod, JobOrder, JobOutcome, JobResult, JobSpec, MAX_OUTPUT_PART,
};
use outpost_protocol::wire::AgentMessage;

const SOCKET: &str = "/var/run/docker.sock";
const IMAGE: &str = "outpost-test/busybox:latest";
const ADVICE: &str = "run scripts/docker-setup.sh (as root) first";

/// Longest a message the runner owes may take: every job here ends within seconds.
const PATIENCE: Duration = Duration::from_secs(30);

/// One device's runner with a session attached, its journal in a directory of its own.
struct Device {
    runner: JobRunner,
    mail: JobMail,
    journal: tempfile::TempDir,
    started: Vec<u64>,
    /// Results that came while another was awaited.
    results: Vec<JobResult>,
}

impl Device {
    fn new() -> Self {
        assert!(
            Path::new(SOCKET).exists(),
            "no Docker engine at {SOCKET}: {ADVICE}"
        );
        assert!(
            docker(&["image", "inspect", IMAGE]).status.success(),
            "no {IMAGE} on the engine: {ADVICE}"
        );
        let journal = tempfile::tempdir().unwrap();
        Self::restarted(journal)
    }

    /// The agent restarted on the same journal: a new runner, a new session.
    fn restarted(journal: tempfile::TempDir) -> Self {
        let host = DockerHost::Unix(SOCKET.into());
        let runner = JobRunner::start(host, journal.path()).unwrap();
        let mail = runner.attach();
        Self {
            runner,
            mail,
            journal,
            started: Vec::new(),
            results: Vec::new(),
        }
    }

    /// The next message for the hub.
    async fn next(&mut self) -> AgentMessage {
        let next = tokio::time::timeout(PATIENCE, self.mail.recv()).await;
        next.expect("no message from the runner in time").unwrap()
    }

    /// Whether a message comes within `wait`.
    async fn quiet_for(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.mail.recv()).await.is_err()
    }

    /// The result of job `id`, noting the jobs that start meanwhile.
    async fn result(&mut self, id: u64) -> JobResult {
        loop {
            if let Some(at) = self.results.iter().position(|r| r.id == id) {
                return self.results.remove(at);
            }
            match self.next().await {
                AgentMessage::JobStarted { id } => self.started.push(id),
                AgentMessage::JobResult(result) => {
                    result.check().unwrap();
                    self.results.push(result);
                }
                other => panic!("not a job message: {other:?}"),
            }
        }
    }

    /// Offer `spec` as job `id`, due within a minute, and wait for its result.
    async fn run(&mut self, id: u64, spec: JobSpec) -> JobResult {
        self.runner.offer(order(id, spec));
        self.result(id).await
    }
}

/// A job id no other test process uses.
fn job_id(n: u64) -> u64 {
    (u64::from(std::process::id()) << 16) + n
}

fn order(id: u64, spec: JobSpec) -> JobOrder {
    JobOrder {
        id,
        spec,
        expires_in_ms: 60_000,
        timeout_ms: 30_000,
    }
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

fn exec(container: &str, script: &str) -> JobSpec {
    JobSpec::Exec {
        container: container.to_owned(),
        cmd: strings(&["sh", "-c", script]),
        user: None,
    }
}

fn one_shot(script: &str) -> JobSpec {
    JobSpec::Run {
        image: IMAGE.to_owned(),
        cmd: strings(&["sh", "-c", script]),
    }
}

fn text(result: &JobResult) -> String {
    String::from_utf8_lossy(&[result.head.as_slice(), &result.tail].concat()).into_owned()
}

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("docker: {e}: {ADVICE}"))
}

fn container_exists(name: &str) -> bool {
    docker(&["container", "inspect", name]).status.success()
}

/// A running container of the test's own for exec jobs, removed when dropped.
struct Target {
    name: String,
}

impl Target {
    fn start(test: &str) -> Self {
        let name = format!("outpost-job-target-{test}-{}", std::process::id());
        docker(&["rm", "-f", &name]); // a leftover of a killed run with the same pid
        let script = "trap 'exit 0' TERM; sleep 600 & wait";
        let started = docker(&["run", "-d", "--name", &name, IMAGE, "sh", "-c", script]);
        assert!(started.status.success(), "{started:?}");
        Self { name }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        docker(&["rm", "-f", &self.name]);
    }
}

#[tokio::test]
async fn an_exec_reports_its_exit_code_and_what_it_printed_on_stdout_and_stderr() {
    let target = Target::start("exec");
    let mut device = Device::new();
    let id = job_id(1);

    let result = device
        .run(id, exec(&target.name, "echo out; echo err >&2; exit 3"))
        .await;

    assert_eq!(result.outcome, JobOutcome::Exited(3));
    assert_eq!(device.started, [id]);
    let output = text(&result);
    assert!(
        output.contains("out\n") && output.contains("err\n"),
        "{output:?}"
    );
    assert_eq!(result.output_bytes, 8);
}

#[tokio::test]
async fn a_one_shot_container_keeps_the_first_and_last_64_kib_of_its_output_and_is_removed() {
    let mut device = Device::new();
    let id = job_id(2);
    let expected: String = (0..3000).map(|i| format!("{i:099}\n")).collect();

    let print = "awk 'BEGIN { for (i = 0; i < 3000; i++) printf \"%099d\\n\", i }'";
    let result = device.run(id, one_shot(print)).await;

    assert_eq!(result.outcome, JobOutcome::Exited(0));
    assert_eq!(result.output_bytes, 300_000);
    let expected = expected.as_bytes();
    assert!(
        result.head == expected[..MAX_OUTPUT_PART],
        "the first 64 KiB"
    );
    assert!(
        result.tail == expected[expected.len() - MAX_OUTPUT_PART..],
        "the last 64 KiB"
    );
    assert!(!container_exists(&container_name(id)), "removed after");
}

#[tokio::test]
async fn an_engine_api_call_answers_with_the_engines_status_and_body() {
    let mut device = Device::new();
    let prune = JobSpec::Engine {
        method: EngineMethod::Post,
        path: "/images/prune".to_owned(),
        body: Vec::new(),
    };

    let pruned = device.run(job_id(3), prune).await;

    assert_eq!(pruned.outcome, JobOutcome::Answered(200));
    let body: serde_json::Value = serde_json::from_slice(&pruned.head).unwrap();
    assert!(body.get("SpaceReclaimed").is_some(), "{body}");

    let missing = format!("/containers/outpost-absent-{}/json", std::process::id());
    let lookup = JobSpec::Engine {
        method: EngineMethod::Get,
        path: missing,
        body: Vec::new(),
    };
    let absent = device.run(job_id(4), lookup).await;
    assert_eq!(absent.outcome, JobOutcome::Answered(404));
    assert!(text(&absent).contains("No such container"), "{absent:?}");
}

#[tokio::test]
async fn an_exec_in_a_missing_container_fails_with_the_engines_message() {
    let mut device = Device::new();
    let name = format!("outpost-absent-{}", std::process::id());

    let result = device.run(job_id(5), exec(&name, "true")).await;

    assert_eq!(
        result.outcome,
        JobOutcome::Failed(format!("No such container: {name}"))
    );
}

#[tokio::test]
async fn a_one_shot_container_of_an_image_nowhere_to_be_pulled_fails_and_leaves_nothing() {
    let mut device = Device::new();
    let id = job_id(6);
    let image = format!("outpost-test/absent-{}:1", std::process::id());
    let spec = JobSpec::Run {
        image,
        cmd: Vec::new(),
    };

    let result = device.run(id, spec).await;

    let JobOutcome::Failed(reason) = &result.outcome else {
        panic!("{result:?}");
    };
    // The pull's failure (no registry here; "pull access denied" with one), not the create's.
    assert!(
        !reason.is_empty() && !reason.starts_with("No such image"),
        "{reason:?}"
    );
    assert!(!reason.contains('\n'), "{reason:?}");
    assert!(!container_exists(&container_name(id)));
}

#[tokio::test]
async fn a_one_shot_container_past_its_timeout_is_timed_out_and_removed() {
    let mut device = Device::new();
    let id = job_id(7);
    let mut slow = order(id, one_shot("echo started; sleep 60"));
    slow.timeout_ms = 1_500;

    device.runner.offer(slow);
    let result = device.result(id).await;

    assert_eq!(result.outcome, JobOutcome::TimedOut);
    assert_eq!(text(&result), "started\n", "what it printed before");
    assert!((1_500..10_000).contains(&result.duration_ms), "{result:?}");
    assert!(!container_exists(&container_name(id)), "killed and removed");
}

#[tokio::test]
async fn a_cancelled_one_shot_container_is_stopped_and_removed_keeping_its_output() {
    let mut device = Device::new();
    let id = job_id(8);
    device
        .runner
        .offer(order(id, one_shot("echo started; sleep 60")));
    while !device.started.contains(&id) {
        match device.next().await {
            AgentMessage::JobStarted { id } => device.started.push(id),
            other => panic!("before its start: {other:?}"),
        }
    }
    let name = container_name(id);
    for _ in 0..100 {
        if docker(&["logs", &name]).stdout.starts_with(b"started") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    device.runner.cancel(id);
    let result = device.result(id).await;

    assert_eq!(result.outcome, JobOutcome::Cancelled);
    // What the attach stream had delivered by the cancel (the engine's log may be ahead of it).
    let kept = text(&result);
    assert!(
        "started\n".starts_with(&kept),
        "what it printed before: {kept:?}"
    );
    assert!(
        result.duration_ms < 30_000,
        "stopped, not waited out: {result:?}"
    );
    assert!(!container_exists(&name), "stopped and removed");
}

#[tokio::test]
async fn a_job_cancelled_while_it_waits_for_a_slot_never_runs() {
    let target = Target::start("cancel");
    let mut device = Device::new();
    let blockers: Vec<u64> = (0..MAX_RUNNING as u64).map(|n| job_id(30 + n)).collect();
    for id in &blockers {
        device
            .runner
            .offer(order(*id, exec(&target.name, "sleep 2")));
    }
    let waiting = job_id(40);
    device
        .runner
        .offer(order(waiting, exec(&target.name, "touch /tmp/cancelled")));
    tokio::time::sleep(Duration::from_millis(500)).await;

    device.runner.cancel(waiting);
    let cancelled = device.result(waiting).await;

    assert_eq!(cancelled.outcome, JobOutcome::Cancelled);
    for id in &blockers {
        assert_eq!(device.result(*id).await.outcome, JobOutcome::Exited(0));
    }
    assert!(!device.started.contains(&waiting), "{:?}", device.started);
    let look = device
        .run(job_id(41), exec(&target.name, "test -e /tmp/cancelled"))
        .await;
    assert_eq!(look.outcome, JobOutcome::Exited(1), "nothing ran");
}

#[tokio::test]
async fn an_order_that_expires_before_a_slot_frees_runs_nothing() {
    let target = Target::start("expiry");
    let mut device = Device::new();
    let blockers: Vec<u64> = (0..MAX_RUNNING as u64).map(|n| job_id(10 + n)).collect();
    for id in &blockers {
        device
            .runner
            .offer(order(*id, exec(&target.name, "sleep 2")));
    }
    let late = job_id(20);
    let mut touch = order(late, exec(&target.name, "touch /tmp/expired"));
    touch.expires_in_ms = 300;

    device.runner.offer(touch);
    let expired = device.result(late).await;

    assert_eq!(expired.outcome, JobOutcome::Expired);
    assert_eq!((expired.output_bytes, expired.duration_ms), (0, 0));
    for id in &blockers {
        assert_eq!(device.result(*id).await.outcome, JobOutcome::Exited(0));
    }
    assert!(!device.started.contains(&late), "{:?}", device.started);
    let look = device
        .run(job_id(21), exec(&target.name, "test -e /tmp/expired"))
        .await;
    assert_eq!(look.outcome, JobOutcome::Exited(1), "nothing ran");

    let gone = job_id(22);
    let mut at_once = order(gone, exec(&target.name, "true"));
    at_once.expires_in_ms = 0;
    device.runner.offer(at_once);
    assert_eq!(device.result(gone).await.outcome, JobOutcome::Expired);
}

#[tokio::test]
async fn an_order_offered_again_runs_once_and_its_result_is_sent_until_acknowledged() {
    let target = Target::start("once");
    let mut device = Device::new();
    let id = job_id(30);
    let append = order(id, exec(&target.name, "echo ran >> /tmp/count"));

    device.runner.offer(append.clone());
    device.runner.offer(append.clone()); // while it runs
    let first = device.result(id).await;
    assert_eq!(first.outcome, JobOutcome::Exited(0));

    device.runner.offer(append.clone()); // after it ended: the result again
    assert_eq!(device.result(id).await, first);
    device.mail = device.runner.attach(); // a new session: the held result first
    assert_eq!(device.next().await, AgentMessage::JobResult(first));

    device.runner.ack(id);
    device.runner.offer(append.clone()); // acknowledged: nothing at all
    assert!(device.quiet_for(Duration::from_millis(500)).await);
    let mut device = Device::restarted(device.journal); // the agent restarts
    device.runner.offer(append);
    assert!(device.quiet_for(Duration::from_millis(500)).await);

    let count = device
        .run(job_id(31), exec(&target.name, "cat /tmp/count"))
        .await;
    assert_eq!(text(&count), "ran\n", "one run in all");
    assert_eq!(device.started, [job_id(31)]);
}
