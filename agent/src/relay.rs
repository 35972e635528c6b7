//! Proxy streams: the hub opens one bidirectional stream per Docker API connection; the agent reads
//! its preface, connects to the local engine and relays bytes both ways without parsing HTTP, so
//! chunked streams, hijacked connections (`exec -it`, `attach`) and large transfers pass unchanged.
//!
//! A stream that the hub resets (its client went away) fails the copy at once and drops the engine
//! connection with it; an engine that does not answer gets a clear refusal back to the hub.

use std::time::Duration;

use outpost_protocol::stream::{self, StreamKind, StreamRefusal, StreamReply};
use thiserror::Error;
use tracing::debug;

use crate::docker_host::DockerHost;

/// How long the hub has to send the preface after opening a stream.
const HEADER_DEADLINE: Duration = Duration::from_secs(30);

/// Why a stream was not relayed to the end.
#[derive(Debug, Error)]
pub enum RelayError {
    /// No preface in time.
    #[error("no stream header within {HEADER_DEADLINE:?}")]
    Timeout,
    /// The preface was malformed.
    #[error("bad stream header: {0}")]
    Header(#[from] stream::PrefaceError),
    /// The engine could not be reached (the hub was told).
    #[error("Docker engine unreachable: {0}")]
    Engine(std::io::Error),
    /// The copy ended with an error (a reset by either side).
    #[error("relay ended: {0}")]
    Copy(std::io::Error),
}

/// Bytes moved by one relayed stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Relayed {
    /// Hub → engine.
    pub to_engine: u64,
    /// Engine → hub.
    pub to_hub: u64,
}

/// Serve one stream opened by the hub.
pub async fn serve(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    docker: &DockerHost,
) -> Result<Relayed, RelayError> {
    let header = tokio::time::timeout(HEADER_DEADLINE, stream::read_header(&mut recv))
        .await
        .map_err(|_| RelayError::Timeout)??;
    match header.kind {
        StreamKind::DockerApi => {}
    }
    debug!(request = header.request_id, "proxy stream");
    let mut engine = match docker.connect().await {
        Ok(engine) => engine,
        Err(e) => {
            let reply = StreamReply::Refused {
                reason: StreamRefusal::DockerUnavailable,
                message: format!(
                    "the Docker engine on this device is not reachable at {docker}: {e}"
                ),
            };
            stream::write_reply(&mut send, &reply).await?;
            let _ = send.finish();
            return Err(RelayError::Engine(e));
        }
    };
    stream::write_reply(&mut send, &StreamReply::Ready).await?;
    let mut hub = tokio::io::join(recv, send);
    let (to_engine, to_hub) = tokio::io::copy_bidirectional(&mut hub, &mut engine)
        .await
        .map_err(RelayError::Copy)?;
    Ok(Relayed { to_engine, to_hub })
}
