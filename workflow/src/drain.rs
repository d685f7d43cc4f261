//! Drain and rejoin: a Gluu node leaves the load balancer's rotation before anything on it
//! restarts, and comes back only once its readiness gate passes.
//!
//! A rolling workflow that restarts something on a node puts [`DRAIN`] before the node's first
//! restarting step and [`REJOIN`] after its last readiness step ([`around`]), and hands both
//! steps to [`plan`]. Both run on the load balancer's node ([`StepPlan::RunOn`]) as one
//! operation, `SetBackendRotation`:
//! - `drain`: the node's upstream entry is marked `down` in the running nginx configuration
//!   (re-rendered from the agent's template, `nginx -t`, graceful reload); the job ends once
//!   every worker of the previous configuration has exited, i.e. once the requests they were
//!   serving have finished. One node of a workflow is out of rotation at a time, in the order of
//!   the workflow's nodes: a node's drain waits while another node of the same workflow is
//!   drained and not back, and until every node before it is back (or skipped its drain, or
//!   stopped on a failure). Across workflows too: a drain waits while another workflow holds
//!   a node out ([`Balancer::held`], shown as waiting): a running one, or one that ended
//!   (failed, cancelled) and left it out, until a rejoin of that node puts it back
//!   ([`left_out_by`]: its retry, or `gluu restart NODE`). A drain that failed counts as out
//!   (it may have marked the node down before its wait for the node's requests timed out), so
//!   the next node does not drain behind it: with two servers behind an external balancer
//!   that would leave no node marked.
//! - `rejoin`: the balancer itself asks the node's own web tier for oxAuth's and identity's
//!   health checks ([`READY_PATHS`]) with the balancer's trust, until both answer 200; only
//!   then the `down` mark goes (`nginx -t`, graceful reload). The workflow's own readiness steps
//!   (directory bind, web-ready) come before it.
//!
//! **An external balancer** ([`Balancer::health_mark_wait_ms`]): both steps run on the node
//! itself, the same operation with `health_mark`: the drain takes away the node's health mark
//! (the file its own web tier serves at [`HEALTH_MARK_PATH`], which the balancer probes) and
//! waits for the balancer's checks to see it; the rejoin, after the node's readiness steps,
//! puts it back and waits again. The agent accepts no connection and runs nothing from the
//! network: the balancer only reads a file the node serves.
//!
//! Without a load balancer to drain (none yet, or an external one without a health mark) both
//! steps are skipped, as they are for a node that is not behind the balancer. A node leaving the cluster
//! skips its rejoin ([`leaving_rejoin`]): it stays out, and the other nodes may drain in turn.

use crate::engine::{JobSpec, StepCtx, StepPlan, StepStatus, Workflow};
use clustermgr_proto::{Operation, SetBackendRotation, operation, operation_output};
use std::collections::BTreeMap;

pub const DRAIN: &str = "drain";
/// Where a node's own web tier serves its health mark (200 while in rotation) for an external
/// balancer.
pub const HEALTH_MARK_PATH: &str = "/clustermgr-health";
pub const REJOIN: &str = "rejoin";
/// What the balancer asks the node's own web tier before the node rejoins (each one the node
/// answered before its drain; identity's always).
pub const READY_PATHS: [&str; 2] = ["/oxauth/restv1/health-check", IDENTITY_READY];
const IDENTITY_READY: &str = "/identity/restv1/health-check";

fn ready_paths() -> Vec<String> {
    READY_PATHS.iter().map(|p| p.to_string()).collect()
}

/// The load balancer the workflow drains nodes from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Balancer {
    /// The nginx load balancer's node id; empty: none installed (drain and rejoin skip, unless
    /// an external balancer probes the nodes' health marks).
    pub lb_node: String,
    /// An external balancer probing each node's health mark: how long a drain and a rejoin wait
    /// after changing it (0: no health mark).
    pub health_mark_wait_ms: u32,
    /// The nodes behind it: node id -> backend name (its hostname).
    pub backends: BTreeMap<String, String>,
    /// How long a drain waits for in-flight requests, and a rejoin for the node's readiness.
    pub within_ms: u32,
    /// A certificate roll's new certificate (PEM): trusted on the backends beside the running
    /// one from the first drain until the balancer is reconfigured with it.
    pub also_trust_pem: String,
    /// The backends workflows hold out of rotation ([`left_out_by`]: running ones', and those
    /// ended ones left out): one backend at a time across workflows, so a drain waits while
    /// another workflow's node is out.
    pub held: Vec<Held>,
}

