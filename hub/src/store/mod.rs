//! The hub's durable state: SQLite by default (WAL, foreign keys, migrations on open), or a
//! PostgreSQL database that several hubs share (`serve --store postgres://…`). Every store
//! function takes a [`db::Db`], one connection API over both (see [`db`] for why and how), and
//! both run the same migrations and the same tests (`test_backends.rs`).
//!
//! What lives here: endpoints (devices and fleet templates) with their groups and tags, the hash of
//! each join token's secret, agent bindings, issued certificates and their revocation, and batched
//! liveness (whether a live session exists, the last address, a last check-in refreshed every few
//! minutes), and stacks with their immutable versions. What does not: per-check-in state, which lives in the session registry and reaches
//! the store only when it changes what an admin can filter on.
//!
//! All calls are synchronous and short; async callers go through [`Store::call`], which runs them on
//! the blocking pool so a slow disk never stalls the QUIC driver. Reads that must not wait behind a
//! write (the endpoint list, while a liveness flush of thousands of rows commits) go through
//! [`Store::read`], a second, read-only connection: in WAL mode (and always on PostgreSQL) a reader
//! sees the last commit and never waits for the writer.

pub mod access;
pub mod admin_creds;
pub mod audit;
pub mod census;
pub mod certs;
pub mod db;
pub mod deployments;
pub mod endpoints;
pub mod enroll;
pub mod hubs;
pub mod job_hubs;
pub mod jobs;
pub mod labels;
pub mod list;
pub mod liveness;
mod migrations;
pub mod ordered_images;
pub mod quiet;
pub mod rollouts;
pub mod settings;
pub mod snapshots;
pub mod stacks;
pub mod ticket_keys;
pub mod traffic;
pub mod webhooks;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags};
use thiserror::Error;

use db::{Db, DbError, PgConn};

pub use certs::CertStatus;
pub use endpoints::{EndpointKind, EndpointRecord, NewEndpoint};
pub use enroll::{EnrollInput, EnrollOutcome};
pub use labels::{Label, LabelError, TagAdded};
pub use list::{ListQuery, Sort, SortKey, StatusFilter};
pub use liveness::LivenessUpdate;

/// A store failure.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Db(#[from] DbError),
    /// The database file was written by a newer hub.
    #[error("the database schema is version {found}, newer than this hub understands ({known}); upgrade the hub")]
    SchemaTooNew {
        /// Version found on disk.
        found: i64,
        /// Newest version this build knows.
        known: i64,
    },
    /// A stored value does not decode (a database edited by hand, or a bug).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A blocking task was cancelled (the hub is shutting down).
    #[error("store task failed: {0}")]
    Join(String),
}

/// Where the store lives.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// An SQLite file (the default: `hub.db` in the data directory).
    Sqlite(PathBuf),
    /// A PostgreSQL database, by URL (`postgres://user:password@host:port/database`).
    Postgres(String),
}

impl StoreLocation {
    /// A `postgres://` or `postgresql://` URL, else an SQLite file's path.
    pub fn parse(text: &str) -> Self {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Self::Postgres(text.to_owned())
        } else {
            Self::Sqlite(PathBuf::from(text))
        }
    }
}

/// The location with a URL's password masked, fit for logs.
impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "{}", path.display()),
            Self::Postgres(url) => f.write_str(&masked(url)),
        }
    }
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `url` with the password of its `user:password@` part, if any, as `****`.
fn masked(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:****@{host}"),
        None => url.to_owned(),
    }
}

/// The PostgreSQL reader's session. `random_page_cost` 1.1 (the default, 4, is a disk's seek):
/// the store's tables and indexes are a few tens of MB and stay in the server's cache, so a page
/// read out of order costs what one in order does. At 4 the planner answered the list's "online,
/// by name, page 500" at 100,000 endpoints by sorting all 60,000 online rows read through the
/// `held_by` index (110 ms, the sort spilling to disk) rather than walking the name index
/// (14 ms; BENCHMARKS.md, issue #18).
const READER_SETTINGS: &str =
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY; SET random_page_cost = 1.1";

