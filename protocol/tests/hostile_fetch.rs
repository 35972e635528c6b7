//! Hostile input for the fetch stream decoders (`fetch::read_request` on the hub, `read_reply`
//! and `check_reply` on the agent), the deterministic shadow of the `fetch_preface` fuzz target:
//! valid prefaces mutated (bit flips, overwrites, truncations, insertions, corrupted lengths) and
//! random bytes, read in splits of 1..=n bytes. Nothing panics; a length over the limit is refused
//! before a byte of the body is read; whatever request is accepted stays inside the registry
//! grammar and encodes back to itself; every truncation of a valid preface is an error.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use outpost_protocol::fetch::{
    self, FetchError, FetchRefusal, FetchReply, FetchRequest, FetchTarget, MAX_REPLY, MAX_REQUEST,
};
use outpost_protocol::registry::name::MAX_NAME_LEN;
use tokio::io::{AsyncRead, ReadBuf};

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// xorshift64: the same sequence everywhere.
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
}

/// Reads of 1..=max_chunk bytes, counting how far the decoder read.
struct Chunked<'a> {
    data: &'a [u8],
    pos: usize,
    max_chunk: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let rest = &this.data[this.pos..];
        let n = rest.len().min(this.max_chunk).min(buf.remaining());
        buf.put_slice(&rest[..n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

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

fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>, len_at: usize) {
    let at = rng.below(bytes.len() + 1);
    match rng.below(7) {
        0 if at < bytes.len() => bytes[at] ^= 1 << rng.below(8),
        1 if at < bytes.len() => bytes[at] = [0, 0x7f, 0x80, 0xff][rng.below(4)],
        2 => bytes.truncate(at),
        3 => drop(bytes.splice(at..at, [0xff, 0xff, 0xff, 0xff, 0x0f])),
        4 => drop(bytes.drain(at..(at + 1 + rng.below(8)).min(bytes.len()))),
        5 if bytes.len() >= len_at + 2 => {
            let len = [0u16, 1, u16::MAX, rng.next() as u16][rng.below(4)];
            bytes[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
        }
        _ => bytes.push(rng.next() as u8),
    }
}

fn hostile(rng: &mut Rng, samples: &[Vec<u8>], len_at: usize) -> Vec<u8> {
    if rng.below(8) == 0 {
        return (0..1 + rng.below(64)).map(|_| rng.next() as u8).collect();
    }
    let mut bytes = samples[rng.below(samples.len())].clone();
    for _ in 0..1 + rng.below(3) {
        mutate(rng, &mut bytes, len_at);
    }
    bytes
}

fn announced(bytes: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]) as usize)
}

fn samples() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let requests = [
        FetchTarget::Manifest {
            reference: "latest".into(),
        },
        FetchTarget::Manifest {
            reference: DIGEST.into(),
        },
        FetchTarget::Blob {
            digest: DIGEST.into(),
            offset: u64::MAX,
        },
    ]
    .map(|target| {
        fetch::encode_request(&FetchRequest {
            name: "registry.example:5000/pos/web__worker-1".into(),
            target,
        })
    });
    let replies = [
        FetchReply::Found {
            digest: DIGEST.into(),
            size: 25_000_000,
            media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
        },
        FetchReply::Refused {
            reason: FetchRefusal::Upstream,
            message: "digest mismatch".into(),
        },
    ]
    .map(|reply| {
        let mut out = Vec::new();
        block_on(fetch::write_reply(&mut out, &reply)).unwrap();
        out
    });
    (requests.to_vec(), replies.to_vec())
}

fn check_request(rng: &mut Rng, bytes: &[u8]) {
    let mut reader = Chunked {
        data: bytes,
        pos: 0,
        max_chunk: 1 + rng.below(16),
    };
    match block_on(fetch::read_request(&mut reader)) {
        Ok(fetch) => {
            assert!(fetch.name.len() <= MAX_NAME_LEN);
            assert!(!fetch.name.contains("..") && !fetch.name.starts_with('/'));
            let again = fetch::encode_request(&fetch.to_request());
            assert_eq!(
                block_on(fetch::read_request(&mut again.as_slice())).unwrap(),
                fetch
            );
        }
        Err(FetchError::Oversized { len, max }) => {
            assert_eq!((len, max), (announced(bytes, 4).unwrap(), MAX_REQUEST));
            assert_eq!(reader.pos, 6, "body read before the limit check");
        }
        Err(_) => {}
    }
}

fn check_reply(rng: &mut Rng, bytes: &[u8], asked: &fetch::Fetch) {
    let mut reader = Chunked {
        data: bytes,
        pos: 0,
        max_chunk: 1 + rng.below(16),
    };
    match block_on(fetch::read_reply(&mut reader)) {
        Ok(reply) => {
            if let Ok(Ok(found)) = fetch::check_reply(asked, reply) {
                assert_eq!(found.digest.as_str(), DIGEST);
                assert!(found.media_type.len() <= fetch::MAX_MEDIA_TYPE);
            }
        }
        Err(FetchError::Oversized { len, max }) => {
            assert_eq!((len, max), (announced(bytes, 0).unwrap(), MAX_REPLY));
            assert_eq!(reader.pos, 2, "body read before the limit check");
        }
        Err(_) => {}
    }
}

#[test]
fn fetch_prefaces_survive_hostile_bytes() {
    let mut rng = Rng(16);
    let (requests, replies) = samples();
    let asked = block_on(fetch::read_request(&mut requests[2].as_slice())).unwrap();
    for _ in 0..20_000 {
        let request = hostile(&mut rng, &requests, 4);
        check_request(&mut rng, &request);
        let reply = hostile(&mut rng, &replies, 0);
        check_reply(&mut rng, &reply, &asked);
    }
    for request in &requests {
        for cut in 0..request.len() {
            assert!(
                block_on(fetch::read_request(&mut &request[..cut])).is_err(),
                "cut at {cut}"
            );
        }
    }
    for reply in &replies {
        for cut in 0..reply.len() {
            assert!(
                block_on(fetch::read_reply(&mut &reply[..cut])).is_err(),
                "cut at {cut}"
            );
        }
    }
}
