//! Statistical and exact tests of the link model, on a virtual clock.
//!
//! Statistical bounds are five standard deviations of the estimator (computed from the
//! configured parameters, not tuned to a seed), so they hold for any seed with overwhelming
//! probability while still catching a model that is off by a few percent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

/// The virtual clock's origin. Tests never read the clock again: every later instant is derived.
#[allow(clippy::disallowed_methods)]
pub(crate) fn t0() -> Instant {
    Instant::now()
}

const SEED: u64 = 0x5eed;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn deliver_at(v: Verdict) -> Option<Instant> {
    match v {
        Verdict::Deliver { at, .. } => Some(at),
        Verdict::Drop(_) => None,
    }
}

/// Asserts |measured - expected| <= 5 σ.
fn assert_within_5_sigma(what: &str, measured: f64, expected: f64, sigma: f64) {
    let bound = 5.0 * sigma;
    assert!(
        (measured - expected).abs() <= bound,
        "{what}: measured {measured}, expected {expected} ± {bound}"
    );
}

#[test]
fn transparent_link_passes_everything_at_once() {
    let start = t0();
    let mut link = LinkModel::new(LinkConfig::default(), SEED, start);
    for i in 0..1000 {
        let now = start + ms(i);
        assert_eq!(
            link.submit(now, 1200),
            Verdict::Deliver {
                at: now,
                duplicate: None
            }
        );
    }
    assert_eq!(link.counters().sent, 1000);
    assert_eq!(link.counters().delayed, 0);
}

#[test]
fn random_loss_ratio() {
    let p = 0.01;
    let n = 200_000;
    let config = LinkConfig {
        loss: LossConfig {
            random: p,
            gilbert_elliott: None,
        },
        ..LinkConfig::default()
    };
    let start = t0();
    let mut link = LinkModel::new(config, SEED, start);
    for i in 0..n {
        link.submit(start + Duration::from_micros(i), 100);
    }
    let lost = link.counters().dropped_loss as f64;
    let sigma = (n as f64 * p * (1.0 - p)).sqrt();
    assert_within_5_sigma("lost packets", lost, n as f64 * p, sigma);
}

#[test]
fn gilbert_elliott_loss_ratio_and_burst_length() {
    let ge = GilbertElliott {
        p: 0.01,
        r: 0.25,
        one_minus_h: 1.0,
        one_minus_k: 0.0,
    };
    let n = 400_000u64;
    let config = LinkConfig {
        loss: LossConfig {
            random: 0.0,
            gilbert_elliott: Some(ge),
        },
        ..LinkConfig::default()
    };
    let start = t0();
    let mut link = LinkModel::new(config, SEED, start);
    let mut bursts = Vec::new();
    let mut run = 0u64;
    for i in 0..n {
        match link.submit(start + Duration::from_micros(i), 100) {
            Verdict::Drop(DropReason::Loss) => run += 1,
            _ if run > 0 => {
                bursts.push(run);
                run = 0;
            }
            _ => {}
        }
    }
    // Loss ratio of a two-state Markov chain: variance inflated by (1 + λ) / (1 − λ), λ = 1 − p − r.
    let pi = ge.expected_loss();
    let lambda = 1.0 - ge.p - ge.r;
    let sigma = (pi * (1.0 - pi) * (1.0 + lambda) / (1.0 - lambda) / n as f64).sqrt();
    let ratio = link.counters().dropped_loss as f64 / n as f64;
    assert_within_5_sigma("loss ratio", ratio, pi, sigma);
    // Bursts are geometric with mean 1/r and standard deviation sqrt(1 − r)/r.
    let mean_burst = bursts.iter().sum::<u64>() as f64 / bursts.len() as f64;
    let sigma = (1.0 - ge.r).sqrt() / ge.r / (bursts.len() as f64).sqrt();
    assert_within_5_sigma("mean burst length", mean_burst, 1.0 / ge.r, sigma);
}

fn delay_samples(jitter: Duration, distribution: JitterDistribution, n: u64) -> Vec<f64> {
    let config = LinkConfig {
        delay: DelayConfig {
            base: ms(100),
            jitter,
            distribution,
            ..DelayConfig::default()
        },
        ..LinkConfig::default()
    };
    let start = t0();
    let mut link = LinkModel::new(config, SEED, start);
    // Packets 50 ms apart, more than the jitter's spread, so order keeping never shifts one.
    (0..n)
        .map(|i| {
            let now = start + ms(50 * i);
            let at = deliver_at(link.submit(now, 100)).unwrap();
            (at - now).as_secs_f64() * 1e3
        })
        .collect()
}

