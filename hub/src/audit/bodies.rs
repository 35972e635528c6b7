//! Bodies that count the bytes of an audited call: the request's as the handler reads it, the
//! response's as the client is sent it. Each holds the call's record until it ends or is dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::BoxError;
use hyper::body::{Frame, SizeHint};

use super::AuditHandle;

/// A request body that counts what the handler reads of it.
#[derive(Debug)]
pub struct CountedRequest {
    inner: Body,
    audit: AuditHandle,
}

impl CountedRequest {
    /// Count `inner` into `audit`.
    pub fn new(inner: Body, audit: AuditHandle) -> Self {
        Self { inner, audit }
    }
}

/// A response body that counts what it sends; its record goes when it is dropped.
#[derive(Debug)]
pub struct CountedResponse {
    inner: Body,
    audit: Option<AuditHandle>,
}

impl CountedResponse {
    /// Count `inner` into `audit`.
    pub fn new(inner: Body, audit: AuditHandle) -> Self {
        Self {
            inner,
            audit: Some(audit),
        }
    }
}

fn count(
    polled: Poll<Option<Result<Frame<Bytes>, axum::Error>>>,
    add: impl FnOnce(u64),
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    if let Poll::Ready(Some(Ok(frame))) = &polled {
        if let Some(data) = frame.data_ref() {
            add(data.len() as u64);
        }
    }
    polled.map_err(BoxError::from)
}

impl hyper::body::Body for CountedRequest {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let audit = &this.audit;
        count(Pin::new(&mut this.inner).poll_frame(cx), |n| {
            audit.received(n);
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl hyper::body::Body for CountedResponse {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let ended = matches!(polled, Poll::Ready(None | Some(Err(_))));
        let audit = &this.audit;
        let counted = count(polled, |n| {
            if let Some(audit) = audit {
                audit.sent(n);
            }
        });
        if ended {
            // The exchange is over: let the record go now, not when hyper drops the body.
            this.audit = None;
        }
        counted
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
