//! Schema migrations, applied in order on open; `PRAGMA user_version` records the last one applied.

use rusqlite::Connection;

use super::StoreError;

/// Each entry moves the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: endpoints, certificates, settings.
    "CREATE TABLE endpoints (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('device', 'fleet')),
        fleet_id INTEGER REFERENCES endpoints(id) ON DELETE SET NULL,
        secret_hash BLOB,
        preassigned_agent_id TEXT,
        agent_id TEXT UNIQUE,
        approved INTEGER NOT NULL DEFAULT 1,
        created_at INTEGER NOT NULL,
        enrolled_at INTEGER,
        enroll_count INTEGER NOT NULL DEFAULT 0,
        agent_version TEXT,
        last_checkin INTEGER,
        last_addr TEXT,
        migrations INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX endpoints_kind_name ON endpoints(kind, name);
    CREATE INDEX endpoints_fleet ON endpoints(fleet_id);
    CREATE TABLE certificates (
        serial TEXT PRIMARY KEY,
        endpoint_id INTEGER NOT NULL,
        agent_id TEXT NOT NULL,
        issued_at INTEGER NOT NULL,
        not_after INTEGER NOT NULL,
        revoked_at INTEGER
    );
    CREATE INDEX certificates_endpoint ON certificates(endpoint_id);
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    // 2: engine snapshots (latest per endpoint) and admin client certificates.
    "CREATE TABLE snapshots (
        endpoint_id INTEGER PRIMARY KEY REFERENCES endpoints(id) ON DELETE CASCADE,
        taken_at INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE admin_certs (
        serial TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        issued_at INTEGER NOT NULL,
        revoked_at INTEGER
    );",
];

/// Bring the schema to the newest version, refusing a database from a newer hub.
pub(super) fn apply(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
