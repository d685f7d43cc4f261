//! The backup workflows: `backup` (every Gluu server, or one) and `backup-restore` (one node,
//! drained): starting them and their kinds. A backup's archive is recorded (and the node's
//! oldest ones retired) when its workflow ends, from each node's `backup-node` output.

use super::{BackupError, Backups, DEFAULT_KEEP, new_id};
use crate::audit::Audit;
use crate::ctl::{Ctl, KindError, Plan, WorkflowKind};
use crate::nodes;
use crate::settings;
use crate::workflows::{New, WhenBusy, WorkflowError, start_nodes_when};
use clustermgr_proto::{
    BackupNodeOutput, BackupWorkflowStarted, NodeSteps, RestoreBackupRequest, StartBackupRequest,
    StartWorkflowResponse, StepStatus, Workflow, WorkflowStatus, operation_output,
};
use clustermgr_workflow::backup::{
    self, Backup, BackupRestore, Inputs, RESTORE_KIND, RESTORE_STEPS, RestoreInputs, STEPS,
};
use clustermgr_workflow::inputs::KindInputs;
use futures::future::BoxFuture;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// How long a drain waits for in-flight requests and a rejoin for the node's readiness.
const WITHIN_MS: u32 = 10 * 60_000;

/// The step whose job uploads the archive.
const BACKUP_STEP: &str = "backup-directory";

fn started(r: StartWorkflowResponse) -> BackupWorkflowStarted {
    BackupWorkflowStarted {
        workflow: r.workflow,
        plan: r.plan,
    }
}

/// `clustermgr backup [--node N]`: every installed Gluu server, or the one named.
pub async fn start_backup(
    ctl: &Ctl,
    req: &StartBackupRequest,
    audit: &Audit,
) -> Result<BackupWorkflowStarted, WorkflowError> {
    let mut targets = Vec::new();
    if req.node.is_empty() {
        for (n, _) in settings::installed_gluu_nodes(ctl)? {
            targets.push(n.id);
        }
        if targets.is_empty() {
            return Err(WorkflowError::Refused(
                "no installed Gluu server to back up".into(),
            ));
        }
    } else {
        let n = nodes::find(ctl, &req.node).map_err(settings::ClusterError::from)?;
        let installed = ctl.store.server(&n.id)?.is_some_and(|s| s.install_complete);
        if !installed {
            return Err(WorkflowError::Refused(format!(
                "{} is not an installed Gluu server of the cluster",
                n.hostname
            )));
        }
        targets.push(n.id);
    }
    let inputs = Inputs {
        ids: targets.iter().map(|t| (t.clone(), new_id())).collect(),
        keep: if req.keep == 0 {
            DEFAULT_KEEP
        } else {
            req.keep
        },
    };
    let nodes = targets.into_iter().map(|t| (t, STEPS.to_vec())).collect();
    let new = New::plain(backup::KIND, &inputs, nodes, Vec::new());
    let when = WhenBusy::from_no_wait(req.no_wait);
    Ok(started(
        start_nodes_when(ctl, new, req.dry_run, when, audit).await?,
    ))
}

/// `clustermgr backup restore ID --node N`: the node's directory replaced by the backup's.
pub async fn start_restore(
    ctl: &Ctl,
    req: &RestoreBackupRequest,
    audit: &Audit,
) -> Result<BackupWorkflowStarted, WorkflowError> {
    let info = Backups::get(&ctl.store, &req.id).map_err(refused)?;
    if req.node.is_empty() {
        return Err(WorkflowError::Refused(
            "name the node to restore (backup restore ID --node NODE)".into(),
        ));
    }
    let n = nodes::find(ctl, &req.node).map_err(settings::ClusterError::from)?;
    if info.node_id != n.id {
        // Another node's directory and certificates are not this node's.
        return Err(WorkflowError::Refused(format!(
            "backup {} is of {}, not of {}: a backup is restored onto its own node",
            info.id, info.hostname, n.hostname
        )));
    }
    if ctl.store.server(&n.id)?.is_none_or(|s| !s.install_complete) {
        return Err(WorkflowError::Refused(format!(
            "{} is not an installed Gluu server of the cluster",
            n.hostname
        )));
    }
    let inputs = RestoreInputs {
        backup_id: info.id,
        sha256: info.sha256,
        size: info.size,
    };
    let new = New::plain(
        RESTORE_KIND,
        &inputs,
        vec![(n.id, RESTORE_STEPS.to_vec())],
        Vec::new(),
    );
    let when = WhenBusy::from_no_wait(req.no_wait);
    let r = start_nodes_when(ctl, new, req.dry_run, when, audit).await?;
    // A backup retired while the restore was being stored (a backup of the node ending just
    // then) is not there to fetch: the restore stops before it changes anything.
    if !req.dry_run
        && matches!(
            Backups::get(&ctl.store, &req.id),
            Err(BackupError::NotFound(_))
        )
        && let Some(wf) = &r.workflow
    {
        crate::workflows::cancel(ctl, &wf.id, audit).await?;
        return Err(WorkflowError::Refused(format!(
            "backup {} was retired as the restore started; the restore is cancelled",
            req.id
        )));
    }
    Ok(started(r))
}

