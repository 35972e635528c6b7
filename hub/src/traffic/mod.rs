//! Every byte a device costs, counted by class, kept per budget period, and budgeted (issue #16
//! item 5).
//!
//! Why: a fleet on metered links pays per byte, and nothing else in the field says what a device
//! costs or caps it. Each live session counts the payload its streams carry by class
//! ([`tally::Class`]: interactive Docker calls, image fetches, snapshots, stacks) next to quinn's
//! exact UDP totals; control is the wire's remainder, so the classes always sum to what the link
//! carried. Counting is a relaxed atomic add per chunk on the stream's own task: nothing on the
//! session's driver, nothing per check-in.
//!
//! - **Kept**: a flush every [`FLUSH_EVERY`] (and each session's last bytes when it ends) adds
//!   each session's bytes since the last flush to `traffic` rows per device, period and class.
//!   Five minutes because every idle device has check-in bytes to add: at 100,000 devices that is
//!   330 rows a second on average, where a one-minute flush would be 1,700. What an admin reads is
//!   the store's rows plus the live session's bytes since the flush, so it is exact at any time;
//!   a hub that crashes loses at most the last five minutes of counts, never a budget's hold.
//! - **Budgets** (`crate::store::traffic`): bytes a period per device, set on the fleet, a group or
//!   the device. Every class counts — the carrier bills them all — but only background work is
//!   held back: image fetches stop at the budget ([`Allowance`], checked before each chunk,
//!   charging bytes when handed to the connection, not when they leave), and the agent is told
//!   `Deferred` with the next period's start. Interactive calls, check-ins and control are never
//!   blocked, so a device over budget still answers `docker ps`.
//!
//! [`Allowance`]: tally::Allowance

pub mod counted;
pub mod period;
pub mod tally;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use outpost_protocol::EndpointId;
use tracing::warn;

use self::period::BudgetPeriod;
use self::tally::{Allowance, Class, ClassCounters, Flushed, Tally, UpDown};
use crate::context::HubContext;
use crate::registry::LiveSession;
use crate::store::traffic::{self as stored, BudgetScope, TrafficRow};
use crate::store::{unix_now, StoreError};

/// The bytes a background transfer commits at a time; a budget with less than this left holds
/// transfers back (a fetch stream reads and sends its blob in chunks of this size).
pub const BUDGET_CHUNK: u64 = 64 << 10;

/// How often sessions' bytes are added to the store (see the module's docs for why five minutes).
pub const FLUSH_EVERY: Duration = Duration::from_secs(300);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One session's counters and what the last flush wrote of them.
#[derive(Debug, Default)]
pub struct SessionTraffic {
    /// Payload bytes per counted class, added by the streams.
    pub counters: ClassCounters,
    /// Where the last flush left the session; changed only under the store's writer, so a
    /// budget read in the same place sees the store and this marker agree.
    flushed: Mutex<Flushed>,
}

impl SessionTraffic {
    /// Count `bytes` of `class` going `direction`.
    pub fn add(&self, class: Class, direction: tally::Direction, bytes: u64) {
        self.counters.add(class, direction, bytes);
    }

    fn flushed(&self) -> Flushed {
        *lock(&self.flushed)
    }

    /// Take the bytes spent since the last flush, with the session at `now`.
    fn take_since_flush(&self, now: Tally) -> Tally {
        let mut flushed = lock(&self.flushed);
        let (spent, next) = flushed.since(&now);
        *flushed = next;
        spent
    }
}

/// The hub's side of traffic: the budget period and the last bytes of sessions that ended.
#[derive(Debug)]
pub struct Traffic {
    period: BudgetPeriod,
    ended: Mutex<Vec<(EndpointId, Tally)>>,
}

impl Traffic {
    /// Budgets reset every `period`.
    pub fn new(period: BudgetPeriod) -> Self {
        Self {
            period,
            ended: Mutex::default(),
        }
    }

    /// The budget period.
    pub fn period(&self) -> BudgetPeriod {
        self.period
    }

    /// `session` ended: its bytes since the last flush go with the next one.
    pub fn session_ended(&self, session: &LiveSession) {
        let spent = session.traffic().take_since_flush(session.tally());
        if !spent.is_empty() {
            lock(&self.ended).push((session.endpoint, spent));
        }
    }
}

