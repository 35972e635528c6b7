//! What the fuzz targets share: a reader that hands its input out in reads of 1..=n bytes (and
//! sometimes answers `Pending`), a poll loop that runs the async decoders without a runtime, an
//! allocator that records the largest single allocation, and the invariants every decoder must
//! keep. Each target only picks a decoder; the checks live here so all targets assert the same.
//!
//! Invariants:
//! - no input panics or hangs a decoder;
//! - a value that decodes re-encodes to bytes that decode to an equal value, and that canonical
//!   encoding is stable and never longer than the accepted input;
//! - a stream decoder reads exactly its frame (never past it) and agrees with the slice decoder
//!   on the same body, however the bytes are split into reads;
//! - an announced length above the limit is refused with `Oversized`, before any byte of the body
//!   is read and without allocating it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use outpost_protocol::stream::{self, PrefaceError, StreamHeader, StreamReply};
use outpost_protocol::token::{JoinToken, TokenError, MAX_TOKEN_LEN};
use outpost_protocol::wire::{self, WireError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, ReadBuf};

/// serde preallocates at most this many bytes for a sequence whose announced length it cannot
/// trust yet (its `size_hint::cautious`); postcard further caps the hint at the bytes left.
pub const SERDE_PREALLOC_CAP: usize = 1024 * 1024;

static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, recording the largest single request.
struct PeakAlloc;

// SAFETY: every call is forwarded unchanged to `System`; only a counter is updated besides.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        PEAK.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        PEAK.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        PEAK.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: PeakAlloc = PeakAlloc;

/// Largest single allocation since the previous call.
pub fn take_peak_alloc() -> usize {
    PEAK.swap(0, Ordering::Relaxed)
}

/// Assert that decoding `input_len` bytes against a stream limit `limit` allocated nothing larger
/// than the limit, serde's cautious preallocation, or a small multiple of the input itself.
/// Returns that largest allocation.
fn assert_alloc_bounded(input_len: usize, limit: usize) -> usize {
    let peak = take_peak_alloc();
    let allowed = SERDE_PREALLOC_CAP.max(limit).max(4 * input_len + 64);
    assert!(
        peak <= allowed,
        "one allocation of {peak} bytes for {input_len} input bytes"
    );
    peak
}

/// A reader that returns its data in reads of 1..=`max_chunk` bytes, sometimes answers `Pending`
/// first, and at the end reports EOF or fails with `ConnectionReset`, all chosen by a seed.
#[derive(Debug)]
pub struct Chunked<'a> {
    data: &'a [u8],
    pos: usize,
    rng: u32,
    max_chunk: usize,
    reset_at_end: bool,
}

impl<'a> Chunked<'a> {
    /// Bits 0-3 of `seed`: largest read minus one; bit 7: fail with a reset instead of EOF.
    pub fn new(data: &'a [u8], seed: u8) -> Self {
        Self {
            data,
            pos: 0,
            rng: 0x9e37_79b9 ^ u32::from(seed),
            max_chunk: 1 + usize::from(seed & 0x0f),
            reset_at_end: seed & 0x80 != 0,
        }
    }

    /// Bytes handed out so far.
    pub fn consumed(&self) -> usize {
        self.pos
    }

    /// The error kind a read past the end of the data sees.
    pub fn end_kind(&self) -> io::ErrorKind {
        if self.reset_at_end {
            io::ErrorKind::ConnectionReset
        } else {
            io::ErrorKind::UnexpectedEof
        }
    }

