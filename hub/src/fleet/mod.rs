//! Rollouts at run time: the controllers of every rollout not yet finished
//! ([`crate::rollout::Rollout`]), what feeds them (device reports, presence, a one-second tick
//! for soak and lost timers) and what carries out their decisions (deployments written, sessions
//! told their desired state changed, records saved).
//!
//! One async lock serialises every decision with its writes: a poll's assignments and the save
//! that follows it go to the store in one transaction, in the order they were decided, so a
//! restarted hub finds both or neither ([`crate::rollout::persist`]).
//!
//! Reports and presence changes are not fed one by one: a session driver only queues them
//! ([`Fleet::report`], [`Fleet::presence`], no lock, no await) and each tick stores the queued
//! reports in one transaction, feeds the whole queue in arrival order, then writes one transaction
//! per rollout that changed. Ten thousand devices
//! reporting in the same second cost one transaction, not ten thousand, and a reconnect storm
//! never waits on the store for a rollout's sake.
//!
//! Where several hubs share the store (issue #18), each rollout is coordinated by one of them
//! (`rollouts.hub_id`): the hub it was started on, or the one that took it over when that hub
//! died. The coordinator's controller is fed what every hub's devices do, through announcements
//! on the store's channel ([`relay`], [`crate::fleet_relay`]).

mod load;
mod relay;

use std::collections::HashMap;
use std::sync::PoisonError;
use std::time::{Duration, SystemTime};

use outpost_protocol::stack::{Phase, StackReport};
use outpost_protocol::EndpointId;
use thiserror::Error;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::context::HubContext;
use crate::rollout::{ControlError, OnDrift, Plan, Rollout, RolloutState};
use crate::store::deployments::{self, Assigned};
use crate::store::hubs::HubId;
use crate::store::rollouts::{self, Selector};
use crate::store::{Store, StoreError};

/// How often queued reports are fed and soak and lost timers looked at.
pub const TICK: Duration = Duration::from_secs(1);

/// Most reports and presence changes waiting for a tick; past it new ones are dropped (and
/// counted in the log). A device sends a few reports per apply and progress once a second at
/// most, so 200,000 is seconds of a 25,000-device fleet at its busiest; only a flood reaches it.
const MAX_QUEUED: usize = 200_000;

/// What happened to a device, waiting for the next tick.
#[derive(Debug)]
enum Event {
    Report(EndpointId, StackReport),
    /// Another hub stored the device's report: read back from the store at the tick.
    Stored(EndpointId),
    Presence(EndpointId, bool),
    /// The device's group or tags changed, or it was created with some: it may join rollouts.
    Labelled(EndpointId),
}

/// An event and when it arrived; `remote` if another hub announced it
/// ([`crate::fleet_relay`]), so it is not announced again.
#[derive(Debug)]
struct Queued {
    event: Event,
    at: SystemTime,
    remote: bool,
}

/// A rollout not yet finished.
#[derive(Debug)]
struct Active {
    stack: String,
    version: u32,
    selector: Selector,
    rollout: Rollout,
}

/// The rollouts in progress.
#[derive(Debug, Default)]
pub struct Fleet {
    active: Mutex<HashMap<i64, Active>>,
    queued: std::sync::Mutex<Vec<Queued>>,
}

/// Why a rollout could not be started or changed.
#[derive(Debug, Error)]
pub enum FleetError {
    /// The selection names groups, tags or endpoints that do not exist.
    #[error("no such {}", .0.join(", "))]
    Unknown(Vec<String>),
    /// Nothing matches the selection.
    #[error("no device matches the selection")]
    NoDevice,
    /// No such stack version.
    #[error("stack {0:?} has no version {1}")]
    NoVersion(String, u32),
    /// No such rollout, or it has finished.
    #[error("no rollout {0} in progress")]
    NotActive(i64),
    /// Another rollout of the stack is still running or paused.
    #[error("rollout {0} of this stack is still in progress; abort it or let it complete first")]
    Busy(i64),
    /// The controller refused (already paused, not paused, …).
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An admin's command on a rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Stop assigning, with a note.
    Pause(String),
    /// Go on (accepting the failures so far).
    Resume,
    /// Stop for good; devices keep what they were given.
    Abort,
}

