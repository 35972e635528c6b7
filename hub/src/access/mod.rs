//! Who may do what: every admin credential (the bootstrap token, a named token, an admin
//! certificate) carries a [`Role`] and an optional [`Scope`], and every request is checked against
//! what its route needs ([`need`]) before a handler runs.
//!
//! The check is one place, in the auth middleware, and decided from the method and path alone, so
//! a route added later is covered by default: anything the table does not know needs an unscoped
//! `admin`. Handlers that list or start fleet-wide work (the endpoint list, jobs, rollouts) narrow
//! what they return or accept by the request's [`Principal`] themselves.

pub mod need;

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::store::labels::Label;
use crate::store::rollouts::Selector;

/// What a credential may do. Ordered: each role may do what the ones before it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read: lists, views, and Docker calls that only read (GET and HEAD).
    Viewer,
    /// As viewer, plus every Docker call through the proxy, summons, jobs, rollouts and stacks.
    Operator,
    /// Everything, credentials and device management included.
    Admin,
}

impl Role {
    /// Its name in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a role, scope or token name was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AccessError {
    /// Not one of the three roles.
    #[error("unknown role {0:?}: use viewer, operator or admin")]
    UnknownRole(String),
    /// A scope naming nothing would reach no device.
    #[error("a scope needs at least one group or tag (leave it out for the whole fleet)")]
    EmptyScope,
    /// A group or tag name that is not a valid label.
    #[error("scope {kind} {name:?}: {reason}")]
    BadLabel {
        /// `group` or `tag`.
        kind: &'static str,
        /// What was given.
        name: String,
        /// Why it is not a label.
        reason: String,
    },
    /// A credential name that cannot be shown or recorded.
    #[error("a credential name is 1 to {MAX_NAME} characters without control characters")]
    BadName,
}

impl FromStr for Role {
    type Err = AccessError;

    fn from_str(text: &str) -> Result<Self, AccessError> {
        match text {
            "viewer" => Ok(Self::Viewer),
            "operator" => Ok(Self::Operator),
            "admin" => Ok(Self::Admin),
            other => Err(AccessError::UnknownRole(other.to_owned())),
        }
    }
}

/// Longest credential name.
pub const MAX_NAME: usize = 64;

/// A credential name as given, trimmed, or why not.
pub fn credential_name(text: &str) -> Result<String, AccessError> {
    let name = text.trim();
    let fits = !name.is_empty() && name.chars().count() <= MAX_NAME;
    if !fits || name.chars().any(char::is_control) {
        return Err(AccessError::BadName);
    }
    Ok(name.to_owned())
}

/// The devices a scoped credential reaches: those in one of the groups or carrying one of the
/// tags (names compared without regard to ASCII case, as the store compares them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    groups: Vec<String>,
    tags: Vec<String>,
}

impl Scope {
    /// A scope of these groups and tags, each a valid label; at least one of either.
    pub fn new(groups: &[String], tags: &[String]) -> Result<Self, AccessError> {
        let labels = |kind: &'static str, names: &[String]| {
            names
                .iter()
                .map(|name| {
                    Label::from_str(name)
                        .map(|l| l.as_str().to_owned())
                        .map_err(|e| AccessError::BadLabel {
                            kind,
                            name: name.clone(),
                            reason: e.to_string(),
                        })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let scope = Self {
            groups: labels("group", groups)?,
            tags: labels("tag", tags)?,
        };
        if scope.groups.is_empty() && scope.tags.is_empty() {
            return Err(AccessError::EmptyScope);
        }
        Ok(scope)
    }

    /// Its groups.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// Its tags.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    fn has_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g.eq_ignore_ascii_case(group))
    }

    fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t.eq_ignore_ascii_case(tag))
    }

    /// The first part of `selector`, other than its endpoint ids, that may match a device outside
    /// this scope (every device of a group in the scope is in it, and so is every device with a
    /// tag of it, today and when it joins later). Endpoint ids are checked against the store.
    pub fn outside_of(&self, selector: &Selector) -> Option<String> {
        let group = selector.groups.iter().find(|g| !self.has_group(g));
        let tag = selector.tags.iter().find(|t| !self.has_tag(t));
        group
            .map(|g| format!("group {g:?}"))
            .or_else(|| tag.map(|t| format!("tag {t:?}")))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |names: &[String]| {
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        };
        write!(
            f,
            "groups: {}; tags: {}",
            list(&self.groups),
            list(&self.tags)
        )
    }
}

/// Who a request runs as: its credential's name, role and scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The credential's name (`admin` for the bootstrap token, a token's or certificate's name).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The devices it reaches; `None` for the whole fleet.
    pub scope: Option<Scope>,
}

impl Principal {
    /// The bootstrap admin token's principal.
    pub fn bootstrap() -> Self {
        Self {
            name: "admin".to_owned(),
            role: Role::Admin,
            scope: None,
        }
    }
}

#[cfg(test)]
mod tests;
