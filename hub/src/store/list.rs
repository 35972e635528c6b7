//! The endpoint list: one page of a filtered, sorted list and the total matching, both in SQL.
//!
//! The query is built from fixed fragments (never from user text; values are bound parameters) so
//! that each filter and sort lands on an index from migrations 3 and 4. A page's ids come from
//! walking the sort key's index in order (`(kind, key, id, approved, connected)`, or the same after
//! `group_id` when a group is asked for), checking status from the index entry and tag membership
//! against the tag's `endpoint_tags` rows, and stopping after `offset + limit` matches; only a name
//! search reads the row. The page's columns, group and tags are then read for those ids alone
//! (on PostgreSQL joined in one pass, [`postgres_page`]). The count walks the cheapest index for
//! the filter (a `(kind, connected, approved, group_id)` range for a status, the tag's rows for a
//! tag, [`tag_count_sql`]; on PostgreSQL a trigram index for a name search, [`search_clause`]).
//! Ties break on the id, so pages are stable.
//!
//! Status comes from the store, not from the session registry: "online" means approved and
//! `connected`, the flag the liveness flush sets while the hub holds a live session for the
//! endpoint. Only the small set of summoned (active) devices is passed in from memory.

use outpost_protocol::EndpointId;

use super::db::{params_from_iter, Db, Dialect, Value};
use super::endpoints::{columns, from_row, stored_columns, EndpointRecord};
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

/// A name containing `search`, ignoring ASCII case (and only ASCII case: `É` is not `é`), as
/// SQLite's `LIKE` does; the clause and its one argument.
///
/// PostgreSQL's `ILIKE` folds case by the column's collation: under the database's (`C.UTF-8`
/// on the test cluster) every script, through a `lower()` of each name that made counting 100,000
/// names 52 ms; under "C", ASCII alone, in 30 ms. The trigram index is built on that expression
/// (`migrations/postgres.rs`), so a search holding a trigram (three letters or digits in a row)
/// is answered from it. A shorter one has none, and the planner, costing the index as if it
/// had, read the whole index and rechecked every row (80 ms on 100,000 against 30 read in
/// order): such a search is written as `strpos`, which no index answers.
fn search_clause(dialect: Dialect, search: &str) -> (&'static str, Value) {
    match dialect {
        Dialect::Sqlite => ("name LIKE ? ESCAPE '\\'", Value::Text(like_pattern(search))),
        Dialect::Postgres if has_trigram(search) => (
            "name COLLATE \"C\" ILIKE ? ESCAPE '\\'",
            Value::Text(like_pattern(search)),
        ),
        Dialect::Postgres => (
            "strpos(lower(name COLLATE \"C\"), ?) > 0",
            Value::Text(search.to_ascii_lowercase()),
        ),
    }
}

/// Whether `pg_trgm` finds a trigram in `search`: three word characters in a row.
fn has_trigram(search: &str) -> bool {
    search
        .split(|c: char| !c.is_alphanumeric())
        .any(|word| word.chars().count() >= 3)
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
        let (clause, pattern) = search_clause(dialect, search);
        filter.and(clause, [pattern]);
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
    let ids = format!("SELECT id FROM endpoints WHERE {sql} ORDER BY {order} LIMIT ? OFFSET ?");
    let sql = match dialect {
        Dialect::Sqlite => format!(
            "SELECT {} FROM endpoints WHERE id IN ({ids}) ORDER BY {order}",
            columns(dialect)
        ),
        Dialect::Postgres => postgres_page(&ids),
    };
    (sql, args)
}

/// PostgreSQL's page: the ids in the walk's order (an array, numbered), then each row's group
/// and tags joined in one pass over the page. Read per row (the correlated subqueries of
/// [`columns`]), a 1000-row page's group and tags cost 1000 small plans, each hashing the tags
/// table (37–40 ms in the statement log at 100,000 endpoints, BENCHMARKS.md, issue #18); by
/// `pgbench` on such a store, 20.5 ms a page per row against 12.5 ms joined.
fn postgres_page(ids: &str) -> String {
    format!(
        "WITH page AS MATERIALIZED (SELECT id, page_order \
             FROM unnest(ARRAY({ids})) WITH ORDINALITY AS walked(id, page_order)), \
         labels AS (SELECT endpoint_tags.endpoint_id, \
             CAST(json_agg(tags.name ORDER BY tags.name) AS TEXT) AS tag_names \
             FROM page JOIN endpoint_tags ON endpoint_tags.endpoint_id = page.id \
             JOIN tags ON tags.id = endpoint_tags.tag_id GROUP BY endpoint_tags.endpoint_id) \
         SELECT {}, group_name, COALESCE(tag_names, '[]'), \
             CASE WHEN connected = 1 THEN held_by END \
         FROM page JOIN endpoints USING (id) \
         LEFT JOIN (SELECT id AS group_id, name AS group_name FROM groups) named USING (group_id) \
         LEFT JOIN labels ON labels.endpoint_id = id \
         ORDER BY page_order",
        stored_columns!()
    )
}

/// The count query and its arguments.
pub(super) fn count_sql(dialect: Dialect, query: &ListQuery) -> (String, Vec<Value>) {
    if let Some(tag) = tag_alone(query) {
        return tag_count_sql(tag);
    }
    let Filter { sql, args } = filter(dialect, query, false);
    (format!("SELECT COUNT(*) FROM endpoints WHERE {sql}"), args)
}

/// The tag of a device list filtered by that tag and nothing else.
fn tag_alone(query: &ListQuery) -> Option<&str> {
    let alone = !query.fleets
        && query.search.is_none()
        && query.group.is_none()
        && query.status.is_none()
        && query.scope.is_none();
    query.tag.as_deref().filter(|_| alone)
}

/// The devices carrying `tag`: its `endpoint_tags` rows, less those of fleets (templates, a
/// handful, each looked up by the table's key). So the count costs the tag's size and reads no
/// device row. Counted as the devices among the tag's endpoints, PostgreSQL hashed the tag's ids
/// and scanned all endpoints for their kind (19–55 ms at 100,000; this, 1.2 ms).
fn tag_count_sql(tag: &str) -> (String, Vec<Value>) {
    let tag_id = "(SELECT id FROM tags WHERE name = ?)";
    let sql = format!(
        "SELECT (SELECT COUNT(*) FROM endpoint_tags WHERE tag_id = {tag_id}) \
         - (SELECT COUNT(*) FROM endpoints WHERE kind = 'fleet' AND EXISTS \
            (SELECT 1 FROM endpoint_tags \
             WHERE endpoint_tags.endpoint_id = endpoints.id AND tag_id = {tag_id}))"
    );
    (sql, vec![Value::Text(tag.into()), Value::Text(tag.into())])
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
