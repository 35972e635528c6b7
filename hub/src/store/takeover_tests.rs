//! Store tests for issue #12: a bound device re-enrols only with its key, refusals tell nothing
//! about other endpoints, the fleet pending cap, reset, and the certificate renewal life cycle.

use outpost_protocol::wire::{Refusal, RefusalReason};
use outpost_protocol::{AgentId, EndpointId, Secret};

use super::certs::{self, NewCert, RenewRefusal};
use super::endpoints::{self, EndpointKind};
use super::enroll::{self, token_matches, EnrollInput, INVALID_TOKEN};
use super::tests::{key_of, new_endpoint};
use crate::store::test_backends::{both_backends, Backend};

fn attempt(
    endpoint: EndpointId,
    secret: &Secret,
    agent: AgentId,
    key: [u8; 32],
    serial: &str,
) -> EnrollInput {
    EnrollInput {
        endpoint,
        secret_hash: secret.hash(),
        agent_id: agent,
        agent_version: "test".into(),
        cert_serial: serial.into(),
        cert_not_after: 2_000_000_000,
        public_key: key,
        max_pending: 2,
    }
}

fn refusal(conn: &mut crate::store::db::Db, input: &EnrollInput) -> Refusal {
    enroll::enroll(conn, input, 5).unwrap().unwrap_err()
}

fn device(conn: &crate::store::db::Db, secret: &Secret) -> EndpointId {
    endpoints::create(
        conn,
        &new_endpoint("dev", EndpointKind::Device, secret, None),
        1,
    )
    .unwrap()
    .id
}

fn the_bound_uuid_with_another_key_is_refused_and_changes_nothing(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    let secret = Secret::generate();
    let ep = device(&conn, &secret);
    let real = AgentId::generate();
    enroll::enroll(
        &mut conn,
        &attempt(ep, &secret, real, key_of(real), "real"),
        2,
    )
    .unwrap()
    .unwrap();
    let impostor = attempt(ep, &secret, real, [9; 32], "fake");
    let refused = refusal(&mut conn, &impostor);
    assert_eq!(refused.reason, RefusalReason::AlreadyBound);
    assert!(
        !refused.message.contains(&real.to_string()),
        "{}",
        refused.message
    );
    assert!(certs::cert_status(&conn, "fake").unwrap().is_none());
    assert!(!certs::cert_status(&conn, "real").unwrap().unwrap().revoked);
    // Another UUID gets the very same answer: the refusal does not confirm the bound UUID.
    let other = refusal(
        &mut conn,
        &attempt(ep, &secret, AgentId::generate(), [9; 32], "x"),
    );
    assert_eq!(other, refused);
}

fn the_same_key_re_enrols_and_supersedes_the_old_certificate(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    let secret = Secret::generate();
    let ep = device(&conn, &secret);
    let agent = AgentId::generate();
    enroll::enroll(
        &mut conn,
        &attempt(ep, &secret, agent, key_of(agent), "one"),
        2,
    )
    .unwrap()
    .unwrap();
    let again = enroll::enroll(
        &mut conn,
        &attempt(ep, &secret, agent, key_of(agent), "two"),
        3,
    )
    .unwrap()
    .unwrap();
    assert!(again.superseded);
    assert!(certs::cert_status(&conn, "one").unwrap().unwrap().revoked);
    assert_eq!(unrevoked(&conn, ep).len(), 1);
}

fn a_certificate_without_a_recorded_key_proves_nothing(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    let secret = Secret::generate();
    let ep = device(&conn, &secret);
    let agent = AgentId::generate();
    enroll::enroll(
        &mut conn,
        &attempt(ep, &secret, agent, key_of(agent), "old"),
        2,
    )
    .unwrap()
    .unwrap();
    conn.execute("UPDATE certificates SET public_key = NULL", [])
        .unwrap();
    let refused = refusal(
        &mut conn,
        &attempt(ep, &secret, agent, key_of(agent), "new"),
    );
    assert_eq!(refused.reason, RefusalReason::AlreadyBound);
    assert!(
        refused.message.contains("endpoint reset"),
        "{}",
        refused.message
    );
}

