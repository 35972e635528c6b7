//! The agent's job runner: runs the jobs the hub orders (issue #15) — an exec in a container, a
//! one-shot container, one Engine API request — each at most once, and keeps each result until
//! the hub has stored it.
//!
//! Why it is built this way:
//!
//! - **A worker that outlives sessions**, like the stack worker ([`crate::deploy`]): a job runs
//!   for as long as it runs, and the link it came on may drop meanwhile. Sessions only hand it
//!   orders and acknowledgements ([`JobRunner::offer`], [`JobRunner::ack`]) and carry what it
//!   has for the hub ([`JobRunner::attach`]); none of these waits for the disk or the engine, so
//!   the session driver never stalls on a job.
//! - **At most once, on disk** (`job/journal.rs`): the order is journaled before the job may
//!   start and the result kept until acknowledged, so a link cut or a hub restart costs a resend
//!   of the result, never a second run, and an agent killed mid-job reports it interrupted at its
//!   next start instead of running it again. An order whose id the journal knows never runs
//!   again.
//! - **Bounded everywhere**: [`MAX_RUNNING`] jobs at once (more wait their turn, in order), each
//!   within its own timeout; an order that waits past its expiry (counted from receipt: device
//!   clocks are not trusted) runs nothing; output is kept as its first and last 64 KiB; the
//!   journal refuses orders once [`MAX_UNACKED`] results wait; what waits for a session to carry
//!   it is ids, read back from the journal one at a time (`job/mail.rs`).
//! - **The engine's own words**: a job that cannot run fails with the engine's message, cleaned
//!   of control characters and cut to the protocol's bound (`job/execute.rs`).
//!
//! The runner exists only on an agent that applies stacks on a real engine
//! ([`crate::run::Stacks::Engine`]); only then does the driver announce
//! [`Features::JOBS`](outpost_protocol::job::Features::JOBS).

mod engine_call;
mod execute;
mod journal;
mod mail;
mod pull;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use outpost_protocol::job::{JobOrder, JobOutcome, JobResult, JobSpec, OutputCapture};
use tokio::sync::{Notify, Semaphore, SemaphorePermit};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::docker_host::DockerHost;
use execute::reason;
use journal::{Admission, Journal};
use mail::{Note, Outgoing};

pub use execute::{container_name, JOB_LABEL};
pub use journal::{JournalError, DONE_KEPT, MAX_UNACKED};
pub use mail::JobMail;
pub use pull::Registry;

/// Most jobs running at once on a device: a device's engine and link are small, and a fleet-wide
/// job is spread over devices, not stacked on one.
pub const MAX_RUNNING: usize = 4;

/// The refusal of an order beyond [`MAX_UNACKED`].
const FULL: &str = "too many unacknowledged job results on this device";

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The handle sessions share: offer orders, acknowledge results, carry what it has for the hub.
#[derive(Clone, Debug)]
pub struct JobRunner {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    host: DockerHost,
    /// The loopback registry pull jobs go through, where the agent runs one.
    registry: Option<Registry>,
    dir: PathBuf,
    desk: Mutex<Desk>,
    slots: Semaphore,
    /// A cancel signal per job waiting for a slot or running (a stored permit if the cancel
    /// comes before the job waits on it).
    cancels: Mutex<HashMap<u64, Arc<Notify>>>,
}

/// The journal and what the session in attendance has yet to be told, behind one lock: a result
/// is either among those a new session starts with or noted to it, never both, never neither.
#[derive(Debug)]
struct Desk {
    journal: Journal,
    outgoing: Option<Outgoing>,
    /// Sessions attached so far.
    sessions: u64,
}

impl JobRunner {
    /// The runner of the engine at `host`, journaling in `dir`: what an agent stop interrupted is
    /// reported [`JobOutcome::Interrupted`] (its one-shot container removed), old done markers
    /// are pruned.
    pub fn start(host: DockerHost, dir: &Path) -> Result<Self, JournalError> {
        Self::start_with_registry(host, dir, None)
    }

    /// [`Self::start`], running pull jobs through `registry`.
    pub fn start_with_registry(
        host: DockerHost,
        dir: &Path,
        registry: Option<Registry>,
    ) -> Result<Self, JournalError> {
        let opened = Journal::open(dir, SystemTime::now())?;
        for order in opened.interrupted {
            warn!(
                job = order.id,
                "the agent stopped while this job ran: reported interrupted, not run again"
            );
            let host = host.clone();
            tokio::spawn(async move { execute::remove_one_shot(&host, order.id).await });
        }
        let desk = Desk {
            journal: opened.journal,
            outgoing: None,
            sessions: 0,
        };
        let shared = Shared {
            host,
            registry,
            dir: dir.to_owned(),
            desk: Mutex::new(desk),
            slots: Semaphore::new(MAX_RUNNING),
            cancels: Mutex::default(),
        };
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// An order from the hub, received now; its outcome reaches the session attached then.
    pub fn offer(&self, order: JobOrder) {
        let received = Instant::now();
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move { shared.take(order, received).await });
    }