/// A backend a workflow took out of rotation and is still to put back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Held {
    pub workflow_id: String,
    pub node_id: String,
    pub hostname: String,
    /// The workflow ended (failed or cancelled) and left the node out: only its retry, or
    /// another drain and rejoin of the node (`gluu restart NODE`), puts it back.
    pub ended: bool,
}

/// The nodes `wf` took out of rotation and is still to put back (a leaving node, whose rejoin
/// is skipped, is not held: it stays out for good), a failed drain's too (it may have taken
/// the node out before it failed).
pub fn held_out(wf: &Workflow) -> Vec<Held> {
    wf.nodes
        .iter()
        .filter(|n| left_out(wf, &n.node_id))
        .map(|n| Held {
            workflow_id: wf.id.clone(),
            node_id: n.node_id.clone(),
            hostname: n.hostname.clone(),
            ended: crate::engine::is_terminal(wf.status()),
        })
        .collect()
}

/// The nodes workflows left out of rotation, and no later rejoin put back: each running
/// workflow's ([`held_out`]), and those an ended (failed, cancelled) workflow left out, by
/// the time of its drain and of the node's last rejoin in any workflow.
pub fn left_out_by(workflows: &[Workflow]) -> Vec<Held> {
    let mut back: BTreeMap<&str, u64> = BTreeMap::new();
    for wf in workflows {
        for n in &wf.nodes {
            if let Some(r) = crate::engine::step_of(wf, &n.node_id, REJOIN)
                && r.status() == StepStatus::Succeeded
            {
                let t = back.entry(n.node_id.as_str()).or_default();
                *t = (*t).max(r.finished_unix_ms);
            }
        }
    }
    let mut out = Vec::new();
    for wf in workflows {
        let ended = crate::engine::is_terminal(wf.status());
        for h in held_out(wf) {
            let drained_at =
                crate::engine::step_of(wf, &h.node_id, DRAIN).map_or(0, |s| s.started_unix_ms);
            if !ended || back.get(h.node_id.as_str()).is_none_or(|t| *t < drained_at) {
                out.push(h);
            }
        }
    }
    out
}