fn a_fleet_member_re_enrols_only_with_its_key_and_agent_ids_are_never_named(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    let secret = Secret::generate();
    let fleet = endpoints::create(
        &conn,
        &new_endpoint("pos", EndpointKind::Fleet, &secret, None),
        1,
    )
    .unwrap()
    .id;
    let member = AgentId::generate();
    let first = enroll::enroll(
        &mut conn,
        &attempt(fleet, &secret, member, key_of(member), "m1"),
        2,
    )
    .unwrap()
    .unwrap();
    let refused = refusal(&mut conn, &attempt(fleet, &secret, member, [3; 32], "m2"));
    assert_eq!(refused.reason, RefusalReason::AlreadyBound);
    assert!(
        !refused.message.contains(&first.endpoint.to_string()),
        "{}",
        refused.message
    );
    // The fleet member's UUID on a device token: refused without naming the member.
    let other_secret = Secret::generate();
    let ep = device(&conn, &other_secret);
    let refused = refusal(
        &mut conn,
        &attempt(ep, &other_secret, member, key_of(member), "d"),
    );
    assert!(
        !refused.message.contains(&first.endpoint.0.to_string()),
        "{}",
        refused.message
    );
    assert!(!refused.message.contains(&member.to_string()));
}

fn a_wrong_secret_and_an_unknown_endpoint_get_the_same_answer(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    let secret = Secret::generate();
    let ep = device(&conn, &secret);
    let agent = AgentId::generate();
    let wrong = Secret::generate();
    let bad = refusal(&mut conn, &attempt(ep, &wrong, agent, key_of(agent), "a"));
    let missing = refusal(
        &mut conn,
        &attempt(EndpointId(4242), &wrong, agent, key_of(agent), "b"),
    );
    assert_eq!(bad, missing);
    assert_eq!(bad.message, INVALID_TOKEN);
    assert!(token_matches(&conn, ep, &secret.hash()).unwrap());
    assert!(!token_matches(&conn, ep, &wrong.hash()).unwrap());
    assert!(!token_matches(&conn, EndpointId(4242), &wrong.hash()).unwrap());
}

fn a_fleet_token_stops_at_its_pending_cap_until_one_is_approved(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    let secret = Secret::generate();
    let fleet = endpoints::create(
        &conn,
        &new_endpoint("f", EndpointKind::Fleet, &secret, None),
        1,
    )
    .unwrap()
    .id;
    let mut members = Vec::new();
    for serial in ["p1", "p2"] {
        let agent = AgentId::generate();
        let outcome = enroll::enroll(
            &mut conn,
            &attempt(fleet, &secret, agent, key_of(agent), serial),
            2,
        )
        .unwrap()
        .unwrap();
        members.push((agent, outcome.endpoint));
    }
    let third = AgentId::generate();
    let refused = refusal(
        &mut conn,
        &attempt(fleet, &secret, third, key_of(third), "p3"),
    );
    assert_eq!(refused.reason, RefusalReason::TooManyPending);
    assert!(refused.reason.is_final());
    // A pending member that lost its reply still gets through at the cap.
    let (agent, _) = members[0];
    assert!(enroll::enroll(
        &mut conn,
        &attempt(fleet, &secret, agent, key_of(agent), "p1b"),
        3
    )
    .unwrap()
    .is_ok());
    assert!(endpoints::approve(&conn, members[1].1).unwrap());
    assert!(enroll::enroll(
        &mut conn,
        &attempt(fleet, &secret, third, key_of(third), "p3"),
        4
    )
    .unwrap()
    .is_ok());
}

