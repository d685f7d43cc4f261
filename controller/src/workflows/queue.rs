//! Workflows that compose: a new (or retried) workflow whose nodes another workflow holds is
//! queued behind it — or, when the operator asked for `--no-wait`, refused — and the driver
//! starts a queued one in the same pass that ends what it waited for. The rules are the
//! workflow crate's (`clustermgr_workflow::queue`); the queue lives in the workflow records
//! (status queued, `queued_behind`), so a restarted controller resumes it.

use super::*;
use clustermgr_workflow::queue::{self, Admission};

/// What a starting call does when other workflows hold some of its nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenBusy {
    /// Queued behind them; it starts when they have ended.
    Queue,
    /// Refused (`--no-wait`).
    Refuse,
}

impl WhenBusy {
    pub fn from_no_wait(no_wait: bool) -> Self {
        if no_wait { Self::Refuse } else { Self::Queue }
    }
}

/// A workflow's admission, held until its record is written: keep it (`let _admitted = ...`)
/// until after the workflow is stored, so no other start on its nodes is admitted in between
/// (both would see the nodes free and run at once).
#[must_use = "hold the admission until the workflow is written"]
pub(crate) struct Admitted<'a>(#[allow(dead_code)] tokio::sync::MutexGuard<'a, ()>);

/// Admits a workflow about to be recorded (new, or retried): it starts, is queued behind the
/// workflows holding its nodes (status queued, `queued_behind`), or is refused with
/// [`WhenBusy::Refuse`]. Admissions are one at a time until the returned [`Admitted`] drops.
pub(crate) async fn admit_new<'a>(
    ctl: &'a Ctl,
    wf: &mut Workflow,
    when_busy: WhenBusy,
) -> Result<Admitted<'a>, WorkflowError> {
    let guard = ctl.workflows.admit.lock().await;
    let active = ctl.store.active_workflows()?;
    let a = queue::admit_new(&active, wf);
    if let (Admission::Wait(holders), WhenBusy::Refuse) = (&a, when_busy) {
        let holder = holders
            .first()
            .and_then(|h| active.iter().find(|w| &w.id == h));
        let host = holder
            .and_then(|h| {
                h.nodes
                    .iter()
                    .find(|n| wf.nodes.iter().any(|m| m.node_id == n.node_id))
            })
            .map(|n| n.hostname.clone())
            .unwrap_or_else(|| "the cache".into());
        return Err(WorkflowError::Busy {
            host,
            workflow: holder.map(|h| h.id.clone()).unwrap_or_default(),
            kind: holder.map(|h| h.kind.clone()).unwrap_or_default(),
            state: holder.map_or("running", |h| clustermgr_workflow::status_name(h.status())),
        });
    }
    queue::apply(wf, &a);
    Ok(Admitted(guard))
}

/// What the workflows of `wf.queued_behind` are, in words ("ID (kind)"), for messages.
pub fn describe_holders(ctl: &Ctl, wf: &Workflow) -> String {
    wf.queued_behind
        .iter()
        .map(|id| match ctl.store.workflow(id) {
            Ok(Some(h)) => format!("{id} ({})", h.kind),
            _ => id.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The driver's admission: every queued workflow whose holders have all ended becomes pending
/// (its kind's start-time changes applied first; when they fail, it fails with their error);
/// the others' `queued_behind` is kept current. A cancelled queued one is never admitted (the
/// driver ends it).
/// Returns whether any workflow was admitted.
pub(super) async fn admit_queued(ctl: &Ctl) -> Result<bool, WorkflowError> {
    let mut active = ctl.store.active_workflows()?;
    // A queued kind that takes its nodes when it starts does so before its admission is
    // decided (the claims it waits on are those of its nodes now).
    for wf in active
        .iter_mut()
        .filter(|w| w.status() == WorkflowStatus::Queued && !w.cancel_requested)
    {
        if retake_nodes(ctl, wf)? {
            wf.updated_unix_ms = now_ms();
            save(ctl, wf, Vec::new()).await?;
        }
    }
    let mut admitted = false;
    for (id, a) in queue::admit_queued(&active) {
        let Some(mut wf) = active.iter().find(|w| w.id == id).cloned() else {
            continue;
        };
        if a == Admission::Start {
            if let Err(e) = on_admit(ctl, &wf).await {
                // Failed, not left queued: it would be tried again every pass, holding every
                // workflow queued behind it.
                tracing::error!(workflow = %id, error = %e, "cannot start a queued workflow");
                queue::fail_unstartable(&mut wf, &e.to_string(), now_ms());
                save(ctl, &wf, Vec::new()).await?;
                ctl.workflows.kick();
                continue;
            }
            admitted = true;
            tracing::info!(workflow = %id, kind = %wf.kind, "queued workflow starts");
        }
        if queue::apply(&mut wf, &a) {
            wf.updated_unix_ms = now_ms();
            save(ctl, &wf, Vec::new()).await?;
        }
    }
    Ok(admitted)
}

/// A queued workflow whose kind takes its node list when it starts, not when it was asked for
/// (`cache password set` behind a cache install that adds a cache host or a client): its nodes
/// as they are now. Returns whether they changed.
fn retake_nodes(ctl: &Ctl, wf: &mut Workflow) -> Result<bool, WorkflowError> {
    // A kind this controller does not know keeps its nodes (its plan waits, saying so).
    let Some(kind) = ctl.kinds.get(&wf.kind).cloned() else {
        return Ok(false);
    };
    kind.retake_nodes(ctl, wf)
        .map_err(|e| WorkflowError::Refused(e.to_string()))
}

/// What a kind changes when it starts rather than when it is asked for (a queued cache
/// workflow's record, which the running one still uses).
pub(super) async fn on_admit(ctl: &Ctl, wf: &Workflow) -> Result<(), WorkflowError> {
    super::kind_of(ctl, wf)?
        .on_admit(ctl, wf)
        .await
        .map_err(|e| WorkflowError::Refused(e.to_string()))
}
