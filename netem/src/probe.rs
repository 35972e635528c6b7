//! Measurement tools: UDP and TCP echo servers and pingers.
//!
//! Tests and the rig check that an emulated link has the round-trip time and loss of its profile;
//! these helpers measure both, for UDP (the transport our QUIC traffic uses) and for TCP (the
//! baseline that must cross the same link). Every loop is bounded by a count and a deadline.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::Instant;

/// Bytes at the start of a probe: its sequence number.
const HEADER: usize = 8;

/// Echoes every datagram back to its sender, for ever (abort the task to stop it).
pub async fn udp_echo(socket: UdpSocket) -> io::Result<()> {
    let mut buf = vec![0u8; 65_535];
    loop {
        let (len, from) = socket.recv_from(&mut buf).await?;
        let _ = socket.send_to(&buf[..len], from).await;
    }
}

/// Echoes every TCP connection's bytes back, for ever.
pub async fn tcp_echo(listener: TcpListener) -> io::Result<()> {
    loop {
        let (mut stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let (mut r, mut w) = stream.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }
}

/// What a ping run measured.
#[derive(Debug, Clone, Default)]
pub struct PingReport {
    /// Probes sent.
    pub sent: u64,
    /// Distinct probes answered.
    pub received: u64,
    /// Round-trip times of the answered probes, in the order they arrived.
    pub rtts: Vec<Duration>,
}

impl PingReport {
    /// Fraction of probes not answered.
    pub fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        1.0 - self.received as f64 / self.sent as f64
    }

    /// The `q`-quantile (0..=1) of the round-trip times.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let mut sorted = self.rtts.clone();
        sorted.sort();
        let last = sorted.len().checked_sub(1)?;
        sorted
            .get((q.clamp(0.0, 1.0) * last as f64).round() as usize)
            .copied()
    }
}

impl std::fmt::Display for PingReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |q| self.quantile(q).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
        write!(
            f,
            "sent {} received {} loss {:.2}% rtt min {:.1} p50 {:.1} p99 {:.1} ms",
            self.sent,
            self.received,
            self.loss() * 100.0,
            ms(0.0),
            ms(0.5),
            ms(0.99)
        )
    }
}

/// Sends `count` probes of `size` bytes to `target` every `interval` from `socket`, then waits up
/// to `wait` for late answers.
pub async fn udp_ping(
    socket: &UdpSocket,
    target: SocketAddr,
    count: u64,
    interval: Duration,
    size: usize,
    wait: Duration,
) -> io::Result<PingReport> {
    let mut sent_at: Vec<Option<Instant>> = vec![None; count as usize];
    let mut answered = vec![false; count as usize];
    let mut report = PingReport::default();
    let mut payload = vec![0u8; size.max(HEADER)];
    let mut buf = vec![0u8; 65_535];
    let mut ticker = tokio::time::interval(interval);
    let mut deadline = Instant::now() + interval * count as u32 + wait;
    while Instant::now() < deadline && report.received < count {
        tokio::select! {
            _ = ticker.tick(), if report.sent < count => {
                payload[..HEADER].copy_from_slice(&report.sent.to_be_bytes());
                sent_at[report.sent as usize] = Some(Instant::now());
                socket.send_to(&payload, target).await?;
                report.sent += 1;
                if report.sent == count {
                    deadline = Instant::now() + wait;
                }
            }
            r = socket.recv_from(&mut buf) => {
                let Ok((len, _)) = r else { continue };
                let Some(seq) = buf.get(..HEADER).filter(|_| len >= HEADER) else { continue };
                let seq = u64::from_be_bytes(seq.try_into().unwrap_or_default()) as usize;
                if let (Some(Some(at)), Some(false)) = (sent_at.get(seq).copied(), answered.get(seq).copied()) {
                    answered[seq] = true;
                    report.received += 1;
                    report.rtts.push(at.elapsed());
                }
            }
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    Ok(report)
}

/// Opens one TCP connection to an echo server and times `count` request/response exchanges of
/// `size` bytes, giving up after `limit`.
pub async fn tcp_ping(
    target: SocketAddr,
    count: u64,
    size: usize,
    limit: Duration,
) -> io::Result<PingReport> {
    let run = async {
        let mut stream = TcpStream::connect(target).await?;
        stream.set_nodelay(true)?;
        let mut report = PingReport::default();
        let payload = vec![0x5a; size.max(1)];
        let mut back = vec![0u8; payload.len()];
        for _ in 0..count {
            let start = Instant::now();
            stream.write_all(&payload).await?;
            report.sent += 1;
            stream.read_exact(&mut back).await?;
            report.received += 1;
            report.rtts.push(start.elapsed());
        }
        Ok(report)
    };
    tokio::time::timeout(limit, run)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "tcp ping timed out"))?
}
