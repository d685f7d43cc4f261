//! The node's side of file replication on disk: what it knows of each replicated path (kept in
//! the state directory) and the scans that find local changes (`apply` writes relayed ones).
//!
//! The replicated paths are Gluu's, as seen inside Gluu (`/etc/gluu/conf`, `/opt/shibboleth-idp/
//! metadata`...): they are found under the tree's base, the container root of a chroot or nspawn
//! machine packaging (`ROOT/opt/gluu-server`) or the host root of a nochroot one. Backups go to
//! the agent's own root (`ROOT/var/lib/clustermgr/fsrep-backups/<path inside>`).
//!
//! A change is found by comparing a file with what was last sent, written or adopted for its
//! path: the stat first (unchanged stat: not read again), then the content hash, mode and
//! owner. A file this agent wrote is recorded with the stat it has after the write, so the
//! inotify events of that write find nothing new: changes are never echoed back. A file over
//! [`rules::INLINE_MAX_BYTES`] is only hashed here (read a part at a time); its change goes up
//! once its content is uploaded, and until then the path's record before the change is what is
//! saved and said (an upload that fails leaves the change to be found again).
//!
//! Every path is walked on directory handles from the base without following a symbolic link
//! (`safefs`); symbolic links in a replicated directory are neither followed nor replicated.

use super::staged;
use clustermgr_proto::{
    FsrepChange, FsrepConfig, FsrepFile, FsrepKnown, FsrepLocalEntry, FsrepLocalState, FsrepVersion,
};
use clustermgr_shared::fsrep as rules;
use clustermgr_shared::safefs::{self, SafeFsError};
use clustermgr_shared::util::now_ms;
use prost::Message;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where backup generations go, below the agent's root (outside every replicated path).
pub const BACKUP_DIR: &str = "var/lib/clustermgr/fsrep-backups";
/// Refusals kept for the report.
const REFUSED_KEPT: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot open the root {path}: {source}")]
    Root { path: String, source: SafeFsError },
    #[error("cannot read the replication state {path}: {why}")]
    State { path: String, why: String },
}

pub struct Local {
    /// Host path of the tree the replicated paths are in, and its handle.
    pub(super) base: PathBuf,
    pub(super) base_fd: OwnedFd,
    /// The agent's root (backups).
    pub(super) root_fd: OwnedFd,
    state_path: PathBuf,
    node_id: String,
    pub(super) cfg: FsrepConfig,
    pub(super) entries: BTreeMap<String, FsrepLocalEntry>,
    /// Streamed changes not sent yet (their content is uploading): the path's record before.
    pub(super) unsent: HashMap<String, Option<FsrepLocalEntry>>,
    pub(super) hlc: u64,
    pub dirty: bool,
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
    pub(super) privileged: bool,
    pub refused: Vec<String>,
    /// What a limit held back here (a file's backups over their byte limit).
    pub capped: Vec<String>,
}

fn ids(root: &Path, file: &str) -> HashMap<u32, String> {
    let text = std::fs::read_to_string(root.join(file)).unwrap_or_default();
    let mut out = HashMap::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 3
            && let Ok(id) = f[2].parse::<u32>()
        {
            out.entry(id).or_insert_with(|| f[0].to_string());
        }
    }
    out
}

/// The directory part (relative to the base) and the name of an absolute path.
pub(super) fn split(path: &str) -> Option<(PathBuf, &OsStr)> {
    let p = Path::new(path);
    let name = p.file_name()?;
    let parent = p.parent()?.strip_prefix("/").ok()?.to_path_buf();
    Some((parent, name))
}

/// The stat fields a record keeps: (mtime ns, ctime ns, inode, size).
pub(super) fn stamp(meta: &std::fs::Metadata) -> (i64, i64, u64, u64) {
    (
        meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        meta.ino(),
        meta.size(),
    )
}

