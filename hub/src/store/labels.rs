//! Groups and tags: names an admin puts on endpoints to find them among thousands.
//!
//! An endpoint is in at most one group and carries up to [`MAX_TAGS`] tags. Both are rows of their
//! own (`groups`, `tags`), created on first use and matched without regard to ASCII case, so
//! `--tag Prod` and `--tag prod` are one tag (the first spelling is kept). A device that enrols
//! through a fleet token starts with the fleet's group and tags.

use std::fmt;
use std::str::FromStr;

use outpost_protocol::EndpointId;
use thiserror::Error;

use super::db::{params, Db, OptionalExtension};
use super::StoreError;

/// Longest group or tag name, in bytes.
pub const MAX_LABEL: usize = 64;

/// Most tags one endpoint carries.
pub const MAX_TAGS: usize = 32;

/// A validated group or tag name: 1 to [`MAX_LABEL`] bytes, no surrounding spaces, no control
/// characters and no comma (tables print tags comma-separated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label(String);

/// Why a group or tag name was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LabelError {
    /// Empty, or only spaces.
    #[error("a group or tag name cannot be empty")]
    Empty,
    /// Longer than [`MAX_LABEL`].
    #[error("a group or tag name is at most {MAX_LABEL} bytes")]
    TooLong,
    /// A control character or a comma.
    #[error("a group or tag name cannot contain {0:?}")]
    Forbidden(char),
}

impl FromStr for Label {
    type Err = LabelError;

    fn from_str(text: &str) -> Result<Self, LabelError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(LabelError::Empty);
        }
        if text.len() > MAX_LABEL {
            return Err(LabelError::TooLong);
        }
        if let Some(bad) = text.chars().find(|c| c.is_control() || *c == ',') {
            return Err(LabelError::Forbidden(bad));
        }
        Ok(Self(text.to_owned()))
    }
}

impl Label {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What adding a tag did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagAdded {
    /// The endpoint carries the tag now (or already did).
    Done,
    /// The endpoint already carries [`MAX_TAGS`] tags.
    Full,
    /// No such endpoint.
    NoEndpoint,
}

/// Whether the endpoint exists.
pub fn exists(conn: &Db, id: EndpointId) -> Result<bool, StoreError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM endpoints WHERE id = ?1",
            [id.0 as i64],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

fn label_id(conn: &Db, table: &str, label: &Label) -> Result<i64, StoreError> {
    conn.execute(
        &format!("INSERT INTO {table} (name) VALUES (?1) ON CONFLICT (name) DO NOTHING"),
        [label.as_str()],
    )?;
    Ok(conn.query_row(
        &format!("SELECT id FROM {table} WHERE name = ?1"),
        [label.as_str()],
        |r| r.get(0),
    )?)
}

/// Put an endpoint in `group`, or in none. Returns whether the endpoint exists.
pub fn set_group(conn: &Db, id: EndpointId, group: Option<&Label>) -> Result<bool, StoreError> {
    let group_id = group.map(|g| label_id(conn, "groups", g)).transpose()?;
    Ok(conn.execute(
        "UPDATE endpoints SET group_id = ?2 WHERE id = ?1",
        params![id.0 as i64, group_id],
    )? == 1)
}

/// Tag an endpoint (idempotent).
pub fn add_tag(conn: &Db, id: EndpointId, tag: &Label) -> Result<TagAdded, StoreError> {
    if !exists(conn, id)? {
        return Ok(TagAdded::NoEndpoint);
    }
    let tag_id = label_id(conn, "tags", tag)?;
    let (count, has): (i64, bool) = conn.query_row(
        "SELECT COUNT(*), COALESCE(MAX(CASE WHEN tag_id = ?2 THEN 1 ELSE 0 END), 0) FROM endpoint_tags WHERE endpoint_id = ?1",
        params![id.0 as i64, tag_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if has {
        return Ok(TagAdded::Done);
    }
    if count as usize >= MAX_TAGS {
        return Ok(TagAdded::Full);
    }
    conn.execute(
        "INSERT INTO endpoint_tags (tag_id, endpoint_id) VALUES (?1, ?2)",
        params![tag_id, id.0 as i64],
    )?;
    Ok(TagAdded::Done)
}

/// Take a tag off an endpoint. Returns whether the endpoint carried it.
pub fn remove_tag(conn: &Db, id: EndpointId, tag: &Label) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "DELETE FROM endpoint_tags WHERE endpoint_id = ?1
         AND tag_id = (SELECT id FROM tags WHERE name = ?2)",
        params![id.0 as i64, tag.as_str()],
    )? == 1)
}

/// Replace an endpoint's tags with `tags` (at most [`MAX_TAGS`]; duplicates count once). Returns
/// [`TagAdded::Full`] without changing anything when there are too many.
pub fn set_tags(conn: &Db, id: EndpointId, tags: &[Label]) -> Result<TagAdded, StoreError> {
    if !exists(conn, id)? {
        return Ok(TagAdded::NoEndpoint);
    }
    if tags.len() > MAX_TAGS {
        return Ok(TagAdded::Full);
    }
    conn.execute(
        "DELETE FROM endpoint_tags WHERE endpoint_id = ?1",
        [id.0 as i64],
    )?;
    for tag in tags {
        add_tag(conn, id, tag)?;
    }
    Ok(TagAdded::Done)
}

/// Give endpoint `to` the group and tags of endpoint `from` (a fleet device at enrolment).
pub(super) fn inherit(conn: &Db, from: EndpointId, to: EndpointId) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE endpoints SET group_id = (SELECT group_id FROM endpoints WHERE id = ?1) WHERE id = ?2",
        params![from.0 as i64, to.0 as i64],
    )?;
    conn.execute(
        "INSERT INTO endpoint_tags (tag_id, endpoint_id)
         SELECT tag_id, CAST(?2 AS BIGINT) FROM endpoint_tags WHERE endpoint_id = ?1
         ON CONFLICT DO NOTHING",
        params![from.0 as i64, to.0 as i64],
    )?;
    Ok(())
}
