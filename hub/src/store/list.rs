//! The endpoint list: one page of a filtered, sorted list and the total matching, both in SQL.
//!
//! The query is built from fixed fragments (never from user text; values are bound parameters) so
//! that each filter and sort lands on an index from migrations 3 and 4. A page's ids come from
//! walking the sort key's index in order (`(kind, key, id, approved, connected)`, or the same after
//! `group_id` when a group is asked for), checking status from the index entry and tag membership
//! against the tag's `endpoint_tags` rows, and stopping after `offset + limit` matches; only a name
//! search reads the row. The page's columns, group and tags are then read for those ids alone.
//! The count walks the cheapest index for the filter (a `(kind, connected, approved, group_id)`
//! range for a status, the tag's rows for a tag). Ties break on the id, so pages are stable.
//!
//! Status comes from the store, not from the session registry: "online" means approved and
//! `connected`, the flag the liveness flush sets while the hub holds a live session for the
//! endpoint. Only the small set of summoned (active) devices is passed in from memory.

use outpost_protocol::EndpointId;

use super::db::{params_from_iter, Db, Dialect, Value};
use super::endpoints::{columns, from_row, EndpointRecord};
use super::{access, StoreError};
use crate::access::Scope;

/// Most rows one page may hold.
pub const MAX_PER_PAGE: u32 = 1000;

/// A page of the endpoint list.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// 1-based page.
    pub page: u32,
    /// Rows per page (1 to [`MAX_PER_PAGE`]).
    pub per_page: u32,
    /// Substring of the name (case-insensitive for ASCII).
    pub search: Option<String>,
    /// Restrict by status.
    pub status: Option<StatusFilter>,
    /// Only endpoints in this group.
    pub group: Option<String>,
    /// Only endpoints carrying this tag.
    pub tag: Option<String>,
    /// List fleet templates instead of devices.
    pub fleets: bool,
    /// Only endpoints in this scope (a scoped credential's list).
    pub scope: Option<Scope>,
    /// Order of the rows.
    pub sort: Sort,
}

/// Status restriction, answered from the stored `connected` flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatusFilter {
    /// Waiting for approval.
    Pending,
    /// Approved and not connected.
    Offline,
    /// Approved, connected, and not one of `except`.
    Online {
        /// Ids left out (the active devices, to list those in standby).
        except: Vec<EndpointId>,
    },
    /// Approved and one of these ids (the active devices, known from memory).
    Among(Vec<EndpointId>),
}

/// What the list is sorted by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortKey {
    /// Name, ignoring ASCII case.
    Name,
    /// Creation time (the default).
    #[default]
    Created,
    /// Last stored check-in; never-seen endpoints come first ascending, last descending.
    LastCheckin,
}

/// A sort key and direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sort {
    /// The key.
    pub key: SortKey,
    /// Largest first.
    pub descending: bool,
}

/// A WHERE clause and its bound values, in order.
#[derive(Debug, Default)]
struct Filter {
    sql: String,
    args: Vec<Value>,
}

impl Filter {
    fn and(&mut self, clause: &str, args: impl IntoIterator<Item = Value>) {
        if !self.sql.is_empty() {
            self.sql.push_str(" AND ");
        }
        self.sql.push_str(clause);
        self.args.extend(args);
    }
}

/// `%text%` with LIKE's wildcards escaped, so `_` and `%` match themselves.
fn like_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

fn id_json(ids: &[EndpointId]) -> Value {
    let items: Vec<String> = ids.iter().map(|id| id.0.to_string()).collect();
    Value::Text(format!("[{}]", items.join(",")))
}

/// `id IN (…the ids in the JSON array bound…)`, or `NOT IN`.
fn ids_clause(dialect: Dialect, not: &str) -> String {
    let ids = dialect.json_values("?", None, "i");
    format!("id {not}IN (SELECT CAST(value AS BIGINT) FROM {ids})")
}

/// `connected` is how the clause names the column: `+connected` keeps SQLite from answering the
/// filter as a range on the status index, so that it walks the sort key's index instead.
fn status_clause(dialect: Dialect, filter: &mut Filter, status: &StatusFilter, connected: &str) {
    match status {
        StatusFilter::Pending => filter.and("approved = 0", []),
        StatusFilter::Offline => filter.and(&format!("{connected} = 0 AND approved = 1"), []),
        StatusFilter::Online { except } => {
            filter.and(&format!("{connected} = 1 AND approved = 1"), []);
            if !except.is_empty() {
                filter.and(&ids_clause(dialect, "NOT "), [id_json(except)]);
            }
        }
        StatusFilter::Among(ids) => filter.and(
            &format!("approved = 1 AND {}", ids_clause(dialect, "")),
            [id_json(ids)],
        ),
    }
}

