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

use crate::audit::Audit;
use crate::error::{Classify, Kind};
use crate::server::Ctl;
use crate::store::StoreError;
use clustermgr_proto::fsrep_change_request::Change;
use clustermgr_proto::{
    FsrepAction, FsrepActionRun, FsrepChange, FsrepChangeRequest, FsrepConfig, FsrepConflict,
    FsrepConflictsRecord, FsrepDown, FsrepFile, FsrepKnown, FsrepNodeStatus, FsrepReport,
    FsrepSettings, FsrepSettingsRecord, FsrepStatus, FsrepUp, FsrepVersion, fsrep_down, fsrep_up,
};
use clustermgr_shared::fsrep as rules;
use clustermgr_shared::util::now_ms;
use prost::Message;
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tonic::Status;

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
}

impl Classify for FsrepError {
    fn kind(&self) -> Kind {
        match self {
            Self::Store(_) | Self::Seal(_) => Kind::Internal,
            Self::BadPath { .. } | Self::Invalid { .. } => Kind::InvalidArgument,
            Self::Exists(_) => Kind::AlreadyExists,
            Self::NotFound(_) => Kind::NotFound,
        }
    }
}

pub type Down = Result<FsrepDown, Status>;
type Commit = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

/// A decided change still to be committed (and then relayed).
pub struct Pending {
    commit: Commit,
    relay: Option<(String, FsrepFile, Instant)>,
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
}

pub struct Fsrep {
    state: Mutex<State>,
}

pub fn default_settings() -> FsrepSettings {
    FsrepSettings {
        enabled: false,
        paths: rules::DEFAULT_PATHS.iter().map(|s| s.to_string()).collect(),
        excludes: rules::DEFAULT_EXCLUDES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        actions: rules::default_actions(),
        backups: rules::DEFAULT_BACKUPS,
        max_file_bytes: clustermgr_shared::MAX_FILE_BYTES as u64,
    }
}

/// The paths whose tombstone can be forgotten: deleted longer than `ttl_ms` ago (by the
/// version's hybrid clock, milliseconds in its upper bits) and, for every server, a report
/// since this controller started that it holds that delete or no version of the path.
fn collectable(
    files: &BTreeMap<String, FsrepFile>,
    known: &HashMap<String, HashMap<String, FsrepVersion>>,
    servers: &[String],
    now_ms: u64,
    ttl_ms: u64,
) -> Vec<String> {
    if servers.is_empty() {
        return Vec::new();
    }
    files
        .values()
        .filter(|f| f.deleted)
        .filter(|f| {
            let at = f.version.as_ref().map_or(0, |v| v.hlc >> 16);
            now_ms.saturating_sub(at) > ttl_ms
        })
        .filter(|f| {
            servers.iter().all(|n| {
                known
                    .get(n)
                    .is_some_and(|k| k.get(&f.path).is_none_or(|v| Some(v) == f.version.as_ref()))
            })
        })
        .map(|f| f.path.clone())
        .collect()
}

fn same_content(a: &FsrepFile, b: &FsrepFile) -> bool {
    a.deleted == b.deleted
        && (a.deleted
            || (a.sha256 == b.sha256
                && a.mode == b.mode
                && a.owner == b.owner
                && a.group == b.group))
}

fn newer(a: &FsrepVersion, b: Option<&FsrepVersion>) -> bool {
    rules::cmp_versions(Some(a), b) == Ordering::Greater
}

/// What becomes of one change, given the current state of its path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    /// Same content as the current state: the sender records the current version.
    Adopt(FsrepVersion),
    /// The change becomes the current state at `version`; with a conflict (the change was not
    /// based on the current version but is the greater one): (winner, loser).
    Accept {
        version: FsrepVersion,
        conflict: Option<(FsrepVersion, FsrepVersion)>,
    },
    /// A concurrent change that lost: the current state stays.
    Lose {
        winner: FsrepVersion,
        loser: FsrepVersion,
    },
}

