//! Random loss: independent (Bernoulli) and bursty (Gilbert–Elliott).
//!
//! Cellular and satellite loss comes in bursts (fades, handovers), and a transport that survives
//! 1 % independent loss can still stall on 1 % loss in bursts of ten. The Gilbert–Elliott model
//! has a Good and a Bad state; its parameters are those of tc-netem's `loss gemodel p r 1-h 1-k`,
//! so numbers from the literature and from field rigs carry over unchanged:
//! - `p`: probability of moving Good → Bad at a packet,
//! - `r`: probability of moving Bad → Good at a packet,
//! - `1-h`: loss probability in the Bad state (1 for the plain Gilbert model),
//! - `1-k`: loss probability in the Good state (0 for the plain Gilbert model).
//!
//! With the plain model the loss ratio is `p / (p + r)` and bursts last `1 / r` packets on average.

use rand::Rng;

/// Gilbert–Elliott parameters, named as in tc-netem.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    /// Good → Bad transition probability per packet.
    pub p: f64,
    /// Bad → Good transition probability per packet.
    pub r: f64,
    /// Loss probability in the Bad state (`1-h`).
    pub one_minus_h: f64,
    /// Loss probability in the Good state (`1-k`).
    pub one_minus_k: f64,
}

impl GilbertElliott {
    /// The long-run loss ratio these parameters produce.
    pub fn expected_loss(&self) -> f64 {
        if self.p + self.r == 0.0 {
            return self.one_minus_k;
        }
        let bad = self.p / (self.p + self.r);
        bad * self.one_minus_h + (1.0 - bad) * self.one_minus_k
    }
}

/// Loss settings for one direction; both kinds may be combined.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LossConfig {
    /// Independent loss probability per packet.
    pub random: f64,
    /// Optional bursty loss.
    pub gilbert_elliott: Option<GilbertElliott>,
}

impl LossConfig {
    /// The long-run share of packets lost: independent and bursty loss combined.
    pub fn expected_loss(&self) -> f64 {
        let bursty = self.gilbert_elliott.map_or(0.0, |ge| ge.expected_loss());
        1.0 - (1.0 - self.random) * (1.0 - bursty)
    }
}

/// The Markov chain's state, kept across packets.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LossState {
    bad: bool,
}

impl LossState {
    /// Decides whether this packet is lost, advancing the Gilbert–Elliott chain.
    pub(crate) fn lose(&mut self, config: &LossConfig, rng: &mut impl Rng) -> bool {
        let mut lost = false;
        if let Some(ge) = &config.gilbert_elliott {
            let loss_here = if self.bad {
                ge.one_minus_h
            } else {
                ge.one_minus_k
            };
            lost = chance(rng, loss_here);
            let leave = if self.bad { ge.r } else { ge.p };
            if chance(rng, leave) {
                self.bad = !self.bad;
            }
        }
        lost | chance(rng, config.random)
    }
}

/// True with probability `p`, without drawing from the RNG when `p` is 0 or 1 (so a transparent
/// link costs no random numbers and adding a rule does not shift other draws).
pub(crate) fn chance(rng: &mut impl Rng, p: f64) -> bool {
    if p <= 0.0 {
        false
    } else if p >= 1.0 {
        true
    } else {
        rng.random::<f64>() < p
    }
}
