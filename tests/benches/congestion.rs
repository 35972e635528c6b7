//! Congestion controllers on emulated links: one 10 MB QUIC stream from the hub side to the device
//! side (the profile's `down` direction) and one the other way (`up`), each controller, each profile.
//! Both endpoints are in this process; the device's socket is wrapped by the netem decorator, so
//! the link is exactly the profile. Run by hand:
//!
//! ```sh
//! cargo bench -p outpost-tests --bench congestion -- --profiles geo-satellite,lte --size-mb 10
//! ```
//!
//! `--directions down` skips the upload (`up,down` runs it first); `--warm-s N` first keeps the connection mostly idle for
//! N seconds with a small exchange every few seconds, as the product's long-lived hub ↔ agent
//! connection is when a transfer starts; `--trace-ms N` prints the hub's congestion window (and,
//! during an upload, the sending device's beside it), round
//! trip, losses, the delivery-rate controller's decisions (startup exit, outages, resumes) and the
//! emulated link's drops each way by cause every N ms during the transfers (where the time goes,
//! and whether a stall is the link's or the sender's); `--transfers N` runs
//! the download N times on the same connection, each after the warm-up (the later ones show what
//! the controller remembers across idle periods); `--initial-window BYTES` overrides the hub's
//! initial congestion window (the transport profile's otherwise); `--outage-s N` takes the link
//! down for N seconds halfway through each download.
#![allow(clippy::disallowed_methods)] // wall-clock measurement of real transfers
#![allow(clippy::unwrap_used)] // bench code: a panic is the failure report

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost_netem::control::Controllable;
use outpost_netem::model::{Capacity, LinkConfig};
use outpost_netem::socket::NetemSocketControl;
use outpost_netem::{NetemSocket, Profile, Side};
use outpost_protocol::agent_session::SILENCE_PROBE;
use outpost_transport::congestion::{delivery_rate_of, Controller};
use outpost_transport::profile::{self, Role, TransportProfile};
use quinn::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use quinn::{ClientConfig, Endpoint, RecvStream, SendStream, ServerConfig};

/// The warm-up's answer: about a `docker ps` reply.
const WARM_ANSWER: usize = 2048;
/// Between the warm-up's exchanges.
const WARM_GAP: Duration = Duration::from_secs(3);

struct Options {
    profiles: Vec<String>,
    controllers: Vec<Controller>,
    size: usize,
    timeout: Duration,
    seed: u64,
    down: bool,
    up: bool,
    /// The upload runs before the downloads (`--directions up,down`), as in the link bench,
    /// where `docker save` comes before `docker load`.
    up_first: bool,
    warm: Duration,
    trace: Option<Duration>,
    transfers: usize,
    /// Overrides the transport profile's initial window on the hub side.
    initial_window: Option<u64>,
    /// An outage of this long in each download once the device has received half of it.
    outage: Option<Duration>,
}

fn options() -> Options {
    let mut options = Options {
        profiles: [
            "lte",
            "leo-satellite",
            "geo-satellite",
            "3g",
            "flaky-cellular",
            "edge-2g",
        ]
        .map(String::from)
        .to_vec(),
        controllers: Controller::ALL.to_vec(),
        size: 10 << 20,
        timeout: Duration::from_secs(120),
        seed: 7,
        down: true,
        up: true,
        up_first: false,
        warm: Duration::ZERO,
        trace: None,
        transfers: 1,
        initial_window: None,
        outage: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--profiles" => options.profiles = value.split(',').map(String::from).collect(),
            "--controllers" => {
                options.controllers = value
                    .split(',')
                    .map(|name| Controller::by_name(name).expect("unknown controller"))
                    .collect()
            }
            "--size-mb" => options.size = value.parse::<usize>().expect("--size-mb N") << 20,
            "--timeout" => options.timeout = Duration::from_secs(value.parse().expect("seconds")),
            "--seed" => options.seed = value.parse().expect("--seed N"),
            "--directions" => {
                options.down = value.split(',').any(|d| d == "down");
                options.up = value.split(',').any(|d| d == "up");
                options.up_first = value.starts_with("up");
            }
            "--initial-window" => {
                options.initial_window = Some(value.parse().expect("--initial-window BYTES"))
            }
            "--transfers" => options.transfers = value.parse().expect("--transfers N"),
            "--outage-s" => {
                options.outage = Some(Duration::from_secs(value.parse().expect("--outage-s N")))
            }
            "--warm-s" => options.warm = Duration::from_secs(value.parse().expect("seconds")),
            "--trace-ms" => {
                options.trace = Some(Duration::from_millis(value.parse().expect("--trace-ms N")))
            }
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    options
}

fn tls(
    transport: &TransportProfile,
    controller: Controller,
    hub_initial_window: u64,
) -> (ServerConfig, ClientConfig) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
    let mut server = ServerConfig::with_single_cert(vec![der.clone()], key).unwrap();
    let mut hub = Arc::try_unwrap(transport.transport_config(Role::Hub)).unwrap();
    // The windows a summoned agent's connection is granted (the hub starts every connection at
    // standby windows).
    hub.max_concurrent_bidi_streams(4u32.into())
        .receive_window(transport.connection_window.into())
        .send_window(transport.send_window.into());
    controller.apply(&mut hub, hub_initial_window, None);
    server.transport_config(Arc::new(hub));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let mut client = ClientConfig::with_root_certificates(Arc::new(roots)).unwrap();
    let mut agent = Arc::try_unwrap(transport.transport_config(Role::Agent)).unwrap();
    agent.max_concurrent_bidi_streams(4u32.into());
    controller.apply(&mut agent, transport.initial_window(Role::Agent), None);
    client.transport_config(Arc::new(agent));
    (server, client)
}

