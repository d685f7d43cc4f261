//! The backups the controller holds: archives of a node's directory and Gluu configuration
//! (`backup.proto`), uploaded by the node's agent on its session's connection.
//!
//! An archive is content-addressed: `DATA_DIR/backups/<sha256>`, written as the upload's parts
//! arrive in the sealed blob format file replication uses (`fsrep::blobs`: each part of 1 MiB
//! sealed on its own under the purpose [`PURPOSE`], so a copy of the data directory without its
//! sealing key shows nothing of the node's keys and passwords), checked against the announced
//! size and SHA-256 before it is renamed into place. A checked archive is noted in the store
//! before its file takes its digest's name, so a restart before its workflow ends loses
//! nothing. The index (id, node, time, digest, size, directory, parts) is a store table;
//! recording a backup applies the retention (the `keep` newest of its node, never one a restore
//! still needs) in the same transaction, then removes the archives no kept backup names.
//!
//! The archives' storage takes the store, the sealer and the data directory as arguments;
//! `workflows.rs` starts the backup and restore workflows and holds their kinds (the archive
//! recorded when a backup ends). Neither knows the transport.

#[cfg(test)]
mod tests;
mod workflows;
pub use workflows::{
    BackupKind, RestoreKind, expects_fetch, role_for_keep, settle, start_backup, start_restore,
    take_upload,
};

use crate::fsrep::blobs::{BlobError, BlobWriter, Blobs};
use crate::sealing::Sealer;
use crate::store::{Store, StoreError};
use clustermgr_proto::{BackupChunk, BackupInfo, BackupNodeOutput};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Backups kept per node when the request says 0.
pub const DEFAULT_KEEP: u32 = 7;
/// The largest archive accepted.
pub const MAX_ARCHIVE_BYTES: u64 = 64 << 30;
/// The sealing purpose of an archive's parts (the part's index follows).
pub const PURPOSE: &str = "backup.archive";
/// The directory under the data directory.
pub const DIR: &str = "backups";
/// Parts read ahead of a slow fetcher.
const READ_AHEAD: usize = 4;
/// How long a fetch waits for the node to take a part before it gives up (and frees its
/// thread).
const FETCH_STALL: std::time::Duration = std::time::Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid upload: {0}")]
    Invalid(String),
    #[error("the archive is {size} bytes, over the limit of {max}")]
    TooLarge { size: u64, max: u64 },
    #[error("the transfer broke: {0}")]
    Transfer(String),
    #[error("no backup {0}")]
    NotFound(String),
    #[error("no upload of backup {0} from this node waits to be recorded")]
    NotReceived(String),
    #[error("backup {0} is already recorded with another archive")]
    Conflict(String),
    #[error("no running backup of this node expects that upload")]
    NotExpected,
    #[error("the backup ended while its archive was being sent")]
    Ended,
    #[error("the archive of backup {0} does not match its SHA-256 (damaged on disk)")]
    Damaged(String),
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
}

impl crate::error::Classify for BackupError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            Self::Invalid(_) | Self::TooLarge { .. } => Kind::InvalidArgument,
            Self::NotFound(_) => Kind::NotFound,
            Self::NotReceived(_)
            | Self::Transfer(_)
            | Self::Damaged(_)
            | Self::Conflict(_)
            | Self::Ended => Kind::FailedPrecondition,
            Self::NotExpected => Kind::PermissionDenied,
            Self::Blob(BlobError::NoSpace { .. }) => Kind::ResourceExhausted,
            Self::Blob(_) | Self::Store(_) | Self::Io { .. } => Kind::Internal,
        }
    }
}

fn io(what: &'static str, p: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = p.display().to_string();
    move |source| BackupError::Io { what, path, source }
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A backup id: 1-64 lowercase letters, digits and dashes (it names files on the node).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A new backup id (time-ordered).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// An archive received and checked, not yet in the index.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub backup_id: String,
    pub sha256: String,
    pub size: u64,
}

/// The archives on disk.
pub struct Backups {
    blobs: Blobs,
    /// Held while an archive takes its digest's name and while a sweep decides, so a sweep
    /// never finds a received archive's file without the store row that names it.
    naming: Mutex<()>,
}

impl Backups {
    /// Opens (creating, 0700) `DATA_DIR/backups`.
    pub fn open(data_dir: &Path) -> Result<Self, BackupError> {
        Ok(Self {
            blobs: Blobs::open_for(data_dir.join(DIR), PURPOSE)?,
            naming: Mutex::new(()),
        })
    }

    /// The archive file of a digest.
    pub fn file(&self, sha256: &str) -> PathBuf {
        self.blobs.dir().join(sha256)
    }