    /// An admin cancelled `id`: if it waits for a slot it never runs; a one-shot container running
    /// it is stopped and removed; an exec runs on (the engine cannot stop one), its output no
    /// longer read. Either way the result is [`JobOutcome::Cancelled`]. A job not here is left be.
    pub fn cancel(&self, id: u64) {
        let signal = lock(&self.shared.cancels).get(&id).cloned();
        match signal {
            Some(signal) => signal.notify_one(),
            None => debug!(job = id, "a cancel for no job waiting or running"),
        }
    }

    /// The hub stored the result of `id`: forget it, remember the job was done.
    pub fn ack(&self, id: u64) {
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move { shared.ack(id) });
    }

    /// Carry this runner's messages to a new session (and no longer to the one before): first
    /// every result held, then jobs as they start and end.
    pub fn attach(&self) -> JobMail {
        let mut desk = self.shared.desk();
        desk.sessions += 1;
        let outgoing = Outgoing::new(desk.sessions, desk.journal.held());
        let mail = JobMail::start(Arc::clone(&self.shared), &outgoing);
        if let Some(before) = desk.outgoing.replace(outgoing) {
            before.replaced();
        }
        mail
    }
}

impl Shared {
    fn desk(&self) -> MutexGuard<'_, Desk> {
        lock(&self.desk)
    }

    async fn take(&self, order: JobOrder, received: Instant) {
        let id = order.id;
        match self.admit(&order) {
            Ok(Admission::Run) => self.run(order, received).await,
            Ok(Admission::Resend) => self.desk().post(Note::Ended(id)),
            Ok(Admission::Ignore) => debug!(job = id, "a job already known: not run again"),
            Ok(Admission::Full) => self.refuse(id, FULL),
            Err(why) => self.refuse(id, &why),
        }
    }

    /// Check the order as the hub should have, then journal it.
    fn admit(&self, order: &JobOrder) -> Result<Admission, String> {
        order.spec.check().map_err(|e| e.to_string())?;
        self.desk()
            .journal
            .admit(order)
            .map_err(|e| format!("the device cannot journal the job: {e}"))
    }

    fn refuse(&self, id: u64, why: &str) {
        warn!(job = id, "job refused: {why}");
        let refused = JobOutcome::Failed(reason(why));
        let result = OutputCapture::default().finish(id, refused, 0);
        self.desk().post(Note::Unjournaled(result));
    }

    /// Wait for a slot, run the job in it (or not at all once expired or cancelled), journal how
    /// it ended.
    async fn run(&self, order: JobOrder, received: Instant) {
        let cancel = Arc::new(Notify::new());
        lock(&self.cancels).insert(order.id, Arc::clone(&cancel));
        let result = tokio::select! {
            biased;
            () = cancel.notified() => {
                OutputCapture::default().finish(order.id, JobOutcome::Cancelled, 0)
            }
            slot = self.slot(&order, received) => match slot {
                Some(_slot) => {
                    info!(job = order.id, spec = %order.spec.summary(), "job started");
                    self.desk().post(Note::Started(order.id));
                    self.perform(&order, &cancel).await
                }
                None => OutputCapture::default().finish(order.id, JobOutcome::Expired, 0),
            },
        };
        lock(&self.cancels).remove(&order.id);
        info!(job = result.id, outcome = ?result.outcome, "job ended");
        self.finish(result);
    }

    /// Carry out `order`: a pull through the loopback registry reporting its progress, anything
    /// else on the engine.
    async fn perform(&self, order: &JobOrder, cancel: &Notify) -> JobResult {
        match &order.spec {
            JobSpec::PullImage { image } => {
                let report = |progress| self.desk().post(Note::Progress(progress));
                let registry = self.registry.as_ref();
                pull::perform(&self.host, registry, order, image, cancel, report).await
            }
            _ => execute::perform(&self.host, order, cancel).await,
        }
    }

    /// A slot, unless the order expires (`expires_in_ms` after `received`) before it gets one.
    async fn slot(&self, order: &JobOrder, received: Instant) -> Option<SemaphorePermit<'_>> {
        let expiry = received.checked_add(Duration::from_millis(order.expires_in_ms));
        let expired = async {
            match expiry {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let slot = tokio::select! {
            biased;
            slot = self.slots.acquire() => slot.ok()?,
            () = expired => return None,
        };
        expiry.is_none_or(|at| Instant::now() < at).then_some(slot)
    }

    fn finish(&self, result: JobResult) {
        let mut desk = self.desk();
        match desk.journal.finish(&result) {
            Ok(()) => desk.post(Note::Ended(result.id)),
            Err(e) => {
                warn!(job = result.id, "job result not journaled, sent once: {e}");
                desk.post(Note::Unjournaled(result));
            }
        }
    }

    fn ack(&self, id: u64) {
        let mut desk = self.desk();
        desk.post(Note::Acked(id));
        match desk.journal.ack(id) {
            Ok(true) => debug!(job = id, "job result stored by the hub"),
            Ok(false) => debug!(job = id, "an acknowledgement of no held job result"),
            Err(e) => warn!(job = id, "job acknowledgement not journaled: {e}"),
        }
    }
}

impl Desk {
    /// Tell the session in attendance, if any.
    fn post(&mut self, note: Note) {
        if let Some(outgoing) = &mut self.outgoing {
            outgoing.note(note);
        }
    }
}
