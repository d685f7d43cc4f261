//! The replication workflow's kind: the servers it leaves replicating, and `server remove` of a
//! replicated node finished once its peers dropped it.

use crate::audit::Audit;
use crate::ctl::{Ctl, KindError, Plan, WorkflowKind};
use crate::workflows::WorkflowError;
use clustermgr_proto::{ServerRecord, Workflow, WorkflowStatus};
use clustermgr_workflow::inputs::KindInputs;
use clustermgr_workflow::replication::{self, Inputs};
use futures::future::BoxFuture;

/// `replication deploy` and `replication remove` (also under `server remove`).
pub struct ReplicationKind;

impl WorkflowKind for ReplicationKind {
    fn kinds(&self) -> &'static [&'static str] {
        &[replication::KIND]
    }

    fn definition(&self, ctl: &Ctl, wf: &Workflow) -> Result<Plan, KindError> {
        Ok(Box::new(super::definition(ctl, &wf.id, &wf.inputs)?))
    }

    fn finished_servers(&self, ctl: &Ctl, wf: &Workflow) -> Result<Vec<ServerRecord>, KindError> {
        if wf.status() != WorkflowStatus::Succeeded {
            return Ok(Vec::new());
        }
        Ok(super::finished(ctl, &wf.inputs)?.0)
    }

    /// A removed server leaves the cluster (and its cache client goes); the load balancer's
    /// backends follow.
    fn ended<'a>(&'a self, ctl: &'a Ctl, wf: &'a Workflow) -> BoxFuture<'a, Result<(), KindError>> {
        Box::pin(async move {
            if wf.status() != WorkflowStatus::Succeeded {
                return Ok(());
            }
            let who = format!("workflow:{}", wf.id);
            if let (_, Some(gone)) = super::finished(ctl, &wf.inputs)? {
                let row = Audit::new(who.clone(), "server.remove", gone.clone())
                    .ok("after leaving replication");
                let id = gone.clone();
                ctl.store
                    .change_servers(
                        move |_| Ok::<_, WorkflowError>((Vec::new(), vec![gone.clone()], ())),
                        Some(row),
                    )
                    .await??;
                crate::cache::after_server_remove(
                    ctl,
                    &id,
                    &Audit::new(who.clone(), "cache.detach", "server.remove"),
                )
                .await;
            }
            if Inputs::decode(&wf.inputs)
                .map_err(WorkflowError::from)?
                .remove_server
            {
                crate::lb::after_change(ctl, &Audit::new(who, "lb.update", wf.kind.clone())).await;
            }
            Ok(())
        })
    }
}
