//! oxAuth key rotation: the keys generated here, the `key-rotation` workflow started on every
//! installed Gluu server (`keys rotate`, or the schedule), its settings, its status, and the
//! backup of the previous oxAuthConfWebKeys.
//!
//! **Keys.** The JWKS oxAuth uses: signing RS256/384/512, ES256/384/512, PS256/384/512,
//! encryption RSA1_5 and RSA-OAEP; each with a kid (`<uuid>_<use>_<alg>`), the JWK public
//! parameters, `exp` and `x5c` (a self-signed certificate "CN=oxAuth CA Certificates" valid until
//! `exp`). RSA keys (2048 bits) come from the RustCrypto `rsa` crate, P-256/P-384 keys from ring,
//! and rcgen signs their certificates. ring has no P-521: the ES512 key comes from the RustCrypto
//! `p521` crate, and its certificate (ecdsa-with-SHA512) is built with `x509-cert` and signed
//! by that key (rcgen signs with P-521 only on aws-lc-rs, which we do not use).
//!
//! **Secrets.** The private keys exist in this process only while a rotation starts: they are
//! sealed (`sealing.rs`) into the workflow's kept values in the same transaction as the
//! workflow, read back by the driver for the keystore step, and deleted when the workflow ends.
//! The keys record, the job records and the audit rows hold kids, algorithms and expiry only.

use crate::audit::Audit;
use crate::ctl::Ctl;
use crate::error::{Classify, Kind};
use crate::settings;
use crate::settings::ClusterError;
use crate::store::StoreError;
use crate::workflows::{self, WhenBusy, WorkflowError};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use clustermgr_proto::{
    ClusterSettingsRecord, ConfigureKeysRequest, KeyInfo, KeysRecord, KeysSettings, KeysStatus,
    NewOxauthKeys, NodeKeys, OxauthPrivateKey, StartWorkflowResponse, Workflow, WorkflowStatus,
    operation_output,
};
use clustermgr_shared::util::now_ms;
use clustermgr_workflow::inputs::KindInputs;
use clustermgr_workflow::keys::{self, Directory, KEPT_KEYS, KeyRotation, STEPS};
use clustermgr_workflow::{is_terminal, new_workflow};
use prost::Message;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use clustermgr_workflow::keys::KIND;

/// Default rotation interval (the old cluster manager's default: two days).
pub const DEFAULT_INTERVAL_MS: u64 = 48 * 3600 * 1000;
/// Default overlap: Gluu's longest default token lifetime (the refresh token's, one day).
pub const DEFAULT_OVERLAP_MS: u64 = 24 * 3600 * 1000;
/// How long a JWKS probe keeps trying.
const PROBE_WITHIN_MS: u32 = 5 * 60_000;
/// How often the scheduler looks.
const TICK: Duration = Duration::from_secs(2);
/// The backups' directory under the data directory (the old cluster manager's name).
pub const BACKUP_DIR: &str = "backup_oxAuthConfWebKeys";
const RSA_BITS: usize = 2048;
const CN: &str = "oxAuth CA Certificates";

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("no Gluu server is installed yet (clustermgr gluu install)")]
    NoGluu,
    #[error("a key rotation is running already ({0}); follow it with `clustermgr workflow show`")]
    Running(String),
    #[error("{0}")]
    Invalid(String),
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for KeysError {
    fn kind(&self) -> Kind {
        match self {
            Self::NoGluu | Self::Running(_) => Kind::FailedPrecondition,
            Self::Invalid(_) => Kind::InvalidArgument,
            Self::Generate(_) => Kind::Internal,
            Self::Workflow(e) => e.kind(),
            Self::Cluster(e) => e.kind(),
            Self::Store(_) => Kind::Internal,
        }
    }
}

// ----- key generation -----

/// One algorithm oxAuth publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alg {
    pub name: &'static str,
    pub sig: bool,
}

