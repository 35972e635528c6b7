//! Writing the registry's liveness to the store: a batch every `flush_interval` (5 s by default),
//! and on demand before a status query, so the endpoint list's `connected` flags match the
//! registry as of the query. The same updates feed the offline alerts (`crate::alerts`), so they
//! cost no query of their own. Its own module so the API and the server both call it without the
//! API depending on the server.

use std::sync::Arc;
use std::time::Duration;

use outpost_protocol::wire::CloseCode;
use outpost_protocol::EndpointId;
use tokio::time::Instant;
use tracing::warn;

use crate::context::HubContext;
use crate::store::StoreError;

/// Flush every `every`, for as long as the hub runs.
pub(crate) async fn run_flusher(ctx: Arc<HubContext>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(e) = flush_liveness(&ctx).await {
            warn!("liveness not written: {e}");
        }
    }
}

/// Write what the registry reports dirty now (see [`crate::registry::Registry::take_dirty`]): the
/// periodic flush, and a status query's. Taken under the store's writer, so two flushes write in
/// the order they took. Returns how many rows were written.
pub(crate) async fn flush_liveness(ctx: &Arc<HubContext>) -> Result<usize, StoreError> {
    let now = Instant::now();
    let stale_after = ctx.stale_after();
    let taker = ctx.clone();
    let hub = ctx.hubs.id;
    let (rows, held_elsewhere) = ctx
        .store
        .write_liveness(hub, move || {
            let updates = taker.registry.take_dirty(now, stale_after);
            taker.alerts.liveness(&updates);
            taker.path_mtus.learn(&updates);
            updates
        })
        .await?;
    ctx.metrics.flushed(now.elapsed(), rows);
    for endpoint in held_elsewhere {
        close_stale(ctx, endpoint);
    }
    Ok(rows)
}

/// `endpoint` checks in to another hub now, so its session here is stale (its connection is
/// dead and not timed out yet, or the agent has two): close it, so it is never live on two hubs.
fn close_stale(ctx: &HubContext, endpoint: EndpointId) {
    if let Some(session) = ctx.registry.get(endpoint) {
        warn!(%endpoint, "the device checks in to another hub now: closing its session here");
        session.close(
            CloseCode::Replaced,
            "the device is connected to another hub",
        );
    }
}
