//! The node's side of file replication on disk: what it knows of each replicated path (kept in
//! the state directory), scans that find local changes, and writes of relayed changes.
//!
//! A change is found by comparing a file with what was last sent, written or adopted for its
//! path: the stat first (unchanged stat: not read again), then the content hash, mode and
//! owner. A file this agent wrote is recorded with the stat it has after the write, so the
//! inotify events of that write find nothing new: changes are never echoed back.
//!
//! Every path is walked on directory handles from the root without following a symbolic link
//! (`safefs`); symbolic links in a replicated directory are neither followed nor replicated.

use clustermgr_proto::{
    FsrepAck, FsrepChange, FsrepConfig, FsrepFile, FsrepKnown, FsrepLocalEntry, FsrepLocalState,
    FsrepVersion,
};
use clustermgr_shared::fsrep as rules;
use clustermgr_shared::safefs::{self, FilePerms, SafeFsError};
use clustermgr_shared::util::now_ms;
use nix::errno::Errno;
use nix::fcntl::renameat;
use nix::unistd::{UnlinkatFlags, unlinkat};
use prost::Message;
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where backup generations go, below the root (outside every replicated path).
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
    root: PathBuf,
    root_fd: OwnedFd,
    state_path: PathBuf,
    node_id: String,
    cfg: FsrepConfig,
    entries: BTreeMap<String, FsrepLocalEntry>,
    hlc: u64,
    pub dirty: bool,
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
    privileged: bool,
    pub refused: Vec<String>,
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

/// The directory part (relative to the root) and the name of an absolute path.
fn split(path: &str) -> Option<(PathBuf, &OsStr)> {
    let p = Path::new(path);
    let name = p.file_name()?;
    let parent = p.parent()?.strip_prefix("/").ok()?.to_path_buf();
    Some((parent, name))
}

fn older_or_same(a: Option<&FsrepVersion>, b: Option<&FsrepVersion>) -> bool {
    rules::cmp_versions(a, b) != Ordering::Less
}

