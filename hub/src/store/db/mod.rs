//! The store's connection to its database, one API over the backends.
//!
//! Why this shape: the store is ~6,000 lines of short synchronous SQL calls run on tokio's blocking
//! pool ([`super::Store::call`]). Rewriting them for an async client would touch every caller for
//! no gain in a design that already keeps SQL off the async threads, so the backends meet behind a
//! synchronous [`Db`] whose surface is the subset of rusqlite's the store uses, under the same
//! names (`execute`, `query_row`, `prepare`/`query_map`, `transaction`, `params!`,
//! `OptionalExtension`). Store code therefore reads as it did; what differs between backends is
//! here and in the migrations, not in each query.
//!
//! The portable subset the store's SQL keeps to: `?N` placeholders, `RETURNING` instead of the
//! last insert's row id, `ON CONFLICT … DO NOTHING/UPDATE` for upserts, integers as 64-bit,
//! booleans stored as integers, blobs as bytes. Values cross the boundary as [`ParamRef`] and
//! [`FromColumn`], the few types the store stores.
//!
//! Transactions are `BEGIN`/`COMMIT` on the connection itself, held by a [`Transaction`] guard that
//! rolls back when dropped uncommitted, as rusqlite's does.

mod param;
mod postgres;
mod row;

use std::ops::Deref;

use thiserror::Error;

pub(crate) use param::params;
pub use param::{params_from_iter, ParamRef, Params, ToParam, Value};
pub use postgres::PgConn;
pub use row::{FromColumn, Row};

/// A database call that failed.
#[derive(Debug, Error)]
pub enum DbError {
    /// SQLite reported an error.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL (or the connection to it) reported an error.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The thread that drives PostgreSQL connections could not start or failed.
    #[error("the PostgreSQL client's runtime failed: {0}")]
    Runtime(std::io::Error),
    /// A stored value does not fit the type the store reads it as.
    #[error("column {index}: {message}")]
    Column {
        /// The column, from 0.
        index: usize,
        /// What does not fit.
        message: String,
    },
    /// A query that must return a row returned none.
    #[error("the query returned no row")]
    NoRow,
    /// An integer to store is beyond the 64-bit signed range both backends hold.
    #[error("the integer {0} is too large to store")]
    OutOfRange(u64),
}

/// The result of a database call.
pub type DbResult<T> = Result<T, DbError>;

/// Turns "no row" into `None`, for lookups that may find nothing.
pub trait OptionalExtension<T> {
    /// `Ok(None)` for [`DbError::NoRow`], the row otherwise.
    fn optional(self) -> DbResult<Option<T>>;
}

impl<T> OptionalExtension<T> for DbResult<T> {
    fn optional(self) -> DbResult<Option<T>> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(DbError::NoRow) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// One open connection to the store's database.
#[derive(Debug)]
pub enum Db {
    /// An SQLite file (the embedded default).
    Sqlite(rusqlite::Connection),
    /// A PostgreSQL server (several hubs share one).
    Postgres(PgConn),
}

/// Which SQL a backend speaks, for the few statements that must differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite's.
    Sqlite,
    /// PostgreSQL's.
    Postgres,
}

/// When a transaction takes its write lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionBehavior {
    /// At its first write.
    Deferred,
    /// At once, so a read-then-write sequence never fails to upgrade (SQLite `BEGIN IMMEDIATE`).
    Immediate,
}

impl Dialect {
    /// A FROM item named `alias` whose `value` column holds the elements of the JSON array
    /// `json` (an expression: a column or a placeholder), or of its member `key`, as text.
    pub fn json_values(self, json: &str, key: Option<&str>, alias: &str) -> String {
        match (self, key) {
            (Self::Sqlite, None) => format!("json_each({json}) {alias}"),
            (Self::Sqlite, Some(key)) => format!("json_each({json}, '$.{key}') {alias}"),
            (Self::Postgres, None) => {
                format!("json_array_elements_text(CAST({json} AS json)) AS {alias}(value)")
            }
            (Self::Postgres, Some(key)) => format!(
                "json_array_elements_text(CAST({json} AS json) -> '{key}') AS {alias}(value)"
            ),
        }
    }
}

impl Db {
    /// Which SQL this connection speaks.
    pub fn dialect(&self) -> Dialect {
        match self {
            Self::Sqlite(_) => Dialect::Sqlite,
            Self::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Run one statement; returns how many rows it changed.
    pub fn execute(&self, sql: &str, params: impl Params) -> DbResult<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    /// Run several `;`-separated statements that take no parameters.
    pub fn execute_batch(&self, sql: &str) -> DbResult<()> {
        match self {
            Self::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Self::Postgres(conn) => conn.execute_batch(sql),
        }
    }

    /// The first row of a query, through `f`; [`DbError::NoRow`] when there is none.
    pub fn query_row<T, F>(&self, sql: &str, params: impl Params, f: F) -> DbResult<T>
    where
        F: FnOnce(&Row<'_>) -> DbResult<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    /// A statement to run once.
    pub fn prepare(&self, sql: &str) -> DbResult<Statement<'_>> {
        let inner = match self {
            Self::Sqlite(conn) => StatementInner::Sqlite(conn.prepare(sql)?),
            Self::Postgres(conn) => StatementInner::Postgres(conn, conn.prepare(sql)?),
        };
        Ok(Statement { inner })
    }

    /// A statement to run often: kept prepared on the connection.
    pub fn prepare_cached(&self, sql: &str) -> DbResult<Statement<'_>> {
        let inner = match self {
            Self::Sqlite(conn) => StatementInner::SqliteCached(conn.prepare_cached(sql)?),
            Self::Postgres(conn) => StatementInner::Postgres(conn, conn.prepare_cached(sql)?),
        };
        Ok(Statement { inner })
    }

    /// Begin a transaction that takes its write lock at its first write.
    pub fn transaction(&mut self) -> DbResult<Transaction<'_>> {
        self.transaction_with_behavior(TransactionBehavior::Deferred)
    }

