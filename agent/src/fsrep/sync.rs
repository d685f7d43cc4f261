//! One `FileReplication/Sync` stream, from the configuration to its end: the Hello, the changes
//! inotify shows (debounced, then scanned), the relayed states written, the actions asked for, and the
//! streamed contents uploaded and fetched beside the stream without holding it up.
//!
//! A streamed change goes up once its upload is done; a newer change of the same path cancels
//! it. A relayed state of a path whose local change is still uploading waits for that change to
//! go up: then the versions decide, here as on the controller. A relayed state fetched is written
//! once whole; a newer one of the same path cancels its fetch.

use super::actions::Plan;
use super::apply::{Prepared, Source};
use super::local::Local;
use super::staged::Staged;
use super::transfer::{self, FetchError};
use super::watch::{self, Settling, WatchMsg};
use super::{FsrepError, Setup, send, up};
use clustermgr_proto::file_replication_client::FileReplicationClient;
use clustermgr_proto::{
    FsrepAck, FsrepAction, FsrepActionRun, FsrepChange, FsrepDown, FsrepFile, FsrepReport,
    FsrepRestart, FsrepUp, fsrep_down, fsrep_up,
};
use clustermgr_shared::MAX_MESSAGE_BYTES;
use clustermgr_shared::fsrep as rules;
use clustermgr_shared::util::now_ms;
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

const SCAN_EVERY: Duration = Duration::from_secs(30);
const SCAN_EVERY_UNWATCHED: Duration = Duration::from_secs(2);
const ACTION_RUNS_KEPT: usize = 20;
/// How often a node without Gluu looks again.
const INSTALL_CHECK: Duration = Duration::from_secs(5);
/// Waits before the second and third try of a fetch that broke.
const FETCH_RETRIES: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(4)];

/// A transfer beside the stream has ended.
enum Done {
    Uploaded {
        seq: u64,
        change: FsrepChange,
        result: Result<String, String>,
    },
    Fetched {
        seq: u64,
        file: FsrepFile,
        result: Result<Staged, FetchError>,
    },
}

struct Uploading {
    seq: u64,
    task: AbortHandle,
    /// A relayed state of the path that waits for the change to go up (the newest).
    deferred: Option<FsrepFile>,
}

struct Fetching {
    seq: u64,
    task: AbortHandle,
}

struct Stream<'a> {
    s: &'a Setup,
    tx: mpsc::Sender<FsrepUp>,
    local: Local,
    actions: Vec<FsrepAction>,
    report: FsrepReport,
    runs: &'a mut Vec<FsrepActionRun>,
    watcher: Option<notify::RecommendedWatcher>,
    watched: BTreeSet<PathBuf>,
    plan: Plan,
    uploads: HashMap<String, Uploading>,
    fetches: HashMap<String, Fetching>,
    seq: u64,
    done_tx: mpsc::UnboundedSender<Done>,
}

impl Drop for Stream<'_> {
    fn drop(&mut self) {
        for u in self.uploads.values() {
            u.task.abort();
        }
        for f in self.fetches.values() {
            f.task.abort();
        }
    }
}

pub(super) async fn sync_once(s: &Setup, runs: &mut Vec<FsrepActionRun>) -> Result<(), FsrepError> {
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
    let tree = match super::tree(&s.host) {
        Ok(t) => t,
        Err(why) => return inactive(s, &tx, &mut down, why, runs).await,
    };
    let local = tokio::task::block_in_place(|| {
        Local::load(&tree.base, &s.root, &s.state_file, &s.node_id, cfg.clone())
    })?;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut st = Stream::new(s, tx, local, &cfg, &tree, runs, done_tx);
    // Watches first, then the scan: nothing that changes in between is missed.
    let (wtx, mut wrx) = mpsc::unbounded_channel::<WatchMsg>();
    let all = cfg.paths.clone();
    st.begin(wtx, &all).await?;

    let mut settling = Settling::default();
    let scan_every = |r: &FsrepReport| {
        if r.watch_error.is_empty() {
            SCAN_EVERY
        } else {
            SCAN_EVERY_UNWATCHED
        }
    };
    let mut next_scan = Instant::now() + scan_every(&st.report);
    let mut watching = true;
    let mut save = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            m = down.message() => {
                let Some(m) = m? else { return Ok(()) };
                match m.msg {
                    Some(fsrep_down::Msg::Apply(f)) => st.on_apply(f).await?,
                    Some(fsrep_down::Msg::Adopt(k)) => st.local.adopt(k),
                    // A new configuration: start again with it.
                    Some(fsrep_down::Msg::Config(_)) => return Ok(()),
                    None => {}
                }
            }
            Some(d) = done_rx.recv() => st.on_done(d).await?,
            w = wrx.recv(), if watching => match w {
                Some(WatchMsg::Paths(paths)) => settling.add(&st.local, paths),
                Some(WatchMsg::Error(e)) => {
                    tracing::warn!(error = %e, "file watch error; scanning periodically");
                    st.report.watch_error = e;
                    next_scan = Instant::now() + scan_every(&st.report);
                    st.send_report().await?;
                }
                // No watcher (it could not be made): periodic scans only.
                None => watching = false,
            },
            _ = sleep_until(settling.deadline) => {
                let paths = settling.take();
                // New directories need their own watches (notify adds them for recursive
                // watches, but a configured directory created later does not have one).
                st.rescan(&paths).await?;
            }
            _ = tokio::time::sleep_until(next_scan) => {
                next_scan = Instant::now() + scan_every(&st.report);
                // Gluu installed, removed or repackaged since: start again with its tree.
                if super::tree(&s.host).map(|t| t.base).as_ref() != Ok(&tree.base) {
                    return Ok(());
                }
                st.rescan(&all).await?;
            }
            _ = sleep_until(st.plan.next()) => st.run_actions().await?,
            _ = save.tick() => {
                if st.local.dirty
                    && let Err(e) = tokio::task::block_in_place(|| st.local.save())
                {
                    tracing::warn!(error = %e, "cannot save the file replication state");
                }
            }
        }
    }
}

