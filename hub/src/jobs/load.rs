//! Jobs rebuilt from the store: the ones a starting hub coordinates (its own, and those no live
//! hub coordinates), and those it takes over from a hub that died (`crate::hubs`' heartbeat).
//! Devices this hub holds come online as their sessions announce jobs; those another hub holds
//! start online, so their orders go out at once (their hub answers for an agent that runs none).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use outpost_protocol::EndpointId;
use tracing::info;

use super::dispatch::Dispatch;
use super::{lock, Jobs, Open, Terms};
use crate::context::HubContext;
use crate::store::db::Db;
use crate::store::hubs::HubId;
use crate::store::job_hubs;
use crate::store::jobs::OpenJob;
use crate::store::{unix_now, Store, StoreError};

impl Jobs {
    /// The unfinished jobs `hub` coordinates, from the store, with those no live hub coordinates
    /// taken over first.
    pub fn restore(store: &Store, hub: HubId) -> Result<Self, StoreError> {
        let conn = store.lock();
        let alive_since = unix_now() - crate::hubs::SILENT_AFTER.as_secs() as i64;
        let claimed = job_hubs::claim_orphans(&conn, hub, alive_since)?;
        if claimed > 0 {
            info!(claimed, "took over the jobs no live hub coordinated");
        }
        let stored = job_hubs::load_coordinated(&conn, hub, None)?;
        let elsewhere = held_elsewhere(&conn, hub, &targets_of(&stored))?;
        drop(conn);
        Ok(Self {
            open: Mutex::new(rebuilt(stored, elsewhere.iter())),
            ..Self::default()
        })
    }

    /// Take over jobs `ids` from a hub that died: rebuilt from the store, each target online if
    /// a session here runs jobs or another hub holds it.
    pub async fn adopt(&self, ctx: &HubContext, ids: Vec<i64>) -> Result<(), StoreError> {
        let hub = ctx.hubs.id;
        let (stored, elsewhere) = ctx
            .store
            .read(move |c| {
                let stored = job_hubs::load_coordinated(c, hub, Some(&ids))?;
                let elsewhere = held_elsewhere(c, hub, &targets_of(&stored))?;
                Ok((stored, elsewhere))
            })
            .await?;
        let capable = lock(&self.capable).clone();
        let adopted = rebuilt(stored, elsewhere.iter().chain(&capable));
        info!(jobs = ?adopted.keys().collect::<Vec<_>>(), "took over the jobs of a hub that died");
        lock(&self.elsewhere).retain(|id, _| !adopted.contains_key(id));
        lock(&self.open).extend(adopted);
        Ok(())
    }
}

/// Which of `endpoints` another hub than `hub` holds.
pub(super) fn held_elsewhere(
    conn: &Db,
    hub: HubId,
    endpoints: &[EndpointId],
) -> Result<HashSet<EndpointId>, StoreError> {
    let holders = job_hubs::holders_of(conn, endpoints)?;
    Ok(holders
        .into_iter()
        .filter(|(_, holder)| *holder != hub)
        .map(|(endpoint, _)| endpoint)
        .collect())
}

fn targets_of(stored: &[OpenJob]) -> Vec<EndpointId> {
    let all: HashSet<EndpointId> = stored
        .iter()
        .flat_map(|(_, targets)| targets.iter().map(|(id, _)| *id))
        .collect();
    all.into_iter().collect()
}

/// Dispatches for `stored` jobs, with `online` targets online (sent again if they hold the job).
fn rebuilt<'a>(
    stored: Vec<OpenJob>,
    online: impl Iterator<Item = &'a EndpointId> + Clone,
) -> HashMap<i64, Open> {
    let mut open = HashMap::new();
    for (stored, targets) in stored {
        let terms = Terms::of(&stored);
        let mut dispatch = Dispatch::new(
            stored.job.concurrency,
            terms.expires_at,
            terms.timeout,
            targets,
            stored.cancelled_at.is_some(),
        );
        for endpoint in online.clone() {
            dispatch.online(*endpoint);
        }
        open.insert(stored.id, Open { terms, dispatch });
    }
    open
}
