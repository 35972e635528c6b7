//! Every message on an Outpost QUIC connection, its framing, and its limits.
//!
//! # Protocol flow
//!
//! ```text
//! enrolment (ALPN outpost-enroll/1, no client certificate; the agent pins the hub CA fingerprint)
//!   agent ──bi stream── EnrollRequest { endpoint, secret, agent_id, CSR } ──▶ hub
//!   agent ◀──────────── EnrollReply::Accepted { cert, CA } | Refused { reason } ── hub
//!   both close the connection; a refusal is final, the agent exits with its reason.
//!
//! session (ALPN outpost-session/1, mutual TLS with the issued certificate)
//!   agent opens the control stream (bidirectional; the only stream an agent may open, except
//!   fetch streams from version 6):
//!   agent ── AgentMessage::Hello ─────────────▶ hub
//!   (the agent's first session after it starts: AgentMessage::Snapshot right behind the hello,
//!   before the welcome; the hub reads every frame after the hello the same way)
//!   agent ◀─ HubMessage::Welcome { settings } ── hub
//!   every check-in interval (datagrams, unreliable: the next one supersedes a lost one):
//!   agent ── Datagram::CheckIn { seq } ────────▶ hub
//!   agent ◀─ Datagram::Ack { seq, interval } ─── hub
//!   when an admin needs the device (pushed, one round trip):
//!   agent ◀─ HubMessage::Summon { id } ───────── hub   (and, beside it, the request's proxy
//!                                                     stream on standby's one stream of credit)
//!   agent raises its bidirectional stream credit from 1 (from 0 before session 27), then
//!   agent ── AgentMessage::Ready { id } ───────▶ hub   (hub opens more proxy streams)
//!   after the standby period without activity:
//!   agent ── AgentMessage::Snapshot { engine summary } ──▶ hub
//!   agent drops its stream credit to 1 ── AgentMessage::Standby ──▶ hub
//!   once its certificate is past 2/3 of its life (a CSR for the same key):
//!   agent ── AgentMessage::Renew { CSR } ──────▶ hub   (at most one outstanding per session)
//!   agent ◀─ HubMessage::Renewed { cert } ────── hub   (used from the next connection on; the
//!                                                     hub revokes the old one when it is)
//!   stacks (version 3): every check-in names the desired state the agent has applied
//!   agent ── Datagram::CheckInApplied { seq, applied } ──▶ hub
//!   when it is not what the device should run, the hub sends the whole state:
//!   agent ◀─ HubMessage::Desired(state) ──────── hub
//!   agent ── AgentMessage::StackStatus(report) ─▶ hub   (on each phase change)
//!   jobs (version 4, [`crate::job`]): an agent that runs them says so once per session
//!   agent ── AgentMessage::Features(JOBS) ─────▶ hub
//!   agent ◀─ HubMessage::Job(order) ──────────── hub
//!   agent ── AgentMessage::JobStarted, JobResult ─▶ hub   (the result until acknowledged)
//!   agent ◀─ HubMessage::JobAck { id } ───────── hub
//!   agent ◀─ HubMessage::JobCancel { id } ────── hub   (an admin cancelled it)
//!   drift policy (version 5): an agent announcing Features(DRIFT_REPORT) is sent, in place of
//!   `Desired`, the state with the stacks whose drift it only reports
//!   agent ◀─ HubMessage::DesiredOrder(order) ──── hub
//!   registry (version 6, [`crate::fetch`]): an agent announcing Features(REGISTRY) to a hub
//!   with a mirror is granted stream credit and told so; it then opens fetch streams
//!   agent ◀─ HubMessage::Registry { streams } ──── hub
//!   agent ══ fetch stream (manifest or blob from an offset) ══▶ hub
//! ```
//!
//! Framing on streams: a 4-byte big-endian length, checked against the stream's limit *before* the
//! body is read, then a postcard body. Datagrams carry one postcard body each.
//!
//! # Versions
//! - 1: first version (enrolment, control stream, check-in datagrams, summon/standby, engine
//!   snapshots; proxy streams are described in [`crate::stream`]).
//! - 2: certificate renewal on the control stream (`AgentMessage::Renew`, `HubMessage::Renewed`)
//!   and the enrolment refusal `TooManyPending`, each added at the end of its enum so every
//!   version-1 message keeps its encoding. A version-1 peer cannot decode them: upgrade the hub
//!   before its agents (a version-1 hub closes a session that sends `Renew`).
//! - 3: stacks ([`crate::stack`]): `Datagram::CheckInApplied`, `HubMessage::Desired` and
//!   `AgentMessage::StackStatus`, again each at the end of its enum. A hub sends `Desired` only on
//!   a session whose agent has sent `CheckInApplied`, so older agents are never sent what they
//!   cannot read.
//! - 4: jobs ([`crate::job`]): `AgentMessage::{Features, JobStarted, JobResult}` and
//!   `HubMessage::{Job, JobAck, JobCancel}`, at the ends of their enums. A hub sends a job only to a session
//!   whose agent announced `Features::JOBS`; a version-3 hub closes a session that announces it, so
//!   (as for version 2) upgrade the hub before its agents.
//! - 5: drift policy ([`crate::stack::DesiredOrder`]): `HubMessage::DesiredOrder` at the end of
//!   its enum and the feature bit `DRIFT_REPORT`. A version-4 hub ignores the bit and goes on
//!   sending `Desired` (every stack re-applied), whose digest an agent names as before.
//! - 6: the agent's loopback registry ([`crate::fetch`]): the feature bit `REGISTRY` and
//!   `HubMessage::Registry` at the end of its enum. A hub sends it only to a session that
//!   announced the bit, and a version-5 hub ignores the bit and grants no stream credit, so its
//!   agents' registries answer the engine "the hub serves no registry" and open no stream.
//!   Later within version 6 (no version bump, nothing changes for those that do not know it): the
//!   feature bit `IMAGE_PULL`, [`crate::job::JobSpec::PullImage`] and `AgentMessage::JobProgress`
//!   at the ends of their enums. A hub sends a pull job only to an agent that announced the bit,
//!   and an agent reports progress only for such a job, so neither side is sent what it cannot
//!   read.
//! - The feature bit `QUIET` (no new message, so no new version): the agent takes check-in
//!   intervals of minutes ([`crate::agent_session::MAX_CHECKIN_INTERVAL`]) in `Ack::interval_s`,
//!   which it always could decode. A hub that does not know the bit ignores it; a hub that does
//!   gives a `quiet` group's interval only to agents that announced it.
//! - The feature bit `HUB_ADDRS` and `HubMessage::HubAddrs` at the end of its enum (within
//!   version 6, as `IMAGE_PULL`): the fleet's live hubs changed (issue #18). A hub sends it only
//!   to a session that announced the bit; an older hub ignores the bit, and its agents learn the
//!   hubs only from each `Welcome`.
//! - The feature bit `FETCH_FORBIDDEN` and [`crate::fetch::FetchRefusal::Forbidden`] at the end
//!   of its enum (within version 6): a device fetched an image the fleet did not order onto it.
//!   A hub sends the refusal only to an agent that announced the bit, and `NotFound` to others.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::ids::{AgentId, EndpointId, Secret};

