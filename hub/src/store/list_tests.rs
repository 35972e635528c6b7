//! The endpoint list: paging, sorting, search, status, groups and tags, and the query plans.

use outpost_protocol::{AgentId, EndpointId, Secret};

use super::db::{params_from_iter, Db, Dialect};
use super::endpoints::{self, EndpointKind};
use super::enroll::{self, EnrollInput};
use super::hubs::{self, test_hub};
use super::labels::{self, Label, LabelError, TagAdded, MAX_TAGS};
use super::list::{self, ListQuery, Sort, SortKey, StatusFilter};
use super::liveness::{self, LivenessUpdate};
use super::tests::new_endpoint;
use crate::store::test_backends::{both_backends, Backend};

pub(super) fn device(conn: &Db, name: &str, created_at: i64) -> EndpointId {
    let new = new_endpoint(name, EndpointKind::Device, &Secret::generate(), None);
    endpoints::create(conn, &new, created_at).unwrap().id
}

pub(super) fn liveness(conn: &mut Db, id: EndpointId, at: Option<i64>, connected: bool) {
    let update = LivenessUpdate {
        id,
        last_checkin: at,
        addr: "127.0.0.1:1".into(),
        migrations: 0,
        connected,
        claim: false,
        wire_ended: None,
        path_ended: None,
        path_mtu: None,
    };
    let hub = test_hub(conn);
    liveness::write_liveness(conn, hub, &[update]).unwrap();
}

/// A session that checked in at `at` and has since gone.
fn checked_in(conn: &mut Db, id: EndpointId, at: i64) {
    liveness(conn, id, Some(at), false);
}

pub(super) fn label(text: &str) -> Label {
    text.parse().unwrap()
}

pub(super) fn query(per_page: u32) -> ListQuery {
    ListQuery {
        page: 1,
        per_page,
        ..Default::default()
    }
}

pub(super) fn ids(conn: &Db, query: &ListQuery) -> (Vec<EndpointId>, u64) {
    let (rows, total) = list::list(conn, query).unwrap();
    (rows.into_iter().map(|r| r.id).collect(), total)
}

pub(super) fn names(conn: &Db, query: &ListQuery) -> Vec<String> {
    let (rows, _) = list::list(conn, query).unwrap();
    rows.into_iter().map(|r| r.name).collect()
}

fn pages_follow_the_sort_and_the_total_counts_every_match(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    // Created in this order; names sort differently; two share a creation second.
    let specs = [("delta", 10), ("Alpha", 20), ("charlie", 20), ("bravo", 30)];
    let made: Vec<EndpointId> = specs.iter().map(|(n, t)| device(&conn, n, *t)).collect();
    checked_in(&mut conn, made[0], 500);
    checked_in(&mut conn, made[3], 400);

    let mut q = query(10);
    assert_eq!(names(&conn, &q), ["delta", "Alpha", "charlie", "bravo"]);
    q.sort = Sort {
        key: SortKey::Name,
        descending: false,
    };
    assert_eq!(names(&conn, &q), ["Alpha", "bravo", "charlie", "delta"]);
    q.sort.descending = true;
    assert_eq!(names(&conn, &q), ["delta", "charlie", "bravo", "Alpha"]);
    q.sort = Sort {
        key: SortKey::Created,
        descending: true,
    };
    // Same second: the later id first when descending.
    assert_eq!(names(&conn, &q), ["bravo", "charlie", "Alpha", "delta"]);
    q.sort.key = SortKey::LastCheckin;
    // Newest check-in first, never-seen last.
    assert_eq!(names(&conn, &q), ["delta", "bravo", "charlie", "Alpha"]);

    let mut paged = query(3);
    paged.page = 2;
    assert_eq!(ids(&conn, &paged), (vec![made[3]], 4));
    paged.page = 9;
    assert_eq!(ids(&conn, &paged), (vec![], 4));
}

fn search_is_a_case_insensitive_substring_with_literal_wildcards(backend: Backend) {
    let (_dir, store) = backend.open();
    let conn = store.lock();
    for name in ["kiosk_1", "kiosk-2", "KIOSK_3", "sign%4", "sign-5"] {
        device(&conn, name, 1);
    }
    let search = |text: &str| {
        let mut q = query(10);
        q.search = Some(text.into());
        names(&conn, &q)
    };
    assert_eq!(search("kiosk_"), ["kiosk_1", "KIOSK_3"]);
    assert_eq!(search("Kiosk"), ["kiosk_1", "kiosk-2", "KIOSK_3"]);
    assert_eq!(search("%"), ["sign%4"]);
    assert!(search("absent").is_empty());
}

