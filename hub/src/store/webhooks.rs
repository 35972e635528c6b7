//! Webhooks and their delivery queue (see `crate::alerts`): subscriptions, one row per event, one
//! per event and webhook with its attempts, and the small tables the offline alerts keep.
//!
//! The queue lives here rather than in memory so that a hub restart loses no event: a delivery
//! row is done when it has `delivered_at` or `gave_up_at`, and until then `next_attempt_ms`
//! (indexed, partial) says when it is due.

use std::time::Duration;

use outpost_protocol::EndpointId;

use super::db::{params, Db, OptionalExtension};
use super::StoreError;

/// A webhook as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookRecord {
    /// Its id.
    pub id: i64,
    /// Where events are POSTed.
    pub url: String,
    /// The event names it receives.
    pub events: Vec<String>,
    /// When it was added (Unix seconds).
    pub created_at: i64,
}

/// One delivery as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// Its id.
    pub id: i64,
    /// The webhook.
    pub webhook_id: i64,
    /// The event's name.
    pub event: String,
    /// The event's body (its `id` names the event).
    pub body: String,
    /// Attempts so far.
    pub attempts: u32,
    /// When the next attempt is due (ms since the epoch); `None` once done.
    pub next_attempt_ms: Option<i64>,
    /// The receiver's last HTTP status.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was delivered (Unix seconds).
    pub delivered_at: Option<i64>,
    /// When it was given up (Unix seconds).
    pub gave_up_at: Option<i64>,
    /// When it was queued (Unix seconds).
    pub created_at: i64,
}

/// A delivery due now, with what sending it needs.
#[derive(Clone, Debug)]
pub struct DueDelivery {
    /// The delivery.
    pub id: i64,
    /// Where to POST.
    pub url: String,
    /// The webhook's signing secret.
    pub secret: String,
    /// The body.
    pub body: String,
    /// Attempts so far.
    pub attempts: u32,
    /// When it was queued (Unix seconds).
    pub created_at: i64,
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver answered 2xx.
    Delivered {
        /// Its status.
        status: u16,
    },
    /// It failed; try again at `next_attempt_ms`.
    Retry {
        /// The receiver's status, if it answered.
        status: Option<u16>,
        /// Why it failed.
        error: String,
        /// When to try again (ms since the epoch).
        next_attempt_ms: i64,
    },
    /// It failed for the last time.
    GaveUp {
        /// The receiver's status, if it answered.
        status: Option<u16>,
        /// Why it failed.
        error: String,
    },
}

/// Store a new webhook.
pub fn add(
    conn: &Db,
    url: &str,
    events: &[String],
    secret: &str,
    now: i64,
) -> Result<WebhookRecord, StoreError> {
    let id = conn.query_row(
        "INSERT INTO webhooks (url, events, secret, created_at) VALUES (?1, ?2, ?3, ?4)
         RETURNING id",
        params![url, events.join(","), secret, now],
        |row| row.get(0),
    )?;
    Ok(WebhookRecord {
        id,
        url: url.to_owned(),
        events: events.to_vec(),
        created_at: now,
    })
}

