//! Stacks and their versions: immutable once stored, numbered 1, 2, … per stack, each stored
//! once (the Compose file as sent and the spec devices receive) however many devices run it.

use outpost_protocol::stack::StackSpec;
use outpost_protocol::wire;

use super::db::{params, Db, OptionalExtension, Transaction};
use super::{unix_now, StoreError};

/// One stored version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackVersionRecord {
    /// The stack's name.
    pub name: String,
    /// The version.
    pub version: u32,
    /// When it was stored (Unix seconds).
    pub created_at: i64,
    /// SHA-256 of the spec's encoding.
    pub digest: [u8; 32],
    /// The Compose file as sent.
    pub compose: String,
    /// What devices receive.
    pub spec: StackSpec,
}

/// What saving a file did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Saved {
    /// A new version.
    Created(StackVersionRecord),
    /// The file compiles to the latest version's content: nothing stored.
    Unchanged(StackVersionRecord),
}

/// One stack in the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackRow {
    /// The stack's name.
    pub name: String,
    /// Its newest version.
    pub latest_version: u32,
    /// How many versions it has.
    pub versions: u32,
    /// When the stack was created.
    pub created_at: i64,
    /// When its newest version was stored.
    pub updated_at: i64,
}

/// A version in a stack's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    /// The version.
    pub version: u32,
    /// When it was stored.
    pub created_at: i64,
    /// SHA-256 of its spec.
    pub digest: [u8; 32],
}

/// Store `compose` as the next version of stack `name` (created on first use). `compile` reads the
/// file for the version number it is given; its refusal stores nothing and is handed back. A file
/// that compiles to the latest version's content stores nothing either.
pub fn save_version<E>(
    conn: &mut Db,
    name: &str,
    compose: &str,
    compile: impl FnOnce(u32) -> Result<StackSpec, E>,
) -> Result<Result<Saved, E>, StoreError> {
    let tx = conn.transaction()?;
    let latest = latest_version(&tx, name)?;
    let next = latest.as_ref().map_or(1, |l| l.version + 1);
    let spec = match compile(next) {
        Ok(spec) => spec,
        Err(e) => return Ok(Err(e)),
    };
    if let Some(latest) = latest {
        let same = StackSpec {
            version: latest.version,
            ..spec.clone()
        };
        if same == latest.spec {
            return Ok(Ok(Saved::Unchanged(latest)));
        }
    }
    let now = unix_now();
    tx.execute(
        "INSERT INTO stacks (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
        params![name, now],
    )?;
    let record = StackVersionRecord {
        name: name.to_owned(),
        version: next,
        created_at: now,
        digest: spec.digest(),
        compose: compose.to_owned(),
        spec,
    };
    tx.execute(
        "INSERT INTO stack_versions (stack_id, version, created_at, digest, compose, spec)
         SELECT id, ?2, ?3, ?4, ?5, ?6 FROM stacks WHERE name = ?1",
        params![
            name,
            next,
            now,
            &record.digest[..],
            compose,
            wire::encode(&record.spec)
        ],
    )?;
    tx.commit()?;
    Ok(Ok(Saved::Created(record)))
}

fn latest_version(
    tx: &Transaction<'_>,
    name: &str,
) -> Result<Option<StackVersionRecord>, StoreError> {
    version(tx, name, None)
}

/// One version of stack `name`, the newest when `version` is `None`.
pub fn version(
    conn: &Db,
    name: &str,
    version: Option<u32>,
) -> Result<Option<StackVersionRecord>, StoreError> {
    let row = conn
        .query_row(
            "SELECT v.version, v.created_at, v.digest, v.compose, v.spec
             FROM stack_versions v JOIN stacks s ON s.id = v.stack_id
             WHERE s.name = ?1 AND (CAST(?2 AS BIGINT) IS NULL OR v.version = ?2)
             ORDER BY v.version DESC LIMIT 1",
            params![name, version],
            |r| {
                Ok((
                    r.get::<u32>(0)?,
                    r.get::<i64>(1)?,
                    r.get::<Vec<u8>>(2)?,
                    r.get::<String>(3)?,
                    r.get::<Vec<u8>>(4)?,
                ))
            },
        )
        .optional()?;
    let Some((version, created_at, digest, compose, spec)) = row else {
        return Ok(None);
    };
    Ok(Some(StackVersionRecord {
        name: name.to_owned(),
        version,
        created_at,
        digest: digest_of(&digest)?,
        compose,
        spec: wire::decode(&spec)
            .map_err(|e| StoreError::Corrupt(format!("stack {name} v{version}: {e}")))?,
    }))
}

/// Every version of stack `name`, oldest first (empty when there is no such stack).
pub fn history(conn: &Db, name: &str) -> Result<Vec<VersionInfo>, StoreError> {
    let mut statement = conn.prepare(
        "SELECT v.version, v.created_at, v.digest
         FROM stack_versions v JOIN stacks s ON s.id = v.stack_id
         WHERE s.name = ?1 ORDER BY v.version",
    )?;
    let rows = statement.query_map([name], |r| {
        Ok((r.get::<u32>(0)?, r.get::<i64>(1)?, r.get::<Vec<u8>>(2)?))
    })?;
    rows.map(|row| {
        let (version, created_at, digest) = row?;
        Ok(VersionInfo {
            version,
            created_at,
            digest: digest_of(&digest)?,
        })
    })
    .collect()
}

