//! Workflows that compose: a workflow asked for while others hold its nodes waits its turn.
//!
//! A workflow holds what it changes ([`Claim`]): each of its nodes, and the cache record for a
//! cache workflow. The hosts workflow (an idempotent edit of a marked block) and the load
//! balancer's workflows (nginx on the lb node, certificates read from the primary) hold nothing
//! and wait for nothing, as before queueing existed.
//!
//! Order is first come, first served: a new workflow waits for every workflow that has not
//! ended and shares a claim with it, queued ones included, so a later request never overtakes
//! an earlier one on the same node. A queued workflow starts once none of those is left; a
//! running one is never held back (a retried workflow is queued again behind what runs now).

use crate::engine::{Workflow, WorkflowStatus, is_terminal};
use std::collections::BTreeSet;

/// What a workflow holds while it has not ended.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Claim {
    /// One node (by id).
    Node(String),
    /// The cluster's cache record: one cache workflow at a time.
    Cache,
}

/// What a new (or retried) workflow should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Nothing holds what it claims: it starts.
    Start,
    /// These workflows (ids, oldest first) hold some of its claims: it waits for them.
    Wait(Vec<String>),
}

/// The claims of a workflow, from its kind and nodes.
pub fn claims(wf: &Workflow) -> BTreeSet<Claim> {
    let kind = wf.kind.as_str();
    if kind == crate::hosts::KIND
        || kind == crate::lb::INSTALL_KIND
        || kind == crate::lb::REMOVE_KIND
    {
        return BTreeSet::new();
    }
    let mut out: BTreeSet<Claim> = wf
        .nodes
        .iter()
        .map(|n| Claim::Node(n.node_id.clone()))
        .collect();
    if crate::cache::Action::from_kind(kind).is_some() {
        out.insert(Claim::Cache);
    }
    out
}

fn conflict(a: &BTreeSet<Claim>, b: &BTreeSet<Claim>) -> bool {
    !a.is_disjoint(b)
}

/// A queued workflow whose cancel was asked for: it never starts (the driver ends it) and
/// holds nothing meanwhile.
fn cancelled_queued(wf: &Workflow) -> bool {
    wf.status() == WorkflowStatus::Queued && wf.cancel_requested
}

/// Whether `wf` holds its claims: it has not ended and is not a cancelled queued one.
fn holds(wf: &Workflow) -> bool {
    !is_terminal(wf.status()) && !cancelled_queued(wf)
}

/// Whether `wf`, about to be recorded (new, or retried), must wait for some of `active` (the
/// workflows that have not ended, oldest first; `wf` itself is skipped).
pub fn admit_new(active: &[Workflow], wf: &Workflow) -> Admission {
    let mine = claims(wf);
    let holders: Vec<String> = active
        .iter()
        .filter(|o| o.id != wf.id && holds(o))
        .filter(|o| conflict(&mine, &claims(o)))
        .map(|o| o.id.clone())
        .collect();
    if holders.is_empty() {
        Admission::Start
    } else {
        Admission::Wait(holders)
    }
}

/// For every queued workflow of `active` (the workflows that have not ended, oldest first):
/// whether it starts now or what it still waits for. A queued workflow waits for every
/// conflicting workflow that runs (or is about to: pending) and for every conflicting queued
/// one ahead of it; workflows admitted earlier in the same call count as running. A queued
/// workflow whose cancel was asked for is left out (it must not start: its kind's start-time
/// changes would run for it) and holds nothing.
pub fn admit_queued(active: &[Workflow]) -> Vec<(String, Admission)> {
    let claims: Vec<BTreeSet<Claim>> = active.iter().map(claims).collect();
    let mut started: Vec<bool> = active
        .iter()
        .map(|w| w.status() != WorkflowStatus::Queued)
        .collect();
    let mut out = Vec::new();
    for (i, wf) in active.iter().enumerate() {
        if wf.status() != WorkflowStatus::Queued || wf.cancel_requested {
            continue;
        }
        let holders: Vec<String> = active
            .iter()
            .enumerate()
            .filter(|&(j, o)| j != i && holds(o))
            // Running ones hold whatever their age; queued ones only when ahead.
            .filter(|&(j, _)| started[j] || j < i)
            .filter(|&(j, _)| conflict(&claims[i], &claims[j]))
            .map(|(_, o)| o.id.clone())
            .collect();
        if holders.is_empty() {
            started[i] = true;
            out.push((wf.id.clone(), Admission::Start));
        } else {
            out.push((wf.id.clone(), Admission::Wait(holders)));
        }
    }
    out
}

/// Records an admission on the workflow: queued with what it waits for, or ready to start.
/// Returns whether the record changed.
pub fn apply(wf: &mut Workflow, a: &Admission) -> bool {
    let before = (wf.status, wf.queued_behind.clone());
    match a {
        Admission::Start => {
            if wf.status() == WorkflowStatus::Queued {
                wf.set_status(WorkflowStatus::Pending);
            }
            wf.queued_behind.clear();
        }
        Admission::Wait(holders) => {
            wf.set_status(WorkflowStatus::Queued);
            wf.queued_behind = holders.clone();
        }
    }
    before != (wf.status, wf.queued_behind.clone())
}

/// A queued workflow that cannot start (its kind's start-time change failed) ends failed
/// with the reason, instead of staying queued and holding everything queued behind it; nothing
/// of it ran, and `workflow retry` queues it again.
pub fn fail_unstartable(wf: &mut Workflow, why: &str, now_ms: u64) {
    wf.set_status(WorkflowStatus::Failed);
    wf.error = format!("cannot start: {why}");
    wf.queued_behind.clear();
    wf.finished_unix_ms = now_ms;
    wf.updated_unix_ms = now_ms;
}

#[cfg(test)]
mod tests;
