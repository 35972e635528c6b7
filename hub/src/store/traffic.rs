//! Bytes each device cost per budget period and class (see `crate::traffic`), and the byte
//! budgets and transfer windows set on the fleet, a group or one device.
//!
//! A device's budget (and window) is the most specific one set: its own, else its group's, else
//! the fleet's.
//! A group's or the fleet's budget is an allowance per device, not a pool the devices share: a
//! metered link is one SIM per device, and one device spending its allowance must not hold back
//! the others.

use outpost_protocol::window::TransferWindow;
use outpost_protocol::EndpointId;

use super::db::{params, Db, DbResult, OptionalExtension, Row};
use super::StoreError;

/// Bytes one device spent on one class in one period, added by a flush.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrafficRow {
    /// The device.
    pub endpoint: EndpointId,
    /// The class's name (`crate::traffic::Class::as_str`).
    pub class: &'static str,
    /// Device → hub.
    pub up: u64,
    /// Hub → device.
    pub down: u64,
}

/// What a budget applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BudgetScope {
    /// Every device without a more specific budget.
    Fleet,
    /// Each device of this group without its own budget.
    Group(String),
    /// This device.
    Endpoint(EndpointId),
}

impl std::fmt::Display for BudgetScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fleet => f.write_str("the fleet"),
            Self::Group(name) => write!(f, "group {name}"),
            Self::Endpoint(id) => write!(f, "endpoint {id}"),
        }
    }
}

impl BudgetScope {
    fn columns(&self) -> (&'static str, String) {
        match self {
            Self::Fleet => ("fleet", String::new()),
            Self::Group(name) => ("group", name.clone()),
            Self::Endpoint(id) => ("endpoint", id.0.to_string()),
        }
    }

    fn from_columns(scope: &str, name: String) -> Result<Self, StoreError> {
        Ok(match scope {
            "fleet" => Self::Fleet,
            "group" => Self::Group(name),
            "endpoint" => {
                Self::Endpoint(EndpointId(name.parse().map_err(|_| {
                    StoreError::Corrupt(format!("budget endpoint {name:?}"))
                })?))
            }
            other => return Err(StoreError::Corrupt(format!("budget scope {other:?}"))),
        })
    }
}

