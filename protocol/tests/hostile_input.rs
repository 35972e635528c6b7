//! Hostile input for every decoder of network input, in every `cargo test` run.
//!
//! The fuzz targets in `fuzz/` (STYLE.md practice 10) need nightly flags and minutes to search;
//! this file is their deterministic, always-on shadow, well under two seconds. A seeded generator
//! feeds each decoder random bytes and mutated valid encodings (bit flips, byte overwrites,
//! truncations, insertions, deletions, corrupted length fields), through a reader that splits the
//! stream into reads of 1..=n bytes and sometimes answers `Pending`. It asserts: no panic;
//! whatever decodes re-encodes to an equal value; a stream decoder agrees with `wire::decode` on
//! the same body and reads no byte past its frame; an announced length over the limit is refused
//! as `Oversized` before the body is read; every truncation of a valid frame, preface or token is
//! an error.

// Unwrapping in the helpers below is the point of a test; `allow-unwrap-in-tests` covers only
// `#[test]` functions themselves.
#![allow(clippy::unwrap_used)]

use std::fmt::Debug;
use std::future::Future;
use std::io::ErrorKind;
use std::ops::Range;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use outpost_protocol::job::{Features, JobOrder, JobOutcome, JobProgress, JobResult, JobSpec};
use outpost_protocol::registry::digest::Digest;
use outpost_protocol::registry::name::{split_host, NameError, Reference, RepoPath, MAX_NAME_LEN};
use outpost_protocol::registry::range::{self, RangeRequest};
use outpost_protocol::snapshot::{ContainerSummary, EngineSnapshot};
use outpost_protocol::stream::{
    self, PrefaceError, StreamHeader, StreamKind, StreamRefusal, StreamReply,
};
use outpost_protocol::token::{JoinToken, TokenError, MAX_TOKEN_LEN};
use outpost_protocol::wire::{
    self, AgentMessage, Datagram, EndpointTiming, EnrollReply, EnrollRequest, Enrolled, HubMessage,
    Refusal, RefusalReason, Welcome, WireError, MAX_CONTROL_FRAME, MAX_DATAGRAM, MAX_ENROLL_FRAME,
};
use outpost_protocol::{EndpointId, Secret};
use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, ReadBuf};

/// xorshift64: the same sequence on every machine and every `rand` version.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// 1..=`max` random bytes.
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = 1 + self.below(max);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A big-endian length field.
fn be(field: &[u8]) -> usize {
    field.iter().fold(0, |n, b| n << 8 | usize::from(*b))
}

/// Apply one random mutation; `len_field` is where the encoding keeps its length prefix.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>, len_field: Range<usize>) {
    let at = rng.below(bytes.len() + 1);
    match rng.below(8) {
        0 if at < bytes.len() => bytes[at] ^= 1 << rng.below(8),
        1 if at < bytes.len() => bytes[at] = [0, 0x7f, 0x80, 0xff][rng.below(4)],
        2 => bytes.truncate(at),
        3 => drop(bytes.splice(at..at, rng.bytes(8))),
        4 => drop(bytes.drain(at..(at + 1 + rng.below(8)).min(bytes.len()))),
        // A postcard varint announcing a huge length or count.
        5 => drop(bytes.splice(at..at, [0xff, 0xff, 0xff, 0xff, 0x0f])),
        _ if bytes.len() >= len_field.end && !len_field.is_empty() => {
            let old = be(&bytes[len_field.clone()]) as u64;
            // 0, one short, one long, all ones (the wrap of 0 - 1), or anything.
            let new = [0, old.wrapping_sub(1), old + 1, u64::MAX, rng.next()][rng.below(5)];
            bytes[len_field.clone()].copy_from_slice(&new.to_be_bytes()[8 - len_field.len()..]);
        }
        _ => bytes.extend(rng.bytes(3)),
    }
}

