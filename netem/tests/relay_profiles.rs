//! A device pings a hub through the relay under each shipped profile, and sees the round-trip
//! time and loss the profile promises.

#![allow(clippy::unwrap_used)] // Test code: a failed setup step should panic loudly.

use std::net::SocketAddr;
use std::time::Duration;

use outpost_netem::model::{Capacity, LinkConfig};
use outpost_netem::probe::{udp_echo, udp_ping, PingReport};
use outpost_netem::{Profile, Relay};
use tokio::net::UdpSocket;

const PROBES: u64 = 400;
const INTERVAL: Duration = Duration::from_millis(10);
const PROBE_BYTES: usize = 100;
const SEED: u64 = 7;

/// Expected one-way loss of a direction (random combined with Gilbert–Elliott), and the factor by
/// which burstiness inflates the standard deviation of a loss count.
fn one_way_loss(link: &LinkConfig) -> (f64, f64) {
    let ge = link.loss.gilbert_elliott;
    let ge_loss = ge.map_or(0.0, |g| g.expected_loss());
    let inflation = ge.map_or(1.0, |g| {
        let lambda = 1.0 - g.p - g.r;
        ((1.0 + lambda) / (1.0 - lambda)).sqrt()
    });
    (1.0 - (1.0 - link.loss.random) * (1.0 - ge_loss), inflation)
}

fn serialisation(link: &LinkConfig) -> Duration {
    match link.capacity {
        Capacity::Rate(bps) => Duration::from_secs_f64(PROBE_BYTES as f64 * 8.0 / bps as f64),
        _ => Duration::ZERO,
    }
}

async fn measure(profile: Profile) -> PingReport {
    let hub = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let hub_addr = hub.local_addr().unwrap();
    let echo = tokio::spawn(udp_echo(hub));
    let relay = Relay::bind(
        "127.0.0.1:0".parse().unwrap(),
        hub_addr,
        profile.clone(),
        SEED,
    )
    .await
    .unwrap();
    let device = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let wait = (profile.up.delay.base + profile.down.delay.base) * 2 + Duration::from_millis(500);
    let report = udp_ping(
        &device,
        relay.local_addr(),
        PROBES,
        INTERVAL,
        PROBE_BYTES,
        wait,
    )
    .await
    .unwrap();
    let counters = relay.shutdown().await;
    echo.abort();
    println!("{:<15} {report}\n{counters}", profile.name);
    report
}

fn check(profile: &Profile, report: &PingReport) {
    let name = &profile.name;
    let (up, down) = (&profile.up, &profile.down);
    // RTT: the two base delays plus serialisation; jitter spreads it, order keeping can only add.
    let base = up.delay.base + down.delay.base + serialisation(up) + serialisation(down);
    let jitter = up.delay.jitter + down.delay.jitter;
    let traced = matches!(up.capacity, Capacity::Trace(_));
    let slack = Duration::from_millis(if traced { 250 } else { 25 });
    let p50 = report.quantile(0.5).expect("some probes answered");
    let min = report.quantile(0.0).unwrap();
    assert!(
        p50 + jitter >= base,
        "{name}: median RTT {p50:?} below {base:?} − {jitter:?}"
    );
    assert!(
        p50 <= base + 2 * jitter + slack,
        "{name}: median RTT {p50:?} above {base:?} + 2×{jitter:?} + slack"
    );
    assert!(
        min + 3 * jitter + Duration::from_millis(1) >= base,
        "{name}: min RTT {min:?} too low"
    );
    // Loss: a probe survives both directions; 5 σ of a binomial count, inflated for bursts.
    let (l_up, i_up) = one_way_loss(up);
    let (l_down, i_down) = one_way_loss(down);
    let p = 1.0 - (1.0 - l_up) * (1.0 - l_down);
    let n = report.sent as f64;
    let sigma = (n * p * (1.0 - p)).sqrt() * i_up.max(i_down);
    let lost = (report.sent - report.received) as f64;
    assert!(
        (lost - n * p).abs() <= 5.0 * sigma + 1.0,
        "{name}: lost {lost} of {n}, expected {:.1} ± {:.1}",
        n * p,
        5.0 * sigma + 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_profile_has_its_rtt_and_loss() {
    let dir = outpost_netem::profile::profiles_dir().unwrap();
    let mut profiles = Vec::new();
    for name in outpost_netem::profile::list(&dir).unwrap() {
        let profile = Profile::load_from(&dir, &name).unwrap_or_else(|e| panic!("{name}: {e}"));
        profiles.push(profile);
    }
    assert!(
        profiles.len() >= 7,
        "expected the shipped profiles, found {}",
        profiles.len()
    );
    // All profiles at once: the test takes as long as the slowest link.
    let runs: Vec<_> = profiles
        .iter()
        .cloned()
        .map(|p| tokio::spawn(measure(p)))
        .collect();
    let mut reports = Vec::new();
    for run in runs {
        reports.push(run.await.unwrap());
    }
    for (profile, report) in profiles.iter().zip(&reports) {
        check(profile, report);
    }
}

#[tokio::test]
async fn relay_is_transparent_with_the_empty_profile() {
    let hub = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let hub_addr: SocketAddr = hub.local_addr().unwrap();
    let echo = tokio::spawn(udp_echo(hub));
    let relay = Relay::bind(
        "127.0.0.1:0".parse().unwrap(),
        hub_addr,
        Profile::transparent(),
        1,
    )
    .await
    .unwrap();
    let device = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let report = udp_ping(
        &device,
        relay.local_addr(),
        200,
        Duration::from_millis(1),
        1200,
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    assert_eq!(report.received, 200, "{report}");
    assert!(
        report.quantile(0.5).unwrap() < Duration::from_millis(5),
        "{report}"
    );
    echo.abort();
}
