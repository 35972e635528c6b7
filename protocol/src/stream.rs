//! The preface of a proxy stream: what the hub writes first on each bidirectional stream it opens,
//! and the agent's one-frame answer, after which the stream carries raw bytes.
//!
//! ```text
//! hub  → agent: "OPS" version:u8 len:u16be postcard(StreamHeader)   (len ≤ MAX_HEADER)
//! agent → hub : len:u16be postcard(StreamReply)                      (len ≤ MAX_REPLY)
//! then: the Docker HTTP connection, byte for byte, both ways
//! ```
//!
//! The header names a kind of stream, never a target: the agent relays only to the Docker socket
//! it was configured with, so a compromised hub cannot use devices to reach other hosts. Both frames
//! are checked against their limit before the body is read.
//!
//! Versions: 1 — first version (`DockerApi`).

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::wire::{self, WireError};

/// Magic bytes opening every proxy stream.
pub const MAGIC: &[u8; 3] = b"OPS";
/// The stream preface version this build writes and reads.
pub const STREAM_VERSION: u8 = 1;
/// Largest header body.
pub const MAX_HEADER: usize = 256;
/// Largest reply body (a refusal carries a human-readable message).
pub const MAX_REPLY: usize = 1024;
/// Proxy streams the hub may have open on one device at once: the agent's stream credit when
/// summoned, and the hub's per-device limit (which answers with a clear error instead of queueing).
pub const MAX_STREAMS_PER_DEVICE: u32 = 32;
/// Proxy streams the hub may open on a device in standby, before its summon is answered: the
/// first command's request leaves beside the summon instead of a round trip after it (0.6 s on
/// GEO). A hub that opens one sends the summon too, and the device goes active when either
/// arrives; an older hub waits for the `Ready` as before, and an older agent (no standby credit)
/// answers with its `Ready` the credit the hub's open was waiting for.
pub const STANDBY_STREAMS: u32 = 1;

/// What a stream is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamKind {
    /// One HTTP/1.1 connection to the device's Docker Engine API.
    DockerApi,
}

/// The header of a proxy stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHeader {
    /// What to relay to.
    pub kind: StreamKind,
    /// The hub's id for the request, for logs on both sides.
    pub request_id: u64,
}

/// The agent's answer to a stream header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamReply {
    /// Connected to the engine; raw bytes follow.
    Ready,
    /// Not relayed, and why.
    Refused {
        /// Machine-readable reason.
        reason: StreamRefusal,
        /// What happened, for the admin.
        message: String,
    },
}

/// Why an agent refused a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamRefusal {
    /// The device's Docker socket did not answer.
    DockerUnavailable,
    /// Too many streams open on the device.
    Busy,
    /// A stream kind this agent does not serve.
    Unsupported,
}

