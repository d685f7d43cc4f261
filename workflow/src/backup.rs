//! `backup` and `backup-restore`: a node's directory and Gluu configuration kept by the
//! controller (`backup.proto`), and put back.
//!
//! `backup`, per node (every node at once: nothing restarts, the directory keeps serving):
//! `preflight` (a Gluu Server installed, from the inventory; the directory's kind read on the
//! node), `backup-directory` (`BackupNode`: the LDIF of o=gluu and o=site and the
//! configuration's tar made on the node and uploaded to the controller; its output names the
//! archive the controller received and checked, which the driver then records with the
//! retention, `keep`).
//!
//! `backup-restore`, on one node: `drain` ([`crate::drain`]), `stop-directory` (the directory
//! service alone), `restore` (`RestoreNode`: refused by the node while its directory answers;
//! the archive fetched and checked, the databases replaced, the configuration written back,
//! each base searched and its entries counted), `start` (the whole Gluu Server restarted: the
//! directory, and the services that read the restored configuration), `verify` (the directory
//! manager's LDAPS bind on the node), `rejoin`.

use crate::drain::{self, Balancer, DRAIN, REJOIN};
use crate::engine::{Definition, JobSpec, JobState, JobView, StepCtx, StepPlan};
use crate::inputs::KindInputs;
use crate::readiness;
use clustermgr_proto::{
    BackupNode, DirectoryInfo, GluuServices, RestoreNode, gluu_services, operation,
    operation_output,
};
use std::collections::BTreeMap;

pub const KIND: &str = "backup";
pub const STEPS: [&str; 2] = ["preflight", "backup-directory"];
pub const RESTORE_KIND: &str = "backup-restore";
pub const RESTORE_STEPS: [&str; 6] = [
    DRAIN,
    "stop-directory",
    "restore",
    "start",
    "verify",
    REJOIN,
];
/// The directory's service inside Gluu (OpenDJ's unit name on 4.x).
pub const DIRECTORY_SERVICE: &str = "opendj";
/// A backup's upload may take long on a large directory.
const BACKUP_TIMEOUT_MS: u32 = 60 * 60_000;

/// The `backup` workflow's inputs (no secret).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Inputs {
    /// The backup id each node's archive gets, by node id.
    pub ids: BTreeMap<String, String>,
    /// Backups kept per node once this one is recorded (0: the controller's default).
    #[serde(default)]
    pub keep: u32,
}

/// The prefix of each node's backup id entry as the previous release wrote it (`id.n1=…`).
const LEGACY_ID_PREFIX: &str = "id.";

impl KindInputs for Inputs {
    const KIND: &'static str = KIND;

    fn read_legacy(m: &mut BTreeMap<String, String>) {
        if m.contains_key("ids") {
            return;
        }
        let ids: BTreeMap<String, String> = m
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(LEGACY_ID_PREFIX)?.to_string(), v.clone())))
            .collect();
        m.retain(|k, _| !k.starts_with(LEGACY_ID_PREFIX));
        m.insert(
            "ids".into(),
            crate::inputs::entry_value(serde_json::json!(ids)),
        );
    }
}

#[derive(Debug, Clone)]
pub struct Backup {
    pub inputs: Inputs,
}

fn job(kind: operation::Kind, timeout_ms: u32, summary: String, rerunnable: bool) -> StepPlan {
    match rerunnable {
        true => JobSpec::rerunnable(kind, timeout_ms, summary),
        false => JobSpec::once(kind, timeout_ms, summary),
    }
    .into()
}

fn output(job: &JobView) -> Option<&operation_output::Kind> {
    job.output.as_ref().and_then(|o| o.kind.as_ref())
}