fn status_is_answered_from_the_connected_flag_and_the_active_set(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    let never = device(&conn, "never", 1);
    let gone = device(&conn, "gone", 1);
    let long_connected = device(&conn, "long-connected", 1);
    let summoned = device(&conn, "summoned", 1);
    // Gone a moment ago: its stored check-in is the newest, yet it is offline.
    checked_in(&mut conn, gone, 1_000);
    // Connected for hours: its stored check-in is old (refreshed only at checkpoints), yet online.
    liveness(&mut conn, long_connected, Some(100), true);
    // Connected, no check-in yet.
    liveness(&mut conn, summoned, None, true);
    let (fleet, secret) = pos_fleet(&conn);
    let pending = enrol(&mut conn, fleet, &secret);
    liveness(&mut conn, pending, Some(1_000), true);

    let with = |status| {
        let mut q = query(10);
        q.status = Some(status);
        ids(&conn, &q)
    };
    assert_eq!(with(StatusFilter::Pending), (vec![pending], 1));
    assert_eq!(with(StatusFilter::Offline), (vec![never, gone], 2));
    let online = |except| StatusFilter::Online { except };
    assert_eq!(with(online(vec![])), (vec![long_connected, summoned], 2));
    assert_eq!(with(online(vec![summoned])), (vec![long_connected], 1));
    assert_eq!(
        with(StatusFilter::Among(vec![summoned, pending])),
        (vec![summoned], 1)
    );

    // A restart forgets every session of the hub until the agents are back.
    assert_eq!(hubs::release(&conn, test_hub(&conn)).unwrap(), 3);
    assert_eq!(with(online(vec![])), (vec![], 0));
    assert_eq!(with(StatusFilter::Offline).1, 4);
    let record = endpoints::find(&conn, long_connected).unwrap().unwrap();
    assert_eq!(record.last_checkin, Some(100), "last seen is kept");
}

/// A fleet named `pos`, created at 1, and the secret its devices enrol with ([`enrol`]).
pub(super) fn pos_fleet(conn: &Db) -> (EndpointId, Secret) {
    let secret = Secret::generate();
    let new = new_endpoint("pos", EndpointKind::Fleet, &secret, None);
    (endpoints::create(conn, &new, 1).unwrap().id, secret)
}

pub(super) fn enrol(conn: &mut Db, fleet: EndpointId, secret: &Secret) -> EndpointId {
    let agent_id = AgentId::generate();
    let input = EnrollInput {
        endpoint: fleet,
        secret_hash: secret.hash(),
        agent_id,
        agent_version: "test".into(),
        cert_serial: format!("{:x}", rand::random::<u64>()),
        cert_not_after: 2_000_000_000,
        public_key: super::tests::key_of(agent_id),
        max_pending: u32::MAX,
    };
    enroll::enroll(conn, &input, 2).unwrap().unwrap().endpoint
}

fn groups_and_tags_filter_and_are_matched_ignoring_case(backend: Backend) {
    let (_dir, store) = backend.open();
    let conn = store.lock();
    let a = device(&conn, "a", 1);
    let b = device(&conn, "b", 2);
    let c = device(&conn, "c", 3);
    assert!(labels::set_group(&conn, a, Some(&label("Shops"))).unwrap());
    assert!(labels::set_group(&conn, b, Some(&label("shops"))).unwrap());
    assert!(labels::set_group(&conn, c, Some(&label("depots"))).unwrap());
    assert!(!labels::set_group(&conn, EndpointId(99), Some(&label("x"))).unwrap());
    for (id, tag) in [(a, "prod"), (a, "eu"), (b, "PROD"), (c, "eu")] {
        assert_eq!(
            labels::add_tag(&conn, id, &label(tag)).unwrap(),
            TagAdded::Done
        );
    }
    let filtered = |group: Option<&str>, tag: Option<&str>| {
        let mut q = query(10);
        q.group = group.map(String::from);
        q.tag = tag.map(String::from);
        ids(&conn, &q)
    };
    assert_eq!(filtered(Some("SHOPS"), None), (vec![a, b], 2));
    assert_eq!(filtered(None, Some("prod")), (vec![a, b], 2));
    assert_eq!(filtered(Some("depots"), Some("eu")), (vec![c], 1));
    assert_eq!(filtered(Some("nowhere"), None), (vec![], 0));
    assert_eq!(filtered(None, Some("nothing")), (vec![], 0));

    let record = endpoints::find(&conn, a).unwrap().unwrap();
    assert_eq!(record.group.as_deref(), Some("Shops"));
    assert_eq!(record.tags, ["eu", "prod"]);

    assert!(labels::remove_tag(&conn, a, &label("Prod")).unwrap());
    assert!(!labels::remove_tag(&conn, a, &label("prod")).unwrap());
    assert_eq!(filtered(None, Some("prod")), (vec![b], 1));
    assert!(labels::set_group(&conn, b, None).unwrap());
    assert_eq!(filtered(Some("shops"), None), (vec![a], 1));
    assert_eq!(
        labels::set_tags(&conn, c, &[label("x"), label("y")]).unwrap(),
        TagAdded::Done
    );
    assert_eq!(endpoints::find(&conn, c).unwrap().unwrap().tags, ["x", "y"]);
}

