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
//!
//! Where several hubs share the store (issue #18), each job is coordinated by one of them
//! (`jobs.hub_id`): its dispatch lives there alone, fed what every hub's devices do, and the hub
//! holding a device sends it the job and stores what it did (`relay`, [`crate::job_relay`]).
//! With one hub nothing of that runs: nothing is announced and nothing more is read.

mod admin;
pub mod dispatch;
mod load;
pub mod pulls;
mod relay;
mod state;

pub use state::TargetState;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use outpost_protocol::job::{JobOrder, JobResult, JobSpec};
use outpost_protocol::EndpointId;
use thiserror::Error;
use tracing::{info, warn};

use self::dispatch::Dispatch;
use self::relay::{Outbox, Remote};
use crate::context::HubContext;
use crate::job_relay::Relayed;
use crate::registry::Control;
use crate::store::db::Db;
use crate::store::hubs::HubId;
use crate::store::jobs::{self, StoredJob};
use crate::store::StoreError;

/// How often queued events are fed and expiries looked at.
pub const TICK: Duration = Duration::from_secs(1);

/// Results waiting for a tick, in output bytes; past it a result is dropped unacknowledged and
/// its agent sends it again on its next session. 64 MiB is 500 results with full output.
const MAX_QUEUED_OUTPUT: usize = 64 << 20;

/// Events waiting for a tick, other than results.
const MAX_QUEUED: usize = 200_000;

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

/// What a session driver heard, or another hub announced, waiting for the next tick.
#[derive(Debug)]
enum Event {
    Online(EndpointId),
    Offline(EndpointId),
    Started(EndpointId, u64),
    Result(EndpointId, JobResult),
    Heard(Relayed),
}

/// What one tick fed: the results to store, what each open job's poll decided, and the jobs
/// another hub coordinates that devices here started.
#[derive(Debug, Default)]
struct Fed {
    results: Vec<(EndpointId, JobResult)>,
    polls: Vec<(i64, dispatch::Poll)>,
    started_elsewhere: Vec<(i64, EndpointId)>,
}

/// What a device is sent of a job: the same wherever the job is coordinated.
#[derive(Clone, Debug)]
struct Terms {
    spec: JobSpec,
    expires_at: SystemTime,
    timeout: Duration,
}

impl Terms {
    fn of(stored: &StoredJob) -> Self {
        Self {
            spec: stored.job.spec.clone(),
            expires_at: time_of(stored.job.expires_at),
            timeout: Duration::from_millis(stored.job.timeout_ms),
        }
    }

    fn order(&self, id: u64) -> JobOrder {
        let left = self
            .expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        JobOrder {
            id,
            spec: self.spec.clone(),
            expires_in_ms: left.as_millis() as u64,
            timeout_ms: self.timeout.as_millis() as u64,
        }
    }
}

/// A job not yet finished, coordinated here.
#[derive(Debug)]
struct Open {
    terms: Terms,
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
    /// Jobs another hub coordinates that were sent to devices this hub holds.
    elsewhere: Mutex<HashMap<i64, Terms>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn time_of(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64)
}

impl Jobs {
    /// Counts by state of a job in progress, from memory (`None` once it finished).
    pub fn counts(&self, id: i64) -> Option<BTreeMap<TargetState, u32>> {
        lock(&self.open).get(&id).map(|open| open.dispatch.counts())
    }

    /// The order to send for job `id`, with the time left until it expires; `None` once the job
    /// finished (or, coordinated elsewhere, is past its expiry and timeout).
    pub fn order(&self, id: u64) -> Option<JobOrder> {
        self.terms(id as i64).map(|terms| terms.order(id))
    }

