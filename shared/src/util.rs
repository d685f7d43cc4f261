//! Small helpers for time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// RFC 3339 rendering of a Unix time in milliseconds (UTC), or "-" for 0.
pub fn fmt_ms(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let t = time::OffsetDateTime::UNIX_EPOCH + Duration::from_millis(ms);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| ms.to_string())
}

/// RFC 3339 rendering of a Unix time in seconds.
pub fn fmt_unix(secs: u64) -> String {
    fmt_ms(secs.saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_rfc3339() {
        assert_eq!(super::fmt_unix(0), "-");
        assert_eq!(super::fmt_unix(86_400), "1970-01-02T00:00:00Z");
    }
}