/// When the bulk transfer on a connection began, while one runs: what `--trace-ms` reports against.
type Busy = Arc<Mutex<Option<Instant>>>;

/// Serves each incoming stream: a 1-byte request says which way the bulk goes (`d`own, `u`p), or
/// asks for a small answer (`p`, the warm-up's exchanges).
fn server(
    config: ServerConfig,
    size: usize,
    trace: Option<(Duration, NetemSocketControl)>,
) -> (Endpoint, SocketAddr) {
    let server = Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr().unwrap();
    let accept = server.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accept.accept().await {
            let trace = trace.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                let busy = Busy::default();
                if let Some((every, link)) = trace {
                    tokio::spawn(trace_path(conn.clone(), busy.clone(), every, link));
                }
                while let Ok((send, recv)) = conn.accept_bi().await {
                    tokio::spawn(serve_stream(send, recv, size, busy.clone()));
                }
            });
        }
    });
    (server, addr)
}

async fn serve_stream(mut send: SendStream, mut recv: RecvStream, size: usize, busy: Busy) {
    let mut what = [0u8; 1];
    if recv.read_exact(&mut what).await.is_err() {
        return;
    }
    match what[0] {
        b'd' => {
            *busy.lock().unwrap() = Some(Instant::now());
            let chunk = vec![0x5a; 64 * 1024];
            let mut left = size;
            while left > 0 {
                let n = left.min(chunk.len());
                if send.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
                left -= n;
            }
        }
        b'u' => {
            *busy.lock().unwrap() = Some(Instant::now());
            let got = recv.read_to_end(usize::MAX).await.unwrap_or_default();
            let _ = send.write_all(&(got.len() as u64).to_be_bytes()).await;
        }
        _ => {
            let _ = send.write_all(&[0x33; WARM_ANSWER]).await;
        }
    }
    let _ = send.finish();
    let _ = send.stopped().await;
    *busy.lock().unwrap() = None;
}

/// A sender's path every `every` while its bulk transfer runs: time into the transfer, window,
/// bytes sent, round trip, losses, and what the emulated link dropped each way and why (burst
/// loss, outage, a full queue), so a stall can be told from the link's doing or the sender's.
async fn trace_path(
    conn: quinn::Connection,
    busy: Busy,
    every: Duration,
    link: NetemSocketControl,
) {
    while conn.close_reason().is_none() {
        tokio::time::sleep(every).await;
        let Some(start) = *busy.lock().unwrap() else {
            continue;
        };
        let stats = conn.stats();
        eprintln!(
            "  t={:>5.2}s cwnd={:>8} sent={:>9} rtt={:>4}ms min_rtt={:>4}ms lost={:>4} events={}{}{}",
            start.elapsed().as_secs_f64(),
            stats.path.cwnd,
            stats.udp_tx.bytes,
            stats.path.rtt.as_millis(),
            stats.path.min_rtt.as_millis(),
            stats.path.lost_packets,
            stats.path.congestion_events,
            decisions(&conn),
            link_drops(&link),
        );
    }
}

/// The emulated link's drops so far, down then up: (burst) loss, outage, queue overflow.
fn link_drops(link: &NetemSocketControl) -> String {
    let counters = link.counters();
    let (down, up) = (counters.down, counters.up);
    format!(
        " link down loss/outage/queue={}/{}/{} up={}/{}/{}",
        down.dropped_loss,
        down.dropped_outage,
        down.dropped_queue,
        up.dropped_loss,
        up.dropped_outage,
        up.dropped_queue
    )
}

