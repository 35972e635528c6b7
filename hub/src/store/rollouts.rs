//! Rollouts as the store keeps them: the controller's fields and one row per target, both JSON
//! of `crate::rollout`'s records, so a restarted hub rebuilds every rollout not yet finished
//! ([`load_active`]) and carries on where it was.

use outpost_protocol::EndpointId;
use serde::{Deserialize, Serialize};

use super::access::{self, Listed};
use super::db::{params, Db, DbResult, OptionalExtension, Row};
use super::hubs::HubId;
use super::{unix_now, StoreError};
use crate::access::Scope;
use crate::rollout::{Counts, RolloutRecord, Save, TargetRecord};

/// Which devices a rollout aims at: any in one of the groups, with one of the tags, or named.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    /// Group names.
    pub groups: Vec<String>,
    /// Tag names.
    pub tags: Vec<String>,
    /// Endpoint ids.
    pub endpoints: Vec<u64>,
}

impl Selector {
    /// Whether a device with this id, group and tags is selected (names match without regard to
    /// ASCII case, as the store matches them).
    pub fn matches(&self, id: EndpointId, group: Option<&str>, tags: &[String]) -> bool {
        self.endpoints.contains(&id.0)
            || group.is_some_and(|g| self.groups.iter().any(|s| s.eq_ignore_ascii_case(g)))
            || tags
                .iter()
                .any(|t| self.tags.iter().any(|s| s.eq_ignore_ascii_case(t)))
    }
}

/// A stored rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRollout {
    /// Its id.
    pub id: i64,
    /// The stack.
    pub stack: String,
    /// The version it rolls out.
    pub version: u32,
    /// What it aims at.
    pub selector: Selector,
    /// The controller's fields.
    pub record: RolloutRecord,
    /// Its counts by state at the last save (`None` if saved by a hub before they were kept).
    pub counts: Option<Counts>,
    /// When it started (Unix seconds).
    pub created_at: i64,
}

/// Store a new rollout with its first save and counts; its id.
pub fn create(
    conn: &Db,
    hub: HubId,
    stack: &str,
    version: u32,
    selector: &Selector,
    save: &Save,
    counts: &Counts,
) -> Result<i64, StoreError> {
    let record = save
        .rollout
        .as_ref()
        .ok_or_else(|| StoreError::Corrupt("a new rollout without its record".into()))?;
    let id: i64 = conn.query_row(
        "INSERT INTO rollouts
           (stack_id, version, selector, record, counts, active, created_at, hub_id)
         SELECT id, ?2, ?3, ?4, ?5, 1, ?6, ?7 FROM stacks WHERE name = ?1 RETURNING id",
        params![
            stack,
            version,
            json(selector),
            json(record),
            json(counts),
            unix_now(),
            hub.0
        ],
        |row| row.get(0),
    )?;
    write_targets(conn, id, &save.targets)?;
    Ok(id)
}

/// Write what changed and the counts now; `active` false once the rollout is aborted.
pub fn save(
    conn: &Db,
    id: i64,
    save: &Save,
    active: bool,
    counts: &Counts,
) -> Result<(), StoreError> {
    match &save.rollout {
        Some(record) => conn.execute(
            "UPDATE rollouts SET record = ?2, active = ?3, counts = ?4 WHERE id = ?1",
            params![id, json(record), active, json(counts)],
        )?,
        None => conn.execute(
            "UPDATE rollouts SET counts = ?2 WHERE id = ?1",
            params![id, json(counts)],
        )?,
    };
    write_targets(conn, id, &save.targets)
}

fn write_targets(conn: &Db, id: i64, targets: &[TargetRecord]) -> Result<(), StoreError> {
    let mut statement = conn.prepare_cached(
        "INSERT INTO rollout_targets (rollout_id, position, endpoint_id, record)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (rollout_id, position) DO UPDATE SET record = excluded.record",
    )?;
    for target in targets {
        statement.execute(params![
            id,
            target.position,
            target.endpoint.0 as i64,
            json(target)
        ])?;
    }
    Ok(())
}

