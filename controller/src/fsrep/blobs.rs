//! Streamed contents on the controller's disk, never whole in memory: `DATA_DIR/fsrep-blobs/`
//! holds one file per current version of a path whose content is streamed, named by a hash of
//! the path and the version (nothing of the content shows in the name).
//!
//! A blob is a sequence of parts of at most [`CHUNK_BYTES`], each sealed on its own (the
//! purpose binds its index) and written as a 4-byte little-endian length and the sealed bytes.
//! An upload is written to `.upload-<random>` as it arrives, part by part, while its SHA-256 is
//! computed; it becomes a blob by a rename once its change is accepted. Anything else in the
//! directory (an upload no change named, a blob no path's current version names) is removed at
//! start.

use crate::sealing::Sealer;
use clustermgr_proto::FsrepVersion;
use clustermgr_shared::fsrep::CHUNK_BYTES;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub(crate) const UPLOAD_PREFIX: &str = ".upload-";
/// Part length prefix, and the largest sealed part it may announce (a part plus the seal).
const LEN_BYTES: usize = 4;
const MAX_SEALED: usize = CHUNK_BYTES + 1024;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("cannot seal or open part {index} of {path}")]
    Seal { path: String, index: u64 },
    #[error("{path} is damaged: {why}")]
    Damaged { path: String, why: String },
    #[error(
        "not enough disk space for the file on the controller ({dir}): {need} bytes needed, {free} \
         free"
    )]
    NoSpace { dir: String, need: u64, free: u64 },
    #[error("the content is {got} bytes, not the {want} announced")]
    Size { got: u64, want: u64 },
    #[error("the content does not match its SHA-256 (it changed while it was sent)")]
    Hash,
}

fn io(what: &'static str, p: &Path) -> impl FnOnce(std::io::Error) -> BlobError {
    let path = p.display().to_string();
    move |source| BlobError::Io { what, path, source }
}

/// The purpose file replication's blobs are sealed under (another user of this format names
/// its own: a part sealed for one cannot be read as the other's).
const FSREP_PURPOSE: &str = "fsrep.blob";

fn purpose(kind: &str, index: u64) -> String {
    format!("{kind}.{index}")
}

/// The blob directory.
pub struct Blobs {
    dir: PathBuf,
    purpose: &'static str,
}

impl Blobs {
    /// Opens (creating, 0700) the directory.
    pub fn open(dir: PathBuf) -> Result<Self, BlobError> {
        Self::open_for(dir, FSREP_PURPOSE)
    }

    /// Opens (creating, 0700) a directory of blobs sealed under `purpose` (the backups').
    pub fn open_for(dir: PathBuf, purpose: &'static str) -> Result<Self, BlobError> {
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io("set the mode of", &dir))?;
        Ok(Self { dir, purpose })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file name of a path's version.
    pub fn name(path: &str, v: &FsrepVersion) -> String {
        let mut h = Sha256::new();
        h.update(b"fsrep-blob\0");
        h.update(path.as_bytes());
        h.update(b"\0");
        h.update(v.hlc.to_le_bytes());
        h.update(v.node_id.as_bytes());
        hex::encode(h.finalize())
    }

    pub fn file(&self, path: &str, v: &FsrepVersion) -> PathBuf {
        self.dir.join(Self::name(path, v))
    }

    /// A new upload of `size` bytes, refused when the disk cannot hold it.
    pub fn upload(&self, size: u64) -> Result<BlobWriter, BlobError> {
        let st = nix::sys::statvfs::statvfs(&self.dir).map_err(|e| BlobError::Io {
            what: "read the free space of",
            path: self.dir.display().to_string(),
            source: e.into(),
        })?;
        let free = (st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64);
        // The seals add a few dozen bytes a part; leave some room for the store too.
        let need = size + size / 64 + (1 << 20);
        if free < need {
            return Err(BlobError::NoSpace {
                dir: self.dir.display().to_string(),
                need,
                free,
            });
        }
        let path = self
            .dir
            .join(format!("{UPLOAD_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        BlobWriter::create(path, size, self.purpose)
    }

    /// An accepted upload becomes the blob of `path` at `v` (a rename: call it with the state
    /// locked, before anyone can ask for that version).
    pub fn commit(&self, upload: &Path, path: &str, v: &FsrepVersion) -> Result<(), BlobError> {
        let dest = self.file(path, v);
        std::fs::rename(upload, &dest).map_err(io("rename", upload))
    }

    /// Writes a whole content as the blob of `path` at `v` (a content sent inline, or an old
    /// store record that held one) and returns its file. Not synced to disk: the store syncs it
    /// before it records the change that names it (`Store::put_fsrep_file`).
    pub fn write_whole(
        &self,
        sealer: &Sealer,
        path: &str,
        v: &FsrepVersion,
        content: &[u8],
    ) -> Result<PathBuf, BlobError> {
        let mut w = self.upload(content.len() as u64)?;
        w.write(sealer, content)?;
        let tmp = w.finish_unsynced(sealer, &Sha256::digest(content))?;
        self.commit(&tmp, path, v)?;
        Ok(self.file(path, v))
    }

    /// Makes a file durable (blocking I/O).
    pub fn sync(file: &Path) -> Result<(), BlobError> {
        File::open(file)
            .and_then(|f| f.sync_all())
            .map_err(io("sync", file))
    }

    /// Removes what no current version names (`keep`: blob names); returns how many.
    pub fn sweep(&self, keep: &HashSet<String>) -> usize {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut n = 0;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) && std::fs::remove_file(e.path()).is_ok() {
                n += 1;
            }
        }
        n
    }

