//! The Gluu workflows: install (the package pushed over the sessions, the primary's outputs
//! for the others), adopt (a standalone server becomes the primary) and restart
//! (`restart.rs`): starting them, and their kinds (plan, the servers an ended one completes,
//! the load balancer's update after an install).

mod kinds;
mod restart;

pub use kinds::{GluuAdoptKind, GluuInstallKind};
pub use restart::{GluuRestartKind, fsrep_restart, restart_gluu, restart_wanted};

use crate::audit::Audit;
use crate::ctl::Ctl;
use crate::nodes;
use crate::settings::{self, ClusterError};
use crate::workflows::{WhenBusy, WorkflowError, admit_new, plan_of};
use clustermgr_proto::{
    ClusterSettingsRecord, InstallGluuRequest, ReceivePackage, ServerRecord, StartWorkflowResponse,
};
use clustermgr_shared::util::now_ms;
use clustermgr_workflow::gluu_adopt;
use clustermgr_workflow::gluu_install::{self, GluuInstall, Org, PackageSource};
use clustermgr_workflow::inputs::KindInputs;
use clustermgr_workflow::new_workflow;

/// How long a readiness probe keeps trying.
const PROBE_WITHIN_MS: u32 = 10 * 60_000;
/// Free space the preflight asks for under /opt.
const MIN_FREE_BYTES: u64 = 2 << 30;

pub(crate) fn gluu_install_def(
    ctl: &Ctl,
    s: &ClusterSettingsRecord,
    inputs: &gluu_install::Inputs,
) -> Result<GluuInstall, WorkflowError> {
    let package = if inputs.package_sha256.is_empty() {
        // Gluu's repository when the settings name one (with its key); else the nodes' own.
        let repository = (!s.gluu_repo_url.is_empty() && !s.gluu_repo_key.is_empty()).then(|| {
            clustermgr_proto::PackageRepository {
                name: "gluu".into(),
                url: s.gluu_repo_url.clone(),
                suite: if s.gluu_repo_suite.is_empty() {
                    "stable".into()
                } else {
                    s.gluu_repo_suite.clone()
                },
                component: "main".into(),
                signing_key: s.gluu_repo_key.clone(),
            }
        });
        let name = inputs.package_name.clone();
        if inputs.package_version.is_empty() {
            // An install recorded before versions were pinned: refused at its preflight.
            PackageSource::Online { name, repository }
        } else {
            PackageSource::Pinned {
                name,
                version: inputs.package_version.clone(),
                repository,
            }
        }
    } else {
        PackageSource::Pushed {
            summary: inputs.package_summary.clone(),
            receive: receive_for(ctl, &inputs.package_sha256)?,
            sha256: inputs.package_sha256.clone(),
        }
    };
    let completed = ctl
        .store
        .servers()?
        .into_iter()
        .filter(|s| s.install_complete)
        .map(|s| s.node_id)
        .collect();
    Ok(GluuInstall {
        primary: inputs.primary.clone(),
        lb_hostname: s.lb_hostname.clone(),
        org: Org {
            name: s.org.clone(),
            country: s.country.clone(),
            city: s.city.clone(),
            state: s.state.clone(),
            admin_email: s.admin_email.clone(),
        },
        ldap_admin_password: settings::ldap_admin_password(ctl, s)?,
        package,
        force: inputs.force,
        balancer: crate::drain::balancer(ctl)?,
        https_port: (s.https_port != 0).then_some(s.https_port as u16),
        probe_within_ms: PROBE_WITHIN_MS,
        completed,
        min_free_bytes: MIN_FREE_BYTES,
        resolve: if s.manage_hosts {
            Vec::new()
        } else {
            vec![s.lb_hostname.clone()]
        },
        // None: started before components could be chosen.
        components: inputs
            .components
            .clone()
            .unwrap_or_else(|| crate::settings::of(s)),
    })
}

/// The push of a stored package.
pub(crate) fn receive_for(ctl: &Ctl, sha256: &str) -> Result<ReceivePackage, WorkflowError> {
    pkg::receive_spec(ctl, sha256).map_err(|e| WorkflowError::Refused(e.to_string()))
}

