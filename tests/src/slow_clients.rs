//! Slow clients of the hub's admin API: TLS connections that send half a request head and then
//! hold still (slowloris). Each connection is watched by a task that reads until the hub closes
//! it, so a test can count how many the hub still holds. Also the open-file limits the flood is
//! measured against.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use outpost_certs::{ca_client_config, certs_from_pem, private_key_from_pem};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// What a slow client writes: a request line and the start of a header, never the blank line.
pub const HALF_HEAD: &[u8] = b"GET /api/endpoints HTTP/1.1\r\nHost: hub\r\nX-Slow: ";

/// How long one connection may take to open before it counts as refused.
const OPEN_DEADLINE: Duration = Duration::from_secs(10);

/// TLS to a hub's API trusting its `ca.pem` in `data_dir`, with the admin client certificate in
/// `cert_dir` (Docker's layout: cert.pem, key.pem) when given.
pub fn tls_config(data_dir: &Path, cert_dir: Option<&Path>) -> Arc<rustls::ClientConfig> {
    let read = |path: &Path| std::fs::read_to_string(path).expect("readable PEM");
    let client = cert_dir.map(|dir| {
        let chain = certs_from_pem(&read(&dir.join("cert.pem"))).expect("cert.pem");
        let key = private_key_from_pem(&read(&dir.join("key.pem"))).expect("key.pem");
        (chain, key)
    });
    let ca = read(&data_dir.join("ca.pem"));
    Arc::new(ca_client_config(&ca, client, &[b"http/1.1"]).expect("client TLS config"))
}

/// One TLS connection to `api_addr` (`ip:port`).
pub async fn connect(
    api_addr: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(api_addr).await?;
    let ip = tcp.peer_addr()?.ip();
    TlsConnector::from(config)
        .connect(ServerName::IpAddress(ip.into()), tcp)
        .await
}

/// Half-open connections being held; all closed when dropped.
#[derive(Debug)]
pub struct HalfOpen {
    /// Runs the watching tasks; dropping it closes every connection.
    _runtime: tokio::runtime::Runtime,
    open: Arc<AtomicUsize>,
    opened: usize,
}

impl HalfOpen {
    /// Connections that completed TLS and wrote their half head.
    pub fn opened(&self) -> usize {
        self.opened
    }

    /// Of those, how many the hub has not closed yet.
    pub fn still_open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// Open `count` TLS connections to the hub whose data directory is `data_dir` and API is
/// `api_addr`, one after another; each sends [`HALF_HEAD`] and holds. A connection the hub refuses
/// or closes before its half head is written does not count as opened.
pub fn hold_half_open(api_addr: &str, data_dir: &Path, count: usize) -> HalfOpen {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let config = tls_config(data_dir, None);
    let open = Arc::new(AtomicUsize::new(0));
    let mut opened = 0;
    for _ in 0..count {
        let attempt = half_open(api_addr, config.clone());
        let opened_one =
            runtime.block_on(async { tokio::time::timeout(OPEN_DEADLINE, attempt).await });
        let Ok(Ok(mut tls)) = opened_one else {
            continue;
        };
        opened += 1;
        open.fetch_add(1, Ordering::SeqCst);
        let open = open.clone();
        runtime.spawn(async move {
            let mut buf = [0u8; 1024];
            while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {}
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
    HalfOpen {
        _runtime: runtime,
        open,
        opened,
    }
}

async fn half_open(
    api_addr: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut tls = connect(api_addr, config).await?;
    tls.write_all(HALF_HEAD).await?;
    tls.flush().await?;
    Ok(tls)
}

/// The soft and hard open-file limits of process `pid`, from /proc.
pub fn open_file_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("/proc limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("/proc limits");
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// Set process `pid`'s open-file limit with util-linux `prlimit` (`soft:hard`, or `soft:` alone).
pub fn prlimit(pid: u32, nofile: &str) {
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={nofile}")])
        .status()
        .expect("prlimit (util-linux) on PATH");
    assert!(status.success(), "prlimit --nofile={nofile}");
}
