//! `agent upgrade`: the agent-upgrade workflow (planning in `clustermgr_workflow::agent_upgrade`)
//! started on nodes with a clustermgr-agent .deb of the package repository.

use crate::audit::Audit;
use crate::ctl::Ctl;
use crate::error::{Classify, Kind};
use crate::nodes::{self, NodeError};
use crate::packages::{self, PackageError};
use crate::store::StoreError;
use crate::workflows::{self, WorkflowError};
use clustermgr_proto::{
    NodeRecord, ReceivePackage, StartWorkflowResponse, UpgradeAgentsRequest, Workflow, operation,
};
use clustermgr_workflow::agent_upgrade::{
    AgentUpgrade, DEFAULT_ONLINE_WITHIN_MS, Inputs, KIND, PACKAGE, STEPS,
};
use clustermgr_workflow::inputs::KindInputs;

/// Longest wait for a node's new agent a caller may ask for.
const MAX_ONLINE_WITHIN_MS: u32 = 60 * 60_000;

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("{0} is not a {PACKAGE} .deb; an agent upgrade installs {PACKAGE} packages")]
    NotTheAgent(String),
    #[error("name the nodes to upgrade, or --all")]
    NoNodes,
    #[error(
        "{0}'s agent is not installed from the {PACKAGE} package (its inventory names no \
         package version): upgrade it by hand"
    )]
    NotPackaged(String),
    #[error("{0} is not approved")]
    NotApproved(String),
    #[error(transparent)]
    Package(#[from] PackageError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for UpgradeError {
    fn kind(&self) -> Kind {
        match self {
            Self::NotTheAgent(_) | Self::NoNodes => Kind::InvalidArgument,
            Self::NotPackaged(_) | Self::NotApproved(_) => Kind::FailedPrecondition,
            Self::Package(e) => e.kind(),
            Self::Node(e) => e.kind(),
            Self::Workflow(e) => e.kind(),
            Self::Store(_) => Kind::Internal,
        }
    }
}

/// The receive-package operation of the workflow's package (the job id is filled in when the
/// job is sent).
fn receive(ctl: &Ctl, sha256: &str) -> Result<ReceivePackage, PackageError> {
    let rec = packages::find(&ctl.store, sha256)?;
    match packages::receive_operation(&rec, "").kind {
        Some(operation::Kind::ReceivePackage(r)) => Ok(r),
        _ => Err(PackageError::NotFound(sha256.into())),
    }
}

/// The workflow's definition from its inputs.
pub fn definition(ctl: &Ctl, wf: &Workflow) -> Result<AgentUpgrade, WorkflowError> {
    let inputs = Inputs::decode(&wf.inputs)?;
    let receive = receive(ctl, &inputs.sha256).map_err(|e| {
        WorkflowError::Refused(format!("the workflow's package is not available: {e}"))
    })?;
    Ok(AgentUpgrade { inputs, receive })
}

/// The nodes to upgrade, in the order given (`--all`: every approved node by hostname).
fn targets(ctl: &Ctl, req: &UpgradeAgentsRequest) -> Result<Vec<NodeRecord>, UpgradeError> {
    let mut out: Vec<NodeRecord> = Vec::new();
    if req.all {
        let mut all: Vec<NodeRecord> = ctl
            .store
            .nodes()?
            .into_iter()
            .filter(|n| n.approved)
            .collect();
        all.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        out = all;
    } else {
        for r in &req.nodes {
            let n = nodes::find(ctl, r)?;
            if !out.iter().any(|x| x.id == n.id) {
                out.push(n);
            }
        }
    }
    if out.is_empty() {
        return Err(UpgradeError::NoNodes);
    }
    for n in &out {
        if !n.approved {
            return Err(UpgradeError::NotApproved(n.hostname.clone()));
        }
        let packaged = n
            .inventory
            .as_ref()
            .is_some_and(|i| !i.agent_package_version.is_empty());
        if !packaged {
            return Err(UpgradeError::NotPackaged(n.hostname.clone()));
        }
    }
    Ok(out)
}

/// `agent upgrade`: starts the workflow (or returns its plan).
pub async fn start(
    ctl: &Ctl,
    req: &UpgradeAgentsRequest,
    audit: &Audit,
) -> Result<StartWorkflowResponse, UpgradeError> {
    let rec = packages::find(&ctl.store, &req.package)?;
    if rec.name != PACKAGE || rec.format != "deb" {
        return Err(UpgradeError::NotTheAgent(format!(
            "{} {} ({})",
            rec.name, rec.version, rec.format
        )));
    }
    let nodes = targets(ctl, req)?;
    let inputs = Inputs {
        sha256: rec.sha256.clone(),
        version: rec.version.clone(),
        online_within_ms: match req.online_within_ms {
            0 => DEFAULT_ONLINE_WITHIN_MS,
            ms => ms.clamp(1000, MAX_ONLINE_WITHIN_MS),
        },
    };
    let nodes = nodes.into_iter().map(|n| (n.id, STEPS.to_vec())).collect();
    Ok(workflows::start_nodes(ctl, KIND, &inputs, nodes, Vec::new(), req.dry_run, audit).await?)
}

/// The `agent upgrade` workflow kind: its plan only.
pub fn kind() -> std::sync::Arc<dyn crate::ctl::WorkflowKind> {
    crate::ctl::plan_only(&[clustermgr_workflow::agent_upgrade::KIND], |ctl, wf| {
        Ok(Box::new(definition(ctl, wf)?))
    })
}