/// Orders one change against the current state (`v` is the change's version, its node id
/// already the sender's). The current version only grows: a change based on it but carrying a
/// smaller clock is given the next one.
fn decide(
    cur: Option<&FsrepFile>,
    file: &FsrepFile,
    base: Option<&FsrepVersion>,
    mut v: FsrepVersion,
) -> Decision {
    let cur_v = cur.and_then(|c| c.version.clone());
    if let Some(c) = cur
        && same_content(c, file)
    {
        return Decision::Adopt(cur_v.unwrap_or_default());
    }
    let fast_forward = cur.is_none() || base == cur_v.as_ref();
    if !fast_forward {
        let current = cur_v.unwrap_or_default();
        return if newer(&v, Some(&current)) {
            Decision::Accept {
                conflict: Some((v.clone(), current)),
                version: v,
            }
        } else {
            Decision::Lose {
                winner: current,
                loser: v,
            }
        };
    }
    if !newer(&v, cur_v.as_ref()) {
        v.hlc = cur_v.as_ref().map_or(0, |c| c.hlc) + 1;
    }
    Decision::Accept {
        version: v,
        conflict: None,
    }
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

/// The normalised form of a replicated directory, refused when it is `/`, holds a database
/// or lies in one.
pub fn check_dir(path: &str) -> Result<String, FsrepError> {
    let bad = |why: &str| FsrepError::BadPath {
        path: path.to_string(),
        why: why.to_string(),
    };
    let p = clustermgr_shared::paths::normalize(path).map_err(|e| bad(&e.to_string()))?;
    let s = p.display().to_string();
    if s == "/" {
        return Err(bad("the whole file system cannot be replicated"));
    }
    if rules::is_never(&s, rules::NEVER) {
        return Err(bad(
            "it is (or holds, or lies in) a directory database; databases are never replicated",
        ));
    }
    Ok(s)
}

fn check_service(s: &str) -> Result<(), FsrepError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
        && !s.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(FsrepError::Invalid {
            what: "service name",
            why: format!("{s:?} (letters, digits, - _ . @)"),
        })
    }
}

fn check_pattern(p: &str, what: &'static str) -> Result<(), FsrepError> {
    if p.is_empty() || p.len() > 1024 || p.contains('\0') || p.contains("/../") {
        return Err(FsrepError::Invalid {
            what,
            why: format!("{:?}", p.escape_default().to_string()),
        });
    }
    Ok(())
}

