//! The `LoadBalancer` service: thin adapters over `lb.rs`. Reads and dry runs need viewer;
//! installing and removing need operator and are audited (a refused or failed call gets its own
//! row).

use super::{Ctl, audited, viewer};
use crate::audit::Audit;
use crate::auth::{Role, caller, require};
use crate::error::status;
use crate::lb;
use clustermgr_proto::load_balancer_server::LoadBalancer;
use clustermgr_proto::*;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct LoadBalancerApi {
    pub ctl: Arc<Ctl>,
}

#[tonic::async_trait]
impl LoadBalancer for LoadBalancerApi {
    async fn install_load_balancer(
        &self,
        req: Request<InstallLoadBalancerRequest>,
    ) -> Result<Response<StartWorkflowResponse>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let a = Audit::new(&p, "lb.install", "cluster");
        if r.dry_run {
            require(&p, Role::Viewer, "planning")?;
            return lb::install(&self.ctl, &r, &a)
                .await
                .map(Response::new)
                .map_err(status);
        }
        let call = async { lb::install(&self.ctl, &r, &a).await.map_err(status) };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn remove_load_balancer(
        &self,
        req: Request<RemoveLoadBalancerRequest>,
    ) -> Result<Response<StartWorkflowResponse>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let a = Audit::new(&p, "lb.remove", "cluster");
        if r.dry_run {
            require(&p, Role::Viewer, "planning")?;
            return lb::remove(&self.ctl, true, &a)
                .await
                .map(Response::new)
                .map_err(status);
        }
        let call = async { lb::remove(&self.ctl, false, &a).await.map_err(status) };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn get_load_balancer_status(
        &self,
        req: Request<GetLoadBalancerStatusRequest>,
    ) -> Result<Response<LoadBalancerStatus>, Status> {
        viewer(&req)?;
        lb::status(&self.ctl)
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn get_load_balancer_config(
        &self,
        req: Request<GetLoadBalancerConfigRequest>,
    ) -> Result<Response<LoadBalancerConfig>, Status> {
        viewer(&req)?;
        lb::config(&self.ctl).map(Response::new).map_err(status)
    }
}
