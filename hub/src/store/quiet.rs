//! The `quiet` check-in policy by group: one `settings` row per quiet group
//! (`quiet_group:NAME` → seconds between check-ins), so the policy needs no table of its own.
//! Group names match without regard to ASCII case, as everywhere (`labels`).

use std::time::Duration;

use outpost_protocol::EndpointId;

use super::db::{params, Db, OptionalExtension};
use super::StoreError;

const PREFIX: &str = "quiet_group:";

/// Put `group` on the quiet policy with `interval`, or (`None`) back on the default one.
pub fn set_quiet(conn: &Db, group: &str, interval: Option<Duration>) -> Result<(), StoreError> {
    let key = format!("{PREFIX}{group}");
    conn.execute("DELETE FROM settings WHERE key = ?1 COLLATE NOCASE", [&key])?;
    if let Some(interval) = interval {
        conn.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)",
            params![key, interval.as_secs().to_string()],
        )?;
    }
    Ok(())
}

/// The quiet interval of `group`, if it is on the policy.
pub fn quiet_interval(conn: &Db, group: &str) -> Result<Option<Duration>, StoreError> {
    let value: Option<String> = conn
        .query_row(
            "SELECT value FROM settings WHERE key = ?1 COLLATE NOCASE",
            [format!("{PREFIX}{group}")],
            |r| r.get(0),
        )
        .optional()?;
    Ok(value.and_then(|v| v.parse().ok()).map(Duration::from_secs))
}

/// The endpoints in `group`, for a policy change to reach their live sessions.
pub fn group_members(conn: &Db, group: &str) -> Result<Vec<EndpointId>, StoreError> {
    let mut statement = conn.prepare(
        "SELECT e.id FROM endpoints e JOIN groups g ON e.group_id = g.id WHERE g.name = ?1",
    )?;
    let ids = statement.query_map([group], |r| r.get::<i64>(0))?;
    let mut members = Vec::new();
    for id in ids {
        members.push(EndpointId(id? as u64));
    }
    Ok(members)
}

/// Every quiet group, by name.
pub fn quiet_groups(conn: &Db) -> Result<Vec<(String, Duration)>, StoreError> {
    let mut statement = conn.prepare(
        "SELECT key, value FROM settings WHERE substr(key, 1, ?1) = ?2 ORDER BY key COLLATE NOCASE",
    )?;
    let rows = statement.query_map(params![PREFIX.len() as i64, PREFIX], |r| {
        Ok((r.get::<String>(0)?, r.get::<String>(1)?))
    })?;
    let mut groups = Vec::new();
    for row in rows {
        let (key, value) = row?;
        if let (Some(group), Ok(secs)) = (key.strip_prefix(PREFIX), value.parse()) {
            groups.push((group.to_owned(), Duration::from_secs(secs)));
        }
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;
    use crate::store::test_backends::{both_backends, Backend};

    fn a_group_goes_quiet_and_back_whatever_the_case_of_its_name(backend: Backend) {
        let (_dir, store) = backend.open();
        let conn = store.lock();
        let five = Duration::from_secs(300);
        set_quiet(&conn, "Kiosks", Some(five)).unwrap();
        assert_eq!(quiet_interval(&conn, "kiosks").unwrap(), Some(five));
        set_quiet(&conn, "KIOSKS", Some(2 * five)).unwrap();
        assert_eq!(
            quiet_groups(&conn).unwrap(),
            vec![("KIOSKS".to_owned(), 2 * five)]
        );
        set_quiet(&conn, "kiosks", None).unwrap();
        assert_eq!(quiet_interval(&conn, "Kiosks").unwrap(), None);
        assert!(quiet_groups(&conn).unwrap().is_empty());
    }

    both_backends!(a_group_goes_quiet_and_back_whatever_the_case_of_its_name);
}
