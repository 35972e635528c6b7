//! The audit writer: one task that inserts records a batch per transaction, so a burst of calls
//! costs SQLite a few commits rather than one each, and prunes what is past the retention.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::unix_ms;
use crate::context::HubContext;
use crate::store::audit::{self, NewRecord};

/// Most records in one transaction.
const MAX_BATCH: usize = 1_000;

/// How often records past the retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3_600);

/// Write `records` until every sender is gone, deleting those older than `retention` hourly.
pub async fn run(
    ctx: Arc<HubContext>,
    mut records: mpsc::Receiver<NewRecord>,
    retention: Duration,
) {
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        tokio::select! {
            received = records.recv_many(&mut batch, MAX_BATCH) => {
                if received == 0 {
                    return;
                }
                write(&ctx, std::mem::take(&mut batch)).await;
            }
            _ = prune.tick() => prune_old(&ctx, retention).await,
        }
    }
}

async fn write(ctx: &HubContext, batch: Vec<NewRecord>) {
    let count = batch.len();
    if let Err(e) = ctx.store.call(move |c| audit::insert(c, &batch)).await {
        warn!(count, "audit records not written: {e}");
    }
}

async fn prune_old(ctx: &HubContext, retention: Duration) {
    let before = unix_ms() - retention.as_millis() as i64;
    match ctx.store.call(move |c| audit::prune(c, before)).await {
        Ok(0) => {}
        Ok(deleted) => info!(deleted, "audit records past the retention deleted"),
        Err(e) => warn!("audit records not pruned: {e}"),
    }
}
