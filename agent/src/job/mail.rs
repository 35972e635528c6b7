//! What the runner has for the hub, carried to one session at a time.
//!
//! The runner outlives sessions, and a session's outbox is bounded (`driver/outbox.rs`), so the
//! two are joined by a courier: a task per session that takes what the session has yet to be
//! told ([`Outgoing`], kept at the runner's desk) and hands it over one message at a time, as
//! fast as the session takes them.
//!
//! Results are never queued, only their ids: a session starts with every result the journal
//! holds, each job that ends adds its id, an acknowledgement removes it, and the courier reads a
//! result from the journal only when the session is ready for it. So nothing is lost however far
//! behind the hub falls, and a thousand held results cost a thousand ids in memory, not a
//! thousand outputs. What else there is to say — a job started, an order refused before it
//! ran — waits in short queues that drop the newest when full; neither loss lasts: a refused
//! order comes again with the next session.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::Arc;

use outpost_protocol::job::{JobOutcome, JobProgress, JobResult, OutputCapture};
use outpost_protocol::wire::AgentMessage;
use tokio::sync::{mpsc, Notify};
use tracing::warn;

use super::execute::reason;
use super::journal::Journal;
use super::Shared;

/// Most `JobStarted` notes, and most unjournaled results, waiting for one session: at most
/// [`super::MAX_RUNNING`] jobs start at a time, and refusals come one per order the hub sends.
const MAX_WAITING: usize = 64;

/// Something for the hub about one job.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Note {
    /// The job has a slot and runs.
    Started(u64),
    /// The job's result is held in the journal (again, for an order offered twice).
    Ended(u64),
    /// A result that is not journaled: an order refused before anything ran, or a result whose
    /// journal write failed.
    Unjournaled(JobResult),
    /// The hub stored the result: it need not be sent (again).
    Acked(u64),
    /// How far a pull job has come (only the latest of each job waits).
    Progress(JobProgress),
}

/// What one session has yet to be told.
#[derive(Debug)]
pub(super) struct Outgoing {
    session: u64,
    started: VecDeque<u64>,
    unjournaled: VecDeque<JobResult>,
    results: BTreeSet<u64>,
    /// The latest progress of each running pull job (at most [`super::MAX_RUNNING`]).
    progress: BTreeMap<u64, JobProgress>,
    ready: Arc<Notify>,
}

impl Outgoing {
    /// Session number `session`, which starts with the results `held`.
    pub(super) fn new(session: u64, held: Vec<u64>) -> Self {
        Self {
            session,
            started: VecDeque::new(),
            unjournaled: VecDeque::new(),
            results: held.into_iter().collect(),
            progress: BTreeMap::new(),
            ready: Arc::new(Notify::new()),
        }
    }

    /// Take `note` in, and wake the courier.
    pub(super) fn note(&mut self, note: Note) {
        match note {
            Note::Started(id) => push_bounded(&mut self.started, id),
            Note::Unjournaled(result) => push_bounded(&mut self.unjournaled, result),
            Note::Ended(id) => {
                self.progress.remove(&id);
                self.results.insert(id);
            }
            Note::Progress(report) => {
                if self.progress.len() < MAX_WAITING || self.progress.contains_key(&report.id) {
                    self.progress.insert(report.id, report);
                }
            }
            Note::Acked(id) => {
                self.results.remove(&id);
            }
        }
        self.ready.notify_one();
    }

    /// The next thing to tell: a start before any result (so a job's start precedes its end).
    fn take(&mut self) -> Option<Note> {
        if let Some(id) = self.started.pop_front() {
            return Some(Note::Started(id));
        }
        if let Some((_, report)) = self.progress.pop_first() {
            return Some(Note::Progress(report));
        }
        if let Some(result) = self.unjournaled.pop_front() {
            return Some(Note::Unjournaled(result));
        }
        self.results.pop_first().map(Note::Ended)
    }

    /// This session is over (another is attached): wake its courier to let it end.
    pub(super) fn replaced(&self) {
        self.ready.notify_one();
    }
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T) {
    if queue.len() < MAX_WAITING {
        queue.push_back(item);
    } else {
        warn!("the hub is not reading: a job message is dropped");
    }
}

/// One session's messages from the job runner ([`super::JobRunner::attach`]).
#[derive(Debug)]
pub struct JobMail {
    messages: mpsc::Receiver<AgentMessage>,
}

impl JobMail {
    /// Start the courier of `outgoing`'s session.
    pub(super) fn start(shared: Arc<Shared>, outgoing: &Outgoing) -> Self {
        let (out, messages) = mpsc::channel(1);
        let ready = Arc::clone(&outgoing.ready);
        tokio::spawn(courier(shared, outgoing.session, ready, out));
        Self { messages }
    }