/// In oxAuthConfWebKeys order: the signing keys (RS256 first: the default signature
/// algorithm), then the encryption keys.
pub const ALGS: [Alg; 11] = [
    Alg {
        name: "RS256",
        sig: true,
    },
    Alg {
        name: "RS384",
        sig: true,
    },
    Alg {
        name: "RS512",
        sig: true,
    },
    Alg {
        name: "ES256",
        sig: true,
    },
    Alg {
        name: "ES384",
        sig: true,
    },
    Alg {
        name: "ES512",
        sig: true,
    },
    Alg {
        name: "PS256",
        sig: true,
    },
    Alg {
        name: "PS384",
        sig: true,
    },
    Alg {
        name: "PS512",
        sig: true,
    },
    Alg {
        name: "RSA1_5",
        sig: false,
    },
    Alg {
        name: "RSA-OAEP",
        sig: false,
    },
];

// ----- settings and record -----

pub fn record(ctl: &Ctl) -> Result<KeysRecord, KeysError> {
    let mut r = ctl.store.keys_record()?.unwrap_or_default();
    let s = r.settings.get_or_insert_with(KeysSettings::default);
    if s.interval_ms == 0 {
        s.interval_ms = DEFAULT_INTERVAL_MS;
    }
    if s.overlap_ms == 0 {
        s.overlap_ms = DEFAULT_OVERLAP_MS;
    }
    Ok(r)
}

fn settings_of(r: &KeysRecord) -> KeysSettings {
    r.settings.unwrap_or_default()
}

pub async fn configure(
    ctl: &Ctl,
    req: &ConfigureKeysRequest,
    audit: &Audit,
) -> Result<KeysSettings, KeysError> {
    let mut r = record(ctl)?;
    let mut s = settings_of(&r);
    let mut changed = Vec::new();
    if let Some(e) = req.enabled {
        s.enabled = e;
        changed.push(format!("enabled={e}"));
    }
    if let Some(i) = req.interval_ms {
        if i < 60_000 {
            return Err(KeysError::Invalid(
                "the interval is at least one minute".into(),
            ));
        }
        s.interval_ms = i;
        changed.push(format!("interval_ms={i}"));
    }
    if let Some(b) = req.backup {
        s.backup = b;
        changed.push(format!("backup={b}"));
    }
    if let Some(o) = req.overlap_ms {
        if o == 0 {
            return Err(KeysError::Invalid(
                "the overlap must be longer than zero".into(),
            ));
        }
        s.overlap_ms = o;
        changed.push(format!("overlap_ms={o}"));
    }
    if s.enabled && s.overlap_ms >= s.interval_ms {
        return Err(KeysError::Invalid(format!(
            "the overlap ({} s) must be shorter than the interval ({} s)",
            s.overlap_ms / 1000,
            s.interval_ms / 1000
        )));
    }
    r.settings = Some(s);
    let row = audit.ok(if changed.is_empty() {
        "no change".to_string()
    } else {
        changed.join(" ")
    });
    ctl.store.put_keys_record(r, Some(row)).await?;
    Ok(s)
}

// ----- the workflow -----

/// The workflow's definition, from its inputs and the settings now.
pub fn definition(ctl: &Ctl, wf: &Workflow) -> Result<KeyRotation, WorkflowError> {
    let inputs = keys::Inputs::decode(&wf.inputs)?;
    let s = settings::settings_record(ctl)?;
    Ok(KeyRotation {
        dir: directory(ctl, &s)?,
        https_port: (s.https_port != 0).then_some(s.https_port as u16),
        new_kids: inputs.new_kids,
        signing_kids: inputs.signing_kids,
        probe_within_ms: PROBE_WITHIN_MS,
    })
}

/// A workflow's node: id, hostname, steps.
type NodeSteps<'a> = (String, String, Vec<&'a str>);

