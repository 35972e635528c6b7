//! Transfer windows: the minutes of a device's day in which its background transfers (image
//! fetches) may run, such as `01:00-05:00` — the night, when a shop's link is idle and a metered
//! plan may be cheaper. Interactive work is never held back by one.
//!
//! A window is read on the device's own clock and time zone: the hub sets it per fleet, group or
//! device and sends it ([`crate::wire::HubMessage::TransferWindow`]); the agent, which alone
//! knows the device's local time, holds transfers back outside it. A window whose end is before
//! its start runs over midnight (`22:00-05:00`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Minutes in a day.
pub const DAY_MINUTES: u16 = 24 * 60;

/// A daily window, in minutes since local midnight: open from `start` (included) to `end`
/// (excluded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TransferWindow {
    /// Opens at this minute of the day (0–1439).
    pub start: u16,
    /// Closes at this minute of the day (0–1439), the next day if before `start`.
    pub end: u16,
}

/// Why a window was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum WindowError {
    /// Not `HH:MM-HH:MM`.
    #[error("transfer window {0:?}: write it as HH:MM-HH:MM, such as 01:00-05:00")]
    Format(String),
    /// A time past 23:59.
    #[error("transfer window {0:?}: hours are 00-23 and minutes 00-59")]
    Time(String),
    /// Opens and closes at the same minute: never open, or always — say which by not setting one.
    #[error("transfer window {0:?} opens and closes at the same minute; remove the window to allow transfers at any time")]
    Empty(String),
}

impl TransferWindow {
    /// Check a window that arrived on the wire.
    pub fn check(self) -> Result<Self, WindowError> {
        if self.start >= DAY_MINUTES || self.end >= DAY_MINUTES {
            return Err(WindowError::Time(self.to_string()));
        }
        if self.start == self.end {
            return Err(WindowError::Empty(self.to_string()));
        }
        Ok(self)
    }

    /// Whether transfers may run at `minute` of the day.
    pub fn is_open(self, minute: u16) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }

    /// Minutes from `minute` of the day until the window opens (0 when open).
    pub fn minutes_until_open(self, minute: u16) -> u16 {
        if self.is_open(minute) {
            return 0;
        }
        (self.start + DAY_MINUTES - minute) % DAY_MINUTES
    }
}

impl fmt::Display for TransferWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hm = |m: u16| (m / 60, m % 60);
        let ((sh, sm), (eh, em)) = (hm(self.start), hm(self.end));
        write!(f, "{sh:02}:{sm:02}-{eh:02}:{em:02}")
    }
}

impl FromStr for TransferWindow {
    type Err = WindowError;

    fn from_str(text: &str) -> Result<Self, WindowError> {
        let format = || WindowError::Format(text.to_owned());
        let (start, end) = text.trim().split_once('-').ok_or_else(format)?;
        let minute = |part: &str| -> Result<u16, WindowError> {
            let (h, m) = part.trim().split_once(':').ok_or_else(format)?;
            let digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
            if !digits(h) || !digits(m) {
                return Err(format());
            }
            let (h, m): (u16, u16) = (
                h.parse().map_err(|_| format())?,
                m.parse().map_err(|_| format())?,
            );
            if h > 23 || m > 59 {
                return Err(WindowError::Time(text.to_owned()));
            }
            Ok(h * 60 + m)
        };
        Self {
            start: minute(start)?,
            end: minute(end)?,
        }
        .check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(text: &str) -> TransferWindow {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn a_night_window_is_open_from_its_start_to_its_end() {
        let night = window("01:00-05:00");
        assert_eq!(
            night,
            TransferWindow {
                start: 60,
                end: 300
            }
        );
        assert!(!night.is_open(59));
        assert!(night.is_open(60) && night.is_open(299));
        assert!(!night.is_open(300));
        assert_eq!(night.minutes_until_open(0), 60);
        assert_eq!(night.minutes_until_open(120), 0);
        assert_eq!(night.minutes_until_open(300), DAY_MINUTES - 240);
        assert_eq!(night.to_string(), "01:00-05:00");
    }

    #[test]
    fn a_window_over_midnight_wraps() {
        let late = window("22:30-05:00");
        assert!(late.is_open(22 * 60 + 30) && late.is_open(23 * 60 + 59));
        assert!(late.is_open(0) && late.is_open(299));
        assert!(!late.is_open(300) && !late.is_open(22 * 60 + 29));
        assert_eq!(late.minutes_until_open(22 * 60), 30);
        assert_eq!(late.minutes_until_open(300), 17 * 60 + 30);
    }

    #[test]
    fn bad_windows_are_refused_with_what_to_write() {
        for (text, want) in [
            ("1:00-5:00", "HH:MM-HH:MM"),
            ("01:00", "HH:MM-HH:MM"),
            ("01:00-05:0x", "HH:MM-HH:MM"),
            ("24:00-05:00", "hours are 00-23"),
            ("01:60-05:00", "hours are 00-23"),
            ("03:00-03:00", "remove the window"),
        ] {
            let error = text.parse::<TransferWindow>().unwrap_err().to_string();
            assert!(error.contains(want), "{text}: {error}");
        }
        let wire = TransferWindow {
            start: 2_000,
            end: 5,
        };
        assert!(wire.check().is_err(), "a hostile window off the wire");
    }
}
