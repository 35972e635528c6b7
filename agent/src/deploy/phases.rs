//! How the stack worker words what it found: phases from an observation or a failed apply.

use outpost_protocol::stack::{Phase, StackSpec, StackStatus, MAX_REASON};

use crate::stack::{self, Health, StackHealth};

pub(super) fn status(spec: &StackSpec, phase: Phase) -> StackStatus {
    StackStatus {
        project: spec.project.clone(),
        version: spec.version,
        phase,
    }
}

/// Every service runs this version, and where it has a healthcheck is healthy.
pub(super) fn is_healthy(health: &StackHealth) -> bool {
    health
        .services
        .iter()
        .all(|s| matches!(s.health, None | Some(Health::Healthy)))
}

/// The first service whose healthcheck the engine has declared failing.
pub(super) fn unhealthy(health: &StackHealth) -> Option<&str> {
    health
        .services
        .iter()
        .find(|s| s.health == Some(Health::Unhealthy))
        .map(|s| s.service.as_str())
}

pub(super) fn drift_reason(health: &StackHealth) -> String {
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
pub(super) fn failure_phase(error: &stack::ApplyError, had_previous: bool) -> Phase {
    let reason = clip(&error.to_string());
    match error {
        stack::ApplyError::Engine { .. } if had_previous => Phase::RolledBack { reason },
        _ => Phase::Failed { reason },
    }
}

/// At most [`MAX_REASON`] bytes, cut at a character boundary.
pub(super) fn clip(text: &str) -> String {
    let mut end = text.len().min(MAX_REASON);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
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
