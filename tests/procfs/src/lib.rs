//! Reading `/proc`: the one place where the test harness, the scale bench and the Gluu
//! stand-in look at other processes (is it alive, what is its command line, how much memory and
//! CPU time has it used). Linux only, std only, so that any crate can use it without a cycle.

use std::io;

/// A live process and its command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub pid: i32,
    /// The command line, one entry per argument (empty for kernel threads).
    pub args: Vec<String>,
}

impl Process {
    /// The command line with its arguments joined by spaces (for messages and substring checks).
    pub fn command_line(&self) -> String {
        self.args.join(" ")
    }
}

/// Every process id currently listed in `/proc`.
pub fn pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|pid| *pid > 0)
        .collect()
}

/// The one-letter state of a process (`R`, `S`, `Z`...), None when it does not exist.
pub fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain spaces or parentheses.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
}

/// The process exists and is neither a zombie nor dead.
pub fn alive(pid: i32) -> bool {
    pid > 0 && state(pid).is_some_and(|s| s != 'Z' && s != 'X')
}

/// The command line of a process, one entry per argument; None when it cannot be read.
pub fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// Every live (not zombie) process other than this one, with its command line.
pub fn live_processes() -> Vec<Process> {
    let me = std::process::id() as i32;
    pids()
        .into_iter()
        .filter(|pid| *pid != me && alive(*pid))
        .filter_map(|pid| cmdline(pid).map(|args| Process { pid, args }))
        .collect()
}

/// The live processes (other than this one) whose command line satisfies `pred`.
pub fn find(mut pred: impl FnMut(&[String]) -> bool) -> Vec<Process> {
    live_processes()
        .into_iter()
        .filter(|p| pred(&p.args))
        .collect()
}

/// Resident memory of a process, from `/proc/<pid>/status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// VmRSS: resident now, in KiB.
    pub rss_kib: u64,
    /// VmHWM: the most it has ever been resident, in KiB.
    pub peak_kib: u64,
}

impl Memory {
    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    pub fn peak_mib(&self) -> f64 {
        self.peak_kib as f64 / 1024.0
    }
}

fn malformed(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// VmRSS and VmHWM of a process.
pub fn memory(pid: i32) -> io::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> io::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse().ok())
            .ok_or_else(|| malformed(format!("no {name} in /proc/{pid}/status")))
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

/// CPU time (user + system) a process has used, in seconds.
pub fn cpu_seconds(pid: i32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| malformed(format!("malformed /proc/{pid}/stat")))?;
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> io::Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or_else(|| malformed(format!("malformed /proc/{pid}/stat")))
    };
    // /proc reports clock ticks in USER_HZ, which is 100 on Linux.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn sees_a_child_with_its_arguments_then_not_once_it_is_reaped() {
        let mut child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        assert!(alive(pid));
        // Between fork and exec the command line is not yet the child's own.
        let want = vec!["sleep".to_string(), "30".to_string()];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while cmdline(pid).as_ref() != Some(&want) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(cmdline(pid).unwrap(), want);
        let found = find(|args| args.first().is_some_and(|a| a == "sleep"));
        assert!(found.iter().any(|p| p.pid == pid), "{found:?}");
        assert!(memory(pid).unwrap().rss_kib > 0);
        child.kill().unwrap();
        // Killed but not yet reaped: a zombie, which does not count as alive.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while state(pid) != Some('Z') && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!alive(pid));
        assert!(!live_processes().iter().any(|p| p.pid == pid));
        child.wait().unwrap();
        assert!(!alive(pid));
        assert_eq!(state(pid), None);
    }

    #[test]
    fn reads_this_process_memory_and_cpu() {
        let me = std::process::id() as i32;
        let m = memory(me).unwrap();
        assert!(m.rss_kib > 0 && m.peak_kib >= m.rss_kib, "{m:?}");
        // Busy until the CPU time read grows (a clock tick at the most), with a ceiling.
        let before = cpu_seconds(me).unwrap();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        let mut grew = false;
        while !grew && start.elapsed() < std::time::Duration::from_secs(30) {
            for i in 0..1_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            grew = cpu_seconds(me).unwrap() > before;
        }
        assert!(x != 1);
        assert!(grew, "CPU time stayed at {before} s while busy");
        assert!(!live_processes().iter().any(|p| p.pid == me));
    }
}