/// `gluu install`: the workflow (started) or its plan (dry run).
pub async fn install_gluu(
    ctl: &Ctl,
    fsrep: &crate::fsrep::Fsrep,
    req: &InstallGluuRequest,
    audit: &Audit,
) -> Result<StartWorkflowResponse, WorkflowError> {
    let settings = settings::settings_record(ctl)?;
    settings_complete(&settings)?;
    let (primary, targets) = install_targets(ctl, req)?;
    let inputs = install_inputs(ctl, req, &settings, &primary)?;
    let now = now_ms();
    let id = uuid::Uuid::now_v7().to_string();
    let def = gluu_install_def(ctl, &settings, &inputs)?;
    let mut nodes_steps = Vec::new();
    for t in &targets {
        let host = ctl
            .store
            .node(t)?
            .map(|n| n.hostname)
            .unwrap_or_else(|| t.clone());
        nodes_steps.push((t.clone(), host, def.steps(t)));
    }
    let mut wf = new_workflow(&id, gluu_install::KIND, &audit.who, now, nodes_steps);
    wf.inputs = inputs.encode().into_iter().collect();
    if req.dry_run {
        let obs = crate::workflows::observe(ctl, &wf, &def)?;
        let plan = plan_of(clustermgr_workflow::dry_run(&wf, &def, &obs));
        return Ok(StartWorkflowResponse {
            workflow: None,
            plan,
        });
    }
    let admitted = admit_new(ctl, &mut wf, WhenBusy::from_no_wait(req.no_wait)).await?;
    let mut recs = Vec::new();
    for t in &targets {
        if let Some(mut s) = ctl.store.server(t)? {
            s.last_workflow_id = id.clone();
            recs.push(s);
        }
    }
    let row = audit.on(id.clone()).ok(format!(
        "kind={} nodes={} force={} components={}",
        gluu_install::KIND,
        targets.len(),
        req.force,
        def.components
    ));
    ctl.store.put_workflow(wf.clone(), recs, Some(row)).await?;
    drop(admitted);
    // File replication's Shibboleth actions as the installed components need them.
    crate::fsrep::follow_components(ctl, fsrep, &def.components, audit).await;
    ctl.workflows.changed.send_modify(|v| *v += 1);
    ctl.workflows.kick();
    Ok(StartWorkflowResponse {
        workflow: Some(wf),
        plan: Vec::new(),
    })
}

/// The settings an install needs, or which ones are missing.
fn settings_complete(settings: &ClusterSettingsRecord) -> Result<(), WorkflowError> {
    let mut missing = Vec::new();
    for (name, empty) in [
        ("--gluu-version", settings.gluu_version.is_empty()),
        ("--lb-hostname", settings.lb_hostname.is_empty()),
        (
            "--ldap-admin-password-file",
            settings.ldap_admin_password_sealed.is_empty(),
        ),
        ("--org", settings.org.is_empty()),
        ("--country", settings.country.is_empty()),
        ("--city", settings.city.is_empty()),
        ("--state", settings.state.is_empty()),
        ("--admin-email", settings.admin_email.is_empty()),
    ] {
        if empty {
            missing.push(name);
        }
    }
    if !missing.is_empty() {
        return Err(WorkflowError::Refused(format!(
            "the cluster settings lack {}: set them with clustermgr cluster configure",
            missing.join(", ")
        )));
    }
    Ok(())
}

/// The primary and the servers to install, the primary first (the others need what it
/// records: it is always part of an install).
fn install_targets(
    ctl: &Ctl,
    req: &InstallGluuRequest,
) -> Result<(ServerRecord, Vec<String>), WorkflowError> {
    let servers = ctl.store.servers()?;
    let primary = servers
        .iter()
        .find(|s| s.primary)
        .ok_or_else(|| {
            WorkflowError::Refused(
                "the cluster has no servers: add them with clustermgr server add NODE".into(),
            )
        })?
        .clone();
    let mut targets: Vec<String> = if req.all {
        servers.iter().map(|s| s.node_id.clone()).collect()
    } else {
        if req.nodes.is_empty() {
            return Err(WorkflowError::Refused(
                "name the nodes to install, or --all".into(),
            ));
        }
        let mut ids = Vec::new();
        for r in &req.nodes {
            let node = nodes::find(ctl, &r.node).map_err(ClusterError::from)?;
            if !servers.iter().any(|s| s.node_id == node.id) {
                return Err(ClusterError::NotAServer(node.hostname).into());
            }
            ids.push(node.id);
        }
        ids
    };
    if !targets.contains(&primary.node_id) {
        targets.insert(0, primary.node_id.clone());
    }
    targets.sort_by_key(|id| id != &primary.node_id);
    targets.dedup();
    Ok((primary, targets))
}

/// The install's inputs, frozen when it starts: the components, and the package (pushed for an
/// offline cluster, else the settings' version from the nodes' repositories).
fn install_inputs(
    ctl: &Ctl,
    req: &InstallGluuRequest,
    settings: &ClusterSettingsRecord,
    primary: &ServerRecord,
) -> Result<gluu_install::Inputs, WorkflowError> {
    let mut inputs = gluu_install::Inputs {
        primary: primary.node_id.clone(),
        force: req.force,
        // Frozen too: every node of this install gets the same components.
        components: Some(crate::settings::of(settings)),
        ..Default::default()
    };
    if settings.offline {
        let primary_node = ctl.store.node(&primary.node_id)?;
        let format = primary_node
            .as_ref()
            .and_then(|n| n.inventory.as_ref())
            .map(|i| {
                if i.package_manager == "apt" {
                    "deb"
                } else {
                    "rpm"
                }
            })
            .unwrap_or("deb");
        let (sha, summary) = pkg::gluu_package(ctl, &settings.gluu_version, format)
            .map_err(|e| WorkflowError::Refused(e.to_string()))?;
        inputs.package_sha256 = sha;
        inputs.package_summary = summary;
    } else {
        inputs.package_name = "gluu-server".into();
        // Frozen when the workflow starts: every node installs this version, whatever the
        // settings or the repository say later.
        inputs.package_version = settings.gluu_version.clone();
    }
    Ok(inputs)
}

