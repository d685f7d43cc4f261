//! The cache workflows' kind: a queued one takes its nodes, and changes the cache record, when
//! it starts (the running one still uses the record as it is).

use crate::ctl::{Ctl, KindError, Plan, WorkflowKind};
use clustermgr_proto::Workflow;
use clustermgr_workflow::cache;
use futures::future::BoxFuture;

/// `cache install`, `cache remove`, `cache password set` and a removed server's detach.
pub struct CacheKind;

impl WorkflowKind for CacheKind {
    fn kinds(&self) -> &'static [&'static str] {
        &[
            cache::INSTALL,
            cache::REMOVE,
            cache::PASSWORD,
            cache::DETACH,
        ]
    }

    fn definition(&self, ctl: &Ctl, wf: &Workflow) -> Result<Plan, KindError> {
        Ok(Box::new(super::definition(ctl, wf)?))
    }

    fn retake_nodes(&self, ctl: &Ctl, wf: &mut Workflow) -> Result<bool, KindError> {
        Ok(super::take_nodes(ctl, wf)?)
    }

    fn on_admit<'a>(
        &'a self,
        ctl: &'a Ctl,
        wf: &'a Workflow,
    ) -> BoxFuture<'a, Result<(), KindError>> {
        Box::pin(async move { Ok(super::on_admit(ctl, wf).await?) })
    }
}