/// Add `rows` to period `period_start`, in one transaction.
pub fn add(conn: &mut Db, period_start: i64, rows: &[TrafficRow]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction()?;
    {
        // A device removed since its bytes were counted has no row to add to.
        let mut stmt = tx.prepare_cached(
            "INSERT INTO traffic (endpoint_id, period_start, class, up, down)
             SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM endpoints WHERE id = ?1)
             ON CONFLICT (endpoint_id, period_start, class)
             DO UPDATE SET up = traffic.up + excluded.up, down = traffic.down + excluded.down",
        )?;
        for row in rows {
            stmt.execute(params![
                row.endpoint.0 as i64,
                period_start,
                row.class,
                clamp(row.up),
                clamp(row.down)
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn clamp(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// A device's bytes in period `period_start`, by class name: `(class, up, down)`.
pub fn of_endpoint(
    conn: &Db,
    endpoint: EndpointId,
    period_start: i64,
) -> Result<Vec<(String, u64, u64)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT class, up, down FROM traffic WHERE endpoint_id = ?1 AND period_start = ?2",
    )?;
    let rows = stmt.query_map(params![endpoint.0 as i64, period_start], |r| {
        Ok((r.get(0)?, r.get::<i64>(1)? as u64, r.get::<i64>(2)? as u64))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A device's bytes in period `period_start`, every class both ways.
pub fn used(conn: &Db, endpoint: EndpointId, period_start: i64) -> Result<u64, StoreError> {
    let used: i64 = conn.query_row(
        "SELECT CAST(COALESCE(SUM(up + down), 0) AS BIGINT) FROM traffic
         WHERE endpoint_id = ?1 AND period_start = ?2",
        params![endpoint.0 as i64, period_start],
        |r| r.get(0),
    )?;
    Ok(used.max(0) as u64)
}

/// A device's bytes in each of its last `limit` periods before `before` (newest first):
/// `(period_start, bytes)`.
pub fn history(
    conn: &Db,
    endpoint: EndpointId,
    before: i64,
    limit: u32,
) -> Result<Vec<(i64, u64)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT period_start, CAST(SUM(up + down) AS BIGINT) FROM traffic
         WHERE endpoint_id = ?1 AND period_start < ?2
         GROUP BY period_start ORDER BY period_start DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![endpoint.0 as i64, before, limit], |r| {
        Ok((r.get(0)?, r.get::<i64>(1)?.max(0) as u64))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Set `scope`'s budget to `bytes` a period.
pub fn set_budget(conn: &Db, scope: &BudgetScope, bytes: u64) -> Result<(), StoreError> {
    let (kind, name) = scope.columns();
    conn.execute(
        "INSERT INTO budgets (scope, name, bytes) VALUES (?1, ?2, ?3)
         ON CONFLICT (scope, name) DO UPDATE SET bytes = excluded.bytes",
        params![kind, name, clamp(bytes)],
    )?;
    Ok(())
}

/// Remove `scope`'s budget; false if it had none.
pub fn remove_budget(conn: &Db, scope: &BudgetScope) -> Result<bool, StoreError> {
    remove_from(conn, "budgets", scope)
}

/// Every budget set, fleet first, then groups, then devices.
pub fn budgets(conn: &Db) -> Result<Vec<(BudgetScope, u64)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT scope, name, bytes FROM budgets ORDER BY
             CASE scope WHEN 'fleet' THEN 0 WHEN 'group' THEN 1 ELSE 2 END, name",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<String>(0)?, r.get::<String>(1)?, r.get::<i64>(2)?))
    })?;
    rows.map(|row| {
        let (scope, name, bytes) = row?;
        Ok((
            BudgetScope::from_columns(&scope, name)?,
            bytes.max(0) as u64,
        ))
    })
    .collect()
}

/// The budget that applies to `endpoint`, and where it was set: its own, else its group's, else
/// the fleet's.
pub fn budget_for(
    conn: &Db,
    endpoint: EndpointId,
) -> Result<Option<(BudgetScope, u64)>, StoreError> {
    let found = applying(conn, "scope, name, bytes FROM budgets", endpoint, |r| {
        Ok((r.get::<String>(0)?, r.get::<String>(1)?, r.get::<i64>(2)?))
    })?;
    found
        .map(|(scope, name, bytes)| {
            Ok((
                BudgetScope::from_columns(&scope, name)?,
                bytes.max(0) as u64,
            ))
        })
        .transpose()
}

/// Set `scope`'s transfer window.
pub fn set_window(
    conn: &Db,
    scope: &BudgetScope,
    window: TransferWindow,
) -> Result<(), StoreError> {
    let (kind, name) = scope.columns();
    conn.execute(
        "INSERT INTO transfer_windows (scope, name, start_minute, end_minute)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (scope, name) DO UPDATE
         SET start_minute = excluded.start_minute, end_minute = excluded.end_minute",
        params![kind, name, window.start, window.end],
    )?;
    Ok(())
}

/// Remove `scope`'s transfer window; false if it had none.
pub fn remove_window(conn: &Db, scope: &BudgetScope) -> Result<bool, StoreError> {
    remove_from(conn, "transfer_windows", scope)
}

/// Every transfer window set, fleet first, then groups, then devices.
pub fn windows(conn: &Db) -> Result<Vec<(BudgetScope, TransferWindow)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT scope, name, start_minute, end_minute FROM transfer_windows ORDER BY
             CASE scope WHEN 'fleet' THEN 0 WHEN 'group' THEN 1 ELSE 2 END, name",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<String>(0)?,
            r.get::<String>(1)?,
            r.get::<u16>(2)?,
            r.get::<u16>(3)?,
        ))
    })?;
    rows.map(|row| {
        let (scope, name, start, end) = row?;
        Ok((
            BudgetScope::from_columns(&scope, name)?,
            window_of(start, end)?,
        ))
    })
    .collect()
}

/// The transfer window that applies to `endpoint`: its own, else its group's, else the fleet's.
pub fn window_for(conn: &Db, endpoint: EndpointId) -> Result<Option<TransferWindow>, StoreError> {
    let columns = "start_minute, end_minute FROM transfer_windows";
    let found = applying(conn, columns, endpoint, |r| {
        Ok((r.get::<u16>(0)?, r.get::<u16>(1)?))
    })?;
    found.map(|(start, end)| window_of(start, end)).transpose()
}

/// Remove `scope`'s row from `table` (budgets or transfer windows); false if it had none.
fn remove_from(conn: &Db, table: &str, scope: &BudgetScope) -> Result<bool, StoreError> {
    let (kind, name) = scope.columns();
    let sql = format!("DELETE FROM {table} WHERE scope = ?1 AND name = ?2");
    Ok(conn.execute(&sql, params![kind, name])? > 0)
}

/// Of the rows `columns_from` (`COLUMNS FROM TABLE`, a budgets-like table) reads, the one that
/// applies to `endpoint`: its own, else its group's, else the fleet's.
fn applying<T>(
    conn: &Db,
    columns_from: &str,
    endpoint: EndpointId,
    row: impl FnOnce(&Row<'_>) -> DbResult<T>,
) -> Result<Option<T>, StoreError> {
    let sql = format!(
        "SELECT {columns_from}
         WHERE (scope = 'endpoint' AND name = ?1)
            OR (scope = 'group' AND name = (SELECT g.name FROM endpoints e
                                            JOIN groups g ON g.id = e.group_id
                                            WHERE e.id = ?2))
            OR scope = 'fleet'
         ORDER BY CASE scope WHEN 'endpoint' THEN 0 WHEN 'group' THEN 1 ELSE 2 END
         LIMIT 1"
    );
    let id = (endpoint.0.to_string(), endpoint.0 as i64);
    Ok(conn.query_row(&sql, params![id.0, id.1], row).optional()?)
}

fn window_of(start: u16, end: u16) -> Result<TransferWindow, StoreError> {
    TransferWindow { start, end }
        .check()
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}
