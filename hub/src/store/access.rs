//! Credentials' roles and scopes in the store: named API tokens (SHA-256 only), the role and scope
//! of each admin certificate, and the SQL that narrows devices and fleet work to a scope (one
//! page reader for jobs and rollouts alike, [`page_within`], so both list a scope the same way).
//!
//! A scope is kept as JSON `{"groups": [...], "tags": [...]}` and matched in SQL through
//! `json_each`, so one statement answers "is this device in scope" or "is every device this
//! selection can reach in scope", however many names the scope holds. Group and tag names compare
//! without regard to ASCII case, as everywhere else in the store.

use outpost_api::Scope as ScopeBody;

use super::db::{params, params_from_iter, Db, DbResult, Dialect, OptionalExtension, Row, Value};
use super::StoreError;
use crate::access::{Principal, Role, Scope};

/// A named token's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its scope.
    pub scope: Option<Scope>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, when revoked.
    pub revoked_at: Option<i64>,
}

/// The JSON a scope is kept as.
pub fn scope_json(scope: Option<&Scope>) -> Option<String> {
    scope.map(|s| {
        let body = ScopeBody {
            groups: s.groups().to_vec(),
            tags: s.tags().to_vec(),
        };
        serde_json::to_string(&body).unwrap_or_default()
    })
}

/// A kept scope, read back.
pub fn parse_scope(text: Option<String>) -> Result<Option<Scope>, StoreError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let body: ScopeBody =
        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("scope: {e}")))?;
    Scope::new(&body.groups, &body.tags)
        .map(Some)
        .map_err(|e| StoreError::Corrupt(format!("scope: {e}")))
}

/// A kept role, read back.
pub fn parse_role(text: &str) -> Result<Role, StoreError> {
    text.parse()
        .map_err(|e| StoreError::Corrupt(format!("role: {e}")))
}

/// Whether a live token already has this name.
pub fn token_name_taken(conn: &Db, name: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM api_tokens WHERE name = ?1 AND revoked_at IS NULL",
            [name],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Record a new token by its hash (hex).
pub fn create_token(conn: &Db, row: &TokenRow, hash_hex: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO api_tokens (name, hash, role, scope, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            row.name,
            hash_hex,
            row.role.as_str(),
            scope_json(row.scope.as_ref()),
            row.created_at
        ],
    )?;
    Ok(())
}

/// A token row's columns as read: name, role, scope, created, revoked.
type RawToken = (String, String, Option<String>, i64, Option<i64>);

fn token_row(r: &Row<'_>) -> DbResult<RawToken> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn token((name, role, scope, created_at, revoked_at): RawToken) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        name,
        role: parse_role(&role)?,
        scope: parse_scope(scope)?,
        created_at,
        revoked_at,
    })
}

/// Every named token, oldest first.
pub fn list_tokens(conn: &Db) -> Result<Vec<TokenRow>, StoreError> {
    let mut statement = conn
        .prepare("SELECT name, role, scope, created_at, revoked_at FROM api_tokens ORDER BY id")?;
    let rows = statement.query_map([], token_row)?;
    rows.map(|raw| token(raw?)).collect()
}

/// Revoke the live token named `name`; its row, if there was one.
pub fn revoke_token(conn: &Db, name: &str, now: i64) -> Result<Option<TokenRow>, StoreError> {
    conn.query_row(
        "UPDATE api_tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL
         RETURNING name, role, scope, created_at, revoked_at",
        params![name, now],
        token_row,
    )
    .optional()?
    .map(token)
    .transpose()
}

/// Who the live token with this hash (hex) is, if any.
pub fn token_principal(conn: &Db, hash_hex: &str) -> Result<Option<Principal>, StoreError> {
    let found = conn
        .query_row(
            "SELECT name, role, scope FROM api_tokens WHERE hash = ?1 AND revoked_at IS NULL",
            [hash_hex],
            |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?, r.get(2)?)),
        )
        .optional()?;
    found.map(principal).transpose()
}

/// Who the valid admin certificate with this serial is, if it is valid.
pub fn certificate_principal(conn: &Db, serial: &str) -> Result<Option<Principal>, StoreError> {
    let found = conn
        .query_row(
            "SELECT name, role, scope FROM admin_certs WHERE serial = ?1 AND revoked_at IS NULL",
            [serial],
            |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?, r.get(2)?)),
        )
        .optional()?;
    found.map(principal).transpose()
}

fn principal(
    (name, role, scope): (String, String, Option<String>),
) -> Result<Principal, StoreError> {
    Ok(Principal {
        name,
        role: parse_role(&role)?,
        scope: parse_scope(scope)?,
    })
}

/// The scope's groups and tags as the two JSON arrays the clauses below bind.
fn bound(scope: &Scope) -> [Value; 2] {
    let json = |names: &[String]| Value::Text(serde_json::to_string(names).unwrap_or_default());
    [json(scope.groups()), json(scope.tags())]
}

/// Endpoint ids in the scope whose names are bound first (groups, then tags).
fn in_scope_ids(dialect: Dialect) -> String {
    let groups = dialect.json_values("?", None, "g");
    let tags = dialect.json_values("?", None, "t");
    format!(
        "SELECT e.id FROM endpoints e WHERE e.group_id IN \
         (SELECT id FROM groups WHERE name IN (SELECT value FROM {groups})) \
         OR e.id IN (SELECT endpoint_id FROM endpoint_tags WHERE tag_id IN \
         (SELECT id FROM tags WHERE name IN (SELECT value FROM {tags})))"
    )
}

