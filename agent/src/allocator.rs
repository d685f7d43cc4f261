//! The allocator's settings for a small resident process. glibc's malloc raises its mmap and
//! trim thresholds as a process frees large blocks, and keeps one arena per thread that
//! allocated: after a log search (1 MiB read blocks on a blocking thread), the freed megabytes
//! stayed in the process. Fixed thresholds turn that off (blocks of 128 KiB and more are mapped
//! and unmapped, freed heap above 128 KiB is returned) and two arenas are enough for two
//! workers. glibc reads these settings only when the process starts, from `GLIBC_TUNABLES`, so
//! the agent starts itself again with them (same process id, same arguments) unless the
//! variable is set already, by the operator or by that first start. Other C libraries ignore it.
//!
//! The start again happens at most once: it also sets [`MARKER`], and a process that finds the
//! marker never execs (glibc drops `GLIBC_TUNABLES` for secure-execution processes, which would
//! otherwise loop). The settings are the agent's own: programs it runs (setup.py, Redis, nginx,
//! OpenDJ's tools, dpkg) get neither variable when the agent added them ([`added_here`]).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

/// The variable glibc reads its malloc settings from.
pub const VAR: &str = "GLIBC_TUNABLES";
/// The settings (bytes for thresholds).
pub const TUNABLES: &str = "glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=131072:glibc.malloc.arena_max=2";

/// Set beside [`VAR`] by the start again: this process was started with the agent's settings.
pub const MARKER: &str = "CLUSTERMGR_AGENT_ALLOCATOR";

/// Whether this process's [`VAR`] is the one [`settle`] added (not the operator's): then the
/// programs the agent runs must not inherit it, nor [`MARKER`].
pub fn added_here() -> bool {
    std::env::var_os(MARKER).is_some()
}

/// The variables a program the agent runs must not inherit ([`added_here`]), none otherwise.
pub fn not_inherited() -> &'static [&'static str] {
    removed_when(added_here())
}

fn removed_when(added_here: bool) -> &'static [&'static str] {
    if added_here { &[VAR, MARKER] } else { &[] }
}

/// Execs this program again with [`TUNABLES`] unless [`VAR`] is set or this process is that
/// start again already ([`MARKER`]). Returns only then, or when the exec failed (the agent then
/// runs with glibc's defaults).
pub fn settle(args: impl IntoIterator<Item = OsString>) {
    if std::env::var_os(VAR).is_some() || added_here() {
        return;
    }
    let mut args = args.into_iter();
    let arg0 = args
        .next()
        .unwrap_or_else(|| OsString::from("clustermgr-agent"));
    let err = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env(VAR, TUNABLES)
        .env(MARKER, "1")
        .exec();
    eprintln!("warning: cannot start again with the allocator settings ({err}); running without");
}

#[cfg(test)]
mod tests {
    /// The settings the agent added stay the agent's; an operator's own are passed on.
    #[test]
    fn children_lose_the_settings_only_when_the_agent_added_them() {
        assert_eq!(super::removed_when(true), &[super::VAR, super::MARKER]);
        assert!(super::removed_when(false).is_empty());
    }
}
