//! The agent's stack worker: one task for the agent's life that applies the desired state the hub
//! sends, watches it for drift and health, and publishes where it is.
//!
//! Why a task of its own and not part of a session: an apply takes as long as its pulls, on a
//! satellite link many minutes, and a session may end in the middle (an outage, a NAT rebind, a
//! hub restart). The apply carries on regardless and ends in the new version or the old one
//! ([`crate::stack::apply`]); the next session reports how it ended. Sessions only hand the
//! worker what the hub sent ([`Deployer::offer`]) and forward what it publishes
//! ([`Deployer::status`]): the latest report and the state applied in full, which every check-in
//! names.
//!
//! What the worker keeps on disk, in its state directory: the state last applied in full
//! (`state.json`), so a restarted agent names it in its first check-in and watches it; and
//! `crate::stack`'s journal and per-project records.
//!
//! - A state whose digest is the applied one needs nothing but a fresh report.
//! - Stacks are applied in the state's order; the first failure stops the state there (the
//!   failed stack runs its previous version again, the rest keep what they ran) and the applied
//!   state stays the old one. Stacks the state no longer names are removed, their volumes kept.
//! - Every [`DRIFT_CHECK`] the applied stacks are observed: a container gone or stopped is
//!   reported `Drifted` and re-applied (only its service changes); once every service runs, and
//!   where it has a healthcheck is healthy, the stack is `Healthy`. A service the engine declares
//!   unhealthy is reported `Failed` (a rollout counts it), and keeps running: rolling a started
//!   version back on health is not built yet.
//! - A failed apply is `Failed` when nothing changed (a pull failed; a first deploy) and
//!   `RolledBack` when the engine refused a step after containers were replaced and the previous
//!   version runs again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use outpost_protocol::stack::{
    DesiredState, Phase, StackReport, StackSpec, StackStatus, StateDigest, MAX_REASON,
};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::docker_host::DockerHost;
use crate::snapshot::engine_client;
use crate::stack::{self, Health, Progress, RemoveVolumes, StackHealth};

/// How often an applied state is observed for drift and health. Each look is two engine calls
/// per stack on the device's own socket; 30 s finds a container an operator removed by hand
/// within a check-in interval.
pub const DRIFT_CHECK: Duration = Duration::from_secs(30);

/// How often a state not yet healthy is observed (healthchecks run every few seconds).
const HEALTH_CHECK: Duration = Duration::from_secs(2);

/// How often the worker looks for an engine that is not there yet.
const ENGINE_RETRY: Duration = Duration::from_secs(10);

/// Least time between two pull-progress reports: each is a control frame to the hub.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Longest one engine request of an apply may take. A pull is one request for its whole length,
/// and on a slow link a large image takes hours; the engine itself gives up on a dead registry.
const APPLY_REQUEST_TIMEOUT: Duration = Duration::from_secs(12 * 3600);

/// Where the worker is, as sessions forward it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeployStatus {
    /// The state applied in full (the empty state's digest before any).
    pub applied: StateDigest,
    /// The latest report, once there is something to report.
    pub report: Option<StackReport>,
}

/// The handle sessions hold: hand over a desired state, watch the status.
#[derive(Debug)]
pub struct Deployer {
    desired: watch::Sender<Option<DesiredState>>,
    status: watch::Receiver<DeployStatus>,
}

impl Deployer {
    /// Start the worker on the engine at `docker`, keeping its files in `state_dir`.
    pub fn start(docker: DockerHost, state_dir: PathBuf) -> Self {
        let applied = read_applied(&state_dir);
        let (desired, desired_rx) = watch::channel(None);
        let (status_tx, status) = watch::channel(DeployStatus {
            applied: applied.digest(),
            report: None,
        });
        let worker = Worker {
            host: docker,
            state_dir,
            applied,
            healthy: false,
            status: status_tx,
            last_progress: None,
        };
        tokio::spawn(worker.run(desired_rx));
        Self { desired, status }
    }

