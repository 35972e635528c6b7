//! Human durations on the command line and in API bodies: `500ms`, `25s`, `2m`, `1h`, `30d` (a
//! bare number is seconds).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A duration as the command line writes it, so a flag's default prints from its constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    /// The largest unit that divides it exactly: `25s`, `2m`, `8760h`, `500ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        match ms {
            0 => write!(f, "0s"),
            _ if ms % 3_600_000 == 0 => write!(f, "{}h", ms / 3_600_000),
            _ if ms % 60_000 == 0 => write!(f, "{}m", ms / 60_000),
            _ if ms % 1000 == 0 => write!(f, "{}s", ms / 1000),
            _ => write!(f, "{ms}ms"),
        }
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        parse_duration(text).map(Self)
    }
}

/// Parse a duration such as `25s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 25s, 2m or 1h"))?;
    if unit == "ms" {
        return Ok(Duration::from_millis(value));
    }
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?}: use ms, s, m, h or d"
            ))
        }
    };
    value
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long a duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_refuses_nonsense() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("25"), Ok(Duration::from_secs(25)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5w").unwrap_err().contains("unknown unit"));
        let huge = parse_duration("18446744073709551615h");
        assert!(huge.unwrap_err().contains("too long"), "no overflow");
    }

    #[test]
    fn a_default_prints_as_it_parses() {
        for text in ["25s", "2m", "8760h", "500ms", "0s"] {
            let parsed: HumanDuration = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
        }
    }
}
