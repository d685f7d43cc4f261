//! The controller's core context (see the layering rules in ARCHITECTURE.md): what every
//! domain module may use. It imports only core modules, never a domain module or the transport.

use crate::auth::Auth;
use crate::jobs::Jobs;
use crate::limits::EnrollGuard;
use crate::registry::Registry;
use crate::store::Store;
use clustermgr_proto::{ServerRecord, Workflow};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Settings in force for this process.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub node_cert_ttl: Duration,
    pub operator_cert_ttl: Duration,
    pub heartbeat: Duration,
    pub require_approval: bool,
    /// Agents older than this are refused at session start.
    pub min_agent_version: Option<clustermgr_shared::version::AgentVersion>,
}

/// The core every domain module works through: the store, the job dispatcher, the node
/// registry, the sealer, the CA's state and the workflow event hub. It knows no feature:
/// a domain module's own state (packages, logs, health, metrics, file replication, the
/// cache CA, backups) is its own and is handed to it by the caller (`server::serve` builds them
/// and hands each to the handlers, console and background tasks that use it).
pub struct Ctl {
    pub store: Store,
    pub ca: crate::authority::CaState,
    pub auth: Arc<Auth>,
    pub registry: Arc<Registry>,
    pub jobs: Arc<Jobs>,
    pub rt: Runtime,
    pub enroll_guard: EnrollGuard,
    /// Seals secrets at rest (cluster passwords, kept workflow outputs).
    pub sealer: Arc<crate::sealing::Sealer>,
    pub workflows: crate::hub::Hub,
    /// The workflow kinds, each with its plan and hooks (`kinds::all`).
    pub kinds: Kinds,
}

/// An error of a kind's hook, shown to the operator as it is (a plan that cannot be made waits
/// with "cannot plan: ..."). The driver gives a `WorkflowError` back its own classification.
pub type KindError = Box<dyn std::error::Error + Send + Sync>;

/// A workflow's plan: the workflow crate's pure definition of its kind.
pub type Plan = Box<dyn clustermgr_workflow::Definition + Send + Sync>;

/// One kind of workflow, registered once (`kinds::all`). The driver knows kinds only through
/// this: it plans with [`WorkflowKind::definition`] and calls the hooks; a new kind is a new
/// implementation and one line in `kinds.rs`, never a `match` in the driver.
pub trait WorkflowKind: Send + Sync {
    /// The `kind` values (as stored on the workflow) this implementation plans.
    fn kinds(&self) -> &'static [&'static str];

    /// The definition of a stored workflow of this kind, from its inputs and the settings now.
    fn definition(&self, ctl: &Ctl, wf: &Workflow) -> Result<Plan, KindError>;

    /// A queued workflow's nodes taken again as they are when it starts (not when it was
    /// asked for); returns whether they changed.
    fn retake_nodes(&self, _ctl: &Ctl, _wf: &mut Workflow) -> Result<bool, KindError> {
        Ok(false)
    }

    /// What the kind changes when it starts rather than when it is asked for.
    fn on_admit<'a>(
        &'a self,
        _ctl: &'a Ctl,
        _wf: &'a Workflow,
    ) -> BoxFuture<'a, Result<(), KindError>> {
        Box::pin(async { Ok(()) })
    }

    /// Server records written in the same transaction as the ended workflow's record.
    fn finished_servers(&self, _ctl: &Ctl, _wf: &Workflow) -> Result<Vec<ServerRecord>, KindError> {
        Ok(Vec::new())
    }

    /// The role a retry of `wf`, of this kind, needs (its start may have needed more than an
    /// operator: a restore replaces a directory, a backup keeping fewer deletes backups).
    fn retry_role(&self, _wf: &Workflow) -> crate::roles::Role {
        crate::roles::Role::Operator
    }

    /// What follows once the ended workflow's record is stored (each effect audits itself).
    fn ended<'a>(
        &'a self,
        _ctl: &'a Ctl,
        _wf: &'a Workflow,
    ) -> BoxFuture<'a, Result<(), KindError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Two implementations claimed one kind.
#[derive(Debug, thiserror::Error)]
#[error("workflow kind {0:?} is registered twice")]
pub struct DuplicateKind(pub &'static str);

/// The workflow kinds this controller knows, by their stored `kind`.
#[derive(Clone, Default)]
pub struct Kinds {
    by_kind: HashMap<&'static str, Arc<dyn WorkflowKind>>,
}

impl Kinds {
    pub fn new(all: Vec<Arc<dyn WorkflowKind>>) -> Result<Self, DuplicateKind> {
        let mut by_kind = HashMap::new();
        for k in all {
            for name in k.kinds() {
                if by_kind.insert(*name, k.clone()).is_some() {
                    return Err(DuplicateKind(name));
                }
            }
        }
        Ok(Self { by_kind })
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn WorkflowKind>> {
        self.by_kind.get(kind)
    }

    /// Every kind's name, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.by_kind.keys().copied().collect();
        v.sort_unstable();
        v
    }
}

/// A kind whose only hook is its plan.
struct PlanOnly<F> {
    kinds: &'static [&'static str],
    plan: F,
}

impl<F> WorkflowKind for PlanOnly<F>
where
    F: Fn(&Ctl, &Workflow) -> Result<Plan, KindError> + Send + Sync,
{
    fn kinds(&self) -> &'static [&'static str] {
        self.kinds
    }

    fn definition(&self, ctl: &Ctl, wf: &Workflow) -> Result<Plan, KindError> {
        (self.plan)(ctl, wf)
    }
}

/// A kind that needs nothing but its plan: `kinds` are planned by `plan`.
pub fn plan_only<F>(kinds: &'static [&'static str], plan: F) -> Arc<dyn WorkflowKind>
where
    F: Fn(&Ctl, &Workflow) -> Result<Plan, KindError> + Send + Sync + 'static,
{
    Arc::new(PlanOnly { kinds, plan })
}
