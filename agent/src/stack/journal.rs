//! The agent's files for its stacks, in its state directory: a journal while an apply is under
//! way, and the spec last applied per project.
//!
//! The journal is written before the first container is touched and once more at the point of no
//! return, so an agent killed (power cut, OOM, upgrade) in the middle of an apply knows at its
//! next start what to undo or finish: [`Phase::Applying`] means roll back to the old containers,
//! [`Phase::Committed`] means the new version runs and only the set-aside containers remain to be
//! removed. Either way the device ends on one version, never a mix. Every step it records is
//! idempotent and found by container id, so recovering twice, or after a crash in recovery,
//! is safe.
//!
//! JSON, so an operator on the device can read what the agent was doing; written atomically
//! (temporary file, fsync, rename) with mode 0600, since a spec carries environment values.
//! Each file is named after its project, whose characters ([`StackSpec::check`]) are safe in a
//! file name.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use outpost_protocol::stack::StackSpec;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::ApplyError;
use super::plan::{Aside, Plan};

/// The journal's format; a journal of another format is refused, not guessed at.
const FORMAT: u32 = 1;

const JOURNAL_SUFFIX: &str = ".journal.json";
const APPLIED_SUFFIX: &str = ".applied.json";

/// How far an apply got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Phase {
    /// Containers are being replaced: a crash now is undone.
    Applying,
    /// Every new container started: a crash now is finished.
    Committed,
}

/// One apply in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Journal {
    /// [`FORMAT`].
    pub(crate) format: u32,
    /// How far it got.
    pub(crate) phase: Phase,
    /// The version being applied.
    pub(crate) spec: StackSpec,
    /// Containers left alone (ids).
    pub(crate) kept: Vec<String>,
    /// Containers set aside, to restore on rollback or remove on commit.
    pub(crate) set_aside: Vec<Aside>,
    /// Whether the project's network was there before (if not, a rollback removes it).
    pub(crate) network_existed: bool,
}

impl Journal {
    /// The journal of applying `plan` for `spec`, before its first step.
    pub(crate) fn begin(spec: &StackSpec, plan: &Plan<'_>, network_existed: bool) -> Self {
        Self {
            format: FORMAT,
            phase: Phase::Applying,
            spec: spec.clone(),
            kept: plan.kept(),
            set_aside: plan.set_aside(),
            network_existed,
        }
    }

    pub(crate) fn project(&self) -> &str {
        &self.spec.project
    }

    /// Write (or overwrite) this journal.
    pub(crate) fn write(&self, dir: &Path) -> Result<(), ApplyError> {
        write_json(&journal_path(dir, self.project()), self)
    }

    /// The journal of `project`, if an apply of it is in progress.
    pub(crate) fn read(dir: &Path, project: &str) -> Result<Option<Self>, ApplyError> {
        let path = journal_path(dir, project);
        let journal: Option<Self> = read_json(&path)?;
        match journal {
            Some(j) if j.format != FORMAT => Err(ApplyError::StateCorrupt {
                path,
                reason: format!("journal format {} (this agent writes {FORMAT})", j.format),
            }),
            Some(j) if j.spec.project != project => Err(ApplyError::StateCorrupt {
                path,
                reason: format!("it is the journal of project {:?}", j.spec.project),
            }),
            other => Ok(other),
        }
    }

    /// Projects with an apply in progress, sorted.
    pub(crate) fn pending(dir: &Path) -> Result<Vec<String>, ApplyError> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(io_error("list", dir, source)),
        };
        let mut projects = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| io_error("list", dir, source))?;
            let name = entry.file_name();
            if let Some(project) = name.to_str().and_then(|n| n.strip_suffix(JOURNAL_SUFFIX)) {
                projects.push(project.to_owned());
            }
        }
        projects.sort();
        Ok(projects)
    }

    /// The apply of `project` is over: forget its journal.
    pub(crate) fn clear(dir: &Path, project: &str) -> Result<(), ApplyError> {
        remove_file(&journal_path(dir, project))
    }
}

/// Record `spec` as the version applied for its project.
pub(crate) fn save_applied(dir: &Path, spec: &StackSpec) -> Result<(), ApplyError> {
    write_json(&applied_path(dir, &spec.project), spec)
}

/// The spec last applied for `project`, if any.
pub(crate) fn last_applied(dir: &Path, project: &str) -> Result<Option<StackSpec>, ApplyError> {
    read_json(&applied_path(dir, project))
}

/// Forget what was applied for `project` (it was removed).
pub(crate) fn forget_applied(dir: &Path, project: &str) -> Result<(), ApplyError> {
    remove_file(&applied_path(dir, project))
}

fn journal_path(dir: &Path, project: &str) -> PathBuf {
    dir.join(format!("{project}{JOURNAL_SUFFIX}"))
}

fn applied_path(dir: &Path, project: &str) -> PathBuf {
    dir.join(format!("{project}{APPLIED_SUFFIX}"))
}

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ApplyError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|source| io_error("create", dir, source))?;
    }
    // Serialising plain data into a Vec has no failure mode.
    let bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    Ok(outpost_certs::write_private_file(path, &bytes)?)
}

pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, ApplyError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io_error("read", path, source)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|err| ApplyError::StateCorrupt {
            path: path.to_owned(),
            reason: err.to_string(),
        })
}

fn remove_file(path: &Path) -> Result<(), ApplyError> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != ErrorKind::NotFound => Err(io_error("remove", path, err)),
        _ => Ok(()),
    }
}

fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> ApplyError {
    ApplyError::StateIo {
        action,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests;
