//! Engine snapshots for the session: taken on a task of their own and handed back to the driver
//! to send, so a slow engine never stalls check-ins.
//!
//! The snapshot due at connect (an agent's first session after it starts) goes out behind the
//! hello, before the welcome comes back ([`Snapshots::send_behind_hello`]). Sent after the welcome,
//! it reached the hub a round trip after the session did, and until then the hub could not hand
//! the device's last `/_ping` answer on to the new session (`hub/src/ping_carry.rs` waits for the
//! snapshot's engine version): a docker command in that round trip paid a summon and a proxied
//! ping before its own request — 1.2 s on a GEO link instead of 0.6 s, in the `link_profiles`
//! bench's load after an agent restart.

use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use outpost_protocol::snapshot::EngineSnapshot;
use outpost_protocol::wire::{self, AgentMessage};
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tracing::debug;

use super::outbox::Outbox;
use super::SessionEnd;
use crate::docker_host::DockerHost;
use crate::snapshot;

/// How long the snapshot due at connect may hold up reading the welcome. Reading a local engine
/// takes milliseconds, and the welcome is a round trip away, so this costs nothing on a slow
/// link; an engine slower than this has its snapshot sent by the driver when it is ready.
const BEHIND_HELLO_WAIT: Duration = Duration::from_millis(250);

/// Engine snapshots are taken off the driver (a slow engine must not stall check-ins) and handed
/// back through a channel to be sent on the control stream. The session paces them
/// ([`AgentEvent::TakeSnapshot`](outpost_protocol::agent_session::AgentEvent::TakeSnapshot)); [`snapshot::take`] trims each to the hub's budget.
#[derive(Debug)]
pub(super) struct Snapshots {
    pub(super) docker: DockerHost,
    taken: mpsc::Sender<EngineSnapshot>,
    pub(super) ready: mpsc::Receiver<EngineSnapshot>,
}

impl Snapshots {
    pub(super) fn new(docker: DockerHost) -> Self {
        let (taken, ready) = mpsc::channel(1);
        Self {
            docker,
            taken,
            ready,
        }
    }

    pub(super) fn take(&self) {
        let docker = self.docker.clone();
        let taken = self.taken.clone();
        tokio::spawn(async move {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or_default();
            let _ = taken.send(snapshot::take_from(&docker, now).await).await;
        });
    }

    /// Send the snapshot [`Self::take`] began behind the hello, if it is ready within
    /// [`BEHIND_HELLO_WAIT`]. The write never waits for the hub's credit: what the stream takes at
    /// once goes now, the rest of the frame waits first in `outbox`, and a snapshot not yet taken
    /// comes through [`Self::ready`] like any other.
    pub(super) async fn send_behind_hello(
        &mut self,
        conn: &quinn::Connection,
        send: &mut quinn::SendStream,
        outbox: &mut Outbox,
    ) -> Result<(), SessionEnd> {
        let taken = tokio::select! {
            taken = tokio::time::timeout(BEHIND_HELLO_WAIT, self.ready.recv()) => taken,
            closed = conn.closed() => return Err(closed.into()),
        };
        let Ok(Some(snapshot)) = taken else {
            return Ok(());
        };
        debug!(
            containers = snapshot.containers.len(),
            "sending engine snapshot behind the hello"
        );
        let frame = wire::encode_frame(&AgentMessage::Snapshot(snapshot));
        let written = match write_without_waiting(send, &frame) {
            Some(written) => written.map_err(|e| SessionEnd::Lost(e.to_string()))?,
            None => 0,
        };
        if written < frame.len() {
            outbox.push_rest_of_frame(frame[written..].to_vec());
        }
        Ok(())
    }
}

/// As much of `bytes` as the stream takes without waiting, or `None` when it takes nothing yet.
fn write_without_waiting(
    send: &mut quinn::SendStream,
    bytes: &[u8],
) -> Option<std::io::Result<usize>> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match AsyncWrite::poll_write(Pin::new(send), &mut cx, bytes) {
        Poll::Ready(written) => Some(written),
        Poll::Pending => None,
    }
}