/// ALPN of an enrolment connection.
pub const ALPN_ENROLL: &[u8] = b"outpost-enroll/1";
/// ALPN of a session connection.
pub const ALPN_SESSION: &[u8] = b"outpost-session/1";
/// Largest enrolment frame: a CSR or a certificate pair is well under 4 KiB.
pub const MAX_ENROLL_FRAME: usize = 16 * 1024;
/// Largest control-stream frame.
pub const MAX_CONTROL_FRAME: usize = 256 * 1024;
/// Largest datagram body we send or accept; check-ins are a few bytes.
pub const MAX_DATAGRAM: usize = 64;
/// Longest free-text field (versions, refusal messages).
pub const MAX_TEXT: usize = 512;

/// QUIC application close codes, so each side can tell a deliberate close from a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum CloseCode {
    /// Normal end (agent or hub shutting down).
    Done = 0,
    /// The endpoint was removed or its certificate revoked: the agent must stop for good.
    Revoked = 0x10,
    /// A newer connection from the same endpoint took over this one.
    Replaced = 0x11,
    /// The peer broke the protocol (bad frame, unexpected message).
    ProtocolViolation = 0x12,
    /// The hub is shedding load; retry later with backoff.
    Busy = 0x13,
    /// The hub is stopping (a restart, an upgrade); the reason is a [`RestartNotice`].
    Stopping = 0x14,
}

