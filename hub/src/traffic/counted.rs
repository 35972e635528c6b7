//! A stream that counts what crosses it into its session's traffic: what is read came from the
//! device, what is written goes to it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::tally::{Class, Direction};
use crate::registry::LiveSession;

/// `inner`, counting its bytes to `class` of `session`.
#[derive(Debug)]
pub struct Counted<T> {
    inner: T,
    session: Arc<LiveSession>,
    class: Class,
}

impl<T> Counted<T> {
    /// Count `inner`'s bytes to `class` of `session`.
    pub fn new(inner: T, session: Arc<LiveSession>, class: Class) -> Self {
        Self {
            inner,
            session,
            class,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let read = (buf.filled().len() - before) as u64;
        self.session.traffic().add(self.class, Direction::Up, read);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        self.session
            .traffic()
            .add(self.class, Direction::Down, written as u64);
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