/// Every installed Gluu server (by id and hostname) with `steps`.
fn installed_with_steps<'a>(
    ctl: &Ctl,
    steps: &[&'a str],
) -> Result<Vec<NodeSteps<'a>>, StoreError> {
    let mut nodes = Vec::new();
    for sv in ctl.store.servers()?.iter().filter(|s| s.install_complete) {
        let host = ctl
            .store
            .node(&sv.node_id)?
            .map(|n| n.hostname)
            .unwrap_or_else(|| sv.node_id.clone());
        nodes.push((sv.node_id.clone(), host, steps.to_vec()));
    }
    Ok(nodes)
}

/// How the workflows reach each node's own directory.
fn directory(ctl: &Ctl, s: &ClusterSettingsRecord) -> Result<Directory, WorkflowError> {
    Ok(Directory {
        ldap_password: settings::ldap_admin_password(ctl, s)?,
        ldaps_port: 1636,
    })
}

fn running(ctl: &Ctl, r: &KeysRecord) -> Result<Option<Workflow>, KeysError> {
    if r.running_workflow_id.is_empty() {
        return Ok(None);
    }
    Ok(ctl
        .store
        .workflow(&r.running_workflow_id)?
        .filter(|w| !is_terminal(w.status())))
}

/// Starts a rotation on every installed Gluu server (or, with `dry_run`, plans it).
pub async fn rotate(
    ctl: &Ctl,
    dry_run: bool,
    when_busy: WhenBusy,
    audit: &Audit,
) -> Result<StartWorkflowResponse, KeysError> {
    let mut r = record(ctl)?;
    if let Some(w) = running(ctl, &r)? {
        return Err(KeysError::Running(w.id));
    }
    let nodes = installed_with_steps(ctl, &STEPS)?;
    if nodes.is_empty() {
        return Err(KeysError::NoGluu);
    }
    let s = settings_of(&r);
    let now = now_ms();
    // Keys live two intervals: the next rotation replaces them well before they expire.
    let exp = now.saturating_add(s.interval_ms.saturating_mul(2).max(s.overlap_ms * 2));
    let g = tokio::task::spawn_blocking(move || generate(now, exp))
        .await
        .map_err(gen_err)??;
    let new_kids: Vec<String> = g.infos.iter().map(|i| i.kid.clone()).collect();
    let n_nodes = nodes.len();
    let id = uuid::Uuid::now_v7().to_string();
    let mut wf = new_workflow(&id, KIND, &audit.who, now, nodes);
    let inputs = keys::Inputs {
        new_kids: new_kids.clone(),
        signing_kids: g.signing_kids.clone(),
        overlap_ms: s.overlap_ms,
    };
    wf.inputs = inputs.encode().into_iter().collect();
    let def = workflows::definition(ctl, &wf)?;
    let plain = g.keys.encode_to_vec();
    if dry_run {
        let mut obs = workflows::observe(ctl, &wf, def.as_ref())?;
        obs.kept.insert(KEPT_KEYS.into(), plain);
        let plan = workflows::plan_of(clustermgr_workflow::dry_run(&wf, def.as_ref(), &obs));
        return Ok(StartWorkflowResponse {
            workflow: None,
            plan,
        });
    }
    let _admitted = workflows::admit_new(ctl, &mut wf, when_busy).await?;
    let sealed = ctl
        .sealer
        .seal(&workflows::purpose(&id, KEPT_KEYS), &plain)
        .map_err(gen_err)?;
    drop(plain);
    r.upcoming = g.infos;
    r.running_workflow_id = id.clone();
    let row = audit.on(id.clone()).ok(format!(
        "kind={KIND} nodes={} kids={}",
        n_nodes,
        new_kids.join(",")
    ));
    ctl.store
        .start_keys_workflow(wf.clone(), r, vec![(KEPT_KEYS.to_string(), sealed)], row)
        .await?;
    ctl.workflows.kick();
    Ok(StartWorkflowResponse {
        workflow: Some(wf),
        plan: Vec::new(),
    })
}

