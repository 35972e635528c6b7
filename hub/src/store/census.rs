//! What the metrics read of the store at each scrape (`crate::metrics`): how many devices exist and
//! how many wait for approval, and which jobs and rollouts are still in memory. Every query walks
//! an index from migrations 3, 10 and 11, so a scrape at 25,000 devices costs a few milliseconds
//! (`metrics_scrape` bench), and goes through the read-only connection, never queueing behind a
//! liveness flush.

use super::db::Db;
use super::StoreError;

/// Devices (not fleet tokens), by approval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceCounts {
    /// Approved: online or offline.
    pub approved: u64,
    /// Waiting for an admin's approval.
    pub pending: u64,
}

/// One scrape's reading of the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// Devices by approval.
    pub devices: DeviceCounts,
    /// Jobs not finished (their counts are read from memory).
    pub open_jobs: Vec<i64>,
    /// Rollouts not retired (their counts are read from memory).
    pub active_rollouts: Vec<i64>,
}

/// Read the census.
pub fn take(conn: &Db) -> Result<Census, StoreError> {
    Ok(Census {
        devices: device_counts(conn)?,
        open_jobs: ids(conn, "SELECT id FROM jobs WHERE finished_at IS NULL")?,
        active_rollouts: ids(conn, "SELECT id FROM rollouts WHERE active = 1")?,
    })
}

fn device_counts(conn: &Db) -> Result<DeviceCounts, StoreError> {
    let count = |sql: &str| -> Result<u64, StoreError> {
        Ok(conn.prepare_cached(sql)?.query_row([], |r| r.get(0))?)
    };
    let all = count("SELECT COUNT(*) FROM endpoints WHERE kind = 'device'")?;
    let pending = count("SELECT COUNT(*) FROM endpoints WHERE kind = 'device' AND approved = 0")?;
    Ok(DeviceCounts {
        approved: all.saturating_sub(pending),
        pending,
    })
}

fn ids(conn: &Db, sql: &str) -> Result<Vec<i64>, StoreError> {
    let mut statement = conn.prepare_cached(sql)?;
    let rows = statement.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
