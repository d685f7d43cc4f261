//! A systemd-nspawn machine seen from the host: its leader is PID 1 of a PID namespace nested
//! under ours (`NSpid: <ours> ... 1`) whose root directory is the container root (same device
//! and inode). Works for a machine started by `systemd-nspawn@.service` and for one started
//! without registration alike (no `machinectl`). The agent and the test harness both use it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The leader PID of the machine whose root is `container`, looked up under `proc` (`/proc`;
/// a fake tree in tests). Several (a machine restarting while the old one winds down): the
/// newest.
pub fn leader(proc: &Path, container: &Path) -> Option<u32> {
    let want = std::fs::metadata(container).ok()?;
    let entries = std::fs::read_dir(proc).ok()?;
    let mut found: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| is_namespace_init(proc, *pid))
        .filter(|pid| rooted_at(proc, *pid, &want))
        .collect();
    found.sort_unstable();
    found.pop()
}

/// The process's root directory is the file `want` describes (the container root).
pub fn rooted_at(proc: &Path, pid: u32, want: &std::fs::Metadata) -> bool {
    std::fs::metadata(proc.join(pid.to_string()).join("root"))
        .is_ok_and(|m| m.dev() == want.dev() && m.ino() == want.ino())
}

/// The process is PID 1 of a PID namespace nested under ours.
fn is_namespace_init(proc: &Path, pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(proc.join(pid.to_string()).join("status")) else {
        return false;
    };
    status.lines().any(|l| {
        let Some(rest) = l.strip_prefix("NSpid:") else {
            return false;
        };
        let ids: Vec<&str> = rest.split_whitespace().collect();
        ids.len() >= 2 && ids.last() == Some(&"1")
    })
}
