//! Jobs at run time (issue #15): one command run once on each device of a selection, queued for
//! offline devices until it expires, at most `concurrency` devices at a time, each device's result
//! kept in the store ([`crate::store::jobs`]).
//!
//! The rules of one job are [`dispatch`], without I/O. This runtime feeds them and carries out
//! their decisions, the way [`crate::fleet`] runs rollouts: session drivers only queue what they
//! hear (an agent that runs jobs connected or left, a job started, a result — no lock held across
//! an await, no store call), and a one-second tick feeds the queue, writes every result and state
//! change in one transaction, then tells the sessions: `Control::Job` to send a job,
//! `Control::JobAcks` once results are stored. A result is acknowledged only after its commit, and
//! the agent keeps it until then, so a crash between the two costs a resend, never a result.
//!
//! A restarted hub reloads the jobs not yet finished; targets that were sent the job are sent it
//! again when their agent reconnects (the agent answers with its kept result or runs it once).

pub mod dispatch;
pub mod pulls;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use outpost_protocol::job::{JobOrder, JobOutcome, JobResult, JobSpec};
use outpost_protocol::EndpointId;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{info, warn};

use self::dispatch::Dispatch;
use crate::context::HubContext;
use crate::registry::Control;
use crate::store::jobs::{self, NewJob};
use crate::store::rollouts::{self, Selector};
use crate::store::{Store, StoreError};

/// How often queued events are fed and expiries looked at.
pub const TICK: Duration = Duration::from_secs(1);

/// Results waiting for a tick, in output bytes; past it a result is dropped unacknowledged and
/// its agent sends it again on its next session. 64 MiB is 500 results with full output.
const MAX_QUEUED_OUTPUT: usize = 64 << 20;

/// Events waiting for a tick, other than results.
const MAX_QUEUED: usize = 200_000;

/// Where a job is on one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    /// Not sent yet: the device is offline, or others hold the job's places.
    Queued,
    /// Sent; the device has not said it started.
    Sent,
    /// The device started it.
    Running,
    /// It exited 0 (an Engine call: answered 2xx).
    Succeeded,
    /// It exited otherwise, could not run, timed out, or the agent stopped while it ran.
    Failed,
    /// The job expired before the device started it.
    Expired,
    /// It started, and no result came by expiry plus its timeout.
    Lost,
    /// Cancelled before the device started it, or stopped by the cancel (a one-shot container).
    Cancelled,
}

impl TargetState {
    /// Every state, in display order.
    pub const ALL: [Self; 8] = [
        Self::Queued,
        Self::Sent,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Expired,
        Self::Lost,
        Self::Cancelled,
    ];

    /// The state's name in the store and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Lost => "lost",
            Self::Cancelled => "cancelled",
        }
    }

    /// Read a name [`Self::as_str`] wrote.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The state a result puts its target in.
    pub fn of(outcome: &JobOutcome) -> Self {
        match outcome {
            JobOutcome::Expired => Self::Expired,
            JobOutcome::Cancelled => Self::Cancelled,
            outcome if outcome.succeeded() => Self::Succeeded,
            _ => Self::Failed,
        }
    }

    /// Nothing more will happen to it (a late result may still replace expired or lost).
    pub fn settled(self) -> bool {
        !matches!(self, Self::Queued | Self::Sent | Self::Running)
    }

    /// The device has the job and no result yet.
    pub fn holds_the_job(self) -> bool {
        matches!(self, Self::Sent | Self::Running)
    }
}

