//! The relay's own cost: added latency with an empty profile, and packets per second on one core.
//!
//! Run: `cargo bench -p outpost-netem --bench relay`
//!
//! The relay runs alone on a current-thread runtime in its own OS thread (one core). Latency is
//! ping-pong through the relay minus ping-pong direct. Throughput: a generator blasts 100-byte
//! datagrams with GSO (cheap for the generator), paced at a target rate or unpaced, through the
//! relay to a counting sink for a few seconds; we report what reached the sink per second of wall time, and per second of the
//! relay thread's CPU time (from /proc), which is what one core sustains.

#![allow(clippy::unwrap_used)] // Benchmark harness: a failed setup step should panic loudly.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use hdrhistogram::Histogram;
use outpost_netem::{Profile, Relay};
use quinn::udp::{Transmit, UdpSockRef, UdpSocketState};

const PING_COUNT: u64 = 20_000;
const BLAST_SECS: u64 = 3;
const SMALL: usize = 100;

fn now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// Starts a transparent relay on its own thread; returns its address and a stop flag.
fn spawn_relay(
    upstream: SocketAddr,
) -> (
    SocketAddr,
    Arc<AtomicBool>,
    std::thread::JoinHandle<(u64, f64)>,
) {
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let relay = Relay::bind(
                "127.0.0.1:0".parse().unwrap(),
                upstream,
                Profile::transparent(),
                1,
            )
            .await
            .unwrap();
            tx.send(relay.local_addr()).unwrap();
            let cpu0 = thread_cpu_secs();
            while !stop2.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let cpu = thread_cpu_secs() - cpu0;
            let counters = relay.shutdown().await;
            (counters.up.sent, cpu)
        })
    });
    (rx.recv().unwrap(), stop, thread)
}

/// User + system CPU time of the calling thread, from /proc (10 ms resolution).
fn thread_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after_comm = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields after the command: state is [0], utime is [11], stime is [12].
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|x| x.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

fn echo_thread() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((len, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..len], from);
        }
    });
    addr
}

fn ping_histogram(target: SocketAddr) -> Histogram<u64> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).unwrap();
    let mut buf = [0u8; 2048];
    for i in 0..PING_COUNT {
        let start = now();
        socket.send_to(&i.to_be_bytes(), target).unwrap();
        if socket.recv_from(&mut buf).is_ok() {
            hist.record(start.elapsed().as_nanos() as u64).unwrap();
        }
    }
    hist
}

fn us(hist: &Histogram<u64>, q: f64) -> f64 {
    hist.value_at_quantile(q) as f64 / 1e3
}

fn latency() {
    let echo = echo_thread();
    let direct = ping_histogram(echo);
    let (relay_addr, stop, thread) = spawn_relay(echo);
    let relayed = ping_histogram(relay_addr);
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
    println!("| round trip (µs), {PING_COUNT} pings | p50 | p99 |");
    println!("|---|---|---|");
    println!(
        "| direct (loopback) | {:.1} | {:.1} |",
        us(&direct, 0.5),
        us(&direct, 0.99)
    );
    println!(
        "| through relay, transparent | {:.1} | {:.1} |",
        us(&relayed, 0.5),
        us(&relayed, 0.99)
    );
    println!(
        "| added by the relay (both directions) | {:.1} | {:.1} |",
        us(&relayed, 0.5) - us(&direct, 0.5),
        us(&relayed, 0.99) - us(&direct, 0.99)
    );
}

fn throughput(size: usize, rate: Option<u64>) {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let received2 = received.clone();
    let sink_thread = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut idle = 0;
        while idle < 10 {
            match sink.recv_from(&mut buf) {
                Ok(_) => {
                    idle = 0;
                    received2.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => idle += 1,
            }
        }
    });
    let (relay_addr, stop, relay_thread) = spawn_relay(sink_addr);
    let generator = UdpSocket::bind("127.0.0.1:0").unwrap();
    let state = UdpSocketState::new(UdpSockRef::from(&generator)).unwrap();
    let segments = state.max_gso_segments().clamp(1, 32);
    let batch = vec![0x42u8; size * segments];
    let start = now();
    let mut offered = 0u64;
    let counted_from = received.load(Ordering::Relaxed);
    while start.elapsed() < Duration::from_secs(BLAST_SECS) {
        if let Some(rate) = rate {
            // Paced: hold back until this batch is due.
            let due = start + Duration::from_secs_f64(offered as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(now()) {
                std::thread::sleep(wait);
            }
        }
        let transmit = Transmit {
            destination: relay_addr,
            ecn: None,
            contents: &batch,
            segment_size: (segments > 1).then_some(size),
            src_ip: None,
        };
        if state
            .try_send(UdpSockRef::from(&generator), &transmit)
            .is_ok()
        {
            offered += segments as u64;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let delivered = received.load(Ordering::Relaxed) - counted_from;
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (relayed, cpu) = relay_thread.join().unwrap();
    sink_thread.join().unwrap();
    println!(
        "| {size} B | {} | {:.0} | {:.0} | {:.0} | {:.0}% |",
        rate.map_or("unpaced".to_owned(), |r| r.to_string()),
        offered as f64 / wall,
        delivered as f64 / wall,
        relayed as f64 / cpu.max(0.01),
        cpu / wall * 100.0
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; nothing to list.
    }
    println!("## outpost-netem relay cost (transparent profile)\n");
    latency();
    println!();
    println!("| datagram | target (pkt/s) | offered (pkt/s) | delivered (pkt/s) | relayed per CPU-second of the relay thread | relay thread CPU |");
    println!("|---|---|---|---|---|---|");
    for rate in [Some(100_000), Some(150_000), Some(200_000), None] {
        throughput(SMALL, rate);
    }
    throughput(1200, Some(100_000));
}
