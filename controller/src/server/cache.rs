//! The `Cache` service (operators) and `CacheAgent` (the nodes' certificate requests): thin
//! adapters over `crate::cache`. Reads need viewer; changes need operator and are audited.

use super::{Ctl, audited, viewer};
use crate::audit::Audit;
use crate::auth::{Principal, Role, caller, require};
use crate::cache::{self, NewPassword};
use crate::error::status;
use crate::workflows::WhenBusy;
use clustermgr_proto::cache_agent_server::CacheAgent;
use clustermgr_proto::cache_server::Cache;
use clustermgr_proto::*;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct CacheApi {
    pub ctl: Arc<Ctl>,
}

pub struct CacheAgentApi {
    pub ctl: Arc<Ctl>,
    pub cache_ca: Arc<clustermgr_shared::pki::Ca>,
}

#[tonic::async_trait]
impl Cache for CacheApi {
    async fn install(
        &self,
        req: Request<InstallCacheRequest>,
    ) -> Result<Response<StartWorkflowResponse>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let when = WhenBusy::from_no_wait(r.no_wait);
        let nodes: Vec<String> = r.nodes.into_iter().map(|n| n.node).collect();
        let a = Audit::new(&p, "cache.install", nodes.join(","));
        if r.dry_run {
            require(&p, Role::Viewer, "planning")?;
            return cache::install(&self.ctl, &nodes, true, WhenBusy::Queue, &a)
                .await
                .map(Response::new)
                .map_err(status);
        }
        let call = async {
            cache::install(&self.ctl, &nodes, false, when, &a)
                .await
                .map_err(status)
        };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn remove(
        &self,
        req: Request<RemoveCacheRequest>,
    ) -> Result<Response<StartWorkflowResponse>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let when = WhenBusy::from_no_wait(r.no_wait);
        let a = Audit::new(&p, "cache.remove", "cluster");
        if r.dry_run {
            require(&p, Role::Viewer, "planning")?;
            return cache::remove(&self.ctl, true, WhenBusy::Queue, &a)
                .await
                .map(Response::new)
                .map_err(status);
        }
        let call = async {
            cache::remove(&self.ctl, false, when, &a)
                .await
                .map_err(status)
        };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn set_password(
        &self,
        req: Request<SetCachePasswordRequest>,
    ) -> Result<Response<StartWorkflowResponse>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let when = WhenBusy::from_no_wait(r.no_wait);
        // The audit row names the kind of change, never the value.
        let (action, new) = NewPassword::of(&r);
        let a = Audit::new(&p, action, "cluster");
        if r.dry_run {
            require(&p, Role::Viewer, "planning")?;
            let new = new.map_err(status)?;
            return cache::set_password(&self.ctl, new, true, WhenBusy::Queue, &a)
                .await
                .map(Response::new)
                .map_err(status);
        }
        let call = async {
            let new = new.map_err(status)?;
            cache::set_password(&self.ctl, new, false, when, &a)
                .await
                .map_err(status)
        };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn status(
        &self,
        req: Request<CacheStatusRequest>,
    ) -> Result<Response<CacheStatusReport>, Status> {
        viewer(&req)?;
        Ok(Response::new(
            cache::status(&self.ctl).await.map_err(status)?,
        ))
    }
}

#[tonic::async_trait]
impl CacheAgent for CacheAgentApi {
    async fn issue_certificate(
        &self,
        req: Request<IssueCacheCertificateRequest>,
    ) -> Result<Response<IssueCacheCertificateResponse>, Status> {
        let id = match caller(&req)? {
            Principal::Node { id } => id,
            Principal::Operator { .. } => return Err(Status::permission_denied("agents only")),
        };
        let r = req.into_inner();
        cache::issue_certificate(&self.ctl, &self.cache_ca, &id, &r.job_id, &r.csr_der)
            .map(Response::new)
            .map_err(status)
    }
}
