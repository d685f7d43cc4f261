//! File replication, the controller's half: settings, the order of changes, conflicts, fan-out
//! and catch-up.
//!
//! Every Gluu server's agent keeps one `FileReplication/Sync` stream. Changes are decided one at
//! a time under one lock, so every node sees the same order:
//! - same content as the current state: nothing to relay, the sender adopts the current version;
//! - based on the current version: accepted, stored (sealed), then relayed to every other node;
//! - based on another version (two nodes edited concurrently): a conflict. The greater version
//!   (hybrid clock, then node id) wins everywhere; the loser is kept by the nodes as a backup
//!   generation (they back up before every overwrite), listed in `fsrep status` and audited.
//!
//! The current version of a path only ever grows, so a node ignores a relayed state older than
//! what it has. A delete is a tombstone: a node that was away is told about it at its next
//! `Hello` and deletes its copy instead of bringing it back. A tombstone is forgotten only once
//! it is older than [`TOMBSTONE_TTL`] and every server has reported, since this controller
//! started, that it holds the delete (or never had the path): no node can bring the file back.
//!
//! Contents up to [`rules::INLINE_MAX_BYTES`] travel in the messages; larger ones (up to the
//! operator's per-file limit) are streamed (`transfer`). Either way the controller keeps every
//! content on disk (`blobs`), never in memory: the state and the store record hold the size and
//! hash, and an inline content is read back from disk when it is sent.
//!
//! Nothing a node sends is trusted beyond its limits (`limits`): the paths kept and their bytes
//! are capped, a node's changes are admitted at a bounded rate, the commit queue is bounded, and a
//! clock ahead of the controller's by more than [`MAX_CLOCK_SKEW`] is refused. What a limit held
//! back shows per node in `fsrep status`. Only approved servers replicate.

pub(crate) mod blobs;
mod decide;
mod limits;
mod relay;
mod restart;
mod settings;
mod status;
mod transfer;

pub use limits::MAX_CLOCK_SKEW;
pub use settings::{change_audit, check_dir, default_settings, follow_components};
pub use transfer::{Parts, receive_upload, send_parts};

use crate::ctl::Ctl;
use crate::error::{Classify, Kind};
use crate::store::StoreError;
use blobs::{BlobError, Blobs};
use clustermgr_proto::{
    FsrepConfig, FsrepConflict, FsrepDown, FsrepFile, FsrepReport, FsrepSettings, FsrepUp,
    FsrepVersion, fsrep_down, fsrep_up,
};
use clustermgr_shared::fsrep as rules;
use clustermgr_shared::util::now_ms;
use decide::collectable;
use prost::Message;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tonic::Status;
use transfer::Upload;

const SEAL_PURPOSE: &str = "fsrep.file";
/// How long a delete is remembered at least (see the module comment).
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often forgettable tombstones are looked for.
const TOMBSTONE_SWEEP: Duration = Duration::from_secs(3600);

/// Conflicts listed by `fsrep status` (the audit log keeps all of them).
const CONFLICTS_KEPT: usize = 100;
/// Latency samples kept for the percentiles.
const SAMPLES_KEPT: usize = 100_000;
/// Unacknowledged catch-up writes per node (the stream's queue holds more for live changes).
const IN_FLIGHT: usize = 512;
pub const LATENCY_BOUNDS_MS: &[u64] = &[5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000];

#[derive(Debug, thiserror::Error)]
pub enum FsrepError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot seal or open a replicated file: {0}")]
    Seal(String),
    #[error("invalid path {path:?}: {why}")]
    BadPath { path: String, why: String },
    #[error("{0:?} is already in the list")]
    Exists(String),
    #[error("{0:?} is not in the list")]
    NotFound(String),
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
    #[error(
        "{path}: {size} bytes, over the replication limit of {max} bytes (fsrep max-file-size)"
    )]
    TooLarge { path: String, size: u64, max: u64 },
    #[error("file replication is not on for this node (no open stream)")]
    NotReplicating,
    #[error("{0}")]
    Capped(String),
    #[error("{0}: that version is no longer the current one")]
    NotCurrent(String),
    #[error("the transfer broke: {0}")]
    Transfer(String),
    #[error(transparent)]
    Blob(#[from] BlobError),
}

