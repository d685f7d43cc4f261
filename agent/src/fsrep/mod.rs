//! File replication, the node's half: one `FileReplication/Sync` stream on the session's
//! connection. The controller sends the configuration; when replication is on for this node,
//! the agent scans the replicated paths, says what it holds (`Hello`), then sends the changes
//! inotify shows (directories watched recursively, never through a symbolic link; events
//! debounced, then the touched paths scanned) and writes the changes relayed to it.
//!
//! When the kernel cannot watch every directory (ENOSPC: the inotify watch limit) the agent says
//! so in its report and scans every 2 s instead of every 30 s. Nothing is lost either way: every
//! scan compares the files with what was last sent or written.

pub mod local;

use crate::host::{Command, Host};
use clustermgr_proto::file_replication_client::FileReplicationClient;
use clustermgr_proto::{
    FsrepAction, FsrepActionRun, FsrepDown, FsrepReport, FsrepUp, fsrep_down, fsrep_up,
};
use clustermgr_shared::MAX_MESSAGE_BYTES;
use clustermgr_shared::fsrep as rules;
use clustermgr_shared::util::now_ms;
use local::Local;
use notify::{RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

/// Quiet time after the last event before the touched paths are scanned.
const DEBOUNCE: Duration = Duration::from_millis(30);
/// Longest a burst of events delays a scan.
const DEBOUNCE_MAX: Duration = Duration::from_millis(300);
const SCAN_EVERY: Duration = Duration::from_secs(30);
const SCAN_EVERY_UNWATCHED: Duration = Duration::from_secs(2);
/// Quiet time after a relayed write before the actions run (a burst restarts a service once).
const ACTION_DELAY: Duration = Duration::from_secs(1);
const ACTION_RUNS_KEPT: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum FsrepError {
    #[error("file replication stream: {0}")]
    Stream(#[from] tonic::Status),
    #[error("{0}")]
    Local(#[from] local::LocalError),
    #[error("the controller did not start with the configuration")]
    NoConfig,
}

/// Where the agent keeps what it knows of the replicated paths.
pub struct Setup {
    pub channel: tonic::transport::Channel,
    pub node_id: String,
    pub root: PathBuf,
    pub state_file: PathBuf,
    pub host: Host,
}

/// Keeps the stream up for the session's lifetime (the session aborts this task when it ends).
pub async fn run(s: Setup) {
    let mut runs: Vec<FsrepActionRun> = Vec::new();
    let mut backoff = Duration::from_millis(250);
    loop {
        match sync_once(&s, &mut runs).await {
            // Ended by the controller (a new configuration): open it again soon.
            Ok(()) => {
                tracing::debug!("file replication stream ended");
                backoff = Duration::from_millis(250);
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "file replication stream ended");
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        let jitter = 0.5 + rand::random::<f64>() * 0.5;
        tokio::time::sleep(backoff.mul_f64(jitter)).await;
    }
}

enum WatchMsg {
    Paths(Vec<PathBuf>),
    Error(String),
}

fn up(msg: fsrep_up::Msg) -> FsrepUp {
    FsrepUp { msg: Some(msg) }
}

async fn sync_once(s: &Setup, runs: &mut Vec<FsrepActionRun>) -> Result<(), FsrepError> {
    let mut client = FileReplicationClient::new(s.channel.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let (tx, rx) = mpsc::channel::<FsrepUp>(256);
    let mut down = client.sync(ReceiverStream::new(rx)).await?.into_inner();
    let cfg = match down.message().await? {
        Some(FsrepDown {
            msg: Some(fsrep_down::Msg::Config(c)),
        }) => c,
        _ => return Err(FsrepError::NoConfig),
    };
    if !cfg.enabled {
        // Off for this node: wait for the controller to end the stream (a new configuration).
        while down.message().await?.is_some() {}
        return Ok(());
    }
    let actions = cfg.actions.clone();
    let mut local = tokio::task::block_in_place(|| {
        Local::load(&s.root, &s.state_file, &s.node_id, cfg.clone())
    })?;

    // Watches first, then the scan: nothing that changes in between is missed.
    let (wtx, mut wrx) = mpsc::unbounded_channel::<WatchMsg>();
    let handler = move |res: notify::Result<notify::Event>| {
        use notify::event::{AccessKind, AccessMode, EventKind};
        let _ = match res {
            // Opens and reads (our own scans make them) change nothing; a close after writing does.
            Ok(ev) if matches!(ev.kind, EventKind::Access(a) if a != AccessKind::Close(AccessMode::Write)) => {
                Ok(())
            }
            Ok(ev) => wtx.send(WatchMsg::Paths(ev.paths)),
            Err(e) => wtx.send(WatchMsg::Error(e.to_string())),
        };
    };
    let mut report = FsrepReport {
        action_runs: runs.clone(),
        ..Default::default()
    };
    let mut watcher = match notify::RecommendedWatcher::new(
        handler,
        notify::Config::default().with_follow_symlinks(false),
    ) {
        Ok(w) => Some(w),
        Err(e) => {
            report.watch_error = e.to_string();
            None
        }
    };
    let mut watched: BTreeSet<PathBuf> = BTreeSet::new();
    add_watches(&mut watcher, &local, &mut watched, &mut report);

    let all = cfg.paths.clone();
    let changes = tokio::task::block_in_place(|| local.scan(&all));
    let hello = clustermgr_proto::FsrepHello {
        known: local.known(),
        changes: Vec::new(),
    };
    send(&tx, up(fsrep_up::Msg::Hello(hello))).await?;
    for c in changes {
        send(&tx, up(fsrep_up::Msg::Change(c))).await?;
    }
    report.refused = local.refused.clone();
    send(&tx, up(fsrep_up::Msg::Report(report.clone()))).await?;

    let mut touched: BTreeSet<String> = BTreeSet::new();
    let mut first_event: Option<Instant> = None;
    let mut deadline: Option<Instant> = None;
    let mut services: BTreeSet<String> = BTreeSet::new();
    let mut actions_at: Option<Instant> = None;
    let scan_every = |r: &FsrepReport| {
        if r.watch_error.is_empty() {
            SCAN_EVERY
        } else {
            SCAN_EVERY_UNWATCHED
        }
    };
    let mut next_scan = Instant::now() + scan_every(&report);
    let mut watching = true;
    let mut save = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            m = down.message() => {
                let Some(m) = m? else { return Ok(()) };
                match m.msg {
                    Some(fsrep_down::Msg::Apply(f)) => {
                        let path = f.path.clone();
                        let (ack, changed) = tokio::task::block_in_place(|| local.apply(f));
                        if changed {
                            // A configured directory replication just created gets its watch.
                            add_watches(&mut watcher, &local, &mut watched, &mut report);
                            for a in matching(&actions, &path) {
                                services.insert(a.service.clone());
                                actions_at = Some(Instant::now() + ACTION_DELAY);
                            }
                            // Said before the acknowledgement, so a caller that sees the write
                            // acknowledged also sees the action coming.
                            if actions_at.is_some() && !report.actions_pending {
                                report.actions_pending = true;
                                send(&tx, up(fsrep_up::Msg::Report(report.clone()))).await?;
                            }
                        }
                        send(&tx, up(fsrep_up::Msg::Ack(ack))).await?;
                    }
                    Some(fsrep_down::Msg::Adopt(k)) => local.adopt(k),
                    // A new configuration: start again with it.
                    Some(fsrep_down::Msg::Config(_)) => return Ok(()),
                    None => {}
                }
            }
            w = wrx.recv(), if watching => match w {
                Some(WatchMsg::Paths(paths)) => {
                    for p in paths {
                        if let Some(inside) = local.inside(&p) {
                            touched.insert(inside);
                        }
                    }
                    let now = Instant::now();
                    let first = *first_event.get_or_insert(now);
                    deadline = Some((now + DEBOUNCE).min(first + DEBOUNCE_MAX));
                }
                Some(WatchMsg::Error(e)) => {
                    tracing::warn!(error = %e, "file watch error; scanning periodically");
                    report.watch_error = e;
                    next_scan = Instant::now() + scan_every(&report);
                    send(&tx, up(fsrep_up::Msg::Report(report.clone()))).await?;
                }
                // No watcher (it could not be made): periodic scans only.
                None => watching = false,
            },
            _ = sleep_until(deadline) => {
                deadline = None;
                first_event = None;
                let paths: Vec<String> = std::mem::take(&mut touched).into_iter().collect();
                // New directories need their own watches (notify adds them for recursive
                // watches, but a configured directory created later does not have one).
                add_watches(&mut watcher, &local, &mut watched, &mut report);
                let changes = tokio::task::block_in_place(|| local.scan(&paths));
                for c in changes {
                    send(&tx, up(fsrep_up::Msg::Change(c))).await?;
                }
                if report.refused != local.refused {
                    report.refused = local.refused.clone();
                    send(&tx, up(fsrep_up::Msg::Report(report.clone()))).await?;
                }
            }
            _ = tokio::time::sleep_until(next_scan) => {
                next_scan = Instant::now() + scan_every(&report);
                add_watches(&mut watcher, &local, &mut watched, &mut report);
                let changes = tokio::task::block_in_place(|| local.scan(&all));
                for c in changes {
                    send(&tx, up(fsrep_up::Msg::Change(c))).await?;
                }
            }
            _ = sleep_until(actions_at) => {
                actions_at = None;
                for svc in std::mem::take(&mut services) {
                    let run = run_action(&s.host, &svc).await;
                    runs.push(run);
                    if runs.len() > ACTION_RUNS_KEPT {
                        runs.remove(0);
                    }
                }
                report.action_runs = runs.clone();
                report.actions_pending = false;
                send(&tx, up(fsrep_up::Msg::Report(report.clone()))).await?;
            }
            _ = save.tick() => {
                if local.dirty
                    && let Err(e) = tokio::task::block_in_place(|| local.save())
                {
                    tracing::warn!(error = %e, "cannot save the file replication state");
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn send(tx: &mpsc::Sender<FsrepUp>, m: FsrepUp) -> Result<(), FsrepError> {
    tx.send(m)
        .await
        .map_err(|_| FsrepError::Stream(tonic::Status::unavailable("stream closed")))
}

/// Watches every configured directory that exists (recursively; never through a link).
fn add_watches(
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

fn matching<'a>(actions: &'a [FsrepAction], path: &str) -> impl Iterator<Item = &'a FsrepAction> {
    let path = path.to_string();
    actions
        .iter()
        .filter(move |a| rules::glob(&a.pattern, &path))
}

/// Restarts one Gluu service inside Gluu (the machine's systemd unit, or the chroot's init script).
async fn run_action(host: &Host, service: &str) -> FsrepActionRun {
    let mut run = FsrepActionRun {
        service: service.to_string(),
        unix_ms: now_ms(),
        error: String::new(),
    };
    let layout = match crate::ops::gluu::Layout::detect(host) {
        Ok(l) => l,
        Err(e) => {
            run.error = e.0;
            return run;
        }
    };
    let (ltx, mut lrx) = mpsc::unbounded_channel();
    let mut log = crate::ops::Log::new(ltx);
    let r = match layout.service(service, crate::ops::gluu::ServiceAction::Restart) {
        Ok(argv) => {
            let cmd = Command::new(argv);
            crate::ops::run_checked(host, &cmd, &mut log, &format!("restart {service}"))
                .await
                .map(|_| ())
        }
        Err(e) => Err(e),
    };
    while let Ok((_, line)) = lrx.try_recv() {
        tracing::info!(action = %service, "{line}");
    }
    if let Err(e) = r {
        run.error = e.0;
    }
    run
}