impl CloseCode {
    /// Every code, for decoding.
    const ALL: [Self; 6] = [
        Self::Done,
        Self::Revoked,
        Self::Replaced,
        Self::ProtocolViolation,
        Self::Busy,
        Self::Stopping,
    ];

    /// The code as sent in a QUIC `CONNECTION_CLOSE` frame.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// Interpret a received close code.
    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|c| u64::from(c.code()) == code)
    }
}

/// First and only request on an enrolment connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// Endpoint (or fleet) named by the join token.
    pub endpoint: EndpointId,
    /// The token's secret.
    pub secret: Secret,
    /// The device's own UUID.
    pub agent_id: AgentId,
    /// PKCS#10 certificate signing request (DER) for the agent's key pair.
    pub csr_der: Vec<u8>,
    /// Agent build version, for the admin's inventory.
    pub agent_version: String,
}

/// The hub's answer to an [`EnrollRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnrollReply {
    /// Enrolled: keep this certificate and connect with it from now on.
    Accepted(Enrolled),
    /// Refused, with the reason.
    Refused(Refusal),
}

/// What an accepted agent receives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolled {
    /// The endpoint this agent now is (for a fleet token, a new endpoint of its own).
    pub endpoint: EndpointId,
    /// The agent certificate (DER), the UUID in its SAN.
    pub cert_der: Vec<u8>,
    /// The hub CA certificate (DER).
    pub ca_der: Vec<u8>,
    /// True when the device waits for an admin's approval (fleet tokens).
    pub pending_approval: bool,
    /// Current hub addresses, which may differ from the token's.
    pub hub_addrs: Vec<String>,
}

/// A refused enrolment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// Machine-readable reason.
    pub reason: RefusalReason,
    /// Human-readable explanation with what to do.
    pub message: String,
}

/// Why the hub refused an enrolment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalReason {
    /// No such endpoint (removed, or the token belongs to another hub's store).
    UnknownEndpoint,
    /// The secret does not match the endpoint's token.
    BadSecret,
    /// The token is already bound to another device.
    AlreadyBound,
    /// The endpoint was created for a pre-assigned agent id and this is not it.
    AgentIdMismatch,
    /// The request could not be read or was not acceptable (bad CSR, oversized field).
    Malformed,
    /// The hub is overloaded; the only refusal worth retrying.
    Busy,
    /// The fleet token already has as many devices waiting for approval as the hub allows.
    TooManyPending,
}

impl RefusalReason {
    /// Whether retrying the same request can ever succeed.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Busy)
    }
}

