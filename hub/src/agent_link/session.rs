//! One agent session: authenticate the certificate against the store, then drive the control stream
//! and the check-in datagrams until the connection ends.
//!
//! The driver is thin: a reader task turns the control stream into messages (reads are not
//! cancel-safe, so they never sit in a `select!`), and one loop answers check-ins, forwards summons
//! and records what the agent reports.

use std::sync::Arc;
use std::time::Duration;

use outpost_certs::{client_identity, ClientRole};
use outpost_common::wire::{
    self, AgentMessage, CloseCode, Datagram, HubMessage, Welcome, WireError, MAX_CONTROL_FRAME,
};
use outpost_common::{AgentId, EndpointId};
use rustls::pki_types::CertificateDer;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::context::HubContext;
use crate::registry::LiveSession;
use crate::store::{endpoints, extras, StoreError};

/// How long a new connection has to open its control stream and say hello.
const HELLO_DEADLINE: Duration = Duration::from_secs(20);
/// Control messages queued towards one agent; a summon is one message, so this never fills in
/// practice, and bounding it keeps a stuck agent from growing hub memory.
const CONTROL_QUEUE: usize = 16;

/// Why a session ended.
#[derive(Debug, Error)]
pub(super) enum SessionError {
    /// The client certificate is missing, unreadable or not an agent's.
    #[error("client certificate refused: {0}")]
    BadCertificate(String),
    /// The certificate was revoked or its endpoint removed.
    #[error("certificate {0} is revoked or unknown")]
    Revoked(String),
    /// The agent did not open its control stream in time.
    #[error("no hello within {HELLO_DEADLINE:?}")]
    NoHello,
    /// The agent broke the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The connection ended.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The control stream failed.
    #[error("control stream: {0}")]
    Wire(#[from] WireError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

pub(super) async fn run(
    ctx: &Arc<HubContext>,
    conn: quinn::Connection,
) -> Result<(), SessionError> {
    let (endpoint, agent_id) = match authenticate(ctx, &conn).await {
        Ok(found) => found,
        Err(e) => {
            let code = match e {
                SessionError::Revoked(_) => CloseCode::Revoked,
                _ => CloseCode::ProtocolViolation,
            };
            conn.close(code.as_varint(), e.to_string().as_bytes());
            return Err(e);
        }
    };
    let record = ctx
        .store
        .call(move |c| endpoints::find(c, endpoint))
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
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let session = Arc::new(LiveSession::new(
        endpoint,
        agent_id,
        conn.clone(),
        control_tx,
        !record.approved,
        record.migrations.max(0) as u64,
    ));
    let (agent_tx, agent_rx) = mpsc::channel(CONTROL_QUEUE);
    let reader = tokio::spawn(wire::forward_frames(recv, MAX_CONTROL_FRAME, agent_tx));
    let welcome = HubMessage::Welcome(Welcome {
        endpoint,
        pending_approval: !record.approved,
        settings: ctx.session,
        hub_addrs: ctx.hub_addrs.clone(),
    });
    wire::write_frame(&mut send, &welcome).await?;
    ctx.registry.insert(session.clone());
    info!(%endpoint, agent = %agent_id, %agent_version, remote = %conn.remote_address(), "agent connected");

    let result = drive(ctx, &session, &mut send, control_rx, agent_rx).await;
    reader.abort();
    ctx.registry.remove(&session);
    info!(%endpoint, "agent disconnected");
    result
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
        .call(move |c| endpoints::cert_status(c, &lookup))
        .await?;
    match status {
        Some(s) if !s.revoked && s.agent_id == Some(AgentId(uuid)) => {
            Ok((s.endpoint, AgentId(uuid)))
        }
        _ => Err(SessionError::Revoked(serial)),
    }
}

async fn drive(
    ctx: &HubContext,
    session: &LiveSession,
    send: &mut quinn::SendStream,
    mut outgoing: mpsc::Receiver<HubMessage>,
    mut incoming: mpsc::Receiver<Result<AgentMessage, WireError>>,
) -> Result<(), SessionError> {
    let conn = session.connection().clone();
    let interval_s = u16::try_from(ctx.checkin_interval().as_secs()).unwrap_or(u16::MAX);
    loop {
        tokio::select! {
            datagram = conn.read_datagram() => {
                let bytes = datagram?;
                match wire::decode::<Datagram>(&bytes) {
                    Ok(Datagram::CheckIn { seq }) => {
                        if session.record_checkin(Instant::now()) {
                            info!(endpoint = %session.endpoint, remote = %conn.remote_address(), "connection migrated");
                        }
                        let ack = wire::encode(&Datagram::Ack { seq, interval_s });
                        if let Err(e) = conn.send_datagram(ack.into()) {
                            debug!(endpoint = %session.endpoint, "ack not sent: {e}");
                        }
                    }
                    Ok(other) => return Err(SessionError::Protocol(format!("unexpected datagram {other:?}"))),
                    Err(e) => return Err(SessionError::Protocol(format!("bad datagram: {e}"))),
                }
            }
            message = incoming.recv() => match message {
                Some(Ok(AgentMessage::Ready { id })) => session.resolve_summon(id),
                Some(Ok(AgentMessage::Standby)) => session.enter_standby(),
                Some(Ok(AgentMessage::Snapshot(snapshot))) => {
                    // Informational: a store hiccup loses this snapshot, never the device's session.
                    let id = session.endpoint;
                    match ctx.store.call(move |c| extras::save_snapshot(c, id, &snapshot)).await {
                        Ok(()) => debug!(endpoint = %id, "engine snapshot stored"),
                        Err(e) => warn!(endpoint = %id, "engine snapshot not stored: {e}"),
                    }
                }
                Some(Ok(AgentMessage::Hello { .. })) => return Err(SessionError::Protocol("second hello".into())),
                Some(Err(WireError::Closed)) | None => return Ok(()),
                Some(Err(e)) => {
                    conn.close(CloseCode::ProtocolViolation.as_varint(), e.to_string().as_bytes());
                    return Err(e.into());
                }
            },
            Some(message) = outgoing.recv() => wire::write_frame(send, &message).await?,
        }
    }
}
