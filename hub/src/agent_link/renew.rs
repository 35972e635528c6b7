//! Certificate renewal over a live session: the agent asks with a CSR for the key of the
//! certificate it connected with, the hub issues and records a new one and sends it back.
//!
//! The session's TLS handshake already proved the agent holds the presented certificate's key, so
//! the CSR must be for that same key (a renewal never moves a device to a new key; that takes an
//! admin's reset). The new certificate does not replace the old one until the agent connects
//! with it ([`crate::store::certs`]). A session may ask once: a second request closes it as a
//! protocol violation before it costs a signature or a store write.

use outpost_certs::{cert_public_key, client_identity, ClientRole};
use outpost_protocol::wire::HubMessage;
use rustls::pki_types::CertificateDer;
use tracing::{info, warn};

use crate::context::HubContext;
use crate::registry::LiveSession;
use crate::store::certs::{self, NewCert, RenewRefusal};
use crate::store::{unix_now, unix_seconds};

/// Answer an [`outpost_protocol::wire::AgentMessage::Renew`]: the frame carrying a new
/// certificate, or (refused, with the reason logged) nothing.
pub(super) async fn answer(
    ctx: &HubContext,
    session: &LiveSession,
    csr_der: Vec<u8>,
) -> Option<HubMessage> {
    match issue(ctx, session, &csr_der).await {
        Ok(cert_der) => {
            info!(endpoint = %session.endpoint, "certificate renewed");
            Some(HubMessage::Renewed { cert_der })
        }
        Err(why) => {
            warn!(endpoint = %session.endpoint, "certificate renewal refused: {why}");
            None
        }
    }
}

async fn issue(ctx: &HubContext, session: &LiveSession, csr_der: &[u8]) -> Result<Vec<u8>, String> {
    let leaf = session
        .connection()
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|chain| chain.first().cloned())
        .ok_or("the session has no client certificate")?;
    let (_, serial) = client_identity(&leaf).map_err(|e| e.to_string())?;
    let presented_key = cert_public_key(&leaf).map_err(|e| e.to_string())?;
    let role = ClientRole::Agent(session.agent_id.0);
    let cert = ctx
        .pki
        .issue_client_cert(&role, csr_der, ctx.agent_cert_validity)
        .map_err(|e| format!("the certificate request: {e}"))?;
    if cert.public_key != presented_key {
        return Err("the request is for another key than the session's certificate".into());
    }
    let new = NewCert {
        serial: cert.serial.to_string(),
        not_after: unix_seconds(cert.not_after),
        public_key: cert.public_key.0,
    };
    let (endpoint, presented) = (session.endpoint, serial.to_string());
    let recorded = ctx
        .store
        .call(move |c| certs::renew(c, endpoint, &presented, &new, unix_now()))
        .await
        .map_err(|e| e.to_string())?;
    match recorded {
        Ok(()) => Ok(cert.der.to_vec()),
        Err(RenewRefusal::Revoked) => Err("the session's certificate was revoked".into()),
        Err(RenewRefusal::Outstanding) => {
            Err("a renewed certificate already waits to be used".into())
        }
    }
}
