//! What a log search says it does (never its pattern) and the log types' names.

use clustermgr_proto::{LogType, SearchLogs};

/// The job summary (counts and filters, never the pattern).
pub fn summary(s: &SearchLogs) -> String {
    let types: Vec<&str> = s
        .types
        .iter()
        .filter_map(|t| LogType::try_from(*t).ok())
        .map(type_name)
        .collect();
    format!(
        "search {} logs{}{}{}",
        if types.is_empty() {
            "all".to_string()
        } else {
            types.join(",")
        },
        if s.grep.is_empty() {
            ""
        } else {
            " for a pattern"
        },
        if s.since_unix_ms > 0 {
            " since a time"
        } else {
            ""
        },
        if s.follow { ", following" } else { "" }
    )
}

pub fn type_name(t: LogType) -> &'static str {
    t.label()
}
