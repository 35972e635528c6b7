//! A windowed maximum over rounds: the bottleneck rate is the largest sample of the last few
//! busy round trips, so one slow round (an ack lost, a scheduler hiccup) does not shrink it.

use super::RATE_WINDOW_ROUNDS;

/// The largest sample per round over the last [`RATE_WINDOW_ROUNDS`] busy rounds.
#[derive(Clone, Debug, Default)]
pub(super) struct MaxFilter {
    slots: [(u64, u64); RATE_WINDOW_ROUNDS as usize],
}

impl MaxFilter {
    pub(super) fn update(&mut self, round: u64, rate: u64) {
        let slot = &mut self.slots[(round % RATE_WINDOW_ROUNDS) as usize];
        if slot.0 != round {
            *slot = (round, rate);
        } else if rate > slot.1 {
            slot.1 = rate;
        }
    }

    pub(super) fn get(&self, round: u64) -> u64 {
        self.slots
            .iter()
            .filter(|(r, _)| r + RATE_WINDOW_ROUNDS > round)
            .map(|(_, rate)| *rate)
            .max()
            .unwrap_or(0)
    }
}
