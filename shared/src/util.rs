//! Small helpers: time, and the custom schema name rule.

use std::time::{SystemTime, UNIX_EPOCH};

/// A custom schema's name: `[a-z0-9][a-z0-9_-]*`, at most 64 characters (it names files on
/// the nodes).
pub fn is_schema_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Printable, bounded text: control characters (terminal escapes) dropped, at most `max` chars.
pub fn clean(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    now_ms() / 1000
}

/// RFC 3339 rendering of a Unix time in milliseconds (UTC), or "-" for 0. Total: a time the
/// calendar cannot show (after the year 9999, e.g. a bogus value a node reported) is printed as
/// the raw number.
pub fn fmt_ms(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    rfc3339(ms / 1000, (ms % 1000) as u32 * 1_000_000).unwrap_or_else(|| ms.to_string())
}

/// RFC 3339 rendering of a Unix time in seconds, or "-" for 0; the raw number when out of range.
pub fn fmt_unix(secs: u64) -> String {
    if secs == 0 {
        return "-".into();
    }
    rfc3339(secs, 0).unwrap_or_else(|| secs.to_string())
}

fn rfc3339(secs: u64, nanos: u32) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).ok()?)
        .ok()?
        .replace_nanosecond(nanos)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_rfc3339() {
        assert_eq!(super::fmt_unix(0), "-");
        assert_eq!(super::fmt_unix(86_400), "1970-01-02T00:00:00Z");
        assert_eq!(super::fmt_ms(0), "-");
        assert_eq!(super::fmt_ms(1_500), "1970-01-01T00:00:01.5Z");
    }

    #[test]
    fn out_of_range_times_render_raw_instead_of_panicking() {
        // The last millisecond the calendar can show, then the first it cannot.
        assert_eq!(
            super::fmt_ms(253_402_300_799_999),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(super::fmt_ms(253_402_300_800_000), "253402300800000");
        assert_eq!(super::fmt_ms(u64::MAX), u64::MAX.to_string());
        assert_eq!(super::fmt_unix(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(super::fmt_unix(253_402_300_800), "253402300800");
        assert_eq!(super::fmt_unix(u64::MAX), u64::MAX.to_string());
    }
}
