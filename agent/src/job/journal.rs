//! The job journal: what makes a job run at most once on a device.
//!
//! One directory, three kinds of file per job, named after its id:
//!
//! - `<id>.order`: the order, written (fsync, atomic rename) before the job may start and removed
//!   once its result is written. An order without a result at the next start means the agent
//!   stopped while the job ran: it becomes a [`JobOutcome::Interrupted`] result, never a rerun.
//! - `<id>.result`: the result (postcard, as on the wire), kept until the hub acknowledges it, so
//!   a link cut or a hub restart costs a resend, not a second run.
//! - `<id>.done`: an empty marker left by the acknowledgement, so an order offered again (a hub
//!   that resends after a restart) is recognised; markers older than [`DONE_KEPT`] are pruned at
//!   start (a job expires long before).
//!
//! Each step writes the new file before removing the old one, so a crash between the two leaves
//! both, which [`Journal::open`] reads as the later state. The journal refuses new orders once
//! [`MAX_UNACKED`] jobs wait for an acknowledgement: a hub that never acknowledges must not fill
//! the device's disk.

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use outpost_certs::PkiError;
use outpost_protocol::job::{JobOrder, JobOutcome, JobResult, OutputCapture};
use outpost_protocol::wire;
use thiserror::Error;

/// Most jobs running or holding a result the hub has not acknowledged.
pub const MAX_UNACKED: usize = 1_000;

/// How long an acknowledged job is remembered.
pub const DONE_KEPT: Duration = Duration::from_secs(30 * 24 * 3600);

const ORDER: &str = "order";
const RESULT: &str = "result";
const DONE: &str = "done";
/// What `outpost_certs::write_private_file` names its temporary files.
const TEMPORARY: &str = ".tmp-";

/// Why the journal could not be read or written. Check that the agent's data directory exists,
/// is writable and has space.
#[derive(Debug, Error)]
pub enum JournalError {
    /// A file could not be listed, read or removed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// `list`, `read`, `remove`, `create`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error(transparent)]
    Write(#[from] PkiError),
    /// A file does not decode (written by another version, or damaged).
    #[error("{} is unreadable: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        reason: String,
    },
}

/// Where a job the journal knows stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    /// Ordered, no result yet.
    Running,
    /// Ended; its result waits for the hub's acknowledgement.
    Held,
    /// The hub acknowledged its result.
    Done,
}

/// What to do with an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A new job, journaled: run it.
    Run,
    /// It ended before and its result is held: send the result again.
    Resend,
    /// It runs, or its result was acknowledged: nothing.
    Ignore,
    /// [`MAX_UNACKED`] jobs wait for acknowledgements: refuse it, unjournaled.
    Full,
}

/// The journal of one device's jobs, with an index of its files in memory.
#[derive(Debug)]
pub(crate) struct Journal {
    dir: PathBuf,
    entries: BTreeMap<u64, Entry>,
    limit: usize,
}

/// What [`Journal::open`] found.
#[derive(Debug)]
pub(crate) struct Opened {
    /// The journal.
    pub(crate) journal: Journal,
    /// Orders an agent stop interrupted, now held as [`JobOutcome::Interrupted`] results.
    pub(crate) interrupted: Vec<JobOrder>,
}

/// The files of one job found in the directory.
#[derive(Debug, Default)]
struct Found {
    order: bool,
    result: bool,
    done: Option<SystemTime>,
}

impl Journal {
    /// Read the journal in `dir` (created if missing): settle what a crash left, turn interrupted
    /// orders into results, prune done markers older than [`DONE_KEPT`] at `now`.
    pub(crate) fn open(dir: &Path, now: SystemTime) -> Result<Opened, JournalError> {
        fs::create_dir_all(dir).map_err(io("create", dir))?;
        let mut journal = Self {
            dir: dir.to_owned(),
            entries: BTreeMap::new(),
            limit: MAX_UNACKED,
        };
        let mut interrupted = Vec::new();
        for (id, found) in scan(dir)? {
            if let Some(order) = journal.settle(id, &found, now)? {
                interrupted.push(order);
            }
        }
        Ok(Opened {
            journal,
            interrupted,
        })
    }

