//! Streamed contents on the session's own connection, as a pushed package travels (a separate
//! call beside the change stream, one part per message, the whole checked by its SHA-256):
//! `Upload` sends a local file before its change; `Fetch` receives a relayed one into a
//! temporary file that `apply` renames into place once it is whole and right.

use super::staged::Staged;
use clustermgr_proto::file_replication_client::FileReplicationClient;
use clustermgr_proto::{FsrepFetchRequest, FsrepFile};
use clustermgr_shared::MAX_MESSAGE_BYTES;
use clustermgr_shared::fsrep::CHUNK_BYTES;
use std::fs::File;
use std::io::Read;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Parts read ahead of the connection.
const AHEAD: usize = 4;

fn client(channel: tonic::transport::Channel) -> FileReplicationClient<tonic::transport::Channel> {
    FileReplicationClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Sends `head`'s content, read from `file` (opened by the scan's rules), to the controller.
/// Returns the upload's id for the change to name.
pub async fn upload(
    channel: tonic::transport::Channel,
    head: FsrepFile,
    file: File,
) -> Result<String, String> {
    let size = head.size;
    let (tx, rx) = mpsc::channel::<FsrepFile>(AHEAD);
    let read = send_file(tx, head, file, size, |content| FsrepFile {
        content,
        ..Default::default()
    });
    let mut c = client(channel);
    let (read, sent) = tokio::join!(read, c.upload(ReceiverStream::new(rx)));
    read?;
    sent.map(|r| r.into_inner().upload)
        .map_err(|s| format!("the controller refused the upload: {}", s.message()))
}

/// Feeds an upload on the session's connection: `head`, then the first `size` bytes of `file`
/// in parts of [`CHUNK_BYTES`], each wrapped by `part`, read as the connection takes them (at
/// most [`AHEAD`] parts ahead; never the whole file in memory). Ends early when the receiver
/// is gone or the file is shorter (the receiver refuses what does not add up).
pub(crate) async fn send_file<M>(
    tx: mpsc::Sender<M>,
    head: M,
    mut file: File,
    size: u64,
    part: impl Fn(Vec<u8>) -> M,
) -> Result<(), String> {
    if tx.send(head).await.is_err() {
        return Ok(());
    }
    let mut left = size;
    while left > 0 {
        let want = (CHUNK_BYTES as u64).min(left) as usize;
        let data = tokio::task::block_in_place(|| {
            let mut buf = Vec::with_capacity(want);
            (&mut file)
                .take(want as u64)
                .read_to_end(&mut buf)
                .map(|_| buf)
        })
        .map_err(|e| format!("cannot read the file: {e}"))?;
        if data.is_empty() {
            // Shorter than when it was hashed: the receiver refuses the upload.
            break;
        }
        left -= data.len() as u64;
        if tx.send(part(data)).await.is_err() {
            break;
        }
    }
    Ok(())
}

/// Parts read ahead of the connection by [`send_file`].
pub(crate) const PARTS_AHEAD: usize = AHEAD;

/// Why a fetch ended without a content.
pub enum FetchError {
    /// The version is no longer the current one (a newer one is on its way).
    Superseded,
    Failed(String),
}

/// Receives `f`'s content (its path at its version) into `staged`; checks its size and hash.
pub async fn fetch(
    channel: tonic::transport::Channel,
    f: &FsrepFile,
    staged: &mut Staged,
) -> Result<(), FetchError> {
    let broke = |s: tonic::Status| {
        if s.code() == tonic::Code::NotFound {
            FetchError::Superseded
        } else {
            FetchError::Failed(format!("the transfer broke: {}", s.message()))
        }
    };
    let mut parts = client(channel)
        .fetch(FsrepFetchRequest {
            path: f.path.clone(),
            version: f.version.clone(),
        })
        .await
        .map_err(broke)?
        .into_inner();
    while let Some(p) = parts.message().await.map_err(broke)? {
        if staged.written() + p.content.len() as u64 > f.size {
            return Err(FetchError::Failed(format!(
                "the controller sent more than the {} bytes announced",
                f.size
            )));
        }
        tokio::task::block_in_place(|| staged.write(&p.content)).map_err(FetchError::Failed)?;
    }
    if staged.written() != f.size {
        return Err(FetchError::Failed(format!(
            "the transfer ended at byte {} of {}",
            staged.written(),
            f.size
        )));
    }
    if staged.sha256() != f.sha256 {
        return Err(FetchError::Failed(
            "the received content does not match its SHA-256; it was not kept".into(),
        ));
    }
    Ok(())
}
