//! Schema migrations, applied in order on open; `PRAGMA user_version` records the last one applied
//! on SQLite, a `schema_version` table on PostgreSQL. The list is written once, in SQLite's
//! dialect; [`postgres::translate`] gives PostgreSQL's.

mod postgres;

use super::db::{Db, Dialect};
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
    // 3: groups and tags, and the indexes the endpoint list pages through. Every list query filters
    // on `kind`; each sort key (name, created, last check-in) has an index, alone and after a group,
    // that ends in the id (the tie-break) and carries `approved` and `last_checkin`, so a page's ids
    // come from walking one index, status filter included, without reading the table. Pending
    // devices are few: a partial index keeps them a short walk away. Tag membership is keyed by tag.
    "CREATE TABLE groups (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE
    );
    CREATE TABLE tags (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE
    );
    ALTER TABLE endpoints ADD COLUMN group_id INTEGER REFERENCES groups(id);
    CREATE TABLE endpoint_tags (
        tag_id INTEGER NOT NULL REFERENCES tags(id),
        endpoint_id INTEGER NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
        PRIMARY KEY (tag_id, endpoint_id)
    ) WITHOUT ROWID;
    CREATE INDEX endpoint_tags_endpoint ON endpoint_tags(endpoint_id);
    DROP INDEX endpoints_kind_name;
    CREATE INDEX endpoints_name
        ON endpoints(kind, name COLLATE NOCASE, id, approved, last_checkin);
    CREATE INDEX endpoints_created ON endpoints(kind, created_at, id, approved, last_checkin);
    CREATE INDEX endpoints_checkin ON endpoints(kind, last_checkin, id, approved);
    CREATE INDEX endpoints_group_name
        ON endpoints(kind, group_id, name COLLATE NOCASE, id, approved, last_checkin);
    CREATE INDEX endpoints_group_created
        ON endpoints(kind, group_id, created_at, id, approved, last_checkin);
    CREATE INDEX endpoints_group_checkin ON endpoints(kind, group_id, last_checkin, id, approved);
    CREATE INDEX endpoints_pending ON endpoints(kind, name COLLATE NOCASE, id) WHERE approved = 0;",
    // 4: whether the hub holds a live session for the endpoint (`connected`), written by the
    // sparse liveness flush (a session going live or stale, a departure; cleared at start and on
    // a clean shutdown), so the list's status filters no longer read `last_checkin`, which is
    // refreshed only every few minutes. The sort-key indexes carry `connected` instead of
    // `last_checkin`, and one more index answers a status count (and a group's) as a range.
    "ALTER TABLE endpoints ADD COLUMN connected INTEGER NOT NULL DEFAULT 0;
    DROP INDEX endpoints_name;
    DROP INDEX endpoints_created;
    DROP INDEX endpoints_checkin;
    DROP INDEX endpoints_group_name;
    DROP INDEX endpoints_group_created;
    DROP INDEX endpoints_group_checkin;
    CREATE INDEX endpoints_name ON endpoints(kind, name COLLATE NOCASE, id, approved, connected);
    CREATE INDEX endpoints_created ON endpoints(kind, created_at, id, approved, connected);
    CREATE INDEX endpoints_checkin ON endpoints(kind, last_checkin, id, approved, connected);
    CREATE INDEX endpoints_group_name
        ON endpoints(kind, group_id, name COLLATE NOCASE, id, approved, connected);
    CREATE INDEX endpoints_group_created
        ON endpoints(kind, group_id, created_at, id, approved, connected);
    CREATE INDEX endpoints_group_checkin
        ON endpoints(kind, group_id, last_checkin, id, approved, connected);
    CREATE INDEX endpoints_live ON endpoints(kind, connected, approved, group_id);",
    // 5: bytes on the wire per endpoint across its connections (metered links): each finished
    // connection's UDP payload bytes are added when it ends.
    "ALTER TABLE endpoints ADD COLUMN wire_tx_bytes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE endpoints ADD COLUMN wire_rx_bytes INTEGER NOT NULL DEFAULT 0;",
    // 6: the key each agent certificate certifies (SHA-256 of its SubjectPublicKeyInfo), so a
    // bound device re-enrols only with the key on record. Older rows stay NULL: they prove
    // nothing, and such a device re-enrols only after an admin's `endpoint reset`.
    "ALTER TABLE certificates ADD COLUMN public_key BLOB;",
    // 7: the path each device's last connection measured (bottleneck rate, minimum round trip,
    // when), so the next connection, after a reconnect or a hub restart, resumes at that rate once
    // its round trip matches (Careful Resume, `outpost_transport::congestion::PathMemory`).
    "ALTER TABLE endpoints ADD COLUMN path_rate INTEGER;
    ALTER TABLE endpoints ADD COLUMN path_min_rtt_us INTEGER;
    ALTER TABLE endpoints ADD COLUMN path_measured_at INTEGER;",
    // 8: stacks and their immutable versions. A version is stored once (the Compose file as sent,
    // for `stack show`, and the normalised spec devices receive, postcard) and shared by every
    // device that runs it; its digest names the content.
    "CREATE TABLE stacks (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE stack_versions (
        stack_id INTEGER NOT NULL REFERENCES stacks(id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        digest BLOB NOT NULL,
        compose TEXT NOT NULL,
        spec BLOB NOT NULL,
        PRIMARY KEY (stack_id, version)
    );",
    // 9: what each device should run (one version per stack) and the last phase it reported for
    // it. The device's desired state is these rows' specs; a stack assigned to any device cannot
    // be removed (the foreign key, and `stack rm` says so first).
    "CREATE TABLE deployments (
        endpoint_id INTEGER NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
        stack_id INTEGER NOT NULL,
        version INTEGER NOT NULL,
        assigned_at INTEGER NOT NULL,
        phase TEXT NOT NULL DEFAULT 'queued',
        reason TEXT,
        pull_done INTEGER,
        pull_total INTEGER,
        reported_at INTEGER,
        PRIMARY KEY (endpoint_id, stack_id),
        FOREIGN KEY (stack_id, version) REFERENCES stack_versions(stack_id, version)
    );
    CREATE INDEX deployments_stack ON deployments(stack_id, version);",
    // 10: rollouts. The controller's own fields and each target's record are kept as JSON
    // (`crate::rollout::persist`): a report rewrites one target row, not the rollout. The
    // selector is kept so a device that joins a group or tag later can be matched.
    "CREATE TABLE rollouts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        stack_id INTEGER NOT NULL,
        version INTEGER NOT NULL,
        selector TEXT NOT NULL,
        record TEXT NOT NULL,
        active INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        FOREIGN KEY (stack_id, version) REFERENCES stack_versions(stack_id, version)
    );
    CREATE INDEX rollouts_active ON rollouts(active) WHERE active = 1;
    CREATE TABLE rollout_targets (
        rollout_id INTEGER NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        endpoint_id INTEGER NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (rollout_id, position)
    );",
    // 11: jobs. The specification is stored once (postcard); each target's row holds its state
    // and, once the device reports, its outcome (JSON) and kept output.
    "CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        spec BLOB NOT NULL,
        summary TEXT NOT NULL,
        selector TEXT NOT NULL,
        concurrency INTEGER NOT NULL,
        timeout_ms INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        cancelled_at INTEGER,
        finished_at INTEGER
    );
    CREATE INDEX jobs_open ON jobs(id) WHERE finished_at IS NULL;
    CREATE TABLE job_targets (
        job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        endpoint_id INTEGER NOT NULL,
        state TEXT NOT NULL,
        outcome TEXT,
        head BLOB,
        tail BLOB,
        output_bytes INTEGER,
        duration_ms INTEGER,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (job_id, endpoint_id)
    ) WITHOUT ROWID;
    CREATE INDEX job_targets_state ON job_targets(job_id, state);",
    // 12: a rollout's counts by state (JSON), written with every save, so listing rollouts reads
    // one row each, not every target of the finished ones. NULL for rollouts saved before.
    "ALTER TABLE rollouts ADD COLUMN counts TEXT;",
    // 13: a deployment whose drift the device only reports (`--on-drift report`).
    "ALTER TABLE deployments ADD COLUMN report_drift INTEGER NOT NULL DEFAULT 0;",
    // 14: named API tokens (stored hashed) and a role and scope for every credential. A scope is
    // JSON `{"groups": [...], "tags": [...]}`, NULL for the whole fleet. A revoked token keeps its
    // row (who held what, for the audit trail), so only live names are unique.
    "CREATE TABLE api_tokens (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        scope TEXT,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    );
    CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens(name) WHERE revoked_at IS NULL;
    ALTER TABLE admin_certs ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';
    ALTER TABLE admin_certs ADD COLUMN scope TEXT;",
    // 15: the audit trail, append-only: one row per state-changing call (`crate::audit`), found by
    // time, by credential or by device, each newest first.
    "CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms INTEGER NOT NULL,
        who TEXT NOT NULL,
        endpoint_id INTEGER,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        status INTEGER NOT NULL,
        bytes_in INTEGER NOT NULL,
        bytes_out INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        hijacked INTEGER NOT NULL
    );
    CREATE INDEX audit_at ON audit(at_ms);
    CREATE INDEX audit_who ON audit(who, at_ms);
    CREATE INDEX audit_endpoint ON audit(endpoint_id, at_ms) WHERE endpoint_id IS NOT NULL;",
    // 16: webhooks (`crate::alerts`): the subscriptions with their signing secrets; each event once
    // (its JSON body) and one delivery row per event and webhook, so a restarted hub retries
    // what was not delivered; a partial index finds the due ones. Offline thresholds by group
    // (the empty name is the default), the outages that raised `offline` (their `online` is
    // owed across a restart) and the certificate expiry each device was warned of.
    "CREATE TABLE webhooks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        url TEXT NOT NULL,
        events TEXT NOT NULL,
        secret TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE webhook_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE webhook_deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        webhook_id INTEGER NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
        event_id INTEGER NOT NULL REFERENCES webhook_events(id) ON DELETE CASCADE,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER,
        last_status INTEGER,
        last_error TEXT,
        delivered_at INTEGER,
        gave_up_at INTEGER,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_ms)
        WHERE next_attempt_ms IS NOT NULL;
    CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries(webhook_id, id);
    CREATE INDEX webhook_deliveries_event ON webhook_deliveries(event_id);
    CREATE TABLE alert_thresholds (
        group_name TEXT PRIMARY KEY COLLATE NOCASE,
        after_ms INTEGER NOT NULL
    );
    CREATE TABLE alert_outages (
        endpoint_id INTEGER PRIMARY KEY,
        since_ms INTEGER NOT NULL
    );
    CREATE TABLE alert_cert_expiry (
        endpoint_id INTEGER PRIMARY KEY,
        not_after INTEGER NOT NULL
    );",
    // 17: bytes each device cost per budget period and class, byte budgets and transfer windows
    // (issue #16).
    "CREATE TABLE traffic (
        endpoint_id INTEGER NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
        period_start INTEGER NOT NULL,
        class TEXT NOT NULL,
        up INTEGER NOT NULL,
        down INTEGER NOT NULL,
        PRIMARY KEY (endpoint_id, period_start, class)
    ) WITHOUT ROWID;
    CREATE TABLE budgets (
        scope TEXT NOT NULL CHECK (scope IN ('fleet', 'group', 'endpoint')),
        name TEXT NOT NULL COLLATE NOCASE,
        bytes INTEGER NOT NULL CHECK (bytes >= 0),
        PRIMARY KEY (scope, name)
    ) WITHOUT ROWID;
    CREATE TABLE transfer_windows (
        scope TEXT NOT NULL CHECK (scope IN ('fleet', 'group', 'endpoint')),
        name TEXT NOT NULL COLLATE NOCASE,
        start_minute INTEGER NOT NULL CHECK (start_minute BETWEEN 0 AND 1439),
        end_minute INTEGER NOT NULL CHECK (end_minute BETWEEN 0 AND 1439),
        PRIMARY KEY (scope, name)
    ) WITHOUT ROWID;",
    // 18: the hubs sharing this store (issue #18), and which of them holds each device's session.
    // A hub's row is keyed by its name, so a restarted hub keeps its id; `agent_addrs` is a JSON
    // array of the addresses agents dial. `held_by` is set by the liveness flush of the hub a
    // device checks in to, and cleared with `connected`; the partial index finds a hub's devices.
    "CREATE TABLE hubs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        agent_addrs TEXT NOT NULL,
        api_url TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        heartbeat_at INTEGER NOT NULL,
        stopped_at INTEGER
    );
    ALTER TABLE endpoints ADD COLUMN held_by INTEGER REFERENCES hubs(id) ON DELETE SET NULL;
    CREATE INDEX endpoints_held_by ON endpoints(held_by) WHERE connected = 1;",
    // 19: the hub coordinating each rollout (issue #18): the one it was started on, or the one
    // that took it over when that hub died. Rollouts from before are taken by the first hub that
    // starts.
    "ALTER TABLE rollouts ADD COLUMN hub_id INTEGER REFERENCES hubs(id) ON DELETE SET NULL;",
    // 20: which data directory runs each hub (a random id kept there), so a second hub started
    // under a live hub's name is refused instead of sharing its row.
    "ALTER TABLE hubs ADD COLUMN instance TEXT;",
    // 21: the hub coordinating each job (issue #18), as 19 for rollouts: the one it was created
    // on, or the one that took it over when that hub died. Jobs from before are taken by the
    // first hub that starts.
    "ALTER TABLE jobs ADD COLUMN hub_id INTEGER REFERENCES hubs(id) ON DELETE SET NULL;",
    // 22: the path MTU each device's last UDP connection found, so the next connection from its
    // network starts at it instead of searching again (issue #18, the restart's set-up cost). A
    // table of its own: a column more on `endpoints` widens its rows, and SQLite's planner then
    // chose another index for the endpoint list (`list_tests.rs`'s plan test).
    "CREATE TABLE endpoint_paths (
        endpoint_id INTEGER PRIMARY KEY REFERENCES endpoints(id) ON DELETE CASCADE,
        path_mtu INTEGER NOT NULL
    );",
];