/// Why a job could not be created or changed.
#[derive(Debug, Error)]
pub enum JobError {
    /// The selection names groups, tags or endpoints that do not exist.
    #[error("no such {}", .0.join(", "))]
    Unknown(Vec<String>),
    /// Nothing matches the selection.
    #[error("no device matches the selection")]
    NoDevice,
    /// No such job.
    #[error("no job {0}")]
    NotFound(i64),
    /// The job has finished; there is nothing left to cancel.
    #[error("job {0} has finished")]
    Finished(i64),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a session driver heard, waiting for the next tick.
#[derive(Debug)]
enum Event {
    Online(EndpointId),
    Offline(EndpointId),
    Started(EndpointId, u64),
    Result(EndpointId, JobResult),
}

/// Results to store and what each open job's poll decided, from one tick.
type Fed = (Vec<(EndpointId, JobResult)>, Vec<(i64, dispatch::Poll)>);

/// A job not yet finished.
#[derive(Debug)]
struct Open {
    spec: JobSpec,
    expires_at: SystemTime,
    timeout: Duration,
    dispatch: Dispatch,
}

#[derive(Debug, Default)]
struct Queue {
    events: Vec<Event>,
    output_bytes: usize,
}

/// The jobs in progress and the agents that can run them.
#[derive(Debug, Default)]
pub struct Jobs {
    open: Mutex<HashMap<i64, Open>>,
    queue: Mutex<Queue>,
    /// Devices whose live session announced that its agent runs jobs.
    capable: Mutex<HashSet<EndpointId>>,
    /// Stored results not yet acknowledged to their device, taken by its session driver.
    acks: Mutex<HashMap<EndpointId, Vec<u64>>>,
    /// Pull jobs: the agents that run them, their progress.
    pub pulls: pulls::Pulls,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn time_of(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64)
}

impl Jobs {
    /// The jobs a hub left unfinished, from the store; every device starts offline.
    pub fn restore(store: &Store) -> Result<Self, StoreError> {
        let mut open = HashMap::new();
        for (stored, targets) in jobs::load_open(&store.lock())? {
            let expires_at = time_of(stored.job.expires_at);
            let timeout = Duration::from_millis(stored.job.timeout_ms);
            let dispatch = Dispatch::new(
                stored.job.concurrency,
                expires_at,
                timeout,
                targets,
                stored.cancelled_at.is_some(),
            );
            let job = Open {
                spec: stored.job.spec,
                expires_at,
                timeout,
                dispatch,
            };
            open.insert(stored.id, job);
        }
        Ok(Self {
            open: Mutex::new(open),
            ..Self::default()
        })
    }

    /// Create a job for every device `job.selector` matches; its id and how many devices.
    pub async fn create(&self, ctx: &HubContext, job: NewJob) -> Result<(i64, usize), JobError> {
        let selector: Selector = job.selector.clone();
        let stored = job.clone();
        let created = ctx
            .store
            .call(move |c| {
                let (targets, unknown) = rollouts::resolve(c, &selector)?;
                if !unknown.is_empty() || targets.is_empty() {
                    return Ok(Err((unknown, targets.is_empty())));
                }
                let id = jobs::create(c, &stored, &targets)?;
                Ok(Ok((id, targets)))
            })
            .await?;
        let (id, targets) = match created {
            Ok(created) => created,
            Err((unknown, _)) if !unknown.is_empty() => return Err(JobError::Unknown(unknown)),
            Err(_) => return Err(JobError::NoDevice),
        };
        let expires_at = time_of(job.expires_at);
        let timeout = Duration::from_millis(job.timeout_ms);
        let mut dispatch = Dispatch::new(
            job.concurrency,
            expires_at,
            timeout,
            targets.iter().map(|t| (*t, TargetState::Queued)),
            false,
        );
        for endpoint in lock(&self.capable).iter() {
            dispatch.online(*endpoint);
        }
        info!(job = id, devices = targets.len(), what = %job.spec.summary(), "job created");
        let open = Open {
            spec: job.spec,
            expires_at,
            timeout,
            dispatch,
        };
        lock(&self.open).insert(id, open);
        Ok((id, targets.len()))
    }

    /// Cancel job `id`: devices that have not started it will not.
    pub async fn cancel(&self, ctx: &HubContext, id: i64) -> Result<(), JobError> {
        let stored = ctx.store.read(move |c| jobs::find(c, id)).await?;
        let stored = stored.ok_or(JobError::NotFound(id))?;
        let holding = match lock(&self.open).get_mut(&id) {
            Some(open) => open.dispatch.cancel(),
            None if stored.finished_at.is_some() => return Err(JobError::Finished(id)),
            None => Vec::new(),
        };
        // Devices that may have the job: one that has not started it never will, a one-shot
        // container running it is stopped (an exec runs on; its result still comes).
        for endpoint in holding {
            if let Some(session) = ctx.registry.get(endpoint) {
                let _ = session.control().push(Control::JobCancel { id: id as u64 });
            }
        }
        ctx.store.call(move |c| jobs::cancel(c, id)).await?;
        info!(job = id, "job cancelled");
        Ok(())
    }

