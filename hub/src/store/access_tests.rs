//! Scopes in SQL, on a real SQLite file: which devices a scope reaches, how the endpoint list and
//! its total narrow, and which jobs a scoped credential sees; and tokens kept by hash.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use outpost_protocol::job::{EngineMethod, JobSpec};
use outpost_protocol::{EndpointId, Secret};

use super::access::*;
use super::db::Db;
use super::endpoints::{self, EndpointKind};
use super::jobs::{self, NewJob};
use super::labels::{self, Label};
use super::list::{self, ListQuery};
use super::rollouts::Selector;
use super::tests::new_endpoint;
use super::unix_now;
use crate::access::{Principal, Role, Scope};
use crate::store::test_backends::{both_backends, Backend};

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn scope(groups: &[&str], tags: &[&str]) -> Scope {
    Scope::new(&names(groups), &names(tags)).unwrap()
}

/// A device in `group` (if any) with `tags`.
fn device(conn: &Db, name: &str, group: Option<&str>, tags: &[&str]) -> EndpointId {
    let new = new_endpoint(name, EndpointKind::Device, &Secret::generate(), None);
    let id = endpoints::create(conn, &new, 1).unwrap().id;
    if let Some(group) = group {
        let group: Label = group.parse().unwrap();
        labels::set_group(conn, id, Some(&group)).unwrap();
    }
    for tag in tags {
        labels::add_tag(conn, id, &tag.parse().unwrap()).unwrap();
    }
    id
}

/// berlin-1 (group berlin), berlin-2 (group berlin, tag pos), paris-1 (group paris, tag pos),
/// paris-2 (group paris), loose (nothing).
fn fleet(conn: &Db) -> [EndpointId; 5] {
    [
        device(conn, "berlin-1", Some("berlin"), &[]),
        device(conn, "berlin-2", Some("berlin"), &["pos"]),
        device(conn, "paris-1", Some("paris"), &["pos"]),
        device(conn, "paris-2", Some("paris"), &[]),
        device(conn, "loose", None, &[]),
    ]
}

fn a_scope_reaches_its_groups_devices_and_its_tags_devices_and_no_other(backend: Backend) {
    let (_dir, store) = backend.open();
    let conn = store.lock();
    let [b1, b2, p1, p2, loose] = fleet(&conn);
    let inside = |s: &Scope, id: EndpointId| endpoint_in_scope(&conn, id.0, s).unwrap();
    let berlin = scope(&["BERLIN"], &[]);
    assert!(inside(&berlin, b1) && inside(&berlin, b2));
    assert!(!inside(&berlin, p1) && !inside(&berlin, p2) && !inside(&berlin, loose));
    let pos = scope(&[], &["pos"]);
    assert_eq!(
        [b1, b2, p1, p2, loose].map(|id| inside(&pos, id)),
        [false, true, true, false, false]
    );
    let either = scope(&["paris"], &["pos"]);
    assert_eq!(
        first_outside(&conn, &[p1.0, p2.0, b2.0], &either).unwrap(),
        None
    );
    assert_eq!(
        first_outside(&conn, &[p1.0, b1.0], &either).unwrap(),
        Some(b1.0)
    );
    assert_eq!(
        first_unknown_label(&conn, &scope(&["paris", "rome"], &[]))
            .unwrap()
            .as_deref(),
        Some("group \"rome\"")
    );
    assert_eq!(
        first_unknown_label(&conn, &scope(&["paris"], &["kiosk"]))
            .unwrap()
            .as_deref(),
        Some("tag \"kiosk\"")
    );
    assert_eq!(first_unknown_label(&conn, &either).unwrap(), None);
}