    /// The next message for the hub (cancel-safe: a message is taken only when returned).
    /// `None` once the runner attached another session.
    pub async fn recv(&mut self) -> Option<AgentMessage> {
        self.messages.recv().await
    }
}

/// Hand session `session` what it has to be told until it ends or another replaces it.
async fn courier(
    shared: Arc<Shared>,
    session: u64,
    ready: Arc<Notify>,
    out: mpsc::Sender<AgentMessage>,
) {
    loop {
        let next = match shared.desk().outgoing.as_mut() {
            Some(outgoing) if outgoing.session == session => outgoing.take(),
            _ => return,
        };
        let message = match next {
            None => {
                tokio::select! {
                    () = ready.notified() => continue,
                    () = out.closed() => return,
                }
            }
            Some(Note::Started(id)) => AgentMessage::JobStarted { id },
            Some(Note::Unjournaled(result)) => AgentMessage::JobResult(result),
            Some(Note::Ended(id)) => match held_result(&shared.dir, id) {
                Some(message) => message,
                None => continue,
            },
            Some(Note::Progress(report)) => AgentMessage::JobProgress(report),
            Some(Note::Acked(_)) => continue,
        };
        if out.send(message).await.is_err() {
            return;
        }
    }
}

/// The held result of `id`; none once acknowledged. A result the journal cannot read is
/// reported lost, so the hub can acknowledge it and the journal let it go.
fn held_result(dir: &Path, id: u64) -> Option<AgentMessage> {
    let result = match Journal::read_result(dir, id) {
        Ok(result) => result?,
        Err(e) => {
            warn!(job = id, "a held job result is unreadable: {e}");
            let lost = format!("the device lost this job's result: {e}");
            OutputCapture::default().finish(id, JobOutcome::Failed(reason(&lost)), 0)
        }
    };
    Some(AgentMessage::JobResult(result))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(id: u64) -> JobResult {
        let why = JobOutcome::Failed("refused".to_owned());
        OutputCapture::default().finish(id, why, 0)
    }

    fn drain(outgoing: &mut Outgoing) -> Vec<Note> {
        std::iter::from_fn(|| outgoing.take()).collect()
    }

    #[test]
    fn starts_come_before_results_and_an_acknowledged_result_is_not_sent() {
        let mut outgoing = Outgoing::new(1, vec![4, 2]);
        outgoing.note(Note::Ended(3));
        outgoing.note(Note::Started(5));
        outgoing.note(Note::Unjournaled(refused(6)));
        outgoing.note(Note::Acked(4));

        let told = drain(&mut outgoing);

        assert_eq!(
            told,
            [
                Note::Started(5),
                Note::Unjournaled(refused(6)),
                Note::Ended(2),
                Note::Ended(3)
            ]
        );
    }

    #[test]
    fn only_a_jobs_latest_progress_waits_and_its_result_supersedes_it() {
        let progress = |id, done| JobProgress {
            id,
            done,
            total: 100,
            deferred: None,
        };
        let mut outgoing = Outgoing::new(1, Vec::new());
        outgoing.note(Note::Progress(progress(1, 10)));
        outgoing.note(Note::Progress(progress(1, 40)));
        outgoing.note(Note::Progress(progress(2, 5)));
        assert_eq!(
            drain(&mut outgoing),
            [
                Note::Progress(progress(1, 40)),
                Note::Progress(progress(2, 5))
            ]
        );
        outgoing.note(Note::Progress(progress(3, 50)));
        outgoing.note(Note::Ended(3));
        assert_eq!(drain(&mut outgoing), [Note::Ended(3)]);
    }

    #[test]
    fn a_result_is_told_once_per_note_however_often_noted_before() {
        let mut outgoing = Outgoing::new(1, vec![7]);
        outgoing.note(Note::Ended(7));
        assert_eq!(drain(&mut outgoing), [Note::Ended(7)]);
        outgoing.note(Note::Ended(7)); // the order offered again
        assert_eq!(drain(&mut outgoing), [Note::Ended(7)]);
    }

    #[test]
    fn results_are_never_dropped_but_other_notes_are_bounded() {
        let mut outgoing = Outgoing::new(1, Vec::new());
        for id in 0..10 * MAX_WAITING as u64 {
            outgoing.note(Note::Started(id));
            outgoing.note(Note::Unjournaled(refused(id)));
            outgoing.note(Note::Ended(id));
        }
        let told = drain(&mut outgoing);
        let count = |f: fn(&Note) -> bool| told.iter().filter(|n| f(n)).count();
        assert_eq!(count(|n| matches!(n, Note::Started(_))), MAX_WAITING);
        assert_eq!(count(|n| matches!(n, Note::Unjournaled(_))), MAX_WAITING);
        assert_eq!(count(|n| matches!(n, Note::Ended(_))), 10 * MAX_WAITING);
    }
}