impl Classify for FsrepError {
    fn kind(&self) -> Kind {
        match self {
            Self::Store(_) | Self::Seal(_) => Kind::Internal,
            Self::BadPath { .. } | Self::Invalid { .. } => Kind::InvalidArgument,
            Self::Exists(_) => Kind::AlreadyExists,
            Self::NotFound(_) | Self::NotCurrent(_) => Kind::NotFound,
            Self::TooLarge { .. } | Self::Capped(_) => Kind::ResourceExhausted,
            Self::NotReplicating => Kind::FailedPrecondition,
            Self::Transfer(_) => Kind::Unavailable,
            Self::Blob(BlobError::NoSpace { .. }) => Kind::ResourceExhausted,
            Self::Blob(BlobError::Size { .. } | BlobError::Hash) => Kind::InvalidArgument,
            Self::Blob(_) => Kind::Internal,
        }
    }
}

pub type Down = Result<FsrepDown, Status>;
type Commit = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

/// A decided change still to be committed (and then relayed).
pub struct Pending {
    commit: Commit,
    relay: Option<(String, FsrepFile, Instant)>,
    /// The streamed content the change replaced, removed once the change is recorded.
    drop_blob: Option<PathBuf>,
}

struct Peer {
    generation: u64,
    tx: mpsc::Sender<Down>,
    /// Replication is on for this node (enabled, and the node is a server).
    enabled: bool,
    /// Relayed, not yet acknowledged: path -> (version, when the controller received it).
    queued: HashMap<String, (FsrepVersion, Instant)>,
    /// Paths a catching-up node still lacks, sent as earlier ones are acknowledged.
    backlog: VecDeque<String>,
    /// The node said what it holds (`Hello`): it replicates (a node without Gluu never does).
    hello: bool,
}

/// A node's changes admitted per second (a token bucket, kept across its streams).
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Default)]
struct State {
    settings: FsrepSettings,
    files: BTreeMap<String, FsrepFile>,
    peers: HashMap<String, Peer>,
    /// The version each node holds of each path, as last reported (kept while it is away).
    known: HashMap<String, HashMap<String, FsrepVersion>>,
    reports: HashMap<String, FsrepReport>,
    last_error: HashMap<String, String>,
    conflicts: VecDeque<FsrepConflict>,
    latency_counts: Vec<u64>,
    samples: VecDeque<u64>,
    changes: u64,
    next_generation: u64,
    /// Uploads waiting for the change that names them, by id.
    uploads: HashMap<String, Upload>,
    /// Bytes of the current files (not the tombstones): what `files` names on disk.
    live_bytes: u64,
    /// What a limit or check held back, per node (newest last).
    capped: HashMap<String, VecDeque<limits::Capped>>,
    buckets: HashMap<String, Bucket>,
}

pub struct Fsrep {
    state: Mutex<State>,
    blobs: Blobs,
}

fn seal(ctl: &Ctl, f: &FsrepFile) -> Result<Vec<u8>, FsrepError> {
    ctl.sealer
        .seal(SEAL_PURPOSE, &f.encode_to_vec())
        .map_err(|e| FsrepError::Seal(e.to_string()))
}

fn hostname(ctl: &Ctl, id: &str) -> String {
    ctl.store
        .node(id)
        .ok()
        .flatten()
        .map_or_else(|| id.to_string(), |n| n.hostname)
}

