//! The shape every list in the API answers in (endpoints, stacks, rollouts, jobs, audit
//! records): one page of items and how many the list holds, so a client pages through any of
//! them the same way.

use serde::{Deserialize, Serialize};

/// One page of a list, and how many items the whole list holds (also the `X-Total-Count`
/// header).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paged<T> {
    /// The page's items.
    pub items: Vec<T>,
    /// How many there are in all, the list's filters applied.
    pub total: u64,
}