fn an_endpoint_carries_a_bounded_number_of_tags_and_loses_them_on_removal(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    let id = device(&conn, "busy", 1);
    for i in 0..MAX_TAGS {
        let tag = label(&format!("t{i}"));
        assert_eq!(labels::add_tag(&conn, id, &tag).unwrap(), TagAdded::Done);
    }
    assert_eq!(
        labels::add_tag(&conn, id, &label("one-more")).unwrap(),
        TagAdded::Full
    );
    // Adding a tag it already has is not growth.
    assert_eq!(
        labels::add_tag(&conn, id, &label("t0")).unwrap(),
        TagAdded::Done
    );
    assert_eq!(
        labels::add_tag(&conn, EndpointId(99), &label("t0")).unwrap(),
        TagAdded::NoEndpoint
    );
    endpoints::remove(&mut conn, id, 2).unwrap();
    let left: i64 = conn
        .query_row("SELECT COUNT(*) FROM endpoint_tags", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);
}

fn fleet_devices_start_with_the_fleet_group_and_tags(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    let (fleet, secret) = pos_fleet(&conn);
    labels::set_group(&conn, fleet, Some(&label("stores"))).unwrap();
    labels::set_tags(&conn, fleet, &[label("pos"), label("eu")]).unwrap();
    let member = enrol(&mut conn, fleet, &secret);
    let record = endpoints::find(&conn, member).unwrap().unwrap();
    assert_eq!(record.group.as_deref(), Some("stores"));
    assert_eq!(record.tags, ["eu", "pos"]);
}

fn an_older_liveness_update_does_not_move_a_check_in_back(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    let id = device(&conn, "x", 1);
    checked_in(&mut conn, id, 200);
    checked_in(&mut conn, id, 150);
    liveness(&mut conn, id, None, true);
    let record = endpoints::find(&conn, id).unwrap().unwrap();
    assert_eq!(record.last_checkin, Some(200));
}

fn a_batch_is_written_in_order_so_a_reconnection_after_a_departure_stays_connected(
    backend: Backend,
) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    let id = device(&conn, "x", 1);
    let update = |at, connected| LivenessUpdate {
        id,
        last_checkin: Some(at),
        addr: format!("127.0.0.1:{at}"),
        migrations: 0,
        connected,
        claim: false,
        wire_ended: None,
        path_ended: None,
        path_mtu: None,
    };
    let hub = test_hub(&conn);
    liveness::write_liveness(
        &mut conn,
        hub,
        &[update(10, true), update(20, false), update(20, true)],
    )
    .unwrap();
    let mut online = query(10);
    online.status = Some(StatusFilter::Online { except: vec![] });
    assert_eq!(ids(&conn, &online), (vec![id], 1));
    let record = endpoints::find(&conn, id).unwrap().unwrap();
    assert_eq!(record.last_addr.as_deref(), Some("127.0.0.1:20"));
}

#[test]
fn group_and_tag_names_are_validated() {
    assert_eq!(" ".parse::<Label>(), Err(LabelError::Empty));
    assert_eq!("a,b".parse::<Label>(), Err(LabelError::Forbidden(',')));
    assert_eq!("a\nb".parse::<Label>(), Err(LabelError::Forbidden('\n')));
    assert_eq!("x".repeat(65).parse::<Label>(), Err(LabelError::TooLong));
    assert_eq!(label(" eu-west ").as_str(), "eu-west");
}

/// Every combination of filter and sort the API can ask for.
fn combinations() -> Vec<ListQuery> {
    let statuses = [
        None,
        Some(StatusFilter::Pending),
        Some(StatusFilter::Offline),
        Some(StatusFilter::Online {
            except: vec![EndpointId(1)],
        }),
        Some(StatusFilter::Among(vec![EndpointId(1)])),
    ];
    let mut all = Vec::new();
    for key in [SortKey::Name, SortKey::Created, SortKey::LastCheckin] {
        for descending in [false, true] {
            for status in &statuses {
                for (search, group, tag) in [
                    (None, None, None),
                    (Some("k"), None, None),
                    (None, Some("g"), None),
                    (None, None, Some("t")),
                ] {
                    all.push(ListQuery {
                        page: 3,
                        per_page: 50,
                        search: search.map(String::from),
                        status: status.clone(),
                        group: group.map(String::from),
                        tag: tag.map(String::from),
                        fleets: false,
                        scope: None,
                        sort: Sort { key, descending },
                    });
                }
            }
        }
    }
    all
}