    /// Checks an upload's first message and starts writing it (refused when the disk cannot
    /// hold it).
    pub fn begin(&self, head: &BackupChunk) -> Result<Receiving, BackupError> {
        if !valid_id(&head.backup_id) {
            return Err(BackupError::Invalid(format!(
                "backup id {:?}",
                head.backup_id
            )));
        }
        if !is_sha256(&head.sha256) || head.size == 0 || !head.data.is_empty() {
            return Err(BackupError::Invalid(
                "it starts with the archive's size and SHA-256, then its content".into(),
            ));
        }
        if head.size > MAX_ARCHIVE_BYTES {
            return Err(BackupError::TooLarge {
                size: head.size,
                max: MAX_ARCHIVE_BYTES,
            });
        }
        Ok(Receiving {
            writer: self.blobs.upload(head.size)?,
            backup_id: head.backup_id.clone(),
            sha256: head.sha256.clone(),
            size: head.size,
        })
    }

    fn naming(&self) -> std::sync::MutexGuard<'_, ()> {
        // The lock guards no data.
        self.naming.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Receives one upload of `node_id` (the first message, then the parts) into a checked
    /// archive, noted in the store until [`Backups::record`]. What does not add up (size,
    /// SHA-256) is refused and leaves nothing behind. The caller checks that the node runs a
    /// backup job.
    pub async fn receive(
        &self,
        store: &Store,
        sealer: &Sealer,
        node_id: &str,
        mut parts: impl futures::Stream<Item = Result<BackupChunk, tonic::Status>> + Unpin,
    ) -> Result<Received, BackupError> {
        use futures::StreamExt;
        let broken = |s: tonic::Status| BackupError::Transfer(s.message().to_string());
        let head = parts
            .next()
            .await
            .ok_or_else(|| BackupError::Transfer("an empty upload".into()))?
            .map_err(broken)?;
        let mut r = self.begin(&head)?;
        while let Some(part) = parts.next().await {
            let part = part.map_err(broken)?;
            tokio::task::block_in_place(|| r.write(sealer, &part.data))?;
        }
        let digest = hex::decode(&r.sha256)
            .map_err(|_| BackupError::Invalid("the SHA-256 is not hex".into()))?;
        let Receiving {
            writer,
            backup_id,
            sha256,
            size,
        } = r;
        // The last part and the checks; the file keeps its upload name until it is noted.
        let tmp = tokio::task::block_in_place(|| writer.finish(sealer, &digest))?;
        let noted = BackupInfo {
            id: backup_id.clone(),
            node_id: node_id.to_string(),
            created_unix_ms: clustermgr_shared::util::now_ms(),
            sha256: sha256.clone(),
            size,
            ..Default::default()
        };
        if let Err(e) = store.put_backup_upload(noted).await {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
        let dest = self.file(&sha256);
        let _naming = self.naming();
        std::fs::rename(&tmp, &dest).map_err(io("rename", &tmp))?;
        Ok(Received {
            backup_id,
            sha256,
            size,
        })
    }

    /// Records the archive `node_id` uploaded for its succeeded `BackupNode` job in the index,
    /// with what the job's output says about it, and applies the retention: only the `keep`
    /// newest backups of the node stay (0: the default), and those `protect` names (a restore
    /// needs them). Returns the record and the backups retired. Recording a backup already in
    /// the index with the same archive changes nothing (a workflow's end seen again).
    pub async fn record(
        &self,
        store: &Store,
        node_id: &str,
        hostname: &str,
        output: &BackupNodeOutput,
        keep: u32,
        protect: &HashSet<String>,
    ) -> Result<(BackupInfo, Vec<BackupInfo>), BackupError> {
        let id = &output.backup_id;
        if let Some(done) = store.backups()?.into_iter().find(|b| &b.id == id) {
            if done.node_id == node_id && done.sha256 == output.sha256 {
                return Ok((done, Vec::new()));
            }
            return Err(BackupError::Conflict(id.clone()));
        }
        let received = store
            .backup_uploads()?
            .into_iter()
            .find(|u| &u.id == id && u.node_id == node_id)
            .ok_or_else(|| BackupError::NotReceived(id.clone()))?;
        if output.sha256 != received.sha256 || output.size != received.size {
            store.forget_backup_uploads(vec![id.clone()]).await?;
            return Err(BackupError::Invalid(
                "the job's output names another archive than the one received".into(),
            ));
        }
        let manifest = output.manifest.clone().unwrap_or_default();
        let info = BackupInfo {
            id: received.id,
            node_id: node_id.to_string(),
            hostname: hostname.to_string(),
            created_unix_ms: clustermgr_shared::util::now_ms(),
            sha256: received.sha256,
            size: received.size,
            directory: manifest.directory,
            parts: manifest.parts,
        };
        let mut all = store.backups()?;
        all.push(info.clone());
        let mut retired = retention(&all, node_id, keep);
        retired.retain(|b| !protect.contains(&b.id));
        let ids = retired.iter().map(|b| b.id.clone()).collect();
        store.put_backup(info.clone(), ids).await?;
        self.sweep_archives(store, false)?;
        Ok((info, retired))
    }

    /// Forgets received archives that will not be recorded (their workflow ended without
    /// them) and removes their files.
    pub async fn forget(&self, store: &Store, ids: Vec<String>) -> Result<(), BackupError> {
        store.forget_backup_uploads(ids).await?;
        self.sweep_archives(store, false)?;
        Ok(())
    }

    /// At start, when no upload can be in progress (after [`settle`] decided each received
    /// archive): removes the archives and interrupted uploads neither the index nor a received
    /// archive names; returns how many files went.
    pub fn sweep(&self, store: &Store) -> Result<usize, BackupError> {
        self.sweep_archives(store, true)
    }

    /// The sweep; `uploads` false keeps every upload file (other nodes' uploads in progress).
    fn sweep_archives(&self, store: &Store, uploads: bool) -> Result<usize, BackupError> {
        let _naming = self.naming();
        let mut keep: HashSet<String> = store.backups()?.into_iter().map(|b| b.sha256).collect();
        keep.extend(store.backup_uploads()?.into_iter().map(|u| u.sha256));
        if !uploads && let Ok(rd) = std::fs::read_dir(self.blobs.dir()) {
            keep.extend(
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(crate::fsrep::blobs::UPLOAD_PREFIX)),
            );
        }
        // Still holding the naming lock: no archive is renamed into place meanwhile.
        Ok(self.blobs.sweep(&keep))
    }