impl Fleet {
    /// The unfinished rollouts `hub` coordinates, rebuilt from the store, with those no live hub
    /// coordinates taken over first. A device another hub holds starts online; the others
    /// (this hub has no session yet) come online as their sessions are set up.
    pub fn restore(store: &Store, hub: HubId) -> Result<Self, StoreError> {
        let conn = store.lock();
        let alive_since = crate::store::unix_now() - crate::hubs::SILENT_AFTER.as_secs() as i64;
        let claimed = rollouts::claim_orphans(&conn, hub, alive_since)?;
        if claimed > 0 {
            info!(claimed, "took over the rollouts no live hub coordinated");
        }
        let stored = rollouts::load_active(&conn, hub, None)?;
        let connected = load::connected_targets(&conn, &stored)?;
        drop(conn);
        Ok(Self {
            active: Mutex::new(load::rebuilt(stored, |id| connected.contains(&id))),
            queued: std::sync::Mutex::default(),
        })
    }

    /// Take over rollouts `ids` from a hub that died: rebuilt from the store, each target online
    /// if this hub holds its session.
    pub async fn adopt(&self, ctx: &HubContext, ids: Vec<i64>) -> Result<(), StoreError> {
        let hub = ctx.hubs.id;
        let (stored, connected) = ctx
            .store
            .read(move |c| {
                let stored = rollouts::load_active(c, hub, Some(&ids))?;
                let connected = load::connected_targets(c, &stored)?;
                Ok((stored, connected))
            })
            .await?;
        let adopted = load::rebuilt(stored, |id| {
            ctx.registry.get(id).is_some() || connected.contains(&id)
        });
        info!(rollouts = ?adopted.keys().collect::<Vec<_>>(), "took over the rollouts of a hub that died");
        self.active.lock().await.extend(adopted);
        Ok(())
    }

    /// Start rolling `version` of `stack` out to what `selector` matches; the rollout's id.
    pub async fn start(
        &self,
        ctx: &HubContext,
        stack: String,
        version: u32,
        selector: Selector,
        plan: Plan,
    ) -> Result<i64, FleetError> {
        let lookup = (stack.clone(), selector.clone());
        let (targets, unknown, exists, connected) = ctx
            .store
            .read(move |c| {
                let (targets, unknown) = rollouts::resolve(c, &lookup.1)?;
                let exists = crate::store::stacks::version(c, &lookup.0, Some(version))?.is_some();
                let connected = crate::store::endpoints::connected_of(c, &targets)?;
                Ok((targets, unknown, exists, connected))
            })
            .await?;
        if !exists {
            return Err(FleetError::NoVersion(stack, version));
        }
        if !unknown.is_empty() {
            return Err(FleetError::Unknown(unknown));
        }
        if targets.is_empty() {
            return Err(FleetError::NoDevice);
        }
        // Devices that can answer first: the first wave's canary is then one that reports. A
        // device another hub holds answers too.
        let mut ordered: Vec<(EndpointId, bool)> = targets
            .into_iter()
            .map(|id| {
                (
                    id,
                    ctx.registry.get(id).is_some() || connected.contains(&id),
                )
            })
            .collect();
        ordered.sort_by_key(|(id, online)| (!online, id.0));
        let now = SystemTime::now();
        let mut active = self.active.lock().await;
        let same_stack: Vec<i64> = active
            .iter()
            .filter(|(_, a)| a.stack == stack)
            .map(|(id, _)| *id)
            .collect();
        if let Some(busy) = same_stack
            .iter()
            .find(|id| active[*id].rollout.state() != &RolloutState::Completed)
        {
            return Err(FleetError::Busy(*busy));
        }
        let mut rollout = Rollout::new(plan, ordered, now);
        let poll = rollout.poll(now);
        let save = rollout.poll_save();
        let (name, sel, hub) = (stack.clone(), selector.clone(), ctx.hubs.id);
        let assign = poll.assign.clone();
        let retired = same_stack.clone();
        let counts = rollout.counts();
        let on_drift = rollout.plan().on_drift;
        let id = ctx
            .store
            .call(move |c| {
                let tx = c.transaction()?;
                for old in &retired {
                    rollouts::retire(&tx, *old)?;
                }
                let id = rollouts::create(&tx, hub, &name, version, &sel, &save, &counts)?;
                let unchanged = assign_all(&tx, &name, version, on_drift, &assign)?;
                tx.commit()?;
                Ok((id, unchanged))
            })
            .await?;
        let (id, unchanged) = id;
        feed_unchanged(&mut rollout, unchanged, now);
        for old in &same_stack {
            active.remove(old);
        }
        relay::tell(ctx, &poll.assign).await;
        info!(rollout = id, %stack, version, devices = rollout.counts().total(), "rollout started");
        active.insert(
            id,
            Active {
                stack,
                version,
                selector,
                rollout,
            },
        );
        Ok(id)
    }