/// Handle to the hub's database (SQLite or PostgreSQL); cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    conn: Arc<Mutex<Db>>,
    reader: Arc<Mutex<Db>>,
}

impl Store {
    /// Open (creating if needed) the database at `path` and bring its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut conn = Db::Sqlite(open_sqlite(path).map_err(DbError::from)?);
        migrations::apply(&mut conn)?;
        let reader = open_sqlite_reader(path).map_err(DbError::from)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            reader: Arc::new(Mutex::new(Db::Sqlite(reader))),
        })
    }

    /// Open the store at `location` and bring its schema up to date.
    pub fn open_location(location: &StoreLocation) -> Result<Self, StoreError> {
        match location {
            StoreLocation::Sqlite(path) => Self::open(path),
            StoreLocation::Postgres(url) => Self::connect(url),
        }
    }

    /// Connect to the PostgreSQL database at `url` and bring its schema up to date. The reader is
    /// a second connection whose transactions are read-only (it sees the last commit and never
    /// waits for the writer), planned with [`READER_SETTINGS`].
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let mut conn = Db::Postgres(PgConn::connect(url)?);
        migrations::apply(&mut conn)?;
        let reader = Db::Postgres(PgConn::connect(url)?);
        reader.execute_batch(READER_SETTINGS)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    /// Run `f` with the connection on tokio's blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&mut store.lock()))
            .await
            .map_err(|e| StoreError::Join(e.to_string()))?
    }

    /// Run the read-only `f` with the reader connection on tokio's blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Db) -> Result<T, StoreError> + Send + 'static,
    {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || f(&lock(&reader)))
            .await
            .map_err(|e| StoreError::Join(e.to_string()))?
    }

    /// Write the liveness updates `take` hands over, calling it while holding the writer: batches
    /// reach the disk in the order they were taken, so a departure never lands after the
    /// reconnection that followed it, whichever of two flushes ran first. `hub` writes them.
    /// Returns how many, and the endpoints another hub holds (see [`liveness::write_liveness`]).
    pub async fn write_liveness<F>(
        &self,
        hub: hubs::HubId,
        take: F,
    ) -> Result<(usize, Vec<outpost_protocol::EndpointId>), StoreError>
    where
        F: FnOnce() -> Vec<LivenessUpdate> + Send + 'static,
    {
        self.call(move |conn| {
            let updates = take();
            let held_elsewhere = liveness::write_liveness(conn, hub, &updates)?;
            Ok((updates.len(), held_elsewhere))
        })
        .await
    }

    /// Lock the connection for synchronous use (tests, start-up).
    pub fn lock(&self) -> MutexGuard<'_, Db> {
        lock(&self.conn)
    }
}

fn lock(conn: &Mutex<Db>) -> MutexGuard<'_, Db> {
    // A panic while holding the lock leaves the database consistent (transactions roll back), so
    // a poisoned lock is safe to reuse.
    conn.lock().unwrap_or_else(|p| p.into_inner())
}

/// The writer: WAL (readers never wait for it), foreign keys on, a wait for a busy file.
fn open_sqlite(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// The read-only connection beside the writer.
fn open_sqlite_reader(path: &Path) -> rusqlite::Result<Connection> {
    let reader = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    reader.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(reader)
}

/// Seconds since the Unix epoch, the store's time unit.
pub fn unix_now() -> i64 {
    unix_seconds(std::time::SystemTime::now())
}

/// `time` in the store's unit: seconds since the Unix epoch (0 before it).
pub fn unix_seconds(time: std::time::SystemTime) -> i64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod access_tests;
#[cfg(test)]
mod hubs_tests;
#[cfg(test)]
mod job_fixtures;
#[cfg(test)]
mod list_plan_tests;
#[cfg(test)]
mod list_rows_tests;
#[cfg(test)]
mod list_tests;
#[cfg(test)]
mod liveness_tests;
#[cfg(test)]
mod takeover_tests;
#[cfg(test)]
mod test_backends;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod traffic_tests;
