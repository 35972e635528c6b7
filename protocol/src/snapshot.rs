//! The engine summary an agent sends before it returns to standby (and once after enrolment), so
//! the hub can show what runs on a device without summoning it.
//!
//! A snapshot is device input that the hub stores and shows, so both sides bound it:
//! - **Size.** The agent trims every snapshot to [`SNAPSHOT_BUDGET`] encoded bytes ([`EngineSnapshot::fit`]):
//!   a quarter of [`MAX_CONTROL_FRAME`], so a device with thousands of containers or absurd names
//!   sends a shorter list instead of a frame the hub must refuse by closing the session. A typical
//!   container entry is ~100 bytes, so the full [`MAX_LISTED_CONTAINERS`] usually fit. The hub
//!   refuses a larger one, and trims a pending device's to [`PENDING_SNAPSHOT_BUDGET`].
//! - **Rate.** The agent sends at most one per [`MIN_SNAPSHOT_INTERVAL`]; the hub keeps a token
//!   bucket per session on the same period (`hub/src/registry/snapshots.rs`).
//! - **Text.** [`EngineSnapshot::sanitize`] replaces control and bidirectional-override characters,
//!   which would otherwise reach an admin's terminal through `endpoint show` (and a control byte is
//!   stored as a 6-byte JSON escape), and caps the list lengths.
//!
//! Trimming is visible without a field of its own (which would change the wire format): counts
//! stay exact, so a list shorter than `containers_running + containers_stopped` was cut, and a
//! clipped text ends with `…`.
//!
//! [`MAX_CONTROL_FRAME`]: crate::wire::MAX_CONTROL_FRAME

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::text::is_unsafe_char;
use crate::wire;

/// Most containers listed in one snapshot; counts stay exact beyond it.
pub const MAX_LISTED_CONTAINERS: usize = 500;

/// Most names kept per container (legacy links can give a container many).
pub const MAX_NAMES: usize = 8;

/// Most encoded bytes of a snapshot: a quarter of the control frame limit (256 KiB).
pub const SNAPSHOT_BUDGET: usize = 64 * 1024;

/// Most encoded bytes of a pending device's snapshot: counts, the engine version and a few
/// containers, enough for an admin to decide on approval.
pub const PENDING_SNAPSHOT_BUDGET: usize = 4 * 1024;

/// Shortest time between two snapshots of one session. The agent sends one at connect and one per
/// return to standby, which the standby period (minutes in production) spaces already; this bounds
/// a device that is summoned again and again.
pub const MIN_SNAPSHOT_INTERVAL: Duration = Duration::from_secs(10);

/// Characters kept of the engine version and the error when even an empty list does not fit.
const SHORT_TEXT_CHARS: usize = 128;

/// A point-in-time summary of a device's Docker engine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineSnapshot {
    /// Seconds since the Unix epoch when it was taken.
    pub taken_at: i64,
    /// Engine version (`docker version`'s server version), or the error that prevented reading it.
    pub engine_version: String,
    /// Running containers.
    pub containers_running: u32,
    /// Containers not running.
    pub containers_stopped: u32,
    /// Images.
    pub images: u32,
    /// Volumes.
    pub volumes: u32,
    /// Networks.
    pub networks: u32,
    /// Up to [`MAX_LISTED_CONTAINERS`] containers.
    pub containers: Vec<ContainerSummary>,
    /// Set when the engine could not be read (the device is up, its Docker is not).
    pub error: Option<String>,
}

/// One container in a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSummary {
    /// Short id.
    pub id: String,
    /// Names without the leading slash.
    pub names: Vec<String>,
    /// Image reference.
    pub image: String,
    /// `running`, `exited`, …
    pub state: String,
    /// Human status (`Up 3 hours`).
    pub status: String,
}

impl EngineSnapshot {
    /// Encoded size on the wire (the control frame adds 5 bytes: length and message tag).
    pub fn encoded_len(&self) -> usize {
        wire::encode(self).len()
    }

    /// Replace unsafe characters in every text ([`sanitize_text`]) and cut the list to
    /// [`MAX_LISTED_CONTAINERS`] containers of at most [`MAX_NAMES`] names.
    pub fn sanitize(&mut self) {
        self.containers.truncate(MAX_LISTED_CONTAINERS);
        clean(&mut self.engine_version);
        self.error.iter_mut().for_each(clean);
        for container in &mut self.containers {
            container.names.truncate(MAX_NAMES);
            container.names.iter_mut().for_each(clean);
            for text in [
                &mut container.id,
                &mut container.image,
                &mut container.state,
                &mut container.status,
            ] {
                clean(text);
            }
        }
    }

    /// This snapshot cut to at most `budget` encoded bytes: the containers that fit, in order (the
    /// agent lists running ones first), and, when even an empty list does not fit, the version and
    /// error clipped. Any budget of 2 KiB or more is met.
    pub fn fit(mut self, budget: usize) -> Self {
        if self.encoded_len() <= budget {
            return self;
        }
        let containers = std::mem::take(&mut self.containers);
        if self.encoded_len() > budget {
            self.engine_version = clip(&self.engine_version, SHORT_TEXT_CHARS);
            self.error = self.error.map(|e| clip(&e, SHORT_TEXT_CHARS));
        }
        // The empty list is one length byte; each kept entry adds its own encoding.
        let mut used = self.encoded_len() - 1;
        for container in containers {
            let size = wire::encode(&container).len();
            if used + size + varint_len(self.containers.len() + 1) > budget {
                break;
            }
            used += size;
            self.containers.push(container);
        }
        self
    }
}

/// Bytes of postcard's varint for a length.
fn varint_len(n: usize) -> usize {
    let bits = usize::BITS - n.leading_zeros();
    (bits.max(1) as usize).div_ceil(7)
}

/// `text` with every unsafe character (control, bidirectional override) replaced by `�`; borrowed
/// when there was none.
pub fn sanitize_text(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe_char) {
        return Cow::Borrowed(text);
    }
    let replaced = text
        .chars()
        .map(|c| if is_unsafe_char(c) { '\u{fffd}' } else { c });
    Cow::Owned(replaced.collect())
}

fn clean(text: &mut String) {
    if let Cow::Owned(safe) = sanitize_text(text) {
        *text = safe;
    }
}

/// `text` cut to at most `max` characters, the last of them `…` when cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().nth(max).is_none() {
        return text.to_owned();
    }
    let mut clipped: String = text.chars().take(max.saturating_sub(1)).collect();
    clipped.push('…');
    clipped
}

#[cfg(test)]
mod tests;
