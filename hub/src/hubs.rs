//! This hub among the hubs sharing its store (issue #18; `crate::store::hubs` for the rows).
//!
//! Every [`HEARTBEAT`] the hub writes its heartbeat, reads the others', and releases the devices
//! of any hub that stopped or went silent for [`SILENT_AFTER`]: they show offline until they
//! check in to a live hub. It also takes over the rollouts and jobs such a hub coordinated
//! (`crate::fleet`, `crate::jobs`); of several hubs doing so at once, the store gives them to
//! one. The live hubs' agent addresses go into every join token and `Welcome`,
//! this hub's first, so an agent whose hub dies dials the others in turn (the agent tries its list
//! in order). The others come rotated by the device's id, so the devices of a dead hub spread
//! over the live ones instead of all landing on the first.
//!
//! Why 5 s and 30 s: the heartbeat rides on the liveness flush's period, one row each time; a
//! hub's devices are released after six missed heartbeats, long enough for a PostgreSQL failover
//! or a stalled disk not to release a working hub's fleet, short next to the minute a failover is
//! allowed (issue #18: every agent of a killed hub online elsewhere within 60 s).

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use outpost_protocol::token::MAX_HUB_ADDRS;
use outpost_protocol::EndpointId;
use tracing::{info, warn};

use crate::context::HubContext;
use crate::registry::Control;
use crate::store::hubs::{self, HubHealth, HubId, HubRecord};
use crate::store::{job_hubs, rollouts};
use crate::store::{unix_now, Store, StoreError};

/// How often a hub writes its heartbeat and looks at the others.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// A hub without a heartbeat for this long is silent: its devices are released.
pub const SILENT_AFTER: Duration = Duration::from_secs(30);

/// The file in the data directory that keeps a hub's generated name across restarts.
const NAME_FILE: &str = "hub.name";
/// The file in the data directory that keeps the id telling its hub from another of the name.
const INSTANCE_FILE: &str = "hub.instance";

/// Why a hub could not take its place among the hubs of its store.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// A running hub on another data directory has this name.
    #[error("hub name {name:?} is taken by a running hub on another data directory (its heartbeat {seconds_ago} s ago): start this one with another --hub-name, or stop the other (a hub killed without stopping frees its name 30 s after its last heartbeat)")]
    NameInUse {
        /// The name.
        name: String,
        /// Seconds since the other hub's heartbeat.
        seconds_ago: i64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// This hub's place among the hubs of its store.
#[derive(Debug)]
pub struct FleetHubs {
    /// Its row in the store.
    pub id: HubId,
    /// Its name.
    pub name: String,
    /// The addresses agents dial to reach it.
    own: Vec<String>,
    /// The other live hubs, as of the last heartbeat.
    others: RwLock<Vec<HubRecord>>,
}

/// Another live hub, as a request for a device it holds is forwarded to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its name.
    pub name: String,
    /// Its admin API, as it registered it (`serve --peer-url`).
    pub url: String,
}

impl FleetHubs {
    /// Register this hub in `store` (a restart keeps its row), release the devices it held
    /// before a crash and those of hubs that are no longer alive, and read the live ones.
    /// A hub on another data directory that runs under the same name is refused.
    pub fn register(
        store: &Store,
        name: String,
        own: Vec<String>,
        api_url: &str,
        instance: &str,
    ) -> Result<Self, RegisterError> {
        let now = unix_now();
        let conn = store.lock();
        let registration = hubs::HubRegistration {
            name: &name,
            agent_addrs: &own,
            api_url,
            instance,
        };
        let silent_after = SILENT_AFTER.as_secs() as i64;
        if let Some(seconds_ago) = hubs::in_use_elsewhere(&conn, &registration, now, silent_after)?
        {
            return Err(RegisterError::NameInUse { name, seconds_ago });
        }
        let id = hubs::register(&conn, &registration, now)?;
        let released = hubs::release(&conn, id)? + hubs::release_unheld(&conn)?;
        if released > 0 {
            info!(
                released,
                "devices this hub held before it stopped are offline until they check in"
            );
        }
        let fleet = Self {
            id,
            name,
            own,
            others: RwLock::new(Vec::new()),
        };
        fleet.look_around(&conn, now)?;
        drop(conn);
        Ok(fleet)
    }

    /// Every live hub's agent addresses, this hub's first: for a join token.
    pub fn addrs(&self) -> Vec<String> {
        self.addrs_for(EndpointId(0))
    }

    /// What `endpoint` is told to dial: this hub's addresses, then the other live hubs' rotated
    /// by its id (at most what a token or a `Welcome` may carry).
    pub fn addrs_for(&self, endpoint: EndpointId) -> Vec<String> {
        let mut others = others_addrs(&self.others.read().unwrap_or_else(|p| p.into_inner()));
        if !others.is_empty() {
            let shift = (endpoint.0 % others.len() as u64) as usize;
            others.rotate_left(shift);
        }
        let mut addrs = self.own.clone();
        addrs.extend(others.into_iter().filter(|a| !self.own.contains(a)));
        addrs.truncate(MAX_HUB_ADDRS);
        addrs
    }

