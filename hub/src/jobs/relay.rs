//! The jobs' side of [`crate::job_relay`]: what a tick reads back for what other hubs announced,
//! how a coordinator's dispatch is fed it, how the hub holding a device sends it another hub's
//! job, and what a tick announces.
//!
//! The coordinator's dispatch is the only one that decides; the other hubs only carry out (send
//! an order, store what the device did) and report. An ended session counts only if the store
//! does not show the device held by another hub by then: the announcements of two hubs may
//! arrive in either order when a device moves.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use outpost_protocol::job::JobSpec;
use outpost_protocol::EndpointId;
use tracing::{debug, warn};

use super::{lock, pulls, Event, Jobs, Open, TargetState, Terms};
use crate::announcement;
use crate::context::HubContext;
use crate::job_relay::{Kind, Relayed};
use crate::registry::Control;
use crate::store::db::Db;
use crate::store::hubs::HubId;
use crate::store::{job_hubs, jobs, StoreError};

/// What the store says of what a tick's events refer to, read once per tick.
#[derive(Debug, Default)]
pub(super) struct Remote {
    /// Which hub holds each device whose session ended (here or on the announcing hub).
    holders: HashMap<EndpointId, HubId>,
    /// The stored states of the devices other hubs announced, by job coordinated here.
    rows: HashMap<i64, Vec<(EndpointId, TargetState)>>,
    /// What devices are sent of jobs other hubs coordinate.
    terms: HashMap<i64, Terms>,
    /// Jobs other hubs coordinate that devices whose session began here hold: sent again.
    pending: Vec<(i64, EndpointId)>,
}

/// What to read for a tick.
#[derive(Debug, Default)]
struct Ask {
    holders: Vec<EndpointId>,
    rows: HashMap<i64, Vec<EndpointId>>,
    terms: HashSet<i64>,
    pending: Vec<EndpointId>,
}

impl Remote {
    /// Read what `events` refer to; nothing with one hub and nothing heard.
    pub(super) async fn read(ctx: &HubContext, jobs: &Jobs, events: &[Event]) -> Self {
        let ask = Ask::of(jobs, events, ctx.hubs.others_alive() > 0);
        if ask.holders.is_empty()
            && ask.rows.is_empty()
            && ask.terms.is_empty()
            && ask.pending.is_empty()
        {
            return Self::default();
        }
        let hub = ctx.hubs.id;
        let read = ctx.store.read(move |c| ask.run(c, hub)).await;
        read.unwrap_or_else(|e| {
            warn!("the other hubs' job events not read back: {e}");
            Self::default()
        })
    }

    /// Whether a device whose session on `from` ended is held by another hub by now (`here`
    /// only if its session here runs jobs).
    pub(super) fn moved(
        &self,
        endpoint: EndpointId,
        from: HubId,
        here: HubId,
        runs_here: bool,
    ) -> bool {
        match self.holders.get(&endpoint) {
            None => false,
            Some(hub) if *hub == from => false,
            Some(hub) if *hub == here => runs_here,
            Some(_) => true,
        }
    }
}

