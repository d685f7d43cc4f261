//! inotify watches on the replicated directories (recursive, never through a symbolic link),
//! and what the kernel says when it cannot watch them all.

use super::local::Local;
use clustermgr_proto::FsrepReport;
use notify::{RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Quiet time after the last event before the touched paths are scanned.
const DEBOUNCE: Duration = Duration::from_millis(30);
/// Longest a burst of events delays a scan.
const DEBOUNCE_MAX: Duration = Duration::from_millis(300);

pub enum WatchMsg {
    Paths(Vec<PathBuf>),
    Error(String),
}

/// A watcher sending what it sees to `tx`; None (and the reason in the report) when the kernel
/// refuses one.
pub fn watcher(
    tx: mpsc::UnboundedSender<WatchMsg>,
    report: &mut FsrepReport,
) -> Option<notify::RecommendedWatcher> {
    let handler = move |res: notify::Result<notify::Event>| {
        use notify::event::{AccessKind, AccessMode, EventKind};
        let _ = match res {
            // Opens and reads (our own scans make them) change nothing; a close after writing does.
            Ok(ev) if matches!(ev.kind, EventKind::Access(a) if a != AccessKind::Close(AccessMode::Write)) => {
                Ok(())
            }
            Ok(ev) => tx.send(WatchMsg::Paths(ev.paths)),
            Err(e) => tx.send(WatchMsg::Error(e.to_string())),
        };
    };
    match notify::RecommendedWatcher::new(
        handler,
        notify::Config::default().with_follow_symlinks(false),
    ) {
        Ok(w) => Some(w),
        Err(e) => {
            report.watch_error = e.to_string();
            None
        }
    }
}

/// Watches every configured directory that exists (recursively; never through a link).
pub fn add_watches(
    watcher: &mut Option<notify::RecommendedWatcher>,
    local: &Local,
    watched: &mut BTreeSet<PathBuf>,
    report: &mut FsrepReport,
) {
    let Some(w) = watcher.as_mut() else {
        return;
    };
    for dir in local.watch_roots() {
        if watched.contains(&dir) {
            continue;
        }
        let (dir, mode) = if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            (dir, RecursiveMode::Recursive)
        } else {
            // Not there yet: its nearest existing ancestor shows when it is made.
            match dir
                .ancestors()
                .skip(1)
                .find(|a| std::fs::symlink_metadata(a).is_ok_and(|m| m.is_dir()))
            {
                Some(a) if local.inside(a).is_some() => {
                    (a.to_path_buf(), RecursiveMode::NonRecursive)
                }
                _ => continue,
            }
        };
        if watched.contains(&dir) {
            continue;
        }
        match w.watch(&dir, mode) {
            Ok(()) => {
                watched.insert(dir);
            }
            Err(e) => {
                let no_space = matches!(e.kind, notify::ErrorKind::MaxFilesWatch)
                    || matches!(&e.kind, notify::ErrorKind::Io(io) if io.raw_os_error() == Some(nix::libc::ENOSPC));
                report.watch_error = if no_space {
                    format!(
                        "the inotify watch limit is reached ({}): raise fs.inotify.max_user_watches",
                        dir.display()
                    )
                } else {
                    format!("{}: {e}", dir.display())
                };
            }
        }
    }
    report.watched_dirs = local
        .watch_roots()
        .iter()
        .filter(|d| watched.contains(*d))
        .count() as u32;
}

/// The paths the watches reported, scanned once they settle: `DEBOUNCE` after the last event,
/// at most `DEBOUNCE_MAX` after the first.
#[derive(Default)]
pub(super) struct Settling {
    touched: BTreeSet<String>,
    first_event: Option<Instant>,
    pub(super) deadline: Option<Instant>,
}

impl Settling {
    pub(super) fn add(&mut self, local: &Local, paths: Vec<PathBuf>) {
        for p in paths {
            if let Some(inside) = local.inside(&p) {
                self.touched.insert(inside);
            }
        }
        let now = Instant::now();
        let first = *self.first_event.get_or_insert(now);
        self.deadline = Some((now + DEBOUNCE).min(first + DEBOUNCE_MAX));
    }

    /// The settled paths, to scan now.
    pub(super) fn take(&mut self) -> Vec<String> {
        self.deadline = None;
        self.first_event = None;
        std::mem::take(&mut self.touched).into_iter().collect()
    }
}