    /// A device reported on its stacks: fed at the next tick.
    pub fn report(&self, endpoint: EndpointId, report: StackReport) {
        self.queue([Event::Report(endpoint, report)], false);
    }

    /// A device's session began (`online`) or ended: fed at the next tick.
    pub fn presence(&self, endpoint: EndpointId, online: bool) {
        self.queue([Event::Presence(endpoint, online)], false);
    }

    /// A device's group or tags changed (or it enrolled with some): it joins every rollout whose
    /// selection now matches it, at the next tick.
    pub fn labelled(&self, endpoint: EndpointId) {
        self.queue([Event::Labelled(endpoint)], false);
    }

    /// Another hub stored these devices' reports: read back and fed at the next tick.
    pub fn stored_elsewhere(&self, endpoints: &[EndpointId]) {
        self.queue(endpoints.iter().map(|id| Event::Stored(*id)), true);
    }

    /// These devices' sessions began (`online`) or ended on another hub.
    pub fn presence_elsewhere(&self, endpoints: &[EndpointId], online: bool) {
        let events = endpoints.iter().map(|id| Event::Presence(*id, online));
        self.queue(events, true);
    }

    /// These devices' labels were changed through another hub.
    pub fn labelled_elsewhere(&self, endpoints: &[EndpointId]) {
        self.queue(endpoints.iter().map(|id| Event::Labelled(*id)), true);
    }

    fn queue(&self, events: impl IntoIterator<Item = Event>, remote: bool) {
        let at = SystemTime::now();
        let mut queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        for event in events {
            if queued.len() < MAX_QUEUED {
                queued.push(Queued { event, at, remote });
            } else if queued.len() == MAX_QUEUED {
                warn!(
                    "rollout events arrive faster than they are fed; dropping until the next tick"
                );
            }
        }
    }

    /// Feed what was queued, in order, and let timers fire (soak ends, devices lost). What
    /// happened here is announced to the other hubs, whose rollouts may target these devices.
    pub async fn tick(&self, ctx: &HubContext) {
        let events =
            std::mem::take(&mut *self.queued.lock().unwrap_or_else(PoisonError::into_inner));
        load::keep_reports(ctx, &events).await;
        relay::announce_local(ctx, &events).await;
        let coordinating = !self.active.lock().await.is_empty();
        let elsewhere = if coordinating {
            relay::read_remote(ctx, &events).await
        } else {
            relay::Remote::default()
        };
        let labels = load::labels_of(ctx, &events).await;
        self.each(ctx, |active| {
            for Queued { event, at, remote } in &events {
                match event {
                    Event::Report(endpoint, report) => {
                        let status = report
                            .stacks
                            .iter()
                            .find(|s| s.project == active.stack && s.version == active.version);
                        if let Some(status) = status {
                            active
                                .rollout
                                .handle_report(*endpoint, status.phase.clone(), *at);
                        }
                    }
                    Event::Stored(endpoint) => {
                        if let Some(phase) =
                            elsewhere.phase(*endpoint, &active.stack, active.version)
                        {
                            active.rollout.handle_report(*endpoint, phase, *at);
                        }
                    }
                    Event::Presence(endpoint, online) => {
                        // A device that left another hub may be on a third already.
                        let online = *online || (*remote && elsewhere.connected(*endpoint));
                        active.rollout.handle_presence(*endpoint, online, *at);
                    }
                    Event::Labelled(endpoint) => {
                        let joins = labels.get(endpoint).is_some_and(|(group, tags, _)| {
                            active.selector.matches(*endpoint, group.as_deref(), tags)
                        });
                        if joins {
                            let online = labels.get(endpoint).is_some_and(|l| l.2)
                                || ctx.registry.get(*endpoint).is_some();
                            active.rollout.add_target(*endpoint, online, *at);
                        }
                    }
                }
            }
            true
        })
        .await;
    }

    /// Pause, resume or abort rollout `id`.
    pub async fn command(
        &self,
        ctx: &HubContext,
        id: i64,
        command: Command,
    ) -> Result<(), FleetError> {
        let now = SystemTime::now();
        let mut active = self.active.lock().await;
        let entry = active.get_mut(&id).ok_or(FleetError::NotActive(id))?;
        match command {
            Command::Pause(note) => entry.rollout.pause(note)?,
            Command::Resume => entry.rollout.resume(now)?,
            Command::Abort => entry.rollout.abort()?,
        }
        carry_out(ctx, id, entry, now).await?;
        if finished(entry.rollout.state()) {
            active.remove(&id);
        }
        Ok(())
    }