    fn next(&mut self) -> u32 {
        // xorshift32: deterministic, so a crash reproduces from its input alone.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 17;
        self.rng ^= self.rng << 5;
        self.rng
    }
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = this.next();
        if r.is_multiple_of(4) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let rest = &this.data[this.pos..];
        if rest.is_empty() && this.reset_at_end {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        let n = (1 + (r as usize >> 2) % this.max_chunk)
            .min(rest.len())
            .min(buf.remaining());
        buf.put_slice(&rest[..n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// Run a future to completion by polling it; the readers here never need a runtime.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000_000 {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("decoder never finished on a reader that always makes progress");
}

/// Bounds every message type decoded here.
pub trait Message: Serialize + DeserializeOwned + PartialEq + Debug {}
impl<T: Serialize + DeserializeOwned + PartialEq + Debug> Message for T {}

/// `wire::decode` on `bytes`, then the round-trip invariants when it succeeds.
pub fn check_wire<T: Message>(bytes: &[u8]) -> Option<T> {
    take_peak_alloc();
    let decoded = wire::decode::<T>(bytes);
    assert_alloc_bounded(bytes.len(), 0);
    let value = decoded.ok()?;
    let encoded = wire::encode(&value);
    let again: T = wire::decode(&encoded).expect("a re-encoded value must decode");
    assert_eq!(again, value);
    assert_eq!(wire::encode(&again), encoded, "encoding is not stable");
    assert!(
        encoded.len() <= bytes.len(),
        "canonical form longer than an accepted input"
    );
    Some(value)
}

fn assert_io(err: &io::Error, kind: io::ErrorKind) {
    assert_eq!(err.kind(), kind, "{err}");
}

/// `wire::read_frame` over `stream` split by `seed`, checked against the framing rules and
/// against `wire::decode` of the same body.
pub fn check_frame<T: Message>(stream: &[u8], max: usize, seed: u8) {
    let mut reader = Chunked::new(stream, seed);
    take_peak_alloc();
    let result = block_on(wire::read_frame::<T, _>(&mut reader, max));
    let peak = assert_alloc_bounded(stream.len(), max);
    let end = reader.end_kind();
    let Some(prefix) = stream.first_chunk::<4>() else {
        // EOF before the frame is a clean close. EOF inside the length prefix currently reads as
        // `Closed` too, where an I/O error would be accurate; either is accepted here.
        match result {
            Err(WireError::Closed) => assert_eq!(end, io::ErrorKind::UnexpectedEof),
            Err(WireError::Io(e))
                if !stream.is_empty() || e.kind() != io::ErrorKind::UnexpectedEof =>
            {
                assert_io(&e, end)
            }
            other => panic!("{} bytes read as {other:?}", stream.len()),
        }
        return;
    };
    let len = u32::from_be_bytes(*prefix) as usize;
    if len > max {
        assert!(
            matches!(result, Err(WireError::Oversized { len: l, max: m }) if l == len && m == max),
            "announced {len} > {max} read as {result:?}"
        );
        assert_eq!(reader.consumed(), 4, "body read before the limit check");
        assert!(
            peak < len,
            "announced length allocated before the limit check"
        );
        return;
    }
    let Some(body) = stream.get(4..4 + len) else {
        assert!(
            matches!(&result, Err(WireError::Io(e)) if e.kind() == end),
            "{result:?}"
        );
        return;
    };
    assert_eq!(reader.consumed(), 4 + len, "read past the end of the frame");
    match (result, wire::decode::<T>(body)) {
        (Ok(value), Ok(same)) => {
            assert_eq!(value, same);
            let frame = wire::encode_frame(&value);
            let again = block_on(wire::read_frame::<T, _>(
                &mut Chunked::new(&frame, seed),
                max,
            ));
            assert_eq!(again.expect("a re-encoded frame must decode"), value);
        }
        (Err(WireError::Malformed(a)), Err(WireError::Malformed(b))) => assert_eq!(a, b),
        (Err(WireError::TrailingBytes(a)), Err(WireError::TrailingBytes(b))) => assert_eq!(a, b),
        (a, b) => panic!("stream and slice decoders disagree: {a:?} vs {b:?}"),
    }
}

/// Compare a preface decoder's body result with `wire::decode` of the same body.
fn same_body<T: Message>(result: Result<T, PrefaceError>, body: &[u8]) -> Option<T> {
    match (result, wire::decode::<T>(body)) {
        (Ok(value), Ok(same)) => {
            assert_eq!(value, same);
            Some(value)
        }
        (Err(PrefaceError::Wire(WireError::Malformed(a))), Err(WireError::Malformed(b))) => {
            assert_eq!(a, b);
            None
        }
        (
            Err(PrefaceError::Wire(WireError::TrailingBytes(a))),
            Err(WireError::TrailingBytes(b)),
        ) => {
            assert_eq!(a, b);
            None
        }
        (a, b) => panic!("stream and slice decoders disagree: {a:?} vs {b:?}"),
    }
}

/// Check the result of reading a preface body announced as `len` (limit `max`) that starts at
/// `at` in `stream`; returns the body when the read should have decoded it.
fn check_preface_body<'s, T: Debug>(
    result: &Result<T, PrefaceError>,
    reader: &Chunked<'_>,
    peak: usize,
    stream: &'s [u8],
    at: usize,
    len: usize,
    max: usize,
) -> Option<&'s [u8]> {
    if len > max {
        match result {
            Err(PrefaceError::Oversized { len: l, max: m }) => assert_eq!((*l, *m), (len, max)),
            other => panic!("announced {len} > {max} read as {other:?}"),
        }
        assert_eq!(reader.consumed(), at, "body read before the limit check");
        assert!(
            peak < len,
            "announced length allocated before the limit check"
        );
        return None;
    }
    let Some(body) = stream.get(at..at + len) else {
        let end = reader.end_kind();
        assert!(
            matches!(result, Err(PrefaceError::Wire(WireError::Io(e))) if e.kind() == end),
            "{result:?}"
        );
        return None;
    };
    assert_eq!(
        reader.consumed(),
        at + len,
        "read past the end of the preface"
    );
    Some(body)
}

/// `stream::read_header` over `stream` split by `seed`.
pub fn check_header(stream: &[u8], seed: u8) {
    let mut reader = Chunked::new(stream, seed);
    take_peak_alloc();
    let result = block_on(stream::read_header(&mut reader));
    let peak = assert_alloc_bounded(stream.len(), stream::MAX_HEADER);
    let Some(fixed) = stream.first_chunk::<6>() else {
        let end = reader.end_kind();
        assert!(matches!(&result, Err(PrefaceError::Wire(WireError::Io(e))) if e.kind() == end));
        return;
    };
    if &fixed[..3] != stream::MAGIC {
        assert!(matches!(result, Err(PrefaceError::BadMagic)), "{result:?}");
        return;
    }
    if fixed[3] != stream::STREAM_VERSION {
        assert!(matches!(result, Err(PrefaceError::UnsupportedVersion(v)) if v == fixed[3]));
        return;
    }
    let len = usize::from(u16::from_be_bytes([fixed[4], fixed[5]]));
    let body = check_preface_body(&result, &reader, peak, stream, 6, len, stream::MAX_HEADER);
    let Some(body) = body else {
        return;
    };
    if let Some(header) = same_body::<StreamHeader>(result, body) {
        let again = block_on(stream::read_header(
            &mut &stream::encode_header(&header)[..],
        ));
        assert_eq!(again.expect("a re-encoded header must decode"), header);
    }
}

/// `stream::read_reply` over `stream` split by `seed`.
pub fn check_reply(stream: &[u8], seed: u8) {
    let mut reader = Chunked::new(stream, seed);
    take_peak_alloc();
    let result = block_on(stream::read_reply(&mut reader));
    let peak = assert_alloc_bounded(stream.len(), stream::MAX_REPLY);
    let Some(prefix) = stream.first_chunk::<2>() else {
        let end = reader.end_kind();
        assert!(matches!(&result, Err(PrefaceError::Wire(WireError::Io(e))) if e.kind() == end));
        return;
    };
    let len = usize::from(u16::from_be_bytes(*prefix));
    let body = check_preface_body(&result, &reader, peak, stream, 2, len, stream::MAX_REPLY);
    let Some(body) = body else {
        return;
    };
    if let Some(reply) = same_body::<StreamReply>(result, body) {
        let mut out = Vec::new();
        block_on(stream::write_reply(&mut out, &reply)).expect("writing to a Vec cannot fail");
        let again = block_on(stream::read_reply(&mut out.as_slice()));
        assert_eq!(again.expect("a re-encoded reply must decode"), reply);
    }
}

/// `JoinToken::decode` on `text`, with its error rules and round trip.
pub fn check_token(text: &str) {
    take_peak_alloc();
    let result = JoinToken::decode(text);
    assert_alloc_bounded(text.len(), 0);
    let trimmed = text.trim();
    match result {
        Ok(token) => {
            let encoded = token.encode();
            assert_eq!(JoinToken::decode(&encoded).as_ref(), Ok(&token));
            assert!(
                encoded.len() <= trimmed.len(),
                "canonical token longer than the input"
            );
        }
        Err(TokenError::Empty) => assert!(trimmed.is_empty()),
        Err(TokenError::TooLong(n)) => assert!(n == trimmed.len() && n > MAX_TOKEN_LEN),
        Err(_) => assert!(!trimmed.is_empty() && trimmed.len() <= MAX_TOKEN_LEN),
    }
}
