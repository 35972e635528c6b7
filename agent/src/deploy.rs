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
//!   reported `Drifted` and re-applied (only its service changes) — or, for a stack the hub's
//!   order says to report only (`--on-drift report`), reported `Drifted` and left as it is until
//!   someone repairs it by hand or the hub sends another order; once every service runs, and
//!   where it has a healthcheck is healthy, the stack is `Healthy`. A new version the engine
//!   declares unhealthy before it was ever healthy is rolled back to the version it replaced
//!   (`RolledBack`); one that was healthy, or a first deploy, is reported `Failed` and keeps
//!   running ([`looks`]).
//! - A failed apply is `Failed` when nothing changed (a pull failed; a first deploy) and
//!   `RolledBack` when the engine refused a step after containers were replaced and the previous
//!   version runs again. Either is reported for the version the hub asked for until another
//!   order arrives, whatever runs meanwhile.
//! - Known gap: when a later stack of a multi-stack order fails, the earlier ones were applied
//!   but the applied state stays the old one: the next look puts their old versions back (as
//!   drift), a first deploy among them runs on unobserved, and the hub's rows for their new
//!   versions stay where they were until the order is retried (the next session).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use outpost_protocol::stack::{
    DesiredOrder, DesiredState, Phase, StackReport, StackSpec, StackStatus, StateDigest,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::docker_host::DockerHost;
use crate::loopback::HubLink;
use crate::snapshot::engine_client;
use crate::stack::{self, Progress, RemoveVolumes};
pub(crate) use deferral::retry_instant;
use deferral::{retry_deferred, window_changed};
use phases::{clip, failure_phase, status};

mod deferral;
mod looks;
mod phases;

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
    desired: watch::Sender<Option<DesiredOrder>>,
    status: watch::Receiver<DeployStatus>,
}

impl Deployer {
    /// Start the worker on the engine at `docker`, keeping its files in `state_dir`, pulling
    /// through `mirror` (the loopback registry) where it can.
    pub fn start(docker: DockerHost, state_dir: PathBuf, mirror: Option<HubLink>) -> Self {
        let (applied, replaced) = read_applied(&state_dir);
        let (desired, desired_rx) = watch::channel(None);
        let (status_tx, status) = watch::channel(DeployStatus {
            applied: applied.digest(),
            report: None,
        });
        let worker = Worker {
            host: docker,
            state_dir,
            mirror,
            applied,
            replaced,
            failures: Vec::new(),
            settled: false,
            status: status_tx,
            last_progress: None,
            retry_at: None,
            deferred: None,
        };
        tokio::spawn(worker.run(desired_rx));
        Self { desired, status }
    }