fn the_list_and_its_total_hold_only_the_scopes_devices(backend: Backend) {
    let (_dir, store) = backend.open();
    let conn = store.lock();
    fleet(&conn);
    let listed = |scope: Option<Scope>, per_page: u32| {
        let query = ListQuery {
            page: 1,
            per_page,
            scope,
            ..Default::default()
        };
        let (rows, total) = list::list(&conn, &query).unwrap();
        (rows.into_iter().map(|r| r.name).collect::<Vec<_>>(), total)
    };
    assert_eq!(listed(None, 10).1, 5);
    assert_eq!(
        listed(Some(scope(&["berlin"], &["pos"])), 10),
        (names(&["berlin-1", "berlin-2", "paris-1"]), 3)
    );
    assert_eq!(
        listed(Some(scope(&[], &["pos"])), 1),
        (names(&["berlin-2"]), 2),
        "a page of one, the total of all"
    );
}

fn job(selector: Selector) -> NewJob {
    NewJob {
        spec: JobSpec::Engine {
            method: EngineMethod::Post,
            path: "/images/prune".into(),
            body: vec![],
        },
        selector,
        concurrency: 10,
        timeout_ms: 60_000,
        expires_at: unix_now() + 3600,
    }
}

fn a_scoped_credential_sees_the_jobs_whose_whole_selection_is_inside_it(backend: Backend) {
    let (_dir, store) = backend.open();
    let conn = store.lock();
    let [b1, _, p1, ..] = fleet(&conn);
    let select = |groups: &[&str], tags: &[&str], endpoints: &[EndpointId]| Selector {
        groups: names(groups),
        tags: names(tags),
        endpoints: endpoints.iter().map(|id| id.0).collect(),
    };
    let made: Vec<i64> = [
        select(&["Berlin"], &[], &[]),
        select(&["berlin", "paris"], &[], &[]),
        select(&[], &["pos"], &[]),
        select(&[], &[], &[b1]),
        select(&[], &[], &[b1, p1]),
    ]
    .into_iter()
    .map(|s| jobs::create(&conn, &job(s), &[]).unwrap())
    .collect();
    let seen = |scope: Option<&Scope>| {
        let (page, total) = jobs::list(&conn, 0, 10, scope).unwrap();
        let mut ids: Vec<i64> = page.iter().map(|j| j.id).collect();
        ids.reverse();
        (ids, total)
    };
    assert_eq!(seen(None), (made.clone(), 5));
    assert_eq!(
        seen(Some(&scope(&["berlin"], &[]))),
        (vec![made[0], made[3]], 2)
    );
    assert_eq!(
        seen(Some(&scope(&["berlin"], &["pos"]))),
        (vec![made[0], made[2], made[3], made[4]], 4),
        "paris-1 carries pos, so the named pair is inside"
    );
}

fn tokens_are_found_by_hash_until_revoked_and_a_live_name_is_unique(backend: Backend) {
    let (_dir, store) = backend.open();
    let conn = store.lock();
    fleet(&conn);
    let row = TokenRow {
        name: "ci".into(),
        role: Role::Operator,
        scope: Some(scope(&["berlin"], &[])),
        created_at: 5,
        revoked_at: None,
    };
    create_token(&conn, &row, "aa").unwrap();
    assert!(token_name_taken(&conn, "ci").unwrap());
    let expected = Principal {
        name: "ci".into(),
        role: Role::Operator,
        scope: Some(scope(&["berlin"], &[])),
    };
    assert_eq!(token_principal(&conn, "aa").unwrap(), Some(expected));
    assert_eq!(token_principal(&conn, "bb").unwrap(), None);
    assert!(create_token(&conn, &row, "bb").is_err(), "a second live ci");

    let revoked = revoke_token(&conn, "ci", 9).unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(9));
    assert_eq!(token_principal(&conn, "aa").unwrap(), None);
    assert_eq!(revoke_token(&conn, "ci", 10).unwrap(), None, "once");
    create_token(&conn, &row, "bb").unwrap();
    let listed = list_tokens(&conn).unwrap();
    assert_eq!(
        listed.iter().map(|t| t.revoked_at).collect::<Vec<_>>(),
        [Some(9), None]
    );
}

both_backends!(
    a_scope_reaches_its_groups_devices_and_its_tags_devices_and_no_other,
    the_list_and_its_total_hold_only_the_scopes_devices,
    a_scoped_credential_sees_the_jobs_whose_whole_selection_is_inside_it,
    tokens_are_found_by_hash_until_revoked_and_a_live_name_is_unique
);