/// No Gluu Server to replicate yet: the status says why, and the stream starts again once one
/// is there (or the configuration changes).
async fn inactive(
    s: &Setup,
    tx: &mpsc::Sender<FsrepUp>,
    down: &mut tonic::Streaming<FsrepDown>,
    why: String,
    runs: &[FsrepActionRun],
) -> Result<(), FsrepError> {
    tracing::info!(reason = %why, "file replication waits for Gluu");
    let mut report = FsrepReport {
        inactive: why,
        action_runs: runs.to_vec(),
        ..Default::default()
    };
    send(tx, up(fsrep_up::Msg::Report(report.clone()))).await?;
    let mut tick = tokio::time::interval(INSTALL_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            m = down.message() => match m? {
                None | Some(FsrepDown { msg: Some(fsrep_down::Msg::Config(_)) }) => return Ok(()),
                Some(_) => {}
            },
            _ = tick.tick() => match super::tree(&s.host) {
                Ok(_) => return Ok(()),
                Err(why) if why != report.inactive => {
                    tracing::info!(reason = %why, "file replication waits for Gluu");
                    report.inactive = why;
                    send(tx, up(fsrep_up::Msg::Report(report.clone()))).await?;
                }
                Err(_) => {}
            },
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn matching<'a>(actions: &'a [FsrepAction], path: &str) -> impl Iterator<Item = &'a FsrepAction> {
    let path = path.to_string();
    actions
        .iter()
        .filter(move |a| rules::glob(&a.pattern, &path))
}

impl<'a> Stream<'a> {
    fn new(
        s: &'a Setup,
        tx: mpsc::Sender<FsrepUp>,
        local: Local,
        cfg: &clustermgr_proto::FsrepConfig,
        tree: &super::Tree,
        runs: &'a mut Vec<FsrepActionRun>,
        done_tx: mpsc::UnboundedSender<Done>,
    ) -> Self {
        Stream {
            s,
            tx,
            local,
            actions: cfg.actions.clone(),
            report: FsrepReport {
                action_runs: runs.clone(),
                flavor: tree.flavor.to_string(),
                base: tree.base.display().to_string(),
                ..Default::default()
            },
            watcher: None,
            watched: BTreeSet::new(),
            plan: Plan::new(
                Duration::from_millis(cfg.action_interval_ms),
                runs,
                Instant::now(),
            ),
            runs,
            uploads: HashMap::new(),
            fetches: HashMap::new(),
            seq: 0,
            done_tx,
        }
    }

    /// The stream's start: the watches (reporting to `wtx`), then the first scan of `all`,
    /// the hello, what the scan found and the first report.
    async fn begin(
        &mut self,
        wtx: mpsc::UnboundedSender<WatchMsg>,
        all: &[String],
    ) -> Result<(), FsrepError> {
        self.watcher = watch::watcher(wtx, &mut self.report);
        self.add_watches();
        let changes = tokio::task::block_in_place(|| self.local.scan(all));
        let hello = clustermgr_proto::FsrepHello {
            known: self.local.known(),
            changes: Vec::new(),
        };
        send(&self.tx, up(fsrep_up::Msg::Hello(hello))).await?;
        self.emit(changes).await?;
        self.report.refused = self.local.refused.clone();
        self.send_report().await
    }