/// Flush every [`FLUSH_EVERY`] and as each budget period begins, for as long as the hub runs:
/// the bytes a session spent before a period began are the old period's, so what the new one
/// counts (store plus the session's bytes since the flush) starts near zero.
pub(crate) async fn run_flusher(ctx: Arc<HubContext>) {
    loop {
        let now = unix_now();
        let boundary = ctx.traffic.period.next_start(now);
        let every = i64::try_from(FLUSH_EVERY.as_secs()).unwrap_or(i64::MAX);
        let at = boundary.min(now.saturating_add(every));
        tokio::time::sleep(Duration::from_secs(u64::try_from(at - now).unwrap_or(0))).await;
        // A flush at the boundary counts its bytes to the period that ends there.
        let period_of = if at == boundary { at - 1 } else { at };
        if let Err(e) = flush(&ctx, period_of).await {
            warn!("traffic counts not written: {e}");
        }
    }
}

/// Add every session's bytes since the last flush, and those of sessions that ended, to the
/// period holding `at` (Unix seconds). Returns how many rows were added to.
pub(crate) async fn flush(ctx: &Arc<HubContext>, at: i64) -> Result<usize, StoreError> {
    let sessions = ctx.registry.all();
    let taker = ctx.clone();
    ctx.store
        .call(move |conn| {
            let period_start = taker.traffic.period.start_of(at);
            let mut spent: Vec<(EndpointId, Tally)> =
                std::mem::take(&mut *lock(&taker.traffic.ended));
            for session in &sessions {
                let since = session.traffic().take_since_flush(session.tally());
                if !since.is_empty() {
                    spent.push((session.endpoint, since));
                }
            }
            let rows: Vec<TrafficRow> = spent
                .iter()
                .flat_map(|(endpoint, tally)| rows_of(*endpoint, tally))
                .collect();
            for row in &rows {
                taker.metrics.traffic(row.class, row.up, row.down);
            }
            stored::add(conn, period_start, &rows)?;
            Ok(rows.len())
        })
        .await
}

fn rows_of(endpoint: EndpointId, tally: &Tally) -> impl Iterator<Item = TrafficRow> + '_ {
    Class::ALL.into_iter().filter_map(move |class| {
        let bytes = tally.class(class);
        (bytes.total() > 0).then_some(TrafficRow {
            endpoint,
            class: class.as_str(),
            up: bytes.up,
            down: bytes.down,
        })
    })
}

/// A device's budget as a background transfer starting now sees it.
#[derive(Clone, Debug)]
pub struct Budgeted {
    /// What the transfer checks each chunk against.
    pub allowance: Allowance,
    /// Where the budget was set.
    pub scope: BudgetScope,
    /// When the next period starts (Unix seconds): when a spent budget opens again.
    pub next_start: i64,
}

/// The budget that holds `session`'s device now, if one is set. Read under the store's writer,
/// where the flush moves the session's marker, so store and marker agree.
pub async fn allowance(
    ctx: &HubContext,
    session: &Arc<LiveSession>,
) -> Result<Option<Budgeted>, StoreError> {
    let (session, period) = (session.clone(), ctx.traffic.period);
    ctx.store
        .call(move |conn| {
            let Some((scope, budget)) = stored::budget_for(conn, session.endpoint)? else {
                return Ok(None);
            };
            let now = unix_now();
            let flushed = session.traffic().flushed();
            let stored = stored::used(conn, session.endpoint, period.start_of(now))?;
            Ok(Some(Budgeted {
                allowance: Allowance {
                    budget,
                    stored,
                    flushed,
                },
                scope,
                next_start: period.next_start(now),
            }))
        })
        .await
}

/// A device's bytes this period by class, with a live session's bytes since the last flush.
pub async fn this_period(
    ctx: &HubContext,
    endpoint: EndpointId,
    live: Option<Arc<LiveSession>>,
) -> Result<Vec<(Class, UpDown)>, StoreError> {
    let period = ctx.traffic.period;
    ctx.store
        .call(move |conn| {
            let rows = stored::of_endpoint(conn, endpoint, period.start_of(unix_now()))?;
            let unflushed = live.map(|s| s.traffic().flushed().since(&s.tally()).0);
            Ok(Class::ALL
                .into_iter()
                .map(|class| {
                    let mut bytes = unflushed.map(|t| t.class(class)).unwrap_or_default();
                    for (name, up, down) in &rows {
                        if name == class.as_str() {
                            bytes.add(UpDown {
                                up: *up,
                                down: *down,
                            });
                        }
                    }
                    (class, bytes)
                })
                .collect())
        })
        .await
}