/// Whether `node` may upload `backup_id` now: a backup workflow that has not ended gave the
/// node that id, and its upload step's job runs (what a node sends is checked, not trusted).
fn expects_upload(ctl: &Ctl, node: &str, backup_id: &str) -> bool {
    step_job_runs(ctl, node, backup::KIND, BACKUP_STEP, |wf| {
        Inputs::decode(&wf.inputs).is_ok_and(|i| i.ids.get(node).is_some_and(|id| id == backup_id))
    })
}

/// Node `node`'s upload of backup `id` (its first message names `id`): taken only while a
/// running step of a workflow naming it expects it; forgotten when that workflow ended while
/// the archive came (it will never be recorded, and its end forgot what it could then).
pub async fn take_upload(
    ctl: &Ctl,
    backups: &Backups,
    node: &str,
    id: &str,
    parts: impl futures::Stream<Item = Result<clustermgr_proto::BackupChunk, tonic::Status>> + Unpin,
) -> Result<super::Received, BackupError> {
    if !expects_upload(ctl, node, id) {
        return Err(BackupError::NotExpected);
    }
    let r = backups
        .receive(&ctl.store, &ctl.sealer, node, parts)
        .await?;
    if !expects_upload(ctl, node, id) {
        backups.forget(&ctl.store, vec![id.to_string()]).await?;
        return Err(BackupError::Ended);
    }
    Ok(r)
}

/// Whether `node` may fetch `backup_id` now: a restore of that backup on the node runs its
/// restore step.
pub fn expects_fetch(ctl: &Ctl, node: &str, backup_id: &str) -> bool {
    step_job_runs(ctl, node, RESTORE_KIND, "restore", |wf| {
        RestoreInputs::decode(&wf.inputs).is_ok_and(|i| i.backup_id == backup_id)
    })
}

fn step_job_runs(
    ctl: &Ctl,
    node: &str,
    kind: &str,
    step: &str,
    inputs_match: impl Fn(&Workflow) -> bool,
) -> bool {
    let Ok(active) = ctl.store.active_workflows() else {
        return false;
    };
    active
        .iter()
        .filter(|wf| wf.kind == kind && inputs_match(wf))
        .flat_map(|wf| wf.nodes.iter().filter(|n| n.node_id == node))
        .flat_map(|n| n.steps.iter().filter(|s| s.name == step))
        .any(|s| !s.job_id.is_empty() && ctl.jobs.running(&s.job_id).is_some())
}

fn refused(e: BackupError) -> WorkflowError {
    WorkflowError::Refused(e.to_string())
}

/// `backup`: planned from its inputs; when it ends, each node's received archive is recorded.
pub struct BackupKind {
    pub backups: Arc<Backups>,
}

impl WorkflowKind for BackupKind {
    fn kinds(&self) -> &'static [&'static str] {
        &[backup::KIND]
    }

    fn definition(&self, _ctl: &Ctl, wf: &Workflow) -> Result<Plan, KindError> {
        let inputs = Inputs::decode(&wf.inputs).map_err(WorkflowError::from)?;
        Ok(Box::new(Backup { inputs }))
    }

    /// A backup that keeps fewer than the default deletes backups when it ends: its retry
    /// needs an admin, as its start did.
    fn retry_role(&self, wf: &Workflow) -> crate::roles::Role {
        match Inputs::decode(&wf.inputs) {
            Ok(i) => role_for_keep(i.keep),
            Err(_) => crate::roles::Role::Admin,
        }
    }

    /// Every node whose upload step succeeded: its archive recorded, its oldest retired (not
    /// one a restore still needs). The archives of the others are forgotten (a retry uploads
    /// again). Seen again (a retry's end, [`settle`] at start), what is recorded stays as it is.
    fn ended<'a>(&'a self, ctl: &'a Ctl, wf: &'a Workflow) -> BoxFuture<'a, Result<(), KindError>> {
        Box::pin(record_ended(ctl, &self.backups, wf))
    }
}

