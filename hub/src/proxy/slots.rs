//! How long a proxied request holds its slots (per device and per hub): exactly as long as the
//! client's exchange. The slots go with the response body and are released the moment its last
//! frame has been read, before the client has it, so a client that sends its next request as soon
//! as the previous answer ends (the docker CLI's `/_ping` then the call) never meets its own
//! finished request still counted. A hijacked connection holds them until it closes.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::OwnedSemaphorePermit;

/// The device's and the hub's slot for one request.
pub(super) type Slots = (OwnedSemaphorePermit, OwnedSemaphorePermit);

/// A response body that releases its request's slots when it ends (both, or only the hub's
/// for a request relayed to another hub).
#[derive(Debug)]
pub(super) struct HoldingBody<S = Slots> {
    inner: Incoming,
    slots: Option<S>,
}

impl<S> HoldingBody<S> {
    pub(super) fn new(inner: Incoming, slots: S) -> Self {
        Self {
            inner,
            slots: Some(slots),
        }
    }
}

impl<S: Unpin> Body for HoldingBody<S> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.slots = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
