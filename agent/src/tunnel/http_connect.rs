//! Through an HTTP proxy: `CONNECT host:port` (RFC 9110 §9.3.6), with basic credentials when the
//! proxy URL carries them, and nothing read past the proxy's answer.
//!
//! Hand-written rather than a crate: the exchange is one request and one bounded header block,
//! and the crates for it pull a second HTTP stack into the agent.

use std::fmt;

use base64::Engine as _;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest proxy answer read: a status line and a few headers.
const MAX_ANSWER: usize = 8 * 1024;

/// An HTTP proxy the tunnel goes through: `http://[user:password@]host[:port]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    /// `host:port` to dial.
    addr: String,
    /// `Proxy-Authorization` value, when the URL names a user.
    authorization: Option<String>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .field("credentials", &self.authorization.is_some())
            .finish()
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}", self.addr)
    }
}

/// Why the proxy did not give us a tunnel.
#[derive(Debug, Error)]
pub enum ProxyError {
    /// The proxy URL is not one we can use.
    #[error("proxy URL: {0}")]
    Url(String),
    /// The proxy could not be reached or broke off.
    #[error("proxy {proxy}: {source}")]
    Io {
        /// The proxy.
        proxy: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The proxy answered something other than 2xx.
    #[error("proxy {proxy} refused CONNECT to {target}: {status}")]
    Refused {
        /// The proxy.
        proxy: String,
        /// What we asked for.
        target: String,
        /// Its status line.
        status: String,
    },
}

impl Proxy {
    /// Parse `http://[user:password@]host[:port]` (port 80 by default). `https://` proxies (TLS to
    /// the proxy itself) are refused with a clear error.
    pub fn parse(text: &str) -> Result<Self, ProxyError> {
        let url = url::Url::parse(text).map_err(|e| ProxyError::Url(format!("{text:?}: {e}")))?;
        if url.scheme() != "http" {
            return Err(ProxyError::Url(format!(
                "{}:// proxies are not supported; give the proxy as http://host:port",
                url.scheme()
            )));
        }
        let host = url
            .host_str()
            .ok_or_else(|| ProxyError::Url(format!("{text:?} names no host")))?;
        let addr = format!("{host}:{}", url.port().unwrap_or(80));
        let decode = |part: &str| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| ProxyError::Url("credentials are not UTF-8".into()))
        };
        let authorization = if url.username().is_empty() {
            None
        } else {
            let user = decode(url.username())?;
            let password = decode(url.password().unwrap_or(""))?;
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            Some(format!("Basic {token}"))
        };
        Ok(Self {
            addr,
            authorization,
        })
    }

    /// A TCP stream to `target` (`host:port`) through the proxy, ready for TLS.
    pub async fn connect(&self, target: &str) -> Result<TcpStream, ProxyError> {
        let io = |source| ProxyError::Io {
            proxy: self.addr.clone(),
            source,
        };
        let mut stream = TcpStream::connect(&self.addr).await.map_err(io)?;
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(authorization) = &self.authorization {
            request.push_str(&format!("Proxy-Authorization: {authorization}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let answer = read_answer(&mut stream).await.map_err(io)?;
        let status = answer.lines().next().unwrap_or_default().to_string();
        if is_success(&status) {
            Ok(stream)
        } else {
            Err(ProxyError::Refused {
                proxy: self.addr.clone(),
                target: target.into(),
                status: status.escape_debug().to_string(),
            })
        }
    }
}

/// `HTTP/1.x 2xx …`.
fn is_success(status_line: &str) -> bool {
    let mut parts = status_line.split(' ');
    parts.next().is_some_and(|v| v.starts_with("HTTP/1."))
        && parts
            .next()
            .is_some_and(|code| code.len() == 3 && code.starts_with('2'))
}

/// The proxy's answer up to its blank line, a byte at a time so nothing of the tunnel is taken.
async fn read_answer(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut answer = Vec::with_capacity(256);
    while !answer.ends_with(b"\r\n\r\n") {
        if answer.len() >= MAX_ANSWER {
            return Err(std::io::Error::other(format!(
                "answer longer than {MAX_ANSWER} bytes"
            )));
        }
        answer.push(stream.read_u8().await?);
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;

    #[test]
    fn a_proxy_url_gives_its_address_and_credentials() {
        let proxy = Proxy::parse("http://kiosk:p%40ss@proxy.example:3128/").unwrap();
        assert_eq!(proxy.addr, "proxy.example:3128");
        assert_eq!(
            proxy.authorization.as_deref(),
            Some("Basic a2lvc2s6cEBzcw==")
        );
        assert!(
            !format!("{proxy:?}").contains("a2lvc2s"),
            "credentials never printed"
        );
        assert_eq!(Proxy::parse("http://10.0.0.1").unwrap().addr, "10.0.0.1:80");
        assert!(matches!(
            Proxy::parse("https://p:1"),
            Err(ProxyError::Url(_))
        ));
        assert!(matches!(
            Proxy::parse("proxy:3128"),
            Err(ProxyError::Url(_))
        ));
    }

    #[test]
    fn only_a_2xx_answer_opens_the_tunnel() {
        assert!(is_success("HTTP/1.1 200 Connection established"));
        assert!(is_success("HTTP/1.0 200 OK"));
        assert!(!is_success("HTTP/1.1 407 Proxy Authentication Required"));
        assert!(!is_success("HTTP/1.1 2000"));
        assert!(!is_success("SSH-2.0-OpenSSH"));
    }

    /// A proxy on loopback that checks the request and answers `status`, then echoes.
    async fn proxy_answering(status: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = tokio::io::BufReader::new(stream);
            let mut request = String::new();
            while !request.ends_with("\r\n\r\n") {
                stream.read_line(&mut request).await.unwrap();
            }
            stream
                .get_mut()
                .write_all(format!("{status}\r\nVia: test\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut rest = [0u8; 5];
            if stream.read_exact(&mut rest).await.is_ok() {
                stream.get_mut().write_all(&rest).await.unwrap();
            }
            request
        });
        (format!("http://u:pw@{addr}"), task)
    }

    #[tokio::test]
    async fn connect_sends_the_target_and_credentials_and_keeps_the_stream() {
        let (url, proxy) = proxy_answering("HTTP/1.1 200 Connection established").await;
        let mut stream = Proxy::parse(&url)
            .unwrap()
            .connect("hub.example:4433")
            .await
            .unwrap();
        stream.write_all(b"hello").await.unwrap();
        let mut echoed = [0u8; 5];
        stream.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"hello", "nothing after the answer was swallowed");
        let request = proxy.await.unwrap();
        assert!(request.starts_with("CONNECT hub.example:4433 HTTP/1.1\r\n"));
        assert!(request.contains("Proxy-Authorization: Basic dTpwdw==\r\n"));
    }

    #[tokio::test]
    async fn a_refusal_names_the_proxy_and_its_status() {
        let (url, _proxy) = proxy_answering("HTTP/1.1 403 Forbidden").await;
        let error = Proxy::parse(&url)
            .unwrap()
            .connect("hub.example:4433")
            .await
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("refused CONNECT to hub.example:4433: HTTP/1.1 403 Forbidden"),
            "{error}"
        );
    }
}