    /// A stand-in for the load tool (`outpost-swarm --stacks stand-in`), labelled as such in its
    /// reports' absence of any engine work: every state offered is reported healthy and applied at
    /// once, so thousands of simulated devices exercise the hub's delivery and rollouts.
    pub fn stand_in() -> Self {
        let (desired, mut desired_rx) = watch::channel::<Option<DesiredState>>(None);
        let (status_tx, status_rx) = watch::channel(DeployStatus {
            applied: DesiredState::default().digest(),
            report: None,
        });
        tokio::spawn(async move {
            while desired_rx.changed().await.is_ok() {
                let Some(state) = desired_rx.borrow_and_update().clone() else {
                    continue;
                };
                let report = StackReport {
                    state: state.digest(),
                    stacks: state
                        .stacks
                        .iter()
                        .map(|s| status(s, Phase::Healthy))
                        .collect(),
                };
                status_tx.send_replace(DeployStatus {
                    applied: report.state,
                    report: Some(report),
                });
            }
        });
        Self {
            desired,
            status: status_rx,
        }
    }

    /// What the hub says the device should run; a newer offer replaces one not yet started.
    pub fn offer(&self, state: DesiredState) {
        self.desired.send_replace(Some(state));
    }

    /// The worker's status, for a session to forward.
    pub fn status(&self) -> watch::Receiver<DeployStatus> {
        self.status.clone()
    }
}

struct Worker {
    host: DockerHost,
    state_dir: PathBuf,
    applied: DesiredState,
    /// Whether the last look found every applied stack healthy.
    healthy: bool,
    status: watch::Sender<DeployStatus>,
    last_progress: Option<Instant>,
}

