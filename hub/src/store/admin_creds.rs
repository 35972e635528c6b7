//! Admin credentials in the store: the admin token's hash (a setting) and the admin client
//! certificates: recorded at issue with their role and scope, checked on each request
//! ([`super::access::certificate_principal`]), revoked by an admin.

use outpost_certs::Fingerprint;
use serde::Serialize;

use super::access::{parse_role, parse_scope, scope_json};
use super::db::{params, Db};
use super::{settings, StoreError};
use crate::access::{Principal, Role, Scope};

/// The settings row holding the SHA-256 of the admin bearer token.
pub const ADMIN_TOKEN_SETTING: &str = "admin_token_sha256";

/// An issued admin certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AdminCertRecord {
    /// Serial number, as `CertSerial` displays it.
    pub serial: String,
    /// The name in the certificate.
    pub name: String,
    /// Its role.
    #[serde(skip)]
    pub role: Role,
    /// Its scope.
    #[serde(skip)]
    pub scope: Option<Scope>,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds, when revoked.
    pub revoked_at: Option<i64>,
}

/// Every admin certificate issued, oldest first.
pub fn list_admin_certs(conn: &Db) -> Result<Vec<AdminCertRecord>, StoreError> {
    let mut statement = conn.prepare(
        "SELECT serial, name, role, scope, issued_at, revoked_at FROM admin_certs
         ORDER BY issued_at, serial",
    )?;
    let rows = statement.query_map([], |r| {
        Ok((
            r.get::<String>(0)?,
            r.get::<String>(1)?,
            r.get::<String>(2)?,
            r.get::<Option<String>>(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })?;
    rows.map(|row| {
        let (serial, name, role, scope, issued_at, revoked_at) = row?;
        Ok(AdminCertRecord {
            serial,
            name,
            role: parse_role(&role)?,
            scope: parse_scope(scope)?,
            issued_at,
            revoked_at,
        })
    })
    .collect()
}

/// Revoke the admin certificates whose serial or name is `serial_or_name` and that are still
/// valid; returns their serials (empty when none matched).
pub fn revoke_admin_certs(
    conn: &Db,
    serial_or_name: &str,
    now: i64,
) -> Result<Vec<String>, StoreError> {
    let mut statement = conn.prepare(
        "UPDATE admin_certs SET revoked_at = ?2
         WHERE (serial = ?1 OR name = ?1) AND revoked_at IS NULL RETURNING serial",
    )?;
    let serials = statement.query_map(params![serial_or_name, now], |r| r.get(0))?;
    Ok(serials.collect::<Result<_, _>>()?)
}

/// The stored admin token hash, if one is stored and readable.
pub fn admin_token_hash(conn: &Db) -> Result<Option<Fingerprint>, StoreError> {
    Ok(settings::setting(conn, ADMIN_TOKEN_SETTING)?.and_then(|hex| hex.parse().ok()))
}

/// Replace the admin token hash.
pub fn set_admin_token_hash(conn: &Db, hash: &Fingerprint) -> Result<(), StoreError> {
    settings::set_setting(conn, ADMIN_TOKEN_SETTING, &hash.to_string())
}

/// Record an issued admin certificate: who it is.
pub fn record_admin_cert(
    conn: &Db,
    serial: &str,
    who: &Principal,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO admin_certs (serial, name, role, scope, issued_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            serial,
            who.name,
            who.role.as_str(),
            scope_json(who.scope.as_ref()),
            now
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_backends::{both_backends, Backend};

    fn admin(name: &str) -> Principal {
        Principal {
            name: name.into(),
            role: Role::Admin,
            scope: None,
        }
    }

    fn revoking_by_name_or_serial_revokes_once(backend: Backend) {
        let (_dir, store) = backend.open();
        let conn = store.lock();
        let (alice, bob) = (admin("alice"), admin("bob"));
        record_admin_cert(&conn, "0a", &alice, 1).expect("record");
        record_admin_cert(&conn, "0b", &alice, 2).expect("record");
        record_admin_cert(&conn, "0c", &bob, 3).expect("record");
        assert_eq!(
            revoke_admin_certs(&conn, "alice", 10)
                .expect("revoke")
                .len(),
            2
        );
        assert!(revoke_admin_certs(&conn, "alice", 11)
            .expect("again")
            .is_empty());
        assert_eq!(
            revoke_admin_certs(&conn, "0c", 12).expect("by serial"),
            ["0c"]
        );
        let valid = |serial| super::super::access::certificate_principal(&conn, serial);
        assert_eq!(valid("0b").expect("valid?"), None);
        let listed = list_admin_certs(&conn).expect("list");
        let revoked: Vec<_> = listed.iter().map(|c| c.revoked_at).collect();
        assert_eq!(revoked, [Some(10), Some(10), Some(12)]);
    }

    fn the_token_hash_is_replaced(backend: Backend) {
        let (_dir, store) = backend.open();
        let conn = store.lock();
        assert_eq!(admin_token_hash(&conn).expect("read"), None);
        for token in [b"first".as_slice(), b"second"] {
            set_admin_token_hash(&conn, &Fingerprint::of(token)).expect("write");
            assert_eq!(
                admin_token_hash(&conn).expect("read"),
                Some(Fingerprint::of(token))
            );
        }
    }

    both_backends!(
        revoking_by_name_or_serial_revokes_once,
        the_token_hash_is_replaced
    );
}