/// Take a completed rollout out of the active set (a newer rollout of its stack replaces it).
pub fn retire(conn: &Db, id: i64) -> Result<(), StoreError> {
    conn.execute("UPDATE rollouts SET active = 0 WHERE id = ?1", [id])?;
    Ok(())
}

/// One rollout's own row.
pub fn find(conn: &Db, id: i64) -> Result<Option<StoredRollout>, StoreError> {
    conn.query_row(&select("WHERE r.id = ?1"), [id], row)
        .optional()?
        .transpose()
}

/// Every rollout, newest first, a page at a time, and how many there are; with a scope, only those
/// whose selection stays inside it.
pub fn list(
    conn: &Db,
    offset: u64,
    limit: u32,
    scope: Option<&Scope>,
) -> Result<(Vec<StoredRollout>, u64), StoreError> {
    const ROLLOUTS: Listed<StoredRollout> = Listed {
        table: "rollouts r",
        prefix: "r.",
        select,
        row,
    };
    access::page_within(conn, &ROLLOUTS, offset, limit, scope)
}

/// Take the active rollouts no live hub coordinates (none, or a hub silent since before
/// `alive_since`, or stopped) for `hub`; how many it took.
pub fn claim_orphans(conn: &Db, hub: HubId, alive_since: i64) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE rollouts SET hub_id = ?1 WHERE active = 1 AND (hub_id IS NULL OR hub_id NOT IN
           (SELECT id FROM hubs WHERE stopped_at IS NULL AND heartbeat_at >= ?2))",
        params![hub.0, alive_since],
    )?)
}

/// Move the active rollouts `from` coordinated to `to` (`from` died); their ids. Of hubs
/// adopting at once, the first takes them and the others find none.
pub fn adopt(conn: &Db, from: HubId, to: HubId) -> Result<Vec<i64>, StoreError> {
    let mut statement = conn
        .prepare("UPDATE rollouts SET hub_id = ?2 WHERE active = 1 AND hub_id = ?1 RETURNING id")?;
    let ids = statement
        .query_map(params![from.0, to.0], |r| r.get::<i64>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ids)
}

/// The hub coordinating rollout `id`, if any.
pub fn coordinator(conn: &Db, id: i64) -> Result<Option<HubId>, StoreError> {
    Ok(conn
        .query_row("SELECT hub_id FROM rollouts WHERE id = ?1", [id], |r| {
            r.get::<Option<i64>>(0)
        })
        .optional()?
        .flatten()
        .map(HubId))
}

/// The rollouts `hub` coordinates that are still running or paused, with their targets: for a
/// hub that starts or adopts a dead hub's rollouts (`only`: those ids).
pub fn load_active(
    conn: &Db,
    hub: HubId,
    only: Option<&[i64]>,
) -> Result<Vec<(StoredRollout, Vec<TargetRecord>)>, StoreError> {
    let mut statement = conn.prepare(&select(
        "WHERE r.active = 1 AND r.hub_id = ?1 ORDER BY r.id",
    ))?;
    let rollouts = statement
        .query_map([hub.0], row)?
        .filter(|r| match (r, only) {
            (Ok(Ok(stored)), Some(ids)) => ids.contains(&stored.id),
            _ => true,
        })
        .collect::<Result<Vec<_>, _>>()?;
    rollouts
        .into_iter()
        .map(|rollout| {
            let rollout = rollout?;
            let targets = targets(conn, rollout.id)?;
            Ok((rollout, targets))
        })
        .collect()
}

/// One rollout's targets, in order.
pub fn targets(conn: &Db, id: i64) -> Result<Vec<TargetRecord>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT record FROM rollout_targets WHERE rollout_id = ?1 ORDER BY position",
    )?;
    let rows = statement.query_map([id], |r| r.get::<String>(0))?;
    rows.map(|text| parse(&text?)).collect()
}

