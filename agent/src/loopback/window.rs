//! The device's transfer window, read on its own clock: the hub sets the window, only the device
//! knows its local time (its time zone and daylight-saving rules, from `TZ` or `/etc/localtime`).
//! Outside the window an image fetch is held back as the hub's budget holds it back — the same
//! [`Deferral`], with `window` as its cause — and what arrived is kept for when it opens.

use jiff::Zoned;
use outpost_protocol::fetch::DeferCause;
use outpost_protocol::window::TransferWindow;

use super::fetch::Deferral;

/// The deferral `window` imposes at `now`, device time; none while it is open.
pub(crate) fn deferral(window: TransferWindow, now: &Zoned) -> Option<Deferral> {
    let minute = u16::from(now.hour().unsigned_abs()) * 60 + u16::from(now.minute().unsigned_abs());
    let wait = window.minutes_until_open(minute);
    if wait == 0 {
        return None;
    }
    let into_minute = i64::from(now.second());
    let retry_at = now.timestamp().as_second() + i64::from(wait) * 60 - into_minute;
    let open = TransferWindow {
        start: window.start,
        end: window.start,
    }
    .to_string();
    Some(Deferral {
        cause: DeferCause::Window,
        retry_at: u64::try_from(retry_at).unwrap_or_default(),
        message: format!(
            "deferred: window {window} (device time, now {:02}:{:02}); transfers resume at {}",
            now.hour(),
            now.minute(),
            &open[..5]
        ),
    })
}

#[cfg(test)]
mod tests {
    use jiff::tz::{Offset, TimeZone};
    use jiff::Timestamp;

    use super::*;

    /// 2026-12-03T22:01:30Z, seen from `hours` east of UTC.
    fn at(hours: i8) -> Zoned {
        let offset = Offset::constant(hours);
        Timestamp::from_second(1_796_335_290)
            .unwrap()
            .to_zoned(TimeZone::fixed(offset))
    }

    #[test]
    fn outside_its_window_a_device_waits_for_the_next_opening_on_its_own_clock() {
        let night: TransferWindow = "01:00-05:00".parse().unwrap();
        // 22:01 in UTC: 2 h 59 min until 01:00, less the 30 s into this minute.
        let utc = deferral(night, &at(0)).unwrap();
        assert_eq!(utc.cause, DeferCause::Window);
        assert_eq!(utc.retry_at, 1_796_335_290 + 179 * 60 - 30);
        assert!(utc.message.contains("now 22:01"), "{}", utc.message);
        assert!(utc.message.contains("resume at 01:00"), "{}", utc.message);
        // The same instant is 03:01 at UTC+5: open.
        assert_eq!(deferral(night, &at(5)), None);
    }
}
