//! The endpoint list's queries and the liveness flush on PostgreSQL keep their cost: with a
//! fleet's worth of rows and their statistics, every sort and filter finds a page's ids by
//! walking an index in order and stopping at the page, never by reading or sorting the whole
//! table; a page's groups and tags are joined in one pass; a tag's count reads the tag's rows; a
//! name search with a trigram reads the trigram index; and a flush's batch finds its rows by
//! their key. (SQLite's list plans are checked in `list_tests.rs`; they do not depend on the
//! data.)

use outpost_protocol::EndpointId;

use super::db::{params_from_iter, Db, Dialect, Value};
use super::list::{self, ListQuery, Sort, SortKey, StatusFilter};
use super::liveness::{self, LivenessUpdate};
use super::test_backends::{self, Backend};

/// Devices in the test fleet: enough that reading them all costs more than an index walk.
const DEVICES: i64 = 20_000;

fn fill(conn: &Db) {
    conn.execute_batch(&format!(
        "INSERT INTO groups (name) SELECT 'group-' || g FROM generate_series(1, 10) g;
         INSERT INTO tags (name) SELECT 'tag-' || t FROM generate_series(1, 20) t;
         INSERT INTO endpoints (name, kind, created_at, approved, connected, last_checkin, group_id)
             SELECT 'device-' || (n * 7919 % {DEVICES}), 'device', n, 1, n % 2, n * 3 % 1000,
                    (SELECT id FROM groups WHERE name = 'group-' || (n % 10 + 1))
             FROM generate_series(1, {DEVICES}) n;
         INSERT INTO endpoint_tags (tag_id, endpoint_id)
             SELECT (SELECT id FROM tags WHERE name = 'tag-' || (e.id % 20 + 1)), e.id
             FROM endpoints e;
         ANALYZE;"
    ))
    .unwrap();
}