    /// Begin a transaction.
    pub fn transaction_with_behavior(
        &mut self,
        behavior: TransactionBehavior,
    ) -> DbResult<Transaction<'_>> {
        // PostgreSQL has no write lock to take early: each statement waits for the rows it
        // writes, and one hub's writes are already serialized by its single writer connection.
        let begin = match (self.dialect(), behavior) {
            (Dialect::Sqlite, TransactionBehavior::Deferred) => "BEGIN DEFERRED",
            (Dialect::Sqlite, TransactionBehavior::Immediate) => "BEGIN IMMEDIATE",
            (Dialect::Postgres, _) => "BEGIN",
        };
        self.execute_batch(begin)?;
        Ok(Transaction {
            db: self,
            open: true,
        })
    }
}

/// An open transaction; derefs to its connection. Rolled back when dropped uncommitted.
#[derive(Debug)]
pub struct Transaction<'db> {
    db: &'db mut Db,
    open: bool,
}

impl Transaction<'_> {
    /// Make its changes durable.
    pub fn commit(mut self) -> DbResult<()> {
        self.open = false;
        self.db.execute_batch("COMMIT")
    }
}

impl Deref for Transaction<'_> {
    type Target = Db;

    fn deref(&self) -> &Db {
        self.db
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.open {
            // Nothing to do about a failed rollback: the connection ends the transaction itself
            // when it is next used or closed.
            let _ = self.db.execute_batch("ROLLBACK");
        }
    }
}

/// A prepared statement.
pub struct Statement<'db> {
    inner: StatementInner<'db>,
}

impl std::fmt::Debug for Statement<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Statement").finish_non_exhaustive()
    }
}

enum StatementInner<'db> {
    Sqlite(rusqlite::Statement<'db>),
    SqliteCached(rusqlite::CachedStatement<'db>),
    Postgres(&'db PgConn, tokio_postgres::Statement),
}

impl Statement<'_> {
    /// Run it; returns how many rows it changed.
    pub fn execute(&mut self, params: impl Params) -> DbResult<usize> {
        let params = params.refs();
        match &mut self.inner {
            StatementInner::Sqlite(statement) => Ok(statement.execute(param::sqlite(&params))?),
            StatementInner::SqliteCached(statement) => {
                Ok(statement.execute(param::sqlite(&params))?)
            }
            StatementInner::Postgres(conn, statement) => {
                let changed = conn.execute(statement, &params)?;
                Ok(usize::try_from(changed).unwrap_or(usize::MAX))
            }
        }
    }

    /// Every row, each through `f`, in order.
    pub fn query_map<T, F>(
        &mut self,
        params: impl Params,
        mut f: F,
    ) -> DbResult<std::vec::IntoIter<DbResult<T>>>
    where
        F: FnMut(&Row<'_>) -> DbResult<T>,
    {
        let mut out = Vec::new();
        self.each(params, |row| {
            out.push(f(row));
            true
        })?;
        Ok(out.into_iter())
    }

    /// The first row, through `f`; [`DbError::NoRow`] when there is none.
    pub fn query_row<T, F>(&mut self, params: impl Params, f: F) -> DbResult<T>
    where
        F: FnOnce(&Row<'_>) -> DbResult<T>,
    {
        let (mut f, mut out) = (Some(f), None);
        self.each(params, |row| {
            out = f.take().map(|f| f(row));
            false
        })?;
        out.unwrap_or(Err(DbError::NoRow))
    }

    /// Whether it returns any row.
    pub fn exists(&mut self, params: impl Params) -> DbResult<bool> {
        self.query_row(params, |_| Ok(()))
            .optional()
            .map(|row| row.is_some())
    }

    /// Feed the rows to `f` in order while it returns true.
    fn each(&mut self, params: impl Params, mut f: impl FnMut(&Row<'_>) -> bool) -> DbResult<()> {
        let params = params.refs();
        let statement = match &mut self.inner {
            StatementInner::Sqlite(statement) => statement,
            StatementInner::SqliteCached(statement) => &mut **statement,
            StatementInner::Postgres(conn, statement) => {
                for row in conn.query(statement, &params)? {
                    if !f(&Row::postgres(&row)) {
                        break;
                    }
                }
                return Ok(());
            }
        };
        let mut rows = statement.query(param::sqlite(&params))?;
        while let Some(row) = rows.next()? {
            if !f(&Row::sqlite(row)) {
                break;
            }
        }
        Ok(())
    }
}
