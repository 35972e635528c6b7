//! What a list page holds on both backends: each row as [`endpoints::find`] reads it (PostgreSQL
//! reads a page's groups and tags in one pass, SQLite per row), a tag's total (counted from the
//! tag's rows, less the fleets'), and a search's case folding (ASCII only, on both).

use super::endpoints;
use super::labels::{self, TagAdded};
use super::list::{self, Sort, SortKey};
use super::list_tests::{device, enrol, ids, label, liveness, names, pos_fleet, query};
use crate::store::test_backends::{both_backends, Backend};

fn a_page_holds_each_row_as_find_reads_it(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    let plain = device(&conn, "plain", 1);
    let labelled = device(&conn, "labelled", 2);
    let live = device(&conn, "live", 3);
    labels::set_group(&conn, labelled, Some(&label("Depots"))).unwrap();
    for tag in ["zeta", "Alpha", "mid"] {
        let added = labels::add_tag(&conn, labelled, &label(tag)).unwrap();
        assert_eq!(added, TagAdded::Done);
    }
    labels::set_group(&conn, live, Some(&label("shops"))).unwrap();
    labels::add_tag(&conn, live, &label("mid")).unwrap();
    liveness(&mut conn, live, Some(500), true);

    for per_page in [1, 2, 1000] {
        let mut q = query(per_page);
        q.sort = Sort {
            key: SortKey::Name,
            descending: true,
        };
        let (rows, total) = list::list(&conn, &q).unwrap();
        assert_eq!(total, 3);
        let expected: Vec<_> = [plain, live, labelled]
            .into_iter()
            .take(per_page as usize)
            .map(|id| endpoints::find(&conn, id).unwrap().unwrap())
            .collect();
        assert_eq!(rows, expected, "per_page {per_page}");
    }
    let record = endpoints::find(&conn, labelled).unwrap().unwrap();
    assert_eq!(record.group.as_deref(), Some("Depots"));
    assert_eq!(record.tags, ["Alpha", "mid", "zeta"]);
    assert!(endpoints::find(&conn, live)
        .unwrap()
        .unwrap()
        .held_by
        .is_some());
}

fn a_tags_total_counts_its_devices_not_the_fleets_that_carry_it(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    let (fleet, secret) = pos_fleet(&conn);
    labels::set_tags(&conn, fleet, &[label("pos")]).unwrap();
    let member = enrol(&mut conn, fleet, &secret);
    let tagged = device(&conn, "tagged", 3);
    labels::add_tag(&conn, tagged, &label("POS")).unwrap();
    device(&conn, "untagged", 4);

    let mut devices = query(10);
    devices.tag = Some("Pos".into());
    assert_eq!(ids(&conn, &devices), (vec![member, tagged], 2));
    devices.per_page = 1;
    devices.page = 2;
    assert_eq!(ids(&conn, &devices), (vec![tagged], 2));
    let mut fleets = query(10);
    fleets.fleets = true;
    fleets.tag = Some("pos".into());
    assert_eq!(ids(&conn, &fleets), (vec![fleet], 1));
    devices.tag = Some("nothing".into());
    assert_eq!(ids(&conn, &devices), (vec![], 0));
}

fn a_search_folds_ascii_case_only(backend: Backend) {
    let (_dir, store) = backend.open();
    let conn = store.lock();
    for name in ["café-1", "CAFÉ-2", "Café-3", "cafe-4"] {
        device(&conn, name, 1);
    }
    let search = |text: &str| {
        let mut q = query(10);
        q.search = Some(text.into());
        let found = names(&conn, &q);
        let (_, total) = ids(&conn, &q);
        assert_eq!(total as usize, found.len(), "{text}");
        found
    };
    assert_eq!(search("caf"), ["café-1", "CAFÉ-2", "Café-3", "cafe-4"]);
    assert_eq!(search("café"), ["café-1", "Café-3"]);
    assert_eq!(search("CAFÉ"), ["CAFÉ-2"]);
    assert_eq!(search("é-"), ["café-1", "Café-3"]);
    assert_eq!(search("fe-4"), ["cafe-4"]);
}

both_backends!(
    a_page_holds_each_row_as_find_reads_it,
    a_tags_total_counts_its_devices_not_the_fleets_that_carry_it,
    a_search_folds_ascii_case_only
);
