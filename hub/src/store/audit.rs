//! The audit trail in the store: rows are only ever inserted (a batch per transaction, from
//! [`crate::audit`]'s writer) and deleted past the retention; pages are read newest first by an
//! index per filter (time, credential, device).

use outpost_api::AuditRecord;

use super::db::{params, params_from_iter, Db, Value};
use super::StoreError;

/// One record to insert (its id is the store's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRecord {
    /// Unix milliseconds.
    pub at_ms: i64,
    /// The credential's name.
    pub who: String,
    /// The device, when the call was about one.
    pub endpoint: Option<u64>,
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The answer's status.
    pub status: u16,
    /// Bytes from the client.
    pub bytes_in: u64,
    /// Bytes to the client.
    pub bytes_out: u64,
    /// How long it took.
    pub duration_ms: u64,
    /// Whether it became a hijacked session.
    pub hijacked: bool,
}

/// Insert `records` in one transaction.
pub fn insert(conn: &mut Db, records: &[NewRecord]) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO audit (at_ms, who, endpoint_id, method, path, status, bytes_in,
             bytes_out, duration_ms, hijacked) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for r in records {
            insert.execute(params![
                r.at_ms,
                r.who,
                r.endpoint.map(|id| id as i64),
                r.method,
                r.path,
                r.status,
                r.bytes_in as i64,
                r.bytes_out as i64,
                r.duration_ms as i64,
                r.hijacked
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// What to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this credential's calls.
    pub who: Option<String>,
    /// Only calls about this device.
    pub endpoint: Option<u64>,
    /// From this time (Unix milliseconds).
    pub since_ms: Option<i64>,
    /// Before this time (Unix milliseconds).
    pub until_ms: Option<i64>,
}

impl Filter {
    fn clause(&self) -> (String, Vec<Value>) {
        let mut parts = Vec::new();
        let mut args = Vec::new();
        if let Some(who) = &self.who {
            parts.push("who = ?");
            args.push(Value::Text(who.clone()));
        }
        if let Some(endpoint) = self.endpoint {
            parts.push("endpoint_id = ?");
            args.push(Value::Integer(endpoint as i64));
        }
        if let Some(since) = self.since_ms {
            parts.push("at_ms >= ?");
            args.push(Value::Integer(since));
        }
        if let Some(until) = self.until_ms {
            parts.push("at_ms < ?");
            args.push(Value::Integer(until));
        }
        if parts.is_empty() {
            return (String::new(), args);
        }
        (format!("WHERE {}", parts.join(" AND ")), args)
    }
}

/// One page of records matching `filter`, newest first, and how many match.
pub fn list(
    conn: &Db,
    filter: &Filter,
    offset: u64,
    limit: u32,
) -> Result<(Vec<AuditRecord>, u64), StoreError> {
    let (clause, mut args) = filter.clause();
    let total: u64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM audit {clause}"),
        params_from_iter(&args),
        |r| r.get(0),
    )?;
    args.extend([Value::from(limit), Value::Integer(offset as i64)]);
    let mut statement = conn.prepare(&format!(
        "SELECT id, at_ms, who, endpoint_id, method, path, status, bytes_in, bytes_out,
         duration_ms, hijacked FROM audit {clause} ORDER BY at_ms DESC, id DESC LIMIT ? OFFSET ?"
    ))?;
    let rows = statement.query_map(params_from_iter(&args), |r| {
        Ok(AuditRecord {
            id: r.get(0)?,
            at_ms: r.get(1)?,
            who: r.get(2)?,
            endpoint: r.get::<Option<i64>>(3)?.map(|id| id as u64),
            method: r.get(4)?,
            path: r.get(5)?,
            status: r.get(6)?,
            bytes_in: r.get::<i64>(7)? as u64,
            bytes_out: r.get::<i64>(8)? as u64,
            duration_ms: r.get::<i64>(9)? as u64,
            hijacked: r.get(10)?,
        })
    })?;
    Ok((rows.collect::<Result<_, _>>()?, total))
}

/// Delete records older than `before_ms`; how many went.
pub fn prune(conn: &Db, before_ms: i64) -> Result<usize, StoreError> {
    Ok(conn.execute("DELETE FROM audit WHERE at_ms < ?1", [before_ms])?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_backends::{both_backends, Backend};

    fn record(at_ms: i64, who: &str, endpoint: Option<u64>) -> NewRecord {
        NewRecord {
            at_ms,
            who: who.into(),
            endpoint,
            method: "POST".into(),
            path: "/api/endpoints/1/docker/v1.41/containers/x/kill?signal=SIGWINCH".into(),
            status: 204,
            bytes_in: 0,
            bytes_out: 0,
            duration_ms: 3,
            hijacked: false,
        }
    }

    fn records_are_kept_as_written_and_found_by_who_device_and_time(backend: Backend) {
        let (_dir, store) = backend.open();
        let mut conn = store.lock();
        let written = [
            record(1_000, "ci", Some(1)),
            record(2_000, "ops", Some(2)),
            record(3_000, "ci", None),
            record(4_000, "ci", Some(2)),
        ];
        insert(&mut conn, &written).expect("insert");
        let page = |filter: Filter| {
            let (rows, total) = list(&conn, &filter, 0, 10).expect("list");
            (rows.iter().map(|r| r.at_ms).collect::<Vec<_>>(), total)
        };
        assert_eq!(
            page(Filter::default()),
            (vec![4_000, 3_000, 2_000, 1_000], 4)
        );
        let ci = Filter {
            who: Some("ci".into()),
            ..Filter::default()
        };
        assert_eq!(page(ci), (vec![4_000, 3_000, 1_000], 3));
        let device = Filter {
            endpoint: Some(2),
            since_ms: Some(2_000),
            until_ms: Some(4_000),
            ..Filter::default()
        };
        assert_eq!(page(device), (vec![2_000], 1));
        let (rows, _) = list(&conn, &Filter::default(), 3, 1).expect("last page");
        assert_eq!(rows[0].path, written[0].path);
        assert_eq!((rows[0].status, rows[0].endpoint), (204, Some(1)));

        assert_eq!(prune(&conn, 3_000).expect("prune"), 2);
        assert_eq!(page(Filter::default()), (vec![4_000, 3_000], 2));
    }

    both_backends!(records_are_kept_as_written_and_found_by_who_device_and_time);
}
