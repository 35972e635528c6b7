//! Why startup ended, kept so tests and traces can tell the four exits apart: each is tuned
//! against a different link (the burst on GEO, the delay signal on LTE's jitter, overflow on a
//! modem's queue, the plateau where nothing else fires), and a change that moves a transfer from
//! one exit to another changes its speed by seconds.

/// Why startup ended: what showed the controller the pipe was full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartupExit {
    /// The first flight's burst came back spaced by a bottleneck, and its rate is the window's.
    BurstMeasured,
    /// A round's smallest round trip showed a standing queue (HyStart's delay signal).
    QueueDelay,
    /// A round lost more than 5 % of what it delivered (`STARTUP_LOSS_EXIT`) while its round
    /// trips showed a queue: the bottleneck's queue overflowed.
    QueueOverflow,
    /// The rate stopped growing by a quarter (`FULL_PIPE_GROWTH`) for two rounds
    /// (`FULL_PIPE_ROUNDS`).
    RatePlateau,
}
