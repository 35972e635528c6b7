//! A response body that ends, as an error, when its request's credential is withdrawn: hyper then
//! closes the connection mid-stream, so the client sees a broken stream rather than a clean end.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::BoxError;
use hyper::body::{Frame, SizeHint};

use super::credentials::Revocation;

/// `inner` until its credential is withdrawn.
pub(super) struct UntilRevoked {
    inner: Body,
    /// Taken when it resolves: a finished future must not be polled again.
    withdrawn: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl std::fmt::Debug for UntilRevoked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UntilRevoked").finish_non_exhaustive()
    }
}

impl UntilRevoked {
    pub(super) fn new(inner: Body, revocation: Revocation) -> Self {
        Self {
            inner,
            withdrawn: Some(Box::pin(revocation.withdrawn())),
        }
    }
}

/// The error a withdrawn credential ends a body with.
#[derive(Debug, thiserror::Error)]
#[error("the admin credential of this request was revoked")]
struct Withdrawn;

impl hyper::body::Body for UntilRevoked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(withdrawn) = &mut this.withdrawn {
            if withdrawn.as_mut().poll(cx).is_ready() {
                this.withdrawn = None;
                return Poll::Ready(Some(Err(Withdrawn.into())));
            }
        }
        Pin::new(&mut this.inner)
            .poll_frame(cx)
            .map_err(BoxError::from)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
