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
mod row;

use std::ops::Deref;

use thiserror::Error;

pub(crate) use param::params;
pub use param::{params_from_iter, ParamRef, Params, ToParam, Value};
pub use row::{FromColumn, Row};

/// A database call that failed.
#[derive(Debug, Error)]
pub enum DbError {
    /// SQLite reported an error.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
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
}

/// When a transaction takes its write lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionBehavior {
    /// At its first write.
    Deferred,
    /// At once, so a read-then-write sequence never fails to upgrade (SQLite `BEGIN IMMEDIATE`).
    Immediate,
}

impl Db {
    /// Run one statement; returns how many rows it changed.
    pub fn execute(&self, sql: &str, params: impl Params) -> DbResult<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    /// Run several `;`-separated statements that take no parameters.
    pub fn execute_batch(&self, sql: &str) -> DbResult<()> {
        match self {
            Self::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
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
        };
        Ok(Statement { inner })
    }

    /// A statement to run often: kept prepared on the connection.
    pub fn prepare_cached(&self, sql: &str) -> DbResult<Statement<'_>> {
        let inner = match self {
            Self::Sqlite(conn) => StatementInner::SqliteCached(conn.prepare_cached(sql)?),
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
        let begin = match behavior {
            TransactionBehavior::Deferred => "BEGIN DEFERRED",
            TransactionBehavior::Immediate => "BEGIN IMMEDIATE",
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
}

impl<'db> StatementInner<'db> {
    fn sqlite(&mut self) -> &mut rusqlite::Statement<'db> {
        match self {
            Self::Sqlite(statement) => statement,
            Self::SqliteCached(statement) => statement,
        }
    }
}

impl Statement<'_> {
    /// Run it; returns how many rows it changed.
    pub fn execute(&mut self, params: impl Params) -> DbResult<usize> {
        let statement = self.inner.sqlite();
        Ok(statement.execute(param::sqlite(&params.refs()))?)
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
        let statement = self.inner.sqlite();
        let mut rows = statement.query(param::sqlite(&params.refs()))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(f(&Row::sqlite(row)));
        }
        Ok(out.into_iter())
    }

    /// The first row, through `f`; [`DbError::NoRow`] when there is none.
    pub fn query_row<T, F>(&mut self, params: impl Params, f: F) -> DbResult<T>
    where
        F: FnOnce(&Row<'_>) -> DbResult<T>,
    {
        let statement = self.inner.sqlite();
        let mut rows = statement.query(param::sqlite(&params.refs()))?;
        match rows.next()? {
            Some(row) => f(&Row::sqlite(row)),
            None => Err(DbError::NoRow),
        }
    }

    /// Whether it returns any row.
    pub fn exists(&mut self, params: impl Params) -> DbResult<bool> {
        self.query_row(params, |_| Ok(()))
            .optional()
            .map(|row| row.is_some())
    }
}
