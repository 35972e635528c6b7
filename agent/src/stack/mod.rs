//! Stacks on the device's engine: applying a version of a Compose project that the hub has
//! normalised into a [`StackSpec`], observing how the engine runs it, and removing it.
//!
//! Why the agent does this itself rather than calling `docker compose`: a device may have no
//! Compose at all (or v1 where v2 is expected), a spec is already normalised so nothing is left
//! to interpret, and a fleet needs what Compose does not give — an apply that is all or nothing
//! and survives the agent being killed half-way, since a device left running half of one version
//! and half of another may be unreachable for a site visit. What it produces is still a Compose
//! project: containers, network and volumes are named and labelled as Compose names and labels
//! them ([`names`]), so `docker compose ls` and `docker-compose ps` on the device show the stack.
//!
//! - [`apply`]: pull what is missing, then replace changed services in start order, keep
//!   unchanged ones running, remove those no longer in the spec; on any failure the previous
//!   version is restored and running (the comment atop `stack/apply.rs` says how).
//! - [`recover`]: at agent start, settle an apply a crash interrupted (from its journal).
//! - [`observe`]: per service, exists / runs / this version / healthy; [`StackHealth::drifted`].
//! - [`remove`]: containers and network; volumes only when asked.
//!
//! Errors are one [`ApplyError`], which keeps the engine's own message for the hub to show.
//! Requests are unversioned (see [`crate::snapshot`]): the engine answers in its own API version,
//! so Debian's 20.10 (API 1.41) works; every field sent exists in 1.41.
//!
//! [`StackSpec`]: outpost_protocol::stack::StackSpec

mod apply;
mod create;
mod engine;
mod error;
mod journal;
pub mod names;
mod observe;
mod plan;
mod pull;

pub(crate) use error::engine_message;
pub(crate) use pull::{pull as pull_image, pull_through, tag_to_pull};

#[cfg(test)]
mod fixtures;

pub use apply::{apply, last_applied, recover, remove};
pub use engine::STOP_TIMEOUT;
pub use error::ApplyError;
pub(crate) use journal::{read_json, write_json};
pub use observe::{observe, ContainerState, Health, ServiceHealth, StackHealth};

/// What an apply reports while it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// An image is being pulled: bytes downloaded of the bytes known so far, over its layers.
    Pulling {
        /// The image reference.
        image: String,
        /// Bytes downloaded.
        done: u64,
        /// Bytes known (grows as layers are learnt).
        total: u64,
    },
    /// An image has been pulled.
    Pulled {
        /// The image reference.
        image: String,
    },
    /// A service's running container is already this version and was left alone.
    Kept {
        /// The service.
        service: String,
    },
    /// A service's new container started.
    Started {
        /// The service.
        service: String,
    },
    /// Every service of the new version runs and the apply is recorded as committed: from here
    /// on, even a crash ends with this version (only clean-up remains).
    Committed,
    /// A step failed; the previous version is being restored.
    RollingBack {
        /// Why.
        reason: String,
    },
}

/// What a successful apply did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The version now running.
    pub version: u32,
    /// Services whose running container was left alone.
    pub kept: Vec<String>,
    /// Services whose container was created and started.
    pub started: Vec<String>,
    /// Containers removed that no service of the spec owns (a removed service's, a leftover).
    pub removed: Vec<String>,
}

/// What [`recover`] did for one project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recovered {
    /// The interrupted apply had not committed: the previous version runs again.
    RolledBack {
        /// The project.
        project: String,
        /// The version that was being applied, and is not.
        version: u32,
    },
    /// The interrupted apply had committed: its clean-up was finished.
    Completed {
        /// The project.
        project: String,
        /// The version that runs.
        version: u32,
    },
}

/// Whether [`remove`] also removes the stack's volumes (its data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoveVolumes {
    /// Keep them: a stack created again later finds its data.
    No,
    /// Remove named and anonymous volumes too (`docker compose down -v`).
    Yes,
}