impl Worker {
    async fn run(mut self, mut desired: watch::Receiver<Option<DesiredState>>) {
        let docker = self.engine().await;
        match stack::recover(&docker, &self.state_dir).await {
            Ok(recovered) if !recovered.is_empty() => {
                info!(?recovered, "finished an apply a stop interrupted")
            }
            Ok(_) => {}
            Err(e) => warn!("could not settle an interrupted apply: {e}"),
        }
        loop {
            let wait = if self.healthy {
                DRIFT_CHECK
            } else {
                HEALTH_CHECK
            };
            tokio::select! {
                changed = desired.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let target = desired.borrow_and_update().clone();
                    if let Some(target) = target {
                        self.reach(&docker, target).await;
                    }
                }
                () = tokio::time::sleep(wait), if !self.applied.stacks.is_empty() => {
                    self.look(&docker).await;
                }
            }
        }
    }

    /// An engine client, waiting for the engine's socket to appear (the agent may start first).
    async fn engine(&self) -> Docker {
        loop {
            match engine_client(&self.host) {
                Ok(docker) => return docker.with_timeout(APPLY_REQUEST_TIMEOUT),
                Err(e) => {
                    warn!("stacks wait for the engine: {e}");
                    tokio::time::sleep(ENGINE_RETRY).await;
                }
            }
        }
    }

    /// Apply `target` unless it is what runs.
    async fn reach(&mut self, docker: &Docker, target: DesiredState) {
        let digest = target.digest();
        if digest == self.applied.digest() {
            self.look(docker).await;
            return;
        }
        info!(stacks = target.stacks.len(), "applying a new desired state");
        let mut report = StackReport {
            state: digest,
            stacks: target
                .stacks
                .iter()
                .map(|s| status(s, Phase::Queued))
                .collect(),
        };
        self.publish(Some(report.clone()));
        for index in 0..target.stacks.len() {
            if let Err(failed) = self
                .apply_one(docker, &target.stacks[index], &mut report, index)
                .await
            {
                for later in &mut report.stacks[index + 1..] {
                    later.phase = Phase::Failed {
                        reason: format!(
                            "not applied: stack {} failed first",
                            target.stacks[index].project
                        ),
                    };
                }
                report.stacks[index].phase = failed;
                self.publish(Some(report));
                return;
            }
        }
        for gone in self
            .applied
            .stacks
            .iter()
            .filter(|s| !target.stacks.iter().any(|t| t.project == s.project))
        {
            if let Err(e) =
                stack::remove(docker, &self.state_dir, &gone.project, RemoveVolumes::No).await
            {
                warn!(project = %gone.project, "a stack no longer wanted was not removed: {e}");
            }
        }
        self.applied = target;
        if let Err(e) = write_applied(&self.state_dir, &self.applied) {
            warn!("the applied state was not recorded: {e}");
        }
        self.healthy = false;
        self.status.send_modify(|s| s.applied = digest);
        self.publish(Some(report));
        self.look(docker).await;
    }

    /// Apply one stack of the state, reporting its phases into `report`.
    async fn apply_one(
        &mut self,
        docker: &Docker,
        spec: &StackSpec,
        report: &mut StackReport,
        index: usize,
    ) -> Result<(), Phase> {
        let status = self.status.clone();
        let mut last_progress = self.last_progress;
        let mut shown = report.clone();
        let progress = |event: Progress| {
            let phase = match event {
                Progress::Pulling { done, total, .. } => {
                    let now = Instant::now();
                    if last_progress.is_some_and(|at| now < at + PROGRESS_EVERY) {
                        return;
                    }
                    last_progress = Some(now);
                    Phase::Pulling { done, total }
                }
                Progress::Pulled { .. } | Progress::Kept { .. } | Progress::Started { .. } => {
                    Phase::Starting
                }
                Progress::Committed => Phase::Running,
                Progress::RollingBack { .. } => return,
            };
            if shown.stacks[index].phase != phase {
                shown.stacks[index].phase = phase;
                let next = shown.clone();
                status.send_modify(|s| s.report = Some(next));
            }
        };
        let outcome = stack::apply(docker, &self.state_dir, spec, progress).await;
        self.last_progress = last_progress;
        match outcome {
            Ok(applied) => {
                info!(project = %spec.project, version = applied.version, kept = ?applied.kept, started = ?applied.started, "stack applied");
                report.stacks[index].phase = Phase::Running;
                Ok(())
            }
            Err(e) => {
                warn!(project = %spec.project, version = spec.version, "stack not applied: {e}");
                let had_previous = self
                    .applied
                    .stacks
                    .iter()
                    .any(|s| s.project == spec.project);
                Err(failure_phase(&e, had_previous))
            }
        }
    }

    /// Observe the applied state: re-apply what drifted, report health.
    async fn look(&mut self, docker: &Docker) {
        let digest = self.applied.digest();
        let mut report = StackReport {
            state: digest,
            stacks: Vec::with_capacity(self.applied.stacks.len()),
        };
        let mut all_healthy = true;
        for spec in self.applied.stacks.clone() {
            let phase = match stack::observe(docker, &spec).await {
                Ok(health) if health.drifted() => {
                    all_healthy = false;
                    self.repair(docker, &spec, drift_reason(&health), &report)
                        .await
                }
                Ok(health) if is_healthy(&health) => Phase::Healthy,
                Ok(health) if unhealthy(&health).is_some() => {
                    all_healthy = false;
                    let service = unhealthy(&health).unwrap_or_default();
                    Phase::Failed {
                        reason: format!("service {service} is unhealthy (its healthcheck fails)"),
                    }
                }
                Ok(_) => {
                    all_healthy = false;
                    Phase::Running
                }
                Err(e) => {
                    all_healthy = false;
                    warn!(project = %spec.project, "could not observe the stack: {e}");
                    Phase::Running
                }
            };
            report.stacks.push(status(&spec, phase));
        }
        self.healthy = all_healthy;
        if !self.applied.stacks.is_empty() {
            self.publish(Some(report));
        }
    }

    /// Report `spec` drifted, then apply it again (only what departs from it changes).
    async fn repair(
        &mut self,
        docker: &Docker,
        spec: &StackSpec,
        reason: String,
        so_far: &StackReport,
    ) -> Phase {
        warn!(project = %spec.project, %reason, "the stack drifted; applying it again");
        let mut drifted = so_far.clone();
        drifted.stacks.push(status(
            spec,
            Phase::Drifted {
                reason: clip(&reason),
            },
        ));
        self.publish(Some(drifted));
        match stack::apply(docker, &self.state_dir, spec, |_| {}).await {
            Ok(_) => Phase::Running,
            Err(e) => Phase::Failed {
                reason: clip(&format!("re-applying after drift ({reason}): {e}")),
            },
        }
    }

    fn publish(&self, report: Option<StackReport>) {
        self.status.send_if_modified(|s| {
            let changed = s.report != report;
            s.report = report;
            changed
        });
    }
}

