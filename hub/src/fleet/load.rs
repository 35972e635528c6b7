//! What a tick and a start read and write besides the controllers: rollouts rebuilt from the
//! store, the queued reports kept, the labels of devices that may join.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use outpost_protocol::stack::StackReport;
use outpost_protocol::EndpointId;
use tracing::{debug, warn};

use super::{Active, Event, Queued};
use crate::context::HubContext;
use crate::rollout::{Rollout, TargetRecord};
use crate::store::deployments;
use crate::store::rollouts::StoredRollout;
use crate::store::StoreError;

/// Which targets of `stored` rollouts a hub of the store holds.
pub(super) fn connected_targets(
    conn: &crate::store::db::Db,
    stored: &[(StoredRollout, Vec<TargetRecord>)],
) -> Result<HashSet<EndpointId>, StoreError> {
    let ids: Vec<EndpointId> = stored
        .iter()
        .flat_map(|(_, targets)| targets.iter().map(|t| t.endpoint))
        .collect();
    crate::store::endpoints::connected_of(conn, &ids)
}

/// Controllers for `stored` rollouts; `online` says which targets are connected.
pub(super) fn rebuilt(
    stored: Vec<(StoredRollout, Vec<TargetRecord>)>,
    online: impl Fn(EndpointId) -> bool,
) -> HashMap<i64, Active> {
    let now = SystemTime::now();
    let mut active = HashMap::new();
    for (stored, targets) in stored {
        match Rollout::restore(stored.record, targets, &online, now) {
            Ok(rollout) => {
                let entry = Active {
                    stack: stored.stack,
                    version: stored.version,
                    selector: stored.selector,
                    rollout,
                };
                active.insert(stored.id, entry);
            }
            Err(e) => warn!(
                rollout = stored.id,
                "rollout not resumed, its rows do not fit: {e}"
            ),
        }
    }
    active
}

/// Store the queued reports for the deployments they are about (each device's endpoint view),
/// all in one transaction, before the rollouts are fed. A failed write loses this second's
/// reports from the view only: each agent reports again as its next session starts.
pub(super) async fn keep_reports(ctx: &HubContext, events: &[Queued]) {
    let reports: Vec<(EndpointId, StackReport)> = events
        .iter()
        .filter_map(|queued| match &queued.event {
            Event::Report(id, report) => Some((*id, report.clone())),
            _ => None,
        })
        .collect();
    if reports.is_empty() {
        return;
    }
    let count = reports.len();
    let kept = ctx
        .store
        .call(move |c| {
            let tx = c.transaction()?;
            for (id, report) in &reports {
                deployments::record_report(&tx, *id, report)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await;
    match kept {
        Ok(()) => debug!(reports = count, "stack reports kept"),
        Err(e) => warn!(reports = count, "stack reports not kept: {e}"),
    }
}

/// The group and tags of every device a queued event says was labelled, and whether a hub of
/// the store holds its session.
pub(super) async fn labels_of(
    ctx: &HubContext,
    events: &[Queued],
) -> HashMap<EndpointId, (Option<String>, Vec<String>, bool)> {
    let ids: Vec<EndpointId> = events
        .iter()
        .filter_map(|queued| match queued.event {
            Event::Labelled(id) => Some(id),
            _ => None,
        })
        .collect();
    if ids.is_empty() {
        return HashMap::new();
    }
    let read = ctx
        .store
        .read(move |c| {
            let mut labels = HashMap::new();
            for id in ids {
                if let Some(record) = crate::store::endpoints::find(c, id)? {
                    if record.kind == crate::store::EndpointKind::Device {
                        let held = record.held_by.is_some();
                        labels.insert(id, (record.group, record.tags, held));
                    }
                }
            }
            Ok(labels)
        })
        .await;
    read.unwrap_or_else(|e| {
        warn!("labels of joining devices not read: {e}");
        HashMap::new()
    })
}