    /// The backups held, newest first; only `node`'s (an id or a hostname) when given.
    pub fn list(store: &Store, node: Option<&str>) -> Result<Vec<BackupInfo>, BackupError> {
        let mut all = store.backups()?;
        if let Some(n) = node {
            all.retain(|b| b.node_id == n || b.hostname == n);
        }
        all.sort_by(|a, b| (b.created_unix_ms, &b.id).cmp(&(a.created_unix_ms, &a.id)));
        Ok(all)
    }

    pub fn get(store: &Store, id: &str) -> Result<BackupInfo, BackupError> {
        store
            .backups()?
            .into_iter()
            .find(|b| b.id == id)
            .ok_or_else(|| BackupError::NotFound(id.to_string()))
    }

    /// Reads an archive in parts (blocking; `send` false stops), checking its SHA-256 at the
    /// end: a damaged archive ends in an error after its last part (the node checks the whole
    /// too, before it touches anything).
    pub fn read(
        &self,
        sealer: &Sealer,
        info: &BackupInfo,
        mut send: impl FnMut(Vec<u8>) -> bool,
    ) -> Result<(), BackupError> {
        let mut h = Sha256::new();
        let mut stopped = false;
        Blobs::read_parts_for(PURPOSE, sealer, &self.file(&info.sha256), info.size, |p| {
            h.update(&p);
            let go = send(p);
            stopped = !go;
            go
        })?;
        if !stopped && hex::encode(h.finalize()) != info.sha256 {
            return Err(BackupError::Damaged(info.id.clone()));
        }
        Ok(())
    }

    /// [`Backups::read`] as a stream of data-only chunks for `BackupTransfer/Fetch` (read from
    /// disk as the node takes them).
    pub fn send(
        self: Arc<Self>,
        sealer: Arc<Sealer>,
        info: BackupInfo,
    ) -> mpsc::Receiver<Result<BackupChunk, BackupError>> {
        self.send_within(sealer, info, FETCH_STALL)
    }

    /// [`Backups::send`], giving up when the node has not taken a part for `stall`.
    fn send_within(
        self: Arc<Self>,
        sealer: Arc<Sealer>,
        info: BackupInfo,
        stall: std::time::Duration,
    ) -> mpsc::Receiver<Result<BackupChunk, BackupError>> {
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            // A node that stops taking parts (without closing) frees this thread after a while.
            let give = |item| {
                rt.block_on(tokio::time::timeout(stall, tx.send(item)))
                    .is_ok_and(|sent| sent.is_ok())
            };
            let sent = self.read(&sealer, &info, |data| {
                give(Ok(BackupChunk {
                    data,
                    ..Default::default()
                }))
            });
            if let Err(e) = sent {
                give(Err(e));
            }
        });
        rx
    }
}

/// An upload being written.
pub struct Receiving {
    writer: BlobWriter,
    backup_id: String,
    sha256: String,
    size: u64,
}

impl Receiving {
    pub fn backup_id(&self) -> &str {
        &self.backup_id
    }

    /// Appends content (blocking I/O); refused past the announced size.
    pub fn write(&mut self, sealer: &Sealer, data: &[u8]) -> Result<(), BackupError> {
        Ok(self.writer.write(sealer, data)?)
    }
}

/// The backups of `node_id` beyond the `keep` newest (0: [`DEFAULT_KEEP`]), by creation time
/// then id; other nodes' backups are never retired.
pub fn retention(all: &[BackupInfo], node_id: &str, keep: u32) -> Vec<BackupInfo> {
    let keep = if keep == 0 { DEFAULT_KEEP } else { keep } as usize;
    let mut mine: Vec<&BackupInfo> = all.iter().filter(|b| b.node_id == node_id).collect();
    mine.sort_by(|a, b| (b.created_unix_ms, &b.id).cmp(&(a.created_unix_ms, &a.id)));
    mine.into_iter().skip(keep).cloned().collect()
}
