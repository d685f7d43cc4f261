//! File replication services: `FileReplication` (agents: the change stream, and the streamed
//! contents' `Upload` and `Fetch`; the node is the one named by the verified client certificate) and `FileReplicationAdmin` (operators: reads need viewer,
//! changes need operator and are audited). Thin adapters over `crate::fsrep`.

use super::{Ctl, audited, viewer};
use crate::audit::Audit;
use crate::auth::{Principal, caller, caller_fingerprint};
use crate::error::status;
use clustermgr_proto::file_replication_admin_server::FileReplicationAdmin;
use clustermgr_proto::file_replication_server::FileReplication;
use clustermgr_proto::{
    FsrepChangeRequest, FsrepDown, FsrepFetchRequest, FsrepFile, FsrepGetRequest, FsrepSettings,
    FsrepStatus, FsrepUp, FsrepUploaded, fsrep_up,
};
use futures::{Stream, StreamExt};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

pub struct FsrepApi {
    pub ctl: Arc<Ctl>,
    pub fsrep: Arc<crate::fsrep::Fsrep>,
}

type DownStream = Pin<Box<dyn Stream<Item = Result<FsrepDown, Status>> + Send>>;

/// Messages for one node's stream (a node that does not keep up starts again from a Hello).
const QUEUE: usize = 4096;
/// Batches of decided changes waiting for their commit, per stream: when it is full, the node's
/// messages wait (and `fsrep status` says so).
const COMMIT_QUEUE: usize = 256;

type PartStream = Pin<Box<dyn Stream<Item = Result<FsrepFile, Status>> + Send>>;

fn node_only<T>(req: &Request<T>) -> Result<String, Status> {
    match caller(req)? {
        Principal::Node { id } => Ok(id),
        Principal::Operator { .. } => Err(Status::permission_denied("agents only")),
    }
}

/// How many changes a message carries (what the node's rate counts).
fn changes_in(up: &FsrepUp) -> usize {
    match &up.msg {
        Some(fsrep_up::Msg::Change(_)) => 1,
        Some(fsrep_up::Msg::Hello(h)) => h.changes.len(),
        _ => 0,
    }
}

#[tonic::async_trait]
impl FileReplication for FsrepApi {
    type SyncStream = DownStream;
    type FetchStream = PartStream;

    async fn upload(
        &self,
        req: Request<Streaming<FsrepFile>>,
    ) -> Result<Response<FsrepUploaded>, Status> {
        let id = node_only(&req)?;
        let upload =
            crate::fsrep::receive_upload(self.ctl.clone(), &self.fsrep, &id, req.into_inner())
                .await
                .map_err(status)?;
        Ok(Response::new(FsrepUploaded { upload }))
    }

    async fn fetch(&self, req: Request<FsrepFetchRequest>) -> Result<Response<PartStream>, Status> {
        let id = node_only(&req)?;
        let r = req.into_inner();
        let parts = crate::fsrep::send_parts(
            self.ctl.clone(),
            &self.fsrep,
            &id,
            &r.path,
            r.version.as_ref(),
        )
        .map_err(status)?;
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(parts).map(|r| r.map_err(status)),
        )))
    }

    async fn sync(&self, req: Request<Streaming<FsrepUp>>) -> Result<Response<DownStream>, Status> {
        let id = node_only(&req)?;
        crate::nodes::check_exists(&self.ctl, &id).map_err(status)?;
        let fp = caller_fingerprint(&req);
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(QUEUE);
        let ctl = self.ctl.clone();
        let fsrep = self.fsrep.clone();
        let generation = fsrep.open(&ctl, &id, tx);
        // Decided changes are committed and relayed in order by one task per stream.
        let (ptx, mut prx) = mpsc::channel(COMMIT_QUEUE);
        {
            let ctl = ctl.clone();
            let fsrep = fsrep.clone();
            tokio::spawn(async move {
                while let Some(p) = prx.recv().await {
                    fsrep.finish(&ctl, p).await;
                }
            });
        }
        let revoked = ctl.auth.clone().until_revoked(fp);
        tokio::spawn(async move {
            tokio::pin!(revoked);
            loop {
                tokio::select! {
                    _ = &mut revoked => break,
                    m = inbound.message() => match m {
                        Ok(Some(up)) => {
                            // A replaced stream reads no more.
                            if !fsrep.is_current(&id, generation) {
                                break;
                            }
                            // Changes come in at the node's allowed rate; the rest wait.
                            let n = changes_in(&up);
                            if n > 0 {
                                while let Some(wait) = fsrep.admit(&id, n) {
                                    tokio::time::sleep(wait).await;
                                }
                            }
                            if let Some(fsrep_up::Msg::Restart(r)) = up.msg {
                                crate::gluu::fsrep_restart(&ctl, &fsrep, &id, generation, r.services);
                                continue;
                            }
                            let p = fsrep.handle(&ctl, &id, generation, up);
                            if p.is_empty() {
                                continue;
                            }
                            let p = match ptx.try_send(p) {
                                Ok(()) => continue,
                                Err(mpsc::error::TrySendError::Full(p)) => p,
                                Err(mpsc::error::TrySendError::Closed(_)) => break,
                            };
                            fsrep.note_queue_full(&id, COMMIT_QUEUE);
                            if ptx.send(p).await.is_err() {
                                break;
                            }
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
            }
            fsrep.close(&id, generation);
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

#[tonic::async_trait]
impl FileReplicationAdmin for FsrepApi {
    async fn status(&self, req: Request<FsrepGetRequest>) -> Result<Response<FsrepStatus>, Status> {
        viewer(&req)?;
        Ok(Response::new(self.fsrep.status(&self.ctl)))
    }

    async fn change(
        &self,
        req: Request<FsrepChangeRequest>,
    ) -> Result<Response<FsrepSettings>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let (action, target, min) = crate::fsrep::change_audit(&r);
        let a = Audit::new(&p, action, target);
        let call = async {
            self.fsrep
                .change_settings(&self.ctl, r, &a)
                .await
                .map_err(status)
        };
        audited(&self.ctl.store, &p, min, &a, call)
            .await
            .map(Response::new)
    }
}
