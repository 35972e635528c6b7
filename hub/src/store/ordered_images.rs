//! The images the fleet has ordered onto one device, as its orders name them: what the hub's
//! mirror may serve that device (`agent_link::fetch_grant`). Derived from the rows that
//! already say what a device should run (no table of its own), so every hub on a shared store
//! answers alike, and a restarted hub as it did before:
//!
//! - every service image of the stack versions deployed to it (`deployments`, which rollouts
//!   write as they reach each device);
//! - the image of each job aimed at it that names one (`image pull`, `job run`) while the job is
//!   live: not cancelled, and either not expired or still queued, sent or running there.

use outpost_protocol::job::JobSpec;
use outpost_protocol::{wire, EndpointId};

use super::db::{params, Db};
use super::deployments::desired_state;
use super::StoreError;

/// Every image named by what `endpoint` should run or was ordered to pull, as written, each once.
/// `now` is Unix seconds (a job expired before it no longer counts once settled there).
pub fn ordered_images(
    conn: &Db,
    endpoint: EndpointId,
    now: i64,
) -> Result<Vec<String>, StoreError> {
    let mut images: Vec<String> = Vec::new();
    let mut add = |image: &str| {
        if !images.iter().any(|known| known == image) {
            images.push(image.to_owned());
        }
    };
    for stack in desired_state(conn, endpoint)?.state.stacks {
        stack
            .services
            .iter()
            .for_each(|service| add(&service.image));
    }
    for spec in live_job_specs(conn, endpoint, now)? {
        if let JobSpec::PullImage { image } | JobSpec::Run { image, .. } = &spec {
            add(image);
        }
    }
    Ok(images)
}

/// The specifications of the jobs aimed at `endpoint` that may still have it pull.
fn live_job_specs(conn: &Db, endpoint: EndpointId, now: i64) -> Result<Vec<JobSpec>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT j.spec FROM job_targets t JOIN jobs j ON j.id = t.job_id
         WHERE t.endpoint_id = ?1 AND j.cancelled_at IS NULL
           AND (j.expires_at > ?2 OR t.state IN ('queued', 'sent', 'running'))
         ORDER BY j.id",
    )?;
    let rows = statement.query_map(params![endpoint.0 as i64, now], |r| r.get::<Vec<u8>>(0))?;
    let mut specs = Vec::new();
    for row in rows {
        let spec = wire::decode::<JobSpec>(&row?)
            .map_err(|e| StoreError::Corrupt(format!("a job's specification: {e}")))?;
        specs.push(spec);
    }
    Ok(specs)
}

#[cfg(test)]
mod tests;