/// `steps` with [`DRAIN`] before `first` and [`REJOIN`] after `last` (unchanged when either is
/// missing or they are out of order).
pub fn around(steps: Vec<&'static str>, first: &str, last: &str) -> Vec<&'static str> {
    let (Some(f), Some(l)) = (
        steps.iter().position(|s| *s == first),
        steps.iter().position(|s| *s == last),
    ) else {
        return steps;
    };
    if f > l {
        return steps;
    }
    let mut out = steps;
    out.insert(l + 1, REJOIN);
    out.insert(f, DRAIN);
    out
}

fn status_of(wf: &Workflow, node_id: &str, name: &str) -> Option<StepStatus> {
    crate::engine::step_of(wf, node_id, name).map(|s| s.status())
}

/// Whether the workflow took `node_id` out of rotation and has not put it back: its drain ran
/// (running or succeeded) and its rejoin has not succeeded. The balancer keeps such a node
/// down while the workflow runs.
pub fn out_of_rotation(wf: &Workflow, node_id: &str) -> bool {
    drain_ran(wf, node_id) && status_of(wf, node_id, REJOIN) != Some(StepStatus::Succeeded)
}

fn drain_ran(wf: &Workflow, node_id: &str) -> bool {
    matches!(
        status_of(wf, node_id, DRAIN),
        Some(StepStatus::Running | StepStatus::Succeeded)
    )
}

/// Whether `node_id` may be out and is still to come back: its drain ran, or failed (it may
/// have marked the node down before failing: a wait for the node's requests timed out), and
/// its rejoin neither succeeded nor was skipped (a node leaving the cluster skips it and stays
/// out).
fn left_out(wf: &Workflow, node_id: &str) -> bool {
    (drain_ran(wf, node_id) || status_of(wf, node_id, DRAIN) == Some(StepStatus::Failed))
        && !matches!(
            status_of(wf, node_id, REJOIN),
            Some(StepStatus::Succeeded | StepStatus::Skipped)
        )
}

/// The workflow's nodes out of rotation (node ids).
pub fn drained_nodes(wf: &Workflow) -> Vec<String> {
    wf.nodes
        .iter()
        .filter(|n| out_of_rotation(wf, &n.node_id))
        .map(|n| n.node_id.clone())
        .collect()
}

/// The plan of a leaving node's rejoin: it stays out of rotation.
pub fn leaving_rejoin() -> StepPlan {
    StepPlan::Skip(
        "the node leaves the cluster: it stays out of the load balancer's rotation".into(),
    )
}

/// Whether `node_id`'s turn in the rotation is over or will not come: its drain skipped, its
/// rejoin succeeded or skipped, or one of its steps failed (the node stops there).
fn settled(wf: &Workflow, node_id: &str) -> bool {
    let Some(n) = wf.nodes.iter().find(|n| n.node_id == node_id) else {
        return true;
    };
    if !n.steps.iter().any(|s| s.name == DRAIN) {
        return true;
    }
    status_of(wf, node_id, DRAIN) == Some(StepStatus::Skipped)
        || matches!(
            status_of(wf, node_id, REJOIN),
            Some(StepStatus::Succeeded | StepStatus::Skipped)
        )
        || n.steps.iter().any(|s| s.status() == StepStatus::Failed)
}

/// The paths a rejoin waits for: identity's health, and oxAuth's when the node answered it
/// just before its drain (a node whose oxAuth has no configuration yet, `--no-data` before
/// replication, is not held out for it); both when the drain reported nothing.
fn rejoin_paths(ctx: &StepCtx<'_>) -> Vec<String> {
    let before = ctx
        .job_of(&ctx.node.node_id, DRAIN)
        .and_then(|j| j.output.as_ref())
        .and_then(|o| match &o.kind {
            Some(operation_output::Kind::SetBackendRotation(r)) => Some(r.ready.clone()),
            _ => None,
        });
    READY_PATHS
        .iter()
        .filter(|p| {
            **p == IDENTITY_READY || before.as_ref().is_none_or(|b| b.iter().any(|x| x == *p))
        })
        .map(|p| p.to_string())
        .collect()
}

impl Balancer {
    /// The node a drain or rejoin runs on, if any: the driver observes it with the workflow's.
    pub fn observed(&self) -> Vec<String> {
        if self.lb_node.is_empty() {
            Vec::new()
        } else {
            vec![self.lb_node.clone()]
        }
    }

    /// Whether the balancer is an external one probing the nodes' health marks.
    pub fn health_marks(&self) -> bool {
        self.lb_node.is_empty() && self.health_mark_wait_ms > 0
    }
}

fn rotation(
    b: &Balancer,
    name: &str,
    ready_paths: Vec<String>,
    in_rotation: bool,
) -> SetBackendRotation {
    SetBackendRotation {
        name: name.to_string(),
        in_rotation,
        ready_paths,
        within_ms: b.within_ms,
        also_trust_pem: b.also_trust_pem.clone(),
        health_mark: b.health_marks(),
        mark_wait_ms: if b.health_marks() {
            b.health_mark_wait_ms
        } else {
            0
        },
    }
}

/// The job on the lb node, or on the node itself for an external balancer's health mark.
fn on_lb(b: &Balancer, op: SetBackendRotation, summary: String) -> StepPlan {
    let external = op.health_mark;
    let job = JobSpec {
        operation: Operation {
            kind: Some(operation::Kind::SetBackendRotation(op)),
        },
        timeout_ms: b
            .within_ms
            .saturating_add(b.health_mark_wait_ms)
            .saturating_add(60_000),
        summary,
        rerunnable: true,
        keep_output_as: None,
    };
    if external {
        StepPlan::Run(job)
    } else {
        StepPlan::RunOn(b.lb_node.clone(), job)
    }
}

/// The plan of the step being decided when it is [`DRAIN`] or [`REJOIN`]; None for any other
/// step (the workflow kind decides those).
pub fn plan(b: &Balancer, ctx: &StepCtx<'_>) -> Option<StepPlan> {
    let step = ctx.step().name.as_str();
    if step != DRAIN && step != REJOIN {
        return None;
    }
    if b.lb_node.is_empty() && !b.health_marks() {
        return Some(StepPlan::Skip(
            "no nginx load balancer is installed: nothing to drain".into(),
        ));
    }
    let Some(name) = b.backends.get(ctx.node.node_id.as_str()) else {
        return Some(StepPlan::Skip(
            "the node is not behind the load balancer".into(),
        ));
    };
    if step == REJOIN {
        return Some(rejoin(b, ctx, name));
    }
    // A node another workflow left out is already out: draining it again takes no other node
    // out (so `gluu restart` of two nodes each left out by another workflow does not wait on
    // itself).
    let already_out = b.held.iter().any(|h| h.node_id == ctx.node.node_id);
    if let Some(wait) = one_at_a_time(b, ctx, already_out) {
        return Some(wait);
    }
    Some(drain(b, ctx, name, already_out))
}

/// The rejoin of `name`: back into the rotation once the node's readiness paths answer.
fn rejoin(b: &Balancer, ctx: &StepCtx<'_>, name: &str) -> StepPlan {
    let wait_s = b.health_mark_wait_ms / 1000;
    let paths = rejoin_paths(ctx);
    let summary = if b.health_marks() {
        format!(
            "put back {name}'s health mark ({HEALTH_MARK_PATH} answers 200) and wait {wait_s} s \
             for the external load balancer to see it"
        )
    } else {
        format!(
            "put {name} back into the load balancer's rotation once it answers {} through its \
             own web tier",
            paths.join(" and ")
        )
    };
    on_lb(b, rotation(b, name, paths, true), summary)
}

/// A wait while another node is out of the rotation (this workflow's, another's, or an earlier
/// one in the rolling order); None when this node may leave now.
fn one_at_a_time(b: &Balancer, ctx: &StepCtx<'_>, already_out: bool) -> Option<StepPlan> {
    let node_id = ctx.node.node_id.as_str();
    if let Some(other) = ctx
        .workflow
        .nodes
        .iter()
        .find(|n| n.node_id != node_id && left_out(ctx.workflow, &n.node_id))
    {
        return Some(StepPlan::Wait(format!(
            "{} is out of the load balancer's rotation (one node at a time)",
            other.hostname
        )));
    }
    // A node another workflow left out that is also one of this workflow's nodes is this
    // workflow's to bring back, in its turn: waiting for it would wait for this workflow itself
    // (its rolling order puts that node later, or its kind orders it after this one).
    let ours = |id: &str| ctx.workflow.nodes.iter().any(|n| n.node_id == id);
    if let Some(h) = b.held.iter().find(|h| {
        h.workflow_id != ctx.workflow.id
            && h.node_id != node_id
            && !already_out
            && !ours(&h.node_id)
    }) {
        return Some(StepPlan::Wait(if h.ended {
            format!(
                "{host} is out of the load balancer's rotation, left out by workflow {id}, which \
                 ended (one node at a time): `clustermgr workflow retry {id}` finishes its roll, \
                 or `clustermgr gluu restart {host}` brings it back through its readiness gate",
                host = h.hostname,
                id = h.workflow_id
            )
        } else {
            format!(
                "{} is out of the load balancer's rotation for workflow {} (one node at a time)",
                h.hostname, h.workflow_id
            )
        }));
    }
    // In the workflow's (rolling) order: a node drained out of turn would wait for the nodes
    // before it while it is out.
    let earlier = ctx
        .workflow
        .nodes
        .iter()
        .take_while(|n| n.node_id != node_id)
        .find(|n| !settled(ctx.workflow, &n.node_id))?;
    Some(StepPlan::Wait(format!(
        "rolling: {} leaves the load balancer's rotation and comes back first",
        earlier.hostname
    )))
}

/// The drain of `name` out of the rotation, or a skip when no other node would take its
/// requests.
fn drain(b: &Balancer, ctx: &StepCtx<'_>, name: &str, already_out: bool) -> StepPlan {
    let node_id = ctx.node.node_id.as_str();
    // This workflow's own nodes are judged from the workflow being advanced: the balancer's
    // view was taken from the stored copy, which may be a step behind (a rejoin that just
    // succeeded would still count as out).
    let gone = |n: &String| {
        b.held
            .iter()
            .any(|h| &h.node_id == n && h.workflow_id != ctx.workflow.id)
            || ctx.workflow.nodes.iter().any(|w| {
                &w.node_id == n
                    && (out_of_rotation(ctx.workflow, n)
                        || status_of(ctx.workflow, n, DRAIN) == Some(StepStatus::Failed))
            })
    };
    if !already_out && !b.backends.keys().any(|n| n != node_id && !gone(n)) {
        return StepPlan::Skip(format!(
            "{name} is the only server behind the load balancer: no other node takes its requests"
        ));
    }
    let wait_s = b.health_mark_wait_ms / 1000;
    let summary = if b.health_marks() {
        format!(
            "take away {name}'s health mark ({HEALTH_MARK_PATH} answers 404) and wait {wait_s} s \
             for the external load balancer to see it and finish the node's requests"
        )
    } else {
        format!(
            "take {name} out of the load balancer's rotation (marked down, nginx -t, graceful \
             reload) and wait for its in-flight requests"
        )
    };
    on_lb(b, rotation(b, name, ready_paths(), false), summary)
}

/// Fixtures for the workflow kinds' case tables.
#[cfg(test)]
pub(crate) mod testing {
    use super::Balancer;
    use crate::engine::{
        Definition, Dispatch, JobState, JobView, NodeView, Observed, Workflow, advance, bind_job,
    };

    /// A balancer on node `lb` in front of `backends` (node id, backend name).
    pub fn balancer<'a>(
        lb: &str,
        backends: impl IntoIterator<Item = (&'a str, String)>,
    ) -> Balancer {
        Balancer {
            lb_node: lb.into(),
            backends: backends
                .into_iter()
                .map(|(n, name)| (n.to_string(), name))
                .collect(),
            within_ms: 1000,
            also_trust_pem: String::new(),
            held: Vec::new(),
            health_mark_wait_ms: 0,
        }
    }

    /// A job that succeeded with this output.
    pub fn succeeded(kind: Option<clustermgr_proto::operation_output::Kind>) -> JobView {
        JobView {
            state: JobState::Succeeded,
            exit_code: 0,
            error: String::new(),
            output: Some(clustermgr_proto::OperationOutput { kind }),
        }
    }

    /// Answers every dispatched job with success (its output from `output(step)`) until nothing
    /// is dispatched, calling `seen(record, dispatch, step)` as each job is sent.
    pub fn succeed_all_with(
        def: &dyn Definition,
        wf: &mut Workflow,
        obs: &mut Observed,
        output: &dyn Fn(&str) -> Option<clustermgr_proto::operation_output::Kind>,
        seen: &mut dyn FnMut(&Workflow, &Dispatch, &str),
    ) {
        for round in 0..100 {
            obs.now_ms = round;
            let d = advance(wf, def, obs);
            if d.dispatch.is_empty() {
                break;
            }
            for (k, disp) in d.dispatch.iter().enumerate() {
                let id = format!("j{round}-{k}");
                bind_job(wf, disp, &id);
                let step = wf
                    .nodes
                    .iter()
                    .find(|n| n.node_id == disp.node_id)
                    .map(|n| n.steps[disp.step].name.clone())
                    .unwrap_or_default();
                seen(wf, disp, &step);
                obs.jobs.insert(id, succeeded(output(&step)));
            }
        }
    }

    /// [`succeed_all_with`]: (step's node, step, node that ran the job) in the order sent.
    pub fn succeed_all(
        def: &dyn Definition,
        wf: &mut Workflow,
        obs: &mut Observed,
        output: &dyn Fn(&str) -> Option<clustermgr_proto::operation_output::Kind>,
    ) -> Vec<(String, String, String)> {
        let mut sent = Vec::new();
        succeed_all_with(def, wf, obs, output, &mut |_, disp, step| {
            let on = disp.run_on.clone().unwrap_or_else(|| disp.node_id.clone());
            sent.push((disp.node_id.clone(), step.to_string(), on));
        });
        sent
    }

    /// `lb` online and approved in `obs`.
    pub fn lb_online(obs: &mut Observed, lb: &str) {
        obs.nodes.insert(
            lb.into(),
            NodeView {
                hostname: lb.into(),
                online: true,
                approved: true,
                inventory: None,
            },
        );
    }
}

#[cfg(test)]
mod tests;