/// Messages the hub sends on the control stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HubMessage {
    /// First message: who the agent is to the hub and how it should behave.
    Welcome(Welcome),
    /// An admin wants the device: grant stream credit and answer [`AgentMessage::Ready`].
    Summon {
        /// Echoed in `Ready`.
        id: u32,
    },
    /// A pending device was approved by an admin.
    Approved,
    /// New session settings.
    Settings(EndpointTiming),
    /// The answer to [`AgentMessage::Renew`]: a new certificate for the same key.
    Renewed {
        /// The certificate (DER).
        cert_der: Vec<u8>,
    },
    /// Everything the device should run (version 3); at most one control frame by
    /// [`DesiredState::check`](crate::stack::DesiredState::check).
    Desired(crate::stack::DesiredState),
    /// Run a job (version 4), sent only to a session that announced
    /// [`Features::JOBS`](crate::job::Features::JOBS).
    Job(crate::job::JobOrder),
    /// The job's result is stored (version 4): the agent may forget it.
    JobAck {
        /// The job.
        id: u64,
    },
    /// An admin cancelled the job (version 4): not started, it never will; a one-shot container
    /// running it is stopped. Its result says `Cancelled`.
    JobCancel {
        /// The job.
        id: u64,
    },
    /// Everything the device should run and which stacks' drift it only reports (version 5),
    /// sent instead of [`HubMessage::Desired`] to a session that announced
    /// [`Features::DRIFT_REPORT`](crate::job::Features::DRIFT_REPORT);
    /// [`DesiredOrder::check`](crate::stack::DesiredOrder::check) bounds it like `Desired`.
    DesiredOrder(crate::stack::DesiredOrder),
    /// The hub serves its mirror over fetch streams (version 6, [`crate::fetch`]): sent once to a
    /// session that announced [`Features::REGISTRY`](crate::job::Features::REGISTRY), after the
    /// hub raised the agent's bidirectional stream credit by `streams`.
    Registry {
        /// Fetch streams the agent may have open at once.
        streams: u32,
        /// The mirrored registries' `host[:port]`, the default (names without a host) first;
        /// an agent checks them with [`crate::fetch::check_upstreams`].
        upstreams: Vec<String>,
    },
    /// The device's transfer window ([`crate::window`]), or none: sent to a session that
    /// announced [`Features::DEFERRAL`](crate::job::Features::DEFERRAL) once it has, and again
    /// whenever an admin changes the windows; the agent checks it with
    /// [`TransferWindow::check`](crate::window::TransferWindow::check).
    TransferWindow(Option<crate::window::TransferWindow>),
    /// The fleet's live hubs changed (a hub joined or died): the addresses to dial from now on,
    /// as a `Welcome` would list them. Sent only to a session that announced
    /// [`Features::HUB_ADDRS`](crate::job::Features::HUB_ADDRS); the agent checks them with
    /// [`check_hub_addrs`](crate::token::check_hub_addrs).
    HubAddrs(Vec<String>),
}

/// The hub's greeting on a new session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The endpoint this certificate maps to.
    pub endpoint: EndpointId,
    /// Whether the device is still waiting for approval.
    pub pending_approval: bool,
    /// Check-in and standby timing.
    pub settings: EndpointTiming,
    /// Current hub addresses, for the agent to remember.
    pub hub_addrs: Vec<String>,
}

/// Session timing the hub sets per endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointTiming {
    /// Time between check-ins, in milliseconds.
    pub checkin_interval_ms: u32,
    /// Inactivity before the agent returns to standby, in milliseconds.
    pub standby_after_ms: u32,
}

/// Messages the agent sends on the control stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentMessage {
    /// Opens the control stream.
    Hello {
        /// Agent build version.
        agent_version: String,
    },
    /// Stream credit is open for the summon with this id.
    Ready {
        /// The summon's id.
        id: u32,
    },
    /// Stream credit is back to standby's one stream ([`crate::stream::STANDBY_STREAMS`]).
    Standby,
    /// A fresh summary of the device's engine.
    Snapshot(crate::snapshot::EngineSnapshot),
    /// Ask for a new certificate before the current one expires.
    Renew {
        /// PKCS#10 certificate signing request (DER) for the key of the current certificate.
        csr_der: Vec<u8>,
    },
    /// Where the device is with its desired state (version 3).
    StackStatus(crate::stack::StackReport),
    /// What this agent can do (version 4), once per session after `Hello`.
    Features(crate::job::Features),
    /// A job has started (version 4).
    JobStarted {
        /// The job.
        id: u64,
    },
    /// A job has ended (version 4); sent again on each new session until the hub acknowledges it.
    JobResult(crate::job::JobResult),
    /// How far a pull job has come (version 6, [`crate::job::Features::IMAGE_PULL`]); only for a
    /// job the hub sent, so only to a hub that reads it.
    JobProgress(crate::job::JobProgress),
}

