//! The hubs that share this store (issue #18): each registers under its name when it starts,
//! writes a heartbeat while it runs and its stop when it stops cleanly. What the other hubs read
//! of it: which hubs are alive (their addresses go into every `Welcome`, so an agent whose hub
//! dies dials another), and which devices a dead hub held (released, so they show offline until
//! they check in elsewhere). `outpost-hub hubs` lists them with the devices each holds.
//!
//! A single hub on SQLite registers too: one row, and the same code path as a fleet of hubs.

use outpost_protocol::EndpointId;

use super::db::{params, Db, OptionalExtension};
use super::StoreError;

/// A hub's row id in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HubId(pub i64);

/// A hub as it registers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubRegistration<'a> {
    /// Its name: stable across restarts (`serve --hub-name`, or one generated on first start).
    pub name: &'a str,
    /// The addresses agents dial (`host:port`).
    pub agent_addrs: &'a [String],
    /// Its admin API, as a URL.
    pub api_url: &'a str,
    /// The id of the data directory it runs on, random and kept there: a restart has the same.
    pub instance: &'a str,
}

/// A hub as the store records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubRecord {
    /// Row id.
    pub id: HubId,
    /// Its name.
    pub name: String,
    /// The addresses agents dial.
    pub agent_addrs: Vec<String>,
    /// Its admin API.
    pub api_url: String,
    /// When it last started (Unix seconds).
    pub started_at: i64,
    /// Its last heartbeat (Unix seconds).
    pub heartbeat_at: i64,
    /// When it stopped cleanly, if it is not running.
    pub stopped_at: Option<i64>,
    /// Devices whose live session it holds.
    pub devices: u64,
}

/// A hub's health as the others see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HubHealth {
    /// Its heartbeat is recent.
    Alive,
    /// No heartbeat for longer than the bound: crashed, hung or cut off.
    Silent,
    /// It stopped cleanly.
    Stopped,
}

impl HubHealth {
    /// The lower-case name the API and the CLI show.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Silent => "silent",
            Self::Stopped => "stopped",
        }
    }
}

impl HubRecord {
    /// Its health at `now` (Unix seconds), silent after `silent_after` seconds without a heartbeat.
    pub fn health(&self, now: i64, silent_after: i64) -> HubHealth {
        match self.stopped_at {
            Some(_) => HubHealth::Stopped,
            None if now - self.heartbeat_at > silent_after => HubHealth::Silent,
            None => HubHealth::Alive,
        }
    }
}

/// Register a starting hub (a restart keeps its row and id), alive as of `now`.
pub fn register(conn: &Db, hub: &HubRegistration<'_>, now: i64) -> Result<HubId, StoreError> {
    let addrs = serde_json::to_string(hub.agent_addrs)
        .map_err(|e| StoreError::Corrupt(format!("hub addresses: {e}")))?;
    let id = conn.query_row(
        "INSERT INTO hubs (name, agent_addrs, api_url, started_at, heartbeat_at, instance)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5)
         ON CONFLICT(name) DO UPDATE SET agent_addrs = excluded.agent_addrs,
             api_url = excluded.api_url, started_at = excluded.started_at,
             heartbeat_at = excluded.heartbeat_at, stopped_at = NULL,
             instance = excluded.instance
         RETURNING id",
        params![hub.name, addrs, hub.api_url, now, hub.instance],
        |row| row.get(0),
    )?;
    Ok(HubId(id))
}

/// Whether a hub on another data directory runs under `hub.name`: its row has not stopped, its
/// heartbeat is less than `silent_after` old and its instance differs. How many seconds ago it
/// beat. (A restart on the same directory, even right after a crash, is not refused.)
pub fn in_use_elsewhere(
    conn: &Db,
    hub: &HubRegistration<'_>,
    now: i64,
    silent_after: i64,
) -> Result<Option<i64>, StoreError> {
    let row = conn
        .query_row(
            "SELECT heartbeat_at, instance FROM hubs WHERE name = ?1 AND stopped_at IS NULL",
            [hub.name],
            |r| Ok((r.get::<i64>(0)?, r.get::<Option<String>>(1)?)),
        )
        .optional()?;
    Ok(row.and_then(|(heartbeat_at, instance)| {
        let other = instance.is_some_and(|i| i != hub.instance);
        (other && now - heartbeat_at < silent_after).then_some(now - heartbeat_at)
    }))
}

