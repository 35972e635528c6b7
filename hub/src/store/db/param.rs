//! Values bound to a statement's placeholders: [`ToParam`] for each type the store binds,
//! [`Params`] for the lists it passes (`params![…]`, arrays, [`params_from_iter`]).

use rusqlite::types::{ToSqlOutput, ValueRef};

use super::{DbError, DbResult};

/// A bound value as the backends see it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ParamRef<'a> {
    /// SQL NULL.
    Null,
    /// A 64-bit integer (booleans are 0 and 1).
    Integer(i64),
    /// A double.
    Real(f64),
    /// Text.
    Text(&'a str),
    /// Bytes.
    Blob(&'a [u8]),
}

/// A type the store binds to a placeholder.
pub trait ToParam {
    /// This value, borrowed; an error when the database cannot hold it.
    fn to_param(&self) -> DbResult<ParamRef<'_>>;
}

/// An owned value, for statements whose parameters are built at run time (filters).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Self::Integer(value)
    }
}

impl From<u32> for Value {
    fn from(value: u32) -> Self {
        Self::Integer(value.into())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

impl ToParam for Value {
    fn to_param(&self) -> DbResult<ParamRef<'_>> {
        Ok(match self {
            Self::Null => ParamRef::Null,
            Self::Integer(v) => ParamRef::Integer(*v),
            Self::Text(v) => ParamRef::Text(v),
            Self::Blob(v) => ParamRef::Blob(v),
        })
    }
}

impl<T: ToParam + ?Sized> ToParam for &T {
    fn to_param(&self) -> DbResult<ParamRef<'_>> {
        (**self).to_param()
    }
}

impl<T: ToParam> ToParam for Option<T> {
    fn to_param(&self) -> DbResult<ParamRef<'_>> {
        self.as_ref().map_or(Ok(ParamRef::Null), ToParam::to_param)
    }
}

macro_rules! integer_param {
    ($($t:ty),*) => {$(
        impl ToParam for $t {
            fn to_param(&self) -> DbResult<ParamRef<'_>> {
                Ok(ParamRef::Integer(i64::from(*self)))
            }
        }
    )*};
}
integer_param!(i64, i32, u32, u16, u8, bool);

impl ToParam for u64 {
    fn to_param(&self) -> DbResult<ParamRef<'_>> {
        i64::try_from(*self)
            .map(ParamRef::Integer)
            .map_err(|_| DbError::OutOfRange(*self))
    }
}

impl ToParam for f64 {
    fn to_param(&self) -> DbResult<ParamRef<'_>> {
        Ok(ParamRef::Real(*self))
    }
}

impl ToParam for str {
    fn to_param(&self) -> DbResult<ParamRef<'_>> {
        Ok(ParamRef::Text(self))
    }
}

impl ToParam for String {
    fn to_param(&self) -> DbResult<ParamRef<'_>> {
        Ok(ParamRef::Text(self))
    }
}

impl ToParam for [u8] {
    fn to_param(&self) -> DbResult<ParamRef<'_>> {
        Ok(ParamRef::Blob(self))
    }
}

impl ToParam for Vec<u8> {
    fn to_param(&self) -> DbResult<ParamRef<'_>> {
        Ok(ParamRef::Blob(self))
    }
}

impl<const N: usize> ToParam for [u8; N] {
    fn to_param(&self) -> DbResult<ParamRef<'_>> {
        Ok(ParamRef::Blob(self))
    }
}

/// A statement's parameters, in placeholder order.
pub trait Params {
    /// Each parameter, borrowed.
    fn refs(&self) -> Vec<&dyn ToParam>;
}

impl Params for () {
    fn refs(&self) -> Vec<&dyn ToParam> {
        Vec::new()
    }
}

impl Params for &[&dyn ToParam] {
    fn refs(&self) -> Vec<&dyn ToParam> {
        self.to_vec()
    }
}

impl Params for [&dyn ToParam; 0] {
    fn refs(&self) -> Vec<&dyn ToParam> {
        Vec::new()
    }
}

macro_rules! array_params {
    ($($n:literal),*) => {$(
        impl<T: ToParam> Params for [T; $n] {
            fn refs(&self) -> Vec<&dyn ToParam> {
                self.iter().map(|p| p as &dyn ToParam).collect()
            }
        }
    )*};
}
array_params!(1, 2, 3, 4, 5, 6, 7, 8);

/// Parameters from a list built at run time.
#[derive(Debug)]
pub struct ParamsFromIter<'a, T>(&'a [T]);

/// The values of `values`, in order, as a statement's parameters.
pub fn params_from_iter<T: ToParam>(values: &[T]) -> ParamsFromIter<'_, T> {
    ParamsFromIter(values)
}

impl<T: ToParam> Params for ParamsFromIter<'_, T> {
    fn refs(&self) -> Vec<&dyn ToParam> {
        self.0.iter().map(|p| p as &dyn ToParam).collect()
    }
}

/// `params![a, b, …]`: a statement's parameters, each borrowed, of any [`ToParam`] type.
macro_rules! params {
    () => {
        &[] as &[&dyn $crate::store::db::ToParam]
    };
    ($($param:expr),+ $(,)?) => {
        &[$(&$param as &dyn $crate::store::db::ToParam),+] as &[&dyn $crate::store::db::ToParam]
    };
}
pub(crate) use params;

/// A parameter as rusqlite binds it.
pub(super) struct SqliteParam<'a>(&'a dyn ToParam);

impl rusqlite::ToSql for SqliteParam<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        let param = self
            .0
            .to_param()
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(ToSqlOutput::Borrowed(match param {
            ParamRef::Null => ValueRef::Null,
            ParamRef::Integer(v) => ValueRef::Integer(v),
            ParamRef::Real(v) => ValueRef::Real(v),
            ParamRef::Text(v) => ValueRef::Text(v.as_bytes()),
            ParamRef::Blob(v) => ValueRef::Blob(v),
        }))
    }
}

/// `refs` as rusqlite's parameters.
pub(super) fn sqlite<'a>(
    refs: &'a [&'a dyn ToParam],
) -> rusqlite::ParamsFromIter<impl Iterator<Item = SqliteParam<'a>>> {
    rusqlite::params_from_iter(refs.iter().map(|p| SqliteParam(*p)))
}