/// Unreliable messages carried in QUIC datagrams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Datagram {
    /// Agent → hub: still here.
    CheckIn {
        /// Increases by one per check-in.
        seq: u32,
    },
    /// Hub → agent: seen, next check-in in `interval_s` seconds.
    Ack {
        /// The check-in acknowledged.
        seq: u32,
        /// The check-in interval the hub wants, in seconds.
        interval_s: u16,
    },
    /// Agent → hub (version 3): still here, and running the desired state `applied` names.
    CheckInApplied {
        /// Increases by one per check-in.
        seq: u32,
        /// The desired state last applied in full (the empty state's digest before any).
        applied: crate::stack::StateDigest,
    },
}

/// Why a message could not be read or written.
#[derive(Debug, Error)]
pub enum WireError {
    /// A frame announced a length above the limit; nothing of its body was read.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    Oversized {
        /// Announced length.
        len: usize,
        /// The limit for this stream.
        max: usize,
    },
    /// The body does not decode as the expected message.
    #[error("malformed message: {0}")]
    Malformed(#[from] postcard::Error),
    /// The body decoded but left bytes over.
    #[error("{0} unexpected bytes after the message")]
    TrailingBytes(usize),
    /// The stream ended cleanly before a frame began.
    #[error("stream closed by peer")]
    Closed,
    /// Transport failure.
    #[error("stream I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Decode exactly one message from `bytes` (no trailing bytes allowed).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let (value, rest) = postcard::take_from_bytes(bytes)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(WireError::TrailingBytes(rest.len()))
    }
}

/// Encode one message body.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising owned data into a growable Vec has no failure mode.
    postcard::to_stdvec(value).unwrap_or_default()
}

/// Encode a datagram into a buffer of exactly its size: one allocation, which converts into the
/// `Bytes` QUIC takes without another (a growable Vec's spare capacity would cost a second).
/// Every datagram fits [`MAX_DATAGRAM`]; one that does not encodes empty, which the peer rejects.
pub fn encode_datagram(datagram: &Datagram) -> Vec<u8> {
    let mut buf = [0u8; MAX_DATAGRAM];
    postcard::to_slice(datagram, &mut buf)
        .map(|used| used.to_vec())
        .unwrap_or_default()
}

/// Length-prefix a message for a stream.
pub fn encode_frame<T: Serialize>(value: &T) -> Vec<u8> {
    let body = encode(value);
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Read one frame: the length first, checked against `max` before any of the body is read.
pub async fn read_frame<T, R>(reader: &mut R, max: usize) -> Result<T, WireError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let mut len = [0u8; 4];
    // A clean end is EOF before the first byte of a frame; EOF inside the length is a broken frame.
    if reader.read(&mut len[..1]).await? == 0 {
        return Err(WireError::Closed);
    }
    reader.read_exact(&mut len[1..]).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(WireError::Oversized { len, max });
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    decode(&body)
}

/// Read the next frame and hand `reader` back with it. [`read_frame`] is not cancel-safe (a frame
/// half read when its future is dropped is lost), so a session driver keeps this future pinned
/// across its `select!` loop and starts the next one with the reader it returns: a frame is
/// never cut, and no task or channel sits between the stream and the driver.
pub async fn next_frame<T, R>(mut reader: R, max: usize) -> (R, Result<T, WireError>)
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let frame = read_frame(&mut reader, max).await;
    (reader, frame)
}

/// Write one frame.
pub async fn write_frame<T, W>(writer: &mut W, value: &T) -> Result<(), WireError>
where
    T: Serialize,
    W: AsyncWrite + Unpin,
{
    writer.write_all(&encode_frame(value)).await?;
    Ok(())
}

mod restart;
pub use restart::RestartNotice;

#[cfg(test)]
mod tests;