fn plan(conn: &Db, (sql, args): (String, Vec<Value>)) -> String {
    let mut stmt = conn.prepare(&format!("EXPLAIN {sql}")).unwrap();
    let lines: Vec<String> = stmt
        .query_map(params_from_iter(&args), |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    lines.join("\n")
}

fn queries() -> Vec<ListQuery> {
    let mut all = Vec::new();
    for key in [SortKey::Name, SortKey::Created, SortKey::LastCheckin] {
        for descending in [false, true] {
            for (status, group) in [
                (None, None),
                (Some(StatusFilter::Online { except: vec![] }), None),
                (None, Some("group-3")),
                (Some(StatusFilter::Offline), Some("group-3")),
            ] {
                all.push(ListQuery {
                    page: 3,
                    per_page: 50,
                    status,
                    group: group.map(String::from),
                    sort: Sort { key, descending },
                    ..Default::default()
                });
            }
        }
    }
    all
}

#[test]
fn on_postgres_a_page_walks_an_index_in_order_and_never_reads_the_whole_table() {
    let (_db, store) = Backend::Postgres.open();
    let conn = store.lock();
    fill(&conn);
    for query in queries() {
        let page = plan(&conn, list::page_sql(Dialect::Postgres, &query));
        assert!(
            !page.contains("Seq Scan on endpoints"),
            "{query:?}:\n{page}"
        );
        // Below the page's LIMIT, the first step on `endpoints` walks an index, and nothing sorts
        // before it: the ids come out of the walk in order and the walk stops at the page.
        let limited = &page[page.find("Limit").expect("a LIMIT")..];
        let walk = limited
            .lines()
            .find(|l| l.contains(" on endpoints"))
            .expect("a step on endpoints");
        assert!(
            walk.contains("Index Scan") || walk.contains("Index Only Scan"),
            "{query:?} walks no index of endpoints:\n{page}"
        );
        let above_walk = &limited[..limited.find(walk).unwrap_or_default()];
        assert!(
            !above_walk.contains("Sort"),
            "{query:?} sorts every match:\n{page}"
        );
    }
}

#[test]
fn on_postgres_a_page_joins_its_groups_and_tags_in_one_pass() {
    let (_db, store) = Backend::Postgres.open();
    let conn = store.lock();
    fill(&conn);
    let query = ListQuery {
        page: 1,
        per_page: 1000,
        sort: Sort {
            key: SortKey::Name,
            descending: false,
        },
        ..Default::default()
    };
    let page = plan(&conn, list::page_sql(Dialect::Postgres, &query));
    // No plan per row (a correlated subquery is a SubPlan), and no table read whole.
    assert!(!page.contains("SubPlan"), "{page}");
    assert!(!page.contains("Seq Scan on endpoint"), "{page}");
    assert!(
        page.contains("GroupAggregate") || page.contains("HashAggregate"),
        "{page}"
    );
}

#[test]
fn on_postgres_a_tag_alone_is_counted_from_its_rows() {
    let (_db, store) = Backend::Postgres.open();
    let conn = store.lock();
    fill(&conn);
    let query = ListQuery {
        tag: Some("tag-7".into()),
        ..Default::default()
    };
    let count = plan(&conn, list::count_sql(Dialect::Postgres, &query));
    assert!(!count.contains("Seq Scan on endpoint"), "{count}");
    assert!(!count.contains("Hash"), "{count}");
    assert!(count.contains("on endpoint_tags_pkey"), "{count}");
}

fn searched(search: &str) -> ListQuery {
    ListQuery {
        page: 1,
        per_page: 1000,
        search: Some(search.into()),
        ..Default::default()
    }
}

#[test]
fn on_postgres_a_search_with_a_trigram_reads_the_trigram_index_and_a_shorter_one_does_not() {
    let (_db, store) = Backend::Postgres.open();
    let conn = store.lock();
    fill(&conn);
    let count = plan(
        &conn,
        list::count_sql(Dialect::Postgres, &searched("ice-1234")),
    );
    assert!(
        count.contains("Bitmap Index Scan on endpoints_name_trgm"),
        "{count}"
    );
    // Without a trigram the index would be read whole, and every row rechecked.
    for short in ["42", "e-4", "é"] {
        let count = plan(&conn, list::count_sql(Dialect::Postgres, &searched(short)));
        assert!(!count.contains("endpoints_name_trgm"), "{short}: {count}");
    }
}

#[test]
fn without_the_trigram_extension_the_store_opens_and_a_search_reads_every_name() {
    let (_db, store) = test_backends::postgres_without_extensions();
    let conn = store.lock();
    fill(&conn);
    let indexes: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM pg_indexes WHERE indexname = 'endpoints_name_trgm'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 0);
    let expected = (1..=DEVICES)
        .filter(|n| format!("device-{}", n * 7919 % DEVICES).contains("ice-123"))
        .count();
    let (rows, total) = list::list(&conn, &searched("ICE-123")).unwrap();
    assert_eq!((rows.len(), total as usize), (expected, expected));
}

#[test]
fn on_postgres_a_liveness_flush_finds_each_row_by_its_key() {
    let (_db, store) = Backend::Postgres.open();
    let conn = store.lock();
    fill(&conn);
    let batch: Vec<LivenessUpdate> = (0..5_000)
        .map(|k| LivenessUpdate {
            id: EndpointId(k * 4 % DEVICES as u64 + 1),
            last_checkin: Some(1_000),
            addr: "198.18.0.2:4433".into(),
            migrations: 0,
            connected: k % 2 == 0,
            claim: k % 3 == 0,
            wire_ended: None,
            path_ended: None,
            path_mtu: None,
        })
        .collect();
    let rows = serde_json::to_string(&liveness::fold(&batch)).unwrap();
    let flush = plan(
        &conn,
        (
            liveness::BATCH_UPDATE.to_owned(),
            vec![Value::Text(rows), Value::Integer(1)],
        ),
    );
    assert!(
        flush.contains("Index Scan using endpoints_pkey on endpoints"),
        "{flush}"
    );
    assert!(!flush.contains("Seq Scan"), "{flush}");
}
