//! The device's identity on disk: its UUID, its key pair, and — once enrolled — its certificate, the
//! hub CA and where the hub is.
//!
//! Files in the data directory (keys and certificates mode 0600):
//! - `agent.id`: the UUID, generated on first start unless `EDGE_ID` pre-assigns it;
//! - `agent.key`: the private key (ECDSA P-256), generated on first start;
//! - `agent.pem`, `hub-ca.pem`: the issued certificate and the hub CA;
//! - `enrollment.json`: endpoint id, pinned CA fingerprint, hub addresses. Written last, so its
//!   presence means the enrolment is complete.

use std::path::{Path, PathBuf};

use outpost_certs::{certs_from_pem, AgentKey, CertificateDer, Fingerprint, PkiError};
use outpost_protocol::wire::Enrolled;
use outpost_protocol::{AgentId, EndpointId};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why the identity could not be loaded or saved.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// File system failure.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// `agent.id` does not hold a UUID.
    #[error("{path} does not hold a UUID ({reason}); fix or delete it")]
    BadId {
        /// The file.
        path: PathBuf,
        /// Parse error.
        reason: String,
    },
    /// `EDGE_ID` disagrees with the id this device already has.
    #[error("this device is already agent {existing} (in {path}); EDGE_ID asks for {requested}. Remove the data directory to become a new agent")]
    IdConflict {
        /// Persisted id.
        existing: AgentId,
        /// Requested id.
        requested: AgentId,
        /// The id file.
        path: PathBuf,
    },
    /// Key or certificate failure.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// `enrollment.json` is unreadable.
    #[error("{path} is corrupt ({reason}); delete it to enrol again")]
    BadEnrollment {
        /// The file.
        path: PathBuf,
        /// Parse error.
        reason: String,
    },
}

/// What a completed enrolment leaves behind.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Enrollment {
    /// The endpoint this device is.
    pub endpoint: EndpointId,
    /// SHA-256 of the hub CA, hex.
    pub ca_fingerprint: String,
    /// Where the hub is, tried in order.
    pub hub_addrs: Vec<String>,
    /// Whether the hub still waits for an admin's approval (informational).
    pub pending_approval: bool,
}

/// The device's identity.
#[derive(Debug)]
pub struct Identity {
    dir: PathBuf,
    /// The agent's UUID.
    pub agent_id: AgentId,
    /// The agent's key pair.
    pub key: AgentKey,
    /// Present once enrolled.
    pub enrollment: Option<Enrollment>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Identity {
    /// Load the identity from `dir`, creating the id and key on first start.
    pub fn load_or_create(dir: &Path, requested: Option<AgentId>) -> Result<Self, IdentityError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let agent_id = load_or_create_id(dir, requested)?;
        let key = AgentKey::load_or_generate(&dir.join("agent.key"))?;
        let enrollment = load_enrollment(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            agent_id,
            key,
            enrollment,
        })
    }

    /// Persist a fresh enrolment (certificate, CA, then the marker file).
    pub fn save_enrollment(&mut self, enrolled: &Enrolled) -> Result<(), IdentityError> {
        let cert_pem = outpost_certs::cert_to_pem(&enrolled.cert_der);
        let ca_pem = outpost_certs::cert_to_pem(&enrolled.ca_der);
        outpost_certs::write_private_file(&self.dir.join("agent.pem"), cert_pem.as_bytes())?;
        outpost_certs::write_private_file(&self.dir.join("hub-ca.pem"), ca_pem.as_bytes())?;
        let enrollment = Enrollment {
            endpoint: enrolled.endpoint,
            ca_fingerprint: Fingerprint::of(&enrolled.ca_der).to_string(),
            hub_addrs: enrolled.hub_addrs.clone(),
            pending_approval: enrolled.pending_approval,
        };
        let json = serde_json::to_vec_pretty(&enrollment).unwrap_or_default();
        outpost_certs::write_private_file(&self.dir.join("enrollment.json"), &json)?;
        self.enrollment = Some(enrollment);
        Ok(())
    }

    /// Remember new hub addresses the hub announced.
    pub fn update_hub_addrs(&mut self, addrs: &[String]) -> Result<(), IdentityError> {
        let Some(enrollment) = self.enrollment.as_mut() else {
            return Ok(());
        };
        if addrs.is_empty() || enrollment.hub_addrs == addrs {
            return Ok(());
        }
        enrollment.hub_addrs = addrs.to_vec();
        let json = serde_json::to_vec_pretty(&enrollment).unwrap_or_default();
        outpost_certs::write_private_file(&self.dir.join("enrollment.json"), &json)?;
        Ok(())
    }

    /// Where the issued certificate is kept (renewal replaces it there).
    pub fn certificate_path(&self) -> PathBuf {
        self.dir.join("agent.pem")
    }

    /// The issued certificate chain.
    pub fn certificate(&self) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
        let path = self.dir.join("agent.pem");
        let pem = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        Ok(certs_from_pem(&pem)?)
    }
}

fn load_or_create_id(dir: &Path, requested: Option<AgentId>) -> Result<AgentId, IdentityError> {
    let path = dir.join("agent.id");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let existing: AgentId =
                text.parse()
                    .map_err(|e: uuid::Error| IdentityError::BadId {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
            match requested {
                Some(requested) if requested != existing => Err(IdentityError::IdConflict {
                    existing,
                    requested,
                    path,
                }),
                _ => Ok(existing),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = requested.unwrap_or_else(AgentId::generate);
            outpost_certs::write_private_file(&path, format!("{id}\n").as_bytes())?;
            Ok(id)
        }
        Err(e) => Err(io_err(&path)(e)),
    }
}

fn load_enrollment(dir: &Path) -> Result<Option<Enrollment>, IdentityError> {
    let path = dir.join("enrollment.json");
    match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| IdentityError::BadEnrollment {
                    path,
                    reason: e.to_string(),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_survives_restart_and_refuses_a_conflicting_edge_id() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path(), None).unwrap();
        let again = Identity::load_or_create(dir.path(), None).unwrap();
        assert_eq!(first.agent_id, again.agent_id);
        assert_eq!(first.key.public_key_der(), again.key.public_key_der());
        let same = Identity::load_or_create(dir.path(), Some(first.agent_id)).unwrap();
        assert_eq!(same.agent_id, first.agent_id);
        let err = Identity::load_or_create(dir.path(), Some(AgentId::generate())).unwrap_err();
        assert!(matches!(err, IdentityError::IdConflict { .. }), "{err}");
    }

    #[test]
    fn a_pre_assigned_id_is_used_on_first_start() {
        let dir = tempfile::tempdir().unwrap();
        let wanted = AgentId::generate();
        let identity = Identity::load_or_create(dir.path(), Some(wanted)).unwrap();
        assert_eq!(identity.agent_id, wanted);
        assert!(identity.enrollment.is_none());
    }

    #[test]
    fn a_corrupt_enrollment_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("enrollment.json"), b"{nope").unwrap();
        let err = Identity::load_or_create(dir.path(), None).unwrap_err();
        assert!(
            err.to_string().contains("delete it to enrol again"),
            "{err}"
        );
    }
}
