//! The Outpost hub's admin API, shared by the hub and every client of it.
//!
//! - [`access`]: the bodies of `/api/tokens`, and the role and scope of a credential.
//! - [`audit`]: the bodies of `/api/audit`.
//! - [`stacks`]: the bodies of `/api/stacks` (Compose stacks and their versions) and
//!   `/api/rollouts`.
//! - [`images`]: the bodies of `/api/images` (an image pushed into the hub's mirror).
//! - [`jobs`]: the bodies of `/api/jobs` (a command run once on each device of a selection).
//! - [`webhooks`]: the bodies of `/api/webhooks` (alerts) and the client's calls for them.
//! - [`Paged`]: the one shape of a page of any list.
//! - [`types`]: the request and response bodies. The hub's handlers serialize and parse exactly
//!   these, so server and clients cannot drift apart; this part knows nothing of the hub (no axum,
//!   no SQLite).
//! - [`ApiClient`]: a typed async client on reqwest, one method per call, used by the
//!   `outpost-hub` admin commands, the load tool, the end-to-end tests and the benches.
//! - [`ApiError`]: why a call failed, with the hub's status and message kept.
//!
//! The client is written by hand rather than generated (progenitor and the like need an OpenAPI
//! document, which the hub does not publish): a dozen calls, each a few lines over the shared types.
#![warn(missing_docs)]

pub mod access;
pub mod audit;
mod client;
mod error;
pub mod hubs;
pub mod images;
pub mod jobs;
mod page;
pub mod quiet;
pub mod stacks;
pub mod traffic;
pub mod types;
pub mod webhooks;

pub use access::*;
pub use audit::*;
pub use client::ApiClient;
pub use error::{ApiError, NO_MESSAGE};
pub use hubs::*;
pub use images::*;
pub use jobs::*;
pub use page::Paged;
pub use quiet::*;
pub use stacks::*;
pub use traffic::*;
pub use types::*;
pub use webhooks::*;