fn select(rest: &str) -> String {
    format!(
        "SELECT r.id, s.name, r.version, r.selector, r.record, r.created_at, r.counts
         FROM rollouts r JOIN stacks s ON s.id = r.stack_id {rest}"
    )
}

fn row(r: &Row<'_>) -> DbResult<Result<StoredRollout, StoreError>> {
    let (id, stack, version, selector, record, created_at): (
        i64,
        String,
        u32,
        String,
        String,
        i64,
    ) = (
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    );
    let counts: Option<String> = r.get(6)?;
    Ok((|| {
        Ok(StoredRollout {
            id,
            stack,
            version,
            selector: parse(&selector)?,
            record: parse(&record)?,
            counts: counts.as_deref().map(parse).transpose()?,
            created_at,
        })
    })())
}

fn json(value: &impl Serialize) -> String {
    // Plain data into a String has no failure mode.
    serde_json::to_string(value).unwrap_or_default()
}

fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("a rollout row: {e}")))
}

/// Ids of the devices matching `selector` (devices only, in id order), and the groups and tags it
/// names that do not exist.
pub fn resolve(
    conn: &Db,
    selector: &Selector,
) -> Result<(Vec<EndpointId>, Vec<String>), StoreError> {
    let mut unknown = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for group in &selector.groups {
        let found = collect(conn, "SELECT e.id FROM endpoints e JOIN groups g ON g.id = e.group_id WHERE g.name = ?1 AND e.kind = 'device'", group)?;
        match exists(conn, "groups", group)? {
            true => ids.extend(found),
            false => unknown.push(format!("group {group:?}")),
        }
    }
    for tag in &selector.tags {
        let found = collect(conn, "SELECT e.id FROM endpoints e JOIN endpoint_tags t ON t.endpoint_id = e.id JOIN tags g ON g.id = t.tag_id WHERE g.name = ?1 AND e.kind = 'device'", tag)?;
        match exists(conn, "tags", tag)? {
            true => ids.extend(found),
            false => unknown.push(format!("tag {tag:?}")),
        }
    }
    for id in &selector.endpoints {
        let device: Option<i64> = conn
            .query_row(
                "SELECT id FROM endpoints WHERE id = ?1 AND kind = 'device'",
                [*id as i64],
                |r| r.get(0),
            )
            .optional()?;
        match device {
            Some(id) => {
                ids.insert(id);
            }
            None => unknown.push(format!("endpoint {id}")),
        }
    }
    Ok((
        ids.into_iter().map(|id| EndpointId(id as u64)).collect(),
        unknown,
    ))
}

