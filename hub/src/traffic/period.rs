//! The period a byte budget covers, without I/O: a calendar month in UTC (what a metered SIM's
//! plan counts), or fixed spans from the Unix epoch (labs and tests, where a month is too long to
//! watch a budget reset).

use std::fmt;
use std::str::FromStr;

/// Seconds in a day.
const DAY: i64 = 86_400;

/// The period byte budgets reset on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetPeriod {
    /// Calendar months, UTC.
    Month,
    /// Spans of this many seconds from the Unix epoch.
    Every(u32),
}

impl BudgetPeriod {
    /// The start (Unix seconds) of the period holding `now`.
    pub fn start_of(self, now: i64) -> i64 {
        match self {
            Self::Month => {
                let (year, month, _) = civil_from_days(now.div_euclid(DAY));
                days_from_civil(year, month, 1) * DAY
            }
            Self::Every(span) => now.div_euclid(i64::from(span)) * i64::from(span),
        }
    }

    /// The start of the period after the one holding `now`: when a spent budget opens again.
    pub fn next_start(self, now: i64) -> i64 {
        match self {
            Self::Month => {
                let (year, month, _) = civil_from_days(now.div_euclid(DAY));
                let (year, month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                days_from_civil(year, month, 1) * DAY
            }
            Self::Every(span) => self.start_of(now) + i64::from(span),
        }
    }
}

impl fmt::Display for BudgetPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Month => f.write_str("month"),
            Self::Every(span) => write!(f, "{span}s"),
        }
    }
}

impl FromStr for BudgetPeriod {
    type Err = String;

    /// `month`, or a span such as `90s`, `15m`, `1h`, `1d` (at least 10 s).
    fn from_str(text: &str) -> Result<Self, String> {
        if text == "month" {
            return Ok(Self::Month);
        }
        let split = text.len().saturating_sub(1);
        let (number, unit) = text.split_at(split);
        let scale = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => {
                return Err(format!(
                    "budget period {text:?}: say `month` or a span like 90s, 15m, 1h, 1d"
                ))
            }
        };
        let span = number
            .parse::<u32>()
            .ok()
            .and_then(|n| n.checked_mul(scale))
            .filter(|span| *span >= 10)
            .ok_or_else(|| format!("budget period {text:?}: a span of 10 s to 136 years"))?;
        Ok(Self::Every(span))
    }
}

/// Days since 1970-01-01 → (year, month 1–12, day 1–31), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) → days since 1970-01-01, the inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-03T22:01:06Z.
    const NOW: i64 = 1_796_335_266;
    /// 2026-12-01T00:00:00Z and 2027-01-01T00:00:00Z.
    const DEC_1: i64 = 1_796_083_200;
    const JAN_1: i64 = 1_798_761_600;

    #[test]
    fn a_month_runs_from_the_first_to_the_first_utc() {
        assert_eq!(BudgetPeriod::Month.start_of(NOW), DEC_1);
        assert_eq!(BudgetPeriod::Month.next_start(NOW), JAN_1);
        assert_eq!(BudgetPeriod::Month.start_of(DEC_1), DEC_1);
        assert_eq!(BudgetPeriod::Month.start_of(DEC_1 - 1), DEC_1 - 30 * DAY);
        assert_eq!(BudgetPeriod::Month.start_of(JAN_1), JAN_1);
    }

    #[test]
    fn february_of_a_leap_year_has_29_days() {
        let feb_1_2028 = days_from_civil(2028, 2, 1) * DAY;
        let mar_1_2028 = days_from_civil(2028, 3, 1) * DAY;
        assert_eq!(mar_1_2028 - feb_1_2028, 29 * DAY);
        assert_eq!(BudgetPeriod::Month.next_start(feb_1_2028 + 5), mar_1_2028);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }

    #[test]
    fn fixed_spans_count_from_the_epoch() {
        let every = BudgetPeriod::Every(60);
        assert_eq!(every.start_of(125), 120);
        assert_eq!(every.next_start(125), 180);
        assert_eq!(every.start_of(120), 120);
    }

    #[test]
    fn periods_parse_and_print() {
        assert_eq!("month".parse(), Ok(BudgetPeriod::Month));
        assert_eq!("90s".parse(), Ok(BudgetPeriod::Every(90)));
        assert_eq!("15m".parse(), Ok(BudgetPeriod::Every(900)));
        assert_eq!("1d".parse(), Ok(BudgetPeriod::Every(86_400)));
        assert_eq!(BudgetPeriod::Every(90).to_string(), "90s");
        for bad in ["", "5s", "week", "-1h", "1.5h", "99999999999d"] {
            assert!(bad.parse::<BudgetPeriod>().is_err(), "{bad}");
        }
    }
}
