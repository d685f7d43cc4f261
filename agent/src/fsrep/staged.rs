//! Files read and written a part at a time, on directory handles: a content is hashed as it is
//! read (kept only when it is small enough to travel inline), and a file received or copied is
//! written to a temporary file in its target's directory (`O_CREAT|O_EXCL|O_NOFOLLOW`, a hidden
//! `.clustermgr-*.part` name that is never replicated), then given its owner and mode, synced and
//! renamed into place: a reader sees the old file or the whole new one, never a part.

use clustermgr_shared::safefs::FilePerms;
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::{Mode, fchmod};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fsync, unlinkat};
use sha2::{Digest, Sha256};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;

/// Read size when hashing or copying.
const READ_BYTES: usize = 1 << 20;
/// The name prefix and suffix of a staged file (a leftover of a crash is recognised by them).
pub const PREFIX: &str = ".clustermgr-";
pub const SUFFIX: &str = ".part";

/// A file's hash and size, and its content when it is small.
#[derive(Debug)]
pub struct Digested {
    pub content: Option<Vec<u8>>,
    pub sha256: Vec<u8>,
    pub size: u64,
}

/// Reads `file` to its end: the content is kept while it is at most `inline` bytes, the hash
/// and size always. An error when it holds more than `limit` bytes.
pub fn digest(mut file: impl Read, inline: u64, limit: u64) -> Result<Digested, String> {
    let mut h = Sha256::new();
    let mut kept: Option<Vec<u8>> = Some(Vec::new());
    let mut size = 0u64;
    let mut buf = vec![0u8; READ_BYTES];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        };
        size += n as u64;
        if size > limit {
            return Err(format!(
                "over {limit} bytes, the replication limit (it grew while it was read)"
            ));
        }
        h.update(&buf[..n]);
        if size > inline {
            kept = None;
        } else if let Some(k) = kept.as_mut() {
            k.extend_from_slice(&buf[..n]);
        }
    }
    Ok(Digested {
        content: kept,
        sha256: h.finalize().to_vec(),
        size,
    })
}

/// A temporary file being written in a directory (its handle kept), removed unless committed.
pub struct Staged {
    dir: OwnedFd,
    name: OsString,
    file: Option<File>,
    hash: Sha256,
    written: u64,
}

impl Staged {
    /// Creates the temporary file in `dir` (mode 0600 until it is committed).
    pub fn create(dir: OwnedFd) -> Result<Self, String> {
        let mut last = Errno::EEXIST;
        for _ in 0..16 {
            let r: [u8; 12] = rand::random();
            let name = OsString::from(format!("{PREFIX}{}{SUFFIX}", hex::encode(r)));
            match openat(
                &dir,
                name.as_os_str(),
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            ) {
                Ok(fd) => {
                    return Ok(Self {
                        dir,
                        name,
                        file: Some(File::from(fd)),
                        hash: Sha256::new(),
                        written: 0,
                    });
                }
                Err(Errno::EEXIST) => last = Errno::EEXIST,
                Err(e) => return Err(format!("cannot create a temporary file: {e}")),
            }
        }
        Err(format!("cannot create a temporary file: {last}"))
    }

