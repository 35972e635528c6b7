//! Setting a session up: the certificate checked against the store, hello and welcome exchanged,
//! the session registered — everything before the driver ([`super::driver`]) takes the
//! connection over. A device's saved path is offered to the congestion controller here (Careful
//! Resume), before the first byte of the session is sent.

use std::sync::Arc;
use std::time::Duration;

use outpost_certs::{client_identity, ClientRole};
use outpost_protocol::wire::{
    self, AgentMessage, CloseCode, HubMessage, Welcome, MAX_CONTROL_FRAME,
};
use outpost_protocol::{AgentId, EndpointId};
use outpost_transport::close::CloseCodeVarint as _;
use outpost_transport::congestion::{path_memory_of, PathEstimate};
use rustls::pki_types::CertificateDer;
use tokio::time::Instant;
use tracing::{debug, info};

use super::driver::SessionError;
use crate::context::HubContext;
use crate::registry::LiveSession;
use crate::session::interval::CheckinSetup;
use crate::store::endpoints;

/// How long a new connection has to open its control stream and say hello.
pub(super) const HELLO_DEADLINE: Duration = Duration::from_secs(20);
/// How old a device's saved path may be for its next connection to resume from it (Careful
/// Resume): a day, since a kiosk may be summoned once a day. Staleness within it costs little:
/// the controller resumes only when the new connection's round trip matches the saved one, and
/// ends the loan after a round that delivers under half of it.
const SAVED_PATH_LIFETIME_S: i64 = 24 * 3600;

/// A session that said hello and was welcomed.
pub(super) struct Established {
    pub(super) session: Arc<LiveSession>,
    pub(super) send: quinn::SendStream,
    pub(super) recv: quinn::RecvStream,
}

/// Check the certificate against the store, exchange hello and welcome, register the session.
pub(super) async fn establish(
    ctx: &Arc<HubContext>,
    conn: &quinn::Connection,
) -> Result<Established, SessionError> {
    let (endpoint, agent_id) = match authenticate(ctx, conn).await {
        Ok(found) => found,
        Err(e) => {
            let code = match e {
                SessionError::Revoked(_) => CloseCode::Revoked,
                _ => CloseCode::ProtocolViolation,
            };
            conn.close(code.to_varint(), e.to_string().as_bytes());
            return Err(e);
        }
    };
    // The record and, in the same store call, its group's quiet check-in policy.
    let (record, quiet) = ctx
        .store
        .call(move |c| {
            let Some(record) = endpoints::find(c, endpoint)? else {
                return Ok(None);
            };
            let quiet = match record.group.as_deref() {
                Some(group) => crate::store::quiet::quiet_interval(c, group)?,
                None => None,
            };
            Ok(Some((record, quiet)))
        })
        .await?
        .ok_or_else(|| SessionError::Revoked(format!("endpoint {endpoint}")))?;

    let (mut send, mut recv) = tokio::time::timeout(HELLO_DEADLINE, conn.accept_bi())
        .await
        .map_err(|_| SessionError::NoHello)??;
    let hello = tokio::time::timeout(
        HELLO_DEADLINE,
        wire::read_frame(&mut recv, MAX_CONTROL_FRAME),
    )
    .await
    .map_err(|_| SessionError::NoHello)??;
    let AgentMessage::Hello { agent_version } = hello else {
        return Err(SessionError::Protocol(format!(
            "expected hello, got {hello:?}"
        )));
    };
    outpost_protocol::text::device_text(&agent_version)
        .map_err(|e| SessionError::Protocol(format!("the agent version {e}")))?;
    if let (Some(estimate), Some(path)) =
        (path_to_resume(ctx, endpoint, &record), path_memory_of(conn))
    {
        debug!(%endpoint, rate = estimate.rate, min_rtt = ?estimate.min_rtt, "offering the device's last path to the controller");
        path.offer(estimate);
    }
    let session = Arc::new(LiveSession::new(
        endpoint,
        agent_id,
        conn.clone(),
        ctx.tunnels.clone(),
        !record.approved,
        record.migrations.max(0) as u64,
        CheckinSetup {
            interval: ctx.checkin_interval(),
            timing: ctx.checkin_tuning,
            quiet,
        },
    ));
    let welcome = HubMessage::Welcome(Welcome {
        endpoint,
        pending_approval: !record.approved,
        settings: ctx.session,
        hub_addrs: ctx.hubs.addrs_for(endpoint),
    });
    wire::write_frame(&mut send, &welcome).await?;
    if let Some(replaced) = ctx.registry.insert(session.clone()) {
        ctx.pings
            .keep(endpoint, replaced.ping_cache(), Instant::now());
    }
    info!(%endpoint, agent = %agent_id, %agent_version, remote = %session.path().addr, transport = ?session.path().kind, "agent connected");
    Ok(Established {
        session,
        send,
        recv,
    })
}

/// The path a new connection from `endpoint` may resume from: what the connection it replaces
/// measured (a reconnect the hub has not noticed yet, whose final save is superseded), else what
/// the store kept of the last finished one, if it is under [`SAVED_PATH_LIFETIME_S`] old.
fn path_to_resume(
    ctx: &HubContext,
    endpoint: EndpointId,
    record: &endpoints::EndpointRecord,
) -> Option<PathEstimate> {
    let replaced = ctx
        .registry
        .get(endpoint)
        .and_then(|session| session.path_estimate());
    let oldest = crate::store::unix_now() - SAVED_PATH_LIFETIME_S;
    let saved = record
        .path
        .filter(|saved| saved.measured_at >= oldest)
        .map(|saved| saved.estimate);
    replaced.or(saved)
}

async fn authenticate(
    ctx: &HubContext,
    conn: &quinn::Connection,
) -> Result<(EndpointId, AgentId), SessionError> {
    let chain = conn
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or_else(|| SessionError::BadCertificate("no client certificate presented".into()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| SessionError::BadCertificate("empty certificate chain".into()))?;
    let (role, serial) =
        client_identity(leaf).map_err(|e| SessionError::BadCertificate(e.to_string()))?;
    let ClientRole::Agent(uuid) = role else {
        return Err(SessionError::BadCertificate(
            "not an agent certificate".into(),
        ));
    };
    let serial = serial.to_string();
    let lookup = serial.clone();
    let status = ctx
        .store
        .call(move |c| crate::store::certs::present(c, &lookup, crate::store::unix_now()))
        .await?;
    match status {
        Some(s) if !s.revoked && s.agent_id == Some(AgentId(uuid)) => {
            Ok((s.endpoint, AgentId(uuid)))
        }
        _ => Err(SessionError::Revoked(serial)),
    }
}
