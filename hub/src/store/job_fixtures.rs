//! What the jobs' store tests start from, on both backends (`jobs_tests.rs`, `job_hubs_tests.rs`):
//! devices to target and a job to send them, so the two files test one job, not two lookalikes.

use outpost_protocol::job::{EngineMethod, JobSpec};
use outpost_protocol::{EndpointId, Secret};

use super::db::Db;
use super::endpoints::{self, EndpointKind};
use super::jobs::NewJob;
use super::rollouts::Selector;
use super::tests::new_endpoint;
use super::unix_now;

/// `n` devices, `d0` to `d{n-1}`.
pub(super) fn devices(conn: &Db, n: usize) -> Vec<EndpointId> {
    (0..n)
        .map(|i| {
            let new = new_endpoint(
                &format!("d{i}"),
                EndpointKind::Device,
                &Secret::generate(),
                None,
            );
            endpoints::create(conn, &new, 0).unwrap().id
        })
        .collect()
}

/// An `images/prune` job for the devices tagged `pos`, open for a day.
pub(super) fn prune() -> NewJob {
    NewJob {
        spec: JobSpec::Engine {
            method: EngineMethod::Post,
            path: "/images/prune".into(),
            body: vec![],
        },
        selector: Selector {
            tags: vec!["pos".into()],
            ..Selector::default()
        },
        concurrency: 500,
        timeout_ms: 600_000,
        expires_at: unix_now() + 86_400,
    }
}
