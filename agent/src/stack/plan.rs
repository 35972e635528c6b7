//! Deciding what an apply does, from the spec and the project's containers on the engine, before
//! it touches anything: a pure function, so "which container is kept" is tested without an engine
//! and the whole plan can be journalled before the first step.
//!
//! A container is the service's current one when it bears the service's container name. It is
//! kept when it runs and its config-hash label equals the service's hash; otherwise it is set
//! aside (stopped, renamed) and a new one replaces it. Every other container labelled with the
//! project (a removed service's, a leftover) is set aside too, and removed once the new version
//! runs.

use outpost_protocol::stack::{ServiceSpec, StackSpec};
use serde::{Deserialize, Serialize};

use super::names;

/// A container of the project, as the engine lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    /// The engine's id.
    pub(crate) id: String,
    /// Its name, without the leading `/`.
    pub(crate) name: String,
    /// Its `com.docker.compose.config-hash` label.
    pub(crate) hash: Option<String>,
    /// The engine's state (`running`, `exited`, `created`, …).
    pub(crate) state: String,
}

impl Found {
    pub(crate) fn is_running(&self) -> bool {
        self.state == "running"
    }
}

/// A container moved out of the way for an apply, as the journal records it: enough to put it
/// back as it was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Aside {
    /// The engine's id (stable across renames).
    pub(crate) id: String,
    /// Its name before the apply.
    pub(crate) name: String,
    /// Whether it ran before the apply (only then is it started again on rollback).
    pub(crate) was_running: bool,
}

impl From<Found> for Aside {
    fn from(found: Found) -> Self {
        Self {
            was_running: found.is_running(),
            id: found.id,
            name: found.name,
        }
    }
}

/// What happens to one service.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step<'a> {
    /// Its running container is already this version: left alone.
    Keep {
        service: &'a ServiceSpec,
        id: String,
    },
    /// A new container is created and started, after the old one (if any) is set aside.
    Replace {
        service: &'a ServiceSpec,
        old: Option<Aside>,
    },
}

/// Everything one apply does, in order: set aside `removed`, then each step.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Plan<'a> {
    /// Containers of the project that no service of the spec owns.
    pub(crate) removed: Vec<Aside>,
    /// One step per service, in start order.
    pub(crate) steps: Vec<Step<'a>>,
}

/// The plan for applying `spec` over the project's containers `found`.
pub(crate) fn plan(spec: &StackSpec, mut found: Vec<Found>) -> Plan<'_> {
    let steps = spec
        .services
        .iter()
        .map(|service| {
            let name = names::container_name(&spec.project, &service.name);
            step(service, take_named(&mut found, &name))
        })
        .collect();
    Plan {
        removed: found.into_iter().map(Aside::from).collect(),
        steps,
    }
}

/// Takes the container named `name` out of `found`.
pub(crate) fn take_named(found: &mut Vec<Found>, name: &str) -> Option<Found> {
    let at = found.iter().position(|f| f.name == name)?;
    Some(found.remove(at))
}

fn step(service: &ServiceSpec, current: Option<Found>) -> Step<'_> {
    match current {
        Some(found)
            if found.is_running() && found.hash.as_deref() == Some(&service.config_hash()) =>
        {
            Step::Keep {
                service,
                id: found.id,
            }
        }
        old => Step::Replace {
            service,
            old: old.map(Aside::from),
        },
    }
}

impl Plan<'_> {
    /// Ids of the containers left alone.
    pub(crate) fn kept(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter_map(|step| match step {
                Step::Keep { id, .. } => Some(id.clone()),
                Step::Replace { .. } => None,
            })
            .collect()
    }

    /// Every container the apply sets aside, in the order it does.
    pub(crate) fn set_aside(&self) -> Vec<Aside> {
        let replaced = self.steps.iter().filter_map(|step| match step {
            Step::Replace { old, .. } => old.clone(),
            Step::Keep { .. } => None,
        });
        self.removed.iter().cloned().chain(replaced).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::fixtures::spec;

    fn found(id: &str, name: &str, hash: Option<String>, state: &str) -> Found {
        Found {
            id: id.to_owned(),
            name: name.to_owned(),
            hash,
            state: state.to_owned(),
        }
    }

    #[test]
    fn a_running_container_of_the_same_config_is_kept_and_others_replaced() {
        let spec = spec();
        let db_hash = spec.services[0].config_hash();
        let engine = vec![
            found("web1", "pos-web-1", Some("old-hash".to_owned()), "running"),
            found("db1", "pos-db-1", Some(db_hash), "running"),
            found("gone1", "pos-gone-1", Some("x".to_owned()), "exited"),
        ];
        let plan = plan(&spec, engine);
        let db = &spec.services[0];
        let web = &spec.services[1];
        let new = &spec.services[2];
        let aside = |id: &str, name: &str, was_running| Aside {
            id: id.to_owned(),
            name: name.to_owned(),
            was_running,
        };
        assert_eq!(
            plan,
            Plan {
                removed: vec![aside("gone1", "pos-gone-1", false)],
                steps: vec![
                    Step::Keep {
                        service: db,
                        id: "db1".to_owned()
                    },
                    Step::Replace {
                        service: web,
                        old: Some(aside("web1", "pos-web-1", true))
                    },
                    Step::Replace {
                        service: new,
                        old: None
                    },
                ],
            }
        );
        assert_eq!(plan.kept(), ["db1"]);
        let ids: Vec<_> = plan.set_aside().into_iter().map(|a| a.id).collect();
        assert_eq!(ids, ["gone1", "web1"]);
    }

    #[test]
    fn a_stopped_container_of_the_same_config_is_replaced() {
        let spec = spec();
        let hash = spec.services[0].config_hash();
        let plan = plan(&spec, vec![found("db1", "pos-db-1", Some(hash), "exited")]);
        assert!(matches!(
            &plan.steps[0],
            Step::Replace { old: Some(old), .. } if old.id == "db1" && !old.was_running
        ));
        assert!(plan.kept().is_empty());
    }

    #[test]
    fn a_container_is_matched_by_name_not_by_service_label() {
        // Compose v1 named containers `pos_db_1`: same project, not this service's container.
        let spec = spec();
        let hash = spec.services[0].config_hash();
        let plan = plan(&spec, vec![found("v1", "pos_db_1", Some(hash), "running")]);
        assert_eq!(plan.removed.len(), 1);
        assert!(matches!(&plan.steps[0], Step::Replace { old: None, .. }));
    }
}