    /// A stand-in for the load tool (`outpost-swarm --stacks stand-in`), labelled as such in its
    /// reports' absence of any engine work: every state offered is reported healthy and applied at
    /// once, so thousands of simulated devices exercise the hub's delivery and rollouts.
    pub fn stand_in() -> Self {
        let (desired, mut desired_rx) = watch::channel::<Option<DesiredOrder>>(None);
        let (status_tx, status_rx) = watch::channel(DeployStatus {
            applied: DesiredState::default().digest(),
            report: None,
        });
        tokio::spawn(async move {
            while desired_rx.changed().await.is_ok() {
                let Some(order) = desired_rx.borrow_and_update().clone() else {
                    continue;
                };
                let report = StackReport {
                    state: order.digest(),
                    stacks: order
                        .state
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
    pub fn offer(&self, order: DesiredOrder) {
        self.desired.send_replace(Some(order));
    }

    /// The worker's status, for a session to forward.
    pub fn status(&self) -> watch::Receiver<DeployStatus> {
        self.status.clone()
    }
}

struct Worker {
    host: DockerHost,
    state_dir: PathBuf,
    mirror: Option<HubLink>,
    applied: DesiredOrder,
    /// The versions the last order replaced, until each new one is first seen healthy: a new
    /// version the engine declares unhealthy before that is rolled back to them ([`looks`]).
    replaced: Vec<StackSpec>,
    /// How the last order's failed stacks ended, for the versions the hub asked for: reported in
    /// place of what runs until another order arrives ([`looks`]).
    failures: Vec<StackStatus>,
    /// Whether the last look found nothing that may still change by itself: every applied
    /// stack healthy, or drifted with its drift only reported.
    settled: bool,
    status: watch::Sender<DeployStatus>,
    last_progress: Option<Instant>,
    /// When the hub said a deferred apply may go on (seconds since the Unix epoch).
    retry_at: Option<u64>,
    /// An order the hub deferred (a spent byte budget), and when to try it again.
    deferred: Option<(DesiredOrder, Instant)>,
}

impl Worker {
    async fn run(mut self, mut desired: watch::Receiver<Option<DesiredOrder>>) {
        let mut windows = self.mirror.as_ref().map(HubLink::watch_window);
        let docker = self.engine().await;
        match stack::recover(&docker, &self.state_dir).await {
            Ok(recovered) if !recovered.is_empty() => {
                info!(?recovered, "finished an apply a stop interrupted")
            }
            Ok(_) => {}
            Err(e) => warn!("could not settle an interrupted apply: {e}"),
        }
        loop {
            let wait = if self.settled {
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
                () = tokio::time::sleep(wait), if !self.applied.state.stacks.is_empty() => {
                    self.look(&docker).await;
                }
                () = retry_deferred(self.deferred.as_ref()), if self.deferred.is_some() => {
                    self.retry_deferred(&docker, "its time came").await;
                }
                // A new transfer window may open what waits.
                Some(()) = window_changed(windows.as_mut()), if self.deferred.is_some() => {
                    self.retry_deferred(&docker, "the transfer window changed").await;
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

    /// Try the deferred order again.
    async fn retry_deferred(&mut self, docker: &Docker, why: &str) {
        if let Some((order, _)) = self.deferred.take() {
            info!("trying a deferred apply again: {why}");
            self.reach(docker, order).await;
        }
    }

    /// Apply `order` unless it is what runs (a new drift policy alone changes no container).
    async fn reach(&mut self, docker: &Docker, order: DesiredOrder) {
        let digest = order.digest();
        if digest == self.applied.digest() {
            self.look(docker).await;
            return;
        }
        self.failures.clear();
        self.deferred = None;
        if let Err(e) = order.check() {
            warn!("the hub's desired state breaks the rules: {e}");
            let failed = Phase::Failed {
                reason: clip(&format!("the desired state was refused: {e}")),
            };
            let stacks = order.state.stacks.iter();
            self.failures = stacks.map(|s| status(s, failed.clone())).collect();
            let stacks = self.failures.clone();
            self.publish(Some(StackReport {
                state: digest,
                stacks,
            }));
            return;
        }
        if order.state == self.applied.state {
            info!(report_drift = ?order.report_drift, "a new drift policy for the applied stacks");
            self.adopt(order);
            self.look(docker).await;
            return;
        }
        let target = &order.state;
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
                if let Phase::Deferred { .. } = failed {
                    let retry = retry_instant(self.retry_at.take());
                    self.deferred = Some((order.clone(), retry));
                }
                report.stacks[index].phase = failed;
                self.failures = report.stacks[index..].to_vec();
                self.publish(Some(report));
                return;
            }
        }
        for gone in self
            .applied
            .state
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
        self.replaced = replaced_by(&self.applied.state, target);
        self.adopt(order);
        self.publish(Some(report));
        self.look(docker).await;
    }

    /// `order` is applied in full: record it and name it from the next check-in on.
    fn adopt(&mut self, order: DesiredOrder) {
        let digest = order.digest();
        self.applied = order;
        self.record();
        self.settled = false;
        self.status.send_modify(|s| s.applied = digest);
    }

    /// Keep the applied order and the versions it replaced on disk.
    fn record(&self) {
        if let Err(e) = write_applied(&self.state_dir, &self.applied, &self.replaced) {
            warn!("the applied state was not recorded: {e}");
        }
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
        let mirror = self.mirror.as_ref();
        let outcome = stack::apply(docker, &self.state_dir, spec, mirror, progress).await;
        self.last_progress = last_progress;
        match outcome {
            Ok(applied) => {
                info!(project = %spec.project, version = applied.version, kept = ?applied.kept, started = ?applied.started, "stack applied");
                report.stacks[index].phase = Phase::Running;
                Ok(())
            }
            Err(stack::ApplyError::Deferred {
                message, retry_at, ..
            }) => {
                info!(project = %spec.project, version = spec.version, retry_at, "stack deferred: {message}");
                let (done, total) = match shown.stacks[index].phase {
                    Phase::Pulling { done, total } => (done, total),
                    _ => (0, 0),
                };
                self.retry_at = Some(retry_at);
                Err(Phase::Deferred {
                    reason: clip(&message),
                    done,
                    total,
                })
            }
            Err(e) => {
                warn!(project = %spec.project, version = spec.version, "stack not applied: {e}");
                let had_previous = self
                    .applied
                    .state
                    .stacks
                    .iter()
                    .any(|s| s.project == spec.project);
                Err(failure_phase(&e, had_previous))
            }
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

fn applied_path(state_dir: &Path) -> PathBuf {
    state_dir.join("state.json")
}

/// The applied order as `state.json` keeps it: the state's own fields, so a record written
/// before drift policies (`{"stacks": …}`) reads as an order that re-applies everything and
/// replaced nothing.
#[derive(Serialize, Deserialize)]
struct AppliedRecord {
    stacks: Vec<StackSpec>,
    #[serde(default)]
    report_drift: Vec<String>,
    #[serde(default)]
    replaced: Vec<StackSpec>,
}

/// The order last applied in full and the versions it replaced; the empty state when none was
/// (or its record is unreadable, which the next desired state repairs).
fn read_applied(state_dir: &Path) -> (DesiredOrder, Vec<StackSpec>) {
    let record: Option<AppliedRecord> =
        stack::read_json(&applied_path(state_dir)).unwrap_or_else(|e| {
            warn!("the applied state record is unreadable ({e}); starting from none");
            None
        });
    let Some(record) = record else {
        return (DesiredOrder::default(), Vec::new());
    };
    let order = DesiredOrder {
        state: DesiredState {
            stacks: record.stacks,
        },
        report_drift: record.report_drift,
    };
    (order, record.replaced)
}

/// Record `order` and what it `replaced` (atomically, private to the agent: stacks carry
/// environment values).
fn write_applied(
    state_dir: &Path,
    order: &DesiredOrder,
    replaced: &[StackSpec],
) -> Result<(), stack::ApplyError> {
    let record = AppliedRecord {
        stacks: order.state.stacks.clone(),
        report_drift: order.report_drift.clone(),
        replaced: replaced.to_vec(),
    };
    stack::write_json(&applied_path(state_dir), &record)
}

/// The specs of `before` that `after` changes (same project, other content).
fn replaced_by(before: &DesiredState, after: &DesiredState) -> Vec<StackSpec> {
    before
        .stacks
        .iter()
        .filter(|old| {
            after
                .stacks
                .iter()
                .any(|new| new.project == old.project && new != *old)
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod record_tests {
    use outpost_protocol::stack::ServiceSpec;

    use super::*;

    #[test]
    fn the_applied_order_survives_a_restart_and_an_older_record_reapplies_everything() {
        let dir = tempfile::tempdir().unwrap();
        let pos = StackSpec {
            project: "pos".into(),
            version: 3,
            services: vec![ServiceSpec::new("web", "nginx:1.27")],
            volumes: vec![],
        };
        let order = DesiredOrder {
            state: DesiredState { stacks: vec![pos] },
            report_drift: vec!["pos".into()],
        };
        let replaced = vec![StackSpec {
            version: 2,
            ..order.state.stacks[0].clone()
        }];
        write_applied(dir.path(), &order, &replaced).unwrap();
        assert_eq!(read_applied(dir.path()), (order.clone(), replaced));

        let before_policies =
            serde_json::json!({ "stacks": serde_json::to_value(&order.state.stacks).unwrap() });
        std::fs::write(applied_path(dir.path()), before_policies.to_string()).unwrap();
        let (read, replaced) = read_applied(dir.path());
        assert!(replaced.is_empty());
        assert_eq!(read.state, order.state);
        assert!(read.report_drift.is_empty(), "an older record re-applies");
        assert_eq!(read.digest(), order.state.digest(), "and names what it did");
    }
}
