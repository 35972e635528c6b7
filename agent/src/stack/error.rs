//! What can go wrong applying, observing or removing a stack, with the engine's own words kept:
//! the hub shows `failed: <reason>`, and the reason a user can act on is the engine's ("pull
//! access denied", "port is already allocated", "no such file or directory"), not ours.

use std::path::PathBuf;

use outpost_certs::PkiError;
use outpost_protocol::stack::StackError;
use thiserror::Error;

/// Why a stack operation failed. Every apply that returns one of these (except
/// [`ApplyError::RollbackFailed`]) has left the engine running the stack's previous version.
#[derive(Debug, Error)]
pub enum ApplyError {
    /// The spec breaks the structural rules (the hub checks them too; a device refuses rather than
    /// trusting it).
    #[error("stack {project}: {source}")]
    Invalid {
        /// The stack's project name.
        project: String,
        /// The broken rule.
        #[source]
        source: StackError,
    },
    /// An image could not be pulled; no container was touched. Check the image reference, the
    /// registry's reachability from the device, and its credentials.
    #[error("pull {image}: {message}")]
    Pull {
        /// The image reference as the spec names it.
        image: String,
        /// The engine's message.
        message: String,
    },
    /// The hub holds this device's image transfers back (its byte budget for the period is spent,
    /// or it is outside its transfer window); no container was touched, what arrived of the
    /// image is kept, and the apply is tried again at `retry_at`. Not a failure.
    #[error("pull {image}: {message}")]
    Deferred {
        /// The image reference as the spec names it.
        image: String,
        /// The hub's words (`deferred: budget: …`).
        message: String,
        /// When the hub said to ask again (seconds since the Unix epoch).
        retry_at: u64,
    },
    /// The engine refused one step (create, start, stop, rename, …) and the apply was rolled back.
    #[error("{action} {target}: {message}")]
    Engine {
        /// The step (`create container`, `start container`, …).
        action: &'static str,
        /// The container, network or volume it was for.
        target: String,
        /// The engine's message.
        message: String,
    },
    /// The apply failed and putting the previous version back failed too; the journal is kept, so
    /// [`recover`](super::recover) retries the rollback (the agent calls it at every start).
    #[error("{cause}; rolling back to the previous version also failed: {rollback}")]
    RollbackFailed {
        /// Why the apply failed.
        cause: Box<Self>,
        /// Why the rollback failed.
        rollback: Box<Self>,
    },
    /// A state file (journal or applied spec) could not be written. Check that the agent's state
    /// directory exists and is writable.
    #[error(transparent)]
    StateWrite(#[from] PkiError),
    /// A state file could not be read or removed.
    #[error("cannot {action} {}: {source}", path.display())]
    StateIo {
        /// `read`, `remove`, `list`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A state file is not what this agent writes (edited by hand, or written by a newer agent).
    /// Remove it once the engine's containers are as wanted.
    #[error("state file {} is unreadable: {reason}", path.display())]
    StateCorrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl ApplyError {
    /// A closure turning the engine's error for `action` on `target` into [`ApplyError::Engine`].
    pub(crate) fn engine<'a>(
        action: &'static str,
        target: &'a str,
    ) -> impl FnOnce(bollard::errors::Error) -> Self + 'a {
        move |err| Self::Engine {
            action,
            target: target.to_owned(),
            message: engine_message(&err),
        }
    }
}

/// The engine's own message when it sent one, else the client's description of what failed.
pub(crate) fn engine_message(err: &bollard::errors::Error) -> String {
    use bollard::errors::Error;
    match err {
        Error::DockerResponseServerError { message, .. } => message.clone(),
        Error::DockerStreamError { error } => error.clone(),
        other => crate::snapshot::cause(other),
    }
}

/// Whether the engine answered "no such …" (404).
pub(crate) fn is_not_found(err: &bollard::errors::Error) -> bool {
    matches!(
        err,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engines_message_is_kept_verbatim() {
        let refused = bollard::errors::Error::DockerResponseServerError {
            status_code: 500,
            message: "driver failed programming external connectivity".to_owned(),
        };
        let err = ApplyError::engine("start container", "pos-web-1")(refused);
        assert_eq!(
            err.to_string(),
            "start container pos-web-1: driver failed programming external connectivity"
        );
        let stream = bollard::errors::Error::DockerStreamError {
            error: "manifest unknown".to_owned(),
        };
        assert_eq!(engine_message(&stream), "manifest unknown");
    }

    #[test]
    fn only_a_404_is_not_found() {
        let answer = |status_code| bollard::errors::Error::DockerResponseServerError {
            status_code,
            message: String::new(),
        };
        assert!(is_not_found(&answer(404)));
        assert!(!is_not_found(&answer(409)));
        assert!(!is_not_found(&bollard::errors::Error::RequestTimeoutError));
    }
}
