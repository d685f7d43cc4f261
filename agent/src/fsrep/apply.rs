//! Writes of relayed states. A state is written only when its version is newer than the one the
//! node holds; the file it replaces (or deletes) is first kept as backup generation 1 under
//! `ROOT/var/lib/clustermgr/fsrep-backups/`. A content comes inline, or (streamed) was fetched
//! into a temporary file in the target's directory: it is renamed into place only after its size
//! and SHA-256 are checked, so a file is never half-written. Files are read and copied a part at
//! a time, never whole in memory.

use super::local::{BACKUP_DIR, Local, split, stamp};
use super::staged::{self, Staged};
use clustermgr_proto::{FsrepAck, FsrepFile, FsrepLocalEntry, FsrepVersion};
use clustermgr_shared::fsrep as rules;
use clustermgr_shared::safefs::{self, FilePerms, SafeFsError};
use nix::errno::Errno;
use nix::fcntl::renameat;
use nix::sys::stat::{FileStat, SFlag};
use nix::unistd::{UnlinkatFlags, unlinkat};
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Where a state's content is.
pub enum Source {
    /// In the message (small files, and deletes).
    Inline(Vec<u8>),
    /// Fetched into a temporary file (checked here before it is renamed into place).
    Staged(Staged),
    /// Already in the node's file (only the version, and maybe owner or mode, change).
    Local,
}

/// What to do about a streamed state before anything is fetched.
pub enum Prepared {
    /// Nothing to fetch (an older or the same version; refused): acknowledge.
    Done(FsrepAck),
    /// Fetch the content into this temporary file, then [`Local::apply_from`] it.
    Fetch(Staged),
    /// The node's file has the content already: [`Local::apply_from`] with [`Source::Local`].
    Local,
}

fn older_or_same(a: Option<&FsrepVersion>, b: Option<&FsrepVersion>) -> bool {
    rules::cmp_versions(a, b) != Ordering::Less
}

fn is_regular(st: &FileStat) -> bool {
    safefs::kind(st) == SFlag::S_IFREG
}

fn ack_of(f: &FsrepFile) -> FsrepAck {
    FsrepAck {
        path: f.path.clone(),
        version: f.version.clone(),
        error: String::new(),
    }
}

impl Local {
    /// Whether `f` is to be written here: a replicated path, newer than what the node holds.
    fn wanted(&self, f: &FsrepFile) -> Result<bool, String> {
        let normal = clustermgr_shared::paths::normalize(&f.path)
            .map(|p| p.display().to_string())
            .map_err(|e| e.to_string())?;
        if normal != f.path || !rules::replicated(&f.path, &self.cfg) {
            return Err("not a replicated path on this node".into());
        }
        let known = self.entries.get(&f.path).and_then(|e| e.file.clone());
        Ok(known.is_none()
            || !older_or_same(
                known.as_ref().and_then(|k| k.version.as_ref()),
                f.version.as_ref(),
            ))
    }

    fn over_limit(&self, size: u64) -> Result<(), String> {
        if size > self.cfg.max_file_bytes {
            return Err(format!(
                "{size} bytes, over the replication limit of {} bytes",
                self.cfg.max_file_bytes
            ));
        }
        Ok(())
    }

    /// The node's file at `path` is the one recorded (same stat) with this content.
    fn has_content(&self, f: &FsrepFile) -> bool {
        let Some(e) = self.entries.get(&f.path) else {
            return false;
        };
        let Ok(meta) = std::fs::symlink_metadata(self.host(&f.path)) else {
            return false;
        };
        meta.is_file()
            && e.file
                .as_ref()
                .is_some_and(|k| !k.deleted && k.sha256 == f.sha256 && k.size == f.size)
            && (e.mtime_ns, e.ctime_ns, e.ino, f.size) == stamp(&meta)
    }

    /// For a streamed state: what to do before fetching (see [`Prepared`]).
    pub fn prepare(&mut self, f: &FsrepFile) -> Prepared {
        let fail = |l: &mut Self, e: String| {
            l.refuse(format!("{}: {e}", f.path));
            Prepared::Done(FsrepAck {
                error: e,
                ..ack_of(f)
            })
        };
        match self
            .wanted(f)
            .and_then(|w| self.over_limit(f.size).map(|()| w))
        {
            Ok(true) => {}
            Ok(false) => return Prepared::Done(ack_of(f)),
            Err(e) => return fail(self, e),
        }
        if self.has_content(f) {
            return Prepared::Local;
        }
        let Some((parent, _)) = split(&f.path) else {
            return fail(self, "not a file path".into());
        };
        let staged = safefs::open_dir_beneath(&self.base_fd, &parent, true)
            .map_err(|e| e.to_string())
            .and_then(|dir| {
                let st = nix::sys::statvfs::fstatvfs(&dir).map_err(|e| e.to_string())?;
                let free = (st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64);
                if free < f.size {
                    return Err(format!(
                        "not enough disk space: {} bytes needed, {free} free",
                        f.size
                    ));
                }
                Staged::create(dir)
            });
        match staged {
            Ok(s) => Prepared::Fetch(s),
            Err(e) => fail(self, e),
        }
    }

