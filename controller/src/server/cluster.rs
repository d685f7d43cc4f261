//! The `Cluster` service: settings, servers and workflows. Thin adapters over `cluster.rs` and
//! `workflows.rs`; reads need viewer, changes need operator and are audited (a refused or failed
//! change gets its own row).

use super::{Ctl, audited, viewer};
use crate::audit::Audit;
use crate::auth::{Role, caller, require};
use crate::error::status;
use crate::settings;
use crate::{cluster, workflows};
use clustermgr_proto::cluster_server::Cluster;
use clustermgr_proto::*;
use futures::Stream;
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct ClusterApi {
    pub ctl: Arc<Ctl>,
    pub fsrep: Arc<crate::fsrep::Fsrep>,
}

type WorkflowStream = Pin<Box<dyn Stream<Item = Result<Workflow, Status>> + Send>>;

#[tonic::async_trait]
impl Cluster for ClusterApi {
    type WatchWorkflowStream = WorkflowStream;

    async fn get_settings(
        &self,
        req: Request<GetSettingsRequest>,
    ) -> Result<Response<ClusterSettings>, Status> {
        viewer(&req)?;
        Ok(Response::new(
            settings::settings(&self.ctl).map_err(status)?,
        ))
    }

    async fn configure(
        &self,
        req: Request<ConfigureRequest>,
    ) -> Result<Response<ClusterSettings>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let a = Audit::new(&p, "cluster.configure", "settings");
        let call = async {
            cluster::configure(&self.ctl, &self.fsrep, r, &a)
                .await
                .map_err(status)
        };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn add_server(&self, req: Request<AddServerRequest>) -> Result<Response<Server>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let node = r.node.map(|n| n.node).unwrap_or_default();
        let a = Audit::new(&p, "server.add", node.clone());
        let call = async {
            cluster::add_server(&self.ctl, &node, r.primary, &a)
                .await
                .map_err(status)
        };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn list_servers(
        &self,
        req: Request<ListServersRequest>,
    ) -> Result<Response<ListServersResponse>, Status> {
        viewer(&req)?;
        Ok(Response::new(ListServersResponse {
            servers: cluster::list_servers(&self.ctl).map_err(status)?,
        }))
    }

