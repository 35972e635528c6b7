//! What a rollout leaves in the store, and how a hub rebuilds it after a restart.
//!
//! The store keeps one [`RolloutRecord`] per rollout and one [`TargetRecord`] per target, both
//! plain data (serde, or one column per field with times as Unix seconds). [`Rollout::poll_save`]
//! hands over only what changed, so a report costs one row, not 10,000. Write a poll's
//! assignments and the save that follows it in one transaction: a restart then finds either both
//! or neither.
//!
//! Presence is not trusted across a restart: [`Rollout::restore`] asks who is online now, and a
//! target saved online but absent now is offline from the restart on.

use std::collections::HashSet;
use std::mem;
use std::time::SystemTime;

use outpost_protocol::EndpointId;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{Plan, Rollout, RolloutState, TargetRecord};

/// A rollout's own fields, as the store keeps them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutRecord {
    /// The plan.
    pub plan: Plan,
    /// Where it is.
    pub state: RolloutState,
    /// Waves started.
    pub wave: u32,
    /// Targets at positions below this fall in the waves started.
    pub reached: u32,
}

/// What changed since the last [`Rollout::poll_save`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Save {
    /// The rollout's own fields, if they changed.
    pub rollout: Option<RolloutRecord>,
    /// The targets that changed, in the rollout's order.
    pub targets: Vec<TargetRecord>,
}

/// Why stored rows do not make a rollout.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RestoreError {
    /// The positions are not 0, 1, … without gaps or repeats.
    #[error("target positions have a gap or a repeat at {0}")]
    Positions(u32),
    /// One device appears twice.
    #[error("endpoint {0} is a target twice")]
    DuplicateTarget(EndpointId),
    /// A target was assigned in a wave the rollout has not started, or in none of the plan's.
    #[error(
        "endpoint {endpoint} was assigned in wave {wave}, but the rollout has started {started}"
    )]
    WaveAhead {
        /// The target.
        endpoint: EndpointId,
        /// Its wave.
        wave: u32,
        /// Waves the rollout started.
        started: u32,
    },
    /// More waves started than the plan has, or more targets reached than there are.
    #[error("the rollout is past its plan (wave {wave} of {waves}, {reached} of {targets} targets reached)")]
    PastPlan {
        /// Waves started.
        wave: u32,
        /// Waves in the plan.
        waves: usize,
        /// Targets reached.
        reached: u32,
        /// Targets.
        targets: usize,
    },
}

impl Rollout {
    /// Rebuild a rollout from its stored fields and target rows (in any order), at `now`, with
    /// `online` telling which devices are online now.
    pub fn restore(
        record: RolloutRecord,
        targets: impl IntoIterator<Item = TargetRecord>,
        online: impl Fn(EndpointId) -> bool,
        now: SystemTime,
    ) -> Result<Self, RestoreError> {
        let mut targets: Vec<TargetRecord> = targets.into_iter().collect();
        targets.sort_by_key(|target| target.position);
        check(&record, &targets)?;
        let RolloutRecord {
            plan,
            state,
            wave,
            reached,
        } = record;
        let mut rollout = Self::build(plan, state, wave, reached as usize, targets);
        for i in 0..rollout.targets.len() {
            let endpoint = rollout.targets[i].endpoint;
            rollout.handle_presence(endpoint, online(endpoint), now);
        }
        Ok(rollout)
    }

    /// The rollout's own fields.
    pub fn record(&self) -> RolloutRecord {
        RolloutRecord {
            plan: self.plan.clone(),
            state: self.state.clone(),
            wave: self.wave,
            reached: self.reached as u32,
        }
    }

    /// What changed since the last call (everything, the first time after [`Rollout::new`]).
    pub fn poll_save(&mut self) -> Save {
        let rollout = mem::take(&mut self.record_dirty).then(|| self.record());
        let targets = mem::take(&mut self.dirty)
            .into_iter()
            .map(|i| self.targets[i].clone())
            .collect();
        Save { rollout, targets }
    }
}

/// The rows fit together: positions 0..n, each device once, no wave ahead of the rollout, the
/// rollout within its plan.
fn check(record: &RolloutRecord, targets: &[TargetRecord]) -> Result<(), RestoreError> {
    let waves = record.plan.waves.count();
    if record.wave as usize > waves || record.reached as usize > targets.len() {
        return Err(RestoreError::PastPlan {
            wave: record.wave,
            waves,
            reached: record.reached,
            targets: targets.len(),
        });
    }
    let mut seen = HashSet::with_capacity(targets.len());
    for (i, target) in targets.iter().enumerate() {
        if target.position as usize != i {
            return Err(RestoreError::Positions(i as u32));
        }
        if !seen.insert(target.endpoint) {
            return Err(RestoreError::DuplicateTarget(target.endpoint));
        }
        if let Some(wave) = target.wave.filter(|&w| w == 0 || w > record.wave) {
            return Err(RestoreError::WaveAhead {
                endpoint: target.endpoint,
                wave,
                started: record.wave,
            });
        }
    }
    Ok(())
}
