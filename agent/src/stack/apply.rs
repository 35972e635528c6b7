//! Applying a version all or nothing, recovering after a crash, and removing a stack.
//!
//! An apply runs in this order, and the journal is what makes it atomic:
//! 1. settle any earlier apply of the project left half-done (its journal);
//! 2. pull missing images: a failure here has touched nothing;
//! 3. plan from the engine's containers, write the journal ([`Phase::Applying`]);
//! 4. make the network and volumes; set aside (stop) the containers of removed services; then,
//!    service by service in start order, set aside the old container (stop, rename) and create
//!    and start the new one — or leave a running, unchanged one alone;
//! 5. write the journal as [`Phase::Committed`], remove the set-aside containers, record the spec
//!    as applied, drop the journal.
//!
//! Any failure in 4 (or in writing 5's journal) rolls back: the new containers are removed and
//! the set-aside ones renamed back and started. A crash anywhere is settled by [`recover`] from the
//! journal's phase: before the commit, the same rollback; after, the same finish.

use std::collections::HashSet;
use std::path::Path;

use bollard::Docker;
use outpost_protocol::stack::StackSpec;
use tracing::{info, warn};

use super::engine;
use super::error::ApplyError;
use super::journal::{self, Journal, Phase};
use super::plan::{plan, Plan, Step};
use super::pull::pull_missing;
use super::{Applied, Progress, Recovered, RemoveVolumes};
use crate::loopback::HubLink;

/// Apply `spec` to the engine behind `docker`, keeping the agent's files in `state_dir` (an
/// absolute path: it also labels the containers as the project's working directory).
///
/// On success the engine runs exactly `spec`. On failure it runs the version it ran before,
/// unless the error is [`ApplyError::RollbackFailed`]; then the journal is kept and [`recover`]
/// (at the next agent start, or the next apply of this project) finishes the rollback. `progress`
/// hears about pulls and each service as it is kept or started. Images of the registry the hub
/// mirrors come through `mirror`, the agent's loopback registry, when there is one. One apply at a time per project:
/// the caller serialises them.
pub async fn apply(
    docker: &Docker,
    state_dir: &Path,
    spec: &StackSpec,
    mirror: Option<&HubLink>,
    mut progress: impl FnMut(Progress) + Send,
) -> Result<Applied, ApplyError> {
    spec.check().map_err(|source| ApplyError::Invalid {
        project: spec.project.clone(),
        source,
    })?;
    recover_project(docker, state_dir, &spec.project).await?;
    pull_missing(docker, spec, mirror, &mut progress).await?;
    let found = engine::list_project(docker, &spec.project).await?;
    let plan = plan(spec, found);
    let network_existed = engine::network_exists(docker, &spec.project).await?;
    let mut journal = Journal::begin(spec, &plan, network_existed);
    journal.write(state_dir)?;
    let committed = carry_out(docker, state_dir, spec, &journal, &plan, &mut progress)
        .await
        .and_then(|()| {
            journal.phase = Phase::Committed;
            journal.write(state_dir)
        });
    if let Err(cause) = committed {
        progress(Progress::RollingBack {
            reason: cause.to_string(),
        });
        return Err(undo(docker, state_dir, &journal, cause).await);
    }
    progress(Progress::Committed);
    finish(docker, state_dir, &journal).await?;
    Ok(applied(spec, &plan))
}

/// Step 4: everything that changes the engine before the commit.
async fn carry_out(
    docker: &Docker,
    state_dir: &Path,
    spec: &StackSpec,
    journal: &Journal,
    plan: &Plan<'_>,
    progress: &mut (impl FnMut(Progress) + Send),
) -> Result<(), ApplyError> {
    if !journal.network_existed {
        engine::create_network(docker, &spec.project).await?;
    }
    engine::create_volumes(docker, spec).await?;
    for aside in &plan.removed {
        engine::set_aside(docker, aside, false).await?;
    }
    for step in &plan.steps {
        match step {
            Step::Keep { service, .. } => progress(Progress::Kept {
                service: service.name.clone(),
            }),
            Step::Replace { service, old } => {
                if let Some(old) = old {
                    engine::set_aside(docker, old, true).await?;
                }
                engine::create_and_start(docker, state_dir, spec, service).await?;
                progress(Progress::Started {
                    service: service.name.clone(),
                });
            }
        }
    }
    Ok(())
}