    /// Reads the blob at `file`, `size` bytes, and hands each part to `send` in order (blocking;
    /// a false from `send` stops). Holds one part at a time.
    pub fn read_parts(
        sealer: &Sealer,
        file: &Path,
        size: u64,
        send: impl FnMut(Vec<u8>) -> bool,
    ) -> Result<(), BlobError> {
        Self::read_parts_for(FSREP_PURPOSE, sealer, file, size, send)
    }

    /// [`Blobs::read_parts`] of a blob sealed under `kind` ([`Blobs::open_for`]).
    pub fn read_parts_for(
        kind: &str,
        sealer: &Sealer,
        file: &Path,
        size: u64,
        mut send: impl FnMut(Vec<u8>) -> bool,
    ) -> Result<(), BlobError> {
        let shown = file.display().to_string();
        let damaged = |why: String| BlobError::Damaged {
            path: shown.clone(),
            why,
        };
        let mut r = BufReader::new(File::open(file).map_err(io("open", file))?);
        let mut at = 0u64;
        let mut index = 0u64;
        while at < size {
            let mut len = [0u8; LEN_BYTES];
            r.read_exact(&mut len).map_err(io("read", file))?;
            let len = u32::from_le_bytes(len) as usize;
            if len > MAX_SEALED {
                return Err(damaged(format!("part {index} announces {len} bytes")));
            }
            let mut sealed = vec![0u8; len];
            r.read_exact(&mut sealed).map_err(io("read", file))?;
            let plain =
                sealer
                    .open(&purpose(kind, index), &sealed)
                    .map_err(|_| BlobError::Seal {
                        path: shown.clone(),
                        index,
                    })?;
            at += plain.len() as u64;
            if plain.is_empty() || at > size {
                return Err(damaged(format!("part {index} ends at byte {at} of {size}")));
            }
            index += 1;
            if !send(plain) {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// An upload being written: parts sealed as they fill, the SHA-256 of the plain content kept.
/// Dropped unfinished, its file is removed.
pub struct BlobWriter {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    buf: Vec<u8>,
    index: u64,
    whole: Sha256,
    received: u64,
    size: u64,
    purpose: &'static str,
}

impl BlobWriter {
    fn create(path: PathBuf, size: u64, purpose: &'static str) -> Result<Self, BlobError> {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io("create", &path))?;
        Ok(Self {
            path,
            out: Some(BufWriter::new(f)),
            buf: Vec::with_capacity(CHUNK_BYTES),
            index: 0,
            whole: Sha256::new(),
            received: 0,
            size,
            purpose,
        })
    }

    fn finished(&self) -> BlobError {
        BlobError::Damaged {
            path: self.path.display().to_string(),
            why: "written after its end".into(),
        }
    }

    /// Appends content (blocking I/O); refused past the announced size.
    pub fn write(&mut self, sealer: &Sealer, mut data: &[u8]) -> Result<(), BlobError> {
        self.received += data.len() as u64;
        if self.received > self.size {
            return Err(BlobError::Size {
                got: self.received,
                want: self.size,
            });
        }
        self.whole.update(data);
        while !data.is_empty() {
            let n = (CHUNK_BYTES - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == CHUNK_BYTES {
                self.flush_part(sealer)?;
            }
        }
        Ok(())
    }

    fn flush_part(&mut self, sealer: &Sealer) -> Result<(), BlobError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let sealed = sealer
            .seal(&purpose(self.purpose, self.index), &self.buf)
            .map_err(|_| BlobError::Seal {
                path: self.path.display().to_string(),
                index: self.index,
            })?;
        let Some(out) = self.out.as_mut() else {
            return Err(self.finished());
        };
        out.write_all(&(sealed.len() as u32).to_le_bytes())
            .and_then(|()| out.write_all(&sealed))
            .map_err(io("write", &self.path))?;
        self.buf.clear();
        self.index += 1;
        Ok(())
    }

    /// The last part, then the checks (size, SHA-256) and an fsync. Returns the file, kept.
    pub fn finish(self, sealer: &Sealer, sha256: &[u8]) -> Result<PathBuf, BlobError> {
        let file = self.finish_unsynced(sealer, sha256)?;
        Blobs::sync(&file)?;
        Ok(file)
    }

    /// [`finish`] without the fsync (the caller syncs before it relies on the file).
    fn finish_unsynced(mut self, sealer: &Sealer, sha256: &[u8]) -> Result<PathBuf, BlobError> {
        if self.received != self.size {
            return Err(BlobError::Size {
                got: self.received,
                want: self.size,
            });
        }
        if std::mem::take(&mut self.whole).finalize().as_slice() != sha256 {
            return Err(BlobError::Hash);
        }
        self.flush_part(sealer)?;
        let out = self.out.take().ok_or_else(|| self.finished())?;
        out.into_inner()
            .map_err(|e| io("write", &self.path)(e.into_error()))?;
        Ok(std::mem::take(&mut self.path))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ver(hlc: u64) -> FsrepVersion {
        FsrepVersion {
            hlc,
            node_id: "n1".into(),
        }
    }

    #[test]
    fn a_streamed_content_is_sealed_part_by_part_and_read_back_in_order() {
        let d = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(d.path().join("b")).unwrap();
        let sealer = Sealer::from_bytes(&[9u8; 32]).unwrap();
        // 2.5 parts, written in odd pieces.
        let content: Vec<u8> = (0..(CHUNK_BYTES * 5 / 2) as u32)
            .map(|i| (i * 13 % 251) as u8)
            .collect();
        let mut w = blobs.upload(content.len() as u64).unwrap();
        for piece in content.chunks(300_001) {
            w.write(&sealer, piece).unwrap();
        }
        let tmp = w.finish(&sealer, &Sha256::digest(&content)).unwrap();
        blobs.commit(&tmp, "/a/b", &ver(7)).unwrap();
        let file = blobs.file("/a/b", &ver(7));
        let raw = std::fs::read(&file).unwrap();
        assert!(
            !raw.windows(64)
                .any(|w| content.windows(64).next() == Some(w)),
            "sealed at rest"
        );
        let mut parts = Vec::new();
        Blobs::read_parts(&sealer, &file, content.len() as u64, |p| {
            parts.push(p.len());
            true
        })
        .unwrap();
        assert_eq!(parts, [CHUNK_BYTES, CHUNK_BYTES, CHUNK_BYTES / 2]);
        let mut back = Vec::new();
        Blobs::read_parts(&sealer, &file, content.len() as u64, |p| {
            back.extend(p);
            true
        })
        .unwrap();
        assert_eq!(back, content);
        // Another key, or a cut file, does not read.
        let other = Sealer::from_bytes(&[1u8; 32]).unwrap();
        assert!(Blobs::read_parts(&other, &file, content.len() as u64, |_| true).is_err());
        std::fs::write(&file, &raw[..raw.len() / 2]).unwrap();
        assert!(Blobs::read_parts(&sealer, &file, content.len() as u64, |_| true).is_err());
        // Only what is kept stays.
        let keep = HashSet::from([Blobs::name("/a/b", &ver(7))]);
        assert_eq!(blobs.sweep(&keep), 0);
        assert_eq!(blobs.sweep(&HashSet::new()), 1);
    }

    #[test]
    fn an_upload_that_does_not_add_up_is_refused_and_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(d.path().join("b")).unwrap();
        let sealer = Sealer::from_bytes(&[9u8; 32]).unwrap();
        let mut w = blobs.upload(10).unwrap();
        w.write(&sealer, b"0123456789").unwrap();
        assert!(matches!(
            w.write(&sealer, b"x").unwrap_err(),
            BlobError::Size { got: 11, want: 10 }
        ));
        drop(w);
        let mut w = blobs.upload(10).unwrap();
        w.write(&sealer, b"0123456789").unwrap();
        assert!(matches!(
            w.finish(&sealer, &Sha256::digest(b"something else")),
            Err(BlobError::Hash)
        ));
        let mut w = blobs.upload(10).unwrap();
        w.write(&sealer, b"01234").unwrap();
        assert!(matches!(
            w.finish(&sealer, &Sha256::digest(b"01234")),
            Err(BlobError::Size { got: 5, want: 10 })
        ));
        assert_eq!(std::fs::read_dir(d.path().join("b")).unwrap().count(), 0);
        assert!(matches!(
            blobs.upload(u64::MAX / 4),
            Err(BlobError::NoSpace { .. })
        ));
    }
}