/// Every webhook, oldest first.
pub fn list(conn: &Db) -> Result<Vec<WebhookRecord>, StoreError> {
    let mut stmt = conn.prepare("SELECT id, url, events, created_at FROM webhooks ORDER BY id")?;
    let rows = stmt.query_map([], |r| {
        let events: String = r.get(2)?;
        Ok(WebhookRecord {
            id: r.get(0)?,
            url: r.get(1)?,
            events: events.split(',').map(str::to_owned).collect(),
            created_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Remove a webhook and its deliveries; false if there was none.
pub fn remove(conn: &Db, id: i64) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM webhooks WHERE id = ?1", [id])? > 0)
}

/// Deliveries not yet done, across webhooks.
pub fn pending(conn: &Db) -> Result<u64, StoreError> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM webhook_deliveries WHERE next_attempt_ms IS NOT NULL",
        [],
        |r| r.get(0),
    )?)
}

/// Queue `body` (an event named `event`) for every webhook subscribed to it, due at `now_ms`,
/// unless `cap` deliveries are already pending. Returns how many deliveries were queued, and
/// how many were refused for the cap.
pub fn enqueue(
    conn: &mut Db,
    event: &str,
    body: &str,
    now_ms: i64,
    cap: u64,
) -> Result<(usize, usize), StoreError> {
    let tx = conn.transaction()?;
    let subscribed: Vec<i64> = list(&tx)?
        .into_iter()
        .filter(|w| w.events.iter().any(|e| e == event))
        .map(|w| w.id)
        .collect();
    if subscribed.is_empty() {
        return Ok((0, 0));
    }
    let room = cap.saturating_sub(pending(&tx)?) as usize;
    let queued = subscribed.len().min(room);
    if queued > 0 {
        let now = now_ms.div_euclid(1000);
        let event_id: i64 = tx.query_row(
            "INSERT INTO webhook_events (event, body, created_at) VALUES (?1, ?2, ?3)
             RETURNING id",
            params![event, body, now],
            |row| row.get(0),
        )?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO webhook_deliveries (webhook_id, event_id, next_attempt_ms, created_at)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for webhook in &subscribed[..queued] {
            insert.execute(params![webhook, event_id, now_ms, now])?;
        }
    }
    tx.commit()?;
    Ok((queued, subscribed.len() - queued))
}

/// Up to `limit` deliveries due at `now_ms`, soonest first.
pub fn due(conn: &Db, now_ms: i64, limit: usize) -> Result<Vec<DueDelivery>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.id, w.url, w.secret, e.body, d.attempts, d.created_at
         FROM webhook_deliveries d
         JOIN webhooks w ON w.id = d.webhook_id
         JOIN webhook_events e ON e.id = d.event_id
         WHERE d.next_attempt_ms IS NOT NULL AND d.next_attempt_ms <= ?1
         ORDER BY d.next_attempt_ms LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now_ms, limit as i64], |r| {
        Ok(DueDelivery {
            id: r.get(0)?,
            url: r.get(1)?,
            secret: r.get(2)?,
            body: r.get(3)?,
            attempts: r.get(4)?,
            created_at: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// When the next pending delivery is due (ms since the epoch).
pub fn next_due(conn: &Db) -> Result<Option<i64>, StoreError> {
    Ok(conn.query_row(
        "SELECT MIN(next_attempt_ms) FROM webhook_deliveries WHERE next_attempt_ms IS NOT NULL",
        [],
        |r| r.get(0),
    )?)
}

/// Record how attempts ended, at `now` (Unix seconds), in one transaction.
pub fn record(conn: &mut Db, attempts: &[(i64, Attempt)], now: i64) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_ms = ?2,
                 last_status = ?3, last_error = ?4, delivered_at = ?5, gave_up_at = ?6
             WHERE id = ?1",
        )?;
        for (id, attempt) in attempts {
            let (next, status, error, delivered, gave_up) = match attempt {
                Attempt::Delivered { status } => (None, Some(*status), None, Some(now), None),
                Attempt::Retry {
                    status,
                    error,
                    next_attempt_ms,
                } => (Some(*next_attempt_ms), *status, Some(error), None, None),
                Attempt::GaveUp { status, error } => (None, *status, Some(error), None, Some(now)),
            };
            stmt.execute(params![id, next, status, error, delivered, gave_up])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// The newest `limit` deliveries, of one webhook or all.
pub fn deliveries(
    conn: &Db,
    webhook: Option<i64>,
    limit: usize,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.id, d.webhook_id, e.event, e.body, d.attempts, d.next_attempt_ms,
                d.last_status, d.last_error, d.delivered_at, d.gave_up_at, d.created_at
         FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
         WHERE CAST(?1 AS BIGINT) IS NULL OR d.webhook_id = ?1
         ORDER BY d.id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![webhook, limit as i64], |r| {
        Ok(DeliveryRecord {
            id: r.get(0)?,
            webhook_id: r.get(1)?,
            event: r.get(2)?,
            body: r.get(3)?,
            attempts: r.get(4)?,
            next_attempt_ms: r.get(5)?,
            last_status: r.get(6)?,
            last_error: r.get(7)?,
            delivered_at: r.get(8)?,
            gave_up_at: r.get(9)?,
            created_at: r.get(10)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Forget deliveries done before `before` (Unix seconds) and events no delivery refers to.
pub fn prune(conn: &mut Db, before: i64) -> Result<usize, StoreError> {
    let tx = conn.transaction()?;
    let removed = tx.execute(
        "DELETE FROM webhook_deliveries WHERE next_attempt_ms IS NULL AND created_at < ?1",
        [before],
    )?;
    tx.execute(
        "DELETE FROM webhook_events WHERE created_at < ?1 AND NOT EXISTS
             (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id)",
        [before],
    )?;
    tx.commit()?;
    Ok(removed)
}

/// Set the offline threshold of a group (`""`: the default for every device without one).
pub fn set_threshold(conn: &Db, group: &str, after: Duration) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO alert_thresholds (group_name, after_ms) VALUES (?1, ?2)
         ON CONFLICT (group_name) DO UPDATE SET after_ms = excluded.after_ms",
        params![group, after.as_millis() as i64],
    )?;
    Ok(())
}

/// Every threshold set, by group name (`""`: the default).
pub fn thresholds(conn: &Db) -> Result<Vec<(String, Duration)>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT group_name, after_ms FROM alert_thresholds ORDER BY group_name")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            Duration::from_millis(r.get::<i64>(1)?.max(0) as u64),
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The offline threshold of each device in `ids` that exists: its group's, else the stored
/// default, else `fallback`.
pub fn offline_thresholds(
    conn: &Db,
    ids: &[EndpointId],
    fallback: Duration,
) -> Result<Vec<(EndpointId, Duration)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT COALESCE(t.after_ms,
                         (SELECT after_ms FROM alert_thresholds WHERE group_name = ''))
         FROM endpoints e
         LEFT JOIN groups g ON g.id = e.group_id
         LEFT JOIN alert_thresholds t ON t.group_name = g.name
         WHERE e.id = ?1",
    )?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let found: Option<Option<i64>> = stmt.query_row([id.0 as i64], |r| r.get(0)).optional()?;
        if let Some(after) = found {
            let after = after.map_or(fallback, |ms| Duration::from_millis(ms.max(0) as u64));
            out.push((*id, after));
        }
    }
    Ok(out)
}

/// Every enrolled, approved device not in an outage that already raised `offline`, with its
/// threshold as [`offline_thresholds`] gives it: what a starting hub counts as down until it sees
/// each one's session, so a device that stays dark across a restart is still reported.
pub fn enrolled_devices(
    conn: &Db,
    fallback: Duration,
) -> Result<Vec<(EndpointId, Duration)>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT e.id, COALESCE(t.after_ms,
                               (SELECT after_ms FROM alert_thresholds WHERE group_name = ''))
         FROM endpoints e
         LEFT JOIN groups g ON g.id = e.group_id
         LEFT JOIN alert_thresholds t ON t.group_name = g.name
         WHERE e.kind = 'device' AND e.approved = 1 AND e.agent_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM alert_outages a WHERE a.endpoint_id = e.id)",
    )?;
    let rows = stmt.query_map([], |r| {
        let after: Option<i64> = r.get(1)?;
        Ok((
            EndpointId(r.get::<i64>(0)? as u64),
            after.map_or(fallback, |ms| Duration::from_millis(ms.max(0) as u64)),
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// An endpoint's name, if it exists.
pub fn endpoint_name(conn: &Db, id: EndpointId) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT name FROM endpoints WHERE id = ?1",
            [id.0 as i64],
            |r| r.get(0),
        )
        .optional()?)
}

/// Record that an outage raised `offline` (`Some(since)`), or that its `online` was raised.
pub fn set_outage(conn: &Db, id: EndpointId, since_ms: Option<i64>) -> Result<(), StoreError> {
    match since_ms {
        Some(since) => conn.execute(
            "INSERT INTO alert_outages (endpoint_id, since_ms) VALUES (?1, ?2)
             ON CONFLICT (endpoint_id) DO UPDATE SET since_ms = excluded.since_ms",
            params![id.0 as i64, since],
        )?,
        None => conn.execute(
            "DELETE FROM alert_outages WHERE endpoint_id = ?1",
            [id.0 as i64],
        )?,
    };
    Ok(())
}

/// The outages that raised `offline` and not yet `online`.
pub fn alerted_outages(conn: &Db) -> Result<Vec<(EndpointId, i64)>, StoreError> {
    let mut stmt = conn.prepare("SELECT endpoint_id, since_ms FROM alert_outages")?;
    let rows = stmt.query_map([], |r| Ok((EndpointId(r.get::<i64>(0)? as u64), r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Devices whose newest unrevoked certificate expires before `before` (Unix seconds) and that
/// were not yet warned of that expiry, with the expiry.
pub fn expiring_certs(conn: &Db, before: i64) -> Result<Vec<(EndpointId, i64)>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT x.endpoint_id, x.expiry FROM
             (SELECT c.endpoint_id, MAX(c.not_after) AS expiry
              FROM certificates c JOIN endpoints e ON e.id = c.endpoint_id
              WHERE c.revoked_at IS NULL
              GROUP BY c.endpoint_id) AS x
         WHERE x.expiry < ?1 AND NOT EXISTS (SELECT 1 FROM alert_cert_expiry a
             WHERE a.endpoint_id = x.endpoint_id AND a.not_after = x.expiry)",
    )?;
    let rows = stmt.query_map([before], |r| {
        Ok((EndpointId(r.get::<i64>(0)? as u64), r.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Record that the device was warned its certificate expires at `not_after`.
pub fn cert_warned(conn: &Db, id: EndpointId, not_after: i64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO alert_cert_expiry (endpoint_id, not_after) VALUES (?1, ?2)
         ON CONFLICT (endpoint_id) DO UPDATE SET not_after = excluded.not_after",
        params![id.0 as i64, not_after],
    )?;
    Ok(())
}

#[cfg(test)]
#[path = "webhooks_tests.rs"]
mod tests;