impl Fsrep {
    /// The settings and every path's state from the store; streamed contents in `blob_dir`
    /// (what no current version names there is removed).
    pub fn load(
        store: &crate::store::Store,
        sealer: &crate::sealing::Sealer,
        blob_dir: &Path,
    ) -> Result<Self, FsrepError> {
        let settings = settings::loaded(store.fsrep_settings()?.and_then(|r| r.settings));
        let blobs = Blobs::open(blob_dir.to_path_buf())?;
        let mut files = BTreeMap::new();
        let mut keep = HashSet::new();
        let mut live_bytes = 0u64;
        for (path, sealed) in store.fsrep_files()? {
            let plain = sealer
                .open(SEAL_PURPOSE, &sealed)
                .map_err(|e| FsrepError::Seal(e.to_string()))?;
            let mut f =
                FsrepFile::decode(plain.as_slice()).map_err(|e| FsrepError::Seal(e.to_string()))?;
            let v = f.version.clone().unwrap_or_default();
            // A content recorded inline (before every content went to disk) goes to disk.
            if !f.deleted && !f.content.is_empty() {
                if !blobs.file(&path, &v).is_file() {
                    Blobs::sync(&blobs.write_whole(sealer, &path, &v, &f.content)?)?;
                }
                f.content = Vec::new();
            }
            if rules::streamed(&f) {
                if !blobs.file(&path, &v).is_file() {
                    tracing::error!(path = %path, "the content of a replicated file is missing on the controller; nodes cannot fetch it until it changes again");
                }
                keep.insert(Blobs::name(&path, &v));
            }
            if !f.deleted {
                live_bytes += f.size;
            }
            files.insert(path, f);
        }
        let swept = blobs.sweep(&keep);
        if swept > 0 {
            tracing::info!(
                count = swept,
                "file replication: unused contents removed from disk"
            );
        }
        let conflicts = store
            .fsrep_conflicts()?
            .map(|c| c.conflicts.into_iter().collect())
            .unwrap_or_default();
        Ok(Self {
            state: Mutex::new(State {
                settings,
                files,
                live_bytes,
                conflicts,
                latency_counts: vec![0; LATENCY_BOUNDS_MS.len() + 1],
                ..Default::default()
            }),
            blobs,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn settings(&self) -> FsrepSettings {
        self.lock().settings.clone()
    }

    fn config(settings: &FsrepSettings, enabled: bool) -> FsrepConfig {
        let limits = settings::limits(settings);
        FsrepConfig {
            enabled,
            paths: settings.paths.clone(),
            excludes: settings.excludes.clone(),
            actions: settings.actions.clone(),
            backups: settings.backups,
            max_file_bytes: settings.max_file_bytes,
            never: rules::NEVER.iter().map(|s| s.to_string()).collect(),
            owners: settings.owners.clone(),
            action_interval_ms: limits.action_interval_ms,
            backup_bytes: limits.backup_bytes,
        }
    }

    /// A server that is approved (a node awaiting approval neither sends nor receives files).
    fn eligible(ctl: &Ctl, node: &str) -> bool {
        matches!(ctl.store.server(node), Ok(Some(_)))
            && matches!(ctl.store.node(node), Ok(Some(n)) if n.approved)
    }

    /// A node's stream starts: it gets its configuration at once. Returns the stream's
    /// generation (a later stream of the same node replaces it).
    pub fn open(&self, ctl: &Ctl, node: &str, tx: mpsc::Sender<Down>) -> u64 {
        let eligible = Self::eligible(ctl, node);
        let mut st = self.lock();
        let enabled = st.settings.enabled && eligible;
        st.next_generation += 1;
        let generation = st.next_generation;
        let cfg = Self::config(&st.settings, enabled);
        let _ = tx.try_send(Ok(FsrepDown {
            msg: Some(fsrep_down::Msg::Config(cfg)),
        }));
        st.peers.insert(
            node.to_string(),
            Peer {
                generation,
                tx,
                enabled,
                queued: HashMap::new(),
                backlog: VecDeque::new(),
                hello: false,
            },
        );
        generation
    }

    /// Whether `generation` is still `node`'s stream (a later one, or a settings change, ends it).
    pub fn is_current(&self, node: &str, generation: u64) -> bool {
        self.lock()
            .peers
            .get(node)
            .is_some_and(|p| p.generation == generation)
    }

    /// Ends every node's stream (shutdown).
    pub fn close_all(&self) {
        self.lock().peers.clear();
    }

    pub fn close(&self, node: &str, generation: u64) {
        let mut st = self.lock();
        if st
            .peers
            .get(node)
            .is_some_and(|p| p.generation == generation)
        {
            st.peers.remove(node);
        }
    }

    /// One message from a node's stream. What must be committed before it is relayed comes
    /// back for the caller to run (in order, without holding up the stream).
    pub fn handle(&self, ctl: &Ctl, node: &str, generation: u64, up: FsrepUp) -> Vec<Pending> {
        let mut st = self.lock();
        match st.peers.get(node) {
            Some(p) if p.generation == generation && p.enabled => {}
            _ => return Vec::new(),
        }
        let received = Instant::now();
        match up.msg {
            Some(fsrep_up::Msg::Hello(h)) => {
                // Only what the controller keeps is remembered (bounded by its paths).
                let known: HashMap<String, FsrepVersion> = h
                    .known
                    .into_iter()
                    .filter(|k| st.files.contains_key(&k.path))
                    .filter_map(|k| k.version.map(|v| (k.path, v)))
                    .collect();
                st.known.insert(node.to_string(), known);
                let mut out = Vec::new();
                for ch in h.changes {
                    out.extend(self.change(&mut st, ctl, node, ch, received));
                }
                // Everything the node does not have yet, tombstones included.
                let cfg = Self::config(&st.settings, true);
                let mine = st.known.get(node).cloned().unwrap_or_default();
                let send: VecDeque<String> = st
                    .files
                    .values()
                    .filter(|f| rules::replicated(&f.path, &cfg))
                    .filter(|f| mine.get(&f.path) != f.version.as_ref())
                    .filter(|f| !f.deleted || mine.contains_key(&f.path))
                    .filter(|f| f.size <= cfg.max_file_bytes)
                    .map(|f| f.path.clone())
                    .collect();
                if let Some(p) = st.peers.get_mut(node) {
                    p.backlog = send;
                    p.hello = true;
                }
                self.pump(&mut st, &ctl.sealer, node, received);
                out
            }
            Some(fsrep_up::Msg::Change(ch)) => self
                .change(&mut st, ctl, node, ch, received)
                .into_iter()
                .collect(),
            Some(fsrep_up::Msg::Ack(a)) => {
                let Some(v) = a.version else {
                    return Vec::new();
                };
                let mut took = None;
                if let Some(p) = st.peers.get_mut(node)
                    && p.queued.get(&a.path).is_some_and(|(q, _)| *q == v)
                    && let Some((_, at)) = p.queued.remove(&a.path)
                {
                    took = Some(at.elapsed());
                }
                if let Some(d) = took {
                    st.record_latency(d);
                }
                self.pump(&mut st, &ctl.sealer, node, received);
                // A version replaced meanwhile (its fetch may have found it gone): the newer one
                // is on its way, and says what the node holds.
                if st.files.get(&a.path).and_then(|f| f.version.as_ref()) != Some(&v) {
                    return Vec::new();
                }
                if a.error.is_empty() {
                    st.known
                        .entry(node.to_string())
                        .or_default()
                        .insert(a.path, v);
                } else {
                    tracing::warn!(node = %node, path = %a.path, error = %a.error, "a node could not write a replicated file");
                    st.last_error.insert(
                        node.to_string(),
                        limits::bounded(format!("{}: {}", a.path, a.error)),
                    );
                }
                Vec::new()
            }
            Some(fsrep_up::Msg::Report(r)) => {
                let r = limits::bounded_report(r);
                if !r.watch_error.is_empty() {
                    tracing::warn!(node = %node, error = %r.watch_error, "file watch problem; the node scans periodically");
                }
                st.reports.insert(node.to_string(), r);
                Vec::new()
            }
            // Taken by the stream before this (`restart_wanted`).
            Some(fsrep_up::Msg::Restart(_)) | None => Vec::new(),
        }
    }

    /// Forgets the tombstones [`collectable`] names; returns their paths (to delete from the
    /// store).
    pub fn forget_tombstones(&self, servers: &[String], now_ms: u64) -> Vec<String> {
        let mut st = self.lock();
        let paths = collectable(
            &st.files,
            &st.known,
            servers,
            now_ms,
            TOMBSTONE_TTL.as_millis() as u64,
        );
        for p in &paths {
            st.remove_file(p);
            for k in st.known.values_mut() {
                k.remove(p);
            }
        }
        paths
    }

    /// Commits and relays decided changes in their order.
    pub async fn finish(&self, ctl: &Ctl, pending: Vec<Pending>) {
        for p in pending {
            if let Err(e) = p.commit.await {
                tracing::error!(error = %e, "cannot record a replicated change");
                continue;
            }
            if let Some(old) = p.drop_blob {
                // A fetch that opened it already reads on; a later one is told it is gone.
                let _ = std::fs::remove_file(old);
            }
            if let Some((origin, file, received)) = p.relay {
                self.relay(&ctl.sealer, &origin, file, received);
            }
        }
    }

    /// Ends the streams of nodes whose eligibility changed (a server added or removed, a node
    /// approved).
    fn recheck(&self, ctl: &Ctl) {
        let servers: HashSet<String> = match ctl.store.servers() {
            Ok(s) => s
                .into_iter()
                .map(|s| s.node_id)
                .filter(|id| matches!(ctl.store.node(id), Ok(Some(n)) if n.approved))
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the servers");
                return;
            }
        };
        let mut st = self.lock();
        let on = st.settings.enabled;
        st.peers
            .retain(|id, p| p.enabled == (on && servers.contains(id)));
    }
}

/// Every second: streams of nodes that became (or stopped being) servers start again.
pub fn start_membership_check(ctl: Arc<Ctl>, fsrep: Arc<Fsrep>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            fsrep.recheck(&ctl);
            fsrep.expire_uploads();
        }
    });
}

/// Forgets collectable tombstones every hour.
pub fn start_tombstone_sweeper(ctl: Arc<Ctl>, fsrep: Arc<Fsrep>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TOMBSTONE_SWEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let servers: Vec<String> = match ctl.store.servers() {
                Ok(s) => s.into_iter().map(|s| s.node_id).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the servers for the tombstone sweep");
                    continue;
                }
            };
            let paths = fsrep.forget_tombstones(&servers, now_ms());
            if paths.is_empty() {
                continue;
            }
            match ctl.store.delete_fsrep_files(paths.clone()).await {
                Ok(()) => tracing::info!(
                    count = paths.len(),
                    "file replication: deletes every server holds are forgotten"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot forget replicated deletes (kept until the next start)")
                }
            }
        }
    });
}