/// The delivery-rate controller's decisions, for `--trace-ms`: why startup ended, searches for
/// the rate, outages,
/// resumes (refused, retreated), the last resume's lent and measured rates, and silences with the
/// recovery after the last.
fn decisions(conn: &quinn::Connection) -> String {
    let Some(controller) = delivery_rate_of(conn) else {
        return String::new();
    };
    let resume = controller.resume_stats();
    let last = resume.last.map_or(String::new(), |last| {
        format!(
            " last={:?} lent={}B/s measured={}B/s rounds={}",
            last.kind, last.lent, last.measured, last.rounds
        )
    });
    let silences = controller.silence_stats();
    let silence = silences.last.map_or(String::new(), |last| {
        format!(
            " last_silence={:?} before={}B/s after={}B/s rounds={}",
            last.length, last.before, last.after, last.rounds
        )
    });
    format!(
        " exit={:?} searches={} outages={} resumed={} refused={} retreated={}{last} silences={}{silence}",
        controller.startup_exit(),
        controller.searches(),
        resume.outages,
        resume.resumed,
        resume.refused,
        resume.retreated,
        silences.silences,
    )
}

/// The product's hub ↔ agent connection before a transfer: mostly idle, a small exchange (a
/// check-in, a `docker ps`) every few seconds.
async fn warm_up(conn: &quinn::Connection, warm: Duration) {
    let start = Instant::now();
    while start.elapsed() < warm {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(b"p").await.unwrap();
        send.finish().unwrap();
        let got = recv.read_to_end(WARM_ANSWER).await.unwrap();
        assert_eq!(got.len(), WARM_ANSWER);
        tokio::time::sleep(WARM_GAP.min(warm.saturating_sub(start.elapsed()))).await;
    }
}

/// The device's side of the agent's silence check-ins (`outpost_protocol::agent_session`): with a
/// transfer running and no stream frame received for a second, send a datagram (then after 2, 4, 8
/// and 16 s of silence), so that a NAT that rebound under a download learns the new mapping and
/// the hub the new address, as the agent's check-in does in the product.
async fn check_in_when_silent(conn: quinn::Connection) {
    let mut seen = conn.stats().frame_rx.stream;
    let mut wait = SILENCE_PROBE;
    loop {
        tokio::time::sleep(wait).await;
        let now = conn.stats().frame_rx.stream;
        if now == seen {
            let _ = conn.send_datagram(b"check-in".to_vec().into());
            wait = (wait * 2).min(SILENCE_PROBE * 16);
        } else {
            seen = now;
            wait = SILENCE_PROBE;
        }
    }
}

/// Take the link down for `length` once the device has received half of a `size` download.
async fn outage_halfway(
    conn: quinn::Connection,
    link: NetemSocketControl,
    size: usize,
    length: Duration,
) {
    let from = conn.stats().udp_rx.bytes;
    while conn.stats().udp_rx.bytes < from + size as u64 / 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("  outage of {length:?} now");
    link.outage(length);
}

async fn transfer(conn: &quinn::Connection, down: bool, size: usize) -> Duration {
    let silence = tokio::spawn(check_in_when_silent(conn.clone()));
    let took = transfer_timed(conn, down, size).await;
    silence.abort();
    took
}

async fn transfer_timed(conn: &quinn::Connection, down: bool, size: usize) -> Duration {
    let start = Instant::now();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    if down {
        send.write_all(b"d").await.unwrap();
        send.finish().unwrap();
        let got = recv.read_to_end(usize::MAX).await.unwrap();
        assert_eq!(got.len(), size);
    } else {
        send.write_all(b"u").await.unwrap();
        let chunk = vec![0xa5; 64 * 1024];
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len());
            send.write_all(&chunk[..n]).await.unwrap();
            left -= n;
        }
        send.finish().unwrap();
        let got = recv.read_to_end(8).await.unwrap();
        assert_eq!(u64::from_be_bytes(got.try_into().unwrap()), size as u64);
    }
    start.elapsed()
}

/// One controller on one profile: both transfers and what the device's path saw.
struct Outcome {
    /// One per `--transfers`.
    down: Vec<Option<Duration>>,
    up: Option<Duration>,
    /// Path MTU at the end and MTU black holes declared (loss misread as an MTU limit).
    mtu: u16,
    black_holes: u64,
}

