//! The `Backups` service (operators: start a backup, list, restore) and `BackupTransfer` (a
//! node's upload of its archive and its fetch of one to restore), thin over `crate::backup`.

use super::{Ctl, audited, viewer};
use crate::audit::Audit;
use crate::auth::{Principal, Role, caller};
use crate::backup::{self, BackupError, Backups};
use crate::error::status;
use clustermgr_proto::backup_transfer_server::BackupTransfer;
use clustermgr_proto::backups_server::Backups as BackupsService;
use clustermgr_proto::{
    BackupChunk, BackupFetchRequest, BackupList, BackupUploaded, BackupWorkflowStarted,
    ListBackupsRequest, RestoreBackupRequest, StartBackupRequest,
};
use futures::{Stream, StreamExt};
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Request, Response, Status, Streaming};

pub struct BackupsApi {
    pub ctl: Arc<Ctl>,
    pub backups: Arc<Backups>,
}

fn node_only<T>(req: &Request<T>) -> Result<String, Status> {
    match caller(req)? {
        Principal::Node { id } => Ok(id),
        Principal::Operator { .. } => Err(Status::permission_denied("agents only")),
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<BackupChunk, Status>> + Send>>;

#[tonic::async_trait]
impl BackupsService for BackupsApi {
    async fn start_backup(
        &self,
        req: Request<StartBackupRequest>,
    ) -> Result<Response<BackupWorkflowStarted>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let target = if r.node.is_empty() { "all" } else { &r.node };
        let a = Audit::new(&p, "backup.start", target);
        let call = async {
            backup::start_backup(&self.ctl, &r, &a)
                .await
                .map_err(status)
        };
        audited(&self.ctl.store, &p, backup::role_for_keep(r.keep), &a, call)
            .await
            .map(Response::new)
    }

    async fn list_backups(
        &self,
        req: Request<ListBackupsRequest>,
    ) -> Result<Response<BackupList>, Status> {
        viewer(&req)?;
        let r = req.into_inner();
        let node = (!r.node.is_empty()).then_some(r.node.as_str());
        let backups = Backups::list(&self.ctl.store, node).map_err(status)?;
        Ok(Response::new(BackupList { backups }))
    }

    async fn restore_backup(
        &self,
        req: Request<RestoreBackupRequest>,
    ) -> Result<Response<BackupWorkflowStarted>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let a = Audit::new(&p, "backup.restore", format!("{} on {}", r.id, r.node));
        let call = async {
            backup::start_restore(&self.ctl, &r, &a)
                .await
                .map_err(status)
        };
        // Replacing a directory is an admin's decision.
        audited(&self.ctl.store, &p, Role::Admin, &a, call)
            .await
            .map(Response::new)
    }
}

#[tonic::async_trait]
impl BackupTransfer for BackupsApi {
    type FetchStream = ChunkStream;

    async fn upload(
        &self,
        req: Request<Streaming<BackupChunk>>,
    ) -> Result<Response<BackupUploaded>, Status> {
        let node = node_only(&req)?;
        let mut parts = req.into_inner().peekable();
        let head = match Pin::new(&mut parts).peek().await {
            Some(Ok(h)) => h.backup_id.clone(),
            Some(Err(e)) => return Err(e.clone()),
            None => return Err(status(BackupError::Invalid("an empty upload".into()))),
        };
        let r = backup::take_upload(&self.ctl, &self.backups, &node, &head, parts)
            .await
            .map_err(status)?;
        Ok(Response::new(BackupUploaded {
            sha256: r.sha256,
            size: r.size,
        }))
    }

    async fn fetch(
        &self,
        req: Request<BackupFetchRequest>,
    ) -> Result<Response<Self::FetchStream>, Status> {
        let node = node_only(&req)?;
        let id = req.into_inner().backup_id;
        if !backup::expects_fetch(&self.ctl, &node, &id) {
            return Err(Status::permission_denied(
                "no running restore of this node asks for that backup",
            ));
        }
        let info = Backups::get(&self.ctl.store, &id).map_err(status)?;
        let rx = self.backups.clone().send(self.ctl.sealer.clone(), info);
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx).map(|r| r.map_err(status)),
        )))
    }
}