/// A valid encoding from `samples` mutated 1-3 times, or (one time in eight) random bytes.
fn hostile(rng: &mut Rng, samples: &[Vec<u8>], len_field: Range<usize>) -> Vec<u8> {
    if rng.below(8) == 0 {
        return rng.bytes(64);
    }
    let mut bytes = samples[rng.below(samples.len())].clone();
    for _ in 0..1 + rng.below(3) {
        mutate(rng, &mut bytes, len_field.clone());
    }
    bytes
}

/// Hands out its data in reads of 1..=n bytes, sometimes answering `Pending` first.
struct Chunked<'a> {
    data: &'a [u8],
    pos: usize,
    rng: Rng,
    max_chunk: usize,
}

impl<'a> Chunked<'a> {
    fn new(data: &'a [u8], rng: &mut Rng) -> Self {
        let (max_chunk, rng) = (1 + rng.below(16), Rng(rng.next() | 1));
        Self {
            data,
            pos: 0,
            rng,
            max_chunk,
        }
    }
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.rng.below(4) == 0 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let rest = &this.data[this.pos..];
        let n = (1 + this.rng.below(this.max_chunk)).min(rest.len());
        let n = n.min(buf.remaining());
        buf.put_slice(&rest[..n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// Poll to completion; the in-memory readers here never need a runtime.
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..100_000 {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("a decoder hung on a reader that always makes progress");
}

trait Message: Serialize + DeserializeOwned + PartialEq + Debug {}
impl<T: Serialize + DeserializeOwned + PartialEq + Debug> Message for T {}

/// `wire::decode`, and when it succeeds, the round trip and the stability of the encoding.
fn check_wire<T: Message>(bytes: &[u8]) -> Result<T, WireError> {
    let value = wire::decode::<T>(bytes)?;
    let encoded = wire::encode(&value);
    assert_eq!(wire::decode::<T>(&encoded).unwrap(), value);
    assert!(encoded.len() <= bytes.len(), "canonical form is longer");
    Ok(value)
}

/// `wire::read_frame` through split reads, against the framing rules and `wire::decode`.
fn check_frame<T: Message>(rng: &mut Rng, stream: &[u8], max: usize) {
    let mut reader = Chunked::new(stream, rng);
    let result = block_on(wire::read_frame::<T, _>(&mut reader, max));
    match (stream.len(), &result) {
        (0, Err(WireError::Closed)) => return,
        // A stream cut inside the length prefix currently also reads as `Closed` (a clean close,
        // which the hub does not treat as a protocol violation); an I/O error would be accurate.
        (1..=3, Err(WireError::Closed | WireError::Io(_))) => return,
        (0..=3, _) => panic!("{} bytes read as {result:?}", stream.len()),
        _ => {}
    }
    let result = result.map_err(PrefaceError::from);
    check_body(result, reader.pos, stream, 0..4, max);
}

fn check_header(rng: &mut Rng, stream: &[u8]) {
    let mut reader = Chunked::new(stream, rng);
    let result = block_on(stream::read_header(&mut reader));
    match stream.first_chunk::<6>() {
        None => assert!(matches!(result, Err(PrefaceError::Wire(WireError::Io(_))))),
        Some([m @ .., _, _, _]) if m != stream::MAGIC => {
            assert!(matches!(result, Err(PrefaceError::BadMagic)));
        }
        Some([.., v, _, _]) if *v != stream::STREAM_VERSION => {
            assert!(matches!(result, Err(PrefaceError::UnsupportedVersion(found)) if found == *v));
        }
        Some(_) => check_body::<StreamHeader>(result, reader.pos, stream, 4..6, stream::MAX_HEADER),
    }
}

fn check_reply(rng: &mut Rng, stream: &[u8]) {
    let mut reader = Chunked::new(stream, rng);
    let result = block_on(stream::read_reply(&mut reader));
    if stream.len() < 2 {
        return assert!(matches!(result, Err(PrefaceError::Wire(WireError::Io(_)))));
    }
    check_body::<StreamReply>(result, reader.pos, stream, 0..2, stream::MAX_REPLY);
}

/// The rules after a length prefix at `len_field` with limit `max`, given the decoder's `result`
/// and how many bytes it read (`pos`).
fn check_body<T: Message>(
    result: Result<T, PrefaceError>,
    pos: usize,
    stream: &[u8],
    len_field: Range<usize>,
    max: usize,
) {
    use PrefaceError::{Oversized, Wire};
    let (at, len) = (len_field.end, be(&stream[len_field]));
    match (result, stream.get(at..at + len)) {
        (Err(Oversized { len: l, max: m } | Wire(WireError::Oversized { len: l, max: m })), _)
            if (l, m) == (len, max) && len > max =>
        {
            assert_eq!(pos, at, "body read before the limit check");
        }
        (Err(Wire(WireError::Io(e))), None) if len <= max => {
            assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
        }
        (result, Some(body)) if len <= max => {
            assert_eq!(pos, at + len, "read past the end of the body");
            match (result, check_wire::<T>(body)) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(Wire(a)), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                (a, b) => panic!("stream and slice decoders disagree: {a:?} vs {b:?}"),
            }
        }
        (result, _) => panic!("body of {len} bytes (limit {max}) read as {result:?}"),
    }
}

fn check_token(text: &str) {
    let trimmed = text.trim();
    match JoinToken::decode(text) {
        Ok(token) => {
            let encoded = token.encode();
            assert_eq!(JoinToken::decode(&encoded), Ok(token));
            assert!(encoded.len() <= trimmed.len(), "canonical token is longer");
        }
        Err(TokenError::Empty) => assert!(trimmed.is_empty()),
        Err(TokenError::TooLong(n)) => assert!(n == trimmed.len() && n > MAX_TOKEN_LEN),
        Err(_) => assert!(!trimmed.is_empty() && trimmed.len() <= MAX_TOKEN_LEN),
    }
}

/// Every strict prefix of a valid encoding fails to decode.
fn every_cut_fails(bytes: &[u8], decodes: impl Fn(&[u8]) -> bool) {
    for cut in 0..bytes.len() {
        assert!(!decodes(&bytes[..cut]), "a cut at {cut} decoded");
    }
}

/// The wire and frame checks on `iterations` hostile inputs built from `samples`.
fn attack<T: Message>(seed: u64, samples: &[T], max: usize, iterations: usize) {
    let mut rng = Rng(seed);
    let frames: Vec<Vec<u8>> = samples.iter().map(wire::encode_frame).collect();
    let bodies: Vec<Vec<u8>> = frames.iter().map(|f| f[4..].to_vec()).collect();
    for _ in 0..iterations {
        let _ = check_wire::<T>(&hostile(&mut rng, &bodies, 0..0));
        let stream = hostile(&mut rng, &frames, 0..4);
        check_frame::<T>(&mut rng, &stream, max);
    }
    for frame in &frames {
        every_cut_fails(frame, |cut| {
            let mut reader = Chunked::new(cut, &mut Rng(seed));
            block_on(wire::read_frame::<T, _>(&mut reader, max)).is_ok()
        });
    }
}

#[test]
fn enrolment_messages_survive_hostile_frames() {
    let request = EnrollRequest {
        endpoint: EndpointId(u64::MAX),
        secret: Secret([1; 32]),
        agent_id: "6f1c2b1e-8a43-4c8e-9d2b-3f5e7a9c0d11".parse().unwrap(),
        csr_der: vec![0x30; 200],
        agent_version: "0.1.0".into(),
    };
    let enrolled = Enrolled {
        endpoint: EndpointId(7),
        cert_der: vec![0x30; 300],
        ca_der: vec![0x31; 10],
        pending_approval: true,
        hub_addrs: vec!["hub:4433".into()],
    };
    let message = "bound to another device".into();
    let refusal = Refusal {
        reason: RefusalReason::AlreadyBound,
        message,
    };
    attack(1, &[request], MAX_ENROLL_FRAME, 15_000);
    let replies = [
        EnrollReply::Accepted(enrolled),
        EnrollReply::Refused(refusal),
    ];
    attack(2, &replies, MAX_ENROLL_FRAME, 15_000);
}

#[test]
fn session_messages_survive_hostile_frames() {
    let settings = EndpointTiming {
        checkin_interval_ms: 25_000,
        standby_after_ms: 600_000,
    };
    let hub_addrs = vec!["a:1".into(), "[2001:db8::1]:4433".into()];
    let welcome = Welcome {
        endpoint: EndpointId(7),
        pending_approval: false,
        settings,
        hub_addrs,
    };
    let summon = HubMessage::Summon { id: u32::MAX };
    let hub = [
        HubMessage::Welcome(welcome),
        summon,
        HubMessage::Approved,
        HubMessage::Settings(settings),
        HubMessage::Job(JobOrder {
            id: u64::MAX,
            spec: JobSpec::Exec {
                container: "web".into(),
                cmd: vec!["sh".into(), "-c".into(), "df -h".into()],
                user: Some("root".into()),
            },
            expires_in_ms: 86_400_000,
            timeout_ms: 600_000,
        }),
        HubMessage::JobAck { id: 1 << 40 },
        HubMessage::JobCancel { id: 9 },
        HubMessage::Registry {
            streams: 4,
            upstreams: vec!["198.18.0.1:5000".into(), "registry.example".into()],
        },
    ];
    attack(3, &hub, MAX_CONTROL_FRAME, 15_000);
    // A small limit makes the oversize path reachable with lengths the inputs actually carry.
    attack(4, &hub, 7, 5_000);
    let container = ContainerSummary {
        id: "4f2a".into(),
        names: vec!["web".into(), "web-alias".into()],
        status: "Up 3 hours".into(),
        ..ContainerSummary::default()
    };
    let snapshot = EngineSnapshot {
        taken_at: -1,
        engine_version: "27.1.1".into(),
        containers: vec![container.clone(), ContainerSummary::default(), container],
        error: Some("partial".into()),
        ..EngineSnapshot::default()
    };
    let hello = AgentMessage::Hello {
        agent_version: "0.1.0".into(),
    };
    let agent = [
        hello,
        AgentMessage::Ready { id: 9 },
        AgentMessage::Standby,
        AgentMessage::Snapshot(snapshot),
        AgentMessage::Features(Features::JOBS),
        AgentMessage::JobStarted { id: 7 },
        AgentMessage::JobResult(JobResult {
            id: 7,
            outcome: JobOutcome::Failed("no such container: web".into()),
            head: b"partial output".to_vec(),
            tail: vec![],
            output_bytes: 14,
            duration_ms: 1_250,
        }),
        AgentMessage::JobProgress(JobProgress {
            id: 7,
            done: 1 << 20,
            total: u64::MAX,
            deferred: None,
        }),
    ];
    attack(5, &agent, MAX_CONTROL_FRAME, 15_000);
    let ack = Datagram::Ack {
        seq: 3,
        interval_s: u16::MAX,
    };
    attack(
        6,
        &[Datagram::CheckIn { seq: 1 << 31 }, ack],
        MAX_DATAGRAM,
        15_000,
    );
}

#[test]
fn stream_prefaces_survive_hostile_bytes() {
    let mut rng = Rng(7);
    let header = StreamHeader {
        kind: StreamKind::DockerApi,
        request_id: u64::MAX,
    };
    let headers = [
        stream::encode_header(&header),
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
    ];
    let message = "9 streams open".into();
    let refused = StreamReply::Refused {
        reason: StreamRefusal::Busy,
        message,
    };
    let replies = [StreamReply::Ready, refused].map(|reply| {
        let mut out = Vec::new();
        block_on(stream::write_reply(&mut out, &reply)).unwrap();
        out
    });
    for _ in 0..20_000 {
        let (header, reply) = (
            hostile(&mut rng, &headers, 4..6),
            hostile(&mut rng, &replies, 0..2),
        );
        check_header(&mut rng, &header);
        check_reply(&mut rng, &reply);
    }
    every_cut_fails(&headers[0], |cut| {
        block_on(stream::read_header(&mut &cut[..])).is_ok()
    });
    for reply in &replies {
        every_cut_fails(reply, |cut| {
            block_on(stream::read_reply(&mut &cut[..])).is_ok()
        });
    }
}

#[test]
fn join_tokens_survive_hostile_text_and_bytes() {
    let mut rng = Rng(8);
    let token = JoinToken {
        hub_addrs: vec!["hub.example:4433".into(), "[2001:db8::1]:4433".into()],
        ca_fingerprint: [0xab; 32],
        endpoint: EndpointId(300),
        secret: Secret([0x5a; 32]),
    };
    let text = token.encode();
    let raw = URL_SAFE_NO_PAD.decode(&text).unwrap();
    for _ in 0..20_000 {
        // As raw bytes (so most inputs reach the body), and as mangled text.
        let bytes = hostile(&mut rng, std::slice::from_ref(&raw), 0..0);
        check_token(&URL_SAFE_NO_PAD.encode(&bytes));
        let mangled = hostile(&mut rng, &[text.clone().into_bytes()], 0..0);
        check_token(&String::from_utf8_lossy(&mangled));
    }
    every_cut_fails(&raw, |cut| {
        JoinToken::decode(&URL_SAFE_NO_PAD.encode(cut)).is_ok()
    });
    for cut in 1..text.len() {
        assert_eq!(
            JoinToken::decode(&text[..cut]),
            Err(TokenError::Truncated),
            "cut at {cut}"
        );
    }
}

/// What the `registry_input` fuzz target asserts, on mangled registry request text.
fn check_registry_text(text: &str, size: u64) {
    if let Ok(path) = RepoPath::parse(text) {
        let path = path.as_str();
        assert!(path.len() <= MAX_NAME_LEN, "{path:?}");
        assert!(
            !path.starts_with('/') && !path.ends_with('/') && !path.contains(".."),
            "{path:?}"
        );
    }
    let _ = split_host(text);
    if let Ok(Reference::Tag(tag)) = Reference::parse(text) {
        assert!(!tag.contains('/') && !tag.contains(':'), "{tag:?}");
    }
    if let Ok(digest) = Digest::parse(text) {
        let hex = digest.hex();
        assert_eq!(hex.len(), 64);
        assert!(
            hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "{hex:?}"
        );
    }
    if let RangeRequest::Part(part) = range::parse(Some(text), size) {
        assert!(
            part.start <= part.end && part.end < size,
            "{text:?}: {part:?}"
        );
        assert_eq!(part.byte_count(), part.end - part.start + 1);
    }
}

#[test]
fn registry_request_text_survives_hostile_input() {
    let mut rng = Rng(9);
    let samples: Vec<Vec<u8>> = [
        "library/busybox",
        "registry.example:5000/pos/web__worker-1",
        "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "v1.2.3-rc_1",
        "bytes=100000-",
        "bytes=-500",
        "bytes=0-0",
        "../../etc/passwd",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    for _ in 0..20_000 {
        let bytes = hostile(&mut rng, &samples, 0..0);
        let size = rng.below(1 << 20) as u64;
        check_registry_text(&String::from_utf8_lossy(&bytes), size);
    }
    assert!(RepoPath::parse("../../etc/passwd").is_err());
    assert!(Digest::parse("sha256:../../../../etc/passwd").is_err());
    let long = format!("{}a", "a/".repeat(128));
    assert_eq!(RepoPath::parse(&long), Err(NameError::TooLong));
    assert!(
        RepoPath::parse(&long[2..]).is_ok(),
        "255 characters are allowed"
    );
}
