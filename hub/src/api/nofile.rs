//! The open-file limit. Every API connection is a descriptor, and distributions start services
//! with a soft limit of 1,024 (often 256 in containers and on macOS shells) under a far higher hard
//! limit; 300 half-open connections then made `accept` fail with EMFILE for everyone. The hub
//! raises its soft limit to the hard one at start, and the API sizes its connection cap from the
//! limit in force ([`super::connections::effective_cap`]).

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// The soft limit before and after [`raise_open_file_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFileLimit {
    /// Soft limit at start.
    pub before: u64,
    /// Soft limit now (the hard limit, unless raising failed).
    pub now: u64,
}

/// Raise the soft open-file limit to the hard limit.
pub fn raise_open_file_limit() -> Result<OpenFileLimit, nix::Error> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(OpenFileLimit {
        before: soft,
        now: hard.max(soft),
    })
}

/// Raise the limit at a hub's start and log what it allows (or why it could not).
pub fn raise_open_file_limit_and_log(max_api_connections: usize) {
    match raise_open_file_limit() {
        Ok(limit) => tracing::info!(
            before = limit.before,
            now = limit.now,
            api_connections = super::effective_cap(max_api_connections, limit.now),
            "open-file limit raised to the hard limit"
        ),
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
}

/// The soft open-file limit in force; read at each accept (one system call), so the cap follows a
/// limit changed on the running hub with `prlimit --pid`.
pub(super) fn open_file_limit() -> u64 {
    getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft)
}