    /// A rollout's controller view, if it is in progress: counts and rows come from memory.
    pub async fn with_active<T>(&self, id: i64, f: impl FnOnce(&Rollout) -> T) -> Option<T> {
        self.active.lock().await.get(&id).map(|a| f(&a.rollout))
    }

    /// Feed every rollout with `feed` (true: it changed or may have), then carry out its poll.
    async fn each(&self, ctx: &HubContext, mut feed: impl FnMut(&mut Active) -> bool) {
        let now = SystemTime::now();
        let mut active = self.active.lock().await;
        let mut done = Vec::new();
        for (id, entry) in active.iter_mut() {
            if !feed(entry) {
                continue;
            }
            if let Err(e) = carry_out(ctx, *id, entry, now).await {
                warn!(rollout = id, "rollout decision not written: {e}");
            }
            if finished(entry.rollout.state()) {
                done.push(*id);
            }
        }
        for id in done {
            active.remove(&id);
        }
    }
}

/// Poll the rollout, write what it decided and what changed in one transaction, then tell the
/// sessions of the devices it assigned.
async fn carry_out(
    ctx: &HubContext,
    id: i64,
    entry: &mut Active,
    now: SystemTime,
) -> Result<(), StoreError> {
    let poll = entry.rollout.poll(now);
    let save = entry.rollout.poll_save();
    if poll.assign.is_empty() && save.rollout.is_none() && save.targets.is_empty() {
        return Ok(());
    }
    if let Some(state) = &poll.state {
        info!(rollout = id, stack = %entry.stack, version = entry.version, ?state, "rollout state changed");
        if let RolloutState::Paused(reason) = state {
            ctx.alerts.emit(crate::alerts::Event::Rollout {
                rollout: id,
                stack: entry.stack.clone(),
                version: entry.version,
                failed: matches!(reason, crate::rollout::PauseReason::Failures { .. }),
                reason: reason.to_string(),
            });
        }
    }
    let active = !finished(entry.rollout.state());
    let (stack, version, assign) = (entry.stack.clone(), entry.version, poll.assign.clone());
    let counts = entry.rollout.counts();
    let on_drift = entry.rollout.plan().on_drift;
    let unchanged = ctx
        .store
        .call(move |c| {
            let tx = c.transaction()?;
            let unchanged = assign_all(&tx, &stack, version, on_drift, &assign)?;
            rollouts::save(&tx, id, &save, active, &counts)?;
            tx.commit()?;
            Ok(unchanged)
        })
        .await?;
    // Written at the next tick, with whatever it decides.
    feed_unchanged(&mut entry.rollout, unchanged, now);
    relay::tell(ctx, &poll.assign).await;
    Ok(())
}

/// Feed the last reports of devices that already ran what they were assigned.
fn feed_unchanged(rollout: &mut Rollout, unchanged: Vec<(EndpointId, Phase)>, now: SystemTime) {
    for (endpoint, phase) in unchanged {
        if phase != Phase::Queued {
            rollout.handle_report(endpoint, phase, now);
        }
    }
}

/// Make `version` of `stack` what each of `endpoints` should run. A device that already should
/// sends no new report, so its last one is handed back to feed the rollout.
fn assign_all(
    conn: &crate::store::db::Db,
    stack: &str,
    version: u32,
    on_drift: OnDrift,
    endpoints: &[EndpointId],
) -> Result<Vec<(EndpointId, Phase)>, StoreError> {
    let mut unchanged = Vec::new();
    let report_drift = on_drift == OnDrift::Report;
    for endpoint in endpoints {
        if deployments::assign(conn, *endpoint, stack, version, report_drift)?
            == Assigned::Unchanged
        {
            let current = deployments::deployments_of(conn, *endpoint)?
                .into_iter()
                .find(|d| d.stack == stack);
            if let Some(current) = current {
                unchanged.push((*endpoint, current.phase));
            }
        }
    }
    Ok(unchanged)
}

/// An aborted rollout is done with. A completed one stays in memory: devices that were offline
/// still converge and its rows follow them, until a newer rollout of its stack retires it.
fn finished(state: &RolloutState) -> bool {
    matches!(state, RolloutState::Aborted)
}

/// Run [`Fleet::tick`] every [`TICK`] until the hub stops.
pub async fn run_ticker(ctx: std::sync::Arc<HubContext>) {
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        ctx.fleet.tick(&ctx).await;
    }
}
