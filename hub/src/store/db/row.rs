//! A result row and the column types the store reads from one.

use super::DbResult;

/// One row of a query's result.
#[derive(Debug)]
pub struct Row<'r> {
    inner: RowInner<'r>,
}

#[derive(Debug)]
enum RowInner<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
}

impl<'r> Row<'r> {
    pub(super) fn sqlite(row: &'r rusqlite::Row<'r>) -> Self {
        Self {
            inner: RowInner::Sqlite(row),
        }
    }

    /// Column `idx` (from 0) as a `T`.
    pub fn get<T: FromColumn>(&self, idx: usize) -> DbResult<T> {
        match &self.inner {
            RowInner::Sqlite(row) => T::from_sqlite(row, idx),
        }
    }
}

/// A type the store reads from a column.
pub trait FromColumn: Sized {
    /// Column `idx` of an SQLite row.
    fn from_sqlite(row: &rusqlite::Row<'_>, idx: usize) -> DbResult<Self>;
}

macro_rules! from_column {
    ($($t:ty),*) => {$(
        impl FromColumn for $t {
            fn from_sqlite(row: &rusqlite::Row<'_>, idx: usize) -> DbResult<Self> {
                Ok(row.get(idx)?)
            }
        }
    )*};
}
from_column!(i64, u64, u32, u16, usize, bool, f64, String, Vec<u8>);

impl<T: FromColumn> FromColumn for Option<T> {
    fn from_sqlite(row: &rusqlite::Row<'_>, idx: usize) -> DbResult<Self> {
        match row.get_ref(idx)? {
            rusqlite::types::ValueRef::Null => Ok(None),
            _ => T::from_sqlite(row, idx).map(Some),
        }
    }
}
