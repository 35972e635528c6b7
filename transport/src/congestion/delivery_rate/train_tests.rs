//! The burst train's reading on the emulated GEO link: netem's model of both directions (the
//! `geo-satellite` profile: 20 Mbit/s down, 2 Mbit/s up, ±10 ms jitter per packet that never
//! reorders), a receiver that acks every second packet and is now and then busy for up to
//! 20 ms (a two-core device also decrypting the burst), and the train the satellite profile's
//! first window sends. Loss is left out: it changes which acks come, not their spacing.

use std::time::Duration;

use outpost_netem::model::{Capacity, LinkModel, LossConfig, Verdict as Link};
use outpost_netem::Profile;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::tests::origin;
use super::train::{Train, Verdict};
use crate::profile::SATELLITE_HUB_INITIAL_WINDOW;

const PACKET: usize = 1200;
const ACK: usize = 60;
/// A busy spell starts at a packet's arrival with this chance (about every 30 ms at the
/// link's two packets a millisecond) ...
const BUSY_CHANCE: f64 = 1.0 / 60.0;
/// ... and lasts up to this long.
const BUSY_MAX: Duration = Duration::from_millis(20);

/// The train's reading over one seed's link, as a share of the link's rate (`None`: no verdict
/// or no bottleneck found).
fn reading(seed: u64) -> Option<f64> {
    let profile = Profile::load("geo-satellite").expect("the geo-satellite profile");
    let (mut down, mut up) = (profile.down, profile.up);
    let Capacity::Rate(bits_per_second) = down.capacity else {
        panic!("the GEO profile's downlink has a constant rate");
    };
    let link_rate = bits_per_second as f64 / 8.0;
    down.loss = LossConfig::default();
    up.loss = LossConfig::default();
    let epoch = origin();
    let mut down = LinkModel::new(down, seed, epoch);
    let mut up = LinkModel::new(up, seed ^ 0x5eed, epoch);
    let mut receiver = StdRng::seed_from_u64(seed);
    let packets = SATELLITE_HUB_INITIAL_WINDOW as usize / PACKET;
    let mut train = Train::new(SATELLITE_HUB_INITIAL_WINDOW);
    let mut handled = Vec::with_capacity(packets);
    let mut busy_until = epoch;
    for _ in 0..packets {
        train.on_sent(epoch, PACKET as u64);
        let Link::Deliver { at, .. } = down.submit(epoch, PACKET) else {
            panic!("a lossless link with room in its queue delivers");
        };
        if at >= busy_until && receiver.random_bool(BUSY_CHANCE) {
            busy_until = at + BUSY_MAX.mul_f64(receiver.random());
        }
        handled.push(at.max(busy_until));
    }
    let mut verdict = None;
    for pair in handled.chunks(2) {
        let acked_at = pair[pair.len() - 1];
        let Link::Deliver { at, .. } = up.submit(acked_at, ACK) else {
            panic!("a lossless link with room in its queue delivers");
        };
        for _ in pair {
            verdict = verdict.or(train.on_ack(at, epoch, PACKET as u64));
        }
    }
    match verdict? {
        Verdict::Bottleneck(rate) => Some(rate as f64 / link_rate),
        _ => None,
    }
}

#[test]
fn a_train_over_jitter_that_bunches_acks_reads_near_the_link() {
    let mut readings: Vec<f64> = (0..500).filter_map(reading).collect();
    assert!(readings.len() >= 490, "{} verdicts of 500", readings.len());
    readings.sort_by(f64::total_cmp);
    let at = |share: f64| readings[((readings.len() - 1) as f64 * share) as usize];
    let (median, tail, worst) = (at(0.5), at(0.99), at(1.0));
    println!("reading ÷ link: median {median:.2}, 99th percentile {tail:.2}, worst {worst:.2}");
    assert!((0.8..=1.1).contains(&median), "median {median:.2}");
    assert!(tail <= 2.0, "99th percentile {tail:.2}");
    assert!(worst <= 3.0, "worst {worst:.2}");
}
