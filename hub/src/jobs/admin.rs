//! What admins do to jobs: create one (coordinated by this hub), cancel one (the hubs holding
//! devices that hold it are told through [`crate::job_relay`]).

use std::collections::HashSet;
use std::time::Duration;

use outpost_protocol::EndpointId;
use tracing::info;

use super::dispatch::Dispatch;
use super::relay::{self, Outbox};
use super::{load, lock, time_of, JobError, Jobs, Open, TargetState, Terms};
use crate::context::HubContext;
use crate::job_relay::Kind;
use crate::registry::Control;
use crate::store::job_hubs;
use crate::store::jobs::{self, NewJob};
use crate::store::rollouts::{self, Selector};

impl Jobs {
    /// Create a job for every device `job.selector` matches, coordinated here; its id and how
    /// many devices. A target another hub holds starts online (its hub says otherwise if its
    /// agent does not run jobs).
    pub async fn create(&self, ctx: &HubContext, job: NewJob) -> Result<(i64, usize), JobError> {
        let selector: Selector = job.selector.clone();
        let stored = job.clone();
        let (hub, several) = (ctx.hubs.id, ctx.hubs.others_alive() > 0);
        let created = ctx
            .store
            .call(move |c| {
                let (targets, unknown) = rollouts::resolve(c, &selector)?;
                if !unknown.is_empty() || targets.is_empty() {
                    return Ok(Err((unknown, targets.is_empty())));
                }
                let tx = c.transaction()?;
                let id = jobs::create(&tx, &stored, &targets)?;
                job_hubs::coordinate(&tx, id, hub)?;
                tx.commit()?;
                let elsewhere = match several {
                    true => load::held_elsewhere(c, hub, &targets)?,
                    false => HashSet::new(),
                };
                Ok(Ok((id, targets, elsewhere)))
            })
            .await?;
        let (id, targets, elsewhere) = match created {
            Ok(created) => created,
            Err((unknown, _)) if !unknown.is_empty() => return Err(JobError::Unknown(unknown)),
            Err(_) => return Err(JobError::NoDevice),
        };
        let terms = Terms {
            spec: job.spec,
            expires_at: time_of(job.expires_at),
            timeout: Duration::from_millis(job.timeout_ms),
        };
        let mut dispatch = Dispatch::new(
            job.concurrency,
            terms.expires_at,
            terms.timeout,
            targets.iter().map(|t| (*t, TargetState::Queued)),
            false,
        );
        for endpoint in lock(&self.capable).iter().chain(&elsewhere) {
            dispatch.online(*endpoint);
        }
        info!(job = id, devices = targets.len(), what = %terms.spec.summary(), "job created");
        lock(&self.open).insert(id, Open { terms, dispatch });
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
        // container running it is stopped (an exec runs on; its result still comes). Those other
        // hubs hold are told through them.
        let elsewhere = self.tell_cancel(ctx, id, &holding);
        ctx.store.call(move |c| jobs::cancel(c, id)).await?;
        if !elsewhere.is_empty() && ctx.hubs.others_alive() > 0 {
            let outbox = Outbox::one(Kind::Cancelled(id), elsewhere);
            relay::announce(ctx, outbox).await;
        }
        info!(job = id, "job cancelled");
        Ok(())
    }

    /// Tell the sessions here of `endpoints` that job `id` is cancelled; those without one.
    pub(crate) fn tell_cancel(
        &self,
        ctx: &HubContext,
        id: i64,
        endpoints: &[EndpointId],
    ) -> Vec<EndpointId> {
        let mut elsewhere = Vec::new();
        for endpoint in endpoints {
            match ctx.registry.get(*endpoint) {
                Some(session) => {
                    let _ = session.control().push(Control::JobCancel { id: id as u64 });
                }
                None => elsewhere.push(*endpoint),
            }
        }
        elsewhere
    }
}