impl Ask {
    fn of(jobs: &Jobs, events: &[Event], several: bool) -> Self {
        let mut ask = Self::default();
        let open: HashSet<i64> = lock(&jobs.open).keys().copied().collect();
        for event in events {
            match event {
                Event::Offline(endpoint) if several => ask.holders.push(*endpoint),
                Event::Online(endpoint) if several => ask.pending.push(*endpoint),
                Event::Heard(relayed) => match relayed.kind {
                    Kind::Absent => ask.holders.extend(&relayed.ids),
                    Kind::Rows(job) if open.contains(&job) => {
                        ask.rows.entry(job).or_default().extend(&relayed.ids)
                    }
                    Kind::Ordered(job) if !jobs.knows(job) => {
                        ask.terms.insert(job);
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        ask
    }

    fn run(self, conn: &Db, hub: HubId) -> Result<Remote, StoreError> {
        let mut remote = Remote {
            holders: job_hubs::holders_of(conn, &self.holders)?,
            pending: job_hubs::pending_elsewhere(conn, hub, &self.pending)?,
            ..Remote::default()
        };
        for (job, endpoints) in &self.rows {
            remote
                .rows
                .insert(*job, job_hubs::states_of(conn, *job, endpoints)?);
        }
        let wanted = self.terms.iter().chain(remote.pending.iter().map(|p| &p.0));
        for job in wanted.copied().collect::<HashSet<i64>>() {
            if let Some(stored) = jobs::find(conn, job)? {
                remote.terms.insert(job, Terms::of(&stored));
            }
        }
        Ok(remote)
    }
}

impl Jobs {
    /// Whether this hub can send job `id`: it coordinates it, or has read its terms.
    pub(super) fn knows(&self, id: i64) -> bool {
        lock(&self.open).contains_key(&id) || lock(&self.elsewhere).contains_key(&id)
    }

    /// Keep the terms read for jobs other hubs coordinate, and forget those no device may be
    /// sent any more (past expiry and timeout: the coordinator settles them).
    pub(super) fn learn(&self, remote: &Remote) {
        let now = SystemTime::now();
        let mut elsewhere = lock(&self.elsewhere);
        elsewhere.extend(remote.terms.iter().map(|(id, t)| (*id, t.clone())));
        elsewhere.retain(|id, terms| {
            let keep = now < terms.expires_at + terms.timeout;
            if !keep {
                self.pulls.forget(*id);
            }
            keep
        });
    }
}

/// The orders to send to devices here: those coordinators announced, and those the devices whose
/// session began here still hold.
pub(super) fn take_orders(events: &[Event], remote: &Remote) -> Vec<(i64, Vec<EndpointId>)> {
    let mut orders: Vec<(i64, Vec<EndpointId>)> = events
        .iter()
        .filter_map(|event| match event {
            Event::Heard(Relayed {
                kind: Kind::Ordered(job),
                ids,
                ..
            }) => Some((*job, ids.clone())),
            _ => None,
        })
        .collect();
    orders.extend(remote.pending.iter().map(|(job, id)| (*job, vec![*id])));
    orders
}

/// Feed a coordinator's dispatches what another hub announced.
pub(super) fn feed_heard(
    open: &mut HashMap<i64, Open>,
    relayed: Relayed,
    remote: &Remote,
    here: HubId,
    capable: &HashSet<EndpointId>,
) {
    let Relayed { from, kind, ids } = relayed;
    match kind {
        Kind::Present => {
            for endpoint in ids {
                open.values_mut().for_each(|j| j.dispatch.online(endpoint));
            }
        }
        Kind::Absent => {
            let gone = ids
                .into_iter()
                .filter(|id| !remote.moved(*id, from, here, capable.contains(id)));
            for endpoint in gone {
                open.values_mut().for_each(|j| j.dispatch.offline(endpoint));
            }
        }
        Kind::Rows(job) => {
            let (Some(open_job), Some(rows)) = (open.get_mut(&job), remote.rows.get(&job)) else {
                return;
            };
            for (endpoint, state) in rows {
                match state {
                    TargetState::Running => open_job.dispatch.started(*endpoint),
                    state if state.settled() => open_job.dispatch.settled(*endpoint, *state),
                    _ => {}
                }
            }
        }
        Kind::Unsent(job) => {
            if let Some(open_job) = open.get_mut(&job) {
                ids.iter().for_each(|id| open_job.dispatch.unsent(*id));
            }
            for endpoint in ids {
                open.values_mut().for_each(|j| j.dispatch.offline(endpoint));
            }
        }
        Kind::Ordered(_) | Kind::Cancelled(_) => {}
    }
}

/// Store that devices here started jobs other hubs coordinate; those that changed, to announce.
pub(super) fn mark_started(
    tx: &Db,
    started: &[(i64, EndpointId)],
) -> Result<Vec<(i64, EndpointId)>, StoreError> {
    let mut marked = Vec::new();
    for (job, endpoint) in started {
        if job_hubs::mark_started(tx, *job, *endpoint)? {
            marked.push((*job, *endpoint));
        }
    }
    Ok(marked)
}

/// Send other hubs' jobs to the devices here that hold them. A device whose session here does
/// not run jobs (or whose queue is full) is announced unsent; one another hub holds is that
/// hub's to send.
pub(super) fn deliver(
    ctx: &HubContext,
    jobs: &Jobs,
    orders: Vec<(i64, Vec<EndpointId>)>,
    outbox: &mut Outbox,
) {
    for (job, endpoints) in orders {
        let Some(terms) = jobs.terms(job) else {
            continue;
        };
        let pull = matches!(terms.spec, JobSpec::PullImage { .. });
        for endpoint in endpoints {
            let Some(session) = ctx.registry.get(endpoint) else {
                continue;
            };
            if !lock(&jobs.capable).contains(&endpoint) {
                outbox.push(Kind::Unsent(job), endpoint);
            } else if pull && !jobs.pulls.can_pull(endpoint) {
                jobs.result(endpoint, pulls::too_old(job as u64));
            } else if session
                .control()
                .push(Control::Job { id: job as u64 })
                .is_err()
            {
                outbox.push(Kind::Unsent(job), endpoint);
            }
        }
    }
}

/// What a tick tells the other hubs.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    kinds: HashMap<Kind, Vec<EndpointId>>,
}

impl Outbox {
    /// One announcement.
    pub(super) fn one(kind: Kind, ids: Vec<EndpointId>) -> Self {
        Self {
            kinds: HashMap::from([(kind, ids)]),
        }
    }

    fn push(&mut self, kind: Kind, id: EndpointId) {
        self.kinds.entry(kind).or_default().push(id);
    }

    /// The sessions that began or ended here, among `events`, whose agents run jobs.
    pub(super) fn presence(&mut self, events: &[Event]) {
        for event in events {
            match event {
                Event::Online(id) => self.push(Kind::Present, *id),
                Event::Offline(id) => self.push(Kind::Absent, *id),
                _ => {}
            }
        }
    }

    /// Orders sent to devices other hubs hold.
    pub(super) fn orders(&mut self, sent: Vec<(i64, EndpointId)>) {
        for (job, id) in sent {
            self.push(Kind::Ordered(job), id);
        }
    }

    /// Rows stored here of jobs other hubs coordinate.
    pub(super) fn rows(&mut self, stored: Vec<(i64, EndpointId)>) {
        for (job, id) in stored {
            self.push(Kind::Rows(job), id);
        }
    }
}

/// Send the tick's announcements, only while another hub is alive to hear them. A failure is
/// logged: the store holds the truth (a coordinator that misses a result reads it when it next
/// restarts or takes the job over; a device that misses an order is sent it at its next session).
pub(super) async fn announce(ctx: &HubContext, outbox: Outbox) {
    if ctx.hubs.others_alive() == 0 || outbox.kinds.is_empty() {
        return;
    }
    let hub = ctx.hubs.id;
    let count = outbox.kinds.len();
    let sent = ctx
        .store
        .call(move |c| {
            for (kind, mut ids) in outbox.kinds {
                ids.sort_unstable();
                ids.dedup();
                announcement::announce(c, hub, kind, &ids)?;
            }
            Ok(())
        })
        .await;
    match sent {
        Ok(()) => debug!(kinds = count, "job events announced to the other hubs"),
        Err(e) => warn!(
            kinds = count,
            "job events not announced to the other hubs: {e}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use outpost_protocol::job::EngineMethod;

    use super::*;
    use crate::jobs::dispatch::Dispatch;

    const HERE: HubId = HubId(1);
    const THERE: HubId = HubId(2);
    const THIRD: HubId = HubId(3);

    fn job(targets: &[EndpointId]) -> HashMap<i64, Open> {
        let expires_at = SystemTime::now() + Duration::from_secs(3_600);
        let timeout = Duration::from_secs(60);
        let terms = Terms {
            spec: JobSpec::Engine {
                method: EngineMethod::Post,
                path: "/images/prune".into(),
                body: vec![],
            },
            expires_at,
            timeout,
        };
        let queued = targets.iter().map(|id| (*id, TargetState::Queued));
        let dispatch = Dispatch::new(1, expires_at, timeout, queued, false);
        HashMap::from([(7, Open { terms, dispatch })])
    }

    fn heard(open: &mut HashMap<i64, Open>, kind: Kind, ids: &[EndpointId], remote: &Remote) {
        let relayed = Relayed {
            from: THERE,
            kind,
            ids: ids.to_vec(),
        };
        feed_heard(open, relayed, remote, HERE, &HashSet::new());
    }

    fn poll(open: &mut HashMap<i64, Open>) -> Vec<EndpointId> {
        let job = open.get_mut(&7).unwrap();
        job.dispatch.poll(SystemTime::now()).send
    }

    #[test]
    fn a_coordinator_dispatches_what_other_hubs_report_within_the_concurrency() {
        let (a, b) = (EndpointId(10), EndpointId(11));
        let mut open = job(&[a, b]);
        let none = Remote::default();
        heard(&mut open, Kind::Present, &[a, b], &none);
        assert_eq!(poll(&mut open), [a], "one at a time");
        let rows = |state| Remote {
            rows: HashMap::from([(7, vec![(a, state)])]),
            ..Remote::default()
        };
        heard(&mut open, Kind::Rows(7), &[a], &rows(TargetState::Running));
        assert!(poll(&mut open).is_empty(), "a runs it");
        heard(
            &mut open,
            Kind::Rows(7),
            &[a],
            &rows(TargetState::Succeeded),
        );
        assert_eq!(poll(&mut open), [b], "a's place goes to b");
        // b's hub could not send it: queued again, offline, and nothing goes out.
        heard(&mut open, Kind::Unsent(7), &[b], &none);
        assert!(poll(&mut open).is_empty());
        let counts = open[&7].dispatch.counts();
        assert_eq!(counts[&TargetState::Queued], 1, "{counts:?}");
        assert_eq!(counts[&TargetState::Succeeded], 1, "{counts:?}");
        heard(&mut open, Kind::Present, &[b], &none);
        assert_eq!(poll(&mut open), [b]);
    }

    #[test]
    fn an_ended_session_counts_unless_the_device_is_held_elsewhere_by_now() {
        let (a, b) = (EndpointId(10), EndpointId(11));
        let mut open = job(&[a, b]);
        heard(&mut open, Kind::Present, &[a], &Remote::default());
        assert_eq!(poll(&mut open), [a]);
        let moved = Remote {
            holders: HashMap::from([(a, THIRD)]),
            ..Remote::default()
        };
        heard(&mut open, Kind::Absent, &[a], &moved);
        heard(&mut open, Kind::Present, &[b], &Remote::default());
        assert!(
            poll(&mut open).is_empty(),
            "a, on a third hub, holds the place"
        );
        let stale = Remote {
            holders: HashMap::from([(a, THERE)]),
            ..Remote::default()
        };
        heard(&mut open, Kind::Absent, &[a], &stale);
        assert_eq!(poll(&mut open), [b], "a left: b is sent it");
        assert!(!stale.moved(a, THERE, HERE, true));
        let here = Remote {
            holders: HashMap::from([(a, HERE)]),
            ..Remote::default()
        };
        assert!(
            here.moved(a, THERE, HERE, true),
            "its session here runs jobs"
        );
        assert!(!here.moved(a, THERE, HERE, false));
        assert!(!here.moved(a, HERE, HERE, true), "its session here ended");
    }
}