// ----- status -----

/// The kids a node's steps last saw served (from the rotation's probes), newest first.
fn served_by(ctl: &Ctl, wf: &Workflow) -> Vec<NodeKeys> {
    wf.nodes
        .iter()
        .map(|n| {
            let mut nk = NodeKeys {
                node_id: n.node_id.clone(),
                hostname: n.hostname.clone(),
                ..Default::default()
            };
            for s in n.steps.iter().rev() {
                if s.job_id.is_empty() {
                    continue;
                }
                let out = ctl
                    .jobs
                    .get(&s.job_id)
                    .ok()
                    .flatten()
                    .and_then(|j| j.output);
                match out.and_then(|o| o.kind) {
                    Some(operation_output::Kind::ProbeJwks(p)) => {
                        nk.served_kids = p.served_kids;
                        break;
                    }
                    Some(operation_output::Kind::SetWebKeys(w)) => {
                        nk.served_kids = w.kids;
                        break;
                    }
                    _ => {}
                }
            }
            if !n.steps.iter().any(|s| !s.job_id.is_empty()) {
                nk.error = "not observed yet".into();
            }
            nk
        })
        .collect()
}

pub fn status(ctl: &Ctl) -> Result<KeysStatus, KeysError> {
    let r = record(ctl)?;
    let s = settings_of(&r);
    // What the nodes served when last probed: by the newest rotation or retirement.
    let last = [
        ctl.store.latest_workflow(KIND)?,
        ctl.store
            .latest_workflow(clustermgr_workflow::keys::retirement::KIND)?,
    ]
    .into_iter()
    .flatten()
    .max_by(|a, b| a.id.cmp(&b.id));
    let mut nodes = last.as_ref().map(|w| served_by(ctl, w)).unwrap_or_default();
    let all: Vec<&KeyInfo> = r.current.iter().chain(r.upcoming.iter()).collect();
    for n in &mut nodes {
        // oxAuth signs with the first RS256 signing key it serves.
        n.signing_kid = n
            .served_kids
            .iter()
            .find(|k| all.iter().any(|i| &&i.kid == k && i.alg == "RS256"))
            .cloned()
            .unwrap_or_default();
    }
    let next = if s.enabled {
        r.last_rotation_unix_ms
            .saturating_add(s.interval_ms)
            .max(now_ms())
    } else {
        0
    };
    let running_id = running(ctl, &r)?.map(|w| w.id).unwrap_or_default();
    Ok(KeysStatus {
        settings: Some(s),
        current: r.current.clone(),
        upcoming: if running_id.is_empty() {
            Vec::new()
        } else {
            r.upcoming.clone()
        },
        nodes,
        last_rotation_unix_ms: r.last_rotation_unix_ms,
        next_rotation_unix_ms: next,
        running_workflow_id: running_id,
        retirement: r.retirement.clone(),
    })
}

// ----- the scheduler, the record's follow-up and the backup -----

/// The backup file of a rotation's previous oxAuthConfWebKeys.
pub fn backup_path(data_root: &Path, workflow_id: &str) -> PathBuf {
    data_root
        .join(BACKUP_DIR)
        .join(format!("oxAuthConfWebKeys-{workflow_id}.json"))
}

/// Writes the backup from the first succeeded publish step (once).
fn backup(ctl: &Ctl, data_root: &Path, wf: &Workflow) -> Result<(), std::io::Error> {
    let path = backup_path(data_root, &wf.id);
    if path.exists() {
        return Ok(());
    }
    let previous = wf
        .nodes
        .iter()
        .filter_map(|n| n.steps.iter().find(|s| s.name == "publish"))
        .filter(|s| !s.job_id.is_empty())
        .filter_map(|s| ctl.jobs.get(&s.job_id).ok().flatten())
        .filter_map(|j| match j.output.and_then(|o| o.kind) {
            Some(operation_output::Kind::SetWebKeys(w)) => Some(w.previous),
            _ => None,
        })
        .next();
    let Some(previous) = previous else {
        return Ok(());
    };
    clustermgr_shared::fsutil::create_private_dir(&data_root.join(BACKUP_DIR))?;
    clustermgr_shared::fsutil::write_private(&path, previous.as_bytes())?;
    tracing::info!(workflow = %wf.id, path = %path.display(), "previous oxAuthConfWebKeys backed up");
    Ok(())
}