    /// Counts by state of a job in progress, from memory (`None` once it finished).
    pub fn counts(&self, id: i64) -> Option<BTreeMap<TargetState, u32>> {
        lock(&self.open).get(&id).map(|open| open.dispatch.counts())
    }

    /// The order to send for job `id`, with the time left until it expires; `None` once the job
    /// finished.
    pub fn order(&self, id: u64) -> Option<JobOrder> {
        let open = lock(&self.open);
        let job = open.get(&(id as i64))?;
        let left = job
            .expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        Some(JobOrder {
            id,
            spec: job.spec.clone(),
            expires_in_ms: left.as_millis() as u64,
            timeout_ms: job.timeout.as_millis() as u64,
        })
    }

    /// The device's session announced that its agent runs jobs.
    pub fn online(&self, endpoint: EndpointId) {
        lock(&self.capable).insert(endpoint);
        self.queue(Event::Online(endpoint), 0);
    }

    /// The acknowledgements waiting for the device's session.
    pub fn take_acks(&self, endpoint: EndpointId) -> Vec<u64> {
        lock(&self.acks).remove(&endpoint).unwrap_or_default()
    }

    /// The device's session ended (whether or not it ran jobs). Its waiting acknowledgements
    /// go: the agent sends those results again on its next session.
    pub fn offline(&self, endpoint: EndpointId) {
        lock(&self.acks).remove(&endpoint);
        self.pulls.gone(endpoint);
        if lock(&self.capable).remove(&endpoint) {
            self.queue(Event::Offline(endpoint), 0);
        }
    }

    /// The device started job `id`.
    pub fn started(&self, endpoint: EndpointId, id: u64) {
        self.queue(Event::Started(endpoint, id), 0);
    }

    /// The device's result of a job, checked by the session; stored and acknowledged at the next
    /// tick.
    pub fn result(&self, endpoint: EndpointId, result: JobResult) {
        let bytes = result.head.len() + result.tail.len();
        self.queue(Event::Result(endpoint, result), bytes);
    }

    fn queue(&self, event: Event, output_bytes: usize) {
        let mut queue = lock(&self.queue);
        let full = queue.events.len() >= MAX_QUEUED
            || queue.output_bytes + output_bytes > MAX_QUEUED_OUTPUT;
        if full {
            // A dropped result is sent again on the agent's next session; presence is redone
            // by the next session too.
            return warn!("job events arrive faster than they are stored; dropping one");
        }
        queue.output_bytes += output_bytes;
        queue.events.push(event);
    }

    /// Feed what was queued, let expiries happen, store it all in one transaction, then tell the
    /// sessions what to send.
    pub async fn tick(&self, ctx: &HubContext) {
        let events = std::mem::take(&mut *lock(&self.queue)).events;
        let (results, polls) = self.feed(events, SystemTime::now());
        let mut sends = Vec::with_capacity(polls.len());
        let mut to_save = Vec::new();
        for (id, poll) in polls {
            if !poll.changes.is_empty() || poll.finished {
                to_save.push((id, poll.changes, poll.finished));
            }
            sends.push((id, poll.send));
        }
        if results.is_empty() && to_save.is_empty() {
            return self.send(ctx, &sends, &[]);
        }
        let finished: Vec<i64> = to_save.iter().filter(|s| s.2).map(|s| s.0).collect();
        let written = ctx
            .store
            .call(move |c| {
                let tx = c.transaction()?;
                let mut stored = Vec::new();
                for (endpoint, result) in &results {
                    if jobs::record_result(&tx, *endpoint, result)? {
                        stored.push((*endpoint, result.id));
                    }
                }
                for (id, changes, finished) in &to_save {
                    jobs::set_states(&tx, *id, changes)?;
                    if *finished {
                        jobs::finish(&tx, *id)?;
                    }
                }
                tx.commit()?;
                Ok(stored)
            })
            .await;
        for job in finished {
            ctx.alerts.emit(crate::alerts::Event::Job { job });
        }
        match written {
            Ok(acked) => self.send(ctx, &sends, &acked),
            // Nothing acknowledged: agents send their results again on their next session. The
            // orders go out all the same (a device runs a job once however often it is sent).
            Err(e) => {
                warn!("job results and states not written: {e}");
                self.send(ctx, &sends, &[]);
            }
        }
    }

