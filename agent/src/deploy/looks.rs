//! The worker between orders: every look observes the applied stacks and acts on what it finds.
//!
//! - A stack that drifted (a container gone or stopped) is re-applied, or only reported where the
//!   order says so.
//! - A stack whose new version the engine declares unhealthy before it was ever seen healthy is
//!   rolled back to the version it replaced and reported `RolledBack`: the version, not the
//!   device, is at fault, and the previous one is known to work. Once a version has been healthy
//!   its later unhealthiness is reported `Failed` and left running (a disk filling up is not
//!   cured by an older image).
//! - The last order's failures (a failed apply, a rollback) are reported for the version the hub
//!   asked for in place of what runs, until another order arrives: the hub keeps each device's
//!   status per version, so the old version's health would say nothing of the new one, and a
//!   report that only names the old version would leave the hub showing whatever came before.

use bollard::Docker;
use outpost_protocol::stack::{Phase, StackReport, StackSpec, StackStatus, MAX_STACKS_PER_DEVICE};
use tracing::warn;

use super::phases::{clip, drift_reason, is_healthy, status, unhealthy};
use super::Worker;
use crate::stack;

impl Worker {
    /// Observe the applied state, act on it, and report.
    pub(super) async fn look(&mut self, docker: &Docker) {
        let mut report = StackReport {
            state: self.applied.digest(),
            stacks: Vec::with_capacity(self.applied.state.stacks.len()),
        };
        let mut all_settled = true;
        for spec in self.applied.state.stacks.clone() {
            let (phase, settled) = self.look_at(docker, &spec, &report).await;
            all_settled &= settled;
            report.stacks.push(status(&spec, phase));
        }
        self.settled = all_settled;
        report.state = self.applied.digest();
        report.stacks = with_failures(&self.failures, report.stacks);
        if !report.stacks.is_empty() {
            self.publish(Some(report));
        }
    }

    /// One stack's phase, and whether it will stay so by itself.
    async fn look_at(
        &mut self,
        docker: &Docker,
        spec: &StackSpec,
        so_far: &StackReport,
    ) -> (Phase, bool) {
        let health = match stack::observe(docker, spec).await {
            Ok(health) => health,
            Err(e) => {
                warn!(project = %spec.project, "could not observe the stack: {e}");
                return (Phase::Running, false);
            }
        };
        if health.drifted() {
            let reason = drift_reason(&health);
            if self.applied.reports_drift(&spec.project) {
                let reason = clip(&reason);
                return (Phase::Drifted { reason }, true);
            }
            return (self.repair(docker, spec, reason, so_far).await, false);
        }
        if is_healthy(&health) {
            self.proven(&spec.project);
            return (Phase::Healthy, true);
        }
        match unhealthy(&health) {
            Some(service) => {
                let reason = format!("service {service} is unhealthy (its healthcheck fails)");
                (self.roll_back(docker, spec, reason).await, false)
            }
            None => (Phase::Running, false),
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
        let mirror = self.mirror.as_ref();
        match stack::apply(docker, &self.state_dir, spec, mirror, |_| {}).await {
            Ok(_) => Phase::Running,
            Err(e) => Phase::Failed {
                reason: clip(&format!("re-applying after drift ({reason}): {e}")),
            },
        }
    }

    /// `project`'s new version has been healthy: it is not rolled back from now on.
    fn proven(&mut self, project: &str) {
        let before = self.replaced.len();
        self.replaced.retain(|old| old.project != project);
        if self.replaced.len() != before {
            self.record();
        }
    }

    /// `spec` is unhealthy: put back the version it replaced if it has never been healthy
    /// (`RolledBack`), else report it `Failed` and leave it running.
    async fn roll_back(&mut self, docker: &Docker, spec: &StackSpec, reason: String) -> Phase {
        let Some(index) = self.replaced.iter().position(|o| o.project == spec.project) else {
            return Phase::Failed { reason };
        };
        let previous = self.replaced.remove(index);
        warn!(project = %spec.project, version = spec.version, %reason, previous = previous.version, "rolling an unhealthy new version back");
        let mirror = self.mirror.as_ref();
        let phase = match stack::apply(docker, &self.state_dir, &previous, mirror, |_| {}).await {
            Ok(_) => {
                let version = previous.version;
                let running = self.applied.state.stacks.iter_mut();
                if let Some(slot) = running.into_iter().find(|s| s.project == spec.project) {
                    *slot = previous;
                }
                Phase::RolledBack {
                    reason: clip(&format!("{reason}; version {version} runs again")),
                }
            }
            Err(e) => Phase::Failed {
                reason: clip(&format!(
                    "{reason}; rolling back to version {} failed: {e}",
                    previous.version
                )),
            },
        };
        self.record();
        self.status
            .send_modify(|s| s.applied = self.applied.digest());
        self.failures.retain(|f| f.project != spec.project);
        self.failures.push(status(spec, phase.clone()));
        phase
    }
}

/// `observed` with `failures` in place of what runs for their projects (first, so the bound on a
/// report never drops them).
fn with_failures(failures: &[StackStatus], observed: Vec<StackStatus>) -> Vec<StackStatus> {
    let mut stacks = failures.to_vec();
    let others = observed.into_iter();
    stacks.extend(others.filter(|s| !failures.iter().any(|f| f.project == s.project)));
    stacks.truncate(MAX_STACKS_PER_DEVICE);
    stacks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(project: &str, version: u32, phase: Phase) -> StackStatus {
        StackStatus {
            project: project.into(),
            version,
            phase,
        }
    }

    #[test]
    fn a_failed_version_is_reported_in_place_of_the_one_that_runs() {
        let rolled_back = Phase::RolledBack {
            reason: "service web is unhealthy".into(),
        };
        let observed = vec![at("pos", 1, Phase::Healthy), at("sign", 4, Phase::Healthy)];
        let failures = vec![at("pos", 2, rolled_back.clone())];
        assert_eq!(
            with_failures(&failures, observed),
            [at("pos", 2, rolled_back), at("sign", 4, Phase::Healthy)]
        );
    }

    #[test]
    fn a_report_stays_within_the_bound_and_keeps_every_failure() {
        let failed = Phase::Failed {
            reason: "pull: manifest unknown".into(),
        };
        let failures: Vec<StackStatus> = (0..3)
            .map(|i| at(&format!("new{i}"), 1, failed.clone()))
            .collect();
        let observed = (0..MAX_STACKS_PER_DEVICE)
            .map(|i| at(&format!("old{i}"), 1, Phase::Healthy))
            .collect();
        let report = with_failures(&failures, observed);
        assert_eq!(report.len(), MAX_STACKS_PER_DEVICE);
        assert_eq!(report[..3], failures[..]);
    }
}
