//! A result row and the column types the store reads from one.

use super::{postgres, DbError, DbResult};

/// One row of a query's result.
#[derive(Debug)]
pub struct Row<'r> {
    inner: RowInner<'r>,
}

#[derive(Debug)]
enum RowInner<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r tokio_postgres::Row),
}

impl<'r> Row<'r> {
    pub(super) fn sqlite(row: &'r rusqlite::Row<'r>) -> Self {
        Self {
            inner: RowInner::Sqlite(row),
        }
    }

    pub(super) fn postgres(row: &'r tokio_postgres::Row) -> Self {
        Self {
            inner: RowInner::Postgres(row),
        }
    }

    /// Column `idx` (from 0) as a `T`.
    pub fn get<T: FromColumn>(&self, idx: usize) -> DbResult<T> {
        match &self.inner {
            RowInner::Sqlite(row) => T::from_sqlite(row, idx),
            RowInner::Postgres(row) => T::from_postgres(row, idx),
        }
    }
}

/// A type the store reads from a column.
pub trait FromColumn: Sized {
    /// Column `idx` of an SQLite row.
    fn from_sqlite(row: &rusqlite::Row<'_>, idx: usize) -> DbResult<Self>;
    /// Column `idx` of a PostgreSQL row.
    fn from_postgres(row: &tokio_postgres::Row, idx: usize) -> DbResult<Self>;
}

macro_rules! from_column {
    ($($t:ty => $postgres:expr),* $(,)?) => {$(
        impl FromColumn for $t {
            fn from_sqlite(row: &rusqlite::Row<'_>, idx: usize) -> DbResult<Self> {
                Ok(row.get(idx)?)
            }

            fn from_postgres(row: &tokio_postgres::Row, idx: usize) -> DbResult<Self> {
                ($postgres)(row, idx)
            }
        }
    )*};
}

/// An unsigned integer column, which PostgreSQL holds as a signed 64-bit integer.
fn unsigned<T: TryFrom<i64>>(row: &tokio_postgres::Row, idx: usize) -> DbResult<T> {
    let value = postgres::integer(row, idx)?;
    T::try_from(value).map_err(|_| DbError::Column {
        index: idx,
        message: format!("{value} is out of range"),
    })
}

from_column!(
    i64 => postgres::integer,
    u64 => unsigned::<u64>,
    u32 => unsigned::<u32>,
    u16 => unsigned::<u16>,
    usize => unsigned::<usize>,
    bool => |row, idx| postgres::integer(row, idx).map(|v| v != 0),
    f64 => postgres::real,
    String => postgres::text,
    Vec<u8> => postgres::blob,
);

impl<T: FromColumn> FromColumn for Option<T> {
    fn from_sqlite(row: &rusqlite::Row<'_>, idx: usize) -> DbResult<Self> {
        match row.get_ref(idx)? {
            rusqlite::types::ValueRef::Null => Ok(None),
            _ => T::from_sqlite(row, idx).map(Some),
        }
    }

    fn from_postgres(row: &tokio_postgres::Row, idx: usize) -> DbResult<Self> {
        if postgres::is_null(row, idx)? {
            return Ok(None);
        }
        T::from_postgres(row, idx).map(Some)
    }
}
