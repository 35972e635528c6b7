//! The swarm's agents on disk: one identity per agent under `DATA/agents/NNNNNN/`, in the agent's
//! own layout, enrolled in bulk with bounded concurrency or reused from an earlier run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use outpost_agent::dial::Dialer;
use outpost_agent::enroll::{enroll, EnrollError};
use outpost_agent::identity::{Identity, IdentityError};
use outpost_api::ApiClient;
use outpost_protocol::backoff::Backoff;
use outpost_protocol::EndpointId;
use outpost_transport::profile::TransportProfile;
use thiserror::Error;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::api;
use crate::stats::Stats;

/// Attempts per agent at each of endpoint creation and enrolment before giving up on it.
const ATTEMPTS: u32 = 5;

/// Why the fleet could not be prepared at all (single agents that fail are counted and left out).
#[derive(Debug, Error)]
pub enum FleetError {
    /// Identities from an earlier run are there and `--reuse` was not given.
    #[error("{0} already holds agent identities: pass --reuse to run them again, or remove it")]
    NotEmpty(PathBuf),
    /// The data directory cannot be created.
    #[error("{path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

/// One simulated agent, enrolled.
#[derive(Clone, Debug)]
pub struct Member {
    /// Its index in the swarm (and its directory name).
    pub index: usize,
    /// Its identity directory.
    pub dir: PathBuf,
    /// The endpoint it is.
    pub endpoint: EndpointId,
}

/// The prepared agents.
#[derive(Debug)]
pub struct Fleet {
    /// Enrolled agents, by index.
    pub members: Vec<Member>,
    /// Identities that were already enrolled.
    pub reused: usize,
    /// Identities enrolled now.
    pub enrolled: usize,
    /// Time the preparation took.
    pub elapsed: Duration,
}

/// What enrolling needs.
#[derive(Clone, Debug)]
pub struct Enroller {
    /// The admin API, to create endpoints.
    pub api: ApiClient,
    /// The agents' transport profile.
    pub transport: TransportProfile,
    /// Shared client sockets; agent `i` uses socket `i % len`.
    pub sockets: Vec<quinn::Endpoint>,
    /// Endpoint names are this prefix and the index.
    pub name_prefix: String,
}

/// The identity directory of agent `index`.
pub fn agent_dir(data_dir: &Path, index: usize) -> PathBuf {
    data_dir.join("agents").join(format!("{index:06}"))
}

/// How many agents, where, and how.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The swarm's data directory.
    pub data_dir: PathBuf,
    /// Agents wanted.
    pub count: usize,
    /// Agents being made ready at once.
    pub concurrency: usize,
    /// Whether identities from an earlier run may be used.
    pub reuse: bool,
}

/// Load or enrol the agents of `plan`.
pub async fn prepare(
    enroller: Enroller,
    plan: &Plan,
    stats: Arc<Stats>,
) -> Result<Fleet, FleetError> {
    let (data_dir, count) = (plan.data_dir.as_path(), plan.count);
    let agents = data_dir.join("agents");
    if !plan.reuse && agents.exists() {
        return Err(FleetError::NotEmpty(data_dir.to_owned()));
    }
    std::fs::create_dir_all(&agents).map_err(|source| FleetError::DataDir {
        path: agents.clone(),
        source,
    })?;
    let started = Instant::now();
    let slots = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let enroller = Arc::new(enroller);
    let mut tasks = JoinSet::new();
    for index in 0..count {
        let (slots, enroller, stats) = (slots.clone(), enroller.clone(), stats.clone());
        let dir = agent_dir(data_dir, index);
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let outcome = enroller.ready(index, &dir).await;
            if let Err(kind) = &outcome {
                stats.error(kind.clone());
            }
            outcome.ok().map(|(endpoint, reused)| {
                let member = Member {
                    index,
                    dir,
                    endpoint,
                };
                (member, reused)
            })
        });
    }
    let mut fleet = Fleet {
        members: Vec::with_capacity(count),
        reused: 0,
        enrolled: 0,
        elapsed: Duration::ZERO,
    };
    while let Some(joined) = tasks.join_next().await {
        let Ok(Some((member, reused))) = joined else {
            continue;
        };
        if reused {
            fleet.reused += 1;
        } else {
            fleet.enrolled += 1;
        }
        fleet.members.push(member);
    }
    fleet.members.sort_by_key(|m| m.index);
    fleet.elapsed = started.elapsed();
    Ok(fleet)
}

impl Enroller {
    /// Make agent `index` ready: its endpoint, and whether it was enrolled before. The error is
    /// the kind of failure, for counting.
    async fn ready(&self, index: usize, dir: &Path) -> Result<(EndpointId, bool), String> {
        let mut identity = Identity::load_or_create(dir, None).map_err(|e| identity_kind(&e))?;
        if let Some(enrollment) = &identity.enrollment {
            return Ok((enrollment.endpoint, true));
        }
        let name = format!("{}{index}", self.name_prefix);
        let mut attempts = Attempts::new();
        let created = loop {
            match api::create_device(&self.api, &name).await {
                Ok(created) => break created,
                Err(e) if attempts.again(e.is_final()).await => {}
                Err(e) => return Err(format!("create endpoint: {}", e.kind())),
            }
        };
        let socket = &self.sockets[index % self.sockets.len()];
        let mut dialer = Dialer::on_endpoint(self.transport, socket.clone())
            .map_err(|e| format!("enrol: {e}"))?;
        let mut attempts = Attempts::new();
        let enrolled = loop {
            match enroll(&mut dialer, &identity, &created.token).await {
                Ok(enrolled) => break enrolled,
                Err(e) if attempts.again(e.is_final()).await => {}
                Err(e) => return Err(enroll_kind(&e)),
            }
        };
        identity
            .save_enrollment(&enrolled)
            .map_err(|e| identity_kind(&e))?;
        Ok((created.id, false))
    }
}

/// Retries of one step, with backoff and full jitter, at most [`ATTEMPTS`] in all.
struct Attempts {
    backoff: Backoff,
}

impl Attempts {
    fn new() -> Self {
        Self {
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
        }
    }

    /// After a failure: wait and return true if another attempt is worth it.
    async fn again(&mut self, is_final: bool) -> bool {
        if is_final || self.backoff.attempts() + 1 >= ATTEMPTS {
            return false;
        }
        let delay = self.backoff.next_delay(&mut rand::rng());
        tokio::time::sleep(delay).await;
        true
    }
}

fn identity_kind(e: &IdentityError) -> String {
    format!("identity: {e}")
}

fn enroll_kind(e: &EnrollError) -> String {
    match e {
        EnrollError::Refused(refusal) => format!("enrol refused: {:?}", refusal.reason),
        EnrollError::Dial(dial) if dial.is_final() => format!("enrol: {dial}"),
        EnrollError::Dial(_) => "enrol: unreachable".into(),
        EnrollError::Exchange(_) => "enrol: exchange failed".into(),
        EnrollError::Csr(_) => "enrol: CSR".into(),
    }
}
