//! The agent's side of the control stream, written without ever parking the driver.
//!
//! A write on the control stream waits for the hub's flow-control credit. A standby session's
//! window is 16 KiB, and a snapshot is up to 64 KiB (`SNAPSHOT_BUDGET`): awaited inside a
//! `select!` branch, its write held the whole loop for several round trips — seconds on a
//! satellite link — with no check-ins, no acks, no timers and no summons. So frames are queued
//! here, and the driver writes them from a `select!` branch of their own: [`write_all`] owns the
//! stream while it writes and hands it back when done, and the driver keeps that future pinned
//! across iterations (one allocation per session), as it does the read side with
//! [`outpost_protocol::wire::next_frame`].
//!
//! The queue is bounded by count, [`MAX_QUEUED`] frames. What the agent sends is few and paced: a
//! `Ready` per summon (the hub queues at most 16 summons at once), a `Standby` per return to
//! standby, a snapshot at most once per 10 s, one `Renew` per session, a stack status per phase
//! change. Job messages, which can come in bursts (a thousand held results at a session's start),
//! are taken only while fewer than [`JOB_ROOM`] frames wait (`driver/jobs.rs`). While the hub
//! reads, one write in flight leaves a handful queued at most; 32 frames waiting means the hub
//! has stopped reading its control stream, and the session is over (the next one starts clean).

use std::collections::VecDeque;

use outpost_protocol::wire::{self, AgentMessage, WireError};
use thiserror::Error;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Frames waiting at most (see the module docs for why 32 never fills while the hub reads).
pub(crate) const MAX_QUEUED: usize = 32;

/// Job messages join the queue only while fewer frames than this wait, so they never fill it.
pub(crate) const JOB_ROOM: usize = 8;

/// The hub has stopped reading the control stream.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("the hub has not read the control stream for {MAX_QUEUED} frames")]
pub(crate) struct Backlog;

/// Control frames waiting for the stream, in order.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    frames: VecDeque<Vec<u8>>,
}

impl Outbox {
    /// Queue `message` behind the frames already waiting.
    pub(crate) fn push(&mut self, message: &AgentMessage) -> Result<(), Backlog> {
        if self.frames.len() >= MAX_QUEUED {
            return Err(Backlog);
        }
        self.frames.push_back(wire::encode_frame(message));
        Ok(())
    }

    /// The part of a frame that a write began outside the outbox did not take: it goes before
    /// anything queued after it, so the stream carries the frame whole.
    pub(crate) fn push_rest_of_frame(&mut self, rest: Vec<u8>) {
        self.frames.push_front(rest);
    }

    /// Frames waiting.
    pub(crate) fn len(&self) -> usize {
        self.frames.len()
    }

    /// Every waiting frame, in order, as one buffer: a burst is one write.
    pub(crate) fn take(&mut self) -> Option<Vec<u8>> {
        let mut bytes = self.frames.pop_front()?;
        for frame in self.frames.drain(..) {
            bytes.extend_from_slice(&frame);
        }
        Some(bytes)
    }
}

/// Write `bytes` to `writer` and hand the writer back with the result.
pub(crate) async fn write_all<W: AsyncWrite + Unpin>(
    mut writer: W,
    bytes: Vec<u8>,
) -> (W, Result<(), WireError>) {
    let written = writer.write_all(&bytes).await.map_err(WireError::from);
    (writer, written)
}

#[cfg(test)]
mod tests {
    use outpost_protocol::wire::{read_frame, MAX_CONTROL_FRAME};

    use super::*;

    #[test]
    fn frames_leave_in_order_as_one_write_and_a_full_queue_refuses() {
        let mut outbox = Outbox::default();
        assert_eq!(outbox.take(), None);
        for id in 0..MAX_QUEUED as u32 {
            outbox.push(&AgentMessage::Ready { id }).unwrap();
        }
        assert_eq!(outbox.push(&AgentMessage::Standby), Err(Backlog));
        let bytes = outbox.take().unwrap();
        assert_eq!(outbox.take(), None, "all of it at once");
        let expected: Vec<u8> = (0..MAX_QUEUED as u32)
            .flat_map(|id| wire::encode_frame(&AgentMessage::Ready { id }))
            .collect();
        assert_eq!(bytes, expected);
        outbox.push(&AgentMessage::Standby).unwrap();
        assert_eq!(
            outbox.take(),
            Some(wire::encode_frame(&AgentMessage::Standby))
        );
    }

    #[tokio::test]
    async fn the_writer_comes_back_after_each_write() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut outbox = Outbox::default();
        outbox.push(&AgentMessage::Ready { id: 5 }).unwrap();
        let (ours, written) = write_all(ours, outbox.take().unwrap()).await;
        written.unwrap();
        outbox.push(&AgentMessage::Standby).unwrap();
        let (_ours, written) = write_all(ours, outbox.take().unwrap()).await;
        written.unwrap();
        for expected in [AgentMessage::Ready { id: 5 }, AgentMessage::Standby] {
            let read = read_frame::<AgentMessage, _>(&mut theirs, MAX_CONTROL_FRAME).await;
            assert_eq!(read.unwrap(), expected);
        }
    }
}
