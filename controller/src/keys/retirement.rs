//! The old keys' retirement, on its own schedule. A rotation ends once every node's
//! configuration signs with the new keys (oxAuth takes it on its next reload); its success
//! leaves a `PendingRetirement` in the keys record (due the overlap after the last switch,
//! persisted, so a restarted controller keeps it). When it is due and
//! no rotation runs, the scheduler starts a `key-retirement` workflow on every installed
//! server (queued behind what holds them); its success clears the record. A failed one stays
//! pending until it is retried (`workflow retry`); a newer rotation's retirement replaces it,
//! and the replaced one, retried, fails (its kept kids are no longer the newest).

use super::{KeysError, PROBE_WITHIN_MS, directory, installed_with_steps};
use crate::audit::Audit;
use crate::ctl::Ctl;
use crate::settings;
use crate::workflows::{self, WhenBusy, WorkflowError};
use clustermgr_proto::{KeyInfo, KeysRecord, PendingRetirement, Workflow, WorkflowStatus};
use clustermgr_shared::util::now_ms;
use clustermgr_workflow::inputs::KindInputs;
use clustermgr_workflow::keys;
use clustermgr_workflow::keys::KeyRotation;
use clustermgr_workflow::keys::retirement::{self, KIND, KeyRetirement, STEPS, superseded};
use clustermgr_workflow::{is_terminal, new_workflow};

/// The retirement a succeeded rotation leaves: its kids stay, the others go once due. An
/// earlier retirement that has not run is replaced (its keys go with this one's).
pub(super) fn schedule(ctl: &Ctl, r: &mut KeysRecord, rotation: &Workflow, retiring: Vec<KeyInfo>) {
    let Some(due) = KeyRotation::retirement_due(rotation) else {
        return;
    };
    // A rotation whose inputs cannot be read schedules nothing (its retirement_due is None
    // then too).
    let Ok(rotation_inputs) = keys::Inputs::decode(&rotation.inputs) else {
        return;
    };
    let keep = rotation_inputs.new_kids;
    let mut all = Vec::new();
    if let Some(earlier) = r.retirement.take() {
        let done = !earlier.workflow_id.is_empty()
            && ctl
                .store
                .workflow(&earlier.workflow_id)
                .ok()
                .flatten()
                .is_some_and(|w| w.status() == WorkflowStatus::Succeeded);
        if !done {
            all = earlier.retiring;
        }
    }
    all.extend(retiring);
    r.retirement = Some(PendingRetirement {
        due_unix_ms: due,
        keep_kids: keep,
        retiring: all,
        rotation_workflow_id: rotation.id.clone(),
        workflow_id: String::new(),
    });
}

/// Follows the pending retirement: clears it once its workflow succeeded, starts that workflow
/// when due. Returns whether a retirement workflow runs (no scheduled rotation starts then).
pub(super) async fn tick(ctl: &Ctl, r: &mut KeysRecord) -> Result<bool, KeysError> {
    let Some(mut p) = r.retirement.clone() else {
        return Ok(false);
    };
    if !p.workflow_id.is_empty() {
        match ctl.store.workflow(&p.workflow_id)? {
            Some(w) if w.status() == WorkflowStatus::Succeeded => {
                r.retirement = None;
                ctl.store.put_keys_record(r.clone(), None).await?;
                return Ok(false);
            }
            Some(w) if !is_terminal(w.status()) => return Ok(true),
            // Failed or cancelled: shown by `keys status` until retried or replaced.
            Some(_) => return Ok(false),
            None => p.workflow_id.clear(),
        }
    }
    if now_ms() < p.due_unix_ms {
        return Ok(false);
    }
    let nodes = installed_with_steps(ctl, &STEPS)?;
    if nodes.is_empty() {
        return Ok(false);
    }
    let audit = Audit::new("controller:schedule", "keys.retire", "cluster");
    let id = uuid::Uuid::now_v7().to_string();
    let mut wf = new_workflow(&id, KIND, &audit.who, now_ms(), nodes);
    let inputs = retirement::Inputs {
        keep_kids: p.keep_kids.clone(),
        rotation: p.rotation_workflow_id.clone(),
    };
    wf.inputs = inputs.encode().into_iter().collect();
    workflows::definition(ctl, &wf)?;
    let _admitted = workflows::admit_new(ctl, &mut wf, WhenBusy::Queue).await?;
    p.workflow_id = id.clone();
    r.retirement = Some(p.clone());
    let row = audit.on(id.clone()).ok(format!(
        "kind={KIND} nodes={} keep={}",
        wf.nodes.len(),
        p.keep_kids.join(",")
    ));
    ctl.store
        .start_keys_workflow(wf, r.clone(), Vec::new(), row)
        .await?;
    ctl.workflows.kick();
    tracing::info!(workflow = %id, "old oxAuth keys: retirement started");
    Ok(true)
}

/// The retirement workflow's definition, from its inputs, the settings and the keys record
/// now: one whose rotation is no longer the record's pending retirement's fails its steps
/// (`superseded`), whenever it runs (a retry, or queued behind a newer rotation).
pub fn definition(ctl: &Ctl, wf: &Workflow) -> Result<KeyRetirement, WorkflowError> {
    let s = settings::settings_record(ctl)?;
    let record = ctl.store.keys_record()?.unwrap_or_default();
    let pending = record
        .retirement
        .as_ref()
        .map(|p| p.rotation_workflow_id.as_str());
    let inputs = retirement::Inputs::decode(&wf.inputs)?;
    Ok(KeyRetirement {
        dir: directory(ctl, &s)?,
        https_port: (s.https_port != 0).then_some(s.https_port as u16),
        superseded: superseded(&inputs.rotation, pending),
        keep_kids: inputs.keep_kids,
        probe_within_ms: PROBE_WITHIN_MS,
    })
}
