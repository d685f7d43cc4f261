//! File replication spoken by a fake agent with an enrolled node's credential: the `Sync`
//! stream (Hello, changes with whatever owner, mode and clock the test chooses, acknowledgements)
//! and `Upload`. What a well-behaved agent never sends is the point: the controller and the real
//! agents must hold.

use super::{Enrolled, Enrollment, PeerStats};
use anyhow::{Result, anyhow};
use clustermgr_proto::file_replication_client::FileReplicationClient;
use clustermgr_proto::{
    FsrepAck, FsrepChange, FsrepConfig, FsrepDown, FsrepFile, FsrepHello, FsrepUp, FsrepVersion,
    fsrep_down, fsrep_up,
};
use clustermgr_shared::MAX_MESSAGE_BYTES;
use clustermgr_shared::util::now_ms;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

type Client = FileReplicationClient<tonic::transport::Channel>;

/// An open `Sync` stream; the configuration the controller sent first is in `config`.
pub struct FsrepPeer {
    pub node_id: String,
    pub config: FsrepConfig,
    client: Client,
    tx: mpsc::Sender<FsrepUp>,
    down: tonic::Streaming<FsrepDown>,
}

/// A file's state as a node sends it: inline content with its SHA-256, at `hlc`.
pub fn file(
    path: &str,
    content: &[u8],
    mode: u32,
    owner: &str,
    group: &str,
    hlc: u64,
) -> FsrepFile {
    FsrepFile {
        path: path.into(),
        version: Some(FsrepVersion {
            hlc,
            node_id: String::new(),
        }),
        deleted: false,
        mode,
        owner: owner.into(),
        group: group.into(),
        sha256: sha256(content),
        size: content.len() as u64,
        content: content.to_vec(),
    }
}

pub fn sha256(content: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, content)
        .as_ref()
        .to_vec()
}

/// A fake node enrolled as a Gluu node with `token`, its session answering pings (so the jobs a
/// server add sends it end); the session runs until the returned sender is dropped or sent to.
pub async fn gluu_node(e: Enrollment) -> Result<(Enrolled, watch::Sender<bool>)> {
    let e = e.enroll().await?;
    let peer = e.connect(e.inventory()).await?;
    let (stop, rx) = watch::channel(false);
    peer.answer_pings(false, Arc::new(PeerStats::default()), rx);
    Ok((e, stop))
}

/// The hybrid clock of now, as an agent makes it.
pub fn hlc_now() -> u64 {
    now_ms() << 16
}

impl FsrepPeer {
    /// Opens `Sync` on a new connection and reads the configuration.
    pub async fn open(e: &Enrolled) -> Result<Self> {
        let mut client = FileReplicationClient::new(e.channel().await?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let (tx, rx) = mpsc::channel(1024);
        let mut down = client
            .sync(ReceiverStream::new(rx))
            .await
            .map_err(|s| anyhow!("sync refused: {:?}: {}", s.code(), s.message()))?
            .into_inner();
        let config = match down.message().await? {
            Some(FsrepDown {
                msg: Some(fsrep_down::Msg::Config(c)),
            }) => c,
            other => return Err(anyhow!("the stream did not start with a config: {other:?}")),
        };
        Ok(Self {
            node_id: e.node_id.clone(),
            config,
            client,
            tx,
            down,
        })
    }

    /// Opens `Sync` again until the controller says replication is on for the node (after its
    /// approval, a settings change or a server add).
    pub async fn open_enabled(e: &Enrolled) -> Result<Self> {
        loop {
            let m = Self::open(e).await?;
            if m.config.enabled {
                return Ok(m);
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    async fn send(&self, msg: fsrep_up::Msg) -> Result<()> {
        self.tx
            .send(FsrepUp { msg: Some(msg) })
            .await
            .map_err(|_| anyhow!("sync stream closed"))
    }

    /// Says it holds nothing (so everything the controller has comes down).
    pub async fn hello(&self) -> Result<()> {
        self.send(fsrep_up::Msg::Hello(FsrepHello::default())).await
    }

    /// Sends a change of `f` (its version's node id is the controller's business).
    pub async fn change(&self, f: FsrepFile, base: Option<FsrepVersion>) -> Result<()> {
        self.send(fsrep_up::Msg::Change(FsrepChange {
            file: Some(f),
            base,
            detected_unix_ms: now_ms(),
            upload: String::new(),
        }))
        .await
    }

    /// Acknowledges a relayed state as written.
    pub async fn ack(&self, f: &FsrepFile) -> Result<()> {
        self.send(fsrep_up::Msg::Ack(FsrepAck {
            path: f.path.clone(),
            version: f.version.clone(),
            error: String::new(),
        }))
        .await
    }

    /// The next message from the controller; None when the stream ended.
    pub async fn next(&mut self) -> Result<Option<fsrep_down::Msg>> {
        loop {
            match self.down.message().await {
                Ok(Some(FsrepDown { msg: Some(m) })) => return Ok(Some(m)),
                Ok(Some(FsrepDown { msg: None })) => continue,
                Ok(None) => return Ok(None),
                Err(s) => return Err(anyhow!("sync ended: {:?}: {}", s.code(), s.message())),
            }
        }
    }

    /// The next relayed state (adoptions skipped), acknowledged.
    pub async fn next_apply(&mut self) -> Result<FsrepFile> {
        loop {
            match self.next().await? {
                Some(fsrep_down::Msg::Apply(f)) => {
                    self.ack(&f).await?;
                    return Ok(f);
                }
                Some(_) => continue,
                None => return Err(anyhow!("sync ended")),
            }
        }
    }

    /// Uploads `content` for `head` (its path, size and hash); the upload's id, or the
    /// controller's refusal.
    pub async fn upload(
        &mut self,
        head: &FsrepFile,
        content: &[u8],
    ) -> Result<String, tonic::Status> {
        let mut parts = vec![FsrepFile {
            content: Vec::new(),
            ..head.clone()
        }];
        parts.extend(
            content
                .chunks(clustermgr_shared::fsrep::CHUNK_BYTES)
                .map(|c| FsrepFile {
                    content: c.to_vec(),
                    ..Default::default()
                }),
        );
        self.client
            .upload(tokio_stream::iter(parts))
            .await
            .map(|r| r.into_inner().upload)
    }

    /// Sends `n` new files of `size` bytes each (distinct contents) under `dir`, inline, as
    /// fast as the stream takes them.
    pub async fn flood(&self, dir: &str, n: usize, size: usize) -> Result<()> {
        for i in 0..n {
            let mut body = vec![0u8; size];
            for (j, b) in body.iter_mut().enumerate() {
                *b = ((i * 31 + j * 7) % 251) as u8;
            }
            let f = file(
                &format!("{dir}/flood-{i}.xml"),
                &body,
                0o644,
                "",
                "",
                hlc_now(),
            );
            self.change(f, None).await?;
        }
        Ok(())
    }

    /// Sends a streamed change naming `upload`.
    pub async fn change_uploaded(&self, mut f: FsrepFile, upload: String) -> Result<()> {
        f.content = Vec::new();
        self.send(fsrep_up::Msg::Change(FsrepChange {
            file: Some(f),
            base: None,
            detected_unix_ms: now_ms(),
            upload,
        }))
        .await
    }
}