fn plan(conn: &Db, (sql, args): (String, Vec<crate::store::db::Value>)) -> Vec<String> {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    stmt.query_map(params_from_iter(&args), |r| r.get::<String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// SQLite's plans (its planner's choices are fixed by the schema alone, so an empty database
/// shows them); PostgreSQL's, which depend on the table's statistics, are in
/// `list_plan_tests.rs`.
#[test]
fn every_filter_and_sort_walks_one_index_in_order_and_reads_only_the_page() {
    let (_dir, store) = Backend::Sqlite.open();
    let conn = store.lock();
    for query in combinations() {
        let count = plan(&conn, list::count_sql(Dialect::Sqlite, &query));
        let page = plan(&conn, list::page_sql(Dialect::Sqlite, &query));
        for steps in [&count, &page] {
            let table_scan = steps
                .iter()
                .any(|step| step.starts_with("SCAN endpoints") && !step.contains("INDEX"));
            assert!(!table_scan, "{query:?} scans the table: {steps:#?}");
            assert!(
                steps
                    .iter()
                    .any(|s| s.starts_with("SEARCH endpoints USING")),
                "{query:?}: {steps:#?}"
            );
        }
        // A tag's count costs the tag's size, not the fleet's. Alone, it counts the tag's rows
        // and looks up each fleet's by key; with other filters, it visits the tag's endpoints
        // by id.
        let has = |steps: &[String], step: &str| steps.iter().any(|s| s == step);
        let alone = query.search.is_none() && query.group.is_none() && query.status.is_none();
        let counted_by_key = has(&count, "SEARCH endpoint_tags USING PRIMARY KEY (tag_id=?)")
            && has(
                &count,
                "SEARCH endpoint_tags USING PRIMARY KEY (tag_id=? AND endpoint_id=?)",
            );
        let by_id = has(
            &count,
            "SEARCH endpoints USING INTEGER PRIMARY KEY (rowid=?)",
        );
        assert!(
            query.tag.is_none() || if alone { counted_by_key } else { by_id },
            "{query:?}: {count:#?}"
        );
        // The page's rows are read by id; the one sort orders that page, never the matches.
        assert!(
            page.iter()
                .any(|s| s == "SEARCH endpoints USING INTEGER PRIMARY KEY (rowid=?)"),
            "{query:?}: {page:#?}"
        );
        let sorts = page
            .iter()
            .filter(|s| *s == "USE TEMP B-TREE FOR ORDER BY")
            .count();
        assert_eq!(sorts, 1, "{query:?}: {page:#?}");
        // Without a name search, the page's ids come from the index alone.
        let covered = page
            .iter()
            .any(|s| s.starts_with("SEARCH endpoints USING COVERING INDEX"));
        assert!(covered || query.search.is_some(), "{query:?}: {page:#?}");
        // That index is the sort key's (after the group, when there is one), status included.
        let walked = format!("USING COVERING INDEX {} (", sort_index(&query));
        assert!(
            query.search.is_some() || page.iter().any(|s| s.contains(&walked)),
            "{query:?} does not walk {walked}: {page:#?}"
        );
        // A status count (without a tag, which drives it, or a name search, answered from the
        // names in an index) is one range of the status index.
        let by_status = matches!(
            query.status,
            Some(StatusFilter::Online { .. } | StatusFilter::Offline)
        );
        let ranged = count.iter().any(|s| {
            s.starts_with("SEARCH endpoints USING COVERING INDEX endpoints_live (kind=? AND connected=? AND approved=?")
        });
        assert!(
            !by_status || query.tag.is_some() || query.search.is_some() || ranged,
            "{query:?}: {count:#?}"
        );
    }
}

/// The index a page of `query` walks in order.
fn sort_index(query: &ListQuery) -> String {
    let key = match query.sort.key {
        SortKey::Name => "name",
        SortKey::Created => "created",
        SortKey::LastCheckin => "checkin",
    };
    let group = if query.group.is_some() { "group_" } else { "" };
    format!("endpoints_{group}{key}")
}

both_backends!(
    pages_follow_the_sort_and_the_total_counts_every_match,
    search_is_a_case_insensitive_substring_with_literal_wildcards,
    status_is_answered_from_the_connected_flag_and_the_active_set,
    groups_and_tags_filter_and_are_matched_ignoring_case,
    an_endpoint_carries_a_bounded_number_of_tags_and_loses_them_on_removal,
    fleet_devices_start_with_the_fleet_group_and_tags,
    an_older_liveness_update_does_not_move_a_check_in_back,
    a_batch_is_written_in_order_so_a_reconnection_after_a_departure_stays_connected
);
