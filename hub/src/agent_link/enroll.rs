//! Enrolment: one request, one reply, on a connection without a client certificate.
//!
//! The request is read under a size limit and a deadline; the certificate is prepared before the
//! store decides, so the binding and the certificate record land in one transaction and a refusal
//! changes nothing.

use std::time::Duration;

use outpost_certs::ClientRole;
use outpost_common::wire::{
    self, CloseCode, EnrollReply, EnrollRequest, Enrolled, Refusal, RefusalReason, WireError,
    MAX_ENROLL_FRAME, MAX_TEXT,
};
use thiserror::Error;
use tracing::info;

use crate::context::HubContext;
use crate::store::{endpoints, unix_now, EnrollInput, StoreError};

/// How long a client has to send its request.
const REQUEST_DEADLINE: Duration = Duration::from_secs(20);
/// Agent certificates live long; revocation is by the store, not by expiry.
const AGENT_CERT_VALIDITY: Duration = Duration::from_secs(5 * 365 * 24 * 3600);

/// Why an enrolment connection ended without an answer.
#[derive(Debug, Error)]
pub(super) enum EnrollError {
    /// No request arrived in time.
    #[error("no enrolment request within {REQUEST_DEADLINE:?}")]
    Timeout,
    /// The connection failed.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Writing the reply failed.
    #[error("writing the reply: {0}")]
    Write(#[from] WireError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

pub(super) async fn run(ctx: &HubContext, conn: &quinn::Connection) -> Result<(), EnrollError> {
    let (mut send, mut recv) = tokio::time::timeout(REQUEST_DEADLINE, conn.accept_bi())
        .await
        .map_err(|_| EnrollError::Timeout)??;
    let request = tokio::time::timeout(
        REQUEST_DEADLINE,
        wire::read_frame::<EnrollRequest, _>(&mut recv, MAX_ENROLL_FRAME),
    )
    .await
    .map_err(|_| EnrollError::Timeout)?;
    let reply = match request {
        Ok(request) => decide(ctx, request, conn.remote_address()).await?,
        Err(e) => EnrollReply::Refused(Refusal {
            reason: RefusalReason::Malformed,
            message: format!("the enrolment request could not be read: {e}"),
        }),
    };
    wire::write_frame(&mut send, &reply).await?;
    let _ = send.finish();
    // Let the reply reach the agent; it closes the connection once it has read it.
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await;
    conn.close(CloseCode::Done.as_varint(), b"");
    Ok(())
}

async fn decide(
    ctx: &HubContext,
    request: EnrollRequest,
    remote: std::net::SocketAddr,
) -> Result<EnrollReply, EnrollError> {
    let Ok(_slot) = ctx.enroll_slots.try_acquire() else {
        return Ok(refused(
            RefusalReason::Busy,
            "the hub is busy enrolling other devices; retrying",
        ));
    };
    if request.agent_version.len() > MAX_TEXT {
        return Ok(refused(
            RefusalReason::Malformed,
            "the agent version string is too long",
        ));
    }
    let role = ClientRole::Agent(request.agent_id.0);
    let cert = match ctx
        .pki
        .issue_client_cert(&role, &request.csr_der, AGENT_CERT_VALIDITY)
    {
        Ok(cert) => cert,
        Err(e) => {
            return Ok(refused(
                RefusalReason::Malformed,
                &format!("the certificate request was refused: {e}"),
            ))
        }
    };
    let input = EnrollInput {
        endpoint: request.endpoint,
        secret_hash: request.secret.hash(),
        agent_id: request.agent_id,
        agent_version: request.agent_version.clone(),
        cert_serial: cert.serial.to_string(),
        cert_not_after: cert
            .not_after
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default(),
    };
    let decision = ctx
        .store
        .call(move |conn| endpoints::enroll(conn, &input, unix_now()))
        .await?;
    Ok(match decision {
        Ok(outcome) => {
            info!(%remote, agent = %request.agent_id, endpoint = %outcome.endpoint, pending = outcome.pending, "enrolled");
            EnrollReply::Accepted(Enrolled {
                endpoint: outcome.endpoint,
                cert_der: cert.der.to_vec(),
                ca_der: ctx.pki.ca_cert_der().to_vec(),
                pending_approval: outcome.pending,
                hub_addrs: ctx.hub_addrs.clone(),
            })
        }
        Err(refusal) => {
            info!(%remote, agent = %request.agent_id, endpoint = %request.endpoint, reason = ?refusal.reason, "enrolment refused: {}", refusal.message);
            EnrollReply::Refused(refusal)
        }
    })
}

fn refused(reason: RefusalReason, message: &str) -> EnrollReply {
    EnrollReply::Refused(Refusal {
        reason,
        message: message.into(),
    })
}
