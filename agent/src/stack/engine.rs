//! The engine steps an apply, a rollback and a removal are made of. Steps that undo or clean up
//! are idempotent (a container or network already gone is success), because recovery may run
//! them again after a crash half-way through.
//!
//! Requests go through the caller's [`Docker`] client, whose timeout bounds each one; it must
//! exceed [`STOP_TIMEOUT`], which a stop may take before the engine kills the container.

use std::path::Path;

use bollard::models::{
    ContainerStateStatusEnum, ContainerSummary, HealthStatusEnum, NetworkCreateRequest,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, InspectNetworkOptions,
    ListContainersOptionsBuilder, ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptions, RenameContainerOptionsBuilder, StartContainerOptions,
    StopContainerOptionsBuilder,
};
use bollard::Docker;
use outpost_protocol::stack::{ServiceSpec, StackSpec};
use tracing::warn;

use super::create::container_body;
use super::error::{is_not_found, ApplyError};
use super::names;
use super::plan::{Aside, Found};

/// Seconds a container has to stop after SIGTERM before the engine kills it: Compose's default
/// `stop_grace_period`, long enough for a database to flush.
pub const STOP_TIMEOUT: i32 = 10;

/// Every container labelled with `project`, stopped ones included.
pub(crate) async fn list_project(docker: &Docker, project: &str) -> Result<Vec<Found>, ApplyError> {
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&names::project_filter(project))
        .build();
    let listed = docker
        .list_containers(Some(options))
        .await
        .map_err(ApplyError::engine("list containers of", project))?;
    Ok(listed.into_iter().map(found).collect())
}

fn found(summary: ContainerSummary) -> Found {
    let name = summary
        .names
        .iter()
        .flatten()
        .next()
        .map(|n| names::bare(n));
    Found {
        id: summary.id.clone().unwrap_or_default(),
        name: name.unwrap_or_default().to_owned(),
        hash: summary
            .labels
            .as_ref()
            .and_then(|l| l.get(names::CONFIG_HASH).cloned()),
        state: summary.state.map(|s| s.to_string()).unwrap_or_default(),
    }
}

/// Whether the project's default network exists.
pub(crate) async fn network_exists(docker: &Docker, project: &str) -> Result<bool, ApplyError> {
    let name = names::network_name(project);
    match docker
        .inspect_network(&name, None::<InspectNetworkOptions>)
        .await
    {
        Ok(_) => Ok(true),
        Err(err) if is_not_found(&err) => Ok(false),
        Err(err) => Err(ApplyError::engine("inspect network", &name)(err)),
    }
}

/// Create the project's default network, a bridge labelled as Compose labels it.
pub(crate) async fn create_network(docker: &Docker, project: &str) -> Result<(), ApplyError> {
    let name = names::network_name(project);
    let request = NetworkCreateRequest {
        name: name.clone(),
        driver: Some("bridge".to_owned()),
        labels: Some(names::project_labels(
            project,
            [(names::NETWORK, "default".to_owned())],
        )),
        ..Default::default()
    };
    docker
        .create_network(request)
        .await
        .map_err(ApplyError::engine("create network", &name))?;
    Ok(())
}

/// Remove the project's default network, if it is there.
pub(crate) async fn remove_network(docker: &Docker, project: &str) -> Result<(), ApplyError> {
    let name = names::network_name(project);
    gone_is_fine(docker.remove_network(&name).await)
        .map_err(ApplyError::engine("remove network", &name))
}

/// Create the stack's named volumes (the engine returns an existing one as it is).
pub(crate) async fn create_volumes(docker: &Docker, spec: &StackSpec) -> Result<(), ApplyError> {
    for volume in &spec.volumes {
        let name = spec.volume_name(volume);
        let request = VolumeCreateRequest {
            name: Some(name.clone()),
            labels: Some(names::project_labels(
                &spec.project,
                [(names::VOLUME, volume.clone())],
            )),
            ..Default::default()
        };
        docker
            .create_volume(request)
            .await
            .map_err(ApplyError::engine("create volume", &name))?;
    }
    Ok(())
}