    /// Writes a relayed state carried inline (or a delete). Returns the acknowledgement and
    /// whether the file changed.
    pub fn apply(&mut self, mut f: FsrepFile) -> (FsrepAck, bool) {
        let content = std::mem::take(&mut f.content);
        self.apply_from(f, Source::Inline(content))
    }

    /// Writes a relayed state from `source`.
    pub fn apply_from(&mut self, f: FsrepFile, source: Source) -> (FsrepAck, bool) {
        let mut ack = ack_of(&f);
        match self.apply_inner(f, source) {
            Ok(changed) => (ack, changed),
            Err(e) => {
                self.refuse(format!("{}: {e}", ack.path));
                ack.error = e;
                (ack, false)
            }
        }
    }

    fn apply_inner(&mut self, mut f: FsrepFile, source: Source) -> Result<bool, String> {
        // Checked again at the end of a fetch: the node may have moved on meanwhile.
        if !self.wanted(&f)? {
            return Ok(false);
        }
        if let Some(v) = &f.version {
            self.hlc = self.hlc.max(v.hlc);
        }
        let path = f.path.clone();
        let (parent, name) = split(&path).ok_or("not a file path")?;
        if f.deleted {
            return self.delete(f, &parent, name);
        }
        let size = match &source {
            Source::Inline(c) => c.len() as u64,
            Source::Staged(s) => s.written(),
            Source::Local => f.size,
        };
        self.over_limit(size)?;
        let hash_ok = match &source {
            Source::Inline(c) => Sha256::digest(c).as_slice() == f.sha256.as_slice(),
            Source::Staged(s) => s.sha256() == f.sha256 && s.written() == f.size,
            Source::Local => true,
        };
        if !hash_ok {
            return Err("content does not match its hash".into());
        }
        let dir = match &source {
            Source::Staged(s) => s.dir().try_clone().map_err(|e| e.to_string())?,
            _ => {
                safefs::open_dir_beneath(&self.base_fd, &parent, true).map_err(|e| e.to_string())?
            }
        };
        let mut same = false;
        let existing = safefs::stat_entry(&dir, name)
            .map_err(|e| e.to_string())?
            .filter(is_regular);
        // What this node lets the sender set (see `trust`).
        let perms = self.safe_perms(&f, &dir, existing.as_ref())?;
        if let Some(st) = existing {
            let old_sha = self.sha_of(&f.path, &dir, name, &st)?;
            let same_content = old_sha == f.sha256;
            same = same_content
                && st.st_mode & 0o7777 == perms.mode
                && perms.uid.is_none_or(|u| u == st.st_uid)
                && perms.gid.is_none_or(|g| g == st.st_gid);
            if !same_content {
                self.backup(&dir, name, &parent)?;
            }
        }
        if !same {
            match source {
                Source::Inline(c) => {
                    safefs::replace_file(&dir, name, &c, perms).map_err(|e| e.to_string())?
                }
                Source::Staged(s) => s.commit(name, perms)?,
                Source::Local => {
                    // Only owner or mode differ: a copy with the new ones replaces the file.
                    let (file, _) = safefs::open_regular(&dir, name).map_err(|e| e.to_string())?;
                    let mut s = Staged::create(dir.try_clone().map_err(|e| e.to_string())?)?;
                    s.copy_from(file)?;
                    if s.sha256() != f.sha256 {
                        return Err("the file changed while it was copied".into());
                    }
                    s.commit(name, perms)?;
                }
            }
        }
        let meta = std::fs::symlink_metadata(self.host(&f.path)).map_err(|e| e.to_string())?;
        f.content.clear();
        // What is on disk now (an owner this node did not give is not a change of ours).
        f.mode = meta.mode() & 0o1777;
        f.owner = self.name_of_user(meta.uid());
        f.group = self.name_of_group(meta.gid());
        f.size = meta.size();
        let (mtime_ns, ctime_ns, ino, _) = stamp(&meta);
        self.unsent.remove(&f.path);
        self.entries.insert(
            f.path.clone(),
            FsrepLocalEntry {
                file: Some(f),
                mtime_ns,
                ctime_ns,
                ino,
            },
        );
        self.dirty = true;
        Ok(!same)
    }

