//! Streamed contents on a node's own connection, as a pushed package travels: `Upload` of a
//! file over the inline size before the change that names it, `Fetch` of a relayed one. The
//! controller writes an upload to disk as its parts arrive (sealed, see `blobs`), checks its size
//! and SHA-256 at the end, and keeps it until its change is decided (at most [`UPLOAD_TTL`]);
//! a fetch reads the blob of the path's current version one part at a time.

use super::blobs::{BlobError, BlobWriter, Blobs};
use super::limits::{Limit, UPLOADS_PER_NODE};
use super::{Fsrep, FsrepError};
use crate::ctl::Ctl;
use clustermgr_proto::{FsrepFile, FsrepVersion};
use clustermgr_shared::fsrep as rules;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long an upload waits for the change that names it.
pub const UPLOAD_TTL: Duration = Duration::from_secs(600);
/// Parts read ahead of a slow fetcher.
const READ_AHEAD: usize = 4;

/// An upload no change has named yet.
#[derive(Debug)]
pub(super) struct Upload {
    pub node: String,
    pub path: String,
    pub sha256: Vec<u8>,
    pub size: u64,
    pub file: PathBuf,
    pub at: Instant,
}

impl Upload {
    /// Removes its file (its change was refused, lost, or never came).
    pub fn discard(self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

impl super::State {
    /// Drops the uploads `node` made for `path` that no change named.
    pub(super) fn discard_uploads(&mut self, node: &str, path: &str) {
        let ids: Vec<String> = self
            .uploads
            .iter()
            .filter(|(_, u)| u.node == node && u.path == path)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            if let Some(u) = self.uploads.remove(&id) {
                u.discard();
            }
        }
    }
}

impl Fsrep {
    /// Checks an upload's announced state (the node replicates; the path is replicated; the
    /// size within the limit, the controller's caps and the disk's room) and starts writing it.
    fn begin_upload(&self, node: &str, head: &FsrepFile) -> Result<BlobWriter, FsrepError> {
        let mut st = self.lock();
        if !st.peers.get(node).is_some_and(|p| p.enabled) {
            return Err(FsrepError::NotReplicating);
        }
        let cfg = Self::config(&st.settings, true);
        let mine = st.uploads.values().filter(|u| u.node == node).count();
        let capped = if mine >= UPLOADS_PER_NODE {
            Some((
                Limit::Uploads,
                format!(
                    "{}: {mine} uploads already wait for their change (at most \
                     {UPLOADS_PER_NODE}); refused",
                    head.path
                ),
            ))
        } else {
            let cur = st.files.get(&head.path).cloned();
            st.within_caps(cur.as_ref(), head).err()
        };
        if let Some((limit, why)) = capped {
            st.cap(node, (limit, why.clone()));
            return Err(FsrepError::Capped(why));
        }
        drop(st);
        let normal = clustermgr_shared::paths::normalize(&head.path)
            .map(|p| p.display().to_string())
            .ok();
        if normal.as_deref() != Some(head.path.as_str()) || !rules::replicated(&head.path, &cfg) {
            return Err(FsrepError::BadPath {
                path: head.path.clone(),
                why: "not a replicated path".into(),
            });
        }
        if head.size > cfg.max_file_bytes {
            return Err(FsrepError::TooLarge {
                path: head.path.clone(),
                size: head.size,
                max: cfg.max_file_bytes,
            });
        }
        if head.size == 0 || head.sha256.len() != 32 || !head.content.is_empty() {
            return Err(FsrepError::Invalid {
                what: "upload",
                why: "it starts with the file's size and SHA-256, then its content".into(),
            });
        }
        Ok(self.blobs.upload(head.size)?)
    }

    fn end_upload(&self, node: &str, head: FsrepFile, file: PathBuf) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut st = self.lock();
        // An earlier upload of the node for the path is replaced (its change will not come).
        st.discard_uploads(node, &head.path);
        st.uploads.insert(
            id.clone(),
            Upload {
                node: node.to_string(),
                path: head.path,
                sha256: head.sha256,
                size: head.size,
                file,
                at: Instant::now(),
            },
        );
        id
    }

    /// The blob of `path`'s current version and its size, for a node that replicates; NotFound
    /// when `version` is not (or no longer) the current one.
    fn fetch_source(
        &self,
        node: &str,
        path: &str,
        version: Option<&FsrepVersion>,
    ) -> Result<(PathBuf, u64), FsrepError> {
        let st = self.lock();
        if !st.peers.get(node).is_some_and(|p| p.enabled) {
            return Err(FsrepError::NotReplicating);
        }
        match st.files.get(path) {
            Some(f) if f.version.as_ref() == version && rules::streamed(f) => {
                let v = f.version.clone().unwrap_or_default();
                Ok((self.blobs.file(path, &v), f.size))
            }
            _ => Err(FsrepError::NotCurrent(path.to_string())),
        }
    }

    /// Forgets the uploads no change named in time.
    pub(super) fn expire_uploads(&self) {
        let mut st = self.lock();
        let old: Vec<String> = st
            .uploads
            .iter()
            .filter(|(_, u)| u.at.elapsed() > UPLOAD_TTL)
            .map(|(id, _)| id.clone())
            .collect();
        for id in old {
            if let Some(u) = st.uploads.remove(&id) {
                tracing::warn!(node = %u.node, path = %u.path, "an upload no change named is dropped");
                u.discard();
            }
        }
    }
}

/// Receives one upload from `node`: the file's state, then its parts. Returns the upload's id.
pub async fn receive_upload(
    ctl: Arc<Ctl>,
    fsrep: &Fsrep,
    node: &str,
    mut parts: tonic::Streaming<FsrepFile>,
) -> Result<String, FsrepError> {
    let broken = |s: tonic::Status| FsrepError::Transfer(s.message().to_string());
    let head = parts
        .message()
        .await
        .map_err(broken)?
        .ok_or(FsrepError::Transfer("an empty upload".into()))?;
    let mut w = fsrep.begin_upload(node, &head)?;
    while let Some(part) = parts.message().await.map_err(broken)? {
        tokio::task::block_in_place(|| w.write(&ctl.sealer, &part.content))?;
    }
    let file = tokio::task::block_in_place(|| w.finish(&ctl.sealer, &head.sha256))?;
    tracing::debug!(node = %node, path = %head.path, size = head.size, "upload received");
    Ok(fsrep.end_upload(node, head, file))
}

pub type Parts = mpsc::Receiver<Result<FsrepFile, FsrepError>>;

/// Sends `path`'s content at `version` to `node` in parts (read from disk as the node takes
/// them).
pub fn send_parts(
    ctl: Arc<Ctl>,
    fsrep: &Fsrep,
    node: &str,
    path: &str,
    version: Option<&FsrepVersion>,
) -> Result<Parts, FsrepError> {
    let (file, size) = fsrep.fetch_source(node, path, version)?;
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let sent = Blobs::read_parts(&ctl.sealer, &file, size, |content| {
            tx.blocking_send(Ok(FsrepFile {
                content,
                ..Default::default()
            }))
            .is_ok()
        });
        let e = match sent {
            Ok(()) => return,
            // Replaced by a newer version between the check and the open.
            Err(BlobError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                FsrepError::NotCurrent(path)
            }
            Err(e) => e.into(),
        };
        let _ = tx.blocking_send(Err(e));
    });
    Ok(rx)
}