    /// How many other hubs were alive at the last heartbeat.
    pub fn others_alive(&self) -> usize {
        self.others.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The live hub `id` if it is another one than this: where a device it holds is reached.
    pub fn peer(&self, id: HubId) -> Option<Peer> {
        let others = self.others.read().unwrap_or_else(|p| p.into_inner());
        others.iter().find(|h| h.id == id).map(|h| Peer {
            name: h.name.clone(),
            url: h.api_url.clone(),
        })
    }

    /// Read the other hubs: keep the live ones, release the devices of the rest and take over
    /// the rollouts and jobs they coordinated.
    fn look_around(&self, conn: &crate::store::db::Db, now: i64) -> Result<Looked, StoreError> {
        let silent_after = SILENT_AFTER.as_secs() as i64;
        let mut live = Vec::new();
        let mut adopted = Vec::new();
        let mut adopted_jobs = Vec::new();
        for hub in hubs::list(conn)?.into_iter().filter(|h| h.id != self.id) {
            let health = hub.health(now, silent_after);
            if health == HubHealth::Alive {
                live.push(hub);
                continue;
            }
            if hub.devices > 0 {
                let released = hubs::release(conn, hub.id)?;
                warn!(hub = %hub.name, released, health = health.as_str(), "released the devices of a hub that is not alive");
            }
            adopted.extend(rollouts::adopt(conn, hub.id, self.id)?);
            adopted_jobs.extend(job_hubs::adopt(conn, hub.id, self.id)?);
        }
        let mut others = self.others.write().unwrap_or_else(|p| p.into_inner());
        let addrs_changed = others_addrs(&others) != others_addrs(&live);
        *others = live;
        Ok(Looked {
            addrs_changed,
            adopted,
            adopted_jobs,
        })
    }
}

/// What a look at the other hubs found.
#[derive(Debug)]
struct Looked {
    /// The live hubs' agent addresses changed.
    addrs_changed: bool,
    /// Rollouts this hub took over from hubs that are not alive.
    adopted: Vec<i64>,
    /// Jobs this hub took over from hubs that are not alive.
    adopted_jobs: Vec<i64>,
}

/// The agent addresses of `hubs`, in order.
fn others_addrs(hubs: &[HubRecord]) -> Vec<String> {
    hubs.iter()
        .flat_map(|h| h.agent_addrs.iter().cloned())
        .collect()
}

/// Write this hub's heartbeat and look at the others every [`HEARTBEAT`], for as long as it runs.
pub(crate) async fn run_heartbeat(ctx: Arc<HubContext>) {
    let mut ticker = tokio::time::interval(HEARTBEAT);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let beat = ctx.clone();
        let written = ctx
            .store
            .call(move |conn| {
                let now = unix_now();
                hubs::heartbeat(conn, beat.hubs.id, now)?;
                beat.hubs.look_around(conn, now)
            })
            .await;
        match written {
            Ok(looked) => {
                if looked.addrs_changed {
                    tell_sessions(&ctx);
                }
                if !looked.adopted.is_empty() {
                    if let Err(e) = ctx.fleet.adopt(&ctx, looked.adopted).await {
                        warn!("rollouts taken over from a dead hub not loaded: {e}; they resume when this hub restarts");
                    }
                }
                if !looked.adopted_jobs.is_empty() {
                    if let Err(e) = ctx.jobs.adopt(&ctx, looked.adopted_jobs).await {
                        warn!("jobs taken over from a dead hub not loaded: {e}; they resume when this hub restarts");
                    }
                }
            }
            Err(e) => warn!("hub heartbeat not written: {e}"),
        }
    }
}

/// The live hubs changed: every session whose agent takes it hears the new addresses (a full
/// control queue misses this one change; the agent learns at its next connection).
fn tell_sessions(ctx: &HubContext) {
    info!(addrs = ?ctx.hubs.addrs(), "the fleet's live hubs changed; telling the agents");
    for session in ctx.registry.all() {
        if session.takes_hub_addrs() {
            let _ = session.control().push(Control::HubAddrsChanged);
        }
    }
}

/// Every hub of the store, for the API.
pub(crate) async fn list(store: &Store) -> Result<Vec<HubRecord>, StoreError> {
    store.read(hubs::list).await
}

/// The id of the hub running on data directory `dir`: generated on its first start (16 random
/// hex digits) and kept there.
pub fn instance(dir: &Path) -> std::io::Result<String> {
    let path = dir.join(INSTANCE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id = format!("{:016x}", rand::random::<u64>());
    std::fs::write(&path, format!("{id}\n"))?;
    Ok(id)
}

/// This hub's name: `configured`, or the one generated on its first start and kept in the data
/// directory (`hub-` and 8 random hex digits), so a restart is the same hub to the others.
pub fn name(dir: &Path, configured: Option<&str>) -> std::io::Result<String> {
    if let Some(name) = configured {
        return Ok(name.to_owned());
    }
    let path = dir.join(NAME_FILE);
    match std::fs::read_to_string(&path) {
        Ok(name) if !name.trim().is_empty() => return Ok(name.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let name = format!("hub-{:08x}", rand::random::<u32>());
    std::fs::write(&path, format!("{name}\n"))?;
    Ok(name)
}