/// `gluu adopt NODE`: a standalone Gluu node becomes the cluster's primary.
pub async fn adopt_gluu(
    ctl: &Ctl,
    r: &str,
    audit: &Audit,
) -> Result<StartWorkflowResponse, WorkflowError> {
    let settings = settings::settings_record(ctl)?;
    if settings.lb_hostname.is_empty() || settings.ldap_admin_password_sealed.is_empty() {
        return Err(WorkflowError::Refused(
            "set --lb-hostname and --ldap-admin-password-file (the standalone server's directory manager password) with clustermgr cluster configure first".into(),
        ));
    }
    let node = nodes::find(ctl, r).map_err(ClusterError::from)?;
    let installed = node
        .inventory
        .as_ref()
        .and_then(|i| i.gluu.as_ref())
        .is_some_and(|g| g.installed);
    if !installed {
        return Err(WorkflowError::Refused(format!(
            "{}: Gluu Server is not installed there (no setup.properties.last); adopt takes a standalone Gluu Server",
            node.hostname
        )));
    }
    let servers = ctl.store.servers()?;
    if let Some(other) = servers
        .iter()
        .find(|s| s.node_id != node.id && s.install_complete)
    {
        let host = ctl
            .store
            .node(&other.node_id)?
            .map(|n| n.hostname)
            .unwrap_or_else(|| other.node_id.clone());
        return Err(WorkflowError::Refused(format!(
            "the cluster already has an installed server ({host}); adopt makes a standalone server the primary of a new cluster"
        )));
    }
    // Make it a server (the primary) if it is not one yet.
    if !servers.iter().any(|s| s.node_id == node.id) {
        crate::cluster::add_server(ctl, &node.id, true, &audit.on(node.id.clone())).await?;
    }
    let id = uuid::Uuid::now_v7().to_string();
    let mut wf = new_workflow(
        &id,
        gluu_adopt::KIND,
        &audit.who,
        now_ms(),
        vec![(
            node.id.clone(),
            node.hostname.clone(),
            gluu_adopt::STEPS.to_vec(),
        )],
    );
    let _admitted = admit_new(ctl, &mut wf, WhenBusy::Queue).await?;
    let mut recs = Vec::new();
    if let Some(mut s) = ctl.store.server(&node.id)? {
        s.last_workflow_id = id.clone();
        recs.push(s);
    }
    let row = audit
        .on(id.clone())
        .ok(format!("kind={} node={}", gluu_adopt::KIND, node.hostname));
    ctl.store.put_workflow(wf.clone(), recs, Some(row)).await?;
    ctl.workflows.changed.send_modify(|v| *v += 1);
    ctl.workflows.kick();
    Ok(StartWorkflowResponse {
        workflow: Some(wf),
        plan: Vec::new(),
    })
}

/// The package repository as the install sees it.
mod pkg {
    use crate::ctl::Ctl;
    use crate::packages::{self, PackageError};
    use clustermgr_proto::{ReceivePackage, operation};

    /// The push of a stored package (the job id is filled in when the job is sent).
    pub fn receive_spec(ctl: &Ctl, sha256: &str) -> Result<ReceivePackage, PackageError> {
        let rec = packages::find(&ctl.store, sha256)?;
        match packages::receive_operation(&rec, "").kind {
            Some(operation::Kind::ReceivePackage(r)) => Ok(r),
            _ => Err(PackageError::NotFound(sha256.into())),
        }
    }

    /// The newest gluu-server package of `version` and `format` in the repository:
    /// (sha256, "name version").
    pub fn gluu_package(
        ctl: &Ctl,
        version: &str,
        format: &str,
    ) -> Result<(String, String), PackageError> {
        let mut all: Vec<_> = ctl
            .store
            .packages()?
            .into_iter()
            .filter(|p| {
                p.name == "gluu-server"
                    && p.format == format
                    && (p.version == version
                        || p.version.starts_with(&format!("{version}~"))
                        || p.version.starts_with(&format!("{version}-"))
                        || p.version.starts_with(&format!("{version}.")))
            })
            .collect();
        all.sort_by_key(|p| p.added_unix_ms);
        let p = all.pop().ok_or_else(|| {
            PackageError::NotFound(format!(
                "gluu-server {version} .{format} (offline install: clustermgr package add FILE)"
            ))
        })?;
        Ok((p.sha256.clone(), format!("{} {}", p.name, p.version)))
    }
}