    /// What devices are sent of job `id`, coordinated here or elsewhere.
    fn terms(&self, id: i64) -> Option<Terms> {
        if let Some(open) = lock(&self.open).get(&id) {
            return Some(open.terms.clone());
        }
        lock(&self.elsewhere).get(&id).cloned()
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

    /// Another hub announced something about jobs: fed at the next tick.
    pub(crate) fn heard(&self, relayed: Relayed) {
        self.queue(Event::Heard(relayed), 0);
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
    /// sessions what to send, and the other hubs (if any) what happened here.
    pub async fn tick(&self, ctx: &HubContext) {
        let events = std::mem::take(&mut *lock(&self.queue)).events;
        let mut outbox = Outbox::default();
        let remote = Remote::read(ctx, self, &events).await;
        self.learn(&remote);
        let heard = relay::take_orders(&events, &remote);
        outbox.presence(&events);
        let fed = self.feed(events, SystemTime::now(), &remote, ctx.hubs.id);
        let mut sends = Vec::with_capacity(fed.polls.len());
        let mut to_save = Vec::new();
        for (id, poll) in fed.polls {
            if !poll.changes.is_empty() || poll.finished {
                to_save.push((id, poll.changes, poll.finished));
            }
            sends.push((id, poll.send));
        }
        let (results, started) = (fed.results, fed.started_elsewhere);
        let acked = if results.is_empty() && to_save.is_empty() && started.is_empty() {
            Vec::new()
        } else {
            let finished: Vec<i64> = to_save.iter().filter(|s| s.2).map(|s| s.0).collect();
            let written = ctx
                .store
                .call(move |c| {
                    let tx = c.transaction()?;
                    let stored = write(&tx, &results, &to_save)?;
                    let marked = relay::mark_started(&tx, &started)?;
                    tx.commit()?;
                    Ok((stored, marked))
                })
                .await;
            for job in finished {
                ctx.alerts.emit(crate::alerts::Event::Job { job });
            }
            match written {
                Ok((acked, marked)) => {
                    outbox.rows(marked);
                    acked
                }
                // Nothing acknowledged: agents send their results again on their next session.
                // The orders go out all the same (a device runs a job once however often it is
                // sent).
                Err(e) => {
                    warn!("job results and states not written: {e}");
                    Vec::new()
                }
            }
        };
        let several = ctx.hubs.others_alive() > 0;
        outbox.orders(self.send(ctx, &sends, &acked, several));
        relay::deliver(ctx, self, heard, &mut outbox);
        outbox.rows(self.stored_elsewhere(&acked));
        relay::announce(ctx, outbox).await;
    }

    /// Apply events in order, then poll every open job; finished jobs leave memory.
    fn feed(&self, events: Vec<Event>, now: SystemTime, remote: &Remote, here: HubId) -> Fed {
        let mut open = lock(&self.open);
        let mut fed = Fed::default();
        for event in events {
            match event {
                Event::Online(endpoint) => {
                    open.values_mut().for_each(|j| j.dispatch.online(endpoint))
                }
                Event::Offline(endpoint) => {
                    if !remote.moved(endpoint, here, here, false) {
                        open.values_mut().for_each(|j| j.dispatch.offline(endpoint))
                    }
                }
                Event::Started(endpoint, id) => match open.get_mut(&(id as i64)) {
                    Some(job) => job.dispatch.started(endpoint),
                    None if lock(&self.elsewhere).contains_key(&(id as i64)) => {
                        fed.started_elsewhere.push((id as i64, endpoint))
                    }
                    None => {}
                },
                Event::Result(endpoint, result) => {
                    if let Some(job) = open.get_mut(&(result.id as i64)) {
                        job.dispatch
                            .settled(endpoint, TargetState::of(&result.outcome));
                    }
                    fed.results.push((endpoint, result));
                }
                Event::Heard(relayed) => {
                    let capable = lock(&self.capable);
                    relay::feed_heard(&mut open, relayed, remote, here, &capable);
                }
            }
        }
        fed.polls = open
            .iter_mut()
            .map(|(id, job)| (*id, job.dispatch.poll(now)))
            .collect();
        for (id, poll) in &fed.polls {
            if poll.finished {
                open.remove(id);
                self.pulls.forget(*id);
                info!(job = id, "job finished");
            }
        }
        fed
    }

    /// Queue the orders the polls decided and the acknowledgements of stored results. With
    /// `several` hubs, the orders for devices held elsewhere are returned, to announce.
    fn send(
        &self,
        ctx: &HubContext,
        sends: &[(i64, Vec<EndpointId>)],
        acked: &[(EndpointId, u64)],
        several: bool,
    ) -> Vec<(i64, EndpointId)> {
        self.acknowledge(ctx, acked);
        let mut elsewhere = Vec::new();
        for (id, endpoints) in sends {
            for endpoint in endpoints {
                let session = ctx.registry.get(*endpoint);
                if session.is_none() && several {
                    elsewhere.push((*id, *endpoint));
                    continue;
                }
                if !self.can_run(*id, *endpoint) {
                    self.result(*endpoint, pulls::too_old(*id as u64));
                    continue;
                }
                let queued = session
                    .is_some_and(|s| s.control().push(Control::Job { id: *id as u64 }).is_ok());
                if !queued {
                    if let Some(job) = lock(&self.open).get_mut(id) {
                        job.dispatch.unsent(*endpoint);
                    }
                }
            }
        }
        elsewhere
    }

    /// Queue the acknowledgements of stored results for their sessions.
    fn acknowledge(&self, ctx: &HubContext, acked: &[(EndpointId, u64)]) {
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
    }

    /// The stored results of jobs another hub coordinates, to announce to it.
    fn stored_elsewhere(&self, acked: &[(EndpointId, u64)]) -> Vec<(i64, EndpointId)> {
        let open = lock(&self.open);
        acked
            .iter()
            .filter(|(_, id)| !open.contains_key(&(*id as i64)))
            .map(|(endpoint, id)| (*id as i64, *endpoint))
            .collect()
    }
}

/// A job's state changes to store, and whether it finished.
type Save = (i64, Vec<(EndpointId, TargetState)>, bool);

/// Store results and state changes; the results stored, to acknowledge.
fn write(
    tx: &Db,
    results: &[(EndpointId, JobResult)],
    to_save: &[Save],
) -> Result<Vec<(EndpointId, u64)>, StoreError> {
    let mut stored = Vec::new();
    for (endpoint, result) in results {
        if jobs::record_result(tx, *endpoint, result)? {
            stored.push((*endpoint, result.id));
        }
    }
    for (id, changes, finished) in to_save {
        jobs::set_states(tx, *id, changes)?;
        if *finished {
            jobs::finish(tx, *id)?;
        }
    }
    Ok(stored)
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
