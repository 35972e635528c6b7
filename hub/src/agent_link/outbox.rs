//! Frames waiting to be written on an agent's control stream.
//!
//! The session driver never awaits a write inside a `select!` branch: a write parked on flow
//! control (an agent that stops reading its control stream, or a renewal answer larger than the
//! agent's stream window) would stop the loop, and with it check-in acks, standby and summon
//! answers. Frames are queued here, encoded, and written from a branch of their own by
//! [`Outbox::poll_write`], which keeps its progress here (frame and offset), so the branch's
//! future can be dropped between polls like any other `select!` branch. Keeping the progress
//! here rather than in a write future held across iterations costs an idle session nothing: at
//! tens of thousands of agents each byte of the driver's task counts.
//!
//! The queue is bounded: control messages (summons, approval) are taken from the session's
//! [`ControlQueue`](crate::registry::ControlQueue) only while fewer than [`Outbox::CONTROL_FRAMES`]
//! wait here, so an agent that does not read leaves them in that queue, where a summoner learns
//! `Busy` once it fills. The only other frame, a renewal answer, comes at most once per session.
//! So at most `CONTROL_FRAMES + 1` frames wait; the buffer is freed whenever it drains.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use outpost_protocol::wire::{self, HubMessage, WireError};
use tokio::io::AsyncWrite;

/// The encoded frames one session's driver has yet to write.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    frames: VecDeque<Vec<u8>>,
    /// Bytes of the first frame already written.
    written: usize,
}

impl Outbox {
    /// Control frames that may wait here, the one being written included: more would only hide
    /// from summoners that the agent is not reading.
    pub(super) const CONTROL_FRAMES: usize = 1;

    /// Whether a control message may be taken from the control queue now.
    pub(super) fn has_room(&self) -> bool {
        self.frames.len() < Self::CONTROL_FRAMES
    }

    /// Whether everything queued was written.
    pub(super) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Queue `message` to be written after the frames before it; returns the frame's bytes.
    pub(super) fn push(&mut self, message: &HubMessage) -> usize {
        let frame = wire::encode_frame(message);
        let len = frame.len();
        self.frames.push_back(frame);
        len
    }

    /// Write what waits, as far as `send` takes it now; ready once everything is written.
    /// Cancel-safe: what was written is remembered here, not in the caller's future.
    pub(super) fn poll_write<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        send: &mut W,
    ) -> Poll<Result<(), WireError>> {
        while let Some(frame) = self.frames.front() {
            let n = ready!(Pin::new(&mut *send).poll_write(cx, &frame[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into()));
            }
            self.written += n;
            if self.written == frame.len() {
                self.frames.pop_front();
                self.written = 0;
            }
        }
        // Drained: free the buffer, as an idle session should hold no allocation for it.
        self.frames = VecDeque::new();
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    /// A stream that takes at most `window` bytes until more credit is given, like a peer's
    /// flow-control window.
    #[derive(Default)]
    struct Window {
        window: usize,
        written: Vec<u8>,
    }

    impl AsyncWrite for Window {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.window);
            if n == 0 {
                return Poll::Pending;
            }
            self.window -= n;
            self.written.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    struct Noop;

    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }

    #[test]
    fn a_write_parked_on_the_window_resumes_where_it_stopped() {
        let waker = Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        let mut outbox = Outbox::default();
        let mut send = Window {
            window: 3,
            ..Window::default()
        };
        outbox.push(&HubMessage::Summon { id: 1 });
        outbox.push(&HubMessage::Approved);
        let expected = [
            wire::encode_frame(&HubMessage::Summon { id: 1 }),
            wire::encode_frame(&HubMessage::Approved),
        ]
        .concat();
        assert!(outbox.poll_write(&mut cx, &mut send).is_pending(), "parked");
        assert_eq!(send.written, expected[..3], "as far as the window went");
        // Each poll is a fresh branch future in the driver: nothing is lost or sent twice.
        assert!(outbox.poll_write(&mut cx, &mut send).is_pending());
        assert_eq!(send.written.len(), 3);
        send.window = 1024;
        assert!(matches!(
            outbox.poll_write(&mut cx, &mut send),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(send.written, expected);
        assert!(outbox.is_empty());
        assert_eq!(
            outbox.frames.capacity(),
            0,
            "drained, it holds no allocation"
        );
    }

    #[test]
    fn control_frames_wait_one_deep() {
        let mut outbox = Outbox::default();
        assert!(outbox.has_room());
        outbox.push(&HubMessage::Summon { id: 1 });
        assert!(
            !outbox.has_room(),
            "a second control frame stays in the control queue"
        );
        // A renewal answer is queued whatever waits (one per session).
        outbox.push(&HubMessage::Approved);
        assert_eq!(outbox.frames.len(), 2);
    }
}