    /// Scans `paths` (new directories get their watches first) and sends what changed.
    async fn rescan(&mut self, paths: &[String]) -> Result<(), FsrepError> {
        self.add_watches();
        let changes = tokio::task::block_in_place(|| self.local.scan(paths));
        self.emit(changes).await?;
        self.report_refused().await
    }

    fn add_watches(&mut self) {
        watch::add_watches(
            &mut self.watcher,
            &self.local,
            &mut self.watched,
            &mut self.report,
        );
    }

    async fn send_report(&mut self) -> Result<(), FsrepError> {
        send(&self.tx, up(fsrep_up::Msg::Report(self.report.clone()))).await
    }

    async fn report_refused(&mut self) -> Result<(), FsrepError> {
        let capped = self.capped(Instant::now());
        if self.report.refused != self.local.refused || self.report.capped != capped {
            self.report.refused = self.local.refused.clone();
            self.report.capped = capped;
            self.send_report().await?;
        }
        Ok(())
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Sends local changes: inline ones at once, streamed ones once uploaded.
    async fn emit(&mut self, changes: Vec<FsrepChange>) -> Result<(), FsrepError> {
        for c in changes {
            let Some(f) = c.file.clone() else { continue };
            // A newer change of a path still uploading replaces it.
            let deferred = self.uploads.remove(&f.path).and_then(|u| {
                u.task.abort();
                u.deferred
            });
            if !rules::streamed(&f) {
                send(&self.tx, up(fsrep_up::Msg::Change(c))).await?;
                if let Some(d) = deferred {
                    self.on_apply(d).await?;
                }
                continue;
            }
            let file = match self.local.open_for_upload(&f.path) {
                Ok(file) => file,
                Err(e) => {
                    self.local.unsend(&f.path);
                    self.local.refuse(format!("{}: {e}", f.path));
                    if let Some(d) = deferred {
                        self.on_apply(d).await?;
                    }
                    continue;
                }
            };
            let seq = self.next_seq();
            let (channel, done) = (self.s.channel.clone(), self.done_tx.clone());
            let head = FsrepFile {
                content: Vec::new(),
                ..f.clone()
            };
            let task = tokio::spawn(async move {
                let result = transfer::upload(channel, head, file).await;
                let _ = done.send(Done::Uploaded {
                    seq,
                    change: c,
                    result,
                });
            })
            .abort_handle();
            self.uploads.insert(
                f.path,
                Uploading {
                    seq,
                    task,
                    deferred,
                },
            );
        }
        Ok(())
    }

    /// A relayed state: written now (inline), or fetched first (streamed).
    async fn on_apply(&mut self, f: FsrepFile) -> Result<(), FsrepError> {
        if let Some(u) = self.uploads.get_mut(&f.path) {
            let newer = u.deferred.as_ref().is_none_or(|d| {
                rules::cmp_versions(d.version.as_ref(), f.version.as_ref()) == Ordering::Less
            });
            if newer {
                u.deferred = Some(f);
            }
            return Ok(());
        }
        if let Some(x) = self.fetches.remove(&f.path) {
            x.task.abort();
        }
        if !rules::streamed(&f) {
            let path = f.path.clone();
            let (ack, changed) = tokio::task::block_in_place(|| self.local.apply(f));
            return self.applied(&path, ack, changed).await;
        }
        match tokio::task::block_in_place(|| self.local.prepare(&f)) {
            Prepared::Done(ack) => self.applied(&f.path, ack, false).await,
            Prepared::Local => {
                let path = f.path.clone();
                let (ack, changed) =
                    tokio::task::block_in_place(|| self.local.apply_from(f, Source::Local));
                self.applied(&path, ack, changed).await
            }
            Prepared::Fetch(staged) => {
                let seq = self.next_seq();
                let (channel, done) = (self.s.channel.clone(), self.done_tx.clone());
                let path = f.path.clone();
                let task = tokio::spawn(async move {
                    let result = fetch_retrying(channel, &f, staged).await;
                    let _ = done.send(Done::Fetched {
                        seq,
                        file: f,
                        result,
                    });
                })
                .abort_handle();
                self.fetches.insert(path, Fetching { seq, task });
                Ok(())
            }
        }
    }

    async fn on_done(&mut self, d: Done) -> Result<(), FsrepError> {
        match d {
            Done::Uploaded {
                seq,
                mut change,
                result,
            } => {
                let path = change
                    .file
                    .as_ref()
                    .map(|f| f.path.clone())
                    .unwrap_or_default();
                // Replaced by a newer change meanwhile.
                if self.uploads.get(&path).is_none_or(|u| u.seq != seq) {
                    return Ok(());
                }
                let deferred = self.uploads.remove(&path).and_then(|u| u.deferred);
                match result {
                    Ok(id) => {
                        change.upload = id;
                        self.local.sent(&path);
                        send(&self.tx, up(fsrep_up::Msg::Change(change))).await?;
                    }
                    Err(e) => {
                        // Found again by a later scan.
                        self.local.unsend(&path);
                        self.local.refuse(format!("{path}: {e}"));
                        self.report_refused().await?;
                    }
                }
                if let Some(d) = deferred {
                    self.on_apply(d).await?;
                }
                Ok(())
            }
            Done::Fetched { seq, file, result } => {
                if self.fetches.get(&file.path).is_none_or(|x| x.seq != seq) {
                    return Ok(());
                }
                self.fetches.remove(&file.path);
                let path = file.path.clone();
                let mut ack = FsrepAck {
                    path: path.clone(),
                    version: file.version.clone(),
                    error: String::new(),
                };
                match result {
                    Ok(staged) => {
                        let (ack, changed) = tokio::task::block_in_place(|| {
                            self.local.apply_from(file, Source::Staged(staged))
                        });
                        self.applied(&path, ack, changed).await
                    }
                    // A newer version is on its way; the controller ignores this answer.
                    Err(FetchError::Superseded) => {
                        ack.error = "superseded by a newer version".into();
                        send(&self.tx, up(fsrep_up::Msg::Ack(ack))).await
                    }
                    Err(FetchError::Failed(e)) => {
                        self.local.refuse(format!("{path}: {e}"));
                        ack.error = e;
                        self.applied(&path, ack, false).await
                    }
                }
            }
        }
    }

    /// After a relayed state was handled: watches, actions, the acknowledgement.
    async fn applied(
        &mut self,
        path: &str,
        ack: FsrepAck,
        changed: bool,
    ) -> Result<(), FsrepError> {
        if changed {
            // A configured directory replication just created gets its watch.
            self.add_watches();
            let now = Instant::now();
            for a in matching(&self.actions, path) {
                self.plan.touch(&a.service, now);
            }
            // Said before the acknowledgement, so a caller that sees the write acknowledged
            // also sees the action coming.
            let capped = self.capped(now);
            if (self.plan.pending() && !self.report.actions_pending) || capped != self.report.capped
            {
                self.report.actions_pending = self.plan.pending();
                self.report.capped = capped;
                self.send_report().await?;
            }
        }
        send(&self.tx, up(fsrep_up::Msg::Ack(ack))).await?;
        self.report_refused().await
    }

    /// The services due are asked of the controller, which restarts them drained (a
    /// gluu-restart workflow of this node); the node restarts nothing by itself.
    async fn run_actions(&mut self) -> Result<(), FsrepError> {
        let due = self.plan.take_due(Instant::now());
        if !due.is_empty() {
            let restart = FsrepRestart {
                services: due.clone(),
            };
            send(&self.tx, up(fsrep_up::Msg::Restart(restart))).await?;
            let unix_ms = now_ms();
            for service in due {
                self.runs.push(FsrepActionRun {
                    service,
                    unix_ms,
                    error: String::new(),
                });
            }
            let cut = self.runs.len().saturating_sub(ACTION_RUNS_KEPT);
            self.runs.drain(..cut);
        }
        self.report.action_runs = self.runs.clone();
        self.report.actions_pending = self.plan.pending();
        self.report.capped = self.capped(Instant::now());
        self.send_report().await
    }

    /// What a limit holds back here: the local ones and the actions waiting for their interval.
    fn capped(&self, now: Instant) -> Vec<String> {
        let mut c = self.local.capped.clone();
        c.extend(self.plan.deferred(now));
        c
    }
}

/// A fetch, tried again (from an emptied file) after a broken transfer.
async fn fetch_retrying(
    channel: tonic::transport::Channel,
    f: &FsrepFile,
    mut staged: Staged,
) -> Result<Staged, FetchError> {
    let mut waits = FETCH_RETRIES.iter();
    loop {
        match transfer::fetch(channel.clone(), f, &mut staged).await {
            Ok(()) => return Ok(staged),
            Err(FetchError::Failed(e)) => match waits.next() {
                Some(w) => {
                    tracing::warn!(path = %f.path, error = %e, "fetch of a replicated file failed; trying again");
                    tokio::time::sleep(*w).await;
                    staged.reset().map_err(FetchError::Failed)?;
                }
                None => return Err(FetchError::Failed(e)),
            },
            Err(e) => return Err(e),
        }
    }
}
