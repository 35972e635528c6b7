//! The PostgreSQL backend: a `tokio-postgres` client whose futures the store's synchronous calls
//! await with a plain executor.
//!
//! Why this way: the store's calls are synchronous and run on tokio's blocking pool (and, at start
//! and in tests, on any thread). The synchronous `postgres` crate panics on a thread inside a
//! runtime (it enters a runtime of its own, even to drop a client), so it cannot be held by a
//! store an async task may drop. `tokio-postgres` splits a client (a handle that sends requests
//! over a channel, pollable by any executor) from its connection (the socket, which needs tokio);
//! the connections run on one small runtime of their own ([`runtime`]), never on the hub's, so a
//! call that blocks a hub thread while it waits can never starve the task that answers it.
//!
//! Statements are written once for both backends (see [`super`]): `?N` placeholders become `$N`
//! here, and values are converted to whatever type the server inferred for each placeholder.

use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error;
use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::runtime::Runtime;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

use super::param::{ParamRef, ToParam};
use super::{DbError, DbResult};

/// How long a connection attempt may take unless the URL says (`connect_timeout=`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Prepared statements kept per connection; the cache starts over when it is full (the store has
/// fewer distinct statements than this, so that happens only with run-time built ones).
const CACHED_STATEMENTS: usize = 256;

/// One connection to a PostgreSQL server.
pub struct PgConn {
    client: Client,
    statements: RefCell<HashMap<String, Statement>>,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn").finish_non_exhaustive()
    }
}

/// The runtime that drives every PostgreSQL connection's socket: one thread, started with the
/// first connection.
fn runtime() -> DbResult<&'static Runtime> {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    static START: Mutex<()> = Mutex::new(());
    let _one_at_a_time = START.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("outpost-postgres")
        .enable_all()
        .build()
        .map_err(DbError::Runtime)?;
    Ok(RUNTIME.get_or_init(|| runtime))
}

/// Wait for `future` on this thread, whatever runtime (if any) the thread belongs to.
fn wait<F: Future>(future: F) -> F::Output {
    futures_executor::block_on(future)
}

impl PgConn {
    /// Connect to the server at `url` (`postgres://user@host:port/database`).
    pub fn connect(url: &str) -> DbResult<Self> {
        let mut config: Config = url.parse()?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // The answer comes back over a plain channel, not the task's join handle: a join handle
        // polled from a hub task's thread could be held back by that task's tokio budget.
        let (answer, connected) = std::sync::mpsc::sync_channel(1);
        runtime()?.spawn(async move {
            let client = config.connect(NoTls).await.map(|(client, connection)| {
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::warn!("PostgreSQL connection ended: {e}");
                    }
                });
                client
            });
            // The caller waits on the other end until this is sent.
            let _ = answer.send(client);
        });
        let client = connected
            .recv()
            .map_err(|_| DbError::Runtime(std::io::Error::other("the connecting task ended")))??;
        Ok(Self {
            client,
            statements: RefCell::new(HashMap::new()),
        })
    }

    /// Run `;`-separated statements without parameters.
    pub(super) fn execute_batch(&self, sql: &str) -> DbResult<()> {
        Ok(wait(self.client.batch_execute(sql))?)
    }

    /// `sql` prepared, with `$N` placeholders.
    pub(super) fn prepare(&self, sql: &str) -> DbResult<Statement> {
        Ok(wait(self.client.prepare(&placeholders(sql)))?)
    }

    /// `sql` prepared once per connection.
    pub(super) fn prepare_cached(&self, sql: &str) -> DbResult<Statement> {
        if let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.prepare(sql)?;
        let mut cache = self.statements.borrow_mut();
        if cache.len() >= CACHED_STATEMENTS {
            cache.clear();
        }
        cache.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Run `statement`; how many rows it changed.
    pub(super) fn execute(&self, statement: &Statement, params: &[&dyn ToParam]) -> DbResult<u64> {
        let params = bound(params)?;
        Ok(wait(self.client.execute(statement, &refs(&params)))?)
    }

    /// Every row `statement` returns.
    pub(super) fn query(
        &self,
        statement: &Statement,
        params: &[&dyn ToParam],
    ) -> DbResult<Vec<Row>> {
        let params = bound(params)?;
        Ok(wait(self.client.query(statement, &refs(&params)))?)
    }
}