/// Why a stream preface could not be read.
#[derive(Debug, Error)]
pub enum PrefaceError {
    /// The stream does not start with the magic bytes.
    #[error("not an Outpost proxy stream (bad magic)")]
    BadMagic,
    /// A preface version this build does not speak.
    #[error("proxy stream version {0} is not supported (this build speaks {STREAM_VERSION})")]
    UnsupportedVersion(u8),
    /// Length above the limit.
    #[error("proxy stream preface of {len} bytes exceeds the {max}-byte limit")]
    Oversized {
        /// Announced length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// Body did not decode, or the stream broke.
    #[error(transparent)]
    Wire(#[from] WireError),
}

impl From<std::io::Error> for PrefaceError {
    fn from(e: std::io::Error) -> Self {
        Self::Wire(WireError::Io(e))
    }
}

/// Encode a stream header with its preface.
pub fn encode_header(header: &StreamHeader) -> Vec<u8> {
    let body = wire::encode(header);
    let mut out = Vec::with_capacity(6 + body.len());
    out.extend_from_slice(MAGIC);
    out.push(STREAM_VERSION);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Read a stream header: magic, version and length are checked before the body is read.
pub async fn read_header<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<StreamHeader, PrefaceError> {
    let mut fixed = [0u8; 6];
    reader.read_exact(&mut fixed).await?;
    if &fixed[..3] != MAGIC {
        return Err(PrefaceError::BadMagic);
    }
    if fixed[3] != STREAM_VERSION {
        return Err(PrefaceError::UnsupportedVersion(fixed[3]));
    }
    let len = u16::from_be_bytes([fixed[4], fixed[5]]) as usize;
    read_body(reader, len, MAX_HEADER).await
}

/// Write the agent's reply.
pub async fn write_reply<W: AsyncWrite + Unpin>(
    writer: &mut W,
    reply: &StreamReply,
) -> Result<(), PrefaceError> {
    let body = wire::encode(reply);
    let mut out = Vec::with_capacity(2 + body.len());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(&body);
    writer.write_all(&out).await?;
    Ok(())
}

/// Read the agent's reply.
pub async fn read_reply<R: AsyncRead + Unpin>(reader: &mut R) -> Result<StreamReply, PrefaceError> {
    let mut len = [0u8; 2];
    reader.read_exact(&mut len).await?;
    read_body(reader, u16::from_be_bytes(len) as usize, MAX_REPLY).await
}

async fn read_body<T, R>(reader: &mut R, len: usize, max: usize) -> Result<T, PrefaceError>
where
    T: serde::de::DeserializeOwned,
    R: AsyncRead + Unpin,
{
    if len > max {
        return Err(PrefaceError::Oversized { len, max });
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    Ok(wire::decode(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: StreamHeader = StreamHeader {
        kind: StreamKind::DockerApi,
        request_id: 42,
    };

    #[tokio::test]
    async fn header_and_reply_round_trip_through_split_reads() {
        let (mut a, mut b) = tokio::io::duplex(1);
        let writer = tokio::spawn(async move {
            for byte in encode_header(&HEADER) {
                a.write_all(&[byte]).await.unwrap();
            }
            let refused = StreamReply::Refused {
                reason: StreamRefusal::DockerUnavailable,
                message: "connection refused".into(),
            };
            write_reply(&mut a, &refused).await.unwrap();
        });
        assert_eq!(read_header(&mut b).await.unwrap(), HEADER);
        let reply = read_reply(&mut b).await.unwrap();
        writer.await.unwrap();
        assert!(matches!(
            reply,
            StreamReply::Refused {
                reason: StreamRefusal::DockerUnavailable,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn bad_magic_wrong_version_and_oversize_are_refused_before_the_body() {
        let mut bytes = encode_header(&HEADER);
        bytes[0] = b'G';
        assert!(matches!(
            read_header(&mut bytes.as_slice()).await,
            Err(PrefaceError::BadMagic)
        ));

        let mut bytes = encode_header(&HEADER);
        bytes[3] = 9;
        assert!(matches!(
            read_header(&mut bytes.as_slice()).await,
            Err(PrefaceError::UnsupportedVersion(9))
        ));

        // An HTTP request where a header should be: refused, not parsed.
        let http = b"GET /containers/json HTTP/1.1\r\n\r\n";
        assert!(matches!(
            read_header(&mut http.as_slice()).await,
            Err(PrefaceError::BadMagic)
        ));

        let mut bytes = b"OPS\x01\xff\xff".to_vec();
        bytes.extend([0u8; 16]);
        assert!(matches!(
            read_header(&mut bytes.as_slice()).await,
            Err(PrefaceError::Oversized {
                len: 0xffff,
                max: MAX_HEADER
            })
        ));
    }

    #[tokio::test]
    async fn truncated_and_garbage_prefaces_are_errors() {
        let bytes = encode_header(&HEADER);
        for len in 0..bytes.len() {
            assert!(
                read_header(&mut &bytes[..len]).await.is_err(),
                "cut at {len}"
            );
        }
        let garbage = b"OPS\x01\x00\x03\xff\xff\xff";
        assert!(matches!(
            read_header(&mut garbage.as_slice()).await,
            Err(PrefaceError::Wire(_))
        ));
    }
}
