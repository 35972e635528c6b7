//! Two hubs of one PostgreSQL store (issue #18) and a device one of them holds: the start every
//! test of work that crosses hubs (a rollout, a job) repeats before it says what it is about.

use std::time::Duration;

use tempfile::TempDir;

use crate::bench_store::{BenchStore, StoreKind};
use crate::{wait_for, Agent, Hub};

/// `hub serve` flags for the hub called `name` on `db`.
pub fn hub_flags(db: &BenchStore, name: &str) -> Vec<String> {
    let mut flags = db.serve_flags();
    flags.extend(["--hub-name".to_owned(), name.to_owned()]);
    flags
}

/// The hub called `name` on `db`, started.
pub fn start_hub(db: &BenchStore, name: &str) -> Hub {
    let flags = hub_flags(db, name);
    Hub::start_with_flags(&flags.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `hub-a` and `hub-b` on a fresh PostgreSQL database, one admin token for both, and the device
/// `till` that `hub-b` holds, its agent on the local engine. Its fields drop in their order: the
/// agent, the hubs, then the database and the directory they ran in.
#[derive(Debug)]
pub struct TwoHubs {
    /// The agent of the device `till`.
    pub agent: Agent,
    /// `hub-b`, which holds the device.
    pub b: Hub,
    /// `hub-a`, which has seen that `hub-b` holds the device.
    pub a: Hub,
    /// The device's id.
    pub id: u64,
    /// The database both hubs run on.
    pub db: BenchStore,
    _dir: TempDir,
}

impl TwoHubs {
    /// Start both hubs and the agent, and wait until `hub-a` sees `hub-b` hold the device.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = BenchStore::create(StoreKind::Postgres, dir.path());
        let a = start_hub(&db, "hub-a");
        let b = start_hub(&db, "hub-b");
        std::fs::copy(
            a.data_dir.join("admin.token"),
            b.data_dir.join("admin.token"),
        )
        .expect("share the admin token");
        let (id, key) = b.create_endpoint("till", &[]);
        let agent_dir = b
            .data_dir
            .parent()
            .expect("a data dir's parent")
            .join("till");
        let agent = Agent::start(
            &agent_dir,
            &[
                ("EDGE_KEY", &key),
                ("DOCKER_HOST", "unix:///var/run/docker.sock"),
            ],
        );
        b.wait_status(id, "standby", Duration::from_secs(20));
        wait_for(
            Duration::from_secs(15),
            "hub-a to see hub-b hold the device",
            || (a.show(id)["hub"] == "hub-b").then_some(()),
        );
        Self {
            agent,
            b,
            a,
            id,
            db,
            _dir: dir,
        }
    }
}