/// One page of stacks by name, and how many there are.
pub fn list(conn: &Db, offset: u64, limit: u32) -> Result<(Vec<StackRow>, u64), StoreError> {
    let total: u64 = conn.query_row("SELECT COUNT(*) FROM stacks", [], |r| r.get(0))?;
    let mut statement = conn.prepare(
        "SELECT s.name, MAX(v.version), COUNT(v.version), s.created_at, MAX(v.created_at)
         FROM stacks s JOIN stack_versions v ON v.stack_id = s.id
         GROUP BY s.id ORDER BY s.name LIMIT ?1 OFFSET ?2",
    )?;
    let rows = statement.query_map(params![limit, offset], |r| {
        Ok(StackRow {
            name: r.get(0)?,
            latest_version: r.get(1)?,
            versions: r.get(2)?,
            created_at: r.get(3)?,
            updated_at: r.get(4)?,
        })
    })?;
    let rows = rows.collect::<Result<Vec<_>, _>>()?;
    Ok((rows, total))
}

/// What removing a stack did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removed {
    /// Gone, with this many versions.
    Done(u32),
    /// Refused: this many devices should run it.
    Deployed(u64),
    /// No such stack.
    Missing,
}

/// Remove stack `name` with every version, unless a device should run it.
pub fn remove(conn: &mut Db, name: &str) -> Result<Removed, StoreError> {
    let tx = conn.transaction()?;
    let versions: Option<u32> = tx
        .query_row(
            "SELECT COUNT(v.version) FROM stacks s LEFT JOIN stack_versions v ON v.stack_id = s.id
             WHERE s.name = ?1 GROUP BY s.id",
            [name],
            |r| r.get(0),
        )
        .optional()?;
    let Some(versions) = versions else {
        return Ok(Removed::Missing);
    };
    let devices = super::deployments::devices_running(&tx, name)?;
    if devices > 0 {
        return Ok(Removed::Deployed(devices));
    }
    tx.execute("DELETE FROM stacks WHERE name = ?1", [name])?;
    tx.commit()?;
    Ok(Removed::Done(versions))
}

fn digest_of(bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("a stack digest of {} bytes", bytes.len())))
}

#[cfg(test)]
mod tests {
    use crate::store::test_backends::{both_backends, Backend};
    use outpost_protocol::stack::ServiceSpec;

    use super::*;

    fn spec(image: &str, version: u32) -> StackSpec {
        StackSpec {
            project: "pos".to_owned(),
            version,
            services: vec![ServiceSpec::new("web", image)],
            volumes: vec![],
        }
    }

    fn save(conn: &mut Db, image: &str) -> Saved {
        save_version(conn, "pos", image, |v| Ok::<_, String>(spec(image, v)))
            .unwrap()
            .unwrap()
    }

    fn versions_count_up_and_an_unchanged_file_stores_nothing(backend: Backend) {
        let (_dir, store) = backend.open();
        let mut conn = store.lock();
        let Saved::Created(v1) = save(&mut conn, "a:1") else {
            panic!("first save creates")
        };
        assert_eq!((v1.version, v1.spec.version), (1, 1));
        let Saved::Unchanged(same) = save(&mut conn, "a:1") else {
            panic!("same content stores nothing")
        };
        assert_eq!(same, v1);
        let Saved::Created(v2) = save(&mut conn, "a:2") else {
            panic!("new content is a new version")
        };
        assert_eq!(v2.version, 2);
        assert_eq!(v2.digest, v2.spec.digest());
        assert_eq!(version(&conn, "pos", Some(1)).unwrap().unwrap(), v1);
        assert_eq!(version(&conn, "pos", None).unwrap().unwrap(), v2);
        assert_eq!(version(&conn, "pos", Some(3)).unwrap(), None);
        let history: Vec<u32> = history(&conn, "pos")
            .unwrap()
            .iter()
            .map(|h| h.version)
            .collect();
        assert_eq!(history, [1, 2]);
        let (rows, total) = list(&conn, 0, 10).unwrap();
        assert_eq!(total, 1);
        assert_eq!((rows[0].latest_version, rows[0].versions), (2, 2));
    }

    fn a_refused_file_stores_nothing(backend: Backend) {
        let (_dir, store) = backend.open();
        let mut conn = store.lock();
        let refused = save_version(&mut conn, "pos", "bad", |_| Err::<StackSpec, _>("no")).unwrap();
        assert_eq!(refused, Err("no"));
        assert_eq!(list(&conn, 0, 10).unwrap().1, 0);
        assert_eq!(version(&conn, "pos", None).unwrap(), None);
    }

    fn remove_takes_every_version(backend: Backend) {
        let (_dir, store) = backend.open();
        let mut conn = store.lock();
        save(&mut conn, "a:1");
        save(&mut conn, "a:2");
        assert_eq!(remove(&mut conn, "pos").unwrap(), Removed::Done(2));
        assert_eq!(remove(&mut conn, "pos").unwrap(), Removed::Missing);
        assert!(history(&conn, "pos").unwrap().is_empty());
        let Saved::Created(again) = save(&mut conn, "a:1") else {
            panic!("a removed name starts over")
        };
        assert_eq!(again.version, 1);
    }

    both_backends!(
        versions_count_up_and_an_unchanged_file_stores_nothing,
        a_refused_file_stores_nothing,
        remove_takes_every_version
    );
}