impl Definition for Backup {
    fn observed_nodes(&self, _wf: &clustermgr_proto::Workflow) -> Vec<String> {
        Vec::new()
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn plan_step(&self, ctx: &StepCtx<'_>) -> StepPlan {
        let me = ctx.node.node_id.as_str();
        match ctx.step().name.as_str() {
            "preflight" => {
                let Some(inv) = ctx.node_view().and_then(|n| n.inventory.as_ref()) else {
                    return StepPlan::Wait("waiting for the node's inventory".into());
                };
                if !inv.gluu.as_ref().is_some_and(|g| g.installed) {
                    return StepPlan::Fail(format!(
                        "no Gluu Server is installed on {}: nothing to back up",
                        ctx.hostname(me)
                    ));
                }
                job(
                    operation::Kind::DirectoryInfo(DirectoryInfo::default()),
                    60_000,
                    "read the directory's kind".into(),
                    true,
                )
            }
            "backup-directory" => {
                let Some(id) = self.inputs.ids.get(me) else {
                    return StepPlan::Fail("the workflow names no backup id for this node".into());
                };
                job(
                    operation::Kind::BackupNode(BackupNode {
                        backup_id: id.clone(),
                    }),
                    BACKUP_TIMEOUT_MS,
                    format!(
                        "back up o=gluu, o=site, /etc/gluu/conf and /etc/certs as {id} and upload \
                         it to the controller"
                    ),
                    true,
                )
            }
            other => StepPlan::Fail(format!("unknown step {other:?}")),
        }
    }

    fn check(&self, ctx: &StepCtx<'_>, job: &JobView) -> Result<(), String> {
        if job.state != JobState::Succeeded {
            return Ok(());
        }
        match (ctx.step().name.as_str(), output(job)) {
            ("preflight", Some(operation_output::Kind::DirectoryInfo(d))) => {
                match d.kind.as_str() {
                    "openldap" | "opendj" => Ok(()),
                    other => Err(format!("the node's directory is {other:?}")),
                }
            }
            ("backup-directory", Some(operation_output::Kind::BackupNode(b))) => {
                let want = self.inputs.ids.get(ctx.node.node_id.as_str());
                if want != Some(&b.backup_id) {
                    return Err(format!(
                        "the node made backup {:?}, not {want:?}",
                        b.backup_id
                    ));
                }
                if b.sha256.len() != 64 || b.size == 0 {
                    return Err("the node's output names no archive".into());
                }
                Ok(())
            }
            _ => Err("the node returned no result for the step".into()),
        }
    }
}

/// The `backup-restore` workflow's inputs (no secret): the backup as the controller's index
/// has it.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct RestoreInputs {
    #[serde(rename = "backup")]
    pub backup_id: String,
    pub sha256: String,
    pub size: u64,
}

impl KindInputs for RestoreInputs {
    const KIND: &'static str = RESTORE_KIND;
}

#[derive(Debug, Clone)]
pub struct BackupRestore {
    pub inputs: RestoreInputs,
    /// The directory manager's password (never in inputs), for the verifying bind.
    pub admin_password: String,
    /// How long the restarted directory has to answer.
    pub within_ms: u32,
    pub balancer: Balancer,
}

fn services(action: gluu_services::Action, services: &[&str]) -> operation::Kind {
    operation::Kind::GluuServices(GluuServices {
        action: action as i32,
        services: services.iter().map(|s| s.to_string()).collect(),
    })
}

impl Definition for BackupRestore {
    fn kind(&self) -> &'static str {
        RESTORE_KIND
    }

    /// The balancer's node, where the drain and the rejoin run.
    fn observed_nodes(&self, _wf: &clustermgr_proto::Workflow) -> Vec<String> {
        self.balancer.observed()
    }

    fn plan_step(&self, ctx: &StepCtx<'_>) -> StepPlan {
        if let Some(plan) = drain::plan(&self.balancer, ctx) {
            return plan;
        }
        let me = ctx.node.node_id.as_str();
        let Some(ip) = ctx.address(me) else {
            return StepPlan::Wait("waiting for the node's inventory (its address)".into());
        };
        let i = &self.inputs;
        match ctx.step().name.as_str() {
            "stop-directory" => job(
                services(gluu_services::Action::Stop, &[DIRECTORY_SERVICE]),
                5 * 60_000,
                format!("stop the directory ({DIRECTORY_SERVICE})"),
                true,
            ),
            "restore" => job(
                operation::Kind::RestoreNode(RestoreNode {
                    backup_id: i.backup_id.clone(),
                    sha256: i.sha256.clone(),
                    size: i.size,
                    directory_host: ip.clone(),
                    directory_port: crate::gluu_install::LDAPS_PORT,
                }),
                BACKUP_TIMEOUT_MS,
                format!(
                    "restore backup {} ({} bytes) onto the stopped directory, then search it",
                    i.backup_id, i.size
                ),
                // Replacing the databases again from the same archive is the same restore.
                true,
            ),
            "start" => job(
                services(gluu_services::Action::Restart, &[]),
                15 * 60_000,
                "restart Gluu Server (the restored directory and configuration)".into(),
                true,
            ),
            "verify" => readiness::directory(&ip, &self.admin_password, self.within_ms),
            other => StepPlan::Fail(format!("unknown step {other:?}")),
        }
    }

    fn check(&self, ctx: &StepCtx<'_>, job: &JobView) -> Result<(), String> {
        if job.state != JobState::Succeeded {
            return Ok(());
        }
        match (ctx.step().name.as_str(), output(job)) {
            ("restore", Some(operation_output::Kind::RestoreNode(r))) => {
                if r.backup_id != self.inputs.backup_id {
                    return Err(format!("the node restored {:?}", r.backup_id));
                }
                match r
                    .bases
                    .iter()
                    .find(|b| b.entries != b.expected_entries || !b.base_entry)
                {
                    Some(b) => Err(format!(
                        "{} holds {} entries after the restore, the backup {}",
                        b.base, b.entries, b.expected_entries
                    )),
                    None if r.bases.is_empty() => Err("the node restored no base".into()),
                    None => Ok(()),
                }
            }
            ("restore", _) => Err("the node returned no result for the step".into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