fn status(spec: &StackSpec, phase: Phase) -> StackStatus {
    StackStatus {
        project: spec.project.clone(),
        version: spec.version,
        phase,
    }
}

/// Every service runs this version, and where it has a healthcheck is healthy.
fn is_healthy(health: &StackHealth) -> bool {
    health
        .services
        .iter()
        .all(|s| matches!(s.health, None | Some(Health::Healthy)))
}

/// The first service whose healthcheck the engine has declared failing.
fn unhealthy(health: &StackHealth) -> Option<&str> {
    health
        .services
        .iter()
        .find(|s| s.health == Some(Health::Unhealthy))
        .map(|s| s.service.as_str())
}

fn drift_reason(health: &StackHealth) -> String {
    let mut parts: Vec<String> = health
        .services
        .iter()
        .filter(|s| s.drifted())
        .map(|s| format!("{}: {:?}", s.service, s.state))
        .collect();
    parts.extend(health.strays.iter().map(|c| format!("stray container {c}")));
    parts.join(", ")
}

/// How a failed apply is reported: `RolledBack` when the engine refused a step after the new
/// version's containers started replacing a version that ran before (which runs again now),
/// `Failed` when nothing was changed (a pull, a check) or there was no previous version.
fn failure_phase(error: &stack::ApplyError, had_previous: bool) -> Phase {
    let reason = clip(&error.to_string());
    match error {
        stack::ApplyError::Engine { .. } if had_previous => Phase::RolledBack { reason },
        _ => Phase::Failed { reason },
    }
}

/// At most [`MAX_REASON`] bytes, cut at a character boundary.
fn clip(text: &str) -> String {
    let mut end = text.len().min(MAX_REASON);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

fn applied_path(state_dir: &Path) -> PathBuf {
    state_dir.join("state.json")
}

/// The state last applied in full; the empty state when none was (or its record is unreadable,
/// which the next desired state repairs).
fn read_applied(state_dir: &Path) -> DesiredState {
    stack::read_json(&applied_path(state_dir))
        .unwrap_or_else(|e| {
            warn!("the applied state record is unreadable ({e}); starting from none");
            None
        })
        .unwrap_or_default()
}

/// Record `state` (atomically, private to the agent: stacks carry environment values).
fn write_applied(state_dir: &Path, state: &DesiredState) -> Result<(), stack::ApplyError> {
    stack::write_json(&applied_path(state_dir), state)
}

#[cfg(test)]
mod failure_tests {
    use super::*;

    fn refused() -> stack::ApplyError {
        stack::ApplyError::Engine {
            action: "start container",
            target: "pos-web-1".into(),
            message: "port is already allocated".into(),
        }
    }

    #[test]
    fn a_refused_step_over_a_previous_version_is_a_rollback() {
        assert_eq!(
            failure_phase(&refused(), true),
            Phase::RolledBack {
                reason: "start container pos-web-1: port is already allocated".into()
            }
        );
    }

    #[test]
    fn a_first_deploy_or_a_failed_pull_changed_nothing_and_is_a_failure() {
        assert!(matches!(
            failure_phase(&refused(), false),
            Phase::Failed { .. }
        ));
        let pull = stack::ApplyError::Pull {
            image: "busybox:nope".into(),
            message: "manifest unknown".into(),
        };
        assert_eq!(
            failure_phase(&pull, true),
            Phase::Failed {
                reason: "pull busybox:nope: manifest unknown".into()
            }
        );
    }
}