    /// Index one job's files, finishing what a crash left half done; an interrupted order is
    /// returned once its result is written.
    fn settle(
        &mut self,
        id: u64,
        found: &Found,
        now: SystemTime,
    ) -> Result<Option<JobOrder>, JournalError> {
        if let Some(acked) = found.done {
            remove(&self.path(id, RESULT))?;
            remove(&self.path(id, ORDER))?;
            let age = now.duration_since(acked).unwrap_or_default();
            if age > DONE_KEPT {
                remove(&self.path(id, DONE))?;
            } else {
                self.entries.insert(id, Entry::Done);
            }
            return Ok(None);
        }
        if found.result {
            remove(&self.path(id, ORDER))?;
            self.entries.insert(id, Entry::Held);
            return Ok(None);
        }
        let order = self.read_order(id);
        let lost = OutputCapture::default().finish(id, JobOutcome::Interrupted, 0);
        self.finish(&lost)?;
        Ok(order)
    }

    /// The order of `id`, if it decodes (an undecodable one is still reported interrupted).
    fn read_order(&self, id: u64) -> Option<JobOrder> {
        let bytes = fs::read(self.path(id, ORDER)).ok()?;
        wire::decode(&bytes).ok()
    }

    /// Decide on `order`, journaling it when it is to run.
    pub(crate) fn admit(&mut self, order: &JobOrder) -> Result<Admission, JournalError> {
        match self.entries.get(&order.id) {
            Some(Entry::Held) => return Ok(Admission::Resend),
            Some(Entry::Running | Entry::Done) => return Ok(Admission::Ignore),
            None => {}
        }
        if self.unacked() >= self.limit {
            return Ok(Admission::Full);
        }
        outpost_certs::write_private_file(&self.path(order.id, ORDER), &wire::encode(order))?;
        self.entries.insert(order.id, Entry::Running);
        Ok(Admission::Run)
    }

    /// Keep `result` until the hub acknowledges it; its order is forgotten.
    pub(crate) fn finish(&mut self, result: &JobResult) -> Result<(), JournalError> {
        let path = self.path(result.id, RESULT);
        outpost_certs::write_private_file(&path, &wire::encode(result))?;
        self.entries.insert(result.id, Entry::Held);
        remove(&self.path(result.id, ORDER))
    }

    /// The hub stored the result of `id`: leave a done marker, drop the result. Whether a
    /// held result was acknowledged.
    pub(crate) fn ack(&mut self, id: u64) -> Result<bool, JournalError> {
        if self.entries.get(&id) != Some(&Entry::Held) {
            return Ok(false);
        }
        outpost_certs::write_private_file(&self.path(id, DONE), &[])?;
        self.entries.insert(id, Entry::Done);
        remove(&self.path(id, RESULT))?;
        Ok(true)
    }

    /// Jobs whose result waits for an acknowledgement, in id order.
    pub(crate) fn held(&self) -> Vec<u64> {
        self.entries
            .iter()
            .filter(|(_, entry)| **entry == Entry::Held)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The held result of `id` in the journal at `dir`; `None` once acknowledged.
    pub(crate) fn read_result(dir: &Path, id: u64) -> Result<Option<JobResult>, JournalError> {
        let path = dir.join(file_name(id, RESULT));
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("read", &path)(e)),
        };
        wire::decode(&bytes)
            .map(Some)
            .map_err(|e| JournalError::Corrupt {
                path,
                reason: e.to_string(),
            })
    }

    fn unacked(&self) -> usize {
        self.entries.values().filter(|e| **e != Entry::Done).count()
    }

    fn path(&self, id: u64, kind: &str) -> PathBuf {
        self.dir.join(file_name(id, kind))
    }
}

fn file_name(id: u64, kind: &str) -> String {
    format!("{id}.{kind}")
}

/// Every job's files in `dir`; temporary files a crash left are removed, others ignored.
fn scan(dir: &Path) -> Result<BTreeMap<u64, Found>, JournalError> {
    let mut jobs: BTreeMap<u64, Found> = BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(io("list", dir))? {
        let entry = entry.map_err(io("list", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.contains(TEMPORARY) {
            remove(&entry.path())?;
            continue;
        }
        let Some((id, kind)) = name.split_once('.') else {
            continue;
        };
        let Ok(id) = id.parse::<u64>() else { continue };
        let found = jobs.entry(id).or_default();
        match kind {
            ORDER => found.order = true,
            RESULT => found.result = true,
            DONE => found.done = Some(modified(&entry.path())?),
            _ => {}
        }
    }
    jobs.retain(|_, found| found.order || found.result || found.done.is_some());
    Ok(jobs)
}

fn modified(path: &Path) -> Result<SystemTime, JournalError> {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(io("read", path))
}

/// Remove `path`; one already gone is fine.
fn remove(path: &Path) -> Result<(), JournalError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io("remove", path)(e)),
        _ => Ok(()),
    }
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests;