    /// Apply events in order, then poll every open job; finished jobs leave memory.
    fn feed(&self, events: Vec<Event>, now: SystemTime) -> Fed {
        let mut open = lock(&self.open);
        let mut results = Vec::new();
        for event in events {
            match event {
                Event::Online(endpoint) => {
                    open.values_mut().for_each(|j| j.dispatch.online(endpoint))
                }
                Event::Offline(endpoint) => {
                    open.values_mut().for_each(|j| j.dispatch.offline(endpoint))
                }
                Event::Started(endpoint, id) => {
                    if let Some(job) = open.get_mut(&(id as i64)) {
                        job.dispatch.started(endpoint);
                    }
                }
                Event::Result(endpoint, result) => {
                    if let Some(job) = open.get_mut(&(result.id as i64)) {
                        job.dispatch
                            .settled(endpoint, TargetState::of(&result.outcome));
                    }
                    results.push((endpoint, result));
                }
            }
        }
        let polls: Vec<(i64, dispatch::Poll)> = open
            .iter_mut()
            .map(|(id, job)| (*id, job.dispatch.poll(now)))
            .collect();
        for (id, poll) in &polls {
            if poll.finished {
                open.remove(id);
                self.pulls.forget(*id);
                info!(job = id, "job finished");
            }
        }
        (results, polls)
    }

    /// Queue the orders the polls decided and the acknowledgements of stored results.
    fn send(
        &self,
        ctx: &HubContext,
        sends: &[(i64, Vec<EndpointId>)],
        acked: &[(EndpointId, u64)],
    ) {
        let mut waiting = lock(&self.acks);
        for (endpoint, id) in acked {
            let Some(session) = ctx.registry.get(*endpoint) else {
                continue;
            };
            let ids = waiting.entry(*endpoint).or_default();
            ids.push(*id);
            // One wake-up per batch, so acknowledgements never crowd a summon out of the queue.
            // Not queued: the session is ending or its driver stalled; the agent sends those
            // results again next session (stored once).
            if ids.len() == 1 && session.control().push(Control::JobAcks).is_err() {
                waiting.remove(endpoint);
            }
        }
        drop(waiting);
        for (id, endpoints) in sends {
            for endpoint in endpoints {
                if !self.can_run(*id, *endpoint) {
                    self.result(*endpoint, pulls::too_old(*id as u64));
                    continue;
                }
                let queued = ctx
                    .registry
                    .get(*endpoint)
                    .is_some_and(|s| s.control().push(Control::Job { id: *id as u64 }).is_ok());
                if !queued {
                    if let Some(job) = lock(&self.open).get_mut(id) {
                        job.dispatch.unsent(*endpoint);
                    }
                }
            }
        }
    }
}

/// How often jobs finished longer ago than the retention are removed.
const PRUNE_EVERY: Duration = Duration::from_secs(3_600);

/// Run [`Jobs::tick`] every [`TICK`] until the hub stops, and remove jobs that finished more than
/// `retention` ago (with their results and output) at start and every [`PRUNE_EVERY`].
pub async fn run_ticker(ctx: std::sync::Arc<HubContext>, retention: Duration) {
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pruned_at: Option<tokio::time::Instant> = None;
    loop {
        ticks.tick().await;
        ctx.jobs.tick(&ctx).await;
        if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            pruned_at = Some(tokio::time::Instant::now());
            prune(&ctx, retention).await;
        }
    }
}

async fn prune(ctx: &HubContext, retention: Duration) {
    let before = crate::store::unix_now() - retention.as_secs() as i64;
    match ctx
        .store
        .call(move |c| jobs::prune_finished(c, before))
        .await
    {
        Ok(0) => {}
        Ok(removed) => info!(removed, "jobs past their retention removed"),
        Err(e) => warn!("old jobs not removed: {e}"),
    }
}
