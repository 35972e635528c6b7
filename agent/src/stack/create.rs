//! A [`ServiceSpec`] as the engine's container-create body: a pure function, so what a device
//! asks of its engine for a given spec is tested without one.
//!
//! Choices where Compose leaves room:
//! - Bind mounts go in `Binds` (`src:dst[:ro]`), as Compose does for the short syntax: the engine
//!   creates a missing host directory instead of failing, which is what a Compose file written
//!   for a device expects. A host path containing `:` cannot be written that way and goes in
//!   `Mounts`, where the engine requires it to exist.
//! - Named and anonymous volumes go in `Mounts`.
//! - Every container joins the project's default network with its service name as alias, so
//!   services reach each other by name as under Compose.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use bollard::models::{
    ContainerCreateBody, DeviceMapping as EngineDevice, EndpointSettings, HealthConfig, HostConfig,
    HostConfigLogConfig, Mount as EngineMount, MountType, NetworkingConfig,
    PortBinding as EnginePort, PortMap, RestartPolicy as EngineRestart, RestartPolicyNameEnum,
};
use outpost_protocol::stack::{
    Healthcheck, Logging, Mount, MountSource, PortBinding, RestartPolicy, ServiceSpec, StackSpec,
};

use super::names;

/// Nanoseconds in a millisecond: the spec counts milliseconds, the engine nanoseconds.
const NANOS_PER_MILLI: i64 = 1_000_000;

/// The create body for `service` of `spec`, labelled as Compose labels it; `working_dir` is the
/// project's working directory label (the agent's state directory).
pub(crate) fn container_body(
    spec: &StackSpec,
    service: &ServiceSpec,
    working_dir: &Path,
) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(service.image.clone()),
        cmd: service.command.clone(),
        entrypoint: service.entrypoint.clone(),
        env: Some(environment(&service.environment)),
        exposed_ports: Some(exposed_ports(&service.ports)),
        healthcheck: service.healthcheck.as_ref().map(healthcheck),
        labels: Some(labels(spec, service, working_dir)),
        user: service.user.clone(),
        working_dir: service.working_dir.clone(),
        host_config: Some(host_config(spec, service)),
        networking_config: Some(networking(spec, service)),
        ..Default::default()
    }
}

fn environment(vars: &[(String, String)]) -> Vec<String> {
    vars.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The engine's port key: `80/tcp`.
fn port_key(port: &PortBinding) -> String {
    format!("{}/{}", port.container_port, port.protocol.as_str())
}

fn exposed_ports(ports: &[PortBinding]) -> Vec<String> {
    let keys: BTreeSet<String> = ports.iter().map(port_key).collect();
    keys.into_iter().collect()
}

/// Published ports, grouped by container port (one container port may be published twice).
fn port_bindings(ports: &[PortBinding]) -> PortMap {
    let mut map = PortMap::new();
    for port in ports {
        let binding = EnginePort {
            host_ip: port.host_ip.clone(),
            host_port: Some(port.host_port.map(|p| p.to_string()).unwrap_or_default()),
        };
        map.entry(port_key(port))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }
    map
}

fn healthcheck(check: &Healthcheck) -> HealthConfig {
    let nanos = |ms: Option<u64>| {
        ms.map(|ms| {
            i64::try_from(ms)
                .unwrap_or(i64::MAX)
                .saturating_mul(NANOS_PER_MILLI)
        })
    };
    HealthConfig {
        test: Some(check.test.clone()),
        interval: nanos(check.interval_ms),
        timeout: nanos(check.timeout_ms),
        start_period: nanos(check.start_period_ms),
        retries: check.retries.map(i64::from),
        ..Default::default()
    }
}

/// The service's own labels, then Compose's over them (a service cannot pose as another).
fn labels(spec: &StackSpec, service: &ServiceSpec, working_dir: &Path) -> HashMap<String, String> {
    let own = service.labels.iter().cloned();
    let compose = names::project_labels(
        &spec.project,
        [
            (names::SERVICE, service.name.clone()),
            (names::CONFIG_HASH, service.config_hash()),
            (names::CONTAINER_NUMBER, "1".to_owned()),
            (names::ONEOFF, "False".to_owned()),
            (names::WORKING_DIR, working_dir.display().to_string()),
        ],
    );
    own.chain(compose).collect()
}

fn host_config(spec: &StackSpec, service: &ServiceSpec) -> HostConfig {
    let (binds, mounts): (Vec<&Mount>, Vec<&Mount>) =
        service.mounts.iter().partition(|m| as_bind(m).is_some());
    HostConfig {
        binds: Some(binds.into_iter().filter_map(as_bind).collect()),
        mounts: Some(mounts.into_iter().map(|m| engine_mount(spec, m)).collect()),
        port_bindings: Some(port_bindings(&service.ports)),
        restart_policy: Some(restart_policy(service.restart)),
        devices: Some(service.devices.iter().map(device).collect()),
        privileged: Some(service.privileged),
        log_config: service.logging.as_ref().map(log_config),
        network_mode: Some(names::network_name(&spec.project)),
        ..Default::default()
    }
}

/// A bind mount in `Binds` form (`src:dst[:ro]`), when its paths allow it.
fn as_bind(mount: &Mount) -> Option<String> {
    let MountSource::Bind(source) = &mount.source else {
        return None;
    };
    if source.contains(':') || mount.target.contains(':') {
        return None;
    }
    let mode = if mount.read_only { ":ro" } else { "" };
    Some(format!("{source}:{}{mode}", mount.target))
}

fn engine_mount(spec: &StackSpec, mount: &Mount) -> EngineMount {
    let (typ, source) = match &mount.source {
        MountSource::Volume(name) => (MountType::VOLUME, Some(spec.volume_name(name))),
        MountSource::Anonymous => (MountType::VOLUME, None),
        MountSource::Bind(path) => (MountType::BIND, Some(path.clone())),
    };
    EngineMount {
        target: Some(mount.target.clone()),
        source,
        typ: Some(typ),
        read_only: Some(mount.read_only),
        ..Default::default()
    }
}

fn restart_policy(policy: RestartPolicy) -> EngineRestart {
    let (name, retries) = match policy {
        RestartPolicy::No => (RestartPolicyNameEnum::NO, None),
        RestartPolicy::Always => (RestartPolicyNameEnum::ALWAYS, None),
        RestartPolicy::UnlessStopped => (RestartPolicyNameEnum::UNLESS_STOPPED, None),
        RestartPolicy::OnFailure { max_retries } => (
            RestartPolicyNameEnum::ON_FAILURE,
            Some(i64::from(max_retries)),
        ),
    };
    EngineRestart {
        name: Some(name),
        maximum_retry_count: retries,
    }
}

fn device(mapping: &outpost_protocol::stack::DeviceMapping) -> EngineDevice {
    EngineDevice {
        path_on_host: Some(mapping.host.clone()),
        path_in_container: Some(mapping.container.clone()),
        cgroup_permissions: Some(mapping.permissions.clone()),
    }
}

fn log_config(logging: &Logging) -> HostConfigLogConfig {
    HostConfigLogConfig {
        typ: Some(logging.driver.clone()),
        config: Some(logging.options.iter().cloned().collect()),
    }
}

fn networking(spec: &StackSpec, service: &ServiceSpec) -> NetworkingConfig {
    let endpoint = EndpointSettings {
        aliases: Some(vec![service.name.clone()]),
        ..Default::default()
    };
    NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            names::network_name(&spec.project),
            endpoint,
        )])),
    }
}

#[cfg(test)]
mod tests;
