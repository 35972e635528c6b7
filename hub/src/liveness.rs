//! Writing the registry's liveness to the store: a batch every `flush_interval` (5 s by default),
//! and on demand before a status query, so the endpoint list's `connected` flags match the
//! registry as of the query. The same updates feed the offline alerts (`crate::alerts`), so they
//! cost no query of their own. Its own module so the API and the server both call it without the
//! API depending on the server.

use std::sync::Arc;
use std::time::Duration;

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
    let written = ctx
        .store
        .write_liveness(move || {
            let updates = taker.registry.take_dirty(now, stale_after);
            taker.alerts.liveness(&updates);
            updates
        })
        .await;
    if let Ok(rows) = written {
        ctx.metrics.flushed(now.elapsed(), rows);
    }
    written
}