    fn delete(&mut self, mut f: FsrepFile, parent: &Path, name: &OsStr) -> Result<bool, String> {
        let dir = match safefs::open_dir_beneath(&self.base_fd, parent, false) {
            Ok(d) => Some(d),
            Err(SafeFsError::NotFound(_)) => None,
            Err(e) => return Err(e.to_string()),
        };
        let mut changed = false;
        if let Some(dir) = dir
            && let Some(st) = safefs::stat_entry(&dir, name).map_err(|e| e.to_string())?
            && is_regular(&st)
        {
            self.backup(&dir, name, parent)?;
            unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir).map_err(|e| e.to_string())?;
            changed = true;
        }
        f.content.clear();
        self.unsent.remove(&f.path);
        self.entries.insert(
            f.path.clone(),
            FsrepLocalEntry {
                file: Some(f),
                ..Default::default()
            },
        );
        self.dirty = true;
        Ok(changed)
    }

    /// The SHA-256 of the node's file: the recorded one while its stat is unchanged, otherwise
    /// read a part at a time.
    fn sha_of(
        &self,
        path: &str,
        dir: &OwnedFd,
        name: &OsStr,
        st: &FileStat,
    ) -> Result<Vec<u8>, String> {
        if let Some(e) = self.entries.get(path)
            && let Some(k) = e.file.as_ref()
            && !k.deleted
            && (e.mtime_ns, e.ctime_ns, e.ino, k.size)
                == (
                    st.st_mtime * 1_000_000_000 + st.st_mtime_nsec,
                    st.st_ctime * 1_000_000_000 + st.st_ctime_nsec,
                    st.st_ino,
                    st.st_size as u64,
                )
        {
            return Ok(k.sha256.clone());
        }
        let (file, _) = safefs::open_regular(dir, name).map_err(|e| e.to_string())?;
        Ok(staged::digest(file, 0, u64::MAX)?.sha256)
    }

    /// Keeps the file `name` in `dir` as generation 1 of its backups (older ones move up, the
    /// oldest beyond the configured count, or beyond the byte limit together, is dropped). A
    /// file over the byte limit on its own is not backed up (and the report says so).
    fn backup(&mut self, dir: &OwnedFd, name: &OsStr, parent: &Path) -> Result<(), String> {
        let gens = self.cfg.backups;
        if gens == 0 {
            return Ok(());
        }
        let budget = match self.cfg.backup_bytes {
            0 => rules::DEFAULT_BACKUP_BYTES,
            n => n,
        };
        let (_, st) = safefs::open_regular(dir, name).map_err(|e| format!("backup: {e}"))?;
        if st.st_size as u64 > budget {
            self.cap(format!(
                "{}: {} bytes, over the backup limit of {budget} bytes a file; not backed up",
                parent.join(name).display(),
                st.st_size
            ));
            return Ok(());
        }
        let bdir =
            safefs::open_dir_beneath(&self.root_fd, &Path::new(BACKUP_DIR).join(parent), true)
                .map_err(|e| format!("backup: {e}"))?;
        let n = name.to_string_lossy();
        for i in (1..gens).rev() {
            match renameat(
                &bdir,
                format!("{n}.{i}").as_str(),
                &bdir,
                format!("{n}.{}", i + 1).as_str(),
            ) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(format!("backup: {e}")),
            }
        }
        let (file, _) = safefs::open_regular(dir, name).map_err(|e| format!("backup: {e}"))?;
        let mut s = Staged::create(bdir.try_clone().map_err(|e| format!("backup: {e}"))?)
            .map_err(|e| format!("backup: {e}"))?;
        s.copy_from(file).map_err(|e| format!("backup: {e}"))?;
        let perms = FilePerms {
            mode: 0o600,
            uid: None,
            gid: None,
        };
        s.commit(OsStr::new(&format!("{n}.1")), perms)
            .map_err(|e| format!("backup: {e}"))?;
        // The generations together stay within the byte limit: the older ones go first.
        let mut total = 0u64;
        for i in 1..=gens {
            let g = format!("{n}.{i}");
            let Ok(Some(st)) = safefs::stat_entry(&bdir, OsStr::new(&g)) else {
                continue;
            };
            total = total.saturating_add(st.st_size as u64);
            if total > budget {
                let _ = unlinkat(&bdir, g.as_str(), UnlinkatFlags::NoRemoveDir);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsrep::local::tests::cfg;

    fn relayed(path: &str, hlc: u64, content: &[u8]) -> FsrepFile {
        FsrepFile {
            path: path.into(),
            version: Some(FsrepVersion {
                hlc,
                node_id: "n2".into(),
            }),
            mode: 0o640,
            sha256: Sha256::digest(content).to_vec(),
            size: content.len() as u64,
            content: content.to_vec(),
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
        let sp = state.path().join("s");
        let mut l = Local::load(root.path(), root.path(), &sp, "n1", cfg()).unwrap();
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
        let f = relayed("/etc/gluu/conf/a.properties", u64::MAX / 2, b"two");
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
        let again = Local::load(root.path(), root.path(), &sp, "n1", cfg()).unwrap();
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

    #[test]
    fn backups_of_a_file_stay_within_their_byte_limit() {
        let root = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let d = root.path().join("etc/gluu/conf");
        std::fs::create_dir_all(&d).unwrap();
        let mut c = cfg();
        c.backups = 3;
        c.backup_bytes = 250;
        let mut l =
            Local::load(root.path(), root.path(), &state.path().join("s"), "n1", c).unwrap();
        let p = "/etc/gluu/conf/f";
        let gens = |root: &Path| -> Vec<usize> {
            (1..=3)
                .map(|i| {
                    std::fs::read(root.join(BACKUP_DIR).join(format!("etc/gluu/conf/f.{i}")))
                        .map_or(0, |b| b.len())
                })
                .collect()
        };
        for (i, size) in [100usize, 100, 100, 100].iter().enumerate() {
            let body = vec![b'a' + i as u8; *size];
            let (ack, _) = l.apply(relayed(p, 10 + i as u64, &body));
            assert!(ack.error.is_empty(), "{}", ack.error);
        }
        // Three generations would take 300 bytes: the oldest went.
        assert_eq!(gens(root.path()), [100, 100, 0]);
        // A file over the limit on its own is not backed up; the report says so.
        let (ack, _) = l.apply(relayed(p, 20, &[b'x'; 300]));
        assert!(ack.error.is_empty(), "{}", ack.error);
        let (ack, _) = l.apply(relayed(p, 21, b"small"));
        assert!(ack.error.is_empty(), "{}", ack.error);
        assert_eq!(gens(root.path()), [100, 100, 0]);
        assert!(
            l.capped[0].contains("over the backup limit"),
            "{:?}",
            l.capped
        );
    }

    #[test]
    fn a_fetched_content_is_renamed_into_place_only_when_whole_and_right() {
        let base = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let d = base.path().join("etc/gluu/conf");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("m.xml"), "old").unwrap();
        let mut c = cfg();
        c.max_file_bytes = 1 << 20;
        let mut l =
            Local::load(base.path(), root.path(), &state.path().join("s"), "n1", c).unwrap();
        let content: Vec<u8> = (0..300_000u32).map(|i| (i % 13) as u8).collect();
        let mut f = relayed("/etc/gluu/conf/m.xml", 1 << 40, &content);
        f.content.clear();
        assert!(rules::streamed(&f));
        let entries = |p: &Path| std::fs::read_dir(p).unwrap().count();
        // A part missing: refused, the old file stays, no temporary file is left.
        let Prepared::Fetch(mut s) = l.prepare(&f) else {
            panic!("a fetch is needed")
        };
        s.write(&content[..1000]).unwrap();
        let (ack, changed) = l.apply_from(f.clone(), Source::Staged(s));
        assert!(!changed && ack.error.contains("hash"), "{}", ack.error);
        assert_eq!(std::fs::read_to_string(d.join("m.xml")).unwrap(), "old");
        assert_eq!(entries(&d), 1);
        // Whole: in place, the old file backed up under the agent's root.
        let Prepared::Fetch(mut s) = l.prepare(&f) else {
            panic!("a fetch is needed")
        };
        s.write(&content).unwrap();
        let (ack, changed) = l.apply_from(f.clone(), Source::Staged(s));
        assert!(changed && ack.error.is_empty(), "{}", ack.error);
        assert_eq!(std::fs::read(d.join("m.xml")).unwrap(), content);
        assert_eq!(entries(&d), 1);
        assert_eq!(
            std::fs::read_to_string(root.path().join(BACKUP_DIR).join("etc/gluu/conf/m.xml.1"))
                .unwrap(),
            "old"
        );
        // The same version again: nothing to fetch. A newer one with the same content and
        // another mode: no fetch, the node's own copy gets the mode.
        assert!(matches!(l.prepare(&f), Prepared::Done(a) if a.error.is_empty()));
        let mut g = f.clone();
        g.version.as_mut().unwrap().hlc += 1;
        g.mode = 0o600;
        assert!(matches!(l.prepare(&g), Prepared::Local));
        let (ack, changed) = l.apply_from(g, Source::Local);
        assert!(changed && ack.error.is_empty(), "{}", ack.error);
        let m = std::fs::metadata(d.join("m.xml")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(d.join("m.xml")).unwrap(), content);
        // Over the limit: refused before anything is fetched.
        let mut big = f.clone();
        big.version.as_mut().unwrap().hlc += 5;
        big.size = (1 << 20) + 1;
        assert!(
            matches!(l.prepare(&big), Prepared::Done(a) if a.error.contains("over the replication limit"))
        );
    }
}