/// `sql` with SQLite's `?N` and `?` placeholders as PostgreSQL's `$N` (a bare `?` is one more than
/// the largest number so far, as in SQLite). Quoted text is left alone.
pub(super) fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let (mut quoted, mut largest) = (false, 0u32);
    while let Some(c) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c != '?' || quoted {
            out.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.next_if(char::is_ascii_digit) {
            digits.push(d);
        }
        let n = digits.parse().unwrap_or(largest + 1);
        largest = largest.max(n);
        out.push_str(&format!("${n}"));
    }
    out
}

/// A value bound to a placeholder, converted to the type the server inferred for it.
#[derive(Debug)]
struct PgParam<'a>(ParamRef<'a>);

fn bound<'a>(params: &'a [&'a dyn ToParam]) -> DbResult<Vec<PgParam<'a>>> {
    params.iter().map(|p| Ok(PgParam(p.to_param()?))).collect()
}

fn refs<'a>(params: &'a [PgParam<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

type BoxError = Box<dyn Error + Sync + Send>;

impl ToSql for PgParam<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self.0 {
            ParamRef::Null => Ok(IsNull::Yes),
            ParamRef::Integer(v) => integer_to_sql(v, ty, out),
            ParamRef::Real(v) => v.to_sql(ty, out),
            ParamRef::Text(v) => text_to_sql(v, ty, out),
            ParamRef::Blob(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn integer_to_sql(v: i64, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
    match *ty {
        Type::INT2 => i16::try_from(v)?.to_sql(ty, out),
        Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
        Type::BOOL => (v != 0).to_sql(ty, out),
        Type::FLOAT8 => (v as f64).to_sql(ty, out),
        Type::TEXT | Type::VARCHAR => v.to_string().to_sql(ty, out),
        _ => v.to_sql(ty, out),
    }
}

fn text_to_sql(v: &str, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
    match *ty {
        Type::JSON => out.put_slice(v.as_bytes()),
        Type::JSONB => {
            out.put_u8(1);
            out.put_slice(v.as_bytes());
        }
        _ => return v.to_sql(ty, out),
    }
    Ok(IsNull::No)
}

/// Whether column `idx` of `row` is NULL.
pub(super) fn is_null(row: &Row, idx: usize) -> DbResult<bool> {
    Ok(row.try_get::<_, Option<Present>>(idx)?.is_none())
}

/// Any non-NULL value, unread.
struct Present;

impl<'a> FromSql<'a> for Present {
    fn from_sql(_: &Type, _: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Self)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Column `idx` as an integer: any integer type, or a boolean as 0 or 1 (SQLite's comparisons
/// are integers, PostgreSQL's booleans).
pub(super) fn integer(row: &Row, idx: usize) -> DbResult<i64> {
    Ok(match *row.columns()[idx].type_() {
        Type::INT2 => row.try_get::<_, i16>(idx)?.into(),
        Type::INT4 => row.try_get::<_, i32>(idx)?.into(),
        Type::BOOL => row.try_get::<_, bool>(idx)?.into(),
        _ => row.try_get::<_, i64>(idx)?,
    })
}

/// Column `idx` as text: any text type, or JSON's text.
pub(super) fn text(row: &Row, idx: usize) -> DbResult<String> {
    Ok(row.try_get::<_, Text>(idx)?.0)
}

/// Text from a text or JSON column.
struct Text(String);

impl<'a> FromSql<'a> for Text {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let raw = match *ty {
            Type::JSONB => raw.get(1..).unwrap_or_default(),
            _ => raw,
        };
        Ok(Self(std::str::from_utf8(raw)?.to_owned()))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB) || <&str as FromSql>::accepts(ty)
    }
}

/// Column `idx` as a double: a double or any integer.
pub(super) fn real(row: &Row, idx: usize) -> DbResult<f64> {
    match *row.columns()[idx].type_() {
        Type::FLOAT8 => Ok(row.try_get(idx)?),
        Type::FLOAT4 => Ok(row.try_get::<_, f32>(idx)?.into()),
        _ => Ok(integer(row, idx)? as f64),
    }
}

/// Column `idx` as bytes.
pub(super) fn blob(row: &Row, idx: usize) -> DbResult<Vec<u8>> {
    Ok(row.try_get(idx)?)
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn numbered_and_bare_placeholders_become_dollars_outside_quotes() {
        assert_eq!(
            placeholders("SELECT ?2, ?1, ?, 'a?b' FROM t WHERE x = ?10 AND y = ?"),
            "SELECT $2, $1, $3, 'a?b' FROM t WHERE x = $10 AND y = $11"
        );
    }
}
