//! Enrolment: one request, one reply, on a connection without a client certificate.
//!
//! Anyone who completes a handshake can open one, so each costs the hub as little as possible
//! until the token is proven:
//! - an enrolment slot (`enroll_slots`, 64) is taken at once and held from the handshake to the
//!   close; without one the connection is closed with `Busy` and nothing is kept;
//! - the whole exchange, close included, has [`ENROLL_DEADLINE`];
//! - the token's secret is checked (one read) before the CSR is verified or anything is signed;
//! - failures are counted, not logged one by one: one summary line per [`LOG_INTERVAL`]
//!   ([`log_window`]), so 3,000 idle connections cost a line, not 3,000.
//!
//! The certificate is prepared before the store decides, so the binding and the certificate record
//! land in one transaction and a refusal changes nothing.

mod log_window;

use outpost_transport::close::CloseCodeVarint as _;
use std::sync::Mutex;
use std::time::Duration;

use outpost_certs::ClientRole;
use outpost_protocol::text::device_text;
use outpost_protocol::wire::{
    self, CloseCode, EnrollReply, EnrollRequest, Enrolled, Refusal, RefusalReason, WireError,
    MAX_ENROLL_FRAME,
};
use thiserror::Error;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::context::HubContext;
use crate::store::enroll::{self, token_matches, INVALID_TOKEN};
use crate::store::{unix_now, unix_seconds, EnrollInput, StoreError};
use log_window::{LogWindow, Outcome};

/// The whole exchange, from the handshake to the close. The request is one frame under 16 KiB and
/// the reply one under 4 KiB: about four round trips after the handshake (open the stream, the
/// request, the reply, the close), ~3 s on a geostationary path (700 ms) with a lost packet or
/// two. 10 s is three times that, and keeps 64 slots held by silent clients for seconds, not the
/// 30 s (20 s request + 10 s close) it used to be.
const ENROLL_DEADLINE: Duration = Duration::from_secs(10);
/// One summary line of enrolment failures at most this often.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Failures since the last summary line, for every hub in the process (a counter for the log,
/// nothing a decision reads).
static LOG: Mutex<LogWindow> = Mutex::new(LogWindow::new(LOG_INTERVAL));

/// Why an enrolment connection ended without an answer.
#[derive(Debug, Error)]
pub(super) enum EnrollError {
    /// The connection failed.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Reading the request or writing the reply failed.
    #[error("stream: {0}")]
    Wire(#[from] WireError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Serve one enrolment connection to its close. Only a store failure is returned; everything else
/// is counted for the summary line.
pub(super) async fn run(ctx: &HubContext, conn: &quinn::Connection) -> Result<(), EnrollError> {
    let deadline = Instant::now() + ENROLL_DEADLINE;
    let Ok(_slot) = ctx.enroll_slots.try_acquire() else {
        conn.close(CloseCode::Busy.to_varint(), b"busy enrolling other devices");
        record(Outcome::Busy);
        return Ok(());
    };
    let outcome = match tokio::time::timeout_at(deadline, exchange(ctx, conn)).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(EnrollError::Store(e))) => {
            conn.close(CloseCode::Busy.to_varint(), b"");
            return Err(EnrollError::Store(e));
        }
        Ok(Err(e)) => {
            debug!(remote = %conn.remote_address(), "enrolment broke off: {e}");
            Outcome::BrokeOff
        }
        Err(_) => Outcome::TimedOut,
    };
    if matches!(outcome, Outcome::Enrolled | Outcome::Refused) {
        // Let the reply reach the agent; it closes the connection once it has read it.
        let _ = tokio::time::timeout_at(deadline, conn.closed()).await;
    }
    conn.close(CloseCode::Done.to_varint(), b"");
    if outcome != Outcome::Enrolled {
        record(outcome);
    }
    Ok(())
}

fn record(outcome: Outcome) {
    let summary = LOG
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .record(Instant::now(), outcome);
    if let Some(summary) = summary {
        info!("enrolment attempts without a certificate in the last {summary}");
    }
}

async fn exchange(ctx: &HubContext, conn: &quinn::Connection) -> Result<Outcome, EnrollError> {
    let (mut send, mut recv) = conn.accept_bi().await?;
    let reply = match wire::read_frame::<EnrollRequest, _>(&mut recv, MAX_ENROLL_FRAME).await {
        Ok(request) => {
            decide(
                ctx,
                request,
                ctx.tunnels.resolve(conn.remote_address()).addr,
            )
            .await?
        }
        Err(e) => refused(
            RefusalReason::Malformed,
            format!("the enrolment request could not be read: {e}"),
        ),
    };
    wire::write_frame(&mut send, &reply).await?;
    let _ = send.finish();
    Ok(match reply {
        EnrollReply::Accepted(_) => Outcome::Enrolled,
        EnrollReply::Refused(_) => Outcome::Refused,
    })
}

async fn decide(
    ctx: &HubContext,
    request: EnrollRequest,
    remote: std::net::SocketAddr,
) -> Result<EnrollReply, EnrollError> {
    if let Err(e) = device_text(&request.agent_version) {
        return Ok(refused(
            RefusalReason::Malformed,
            format!("the agent version {e}"),
        ));
    }
    let (endpoint, hash) = (request.endpoint, request.secret.hash());
    if !ctx
        .store
        .read(move |c| token_matches(c, endpoint, &hash))
        .await?
    {
        return Ok(refused(RefusalReason::BadSecret, INVALID_TOKEN.into()));
    }
    let role = ClientRole::Agent(request.agent_id.0);
    let cert = match ctx
        .pki
        .issue_client_cert(&role, &request.csr_der, ctx.agent_cert_validity)
    {
        Ok(cert) => cert,
        Err(e) => {
            return Ok(refused(
                RefusalReason::Malformed,
                format!("the certificate request was refused: {e}"),
            ))
        }
    };
    let input = EnrollInput {
        endpoint: request.endpoint,
        secret_hash: hash,
        agent_id: request.agent_id,
        agent_version: request.agent_version.clone(),
        cert_serial: cert.serial.to_string(),
        cert_not_after: unix_seconds(cert.not_after),
        public_key: cert.public_key.0,
        max_pending: ctx.max_pending_per_fleet,
    };
    let decision = ctx
        .store
        .call(move |conn| enroll::enroll(conn, &input, unix_now()))
        .await?;
    let outcome = match decision {
        Ok(outcome) => outcome,
        Err(refusal) => {
            debug!(%remote, endpoint = %request.endpoint, reason = ?refusal.reason, "enrolment refused: {}", refusal.message);
            return Ok(EnrollReply::Refused(refusal));
        }
    };
    if outcome.superseded {
        if let Some(live) = ctx.registry.get(outcome.endpoint) {
            live.close(CloseCode::Replaced, "the device enrolled again");
        }
    }
    info!(%remote, agent = %request.agent_id, endpoint = %outcome.endpoint, pending = outcome.pending, "enrolled");
    // A fleet member starts with the fleet's group and tags: rollouts aimed at them take it in.
    ctx.fleet.labelled(outcome.endpoint);
    Ok(EnrollReply::Accepted(Enrolled {
        endpoint: outcome.endpoint,
        cert_der: cert.der.to_vec(),
        ca_der: ctx.pki.ca_cert_der().to_vec(),
        pending_approval: outcome.pending,
        hub_addrs: ctx.hubs.addrs_for(outcome.endpoint),
    }))
}

fn refused(reason: RefusalReason, message: String) -> EnrollReply {
    EnrollReply::Refused(Refusal { reason, message })
}
