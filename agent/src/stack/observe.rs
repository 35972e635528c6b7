//! What the engine runs of a stack, compared with the spec: per service whether its container
//! exists, runs, is this version's, and how its healthcheck says it is. Someone on the device may
//! `docker rm` or `docker stop` a container, or run `docker compose up` with another file; the
//! hub shows that as drift and the agent re-applies, since the hub's spec is what the device
//! should run.

use bollard::models::HealthStatusEnum;
use bollard::Docker;
use outpost_protocol::stack::StackSpec;

use super::engine;
use super::error::ApplyError;
use super::names;
use super::plan::{take_named, Found};

/// A stack as the engine runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackHealth {
    /// One entry per service of the spec, in its order.
    pub services: Vec<ServiceHealth>,
    /// Containers labelled with the project that no service of the spec owns (names).
    pub strays: Vec<String>,
}

/// One service as the engine runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceHealth {
    /// The service's name.
    pub service: String,
    /// Its container's state.
    pub state: ContainerState,
    /// Whether the container is this spec's version (its config-hash label matches).
    pub current: bool,
    /// What its healthcheck says, when it has one and runs.
    pub health: Option<Health>,
}

/// A service container's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerState {
    /// No container bears the service's name.
    Missing,
    /// It runs.
    Running,
    /// It exists but does not run; the engine's state (`exited`, `created`, `restarting`, …).
    NotRunning(String),
}

/// A healthcheck's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// In its start period, no verdict yet.
    Starting,
    /// Its last checks passed.
    Healthy,
    /// It failed its retries in a row.
    Unhealthy,
}

impl StackHealth {
    /// Whether the engine departs from the spec: a service missing, not running or of another
    /// version, or a stray container. An unhealthy service is not drift: re-creating it would not
    /// change what it runs.
    pub fn drifted(&self) -> bool {
        !self.strays.is_empty() || self.services.iter().any(ServiceHealth::drifted)
    }
}

impl ServiceHealth {
    /// Whether this service departs from the spec.
    pub fn drifted(&self) -> bool {
        self.state != ContainerState::Running || !self.current
    }
}

/// Observe how the engine behind `docker` runs `spec`.
pub async fn observe(docker: &Docker, spec: &StackSpec) -> Result<StackHealth, ApplyError> {
    let mut found = engine::list_project(docker, &spec.project).await?;
    let mut services = Vec::with_capacity(spec.services.len());
    for service in &spec.services {
        let name = names::container_name(&spec.project, &service.name);
        let container = take_named(&mut found, &name);
        let hash = service.config_hash();
        services.push(service_health(docker, &service.name, container, &hash).await?);
    }
    Ok(StackHealth {
        services,
        strays: found.into_iter().map(|f| f.name).collect(),
    })
}

async fn service_health(
    docker: &Docker,
    service: &str,
    container: Option<Found>,
    hash: &str,
) -> Result<ServiceHealth, ApplyError> {
    let (state, health) = match &container {
        None => (ContainerState::Missing, None),
        Some(c) if c.is_running() => {
            let health = engine::health(docker, &c.id, &c.name).await?;
            (ContainerState::Running, health.and_then(verdict))
        }
        Some(c) => (ContainerState::NotRunning(c.state.clone()), None),
    };
    Ok(ServiceHealth {
        service: service.to_owned(),
        state,
        current: container.and_then(|c| c.hash).as_deref() == Some(hash),
        health,
    })
}

fn verdict(status: HealthStatusEnum) -> Option<Health> {
    match status {
        HealthStatusEnum::STARTING => Some(Health::Starting),
        HealthStatusEnum::HEALTHY => Some(Health::Healthy),
        HealthStatusEnum::UNHEALTHY => Some(Health::Unhealthy),
        HealthStatusEnum::NONE | HealthStatusEnum::EMPTY => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(state: ContainerState, current: bool) -> ServiceHealth {
        ServiceHealth {
            service: "web".to_owned(),
            state,
            current,
            health: Some(Health::Unhealthy),
        }
    }

    #[test]
    fn drift_is_a_missing_stopped_or_outdated_container_or_a_stray() {
        let stack = |services, strays: &[&str]| StackHealth {
            services,
            strays: strays.iter().map(|s| (*s).to_owned()).collect(),
        };
        let running = service(ContainerState::Running, true);
        assert!(
            !stack(vec![running.clone()], &[]).drifted(),
            "unhealthy is not drift"
        );
        assert!(stack(vec![running.clone()], &["pos-old-1"]).drifted());
        assert!(stack(vec![service(ContainerState::Missing, false)], &[]).drifted());
        let stopped = ContainerState::NotRunning("exited".to_owned());
        assert!(stack(vec![service(stopped, true)], &[]).drifted());
        assert!(stack(vec![service(ContainerState::Running, false)], &[]).drifted());
    }

    #[test]
    fn the_engines_health_states_map_to_verdicts() {
        assert_eq!(verdict(HealthStatusEnum::STARTING), Some(Health::Starting));
        assert_eq!(verdict(HealthStatusEnum::HEALTHY), Some(Health::Healthy));
        assert_eq!(
            verdict(HealthStatusEnum::UNHEALTHY),
            Some(Health::Unhealthy)
        );
        assert_eq!(verdict(HealthStatusEnum::NONE), None);
    }
}
