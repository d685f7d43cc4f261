//! The allocator's settings for a small resident process. glibc's malloc raises its mmap and
//! trim thresholds as a process frees large blocks, and keeps one arena per thread that
//! allocated: after a log search (1 MiB read blocks on a blocking thread), the freed megabytes
//! stayed in the process. Fixed thresholds turn that off (blocks of 128 KiB and more are mapped
//! and unmapped, freed heap above 128 KiB is returned) and two arenas are enough for two
//! workers. glibc reads these settings only when the process starts, from `GLIBC_TUNABLES`, so
//! the agent starts itself again with them (same process id, same arguments) unless the
//! variable is set already, by the operator or by that first start. Other C libraries ignore it.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

/// The variable glibc reads its malloc settings from.
pub const VAR: &str = "GLIBC_TUNABLES";
/// The settings (bytes for thresholds).
pub const TUNABLES: &str = "glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=131072:glibc.malloc.arena_max=2";

/// Execs this program again with [`TUNABLES`] unless [`VAR`] is set. Returns only when it is set
/// already or the exec failed (the agent then runs with glibc's defaults).
pub fn settle(args: impl IntoIterator<Item = OsString>) {
    if std::env::var_os(VAR).is_some() {
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
        .exec();
    eprintln!("warning: cannot start again with the allocator settings ({err}); running without");
}