fn a_reset_unbinds_revokes_and_kills_the_old_token(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    let secret = Secret::generate();
    let ep = device(&conn, &secret);
    let old = AgentId::generate();
    enroll::enroll(&mut conn, &attempt(ep, &secret, old, key_of(old), "o"), 2)
        .unwrap()
        .unwrap();
    let fresh = Secret::generate();
    let record = certs::reset(&mut conn, ep, &fresh.hash(), 3)
        .unwrap()
        .unwrap();
    assert_eq!(record.agent_id, None);
    assert!(certs::cert_status(&conn, "o").unwrap().unwrap().revoked);
    let dead = refusal(&mut conn, &attempt(ep, &secret, old, key_of(old), "o2"));
    assert_eq!(dead.message, INVALID_TOKEN);
    let new = AgentId::generate();
    assert!(
        enroll::enroll(&mut conn, &attempt(ep, &fresh, new, key_of(new), "n"), 4)
            .unwrap()
            .is_ok()
    );
    assert!(certs::reset(&mut conn, EndpointId(999), &fresh.hash(), 5)
        .unwrap()
        .is_none());
}

fn a_renewal_takes_over_when_first_presented_and_one_waits_at_a_time(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    let secret = Secret::generate();
    let ep = device(&conn, &secret);
    let agent = AgentId::generate();
    enroll::enroll(
        &mut conn,
        &attempt(ep, &secret, agent, key_of(agent), "c1"),
        2,
    )
    .unwrap()
    .unwrap();
    let renewal = |serial: &str| NewCert {
        serial: serial.into(),
        not_after: 3_000_000_000,
        public_key: key_of(agent),
    };
    assert_eq!(
        certs::renew(&mut conn, ep, "c1", &renewal("c2"), 3).unwrap(),
        Ok(())
    );
    assert_eq!(
        certs::renew(&mut conn, ep, "c1", &renewal("c3"), 3).unwrap(),
        Err(RenewRefusal::Outstanding)
    );
    // The reply was lost: the old certificate is presented again and the unused one goes.
    assert!(!certs::present(&mut conn, "c1", 4).unwrap().unwrap().revoked);
    assert!(certs::cert_status(&conn, "c2").unwrap().unwrap().revoked);
    assert_eq!(
        certs::renew(&mut conn, ep, "c1", &renewal("c4"), 5).unwrap(),
        Ok(())
    );
    // The new one is used: the old one is revoked.
    let status = certs::present(&mut conn, "c4", 6).unwrap().unwrap();
    assert_eq!((status.endpoint, status.revoked), (ep, false));
    assert!(certs::cert_status(&conn, "c1").unwrap().unwrap().revoked);
    assert_eq!(
        certs::renew(&mut conn, ep, "c1", &renewal("c5"), 7).unwrap(),
        Err(RenewRefusal::Revoked)
    );
    let left = unrevoked(&conn, ep);
    assert_eq!(left, vec![("c4".to_string(), Some(key_of(agent).to_vec()))]);
}

/// The serial and recorded key of each of `id`'s unrevoked certificates, oldest first.
fn unrevoked(conn: &crate::store::db::Db, id: EndpointId) -> Vec<(String, Option<Vec<u8>>)> {
    let mut stmt = conn
        .prepare(
            "SELECT serial, public_key FROM certificates
             WHERE endpoint_id = ?1 AND revoked_at IS NULL ORDER BY issued_at, serial",
        )
        .unwrap();
    let rows = stmt
        .query_map([id.0 as i64], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

both_backends!(
    the_bound_uuid_with_another_key_is_refused_and_changes_nothing,
    the_same_key_re_enrols_and_supersedes_the_old_certificate,
    a_certificate_without_a_recorded_key_proves_nothing,
    a_fleet_member_re_enrols_only_with_its_key_and_agent_ids_are_never_named,
    a_wrong_secret_and_an_unknown_endpoint_get_the_same_answer,
    a_fleet_token_stops_at_its_pending_cap_until_one_is_approved,
    a_reset_unbinds_revokes_and_kills_the_old_token,
    a_renewal_takes_over_when_first_presented_and_one_waits_at_a_time
);