impl Local {
    /// The state for the tree at `base` (the Gluu container root, or the host root for a
    /// nochroot install); backups under `root`.
    pub fn load(
        base: &Path,
        root: &Path,
        state_path: &Path,
        node_id: &str,
        cfg: FsrepConfig,
    ) -> Result<Self, LocalError> {
        let open = |p: &Path| {
            safefs::open_dir(p).map_err(|source| LocalError::Root {
                path: p.display().to_string(),
                source,
            })
        };
        let base_fd = open(base)?;
        let root_fd = open(root)?;
        let state = match std::fs::read(state_path) {
            Ok(b) => FsrepLocalState::decode(b.as_slice()).map_err(|e| LocalError::State {
                path: state_path.display().to_string(),
                why: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FsrepLocalState::default(),
            Err(e) => {
                return Err(LocalError::State {
                    path: state_path.display().to_string(),
                    why: e.to_string(),
                });
            }
        };
        let entries = state
            .entries
            .into_iter()
            .filter_map(|e| e.file.as_ref().map(|f| f.path.clone()).map(|p| (p, e)))
            .collect();
        Ok(Self {
            base: base.to_path_buf(),
            base_fd,
            root_fd,
            state_path: state_path.to_path_buf(),
            node_id: node_id.to_string(),
            cfg,
            entries,
            unsent: HashMap::new(),
            hlc: state.hlc,
            dirty: false,
            users: ids(base, "etc/passwd"),
            groups: ids(base, "etc/group"),
            privileged: nix::unistd::geteuid().is_root(),
            refused: Vec::new(),
            capped: Vec::new(),
        })
    }

    /// The record of a path as the controller knows it (before an unsent change).
    fn said(&self, path: &str) -> Option<&FsrepLocalEntry> {
        match self.unsent.get(path) {
            Some(before) => before.as_ref(),
            None => self.entries.get(path),
        }
    }

    pub fn save(&mut self) -> std::io::Result<()> {
        let entries = self
            .entries
            .keys()
            .chain(
                self.unsent
                    .keys()
                    .filter(|p| !self.entries.contains_key(*p)),
            )
            .collect::<HashSet<_>>()
            .into_iter()
            .filter_map(|p| self.said(p).cloned())
            .collect();
        let st = FsrepLocalState {
            hlc: self.hlc,
            entries,
        };
        clustermgr_shared::fsutil::write_private(&self.state_path, &st.encode_to_vec())?;
        self.dirty = false;
        Ok(())
    }

    pub(super) fn tick(&mut self) -> FsrepVersion {
        self.hlc = self.hlc.saturating_add(1).max(now_ms() << 16);
        FsrepVersion {
            hlc: self.hlc,
            node_id: self.node_id.clone(),
        }
    }

    pub fn refuse(&mut self, what: String) {
        tracing::warn!(refused = %what, "file not replicated");
        self.refused.retain(|r| *r != what);
        self.refused.push(what);
        if self.refused.len() > REFUSED_KEPT {
            self.refused.remove(0);
        }
    }

    pub fn cap(&mut self, what: String) {
        tracing::warn!(limit = %what, "file replication limit");
        self.capped.retain(|r| *r != what);
        self.capped.push(what);
        if self.capped.len() > REFUSED_KEPT {
            self.capped.remove(0);
        }
    }

    /// A path is replicated again: its old refusals go.
    fn unrefuse(&mut self, path: &str) {
        let prefix = format!("{path}: ");
        self.refused.retain(|r| !r.starts_with(&prefix));
    }

    /// The version held of every path.
    pub fn known(&self) -> Vec<FsrepKnown> {
        let mut paths: Vec<&String> = self.entries.keys().collect();
        paths.extend(
            self.unsent
                .keys()
                .filter(|p| !self.entries.contains_key(*p)),
        );
        paths
            .into_iter()
            .filter_map(|p| self.said(p).and_then(|e| e.file.as_ref()))
            .map(|f| FsrepKnown {
                path: f.path.clone(),
                version: f.version.clone(),
            })
            .collect()
    }

    /// The streamed change of `path` went up: its record is the one to say.
    pub fn sent(&mut self, path: &str) {
        self.unsent.remove(path);
    }

    /// The streamed change of `path` could not go up: the record before it comes back, with no
    /// stat, so that the next scan reads the file again and finds the change again.
    pub fn unsend(&mut self, path: &str) {
        let Some(before) = self.unsent.remove(path) else {
            return;
        };
        match before {
            Some(mut e) => {
                (e.mtime_ns, e.ctime_ns, e.ino) = (0, 0, 0);
                self.entries.insert(path.to_string(), e);
            }
            None => {
                self.entries.remove(path);
            }
        }
        self.dirty = true;
    }

    /// Opens the file at `path` for its upload (on handles, as a scan reads it).
    pub fn open_for_upload(&self, path: &str) -> Result<std::fs::File, String> {
        let (parent, name) = split(path).ok_or("not a file path")?;
        safefs::open_dir_beneath(&self.base_fd, &parent, false)
            .and_then(|d| safefs::open_regular(&d, name))
            .map(|(f, _)| f)
            .map_err(|e| e.to_string())
    }

    /// The path inside Gluu, for a host path under the base.
    pub fn inside(&self, host: &Path) -> Option<String> {
        let rel = host.strip_prefix(&self.base).ok()?;
        Some(Path::new("/").join(rel).display().to_string())
    }

    pub(super) fn host(&self, inside: &str) -> PathBuf {
        self.base.join(inside.trim_start_matches('/'))
    }

    /// Host paths of the configured directories.
    pub fn watch_roots(&self) -> Vec<PathBuf> {
        self.cfg.paths.iter().map(|p| self.host(p)).collect()
    }

    /// Compares everything at or below each path with what is known; returns the changes.
    pub fn scan(&mut self, prefixes: &[String]) -> Vec<FsrepChange> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        // Only what lies inside a configured directory.
        let mut tops: Vec<String> = Vec::new();
        for p in prefixes {
            for d in &self.cfg.paths {
                let d = d.trim_end_matches('/').to_string();
                let top = if rules::under(p, &d) {
                    p.clone()
                } else if rules::under(&d, p) {
                    d.clone()
                } else {
                    continue;
                };
                if !tops.iter().any(|t| rules::under(&top, t)) {
                    tops.retain(|t| !rules::under(t, &top));
                    tops.push(top);
                }
            }
        }
        for top in &tops {
            self.walk(top, &mut seen, &mut out, 0);
        }
        // Known files that are gone.
        let gone: Vec<String> = self
            .entries
            .iter()
            .filter(|(p, e)| {
                tops.iter().any(|t| rules::under(p, t))
                    && !seen.contains(*p)
                    && e.file.as_ref().is_some_and(|f| !f.deleted)
                    && rules::replicated(p, &self.cfg)
            })
            .map(|(p, _)| p.clone())
            .collect();
        for p in gone {
            // Gone for good only when nothing regular is there (a scan may have stopped early).
            if std::fs::symlink_metadata(self.host(&p)).is_ok_and(|m| m.is_file()) {
                continue;
            }
            let base = self.said(&p).and_then(|e| e.file.clone());
            self.unsent.remove(&p);
            let v = self.tick();
            let file = FsrepFile {
                path: p.clone(),
                version: Some(v),
                deleted: true,
                ..Default::default()
            };
            self.entries.insert(
                p.clone(),
                FsrepLocalEntry {
                    file: Some(file.clone()),
                    ..Default::default()
                },
            );
            self.dirty = true;
            out.push(FsrepChange {
                file: Some(file),
                base: base.and_then(|b| b.version),
                detected_unix_ms: now_ms(),
                upload: String::new(),
            });
        }
        out
    }

    fn walk(
        &mut self,
        path: &str,
        seen: &mut HashSet<String>,
        out: &mut Vec<FsrepChange>,
        depth: usize,
    ) {
        if depth > 64
            || rules::is_never(path, &self.cfg.never)
            || rules::is_never(path, rules::NEVER)
        {
            return;
        }
        let host = self.host(path);
        let Ok(meta) = std::fs::symlink_metadata(&host) else {
            return;
        };
        if meta.is_dir() {
            if rules::excluded(path, &self.cfg.excludes) {
                return;
            }
            let Ok(rd) = std::fs::read_dir(&host) else {
                return;
            };
            let mut names: Vec<String> = rd
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect();
            names.sort();
            for n in names {
                let child = format!("{}/{n}", path.trim_end_matches('/'));
                self.walk(&child, seen, out, depth + 1);
            }
        } else if meta.is_file() && rules::replicated(path, &self.cfg) {
            seen.insert(path.to_string());
            if let Some(c) = self.check_file(path, &meta) {
                out.push(c);
            }
        } else if meta.is_file()
            && path.rsplit('/').next().is_some_and(staged::is_leftover)
            && meta.mtime() < (now_ms() / 1000) as i64 - 3600
        {
            // A transfer's temporary file a crash left behind.
            let _ = std::fs::remove_file(&host);
        }
    }

    fn check_file(&mut self, path: &str, meta: &std::fs::Metadata) -> Option<FsrepChange> {
        let (mtime, ctime, ino, size) = stamp(meta);
        let known = self.entries.get(path).cloned();
        if let Some(e) = &known
            && e.file
                .as_ref()
                .is_some_and(|f| !f.deleted && f.size == size)
            && (e.mtime_ns, e.ctime_ns, e.ino) == (mtime, ctime, ino)
        {
            return None;
        }
        if size > self.cfg.max_file_bytes {
            self.refuse(format!(
                "{path}: {size} bytes, over the replication limit of {} bytes (fsrep max-file-size)",
                self.cfg.max_file_bytes
            ));
            return None;
        }
        let (parent, name) = split(path)?;
        let read = safefs::open_dir_beneath(&self.base_fd, &parent, false)
            .and_then(|d| safefs::open_regular(&d, name))
            .map_err(|e| e.to_string())
            .and_then(|(f, st)| {
                staged::digest(f, rules::INLINE_MAX_BYTES, self.cfg.max_file_bytes).map(|d| (d, st))
            });
        let (d, st) = match read {
            Ok(x) => x,
            Err(e) => {
                self.refuse(format!("{path}: {e}"));
                return None;
            }
        };
        self.unrefuse(path);
        let file = FsrepFile {
            path: path.to_string(),
            version: None,
            deleted: false,
            mode: st.st_mode & 0o1777,
            owner: self.name_of_user(st.st_uid),
            group: self.name_of_group(st.st_gid),
            sha256: d.sha256,
            size: d.size,
            content: d.content.unwrap_or_default(),
        };
        let fp = |f: FsrepFile| FsrepLocalEntry {
            file: Some(FsrepFile {
                content: Vec::new(),
                ..f
            }),
            mtime_ns: mtime,
            ctime_ns: ctime,
            ino,
        };
        let old = known.as_ref().and_then(|e| e.file.clone());
        if let Some(o) = &old
            && !o.deleted
            && o.sha256 == file.sha256
            && o.mode == file.mode
            && o.owner == file.owner
            && o.group == file.group
        {
            self.entries.insert(path.to_string(), fp(o.clone()));
            self.dirty = true;
            return None;
        }
        let mut file = file;
        // The edit's time is the file's (a copy left over from before a lost state then loses
        // to a newer edit elsewhere instead of winning by being found late), never in the future.
        let mtime_ms = (mtime / 1_000_000).max(0) as u64;
        let base_hlc = old
            .as_ref()
            .and_then(|o| o.version.as_ref())
            .map_or(0, |v| v.hlc);
        let hlc = ((mtime_ms.min(now_ms())) << 16).max(base_hlc.saturating_add(1));
        self.hlc = self.hlc.max(hlc);
        file.version = Some(FsrepVersion {
            hlc,
            node_id: self.node_id.clone(),
        });
        // The base is what the controller knows of the path (an unsent change is not).
        let base = self
            .said(path)
            .and_then(|e| e.file.as_ref())
            .and_then(|f| f.version.clone());
        if rules::streamed(&file) && !self.unsent.contains_key(path) {
            self.unsent.insert(path.to_string(), known.clone());
        } else if !rules::streamed(&file) {
            self.unsent.remove(path);
        }
        self.entries.insert(path.to_string(), fp(file.clone()));
        self.dirty = true;
        Some(FsrepChange {
            file: Some(file),
            base,
            detected_unix_ms: now_ms(),
            upload: String::new(),
        })
    }

    pub(super) fn name_of_user(&self, uid: u32) -> String {
        self.users
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }

    pub(super) fn name_of_group(&self, gid: u32) -> String {
        self.groups
            .get(&gid)
            .cloned()
            .unwrap_or_else(|| gid.to_string())
    }

    /// The controller says the node's state of a path is the current one, at this version.
    pub fn adopt(&mut self, k: FsrepKnown) {
        if let Some(v) = &k.version {
            self.hlc = self.hlc.max(v.hlc);
        }
        if let Some(e) = self.entries.get_mut(&k.path)
            && let Some(f) = e.file.as_mut()
        {
            f.version = k.version;
            self.dirty = true;
        }
    }
}

/// What was not saved yet is saved when the stream (or the agent) ends.
impl Drop for Local {
    fn drop(&mut self) {
        if self.dirty
            && let Err(e) = self.save()
        {
            tracing::warn!(error = %e, "cannot save the file replication state");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