    pub fn dir(&self) -> &OwnedFd {
        &self.dir
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// The SHA-256 of what was written so far.
    pub fn sha256(&self) -> Vec<u8> {
        self.hash.clone().finalize().to_vec()
    }

    pub fn write(&mut self, data: &[u8]) -> Result<(), String> {
        let f = self.file.as_mut().ok_or("the temporary file is closed")?;
        f.write_all(data)
            .map_err(|e| format!("cannot write: {e}"))?;
        self.hash.update(data);
        self.written += data.len() as u64;
        Ok(())
    }

    /// Empties the file to receive its content again.
    pub fn reset(&mut self) -> Result<(), String> {
        use std::io::Seek;
        let f = self.file.as_mut().ok_or("the temporary file is closed")?;
        f.set_len(0)
            .and_then(|()| f.rewind())
            .map_err(|e| format!("cannot empty the temporary file: {e}"))?;
        self.hash = Sha256::new();
        self.written = 0;
        Ok(())
    }

    /// Copies the rest of `from` in.
    pub fn copy_from(&mut self, mut from: impl Read) -> Result<(), String> {
        let mut buf = vec![0u8; READ_BYTES];
        loop {
            match from.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => self.write(&buf[..n])?,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("cannot read: {e}")),
            }
        }
    }

    /// Owner and mode on the handle, fsync, rename to `name` in the same directory, fsync of
    /// the directory. What is at `name` (a link included) is replaced, never written through.
    pub fn commit(mut self, name: &OsStr, perms: FilePerms) -> Result<(), String> {
        let f = self.file.take().ok_or("the temporary file is closed")?;
        // Owner first: changing the owner clears setuid/setgid bits, the mode comes after.
        if perms.uid.is_some() || perms.gid.is_some() {
            fchown(
                &f,
                perms.uid.map(Uid::from_raw),
                perms.gid.map(Gid::from_raw),
            )
            .map_err(|e| format!("cannot set the owner: {e}"))?;
        }
        fchmod(&f, Mode::from_bits_truncate(perms.mode & 0o7777))
            .map_err(|e| format!("cannot set the mode: {e}"))?;
        f.sync_all().map_err(|e| format!("cannot sync: {e}"))?;
        drop(f);
        renameat(&self.dir, self.name.as_os_str(), &self.dir, name)
            .map_err(|e| format!("cannot rename into place: {e}"))?;
        self.name.clear();
        fsync(&self.dir).map_err(|e| format!("cannot sync the directory: {e}"))
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.name.is_empty() {
            let _ = unlinkat(&self.dir, self.name.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
    }
}

/// Whether a directory entry is a staged file a crash left behind.
pub fn is_leftover(name: &str) -> bool {
    name.starts_with(PREFIX) && name.ends_with(SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn a_small_content_is_kept_a_large_one_only_hashed_and_the_limit_holds() {
        let small = digest(&b"abc"[..], 10, 100).unwrap();
        assert_eq!(small.content.as_deref(), Some(&b"abc"[..]));
        assert_eq!(small.sha256, Sha256::digest(b"abc").to_vec());
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let d = digest(&big[..], 1000, 10_000_000).unwrap();
        assert!(d.content.is_none());
        assert_eq!(
            (d.size, d.sha256),
            (3_000_000, Sha256::digest(&big).to_vec())
        );
        assert!(
            digest(&big[..], 1000, 2_999_999)
                .unwrap_err()
                .contains("limit")
        );
    }

    #[test]
    fn staged_files_appear_whole_or_not_at_all() {
        let d = tempfile::tempdir().unwrap();
        let dir = || clustermgr_shared::safefs::open_dir(d.path()).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("victim"), "keep").unwrap();
        std::os::unix::fs::symlink(outside.path().join("victim"), d.path().join("f")).unwrap();
        // Dropped unfinished: nothing stays.
        let mut s = Staged::create(dir()).unwrap();
        s.write(b"half").unwrap();
        drop(s);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        // Committed: replaces the link, with its mode; the link's target is untouched.
        let mut s = Staged::create(dir()).unwrap();
        s.copy_from(&b"whole content"[..]).unwrap();
        assert_eq!(s.written(), 13);
        assert_eq!(s.sha256(), Sha256::digest(b"whole content").to_vec());
        let perms = FilePerms {
            mode: 0o640,
            uid: None,
            gid: None,
        };
        s.commit(OsStr::new("f"), perms).unwrap();
        let m = std::fs::symlink_metadata(d.path().join("f")).unwrap();
        assert!(m.is_file());
        assert_eq!(m.permissions().mode() & 0o7777, 0o640);
        assert_eq!(m.uid(), nix::unistd::geteuid().as_raw());
        assert_eq!(
            std::fs::read_to_string(d.path().join("f")).unwrap(),
            "whole content"
        );
        assert_eq!(
            std::fs::read_to_string(outside.path().join("victim")).unwrap(),
            "keep"
        );
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        assert!(is_leftover(".clustermgr-00ff.part"));
        assert!(!is_leftover(".clustermgr-00ff.tmp"));
    }
}