impl Local {
    pub fn load(
        root: &Path,
        state_path: &Path,
        node_id: &str,
        cfg: FsrepConfig,
    ) -> Result<Self, LocalError> {
        let root_fd = safefs::open_dir(root).map_err(|source| LocalError::Root {
            path: root.display().to_string(),
            source,
        })?;
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
            root: root.to_path_buf(),
            root_fd,
            state_path: state_path.to_path_buf(),
            node_id: node_id.to_string(),
            cfg,
            entries,
            hlc: state.hlc,
            dirty: false,
            users: ids(root, "etc/passwd"),
            groups: ids(root, "etc/group"),
            privileged: nix::unistd::geteuid().is_root(),
            refused: Vec::new(),
        })
    }

    pub fn config(&self) -> &FsrepConfig {
        &self.cfg
    }

    pub fn save(&mut self) -> std::io::Result<()> {
        let st = FsrepLocalState {
            hlc: self.hlc,
            entries: self.entries.values().cloned().collect(),
        };
        clustermgr_shared::fsutil::write_private(&self.state_path, &st.encode_to_vec())?;
        self.dirty = false;
        Ok(())
    }

    fn tick(&mut self) -> FsrepVersion {
        self.hlc = (self.hlc + 1).max(now_ms() << 16);
        FsrepVersion {
            hlc: self.hlc,
            node_id: self.node_id.clone(),
        }
    }

    fn refuse(&mut self, what: String) {
        tracing::warn!(refused = %what, "file not replicated");
        self.refused.retain(|r| *r != what);
        self.refused.push(what);
        if self.refused.len() > REFUSED_KEPT {
            self.refused.remove(0);
        }
    }

    /// The version held of every path.
    pub fn known(&self) -> Vec<FsrepKnown> {
        self.entries
            .values()
            .filter_map(|e| e.file.as_ref())
            .map(|f| FsrepKnown {
                path: f.path.clone(),
                version: f.version.clone(),
            })
            .collect()
    }

    /// The path as the node sees it, for a path under the root.
    pub fn inside(&self, host: &Path) -> Option<String> {
        let rel = host.strip_prefix(&self.root).ok()?;
        Some(Path::new("/").join(rel).display().to_string())
    }

    fn host(&self, inside: &str) -> PathBuf {
        self.root.join(inside.trim_start_matches('/'))
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
            let base = self.entries.get(&p).and_then(|e| e.file.clone());
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
        }
    }

    fn check_file(&mut self, path: &str, meta: &std::fs::Metadata) -> Option<FsrepChange> {
        let (mtime, ctime, ino, size) = (
            meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            meta.ino(),
            meta.size(),
        );
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
                "{path}: {size} bytes, over the replication limit of {} bytes",
                self.cfg.max_file_bytes
            ));
            return None;
        }
        let (parent, name) = split(path)?;
        let read = safefs::open_dir_beneath(&self.root_fd, &parent, false)
            .and_then(|d| safefs::read_regular(&d, name, self.cfg.max_file_bytes));
        let (content, st) = match read {
            Ok(x) => x,
            Err(e) => {
                self.refuse(format!("{path}: {e}"));
                return None;
            }
        };
        let file = FsrepFile {
            path: path.to_string(),
            version: None,
            deleted: false,
            mode: st.st_mode & 0o1777,
            owner: self.name_of_user(st.st_uid),
            group: self.name_of_group(st.st_gid),
            sha256: Sha256::digest(&content).to_vec(),
            size: content.len() as u64,
            content,
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
        let hlc = ((mtime_ms.min(now_ms())) << 16).max(base_hlc + 1);
        self.hlc = self.hlc.max(hlc);
        file.version = Some(FsrepVersion {
            hlc,
            node_id: self.node_id.clone(),
        });
        self.entries.insert(path.to_string(), fp(file.clone()));
        self.dirty = true;
        Some(FsrepChange {
            file: Some(file),
            base: old.and_then(|o| o.version),
            detected_unix_ms: now_ms(),
        })
    }

    fn name_of_user(&self, uid: u32) -> String {
        self.users
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }

    fn name_of_group(&self, gid: u32) -> String {
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

    /// Writes a relayed state. Returns the acknowledgement and whether the file changed.
    pub fn apply(&mut self, f: FsrepFile) -> (FsrepAck, bool) {
        let mut ack = FsrepAck {
            path: f.path.clone(),
            version: f.version.clone(),
            error: String::new(),
        };
        match self.apply_inner(f) {
            Ok(changed) => (ack, changed),
            Err(e) => {
                self.refuse(format!("{}: {e}", ack.path));
                ack.error = e;
                (ack, false)
            }
        }
    }

    fn apply_inner(&mut self, mut f: FsrepFile) -> Result<bool, String> {
        let normal = clustermgr_shared::paths::normalize(&f.path)
            .map(|p| p.display().to_string())
            .map_err(|e| e.to_string())?;
        if normal != f.path || !rules::replicated(&f.path, &self.cfg) {
            return Err("not a replicated path on this node".into());
        }
        let known = self.entries.get(&f.path).and_then(|e| e.file.clone());
        if older_or_same(
            known.as_ref().and_then(|k| k.version.as_ref()),
            f.version.as_ref(),
        ) && known.is_some()
        {
            return Ok(false);
        }
        if let Some(v) = &f.version {
            self.hlc = self.hlc.max(v.hlc);
        }
        let (parent, name) = split(&f.path).ok_or("not a file path")?;
        let gens = self.cfg.backups;
        if f.deleted {
            let dir = match safefs::open_dir_beneath(&self.root_fd, &parent, false) {
                Ok(d) => Some(d),
                Err(SafeFsError::NotFound(_)) => None,
                Err(e) => return Err(e.to_string()),
            };
            let mut changed = false;
            if let Some(dir) = dir
                && let Some(st) = safefs::stat_entry(&dir, name).map_err(|e| e.to_string())?
                && safefs::kind(&st) == nix::sys::stat::SFlag::S_IFREG
            {
                let (old, _) = safefs::read_regular(&dir, name, self.cfg.max_file_bytes)
                    .map_err(|e| e.to_string())?;
                self.backup(&parent, name, &old, gens)?;
                unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir).map_err(|e| e.to_string())?;
                changed = true;
            }
            f.content.clear();
            self.entries.insert(
                f.path.clone(),
                FsrepLocalEntry {
                    file: Some(f),
                    ..Default::default()
                },
            );
            self.dirty = true;
            return Ok(changed);
        }
        if f.content.len() as u64 > self.cfg.max_file_bytes {
            return Err(format!(
                "{} bytes, over the replication limit of {} bytes",
                f.content.len(),
                self.cfg.max_file_bytes
            ));
        }
        if Sha256::digest(&f.content).as_slice() != f.sha256.as_slice() {
            return Err("content does not match its hash".into());
        }
        let dir =
            safefs::open_dir_beneath(&self.root_fd, &parent, true).map_err(|e| e.to_string())?;
        let mut same = false;
        if let Some(st) = safefs::stat_entry(&dir, name).map_err(|e| e.to_string())?
            && safefs::kind(&st) == nix::sys::stat::SFlag::S_IFREG
        {
            let (old, st) = safefs::read_regular(&dir, name, self.cfg.max_file_bytes)
                .map_err(|e| e.to_string())?;
            same = Sha256::digest(&old).as_slice() == f.sha256.as_slice()
                && st.st_mode & 0o1777 == f.mode & 0o1777
                && self.name_of_user(st.st_uid) == f.owner
                && self.name_of_group(st.st_gid) == f.group;
            if !same && Sha256::digest(&old).as_slice() != f.sha256.as_slice() {
                self.backup(&parent, name, &old, gens)?;
            }
        }
        if !same {
            let resolve = |db, spec: &str| -> Option<u32> {
                crate::ops::ids::resolve(&self.root, db, spec)
                    .ok()
                    .flatten()
            };
            let perms = FilePerms {
                mode: f.mode & 0o1777,
                uid: if self.privileged {
                    resolve(crate::ops::ids::Db::Passwd, &f.owner)
                } else {
                    None
                },
                gid: if self.privileged {
                    resolve(crate::ops::ids::Db::Group, &f.group)
                } else {
                    None
                },
            };
            safefs::replace_file(&dir, name, &f.content, perms).map_err(|e| e.to_string())?;
        }
        let meta = std::fs::symlink_metadata(self.host(&f.path)).map_err(|e| e.to_string())?;
        f.content.clear();
        // What is on disk now (an owner this node cannot give is not a change of ours).
        f.mode = meta.mode() & 0o1777;
        f.owner = self.name_of_user(meta.uid());
        f.group = self.name_of_group(meta.gid());
        self.entries.insert(
            f.path.clone(),
            FsrepLocalEntry {
                file: Some(f),
                mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
                ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
                ino: meta.ino(),
            },
        );
        self.dirty = true;
        Ok(!same)
    }

    /// Keeps `content` as generation 1 of the file's backups (older ones move up, the oldest
    /// beyond `gens` is dropped).
    fn backup(&self, parent: &Path, name: &OsStr, content: &[u8], gens: u32) -> Result<(), String> {
        if gens == 0 {
            return Ok(());
        }
        let dir =
            safefs::open_dir_beneath(&self.root_fd, &Path::new(BACKUP_DIR).join(parent), true)
                .map_err(|e| format!("backup: {e}"))?;
        let n = name.to_string_lossy();
        for i in (1..gens).rev() {
            match renameat(
                &dir,
                format!("{n}.{i}").as_str(),
                &dir,
                format!("{n}.{}", i + 1).as_str(),
            ) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(format!("backup: {e}")),
            }
        }
        let perms = FilePerms {
            mode: 0o600,
            uid: None,
            gid: None,
        };
        safefs::replace_file(&dir, OsStr::new(&format!("{n}.1")), content, perms)
            .map_err(|e| format!("backup: {e}"))
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
mod tests {
    use super::*;

