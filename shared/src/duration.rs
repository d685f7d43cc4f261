//! The one parser for durations, used by both binaries for flags and settings: `90s`, `10m`,
//! `12h`, `30d`, `500ms`, combinations such as `1h30m`; a bare number is seconds.

use std::time::Duration;

/// A duration that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (e.g. 30s, 10m, 12h, 30d)")]
pub struct DurationError {
    input: String,
    reason: String,
}

/// Parses a duration such as `30s`, `10m`, `12h` or `30d` (units from `ms` to `d` and beyond,
/// as humantime reads them; a bare number is seconds). Values that do not fit are refused.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let err = |reason: String| DurationError {
        input: s.to_string(),
        reason,
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(err("empty".into()));
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| err(e.to_string()));
    }
    humantime::parse_duration(t).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_from_ms_to_days() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(
            parse_duration("12h").unwrap(),
            Duration::from_secs(12 * 3600)
        );
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(
            parse_duration("365d").unwrap(),
            Duration::from_secs(365 * 86_400)
        );
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration(" 5s ").unwrap(), Duration::from_secs(5));
    }

    #[test]
    fn bare_number_is_seconds() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn garbage_and_overflow_are_refused() {
        for bad in [
            "",
            "  ",
            "s",
            "-5s",
            "5x",
            "ten minutes",
            "99999999999999999999999s",
            "99999999999999999999999",
            "18446744073709551615d",
        ] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(e.to_string().contains("invalid duration"), "{e}");
        }
    }
}
