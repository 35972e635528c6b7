//! The device's Docker Engine address (`DOCKER_HOST`): the one place proxy streams are relayed to.

use std::path::PathBuf;
use std::pin::Pin;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};

/// Where the local engine listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DockerHost {
    /// `unix:///var/run/docker.sock`
    Unix(PathBuf),
    /// `tcp://127.0.0.1:2375` (plain TCP; an engine on TLS is reached through its unix socket).
    Tcp(String),
}

/// A `DOCKER_HOST` value this agent cannot use.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "DOCKER_HOST {value:?} is not supported: use unix:///path/to/docker.sock or tcp://host:port"
)]
pub struct DockerHostError {
    /// The value given.
    pub value: String,
}

/// A byte stream to the engine.
pub trait EngineIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> EngineIo for T {}

impl DockerHost {
    /// Parse a `DOCKER_HOST` value.
    pub fn parse(value: &str) -> Result<Self, DockerHostError> {
        let err = || DockerHostError {
            value: value.to_owned(),
        };
        if let Some(path) = value.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(err());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = value.strip_prefix("tcp://") {
            let addr = addr.trim_end_matches('/');
            if addr.is_empty() || !addr.contains(':') || addr.contains('/') {
                return Err(err());
            }
            return Ok(Self::Tcp(addr.to_owned()));
        }
        Err(err())
    }

    /// Open a new connection to the engine.
    pub async fn connect(&self) -> std::io::Result<Pin<Box<dyn EngineIo>>> {
        Ok(match self {
            Self::Unix(path) => Box::pin(tokio::net::UnixStream::connect(path).await?),
            Self::Tcp(addr) => {
                let stream = tokio::net::TcpStream::connect(addr.as_str()).await?;
                stream.set_nodelay(true)?;
                Box::pin(stream)
            }
        })
    }
}

impl std::fmt::Display for DockerHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
            Self::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unix_and_tcp_and_refuses_the_rest() {
        assert_eq!(
            DockerHost::parse("unix:///var/run/docker.sock"),
            Ok(DockerHost::Unix("/var/run/docker.sock".into()))
        );
        assert_eq!(
            DockerHost::parse("tcp://127.0.0.1:2375"),
            Ok(DockerHost::Tcp("127.0.0.1:2375".into()))
        );
        for bad in [
            "",
            "unix://",
            "ssh://host",
            "tcp://nohost",
            "/var/run/docker.sock",
            "tcp://h:1/x",
        ] {
            assert!(DockerHost::parse(bad).is_err(), "{bad}");
        }
        let display = DockerHost::parse("unix:///run/d.sock").unwrap().to_string();
        assert_eq!(display, "unix:///run/d.sock");
    }

    #[tokio::test]
    async fn a_dead_socket_is_a_connect_error() {
        let dir = tempfile::tempdir().unwrap();
        let host = DockerHost::Unix(dir.path().join("missing.sock"));
        assert!(host.connect().await.is_err());
    }
}