    fn cfg() -> FsrepConfig {
        FsrepConfig {
            enabled: true,
            paths: vec!["/etc/gluu/conf".into()],
            excludes: rules::DEFAULT_EXCLUDES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            backups: 2,
            max_file_bytes: 1024,
            ..Default::default()
        }
    }

    #[test]
    fn scan_finds_changes_once_and_writes_do_not_echo() {
        let root = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let d = root.path().join("etc/gluu/conf");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("a.properties"), "one").unwrap();
        std::fs::write(d.join("salt"), "node-specific").unwrap();
        std::fs::write(d.join("big"), vec![b'x'; 2000]).unwrap();
        let mut l = Local::load(root.path(), &state.path().join("s"), "n1", cfg()).unwrap();
        let all = vec!["/etc/gluu/conf".to_string()];
        let ch = l.scan(&all);
        let paths: Vec<_> = ch
            .iter()
            .map(|c| c.file.as_ref().unwrap().path.clone())
            .collect();
        assert_eq!(paths, vec!["/etc/gluu/conf/a.properties"]);
        assert!(
            l.refused
                .iter()
                .any(|r| r.contains("big") && r.contains("limit"))
        );
        assert!(l.scan(&all).is_empty());
        // A relayed newer version is written, backed up, and not seen as a local change.
        let mut f = FsrepFile {
            path: "/etc/gluu/conf/a.properties".into(),
            version: Some(FsrepVersion {
                hlc: u64::MAX / 2,
                node_id: "n2".into(),
            }),
            mode: 0o640,
            content: b"two".to_vec(),
            ..Default::default()
        };
        f.sha256 = Sha256::digest(&f.content).to_vec();
        let (ack, changed) = l.apply(f.clone());
        assert!(ack.error.is_empty(), "{}", ack.error);
        assert!(changed);
        assert_eq!(
            std::fs::read_to_string(d.join("a.properties")).unwrap(),
            "two"
        );
        let b = root
            .path()
            .join(BACKUP_DIR)
            .join("etc/gluu/conf/a.properties.1");
        assert_eq!(std::fs::read_to_string(b).unwrap(), "one");
        assert!(l.scan(&all).is_empty(), "a write of ours is not a change");
        // Same version again: nothing. A delete: backed up, gone, a tombstone.
        assert!(!l.apply(f.clone()).1);
        let mut del = f.clone();
        del.deleted = true;
        del.version.as_mut().unwrap().hlc += 1;
        assert!(l.apply(del).1);
        assert!(!d.join("a.properties").exists());
        assert!(l.scan(&all).is_empty());
        l.save().unwrap();
        let again = Local::load(root.path(), &state.path().join("s"), "n1", cfg()).unwrap();
        assert!(
            again
                .known()
                .iter()
                .any(|k| k.path.ends_with("a.properties"))
        );
        // A path outside the configured ones is refused.
        let mut out = f.clone();
        out.path = "/etc/passwd".into();
        out.version.as_mut().unwrap().hlc += 5;
        assert!(!l.apply(out).0.error.is_empty());
    }
}