fn applied(spec: &StackSpec, plan: &Plan<'_>) -> Applied {
    let (mut kept, mut started) = (Vec::new(), Vec::new());
    for step in &plan.steps {
        match step {
            Step::Keep { service, .. } => kept.push(service.name.clone()),
            Step::Replace { service, .. } => started.push(service.name.clone()),
        }
    }
    Applied {
        version: spec.version,
        kept,
        started,
        removed: plan.removed.iter().map(|a| a.name.clone()).collect(),
    }
}

/// Roll back after `cause`: the error to return.
async fn undo(
    docker: &Docker,
    state_dir: &Path,
    journal: &Journal,
    cause: ApplyError,
) -> ApplyError {
    match roll_back(docker, state_dir, journal).await {
        Ok(()) => cause,
        Err(rollback) => ApplyError::RollbackFailed {
            cause: Box::new(cause),
            rollback: Box::new(rollback),
        },
    }
}

/// Undo an apply: remove what it created, put back what it set aside, drop the journal.
async fn roll_back(docker: &Docker, state_dir: &Path, journal: &Journal) -> Result<(), ApplyError> {
    let project = journal.project();
    let old: HashSet<&str> = journal
        .kept
        .iter()
        .map(String::as_str)
        .chain(journal.set_aside.iter().map(|a| a.id.as_str()))
        .collect();
    for found in engine::list_project(docker, project).await? {
        if !old.contains(found.id.as_str()) {
            engine::stop_and_remove(docker, &found.id, &found.name, true).await?;
        }
    }
    for aside in &journal.set_aside {
        engine::restore(docker, aside).await?;
    }
    if !journal.network_existed {
        engine::remove_network(docker, project).await?;
    }
    Journal::clear(state_dir, project)?;
    warn!(project, version = journal.spec.version, "apply rolled back");
    Ok(())
}

/// Complete a committed apply: remove the set-aside containers, record the spec, drop the
/// journal.
async fn finish(docker: &Docker, state_dir: &Path, journal: &Journal) -> Result<(), ApplyError> {
    for aside in &journal.set_aside {
        engine::stop_and_remove(docker, &aside.id, &aside.name, true).await?;
    }
    journal::save_applied(state_dir, &journal.spec)?;
    Journal::clear(state_dir, journal.project())?;
    info!(
        project = journal.project(),
        version = journal.spec.version,
        "stack applied"
    );
    Ok(())
}

/// Settle every apply a crash left half-done: call at agent start, before anything else touches
/// stacks. Each project ends on one version: the old one if its apply had not committed, the new
/// one if it had.
pub async fn recover(docker: &Docker, state_dir: &Path) -> Result<Vec<Recovered>, ApplyError> {
    let mut recovered = Vec::new();
    for project in Journal::pending(state_dir)? {
        recovered.extend(recover_project(docker, state_dir, &project).await?);
    }
    Ok(recovered)
}

async fn recover_project(
    docker: &Docker,
    state_dir: &Path,
    project: &str,
) -> Result<Option<Recovered>, ApplyError> {
    let Some(journal) = Journal::read(state_dir, project)? else {
        return Ok(None);
    };
    let version = journal.spec.version;
    let project = project.to_owned();
    Ok(Some(match journal.phase {
        Phase::Applying => {
            roll_back(docker, state_dir, &journal).await?;
            Recovered::RolledBack { project, version }
        }
        Phase::Committed => {
            finish(docker, state_dir, &journal).await?;
            Recovered::Completed { project, version }
        }
    }))
}

/// Remove stack `project`: its containers (stopped gracefully first) and its network, and its
/// volumes only when asked (they hold the stack's data). Removing a stack that is not there
/// succeeds.
pub async fn remove(
    docker: &Docker,
    state_dir: &Path,
    project: &str,
    volumes: RemoveVolumes,
) -> Result<(), ApplyError> {
    let with_volumes = volumes == RemoveVolumes::Yes;
    for found in engine::list_project(docker, project).await? {
        engine::stop_and_remove(docker, &found.id, &found.name, with_volumes).await?;
    }
    engine::remove_network(docker, project).await?;
    if with_volumes {
        engine::remove_volumes(docker, project).await?;
    }
    Journal::clear(state_dir, project)?;
    journal::forget_applied(state_dir, project)?;
    info!(project, "stack removed");
    Ok(())
}

/// The spec last applied for `project` (from `state_dir`), if any.
pub fn last_applied(state_dir: &Path, project: &str) -> Result<Option<StackSpec>, ApplyError> {
    journal::last_applied(state_dir, project)
}