/// [`BackupKind::ended`]: each node on its own (one node's error does not keep the others'
/// archives from being recorded or forgotten).
async fn record_ended(ctl: &Ctl, backups: &Backups, wf: &Workflow) -> Result<(), KindError> {
    let inputs = Inputs::decode(&wf.inputs).map_err(WorkflowError::from)?;
    let protect = restoring(ctl)?;
    let mut errors = BTreeMap::new();
    let mut unrecorded = Vec::new();
    for n in &wf.nodes {
        let out = match uploaded(ctl, n) {
            Ok(Some(out)) => out,
            Ok(None) => {
                unrecorded.extend(inputs.ids.get(&n.node_id).cloned());
                continue;
            }
            Err(e) => {
                errors.insert(n.hostname.clone(), e.to_string());
                continue;
            }
        };
        match backups
            .record(
                &ctl.store,
                &n.node_id,
                &n.hostname,
                &out,
                inputs.keep,
                &protect,
            )
            .await
        {
            Ok((info, retired)) => tracing::info!(
                node = %n.hostname,
                backup = %info.id,
                size = info.size,
                retired = retired.len(),
                "backup recorded"
            ),
            Err(e) => {
                errors.insert(n.hostname.clone(), e.to_string());
            }
        }
    }
    backups
        .forget(&ctl.store, unrecorded)
        .await
        .map_err(refused)?;
    if errors.is_empty() || wf.status() != WorkflowStatus::Succeeded {
        return Ok(());
    }
    Err(format!("backups not recorded: {errors:?}").into())
}

/// At start, before anything runs, each received archive not recorded yet is decided: kept
/// while its backup workflow has not ended; recorded or forgotten when that workflow ended
/// without its end applied (the controller stopped in between); forgotten when no workflow
/// names it. Then the archives and uploads nothing names are swept. Returns the files swept.
pub async fn settle(ctl: &Ctl, backups: &Backups) -> Result<usize, KindError> {
    let waiting: HashSet<String> = ctl
        .store
        .backup_uploads()?
        .into_iter()
        .map(|u| u.id)
        .collect();
    let mut live = HashSet::new();
    if !waiting.is_empty() {
        for wf in ctl.store.workflows()? {
            let Ok(inputs) = Inputs::decode(&wf.inputs) else {
                continue;
            };
            if wf.kind != backup::KIND || !inputs.ids.values().any(|id| waiting.contains(id)) {
                continue;
            }
            if !clustermgr_workflow::is_terminal(wf.status()) {
                live.extend(inputs.ids.into_values());
            } else if let Err(e) = record_ended(ctl, backups, &wf).await {
                tracing::warn!(workflow = %wf.id, error = %e, "a backup's end applied at start");
            }
        }
    }
    let unnamed = ctl
        .store
        .backup_uploads()?
        .into_iter()
        .filter(|u| !live.contains(&u.id))
        .map(|u| u.id)
        .collect();
    ctl.store.forget_backup_uploads(unnamed).await?;
    Ok(backups.sweep(&ctl.store).map_err(refused)?)
}

/// The role a backup keeping `keep` (0: the default) needs: keeping fewer than the default
/// deletes backups, an admin's decision.
pub fn role_for_keep(keep: u32) -> crate::roles::Role {
    if keep == 0 || keep >= DEFAULT_KEEP {
        crate::roles::Role::Operator
    } else {
        crate::roles::Role::Admin
    }
}

/// The output of `n`'s succeeded upload step, if it has one.
fn uploaded(ctl: &Ctl, n: &NodeSteps) -> Result<Option<BackupNodeOutput>, KindError> {
    let Some(step) = n
        .steps
        .iter()
        .find(|s| s.name == BACKUP_STEP && s.status() == StepStatus::Succeeded)
    else {
        return Ok(None);
    };
    let Some(job) = ctl.jobs.record(&step.job_id)? else {
        return Ok(None);
    };
    Ok(match job.output.and_then(|o| o.kind) {
        Some(operation_output::Kind::BackupNode(out)) => Some(out),
        _ => None,
    })
}

/// The backups a restore that has not ended (queued or running) will read.
fn restoring(ctl: &Ctl) -> Result<HashSet<String>, KindError> {
    Ok(ctl
        .store
        .active_workflows()?
        .iter()
        .filter(|w| w.kind == RESTORE_KIND)
        .filter_map(|w| RestoreInputs::decode(&w.inputs).ok())
        .map(|i| i.backup_id)
        .collect())
}

/// `backup-restore`: the directory's admin password and the balancer, from the settings now.
pub struct RestoreKind;

impl WorkflowKind for RestoreKind {
    fn kinds(&self) -> &'static [&'static str] {
        &[RESTORE_KIND]
    }

    /// Its start needs an admin; so does running it again.
    fn retry_role(&self, _wf: &Workflow) -> crate::roles::Role {
        crate::roles::Role::Admin
    }

    fn definition(&self, ctl: &Ctl, wf: &Workflow) -> Result<Plan, KindError> {
        let s = settings::settings_record(ctl)?;
        Ok(Box::new(BackupRestore {
            inputs: RestoreInputs::decode(&wf.inputs).map_err(WorkflowError::from)?,
            admin_password: settings::ldap_admin_password(ctl, &s)?,
            within_ms: WITHIN_MS,
            balancer: crate::drain::balancer(ctl)?,
        }))
    }
}