/// Remove every volume labelled with `project`.
pub(crate) async fn remove_volumes(docker: &Docker, project: &str) -> Result<(), ApplyError> {
    let options = ListVolumesOptionsBuilder::default()
        .filters(&names::project_filter(project))
        .build();
    let listed = docker
        .list_volumes(Some(options))
        .await
        .map_err(ApplyError::engine("list volumes of", project))?;
    for volume in listed.volumes.into_iter().flatten() {
        gone_is_fine(
            docker
                .remove_volume(&volume.name, None::<RemoveVolumeOptions>)
                .await,
        )
        .map_err(ApplyError::engine("remove volume", &volume.name))?;
    }
    Ok(())
}

/// Stop a container and, when `rename`, move it off its name so a replacement can take it.
pub(crate) async fn set_aside(
    docker: &Docker,
    aside: &Aside,
    rename: bool,
) -> Result<(), ApplyError> {
    stop(docker, &aside.id, &aside.name).await?;
    if rename {
        let options = RenameContainerOptionsBuilder::default()
            .name(&names::aside_name(&aside.name, &aside.id))
            .build();
        docker
            .rename_container(&aside.id, options)
            .await
            .map_err(ApplyError::engine("rename container", &aside.name))?;
    }
    Ok(())
}

/// Put a set-aside container back: its name, and running if it ran. One removed since is
/// skipped: there is nothing left to restore.
pub(crate) async fn restore(docker: &Docker, aside: &Aside) -> Result<(), ApplyError> {
    let engine = ApplyError::engine;
    let inspected = match docker
        .inspect_container(&aside.id, None::<InspectContainerOptions>)
        .await
    {
        Ok(inspected) => inspected,
        Err(err) if is_not_found(&err) => {
            warn!(container = %aside.name, "container to restore is gone; not restored");
            return Ok(());
        }
        Err(err) => return Err(engine("inspect container", &aside.name)(err)),
    };
    if inspected.name.as_deref().map(names::bare) != Some(aside.name.as_str()) {
        let options = RenameContainerOptionsBuilder::default()
            .name(&aside.name)
            .build();
        docker
            .rename_container(&aside.id, options)
            .await
            .map_err(engine("rename container", &aside.name))?;
    }
    let status = inspected.state.and_then(|s| s.status);
    if aside.was_running && status != Some(ContainerStateStatusEnum::RUNNING) {
        docker
            .start_container(&aside.id, None::<StartContainerOptions>)
            .await
            .map_err(engine("start container", &aside.name))?;
    }
    Ok(())
}

/// Create and start the container of `service`; `state_dir` is its working-directory label.
pub(crate) async fn create_and_start(
    docker: &Docker,
    state_dir: &Path,
    spec: &StackSpec,
    service: &ServiceSpec,
) -> Result<(), ApplyError> {
    let name = names::container_name(&spec.project, &service.name);
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    let body = container_body(spec, service, state_dir);
    docker
        .create_container(Some(options), body)
        .await
        .map_err(ApplyError::engine("create container", &name))?;
    docker
        .start_container(&name, None::<StartContainerOptions>)
        .await
        .map_err(ApplyError::engine("start container", &name))
}

/// Stop (gracefully, within [`STOP_TIMEOUT`]) and remove a container, with its anonymous
/// volumes when `volumes`; one already gone is fine. `name` is for messages.
pub(crate) async fn stop_and_remove(
    docker: &Docker,
    id: &str,
    name: &str,
    volumes: bool,
) -> Result<(), ApplyError> {
    stop(docker, id, name).await?;
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(volumes)
        .build();
    gone_is_fine(docker.remove_container(id, Some(options)).await)
        .map_err(ApplyError::engine("remove container", name))
}

async fn stop(docker: &Docker, id: &str, name: &str) -> Result<(), ApplyError> {
    let options = StopContainerOptionsBuilder::default()
        .t(STOP_TIMEOUT)
        .build();
    gone_is_fine(docker.stop_container(id, Some(options)).await)
        .map_err(ApplyError::engine("stop container", name))
}

/// The health the engine reports for a container, if it has a healthcheck.
pub(crate) async fn health(
    docker: &Docker,
    id: &str,
    name: &str,
) -> Result<Option<HealthStatusEnum>, ApplyError> {
    let inspected = docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .map_err(ApplyError::engine("inspect container", name))?;
    Ok(inspected
        .state
        .and_then(|s| s.health)
        .and_then(|h| h.status))
}

/// Success, also when the engine says the object is already gone.
fn gone_is_fine(result: Result<(), bollard::errors::Error>) -> Result<(), bollard::errors::Error> {
    match result {
        Err(err) if is_not_found(&err) => Ok(()),
        other => other,
    }
}
