//! Frames waiting to be written on an agent's control stream, and the one write in progress.
//!
//! The session driver never awaits a write inside a `select!` branch: a write parked on flow
//! control (an agent that stops reading its control stream, or a renewal answer larger than the
//! agent's stream window) would stop the loop, and with it check-in acks, standby and summon
//! answers. Frames are queued here, encoded, and written from a branch of their own, one at a
//! time, by a future that owns the send stream while it writes (as the read side's future owns
//! the receive stream).
//!
//! The queue is bounded: control messages (summons, approval) are taken from the session's
//! [`ControlQueue`](crate::registry::ControlQueue) only while fewer than [`Outbox::CONTROL_FRAMES`]
//! wait here, so an agent that does not read leaves them in that queue, where a summoner learns
//! `Busy` once it fills. The only other frame, a renewal answer, comes at most once per session.
//! So at most `CONTROL_FRAMES + 1` frames wait; the buffer is freed whenever it drains, as an idle
//! session at tens of thousands of agents should hold no allocation for it.

use std::collections::VecDeque;

use outpost_protocol::wire::{self, HubMessage, WireError};
use tokio::io::AsyncWriteExt;

/// The encoded frames one session's driver has yet to write.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    frames: VecDeque<Vec<u8>>,
}

impl Outbox {
    /// Control frames that may wait here: one behind the frame being written keeps the stream
    /// busy; more would only hide from summoners that the agent is not reading.
    pub(super) const CONTROL_FRAMES: usize = 1;

    /// Whether a control message may be taken from the control queue now.
    pub(super) fn has_room(&self) -> bool {
        self.frames.len() < Self::CONTROL_FRAMES
    }

    /// Queue `message` to be written after the frames before it.
    pub(super) fn push(&mut self, message: &HubMessage) {
        self.frames.push_back(wire::encode_frame(message));
    }

    /// The next frame to write.
    pub(super) fn pop(&mut self) -> Option<Vec<u8>> {
        let frame = self.frames.pop_front();
        if self.frames.is_empty() {
            self.frames = VecDeque::new();
        }
        frame
    }
}

/// Write `frame` on `send`, handing the stream back for the next one.
pub(super) async fn write(
    mut send: quinn::SendStream,
    frame: Vec<u8>,
) -> (quinn::SendStream, Result<(), WireError>) {
    // The trait's `write_all` (an `io::Error`), not quinn's inherent one.
    let written = AsyncWriteExt::write_all(&mut send, &frame)
        .await
        .map_err(WireError::from);
    (send, written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_frames_wait_one_deep_and_the_buffer_is_freed_when_it_drains() {
        let mut outbox = Outbox::default();
        assert!(outbox.has_room());
        outbox.push(&HubMessage::Summon { id: 1 });
        assert!(
            !outbox.has_room(),
            "a second control frame stays in the control queue"
        );
        // A renewal answer is queued whatever waits (one per session).
        outbox.push(&HubMessage::Approved);
        assert_eq!(
            outbox.pop(),
            Some(wire::encode_frame(&HubMessage::Summon { id: 1 }))
        );
        assert_eq!(
            outbox.pop(),
            Some(wire::encode_frame(&HubMessage::Approved))
        );
        assert_eq!(outbox.pop(), None);
        assert!(outbox.has_room());
        assert_eq!(
            outbox.frames.capacity(),
            0,
            "drained, it holds no allocation"
        );
    }
}
