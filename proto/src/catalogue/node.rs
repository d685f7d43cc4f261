//! Summaries of the node's own operations: files, packages, probes, hosts, logs and backups.

use crate::v1::{
    BackupNode, InstallPackage, LogType, Probe, RestoreNode, SearchLogs, SetHosts, UpgradeAgent,
    WriteFile, install_package, probe,
};

/// The path, size and mode (never the content).
pub(super) fn write_file(w: &WriteFile) -> String {
    format!(
        "write {} ({} bytes{})",
        w.path,
        w.content.len(),
        if w.mode == 0 {
            String::new()
        } else {
            format!(", mode {:o}", w.mode)
        }
    )
}

pub(super) fn install_package(p: &InstallPackage) -> String {
    match &p.source {
        Some(install_package::Source::CachedSha256(s)) => format!("install pushed package {s}"),
        Some(install_package::Source::Name(n)) => format!("install package {n}"),
        None => "install package (no source)".into(),
    }
}

pub(super) fn upgrade_agent(u: &UpgradeAgent) -> String {
    format!(
        "upgrade clustermgr-agent to {} (pushed package {}; online within {} s or the previous package goes back)",
        u.version,
        u.sha256,
        u.online_within_ms / 1000
    )
}

/// The target (never the bind password).
pub(super) fn probe(p: &Probe) -> String {
    match &p.target {
        Some(probe::Target::Ldaps(b)) => format!("probe LDAPS {}:{}", b.host, b.port),
        Some(probe::Target::Https(h)) => format!("probe {}", h.url),
        None => "probe (no target)".into(),
    }
}

pub(super) fn set_hosts(h: &SetHosts) -> String {
    format!(
        "write {} cluster host lines into /etc/hosts",
        h.entries.len()
    )
}

/// Counts and filters, never the pattern: an operator may search for a secret.
pub(super) fn search_logs(s: &SearchLogs) -> String {
    let types: Vec<&str> = s
        .types
        .iter()
        .filter_map(|t| LogType::try_from(*t).ok())
        .map(LogType::label)
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

pub(super) fn backup(b: &BackupNode) -> String {
    format!(
        "back up the directory and Gluu configuration as {}",
        b.backup_id
    )
}

pub(super) fn restore(r: &RestoreNode) -> String {
    format!(
        "restore backup {} ({} bytes) onto the stopped directory",
        r.backup_id, r.size
    )
}