fn collect(conn: &Db, sql: &str, name: &str) -> Result<Vec<i64>, StoreError> {
    let mut statement = conn.prepare_cached(sql)?;
    let rows = statement.query_map([name], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn exists(conn: &Db, table: &str, name: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT 1 FROM {table} WHERE name = ?1"),
            [name],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

#[cfg(test)]
mod tests {
    use crate::store::test_backends::{both_backends, Backend};
    use outpost_protocol::stack::{ServiceSpec, StackSpec};

    use super::*;
    use crate::rollout::{Plan, RolloutState};
    use crate::store::{hubs, stacks};

    fn record(state: RolloutState) -> Save {
        Save {
            rollout: Some(RolloutRecord {
                plan: Plan::default(),
                state,
                wave: 1,
                reached: 1,
            }),
            targets: vec![],
        }
    }

    /// Stack `pos`, version 1.
    fn save_stack(conn: &mut Db) {
        let spec = |v| StackSpec {
            project: "pos".into(),
            version: v,
            services: vec![ServiceSpec::new("web", "busybox")],
            volumes: vec![],
        };
        stacks::save_version(conn, "pos", "x", |v| Ok::<_, String>(spec(v)))
            .unwrap()
            .unwrap();
    }

    fn counts_are_kept_with_every_save_so_a_list_reads_no_target_rows(backend: Backend) {
        let (_dir, store) = backend.open();
        let mut conn = store.lock();
        save_stack(&mut conn);
        let start = Counts {
            queued: 3,
            ..Counts::default()
        };
        let id = create(
            &conn,
            hubs::test_hub(&conn),
            "pos",
            1,
            &Selector::default(),
            &record(RolloutState::Running),
            &start,
        )
        .unwrap();
        assert_eq!(find(&conn, id).unwrap().unwrap().counts, Some(start));
        let later = Counts {
            healthy: 2,
            failed: 1,
            ..Counts::default()
        };
        save(&conn, id, &Save::default(), true, &later).unwrap();
        assert_eq!(
            find(&conn, id).unwrap().unwrap().counts,
            Some(later),
            "a save of rows only"
        );
        let done = Counts {
            healthy: 3,
            ..Counts::default()
        };
        save(&conn, id, &record(RolloutState::Completed), true, &done).unwrap();
        let (listed, _) = list(&conn, 0, 10, None).unwrap();
        assert_eq!(listed[0].counts, Some(done));
        assert_eq!(listed[0].record.state, RolloutState::Completed);
        conn.execute("UPDATE rollouts SET counts = NULL", [])
            .unwrap();
        assert_eq!(
            find(&conn, id).unwrap().unwrap().counts,
            None,
            "saved before counts were kept"
        );
    }

    fn hub(conn: &Db, name: &str, now: i64) -> HubId {
        let registration = hubs::HubRegistration {
            name,
            agent_addrs: &[],
            api_url: "https://127.0.0.1:1",
            instance: name,
        };
        hubs::register(conn, &registration, now).unwrap()
    }

    fn a_rollout_is_coordinated_by_one_live_hub_and_taken_over_when_it_dies(backend: Backend) {
        let (_dir, store) = backend.open();
        let mut conn = store.lock();
        save_stack(&mut conn);
        let (a, b, c) = (
            hub(&conn, "a", 100),
            hub(&conn, "b", 100),
            hub(&conn, "c", 100),
        );
        let start = |hub| {
            let running = record(RolloutState::Running);
            create(
                &conn,
                hub,
                "pos",
                1,
                &Selector::default(),
                &running,
                &Counts::default(),
            )
            .unwrap()
        };
        let (on_a, on_b) = (start(a), start(b));
        conn.execute("UPDATE rollouts SET hub_id = NULL WHERE id = ?1", [on_b])
            .unwrap();
        let loaded = |hub| -> Vec<i64> {
            load_active(&conn, hub, None)
                .unwrap()
                .iter()
                .map(|(r, _)| r.id)
                .collect()
        };
        assert_eq!(
            loaded(a),
            [on_a],
            "a hub loads only the rollouts it coordinates"
        );
        // Hub c starts while a is alive: it takes the rollout nobody coordinates, not a's.
        assert_eq!(claim_orphans(&conn, c, 90).unwrap(), 1);
        assert_eq!(loaded(c), [on_b]);
        assert_eq!(coordinator(&conn, on_a).unwrap(), Some(a));
        // Once a is silent (last heartbeat before `alive_since`), a starting hub takes it too.
        assert_eq!(claim_orphans(&conn, b, 101).unwrap(), 2);
        assert_eq!(loaded(b), [on_a, on_b]);
        // Two hubs adopting a dead hub's rollouts: the first takes them, the second finds none.
        assert_eq!(adopt(&conn, b, a).unwrap(), [on_a, on_b]);
        assert_eq!(adopt(&conn, b, c).unwrap(), Vec::<i64>::new());
        assert_eq!(loaded(a), [on_a, on_b]);
        // A finished rollout is nobody's to take.
        retire(&conn, on_b).unwrap();
        assert_eq!(adopt(&conn, a, c).unwrap(), [on_a]);
        assert_eq!(
            claim_orphans(&conn, b, 1_000).unwrap(),
            1,
            "only the active one"
        );
    }

    both_backends!(
        counts_are_kept_with_every_save_so_a_list_reads_no_target_rows,
        a_rollout_is_coordinated_by_one_live_hub_and_taken_over_when_it_dies
    );
}