/// A running hub's heartbeat at `now`.
pub fn heartbeat(conn: &Db, hub: HubId, now: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE hubs SET heartbeat_at = ?2 WHERE id = ?1",
        params![hub.0, now],
    )?;
    Ok(())
}

/// A hub stopped cleanly at `now` (its devices were written disconnected by its last flush).
pub fn stopped(conn: &Db, hub: HubId, now: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE hubs SET stopped_at = ?2 WHERE id = ?1",
        params![hub.0, now],
    )?;
    Ok(())
}

/// Every hub, by name, with the devices each holds.
pub fn list(conn: &Db) -> Result<Vec<HubRecord>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT h.id, h.name, h.agent_addrs, h.api_url, h.started_at, h.heartbeat_at,
                h.stopped_at,
                (SELECT COUNT(*) FROM endpoints e WHERE e.held_by = h.id AND e.connected = 1)
         FROM hubs h ORDER BY h.name",
    )?;
    let rows = statement.query_map([], |r| {
        Ok((
            r.get::<i64>(0)?,
            r.get::<String>(1)?,
            r.get::<String>(2)?,
            r.get::<String>(3)?,
            r.get::<i64>(4)?,
            r.get::<i64>(5)?,
            r.get::<Option<i64>>(6)?,
            r.get::<i64>(7)?,
        ))
    })?;
    let mut hubs = Vec::new();
    for row in rows {
        let (id, name, addrs, api_url, started_at, heartbeat_at, stopped_at, devices) = row?;
        let agent_addrs = serde_json::from_str(&addrs)
            .map_err(|e| StoreError::Corrupt(format!("hub {name}'s addresses: {e}")))?;
        hubs.push(HubRecord {
            id: HubId(id),
            name,
            agent_addrs,
            api_url,
            started_at,
            heartbeat_at,
            stopped_at,
            devices: devices.max(0) as u64,
        });
    }
    Ok(hubs)
}

/// The hub holding `endpoint`'s session, if one does.
pub fn holder(conn: &Db, endpoint: EndpointId) -> Result<Option<HubId>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT held_by FROM endpoints WHERE id = ?1 AND connected = 1",
            params![endpoint.0 as i64],
            |r| r.get::<Option<i64>>(0),
        )
        .optional()?
        .flatten()
        .map(HubId))
}

/// The hub named `name`, if registered.
pub fn find(conn: &Db, name: &str) -> Result<Option<HubId>, StoreError> {
    Ok(conn
        .query_row("SELECT id FROM hubs WHERE name = ?1", [name], |r| r.get(0))
        .optional()?
        .map(HubId))
}

/// Release the devices `hub` holds: after its last flush on a clean stop (a stopping hub's
/// sessions are all written disconnected, but a flush that failed must not leave them live).
pub fn release(conn: &Db, hub: HubId) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE endpoints SET connected = 0, held_by = NULL WHERE connected = 1 AND held_by = ?1",
        [hub.0],
    )?)
}

/// Release devices marked connected by no hub: rows from before hubs were recorded (a crash of a
/// hub of an older version left them set). Run at start, before any session exists.
pub fn release_unheld(conn: &Db) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE endpoints SET connected = 0 WHERE connected = 1 AND held_by IS NULL",
        [],
    )?)
}

/// A hub registered for a store test that writes liveness.
#[cfg(test)]
pub(super) fn test_hub(conn: &Db) -> HubId {
    let registration = HubRegistration {
        name: "test-hub",
        agent_addrs: &[],
        api_url: "https://127.0.0.1:1",
        instance: "test",
    };
    register(conn, &registration, 1).expect("the test hub registers")
}