    async fn make_primary(&self, req: Request<NodeRef>) -> Result<Response<Server>, Status> {
        let p = caller(&req)?;
        let node = req.into_inner().node;
        let a = Audit::new(&p, "server.make-primary", node.clone());
        let call = async {
            cluster::make_primary(&self.ctl, &node, &a)
                .await
                .map_err(status)
        };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn remove_server(&self, req: Request<NodeRef>) -> Result<Response<Server>, Status> {
        let p = caller(&req)?;
        let node = req.into_inner().node;
        let a = Audit::new(&p, "server.remove", node.clone());
        let call = async {
            crate::replication::remove_server(&self.ctl, &node, &a)
                .await
                .map_err(status)
        };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn install_gluu(
        &self,
        req: Request<InstallGluuRequest>,
    ) -> Result<Response<StartWorkflowResponse>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        if r.dry_run {
            // A dry run changes nothing: viewers may plan.
            require(&p, Role::Viewer, "planning")?;
            let a = Audit::new(&p, "gluu.install", "dry-run");
            return crate::gluu::install_gluu(&self.ctl, &self.fsrep, &r, &a)
                .await
                .map(Response::new)
                .map_err(status);
        }
        let a = Audit::new(&p, "gluu.install", "cluster");
        let call = async {
            crate::gluu::install_gluu(&self.ctl, &self.fsrep, &r, &a)
                .await
                .map_err(status)
        };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn restart_gluu(
        &self,
        req: Request<RestartGluuRequest>,
    ) -> Result<Response<StartWorkflowResponse>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let target = r
            .nodes
            .iter()
            .map(|n| n.node.as_str())
            .collect::<Vec<_>>()
            .join(",");
        if r.dry_run {
            require(&p, Role::Viewer, "planning")?;
            let a = Audit::new(&p, "gluu.restart", "dry-run");
            return crate::gluu::restart_gluu(&self.ctl, &r, &a)
                .await
                .map(Response::new)
                .map_err(status);
        }
        let a = Audit::new(&p, "gluu.restart", target);
        let call = async {
            crate::gluu::restart_gluu(&self.ctl, &r, &a)
                .await
                .map_err(status)
        };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn adopt_gluu(
        &self,
        req: Request<NodeRef>,
    ) -> Result<Response<StartWorkflowResponse>, Status> {
        let p = caller(&req)?;
        let node = req.into_inner().node;
        let a = Audit::new(&p, "gluu.adopt", node.clone());
        let call = async {
            crate::gluu::adopt_gluu(&self.ctl, &node, &a)
                .await
                .map_err(status)
        };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn deploy_replication(
        &self,
        req: Request<DeployReplicationRequest>,
    ) -> Result<Response<StartWorkflowResponse>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        if r.dry_run {
            require(&p, Role::Viewer, "planning")?;
            let a = Audit::new(&p, "replication.deploy", "dry-run");
            return crate::replication::deploy(&self.ctl, &r, &a)
                .await
                .map(Response::new)
                .map_err(status);
        }
        let a = Audit::new(&p, "replication.deploy", "cluster");
        let call = async {
            crate::replication::deploy(&self.ctl, &r, &a)
                .await
                .map_err(status)
        };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn remove_replication(
        &self,
        req: Request<NodeRef>,
    ) -> Result<Response<StartWorkflowResponse>, Status> {
        let p = caller(&req)?;
        let node = req.into_inner().node;
        let a = Audit::new(&p, "replication.remove", node.clone());
        let call = async {
            crate::replication::remove(&self.ctl, &node, false, &a)
                .await
                .map_err(status)
        };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn get_replication_status(
        &self,
        req: Request<GetReplicationStatusRequest>,
    ) -> Result<Response<ReplicationStatusReport>, Status> {
        viewer(&req)?;
        let report = crate::replication::status(&self.ctl)
            .await
            .map_err(status)?;
        if let Err(e) = crate::replication::record(&self.ctl, &report).await {
            tracing::warn!(error = %e, "cannot record the replication status");
        }
        Ok(Response::new(report))
    }

    async fn apply_hosts(
        &self,
        req: Request<ApplyHostsRequest>,
    ) -> Result<Response<StartWorkflowResponse>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let a = Audit::new(&p, "hosts.apply", "cluster");
        if r.dry_run {
            require(&p, Role::Viewer, "planning")?;
            return crate::hosts::apply(&self.ctl, true, &a)
                .await
                .map(Response::new)
                .map_err(status);
        }
        let call = async {
            crate::hosts::apply(&self.ctl, false, &a)
                .await
                .map_err(status)
        };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn list_workflows(
        &self,
        req: Request<ListWorkflowsRequest>,
    ) -> Result<Response<ListWorkflowsResponse>, Status> {
        viewer(&req)?;
        let limit = match req.get_ref().limit {
            0 => 50,
            n => n.min(1000) as usize,
        };
        Ok(Response::new(ListWorkflowsResponse {
            workflows: workflows::list(&self.ctl, limit).map_err(status)?,
        }))
    }

    async fn get_workflow(&self, req: Request<WorkflowRef>) -> Result<Response<Workflow>, Status> {
        viewer(&req)?;
        Ok(Response::new(
            workflows::find(&self.ctl, &req.get_ref().id).map_err(status)?,
        ))
    }

    async fn watch_workflow(
        &self,
        req: Request<WorkflowRef>,
    ) -> Result<Response<WorkflowStream>, Status> {
        viewer(&req)?;
        let ctl = self.ctl.clone();
        let first = workflows::find(&ctl, &req.get_ref().id).map_err(status)?;
        let mut changed = ctl.workflows.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut last = first;
            if tx.send(Ok(last.clone())).await.is_err() {
                return;
            }
            while !clustermgr_workflow::is_terminal(last.status()) {
                tokio::select! {
                    r = changed.changed() => if r.is_err() { return },
                    _ = tx.closed() => return,
                }
                let now = match ctl.store.workflow(&last.id) {
                    Ok(Some(w)) => w,
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx
                            .send(Err(status(crate::workflows::WorkflowError::from(e))))
                            .await;
                        return;
                    }
                };
                if now != last {
                    last = now;
                    if tx.send(Ok(last.clone())).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn cancel_workflow(
        &self,
        req: Request<WorkflowRef>,
    ) -> Result<Response<Workflow>, Status> {
        let p = caller(&req)?;
        let id = req.into_inner().id;
        let a = Audit::new(&p, "workflow.cancel", id.clone());
        let call = async { workflows::cancel(&self.ctl, &id, &a).await.map_err(status) };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn retry_workflow(
        &self,
        req: Request<WorkflowRef>,
    ) -> Result<Response<Workflow>, Status> {
        let p = caller(&req)?;
        let id = req.into_inner().id;
        let a = Audit::new(&p, "workflow.retry", id.clone());
        // The kind's role: a restore's retry replaces a directory again (admin).
        let min = workflows::retry_role(&self.ctl, &id).unwrap_or(Role::Operator);
        let call = async { workflows::retry(&self.ctl, &id, &a).await.map_err(status) };
        audited(&self.ctl.store, &p, min, &a, call)
            .await
            .map(Response::new)
    }
}
