//! `agent-upgrade`: a clustermgr-agent package of the controller's repository rolled onto nodes
//! one at a time.
//!
//! Every node: `push` (the package into the node's cache; the pushes go on in parallel) and
//! `upgrade` (the node's agent installs it through a unit of its own, keeping the installed
//! package; see the agent's `upgrade` operation). A node's `upgrade` starts only once every node
//! before it in the workflow is upgraded, and succeeds only when the node's agent is back
//! online started from the new package (its inventory says so). A node whose new agent does not
//! come online within `online_within_ms` gets its previous package back (on the node) and its
//! step fails; the nodes after it are not upgraded (the roll stops). A node already running the
//! version is skipped.

use crate::engine::{Definition, JobSpec, JobView, StepCtx, StepPlan};
use crate::inputs::KindInputs;
use clustermgr_proto::{
    Operation, ReceivePackage, StepStatus, UpgradeAgent, operation, operation_output,
};

pub const KIND: &str = "agent-upgrade";
pub const STEPS: [&str; 2] = ["push", "upgrade"];
/// The package the workflow rolls out.
pub const PACKAGE: &str = "clustermgr-agent";
/// How long a node's new agent has to come online unless the operator says otherwise.
pub const DEFAULT_ONLINE_WITHIN_MS: u32 = 2 * 60_000;
/// Time for the node to keep its installed package and install the new one.
const INSTALL_MS: u32 = 10 * 60_000;
/// Time for the node to come back and answer after its verdict.
const ANSWER_MS: u32 = 5 * 60_000;

/// The workflow's inputs (no secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Inputs {
    pub sha256: String,
    pub version: String,
    pub online_within_ms: u32,
}

impl KindInputs for Inputs {
    const KIND: &'static str = KIND;
}

impl Inputs {
    /// How long after an upgrade step started the controller stops waiting for its node.
    pub fn deadline_ms(&self) -> u64 {
        u64::from(self.online_within_ms) + u64::from(INSTALL_MS) + u64::from(ANSWER_MS)
    }
}

#[derive(Debug, Clone)]
pub struct AgentUpgrade {
    pub inputs: Inputs,
    /// The push of the package (the driver fills in the job id).
    pub receive: ReceivePackage,
}

/// The package version the node's running agent was started from, as its inventory says.
pub fn running_version(ctx: &StepCtx<'_>) -> Option<String> {
    ctx.node_view()?
        .inventory
        .as_ref()
        .map(|i| i.agent_package_version.clone())
}

impl AgentUpgrade {
    fn current(&self, ctx: &StepCtx<'_>) -> bool {
        running_version(ctx).as_deref() == Some(self.inputs.version.as_str())
    }

    /// The roll: wait for the nodes before this one, stop after a failure.
    fn before_me(&self, ctx: &StepCtx<'_>) -> Option<StepPlan> {
        for n in ctx.workflow.nodes.iter() {
            if n.node_id == ctx.node.node_id {
                return None;
            }
            if n.steps.iter().any(|s| s.status() == StepStatus::Failed) {
                return Some(StepPlan::Fail(format!(
                    "not upgraded: the roll stopped at {}",
                    n.hostname
                )));
            }
            if !ctx.done(&n.node_id, "upgrade") {
                return Some(StepPlan::Wait(format!(
                    "one node at a time: waiting for {}'s upgrade",
                    n.hostname
                )));
            }
        }
        None
    }

    fn upgrade(&self, ctx: &StepCtx<'_>) -> StepPlan {
        if let Some(p) = self.before_me(ctx) {
            return p;
        }
        let host = &ctx.node.hostname;
        let v = &self.inputs.version;
        let step = ctx.step();
        // Once sent, the request goes again until an agent answers with the unit's verdict.
        if self.current(ctx) && step.attempts == 0 {
            return StepPlan::Skip(format!("{host}'s agent runs {PACKAGE} {v}"));
        }
        if step.attempts > 0
            && step.started_unix_ms > 0
            && ctx.observed.now_ms > step.started_unix_ms + self.inputs.deadline_ms()
        {
            return StepPlan::Fail(format!(
                "{host} did not answer within {} s of the upgrade's start; look at the node \
                 (journalctl -u clustermgr-agent-upgrade)",
                self.inputs.deadline_ms() / 1000
            ));
        }
        StepPlan::Run(JobSpec {
            operation: Operation {
                kind: Some(operation::Kind::UpgradeAgent(UpgradeAgent {
                    sha256: self.inputs.sha256.clone(),
                    version: v.clone(),
                    online_within_ms: self.inputs.online_within_ms,
                })),
            },
            timeout_ms: self
                .inputs
                .online_within_ms
                .saturating_add(INSTALL_MS)
                .saturating_add(60_000),
            summary: format!(
                "install {PACKAGE} {v} (the installed package kept); its agent online within {} s \
                 or the kept package goes back and the roll stops",
                self.inputs.online_within_ms / 1000
            ),
            // The agent that answers a second request reports the first one's verdict.
            rerunnable: true,
            keep_output_as: None,
        })
    }
}

impl Definition for AgentUpgrade {
    fn observed_nodes(&self, _wf: &clustermgr_proto::Workflow) -> Vec<String> {
        Vec::new()
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn plan_step(&self, ctx: &StepCtx<'_>) -> StepPlan {
        match ctx.step().name.as_str() {
            "push" if self.current(ctx) => StepPlan::Skip(format!(
                "{}'s agent runs {PACKAGE} {}",
                ctx.node.hostname, self.inputs.version
            )),
            "push" => StepPlan::Run(JobSpec {
                operation: Operation {
                    kind: Some(operation::Kind::ReceivePackage(self.receive.clone())),
                },
                timeout_ms: 60 * 60_000,
                summary: format!(
                    "push {PACKAGE} {} ({} bytes) into the node's cache",
                    self.inputs.version, self.receive.size
                ),
                rerunnable: true,
                keep_output_as: None,
            }),
            "upgrade" => self.upgrade(ctx),
            other => StepPlan::Fail(format!("unknown step {other:?}")),
        }
    }

    fn check(&self, ctx: &StepCtx<'_>, job: &JobView) -> Result<(), String> {
        if ctx.step().name != "upgrade" {
            return Ok(());
        }
        let v = &self.inputs.version;
        match job.output.as_ref().map(|o| o.kind.as_ref()) {
            // A plan's simulated success.
            Some(None) => return Ok(()),
            Some(Some(operation_output::Kind::UpgradeAgent(o))) if &o.to_version == v => {}
            Some(Some(operation_output::Kind::UpgradeAgent(o))) => {
                return Err(format!(
                    "the node reports {PACKAGE} {}, not {v}",
                    o.to_version
                ));
            }
            _ => return Err("the node returned no upgrade result".into()),
        }
        let online = ctx.node_view().is_some_and(|n| n.online);
        match running_version(ctx) {
            Some(r) if online && &r == v => Ok(()),
            r => Err(format!(
                "the node's agent is not online from {PACKAGE} {v} (it reports {:?})",
                r.unwrap_or_default()
            )),
        }
    }
}

#[cfg(test)]
mod tests;