fn mean_and_std(samples: &[f64]) -> (f64, f64) {
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

#[test]
fn uniform_jitter_distribution() {
    let n = 20_000;
    let samples = delay_samples(ms(10), JitterDistribution::Uniform, n);
    let (mean, std) = mean_and_std(&samples);
    let sigma = 10.0 / 3f64.sqrt();
    assert_within_5_sigma("mean delay (ms)", mean, 100.0, sigma / (n as f64).sqrt());
    // Uniform kurtosis is 1.8: the sample std has relative error sqrt(0.8 / n) / 2.
    assert_within_5_sigma(
        "delay std (ms)",
        std,
        sigma,
        sigma * (0.8 / n as f64).sqrt() / 2.0,
    );
    assert!(samples.iter().all(|d| (90.0..=110.0).contains(d)));
}

#[test]
fn normal_jitter_distribution() {
    let n = 20_000;
    let samples = delay_samples(ms(10), JitterDistribution::Normal, n);
    let (mean, std) = mean_and_std(&samples);
    assert_within_5_sigma("mean delay (ms)", mean, 100.0, 10.0 / (n as f64).sqrt());
    // Cut at ±3σ, a normal's standard deviation shrinks to 0.9866 σ.
    let expected = 10.0 * 0.9866;
    assert_within_5_sigma(
        "delay std (ms)",
        std,
        expected,
        expected * (2.0 / n as f64).sqrt() / 2.0,
    );
    assert!(samples.iter().all(|d| (70.0..=130.0).contains(d)));
}

#[test]
fn jitter_never_reorders() {
    let config = LinkConfig {
        delay: DelayConfig {
            base: ms(50),
            jitter: ms(20),
            ..DelayConfig::default()
        },
        ..LinkConfig::default()
    };
    let start = t0();
    let mut link = LinkModel::new(config, SEED, start);
    let times: Vec<Instant> = (0..10_000)
        .map(|i| deliver_at(link.submit(start + ms(i), 100)).unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn reordering_rate() {
    let p = 0.1;
    let n = 100_000u64;
    let config = LinkConfig {
        delay: DelayConfig {
            base: ms(50),
            reorder: p,
            ..DelayConfig::default()
        },
        ..LinkConfig::default()
    };
    let start = t0();
    let mut link = LinkModel::new(config, SEED, start);
    let times: Vec<Instant> = (0..n)
        .map(|i| deliver_at(link.submit(start + ms(i), 100)).unwrap())
        .collect();
    // A packet overtakes its predecessor when it is reordered and the predecessor is not.
    let inversions = times.windows(2).filter(|w| w[1] < w[0]).count() as f64;
    let q = p * (1.0 - p);
    let sigma = (n as f64 * q * (1.0 - q)).sqrt();
    assert_within_5_sigma("inversions", inversions, n as f64 * q, sigma);
}

#[test]
fn duplication_rate() {
    let p = 0.05;
    let n = 100_000u64;
    let config = LinkConfig {
        duplicate: p,
        ..LinkConfig::default()
    };
    let start = t0();
    let mut link = LinkModel::new(config, SEED, start);
    for i in 0..n {
        link.submit(start + ms(i), 100);
    }
    let sigma = (n as f64 * p * (1.0 - p)).sqrt();
    assert_within_5_sigma(
        "duplicates",
        link.counters().duplicated as f64,
        n as f64 * p,
        sigma,
    );
}

#[test]
fn rate_limit_delivers_exactly_the_configured_bytes_per_second() {
    let config = LinkConfig {
        capacity: Capacity::Rate(1_000_000),
        ..LinkConfig::default()
    };
    let start = t0();
    let mut link = LinkModel::new(config, SEED, start);
    // Offer 2 Mbit/s of 1000-byte packets for 5 s into an unbounded queue.
    let times: Vec<Instant> = (0..2500)
        .map(|i| deliver_at(link.submit(start + ms(4 * i), 1000)).unwrap())
        .collect();
    // Serialisation of 1000 bytes at 1 Mbit/s takes exactly 8 ms.
    assert!(times.windows(2).all(|w| w[1] - w[0] == ms(8)));
    for second in 1..10 {
        let lo = start + Duration::from_secs(second);
        let hi = lo + Duration::from_secs(1);
        let bytes = times.iter().filter(|&&t| t >= lo && t < hi).count() * 1000;
        assert_eq!(bytes, 125_000, "second {second}");
    }
    // Bufferbloat: the last packet waited about 5 s in the queue.
    let last_delay = times[2499] - (start + ms(4 * 2499));
    assert!(last_delay > Duration::from_millis(9990), "{last_delay:?}");
}

#[test]
fn queue_overflow_is_exact_and_bounds_the_delay() {
    let config = LinkConfig {
        capacity: Capacity::Rate(1_000_000),
        queue_bytes: Some(10_000),
        ..LinkConfig::default()
    };
    let start = t0();
    let mut link = LinkModel::new(config, SEED, start);
    let verdicts: Vec<Verdict> = (0..100).map(|_| link.submit(start, 1000)).collect();
    assert_eq!(
        verdicts
            .iter()
            .filter(|v| deliver_at(**v).is_some())
            .count(),
        10
    );
    assert_eq!(link.counters().dropped_queue, 90);
    assert_eq!(link.counters().queue_high_water, 10_000);
    // Sustained 2x overload: half gets through, and no packet waits longer than a full queue.
    let mut max_delay = Duration::ZERO;
    for i in 0..2000 {
        let now = start + Duration::from_secs(1) + ms(4 * i);
        if let Some(at) = deliver_at(link.submit(now, 1000)) {
            max_delay = max_delay.max(at - now);
        }
    }
    assert!(max_delay <= ms(80), "{max_delay:?}");
    let dropped = link.counters().dropped_queue - 90;
    assert!((990..=1010).contains(&dropped), "dropped {dropped}");
}

fn trace_link(text: &str) -> (LinkModel, Instant) {
    let trace = Arc::new(Trace::parse(text).unwrap());
    let config = LinkConfig {
        capacity: Capacity::Trace(trace),
        ..LinkConfig::default()
    };
    let start = t0();
    (LinkModel::new(config, SEED, start), start)
}

#[test]
fn trace_replay_follows_the_trace_and_repeats() {
    let (mut link, start) = trace_link("0\n0\n5\n10\n");
    let got: Vec<Duration> = (0..8)
        .map(|_| deliver_at(link.submit(start, 1500)).unwrap() - start)
        .collect();
    let want: Vec<Duration> = [0, 0, 5, 10, 10, 10, 15, 20].map(ms).to_vec();
    assert_eq!(got, want);
}

#[test]
fn trace_opportunities_carry_1500_bytes_and_idle_ones_are_wasted() {
    let (mut link, start) = trace_link("0\n5\n10\n");
    // Two 750-byte packets share one opportunity; a 3000-byte one needs two.
    assert_eq!(deliver_at(link.submit(start, 750)), Some(start));
    assert_eq!(deliver_at(link.submit(start, 750)), Some(start));
    assert_eq!(deliver_at(link.submit(start, 3000)), Some(start + ms(10)));
    // At 12 ms the queue is empty; the next opportunity is 15 ms (the repeat of 5 ms).
    assert_eq!(
        deliver_at(link.submit(start + ms(12), 100)),
        Some(start + ms(15))
    );
}

#[test]
fn trace_parse_errors() {
    assert!(matches!(
        Trace::parse(""),
        Err(crate::error::TraceError::Empty)
    ));
    assert!(matches!(
        Trace::parse("0\n"),
        Err(crate::error::TraceError::Empty)
    ));
    assert!(matches!(
        Trace::parse("5\n3\n"),
        Err(crate::error::TraceError::NotMonotonic { line: 2, ms: 3 })
    ));
    assert!(matches!(
        Trace::parse("1\nx\n"),
        Err(crate::error::TraceError::BadLine { line: 2, .. })
    ));
}

#[test]
fn recorded_trace_replays_exactly() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("traces/Verizon-LTE-short.down");
    let trace = Trace::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let trace = Arc::new(trace);
    let config = LinkConfig {
        capacity: Capacity::Trace(trace.clone()),
        ..LinkConfig::default()
    };
    let start = t0();
    let mut link = LinkModel::new(config, SEED, start);
    // Saturate: every opportunity of one and a half passes carries one full packet.
    let n = trace.len() as u64 * 3 / 2;
    for i in 0..n {
        let at = deliver_at(link.submit(start, 1500)).unwrap();
        assert_eq!(at - start, trace.opportunity_time(i), "packet {i}");
    }
    // Bytes delivered in one pass / its length = the trace's mean rate.
    let bits = trace.len() as f64 * 1500.0 * 8.0;
    assert!((bits / trace.period().as_secs_f64() - trace.mean_rate_bps()).abs() < 1.0);
}

#[test]
fn outage_windows_are_exact() {
    let config = LinkConfig {
        outages: OutageSchedule {
            periodic: Some(PeriodicOutage {
                every: ms(10_000),
                duration: ms(1000),
                offset: ms(2000),
            }),
            windows: vec![OutageWindow {
                start: ms(5000),
                duration: ms(500),
            }],
        },
        ..LinkConfig::default()
    };
    let start = t0();
    let mut link = LinkModel::new(config, SEED, start);
    for i in 0..60_000 {
        link.submit(start + ms(i), 100);
    }
    // Six periodic outages of 1000 packets, one window of 500.
    assert_eq!(link.counters().dropped_outage, 6500);
    // A triggered outage drops exactly the packets inside it.
    link.trigger_outage(start + ms(60_000), ms(250));
    for i in 60_000..61_000 {
        link.submit(start + ms(i), 100);
    }
    assert_eq!(link.counters().dropped_outage, 6750);
}

#[test]
fn exact_rules_count_their_hits() {
    let config = LinkConfig {
        rules: vec![
            Rule::DropFirst(5),
            Rule::DropEvery(10),
            Rule::DropBetween {
                from: ms(1000),
                to: ms(2000),
            },
        ],
        ..LinkConfig::default()
    };
    let start = t0();
    let mut link = LinkModel::new(config, SEED, start);
    let first = link.submit(start, 100);
    assert_eq!(first, Verdict::Drop(DropReason::Rule(0)));
    for i in 1..3000 {
        link.submit(start + ms(i), 100);
    }
    assert_eq!(link.rule_hits(), &[5, 300, 1000]);
    // Union: 5 + 300 + 1000 − 100 (every 10th inside the window).
    assert_eq!(link.counters().dropped_rule, 1205);
    assert_eq!(link.counters().sent, 3000 - 1205);
}

#[test]
fn mtu_drops_only_oversized_packets() {
    let config = LinkConfig {
        mtu: Some(1200),
        ..LinkConfig::default()
    };
    let start = t0();
    let mut link = LinkModel::new(config, SEED, start);
    assert!(deliver_at(link.submit(start, 1200)).is_some());
    assert_eq!(link.submit(start, 1201), Verdict::Drop(DropReason::Mtu));
}

#[test]
fn delay_steps_alternate_between_base_and_a_higher_level() {
    let step = DelayStep {
        every: ms(15_000),
        min: ms(15),
        max: ms(25),
    };
    let config = LinkConfig {
        delay: DelayConfig {
            base: ms(15),
            step: Some(step),
            ..DelayConfig::default()
        },
        ..LinkConfig::default()
    };
    let start = t0();
    let mut link = LinkModel::new(config, SEED, start);
    for interval in 0..20u64 {
        let now = start + ms(15_000 * interval + 7000);
        let delay = deliver_at(link.submit(now, 100)).unwrap() - now;
        if interval % 2 == 0 {
            assert_eq!(delay, ms(15));
        } else {
            assert!(
                (ms(30)..=ms(40)).contains(&delay),
                "interval {interval}: {delay:?}"
            );
        }
    }
}

#[test]
fn same_seed_same_run_different_seed_different_run() {
    let config = LinkConfig {
        loss: LossConfig {
            random: 0.1,
            gilbert_elliott: None,
        },
        delay: DelayConfig {
            base: ms(10),
            jitter: ms(5),
            ..DelayConfig::default()
        },
        ..LinkConfig::default()
    };
    let start = t0();
    let run = |seed| {
        let mut link = LinkModel::new(config.clone(), seed, start);
        (0..1000)
            .map(|i| link.submit(start + ms(i), 100))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn expected_loss_combines_independent_and_bursty_loss() {
    let config = LossConfig {
        random: 0.1,
        gilbert_elliott: Some(GilbertElliott {
            p: 0.1,
            r: 0.9,
            one_minus_h: 1.0,
            one_minus_k: 0.0,
        }),
    };
    // Bursty alone loses p / (p + r) = 10 %; a packet survives both with 0.9 × 0.9.
    assert!((config.expected_loss() - 0.19).abs() < 1e-9);
}
