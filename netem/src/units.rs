//! Human-readable quantities for profiles: durations (`"300ms"`), rates (`"2mbit"`) and sizes
//! (`"64KiB"`).
//!
//! Profiles are written by people reading papers and measurement reports, which quote rates in
//! kbit/s and Mbit/s and delays in ms, so the files use the same units rather than raw integers.
//! Parsing is strict: an unknown unit is an error, never a silent default.

use std::time::Duration;

use crate::error::UnitError;

/// Parses a duration such as `"300ms"`, `"1.5s"`, `"250us"`, `"2m"` or `"0"`.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let (number, unit) = split_number(text)?;
    let scale = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "" if number == 0.0 => 0.0,
        _ => return Err(UnitError::unknown_unit(text, "ns, us, ms, s, m, h")),
    };
    Duration::try_from_secs_f64(number * scale).map_err(|_| UnitError::out_of_range(text))
}

/// Parses a bit rate such as `"2mbit"`, `"240kbit"`, `"20Mbit"` or `"1gbit"` into bits per second.
///
/// `bit`, `kbit`, `mbit` and `gbit` use decimal prefixes (as tc does); `bps` suffixes are accepted
/// as synonyms (`"2mbps"` is 2 Mbit/s, not megabytes).
pub fn parse_rate(text: &str) -> Result<u64, UnitError> {
    let (number, unit) = split_number(text)?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "bit" | "bps" | "" => 1.0,
        "kbit" | "kbps" => 1e3,
        "mbit" | "mbps" => 1e6,
        "gbit" | "gbps" => 1e9,
        _ => return Err(UnitError::unknown_unit(text, "bit, kbit, mbit, gbit")),
    };
    let bits = number * scale;
    if !(1.0..=1e12).contains(&bits) {
        return Err(UnitError::out_of_range(text));
    }
    Ok(bits.round() as u64)
}

/// Parses a size such as `"64KiB"`, `"150KB"`, `"1500"` (bytes) or `"1MiB"` into bytes.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let (number, unit) = split_number(text)?;
    let scale = match unit {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "KiB" => 1024.0,
        "MB" => 1e6,
        "MiB" => 1024.0 * 1024.0,
        _ => return Err(UnitError::unknown_unit(text, "B, KB, KiB, MB, MiB")),
    };
    let bytes = number * scale;
    if !(0.0..=1e12).contains(&bytes) {
        return Err(UnitError::out_of_range(text));
    }
    Ok(bytes.round() as u64)
}

/// Formats a duration the way profiles write it (`"12.5ms"`), for reports.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 1.0 || ms == 0.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{:.0}us", ms * 1e3)
    }
}

fn split_number(text: &str) -> Result<(f64, &str), UnitError> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(end);
    let number: f64 = number.parse().map_err(|_| UnitError::not_a_number(text))?;
    if !number.is_finite() {
        return Err(UnitError::out_of_range(text));
    }
    Ok((number, unit.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(
            parse_duration("5").is_err(),
            "a bare non-zero number has no unit"
        );
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("ms").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("2mbit").unwrap(), 2_000_000);
        assert_eq!(parse_rate("240kbit").unwrap(), 240_000);
        assert_eq!(parse_rate("20Mbit").unwrap(), 20_000_000);
        assert_eq!(parse_rate("1.5mbps").unwrap(), 1_500_000);
        assert!(parse_rate("0kbit").is_err());
        assert!(parse_rate("2MB").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("150KB").unwrap(), 150_000);
        assert_eq!(parse_size("1500").unwrap(), 1500);
        assert!(parse_size("1 furlong").is_err());
    }
}