impl Fsrep {
    /// The settings and every path's state from the store.
    pub fn load(
        store: &crate::store::Store,
        sealer: &crate::sealing::Sealer,
    ) -> Result<Self, FsrepError> {
        let settings = store
            .fsrep_settings()?
            .and_then(|r| r.settings)
            .unwrap_or_else(default_settings);
        let mut files = BTreeMap::new();
        for (path, sealed) in store.fsrep_files()? {
            let plain = sealer
                .open(SEAL_PURPOSE, &sealed)
                .map_err(|e| FsrepError::Seal(e.to_string()))?;
            let f =
                FsrepFile::decode(plain.as_slice()).map_err(|e| FsrepError::Seal(e.to_string()))?;
            files.insert(path, f);
        }
        let conflicts = store
            .fsrep_conflicts()?
            .map(|c| c.conflicts.into_iter().collect())
            .unwrap_or_default();
        Ok(Self {
            state: Mutex::new(State {
                settings,
                files,
                conflicts,
                latency_counts: vec![0; LATENCY_BOUNDS_MS.len() + 1],
                ..Default::default()
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn settings(&self) -> FsrepSettings {
        self.lock().settings.clone()
    }

    fn config(settings: &FsrepSettings, enabled: bool) -> FsrepConfig {
        FsrepConfig {
            enabled,
            paths: settings.paths.clone(),
            excludes: settings.excludes.clone(),
            actions: settings.actions.clone(),
            backups: settings.backups,
            max_file_bytes: settings.max_file_bytes,
            never: rules::NEVER.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn eligible(ctl: &Ctl, node: &str) -> bool {
        matches!(ctl.store.server(node), Ok(Some(_)))
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
            },
        );
        generation
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
                let known: HashMap<String, FsrepVersion> = h
                    .known
                    .into_iter()
                    .filter_map(|k| k.version.map(|v| (k.path, v)))
                    .collect();
                st.known.insert(node.to_string(), known);
                let mut out = Vec::new();
                for ch in h.changes {
                    out.extend(Self::change(&mut st, ctl, node, ch, received));
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
                    .map(|f| f.path.clone())
                    .collect();
                if let Some(p) = st.peers.get_mut(node) {
                    p.backlog = send;
                }
                Self::pump(&mut st, node, received);
                out
            }
            Some(fsrep_up::Msg::Change(ch)) => Self::change(&mut st, ctl, node, ch, received)
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
                Self::pump(&mut st, node, received);
                if a.error.is_empty() {
                    st.known
                        .entry(node.to_string())
                        .or_default()
                        .insert(a.path, v);
                } else {
                    tracing::warn!(node = %node, path = %a.path, error = %a.error, "a node could not write a replicated file");
                    st.last_error
                        .insert(node.to_string(), format!("{}: {}", a.path, a.error));
                }
                Vec::new()
            }
            Some(fsrep_up::Msg::Report(r)) => {
                if !r.watch_error.is_empty() {
                    tracing::warn!(node = %node, error = %r.watch_error, "file watch problem; the node scans periodically");
                }
                st.reports.insert(node.to_string(), r);
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    fn send(st: &mut State, node: &str, msg: fsrep_down::Msg) -> bool {
        let Some(p) = st.peers.get(node) else {
            return false;
        };
        if p.tx.try_send(Ok(FsrepDown { msg: Some(msg) })).is_ok() {
            return true;
        }
        // A node that does not keep up starts again from a Hello (it catches up by versions).
        tracing::warn!(node = %node, "file replication queue full; the node's stream restarts");
        st.peers.remove(node);
        false
    }

    /// Sends a catching-up node more of what it lacks, keeping at most `IN_FLIGHT` unacknowledged.
    fn pump(st: &mut State, node: &str, received: Instant) {
        loop {
            let next = match st.peers.get_mut(node) {
                Some(p) if p.queued.len() < IN_FLIGHT => p.backlog.pop_front(),
                _ => None,
            };
            let Some(path) = next else { return };
            let Some(f) = st.files.get(&path).cloned() else {
                continue;
            };
            Self::send_apply(st, node, f, received);
        }
    }

    fn send_apply(st: &mut State, node: &str, f: FsrepFile, received: Instant) {
        let (path, v) = (f.path.clone(), f.version.clone().unwrap_or_default());
        if Self::send(st, node, fsrep_down::Msg::Apply(f))
            && let Some(p) = st.peers.get_mut(node)
        {
            p.queued.insert(path, (v, received));
        }
    }

    fn adopt(st: &mut State, node: &str, path: &str, v: FsrepVersion) {
        st.known
            .entry(node.to_string())
            .or_default()
            .insert(path.to_string(), v.clone());
        Self::send(
            st,
            node,
            fsrep_down::Msg::Adopt(FsrepKnown {
                path: path.to_string(),
                version: Some(v),
            }),
        );
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
            st.files.remove(p);
            for k in st.known.values_mut() {
                k.remove(p);
            }
        }
        paths
    }

    /// Decides one change (see the module comment).
    fn change(
        st: &mut State,
        ctl: &Ctl,
        node: &str,
        ch: FsrepChange,
        received: Instant,
    ) -> Option<Pending> {
        let mut file = ch.file?;
        let cfg = Self::config(&st.settings, true);
        let refuse = |st: &mut State, why: String| {
            tracing::warn!(node = %node, path = %file.path, reason = %why, "replicated change refused");
            st.last_error.insert(node.to_string(), why);
        };
        let normal = clustermgr_shared::paths::normalize(&file.path)
            .map(|p| p.display().to_string())
            .ok();
        if normal.as_deref() != Some(file.path.as_str()) || !rules::replicated(&file.path, &cfg) {
            refuse(st, format!("{}: not a replicated path", file.path));
            return None;
        }
        if !file.deleted {
            if file.content.len() as u64 > cfg.max_file_bytes {
                refuse(
                    st,
                    format!(
                        "{}: {} bytes, over the limit of {} bytes",
                        file.path,
                        file.content.len(),
                        cfg.max_file_bytes
                    ),
                );
                return None;
            }
            if Sha256::digest(&file.content).as_slice() != file.sha256.as_slice() {
                refuse(
                    st,
                    format!("{}: content does not match its hash", file.path),
                );
                return None;
            }
            file.size = file.content.len() as u64;
            file.mode &= 0o1777;
        } else {
            file.content.clear();
            file.sha256.clear();
            file.size = 0;
        }
        // The version is the node's: its id comes from its certificate, never from the message.
        let mut v = file.version.clone().unwrap_or_default();
        v.node_id = node.to_string();
        let cur = st.files.get(&file.path).cloned();
        let (v, conflict, lost) = match decide(cur.as_ref(), &file, ch.base.as_ref(), v) {
            Decision::Adopt(current) => {
                Self::adopt(st, node, &file.path, current);
                return None;
            }
            Decision::Accept { version, conflict } => (version, conflict, false),
            Decision::Lose { winner, loser } => (winner.clone(), Some((winner, loser)), true),
        };
        let conflict = conflict.map(|(winner, loser)| {
            let c = FsrepConflict {
                path: file.path.clone(),
                winner_host: hostname(ctl, &winner.node_id),
                loser_host: hostname(ctl, &loser.node_id),
                winner: Some(winner),
                loser: Some(loser),
                unix_ms: now_ms(),
            };
            tracing::warn!(path = %c.path, winner = %c.winner_host, loser = %c.loser_host, "concurrent edits of a replicated file; the loser is kept as a backup");
            st.conflicts.push_back(c.clone());
            while st.conflicts.len() > CONFLICTS_KEPT {
                st.conflicts.pop_front();
            }
            let list = FsrepConflictsRecord {
                conflicts: st.conflicts.iter().cloned().collect(),
            };
            let audit = Audit::new(format!("node:{node}"), "fsrep.conflict", c.path.clone()).ok(
                format!(
                    "winner={} loser={} (kept as a backup generation)",
                    c.winner_host, c.loser_host
                ),
            );
            (list, audit)
        });
        if lost {
            // The node's own edit lost: it gets the current state (and backs its own up).
            if let Some(c) = cur {
                Self::send_apply(st, node, c, received);
            }
            let (list, audit) = conflict?;
            return Some(Pending {
                commit: Box::pin(ctl.store.put_fsrep_conflict(list, audit)),
                relay: None,
            });
        }
        file.version = Some(v.clone());
        let sealed = match seal(ctl, &file) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot seal a replicated file");
                return None;
            }
        };
        st.files.insert(file.path.clone(), file.clone());
        st.changes += 1;
        Self::adopt(st, node, &file.path, v);
        Some(Pending {
            commit: Box::pin(
                ctl.store
                    .put_fsrep_file(file.path.clone(), sealed, conflict),
            ),
            relay: Some((node.to_string(), file, received)),
        })
    }

    /// After its commit: the change goes to every other node that replicates its path.
    fn relay(&self, origin: &str, file: FsrepFile, received: Instant) {
        let mut st = self.lock();
        // Still the current state (a later change may have replaced it meanwhile).
        if st.files.get(&file.path).map(|f| &f.version) != Some(&file.version) {
            return;
        }
        let cfg = Self::config(&st.settings, true);
        if !rules::replicated(&file.path, &cfg) {
            return;
        }
        let targets: Vec<String> = st
            .peers
            .iter()
            .filter(|(id, p)| id.as_str() != origin && p.enabled)
            .map(|(id, _)| id.clone())
            .collect();
        for id in targets {
            let has = st.known.get(&id).and_then(|k| k.get(&file.path)).cloned();
            if file
                .version
                .as_ref()
                .is_some_and(|v| !newer(v, has.as_ref()))
            {
                continue;
            }
            Self::send_apply(&mut st, &id, file.clone(), received);
        }
    }

    /// Commits and relays decided changes in their order.
    pub async fn finish(ctl: Arc<Ctl>, pending: Vec<Pending>) {
        for p in pending {
            if let Err(e) = p.commit.await {
                tracing::error!(error = %e, "cannot record a replicated change");
                continue;
            }
            if let Some((origin, file, received)) = p.relay {
                ctl.fsrep.relay(&origin, file, received);
            }
        }
    }

    /// Changes the settings (audited with the change); every node's stream restarts with the
    /// new configuration.
    pub async fn change_settings(
        &self,
        ctl: &Ctl,
        req: FsrepChangeRequest,
        audit: &Audit,
    ) -> Result<FsrepSettings, FsrepError> {
        let mut s = self.settings();
        let detail = match req.change {
            None => {
                return Err(FsrepError::Invalid {
                    what: "request",
                    why: "no change named".into(),
                });
            }
            Some(Change::Enable(on)) => {
                s.enabled = on;
                format!("enabled={on}")
            }
            Some(Change::AddPath(p)) => {
                let p = check_dir(&p)?;
                if s.paths.contains(&p) {
                    return Err(FsrepError::Exists(p));
                }
                s.paths.push(p.clone());
                format!("add path {p}")
            }
            Some(Change::RemovePath(p)) => {
                let n = check_dir(&p).unwrap_or(p.clone());
                let before = s.paths.len();
                s.paths.retain(|x| x.trim_end_matches('/') != n);
                if s.paths.len() == before {
                    return Err(FsrepError::NotFound(p));
                }
                format!("remove path {n}")
            }
            Some(Change::AddExclude(e)) => {
                check_pattern(&e, "exclude pattern")?;
                if s.excludes.contains(&e) {
                    return Err(FsrepError::Exists(e));
                }
                s.excludes.push(e.clone());
                format!("add exclude {e}")
            }
            Some(Change::RemoveExclude(e)) => {
                let before = s.excludes.len();
                s.excludes.retain(|x| *x != e);
                if s.excludes.len() == before {
                    return Err(FsrepError::NotFound(e));
                }
                format!("remove exclude {e}")
            }
            Some(Change::AddAction(a)) => {
                check_pattern(&a.pattern, "action pattern")?;
                if !a.pattern.starts_with('/') {
                    return Err(FsrepError::Invalid {
                        what: "action pattern",
                        why: "must be an absolute path glob".into(),
                    });
                }
                check_service(&a.service)?;
                if s.actions.contains(&a) {
                    return Err(FsrepError::Exists(format!(
                        "{} -> {}",
                        a.pattern, a.service
                    )));
                }
                s.actions.push(a.clone());
                format!("add action {} -> restart {}", a.pattern, a.service)
            }
            Some(Change::RemoveAction(a)) => {
                let before = s.actions.len();
                s.actions.retain(|x: &FsrepAction| {
                    !(x.service == a.service && (a.pattern.is_empty() || x.pattern == a.pattern))
                });
                if s.actions.len() == before {
                    return Err(FsrepError::NotFound(a.service));
                }
                format!("remove action {} {}", a.service, a.pattern)
            }
        };
        ctl.store
            .put_fsrep_settings(
                FsrepSettingsRecord {
                    settings: Some(s.clone()),
                    saved: true,
                },
                audit.ok(detail),
            )
            .await?;
        let mut st = self.lock();
        st.settings = s.clone();
        // The streams end; the agents open them again and get the new configuration.
        st.peers.clear();
        Ok(s)
    }

    /// Ends the streams of nodes whose eligibility changed (a server added or removed).
    fn recheck(&self, ctl: &Ctl) {
        let servers: HashSet<String> = match ctl.store.servers() {
            Ok(s) => s.into_iter().map(|s| s.node_id).collect(),
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

    pub fn status(&self, ctl: &Ctl) -> FsrepStatus {
        let servers: Vec<String> = ctl
            .store
            .servers()
            .map(|s| s.into_iter().map(|s| s.node_id).collect())
            .unwrap_or_default();
        let st = self.lock();
        let cfg = Self::config(&st.settings, true);
        let current: Vec<&FsrepFile> = st
            .files
            .values()
            .filter(|f| rules::replicated(&f.path, &cfg))
            .collect();
        let mut nodes = Vec::new();
        let mut ids: Vec<String> = servers.clone();
        for id in st.peers.keys() {
            if !ids.contains(id) {
                ids.push(id.clone());
            }
        }
        for id in ids {
            let peer = st.peers.get(&id);
            let known = st.known.get(&id);
            let behind = current
                .iter()
                .filter(|f| {
                    let k = known.and_then(|k| k.get(&f.path));
                    k != f.version.as_ref() && !(f.deleted && k.is_none())
                })
                .count() as u64;
            let report = st.reports.get(&id).cloned().unwrap_or_default();
            nodes.push(FsrepNodeStatus {
                hostname: hostname(ctl, &id),
                connected: peer.is_some_and(|p| p.enabled),
                queued: peer.map_or(0, |p| p.queued.len() as u64),
                behind,
                watch_error: report.watch_error,
                watched_dirs: report.watched_dirs,
                action_runs: report.action_runs,
                refused: report.refused,
                actions_pending: report.actions_pending,
                last_error: st.last_error.get(&id).cloned().unwrap_or_default(),
                node_id: id,
            });
        }
        nodes.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        let mut sorted: Vec<u64> = st.samples.iter().copied().collect();
        sorted.sort_unstable();
        let pct = |q: f64| -> u64 {
            if sorted.is_empty() {
                return 0;
            }
            let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
            sorted[i.min(sorted.len() - 1)]
        };
        FsrepStatus {
            settings: Some(st.settings.clone()),
            nodes,
            conflicts: st.conflicts.iter().cloned().collect(),
            files: current.iter().filter(|f| !f.deleted).count() as u64,
            tombstones: current.iter().filter(|f| f.deleted).count() as u64,
            changes: st.changes,
            latency_bounds_ms: LATENCY_BOUNDS_MS.to_vec(),
            latency_counts: st.latency_counts.clone(),
            latency_p50_ms: pct(0.5),
            latency_p99_ms: pct(0.99),
        }
    }
}

impl State {
    fn record_latency(&mut self, d: Duration) {
        let ms = d.as_millis() as u64;
        let i = LATENCY_BOUNDS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        if let Some(c) = self.latency_counts.get_mut(i) {
            *c += 1;
        }
        self.samples.push_back(ms);
        while self.samples.len() > SAMPLES_KEPT {
            self.samples.pop_front();
        }
    }
}

/// Every second: streams of nodes that became (or stopped being) servers start again.
pub fn start_membership_check(ctl: Arc<Ctl>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            ctl.fsrep.recheck(&ctl);
        }
    });
}

/// An action run as the API shows it.
pub fn action_label(r: &FsrepActionRun) -> String {
    if r.error.is_empty() {
        r.service.clone()
    } else {
        format!("{} ({})", r.service, r.error)
    }
}

/// Forgets collectable tombstones every hour.
pub fn start_tombstone_sweeper(ctl: std::sync::Arc<Ctl>) {
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
            let paths = ctl.fsrep.forget_tombstones(&servers, now_ms());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tombstone_is_forgotten_only_when_old_and_held_everywhere() {
        let day = 24 * 3600 * 1000u64;
        let now = 30 * day;
        let at = |ms: u64, node: &str| ver(ms << 16, node);
        let mut files = BTreeMap::new();
        let mut tomb = |path: &str, v: FsrepVersion| {
            let mut f = file(0, Some(v), true);
            f.path = path.into();
            files.insert(path.to_string(), f);
        };
        tomb("/old", at(now - 8 * day, "a"));
        tomb("/young", at(now - day, "a"));
        tomb("/lagging", at(now - 8 * day, "a"));
        let mut live = file(1, Some(at(now - 9 * day, "a")), false);
        live.path = "/live".into();
        files.insert("/live".into(), live);
        let servers = vec!["a".to_string(), "b".to_string()];
        let mut known: HashMap<String, HashMap<String, FsrepVersion>> = HashMap::new();
        known.insert(
            "a".into(),
            HashMap::from([
                ("/old".to_string(), at(now - 8 * day, "a")),
                ("/lagging".to_string(), at(now - 8 * day, "a")),
            ]),
        );
        let ttl = 7 * day;
        // b has not reported since the start: nothing is forgotten.
        assert!(collectable(&files, &known, &servers, now, ttl).is_empty());
        // b never had /old; it still holds an older version of /lagging.
        known.insert(
            "b".into(),
            HashMap::from([("/lagging".to_string(), at(now - 20 * day, "b"))]),
        );
        assert_eq!(collectable(&files, &known, &servers, now, ttl), ["/old"]);
        // Once b holds the delete, /lagging goes too; /young waits for its week; /live stays.
        known
            .get_mut("b")
            .unwrap()
            .insert("/lagging".into(), at(now - 8 * day, "a"));
        assert_eq!(
            collectable(&files, &known, &servers, now, ttl),
            ["/lagging", "/old"]
        );
        assert!(collectable(&files, &known, &[], now, ttl).is_empty());

        // Forgetting drops the path from the state and from what each node is known to hold.
        let f = Fsrep {
            state: Mutex::new(State {
                files,
                known,
                ..Default::default()
            }),
        };
        let gone = f.forget_tombstones(&servers, now);
        assert_eq!(gone, ["/lagging", "/old"]);
        let st = f.lock();
        assert!(st.files.contains_key("/young") && st.files.contains_key("/live"));
        assert!(!st.files.contains_key("/old"));
        assert!(st.known.values().all(|k| !k.contains_key("/lagging")));
    }

    #[test]
    fn directories_holding_databases_are_refused() {
        for p in [
            "/",
            "/opt",
            "/opt/opendj/db/userRoot",
            "relative",
            "/a/../b",
        ] {
            assert!(check_dir(p).is_err(), "{p}");
        }
        assert_eq!(check_dir("/etc/gluu/conf/").unwrap(), "/etc/gluu/conf");
    }

    fn ver(hlc: u64, node: &str) -> FsrepVersion {
        FsrepVersion {
            hlc,
            node_id: node.into(),
        }
    }

    fn file(sha: u8, v: Option<FsrepVersion>, deleted: bool) -> FsrepFile {
        FsrepFile {
            path: "/etc/gluu/conf/x".into(),
            version: v,
            deleted,
            sha256: if deleted { vec![] } else { vec![sha] },
            mode: 0o644,
            ..Default::default()
        }
    }

    /// (current state, change, base, change version, decision)
    type Case<'a> = (
        Option<&'a FsrepFile>,
        FsrepFile,
        Option<FsrepVersion>,
        FsrepVersion,
        Decision,
    );

    #[test]
    fn changes_are_ordered_and_conflicts_have_one_winner() {
        use Decision::*;
        let cur = file(1, Some(ver(10, "a")), false);
        let tomb = file(0, Some(ver(10, "a")), true);
        // (current, change content, base, change version) -> decision
        let cases: Vec<Case> = vec![
            // A new path.
            (
                None,
                file(2, None, false),
                None,
                ver(5, "b"),
                Accept {
                    version: ver(5, "b"),
                    conflict: None,
                },
            ),
            // Based on the current version.
            (
                Some(&cur),
                file(2, None, false),
                Some(ver(10, "a")),
                ver(20, "b"),
                Accept {
                    version: ver(20, "b"),
                    conflict: None,
                },
            ),
            // Based on it, but with a clock behind: the version still grows.
            (
                Some(&cur),
                file(2, None, false),
                Some(ver(10, "a")),
                ver(3, "b"),
                Accept {
                    version: ver(11, "b"),
                    conflict: None,
                },
            ),
            // Same content: adopt, whatever the base.
            (
                Some(&cur),
                file(1, None, false),
                None,
                ver(30, "b"),
                Adopt(ver(10, "a")),
            ),
            (
                Some(&tomb),
                file(0, None, true),
                Some(ver(2, "c")),
                ver(30, "b"),
                Adopt(ver(10, "a")),
            ),
            // Concurrent, newer: wins, the current state is the loser.
            (
                Some(&cur),
                file(2, None, false),
                Some(ver(7, "a")),
                ver(12, "b"),
                Accept {
                    version: ver(12, "b"),
                    conflict: Some((ver(12, "b"), ver(10, "a"))),
                },
            ),
            // Concurrent, older: loses.
            (
                Some(&cur),
                file(2, None, false),
                None,
                ver(9, "b"),
                Lose {
                    winner: ver(10, "a"),
                    loser: ver(9, "b"),
                },
            ),
            // Same clock: the node id decides, the same way everywhere.
            (
                Some(&cur),
                file(2, None, false),
                None,
                ver(10, "0"),
                Lose {
                    winner: ver(10, "a"),
                    loser: ver(10, "0"),
                },
            ),
            (
                Some(&cur),
                file(2, None, false),
                None,
                ver(10, "b"),
                Accept {
                    version: ver(10, "b"),
                    conflict: Some((ver(10, "b"), ver(10, "a"))),
                },
            ),
            // A delete made while away from a file changed since: a conflict like any other.
            (
                Some(&cur),
                file(0, None, true),
                Some(ver(4, "a")),
                ver(8, "b"),
                Lose {
                    winner: ver(10, "a"),
                    loser: ver(8, "b"),
                },
            ),
            // A copy of a deleted file coming back with an older clock stays deleted.
            (
                Some(&tomb),
                file(3, None, false),
                None,
                ver(6, "c"),
                Lose {
                    winner: ver(10, "a"),
                    loser: ver(6, "c"),
                },
            ),
        ];
        for (i, (cur, f, base, v, want)) in cases.into_iter().enumerate() {
            assert_eq!(decide(cur, &f, base.as_ref(), v), want, "case {i}");
        }
    }

    #[test]
    fn content_equality_ignores_versions() {
        let a = FsrepFile {
            path: "/x".into(),
            sha256: vec![1],
            mode: 0o644,
            version: Some(FsrepVersion {
                hlc: 1,
                node_id: "a".into(),
            }),
            ..Default::default()
        };
        let mut b = a.clone();
        b.version = None;
        assert!(same_content(&a, &b));
        b.mode = 0o600;
        assert!(!same_content(&a, &b));
    }
}