/// The WHERE clause of `query`. `in_sort_order` asks for a plan that walks the sort key's index
/// (a page: it stops after `offset + limit` matches, reading nothing but the index) rather than
/// one that collects every match first (a count).
fn filter(dialect: Dialect, query: &ListQuery, in_sort_order: bool) -> Filter {
    let mut filter = Filter::default();
    let kind = if query.fleets { "fleet" } else { "device" };
    // A count with a tag is driven from the tag's rows (`+kind` keeps SQLite from walking a whole
    // `kind` index instead): its cost is the tag's size, not the fleet's. PostgreSQL's planner
    // costs the plans itself and has no such hint.
    let sqlite = dialect == Dialect::Sqlite;
    let kind_column = if sqlite && query.tag.is_some() && !in_sort_order {
        "+kind"
    } else {
        "kind"
    };
    filter.and(&format!("{kind_column} = ?"), [Value::Text(kind.into())]);
    if let Some(search) = &query.search {
        // SQLite's LIKE ignores ASCII case; PostgreSQL's ILIKE does the same.
        let like = if sqlite { "LIKE" } else { "ILIKE" };
        filter.and(
            &format!("name {like} ? ESCAPE '\\'"),
            [Value::Text(like_pattern(search))],
        );
    }
    if let Some(group) = &query.group {
        filter.and(
            "group_id = (SELECT id FROM groups WHERE name = ?)",
            [Value::Text(group.clone())],
        );
    }
    if let Some(tag) = &query.tag {
        filter.and(
            "id IN (SELECT endpoint_id FROM endpoint_tags \
             WHERE tag_id = (SELECT id FROM tags WHERE name = ?))",
            [Value::Text(tag.clone())],
        );
    }
    if let Some(scope) = &query.scope {
        let (clause, args) = access::endpoint_clause(dialect, scope);
        filter.and(&clause, args);
    }
    if let Some(status) = &query.status {
        let connected = if sqlite && in_sort_order {
            "+connected"
        } else {
            "connected"
        };
        status_clause(dialect, &mut filter, status, connected);
    }
    filter
}

/// SQLite puts NULL (a never-seen device's check-in) first ascending and last descending;
/// PostgreSQL the other way round unless told, so it is told (and its check-in indexes are built
/// `NULLS FIRST` to match, `migrations/postgres.rs`).
fn order_by(dialect: Dialect, sort: Sort) -> String {
    let key = match sort.key {
        SortKey::Name => "name COLLATE NOCASE",
        SortKey::Created => "created_at",
        SortKey::LastCheckin => "last_checkin",
    };
    let dir = if sort.descending { "DESC" } else { "ASC" };
    let nulls = match (dialect, sort.key, sort.descending) {
        (Dialect::Postgres, SortKey::LastCheckin, false) => " NULLS FIRST",
        (Dialect::Postgres, SortKey::LastCheckin, true) => " NULLS LAST",
        _ => "",
    };
    format!("{key} {dir}{nulls}, id {dir}")
}

/// The page query and its arguments. The inner query finds the page's ids, walking (or sorting)
/// only the sort key and the id; the outer one reads the columns, group and tags of those rows
/// alone, so neither a deep page nor a sort of many rows computes the columns of skipped rows.
pub(super) fn page_sql(dialect: Dialect, query: &ListQuery) -> (String, Vec<Value>) {
    let Filter { sql, mut args } = filter(dialect, query, true);
    let per_page = query.per_page.clamp(1, MAX_PER_PAGE);
    let offset = i64::from(query.page.max(1) - 1) * i64::from(per_page);
    args.extend([Value::Integer(per_page.into()), Value::Integer(offset)]);
    let order = order_by(dialect, query.sort);
    let columns = columns(dialect);
    let sql = format!(
        "SELECT {columns} FROM endpoints WHERE id IN \
         (SELECT id FROM endpoints WHERE {sql} ORDER BY {order} LIMIT ? OFFSET ?) \
         ORDER BY {order}"
    );
    (sql, args)
}

/// The count query and its arguments.
pub(super) fn count_sql(dialect: Dialect, query: &ListQuery) -> (String, Vec<Value>) {
    let Filter { sql, args } = filter(dialect, query, false);
    (format!("SELECT COUNT(*) FROM endpoints WHERE {sql}"), args)
}

/// One page of endpoints and the total matching.
pub fn list(conn: &Db, query: &ListQuery) -> Result<(Vec<EndpointRecord>, u64), StoreError> {
    let (sql, args) = count_sql(conn.dialect(), query);
    let total: i64 = conn
        .prepare_cached(&sql)?
        .query_row(params_from_iter(&args), |r| r.get(0))?;
    let (sql, args) = page_sql(conn.dialect(), query);
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(params_from_iter(&args), from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((rows, total as u64))
}