/// One look: follow the running rotation (backup, record at its end), start a scheduled one.
pub async fn tick(ctl: &Ctl, data_root: &Path) -> Result<(), KeysError> {
    let mut r = record(ctl)?;
    let s = settings_of(&r);
    if !r.running_workflow_id.is_empty() {
        let Some(wf) = ctl.store.workflow(&r.running_workflow_id)? else {
            r.running_workflow_id.clear();
            ctl.store.put_keys_record(r, None).await?;
            return Ok(());
        };
        if s.backup
            && let Err(e) = backup(ctl, data_root, &wf)
        {
            tracing::warn!(error = %e, "cannot write the oxAuthConfWebKeys backup");
        }
        if !is_terminal(wf.status()) {
            return Ok(());
        }
        if wf.status() == WorkflowStatus::Succeeded {
            let retiring = std::mem::replace(&mut r.current, std::mem::take(&mut r.upcoming));
            retirement::schedule(ctl, &mut r, &wf, retiring);
        }
        r.last_rotation_unix_ms = wf.updated_unix_ms.max(wf.created_unix_ms);
        r.running_workflow_id.clear();
        ctl.store.put_keys_record(r, None).await?;
        return Ok(());
    }
    if retirement::tick(ctl, &mut r).await? {
        return Ok(());
    }
    if s.enabled && now_ms() >= r.last_rotation_unix_ms.saturating_add(s.interval_ms) {
        let a = Audit::new("controller:schedule", "keys.rotate", "cluster");
        match rotate(ctl, false, WhenBusy::Queue, &a).await {
            Ok(_) => {}
            Err(KeysError::NoGluu) => {}
            Err(e) => {
                tracing::warn!(error = %e, "scheduled key rotation not started");
                // One failed row, then the next look in an interval.
                let _ = ctl.store.append_audit(a.failed(&e.to_string())).await;
                r.last_rotation_unix_ms = now_ms();
                ctl.store.put_keys_record(r, None).await?;
            }
        }
    }
    Ok(())
}

/// Starts the scheduler: a look every few seconds and whenever a workflow changes.
pub fn start(ctl: Arc<Ctl>, data_root: PathBuf) {
    tokio::spawn(async move {
        let mut changed = ctl.workflows.subscribe();
        loop {
            if let Err(e) = tick(&ctl, &data_root).await {
                tracing::warn!(error = %e, "key rotation check failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                r = changed.changed() => if r.is_err() { tokio::time::sleep(TICK).await },
            }
        }
    });
}

mod generate;
use generate::gen_err;
pub use generate::{Generated, generate, generate_one};
mod retirement;
pub use retirement::definition as retirement_definition;

/// The key rotation's workflow kinds (the rotation, and the retirement of the old keys on its
/// own schedule): their plans only.
pub fn kinds() -> [std::sync::Arc<dyn crate::ctl::WorkflowKind>; 2] {
    [
        crate::ctl::plan_only(&[clustermgr_workflow::keys::KIND], |ctl, wf| {
            Ok(Box::new(definition(ctl, wf)?))
        }),
        crate::ctl::plan_only(&[clustermgr_workflow::keys::retirement::KIND], |ctl, wf| {
            Ok(Box::new(retirement_definition(ctl, wf)?))
        }),
    ]
}

#[cfg(test)]
mod tests;