async fn run_one(profile: &Profile, controller: Controller, options: &Options) -> Outcome {
    let transport = transport_for(profile_rtt(profile));
    let initial_window = options
        .initial_window
        .unwrap_or(transport.initial_window(Role::Hub));
    let (server_config, client_config) = tls(&transport, controller, initial_window);
    let socket = NetemSocket::bind(
        "127.0.0.1:0".parse().unwrap(),
        profile,
        Side::Device,
        options.seed,
    )
    .unwrap();
    let link = socket.control();
    let trace = options.trace.map(|every| (every, link.clone()));
    let (server_endpoint, server_addr) = server(server_config, options.size, trace);
    let client = socket.client_endpoint(client_config).unwrap();
    let conn = tokio::time::timeout(options.timeout, async {
        client.connect(server_addr, "localhost").unwrap().await
    })
    .await
    .unwrap()
    .unwrap();
    // The upload's sender is the device: its path is traced from when the upload starts.
    let uploading = Busy::default();
    if let (Some(every), true) = (options.trace, options.up) {
        tokio::spawn(trace_path(
            conn.clone(),
            uploading.clone(),
            every,
            link.clone(),
        ));
    }
    let upload = || async {
        *uploading.lock().unwrap() = Some(Instant::now());
        let took = tokio::time::timeout(options.timeout, transfer(&conn, false, options.size))
            .await
            .ok();
        *uploading.lock().unwrap() = None;
        took
    };
    let mut up = None;
    if options.up && options.up_first {
        up = upload().await;
    }
    let mut down = Vec::new();
    if options.down {
        for _ in 0..options.transfers {
            warm_up(&conn, options.warm).await;
            let outage = options.outage.map(|length| {
                tokio::spawn(outage_halfway(
                    conn.clone(),
                    link.clone(),
                    options.size,
                    length,
                ))
            });
            let took = tokio::time::timeout(options.timeout, transfer(&conn, true, options.size));
            down.push(took.await.ok());
            if let Some(outage) = outage {
                outage.abort();
            }
        }
    }
    if options.up && !options.up_first {
        up = upload().await;
    }
    let path = conn.stats().path;
    conn.close(0u32.into(), b"done");
    server_endpoint.close(0u32.into(), b"done");
    Outcome {
        down,
        up,
        mtu: path.current_mtu,
        black_holes: path.black_holes_detected,
    }
}

fn profile_rtt(profile: &Profile) -> Duration {
    profile.up.delay.base + profile.down.delay.base
}

/// The transport profile an agent on this link would pick.
fn transport_for(rtt: Duration) -> TransportProfile {
    if rtt >= Duration::from_millis(400) {
        profile::SATELLITE
    } else if rtt >= Duration::from_millis(20) {
        profile::CELLULAR
    } else {
        profile::LAN
    }
}

fn link_rate(link: &LinkConfig) -> Option<u64> {
    match link.capacity {
        Capacity::Rate(bits) => Some(bits),
        _ => None,
    }
}

fn rate_bits(rate: Option<u64>) -> String {
    rate.map_or("unlimited".into(), |r| {
        format!("{:.1} Mbit/s", r as f64 / 1e6)
    })
}

/// The downloads in order, `-` when none ran.
fn downs(downs: &[Option<Duration>], size: usize) -> String {
    if downs.is_empty() {
        return "-".into();
    }
    let cells: Vec<String> = downs.iter().map(|d| cell(*d, true, size)).collect();
    cells.join(", then ")
}

fn cell(elapsed: Option<Duration>, ran: bool, size: usize) -> String {
    match elapsed {
        None if !ran => "-".into(),
        Some(d) => format!(
            "{:>6.2} s {:>5.2} Mbit/s",
            d.as_secs_f64(),
            size as f64 * 8.0 / d.as_secs_f64() / 1e6
        ),
        None => "timeout".into(),
    }
}

fn ideal(size: usize, rate: Option<u64>, rtt: Duration) -> String {
    match rate {
        Some(bits) => format!(
            "{:.2} s",
            size as f64 * 8.0 / bits as f64 + rtt.as_secs_f64()
        ),
        None => "-".into(),
    }
}

#[tokio::main]
async fn main() {
    let options = options();
    println!(
        "| profile | down / up rate | controller | down {} MB | up {} MB | ideal down / up | device MTU / black holes |",
        options.size >> 20,
        options.size >> 20
    );
    println!("|---|---|---|---|---|---|---|");
    for name in &options.profiles {
        let profile = Profile::load(name).unwrap();
        for &controller in &options.controllers {
            let outcome = run_one(&profile, controller, &options).await;
            println!(
                "| {name} | {} / {} | {} | {} | {} | {} / {} | {} / {} |",
                rate_bits(link_rate(&profile.down)),
                rate_bits(link_rate(&profile.up)),
                controller.name(),
                downs(&outcome.down, options.size),
                cell(outcome.up, options.up, options.size),
                ideal(
                    options.size,
                    link_rate(&profile.down),
                    profile_rtt(&profile)
                ),
                ideal(options.size, link_rate(&profile.up), profile_rtt(&profile)),
                outcome.mtu,
                outcome.black_holes,
            );
        }
    }
}