/// Bring the schema to the newest version, refusing a database from a newer hub.
pub(super) fn apply(conn: &mut Db) -> Result<(), StoreError> {
    if conn.dialect() == Dialect::Sqlite {
        return apply_all(conn);
    }
    postgres::lock(conn)?;
    let applied = apply_all(conn).map(|()| postgres::search_index(conn));
    postgres::unlock(conn)?;
    applied
}

fn apply_all(conn: &mut Db) -> Result<(), StoreError> {
    let current = version(conn)?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        match tx.dialect() {
            Dialect::Sqlite => tx.execute_batch(sql)?,
            Dialect::Postgres => tx.execute_batch(&postgres::translate(sql))?,
        }
        set_version(&tx, index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// The last migration applied.
fn version(conn: &Db) -> Result<i64, StoreError> {
    match conn.dialect() {
        Dialect::Sqlite => Ok(conn.query_row("PRAGMA user_version", (), |row| row.get(0))?),
        Dialect::Postgres => postgres::version(conn),
    }
}

/// Record `version` as the last migration applied, in the caller's transaction.
fn set_version(conn: &Db, version: i64) -> Result<(), StoreError> {
    match conn.dialect() {
        Dialect::Sqlite => Ok(conn.execute_batch(&format!("PRAGMA user_version = {version}"))?),
        Dialect::Postgres => postgres::set_version(conn, version),
    }
}

#[cfg(test)]
mod tests {
    use crate::store::db::Db;
    use outpost_protocol::EndpointId;

    use super::{apply, set_version, version, MIGRATIONS};
    use crate::store::endpoints;

    fn sqlite_in_memory() -> rusqlite::Result<Db> {
        rusqlite::Connection::open_in_memory().map(Db::Sqlite)
    }

    #[test]
    fn a_version_2_database_keeps_its_endpoints_and_gains_groups_and_tags() {
        let mut conn = sqlite_in_memory().unwrap();
        for sql in &MIGRATIONS[..2] {
            conn.execute_batch(sql).unwrap();
        }
        set_version(&conn, 2).unwrap();
        conn.execute(
            "INSERT INTO endpoints (name, kind, created_at) VALUES ('old', 'device', 1)",
            [],
        )
        .unwrap();
        apply(&mut conn).unwrap();
        let version: i64 = version(&conn).unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let old = endpoints::find(&conn, EndpointId(1)).unwrap().unwrap();
        assert_eq!(
            (old.name.as_str(), old.group, old.tags),
            ("old", None, vec![])
        );
    }

    #[test]
    fn a_version_3_database_keeps_its_check_ins_and_starts_with_nothing_connected() {
        let mut conn = sqlite_in_memory().unwrap();
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        set_version(&conn, 3).unwrap();
        conn.execute(
            "INSERT INTO endpoints (name, kind, created_at, last_checkin) \
             VALUES ('seen', 'device', 1, 500)",
            [],
        )
        .unwrap();
        apply(&mut conn).unwrap();
        let (checkin, connected): (i64, bool) = conn
            .query_row(
                "SELECT last_checkin, connected FROM endpoints WHERE name = 'seen'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((checkin, connected), (500, false));
    }

    #[test]
    fn a_version_5_database_keeps_its_certificates_with_no_key_recorded() {
        let mut conn = sqlite_in_memory().unwrap();
        for sql in &MIGRATIONS[..5] {
            conn.execute_batch(sql).unwrap();
        }
        set_version(&conn, 5).unwrap();
        conn.execute(
            "INSERT INTO certificates (serial, endpoint_id, agent_id, issued_at, not_after) \
             VALUES ('aa', 1, 'x', 1, 2)",
            [],
        )
        .unwrap();
        apply(&mut conn).unwrap();
        let key: Option<Vec<u8>> = conn
            .query_row(
                "SELECT public_key FROM certificates WHERE serial = 'aa'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(key, None);
    }
}
