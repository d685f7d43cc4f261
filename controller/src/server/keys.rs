//! The `Keys` service: thin adapters over `keys.rs`. Status and dry runs need viewer;
//! configuring and rotating need operator and are audited (a refused or failed call gets its own
//! row).

use super::{Ctl, audited, viewer};
use crate::audit::Audit;
use crate::auth::{Role, caller, require};
use crate::error::status;
use crate::keys;
use clustermgr_proto::keys_server::Keys;
use clustermgr_proto::*;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct KeysApi {
    pub ctl: Arc<Ctl>,
}

#[tonic::async_trait]
impl Keys for KeysApi {
    async fn configure_keys(
        &self,
        req: Request<ConfigureKeysRequest>,
    ) -> Result<Response<KeysSettings>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let a = Audit::new(&p, "keys.configure", "cluster");
        let call = async { keys::configure(&self.ctl, &r, &a).await.map_err(status) };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn rotate_keys(
        &self,
        req: Request<RotateKeysRequest>,
    ) -> Result<Response<StartWorkflowResponse>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let a = Audit::new(&p, "keys.rotate", "cluster");
        if r.dry_run {
            require(&p, Role::Viewer, "planning")?;
            return keys::rotate(&self.ctl, true, &a)
                .await
                .map(Response::new)
                .map_err(status);
        }
        let call = async { keys::rotate(&self.ctl, false, &a).await.map_err(status) };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn get_keys_status(
        &self,
        req: Request<KeysStatusRequest>,
    ) -> Result<Response<KeysStatus>, Status> {
        viewer(&req)?;
        keys::status(&self.ctl).map(Response::new).map_err(status)
    }
}