/// `id IN (…in scope…)`, for the endpoint list's WHERE clause, with its values.
pub fn endpoint_clause(dialect: Dialect, scope: &Scope) -> (String, Vec<Value>) {
    let ids = in_scope_ids(dialect);
    (format!("id IN ({ids})"), bound(scope).to_vec())
}

/// Whether endpoint `id` is in `scope`.
pub fn endpoint_in_scope(conn: &Db, id: u64, scope: &Scope) -> Result<bool, StoreError> {
    let [groups, tags] = bound(scope);
    let ids = in_scope_ids(conn.dialect());
    let sql = format!("SELECT EXISTS (SELECT 1 FROM ({ids}) AS s WHERE id = ?)");
    Ok(conn.query_row(&sql, params![groups, tags, id as i64], |r| r.get(0))?)
}

/// The first of `ids` outside `scope`, if any.
pub fn first_outside(conn: &Db, ids: &[u64], scope: &Scope) -> Result<Option<u64>, StoreError> {
    for &id in ids {
        if !endpoint_in_scope(conn, id, scope)? {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// The first of the scope's groups and tags that does not exist, as `group "x"` or `tag "y"`.
pub fn first_unknown_label(conn: &Db, scope: &Scope) -> Result<Option<String>, StoreError> {
    let exists = |table: &str, name: &str| -> Result<bool, StoreError> {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE name = ?1)");
        Ok(conn.query_row(&sql, [name], |r| r.get(0))?)
    };
    for group in scope.groups() {
        if !exists("groups", group)? {
            return Ok(Some(format!("group {group:?}")));
        }
    }
    for tag in scope.tags() {
        if !exists("tags", tag)? {
            return Ok(Some(format!("tag {tag:?}")));
        }
    }
    Ok(None)
}

/// A WHERE condition on a JSON selector column (jobs', rollouts'): every group and tag it names is
/// one of the scope's and every endpoint it names is in the scope, so each device it reaches, now
/// or later, is in scope. Values: the scope's groups and tags, twice over.
pub fn selection_clause(dialect: Dialect, column: &str, scope: &Scope) -> (String, Vec<Value>) {
    let each = |key| dialect.json_values(column, Some(key), "s");
    let (groups, tags, endpoints) = (each("groups"), each("tags"), each("endpoints"));
    let bound_groups = dialect.json_values("?", None, "b");
    let bound_tags = dialect.json_values("?", None, "b");
    let ids = in_scope_ids(dialect);
    let sql = format!(
        "NOT EXISTS (SELECT 1 FROM {groups} \
           WHERE lower(s.value) NOT IN (SELECT lower(value) FROM {bound_groups})) \
         AND NOT EXISTS (SELECT 1 FROM {tags} \
           WHERE lower(s.value) NOT IN (SELECT lower(value) FROM {bound_tags})) \
         AND NOT EXISTS (SELECT 1 FROM {endpoints} \
           WHERE CAST(s.value AS BIGINT) NOT IN ({ids}))"
    );
    let [groups, tags] = bound(scope);
    (sql, vec![groups.clone(), tags.clone(), groups, tags])
}

/// `WHERE <selection_clause>` for a scope, or nothing for the whole fleet.
fn where_within(dialect: Dialect, column: &str, scope: Option<&Scope>) -> (String, Vec<Value>) {
    match scope {
        Some(scope) => {
            let (sql, args) = selection_clause(dialect, column, scope);
            (format!("WHERE {sql}"), args)
        }
        None => (String::new(), Vec::new()),
    }
}

/// How [`page_within`] reads one kind of fleet work (jobs, rollouts).
pub(super) struct Listed<T> {
    /// The table the count reads, with the alias `select` gives it (`rollouts r`).
    pub(super) table: &'static str,
    /// What `select` puts before the table's column names (`r.`, or nothing).
    pub(super) prefix: &'static str,
    /// The query for its rows, given what follows `FROM …`.
    pub(super) select: fn(&str) -> String,
    /// One row read.
    pub(super) row: fn(&Row<'_>) -> DbResult<Result<T, StoreError>>,
}

/// The fleet work `listed` reads, newest first, a page at a time, and how much there is; with a
/// scope, only the work whose selection stays inside it.
pub(super) fn page_within<T>(
    conn: &Db,
    listed: &Listed<T>,
    offset: u64,
    limit: u32,
    scope: Option<&Scope>,
) -> Result<(Vec<T>, u64), StoreError> {
    let column = format!("{}selector", listed.prefix);
    let (within, mut args) = where_within(conn.dialect(), &column, scope);
    let total: u64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM {} {within}", listed.table),
        params_from_iter(&args),
        |r| r.get(0),
    )?;
    args.extend([Value::from(limit), Value::from(offset as i64)]);
    let page = format!(
        "{within} ORDER BY {}id DESC LIMIT ? OFFSET ?",
        listed.prefix
    );
    let mut statement = conn.prepare_cached(&(listed.select)(&page))?;
    let rows = statement
        .query_map(params_from_iter(&args), listed.row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((rows.into_iter().collect::<Result<_, _>>()?, total))
}
