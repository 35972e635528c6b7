//! Enrolment: prove the token, present the device's UUID and CSR, receive a certificate.

use outpost_certs::Fingerprint;
use outpost_protocol::token::JoinToken;
use outpost_protocol::wire::{
    self, CloseCode, EnrollReply, EnrollRequest, Enrolled, Refusal, WireError, ALPN_ENROLL,
    MAX_ENROLL_FRAME,
};
use outpost_transport::close::CloseCodeVarint as _;
use thiserror::Error;

use crate::dial::{DialError, Dialer};
use crate::identity::Identity;

/// Why enrolment did not complete.
#[derive(Debug, Error)]
pub enum EnrollError {
    /// The hub could not be reached or is not the pinned hub.
    #[error(transparent)]
    Dial(#[from] DialError),
    /// The hub refused; see the reason.
    #[error("the hub refused enrolment ({:?}): {}", .0.reason, .0.message)]
    Refused(Refusal),
    /// The exchange broke off.
    #[error("enrolment exchange failed: {0}")]
    Exchange(String),
    /// The CSR could not be built.
    #[error("cannot build the certificate request: {0}")]
    Csr(String),
}

impl EnrollError {
    /// Whether retrying the same enrolment can ever succeed.
    pub fn is_final(&self) -> bool {
        match self {
            Self::Dial(e) => e.is_final(),
            Self::Refused(refusal) => refusal.reason.is_final(),
            Self::Exchange(_) => false,
            Self::Csr(_) => true,
        }
    }
}

/// Enrol `identity` with `token`.
pub async fn enroll(
    dialer: &mut Dialer,
    identity: &Identity,
    token: &JoinToken,
) -> Result<Enrolled, EnrollError> {
    let csr_der = identity
        .key
        .csr_der(identity.agent_id.0)
        .map_err(|e| EnrollError::Csr(e.to_string()))?;
    let conn = dialer
        .connect(
            &token.hub_addrs,
            Fingerprint(token.ca_fingerprint),
            None,
            ALPN_ENROLL,
        )
        .await?;
    let request = EnrollRequest {
        endpoint: token.endpoint,
        secret: token.secret.clone(),
        agent_id: identity.agent_id,
        csr_der,
        agent_version: env!("CARGO_PKG_VERSION").into(),
    };
    let reply = exchange(&conn, &request).await;
    conn.close(CloseCode::Done.to_varint(), b"");
    match reply.map_err(|e| EnrollError::Exchange(e.to_string()))? {
        EnrollReply::Accepted(enrolled) => Ok(enrolled),
        EnrollReply::Refused(refusal) => Err(EnrollError::Refused(refusal)),
    }
}

async fn exchange(
    conn: &quinn::Connection,
    request: &EnrollRequest,
) -> Result<EnrollReply, WireError> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| WireError::Io(e.into()))?;
    wire::write_frame(&mut send, request).await?;
    let _ = send.finish();
    wire::read_frame(&mut recv, MAX_ENROLL_FRAME).await
}
