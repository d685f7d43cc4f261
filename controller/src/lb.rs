//! The load balancer: nginx on the node enrolled with role lb, installed and reconfigured by the
//! `lb-install` workflow, removed by `lb-remove`; its status asked from the node; and, for a
//! cluster behind an external balancer, what that balancer must route.
//!
//! The upstreams are the installed Gluu servers. After every server add or remove, and after a
//! Gluu install or a replicated server's removal ends, the balancer is reconfigured when one is
//! installed and its backends changed ([`after_change`]).

use crate::audit::Audit;
use crate::ctl::Ctl;
use crate::error::{Classify, Kind};
use crate::jobs::JobSpec;
use crate::nodes;
use crate::settings;
use crate::settings::ClusterError;
use crate::store::StoreError;
use crate::workflows::{self, WorkflowError};
use clustermgr_proto::{
    ClusterSettingsRecord, InstallLoadBalancerRequest, LbBackend, LbRoute, LoadBalancerConfig,
    LoadBalancerStatus, NginxStatus, NodeRecord, NodeRole, Operation, OxauthBalancing,
    StartWorkflowResponse, Workflow, WorkflowStatus, operation, operation_output,
};
use clustermgr_workflow::inputs::KindInputs;
use clustermgr_workflow::lb::{
    HEALTH_PATH, INSTALL_KIND, Inputs, LbInstall, LbRemove, NginxPackage, REMOVE_KIND,
    REMOVE_STEPS, STICKY_PATHS,
};
use clustermgr_workflow::{Definition, is_terminal, lb};
use std::sync::Arc;
use std::time::Duration;

/// How long the install's probe through the balancer keeps trying.
const PROBE_WITHIN_MS: u32 = 5 * 60_000;
/// How long `lb status` waits for the node.
const STATUS_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum LbError {
    #[error("no node is enrolled with role lb (clustermgr token create --role lb, then join one)")]
    NoLbNode,
    #[error("several nodes have role lb ({0}): name the one to use")]
    SeveralLbNodes(String),
    #[error("{host} has role {role}; the load balancer goes on a node of role lb")]
    WrongRole { host: String, role: &'static str },
    #[error(
        "the cluster uses an external load balancer (--external-lb): no nginx is installed; `clustermgr lb config` prints what it must route"
    )]
    External,
    #[error("no Gluu server is installed yet (clustermgr gluu install)")]
    NoGluu,
    #[error("no load balancer is installed")]
    NotInstalled,
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for LbError {
    fn kind(&self) -> Kind {
        match self {
            Self::NoLbNode
            | Self::SeveralLbNodes(_)
            | Self::External
            | Self::NoGluu
            | Self::NotInstalled => Kind::FailedPrecondition,
            Self::WrongRole { .. } => Kind::InvalidArgument,
            Self::Workflow(e) => e.kind(),
            Self::Cluster(e) => e.kind(),
            Self::Store(_) => Kind::Internal,
        }
    }
}

impl From<nodes::NodeError> for LbError {
    fn from(e: nodes::NodeError) -> Self {
        Self::Cluster(e.into())
    }
}

/// The balancer's https port (the Gluu servers' own) and the http port that redirects.
pub fn ports(s: &ClusterSettingsRecord) -> (u32, u32) {
    match s.https_port {
        0 | 443 => (443, 80),
        p => (p, 8080),
    }
}

fn address(n: &NodeRecord) -> Option<String> {
    n.inventory.as_ref()?.addresses.first().cloned()
}

/// The installed Gluu servers, by hostname: the balancer's upstreams.
pub fn backends(ctl: &Ctl) -> Result<Vec<LbBackend>, LbError> {
    Ok(backends_of_nodes(ctl)?
        .into_iter()
        .map(|(_, b)| b)
        .collect())
}

/// [`backends`], each with its node's id.
pub fn backends_of_nodes(ctl: &Ctl) -> Result<Vec<(String, LbBackend)>, LbError> {
    let s = settings::settings_record(ctl)?;
    let (port, _) = ports(&s);
    let mut out = Vec::new();
    for srv in ctl.store.servers()? {
        if !srv.install_complete {
            continue;
        }
        let Some(n) = ctl.store.node(&srv.node_id)? else {
            continue;
        };
        if let Some(a) = address(&n) {
            out.push((
                n.id.clone(),
                LbBackend {
                    address: a,
                    port,
                    name: n.hostname.clone(),
                },
            ));
        }
    }
    out.sort_by(|(_, a), (_, b)| a.name.cmp(&b.name).then(a.address.cmp(&b.address)));
    Ok(out)
}

fn encode_backends(b: &[LbBackend]) -> String {
    b.iter()
        .map(|b| format!("{}:{}={}", b.address, b.port, b.name))
        .collect::<Vec<_>>()
        .join(";")
}

/// The node for the balancer: the one named, else the only node of role lb.
fn lb_node(ctl: &Ctl, r: &str) -> Result<NodeRecord, LbError> {
    if !r.is_empty() {
        let n = nodes::find(ctl, r)?;
        if n.role() != NodeRole::Lb {
            return Err(LbError::WrongRole {
                host: n.hostname.clone(),
                role: n.role().label(),
            });
        }
        return Ok(n);
    }
    let mut lbs: Vec<NodeRecord> = ctl
        .store
        .nodes()?
        .into_iter()
        .filter(|n| n.role() == NodeRole::Lb)
        .collect();
    match lbs.len() {
        0 => Err(LbError::NoLbNode),
        1 => Ok(lbs.remove(0)),
        _ => Err(LbError::SeveralLbNodes(
            lbs.iter()
                .map(|n| n.hostname.clone())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

fn installed_primary(ctl: &Ctl) -> Result<String, LbError> {
    ctl.store
        .servers()?
        .into_iter()
        .find(|s| s.primary && s.install_complete)
        .map(|s| s.node_id)
        .ok_or(LbError::NoGluu)
}

/// The node nginx runs on and its https port, when the last lb workflow installed it.
pub fn installed(ctl: &Ctl) -> Result<Option<(String, u32)>, LbError> {
    Ok(installed_inputs(ctl)?.map(|i| (i.lb, i.https_port)))
}

/// The newest lb-install or lb-remove workflow.
fn last_lb_workflow(ctl: &Ctl) -> Result<Option<Workflow>, LbError> {
    let install = ctl.store.latest_workflow(INSTALL_KIND)?;
    let remove = ctl.store.latest_workflow(REMOVE_KIND)?;
    // Ids are time-ordered: the greater is the later.
    Ok(match (install, remove) {
        (Some(i), Some(r)) => Some(if i.id > r.id { i } else { r }),
        (i, r) => i.or(r),
    })
}

/// The inputs of the load balancer nginx serves now: the last lb-install's, when it succeeded
/// and no lb-remove came after it.
pub fn installed_inputs(ctl: &Ctl) -> Result<Option<Inputs>, LbError> {
    Ok(last_lb_workflow(ctl)?
        .filter(|w| {
            w.kind == INSTALL_KIND && w.status() == clustermgr_proto::WorkflowStatus::Succeeded
        })
        .map(|w| inputs_of(&w))
        .transpose()?)
}

/// An lb-install's inputs.
fn inputs_of(w: &Workflow) -> Result<Inputs, WorkflowError> {
    Ok(Inputs::decode(&w.inputs)?)
}

/// The definition of an lb workflow, from the settings, its inputs and the servers now.
pub fn definition(
    ctl: &Ctl,
    wf: &Workflow,
) -> Result<Box<dyn Definition + Send + Sync>, WorkflowError> {
    if wf.kind == REMOVE_KIND {
        return Ok(Box::new(LbRemove));
    }
    let s = settings::settings_record(ctl)?;
    let inputs = inputs_of(wf)?;
    let lb = ctl.store.node(&inputs.lb)?;
    let package = if s.offline {
        let format = match lb.as_ref().and_then(|n| n.inventory.as_ref()) {
            Some(i) if !i.package_manager.is_empty() && i.package_manager != "apt" => "rpm",
            _ => "deb",
        };
        let mut found: Vec<_> = ctl
            .store
            .packages()?
            .into_iter()
            .filter(|p| p.name == "nginx" && p.format == format)
            .collect();
        found.sort_by_key(|p| p.added_unix_ms);
        match found.pop() {
            Some(p) => match crate::packages::receive_operation(&p, "").kind {
                Some(operation::Kind::ReceivePackage(receive)) => NginxPackage::Pushed {
                    sha256: p.sha256.clone(),
                    summary: format!("{} {}", p.name, p.version),
                    receive,
                },
                _ => NginxPackage::Missing("the nginx package cannot be pushed".into()),
            },
            None => NginxPackage::Missing(format!(
                "offline: nginx is not on the node and the repository has no nginx .{format} \
                 (clustermgr package add nginx_VERSION.{format})"
            )),
        }
    } else {
        NginxPackage::Online
    };
    let backends = backends(ctl).map_err(|e| WorkflowError::Refused(e.to_string()))?;
    Ok(Box::new(LbInstall {
        inputs,
        server_name: s.lb_hostname.clone(),
        backends,
        package,
        probe_within_ms: PROBE_WITHIN_MS,
        lb_ip: s.lb_ip.clone(),
        drained: drained(ctl)?,
    }))
}

async fn start_install(
    ctl: &Ctl,
    mut inputs: Inputs,
    dry_run: bool,
    audit: &Audit,
) -> Result<StartWorkflowResponse, LbError> {
    inputs.backends = encode_backends(&backends(ctl)?);
    let nodes = [&inputs.primary, &inputs.lb]
        .into_iter()
        .filter_map(|n| Some((n.clone(), lb::steps(INSTALL_KIND, &inputs.primary, n)?)))
        .collect();
    let r = workflows::start_nodes(
        ctl,
        INSTALL_KIND,
        &inputs,
        nodes,
        Vec::new(),
        dry_run,
        audit,
    )
    .await?;
    Ok(r)
}

/// `lb install [NODE] [--oxauth-balancing sticky|round-robin] [--dry-run]`.
pub async fn install(
    ctl: &Ctl,
    req: &InstallLoadBalancerRequest,
    audit: &Audit,
) -> Result<StartWorkflowResponse, LbError> {
    let s = settings::settings_record(ctl)?;
    if s.external_lb {
        return Err(LbError::External);
    }
    if s.lb_hostname.is_empty() {
        return Err(ClusterError::NotConfigured("--lb-hostname").into());
    }
    let lb = lb_node(ctl, &req.node)?;
    let primary = installed_primary(ctl)?;
    let (https_port, http_port) = ports(&s);
    let inputs = Inputs {
        lb: lb.id.clone(),
        primary,
        balancing: match OxauthBalancing::try_from(req.oxauth_balancing) {
            Ok(OxauthBalancing::RoundRobin) => OxauthBalancing::RoundRobin,
            Ok(OxauthBalancing::Sticky) => OxauthBalancing::Sticky,
            // Unspecified: the last install's choice, else sticky.
            _ => match last_lb_workflow(ctl)? {
                Some(w) if w.kind == INSTALL_KIND => inputs_of(&w)?.balancing,
                _ => OxauthBalancing::Sticky,
            },
        },
        https_port,
        http_port,
        backends: String::new(),
    };
    start_install(ctl, inputs, req.dry_run, &audit.on(lb.hostname.clone())).await
}

/// `lb remove [--dry-run]`: on the node of the last install.
pub async fn remove(
    ctl: &Ctl,
    dry_run: bool,
    audit: &Audit,
) -> Result<StartWorkflowResponse, LbError> {
    let lb = match last_lb_workflow(ctl)? {
        Some(w) if w.kind == INSTALL_KIND => inputs_of(&w)?.lb,
        _ => return Err(LbError::NotInstalled),
    };
    let r = workflows::start_nodes(
        ctl,
        REMOVE_KIND,
        &lb::RemoveInputs {},
        vec![(lb, REMOVE_STEPS.to_vec())],
        Vec::new(),
        dry_run,
        audit,
    )
    .await?;
    Ok(r)
}

/// After the cluster's servers changed: when a load balancer is installed (the last lb
/// workflow is an install) and its backends differ from the installed servers now, it is
/// reconfigured with the same choices.
pub async fn after_change(ctl: &Ctl, audit: &Audit) {
    let r: Result<(), LbError> = async {
        let Some(last) = last_lb_workflow(ctl)? else {
            return Ok(());
        };
        if last.kind != INSTALL_KIND {
            return Ok(());
        }
        let now = encode_backends(&backends(ctl)?);
        let mut inputs = inputs_of(&last)?;
        // Done, or under way (its configure step reads the servers when it runs), with these
        // backends already: nothing to do.
        if matches!(
            last.status(),
            WorkflowStatus::Succeeded | WorkflowStatus::Running | WorkflowStatus::Pending
        ) && inputs.backends == now
        {
            return Ok(());
        }
        inputs.primary = installed_primary(ctl)?;
        start_install(ctl, inputs, false, audit).await?;
        Ok(())
    }
    .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "cannot update the load balancer's backends");
    }
}

fn url(s: &ClusterSettingsRecord, https_port: u32) -> String {
    if https_port == 443 || https_port == 0 {
        format!("https://{}/", s.lb_hostname)
    } else {
        format!("https://{}:{https_port}/", s.lb_hostname)
    }
}

/// `lb status`: the last lb workflow, and the lb node asked now.
pub async fn status(ctl: &Arc<Ctl>) -> Result<LoadBalancerStatus, LbError> {
    let s = settings::settings_record(ctl)?;
    let (https_port, _) = ports(&s);
    let mut out = LoadBalancerStatus {
        url: url(&s, https_port),
        ..Default::default()
    };
    if s.external_lb {
        out.state = "external".into();
        return Ok(out);
    }
    let last = last_lb_workflow(ctl)?;
    let node_ref = match &last {
        Some(w) if w.kind == INSTALL_KIND => inputs_of(w)?.lb,
        _ => lb_node(ctl, "").map(|n| n.id).unwrap_or_default(),
    };
    out.state = match &last {
        None => "not-installed",
        Some(w) if w.kind == REMOVE_KIND => {
            if is_terminal(w.status()) {
                "not-installed"
            } else {
                "removing"
            }
        }
        Some(w) => match w.status() {
            WorkflowStatus::Succeeded => "installed",
            WorkflowStatus::Failed | WorkflowStatus::Cancelled => "failed",
            _ => "installing",
        },
    }
    .into();
    if let Some(w) = &last {
        out.workflow_id = w.id.clone();
        if w.kind == INSTALL_KIND {
            let i = inputs_of(w)?;
            out.oxauth_balancing = i.balancing as i32;
            out.url = url(&s, i.https_port);
        }
    }
    if node_ref.is_empty() {
        out.error = LbError::NoLbNode.to_string();
        return Ok(out);
    }
    let Some(node) = ctl.store.node(&node_ref)? else {
        out.error = "the lb node was removed".into();
        return Ok(out);
    };
    out.node_id = node.id.clone();
    out.hostname = node.hostname.clone();
    let spec = JobSpec::new(
        Operation {
            kind: Some(operation::Kind::NginxStatus(NginxStatus {})),
        },
        STATUS_TIMEOUT,
        "controller:lb-status".into(),
    );
    let audit = Audit::new("controller", "lb.status", node.id.clone());
    let finished = match ctl.jobs.run(&node, spec, &audit).await {
        Ok(f) => f,
        Err(e) => {
            out.error = e.to_string();
            return Ok(out);
        }
    };
    match finished.map(|f| (f.job.output.and_then(|o| o.kind), f.job.error)) {
        Some((Some(operation_output::Kind::NginxStatus(n)), _)) => {
            out.healthy = n.running && n.through_lb_ok;
            out.nginx = Some(n);
        }
        Some((_, e)) if !e.is_empty() => out.error = e,
        _ => out.error = "the node gave no status".into(),
    }
    Ok(out)
}

/// `lb config`: what a load balancer in front of the cluster must do (for an external one).
pub fn config(ctl: &Ctl) -> Result<LoadBalancerConfig, LbError> {
    let s = settings::settings_record(ctl)?;
    let (https_port, http_port) = ports(&s);
    let route = |path: &str, sticky: bool, action: &str| LbRoute {
        path: path.into(),
        sticky,
        action: action.into(),
    };
    let mut routes = vec![route("= /", false, "redirect to /identity")];
    for p in STICKY_PATHS {
        routes.push(route(
            p,
            true,
            "proxy to the Gluu servers; sticky sessions (the same client to the same server)",
        ));
    }
    routes.push(route(
        "/oxauth",
        false,
        "proxy to the Gluu servers; stateless (round robin), but sticky when SCIM is used",
    ));
    routes.push(route("/.well-known", false, "proxy to the Gluu servers"));
    Ok(LoadBalancerConfig {
        lb_hostname: s.lb_hostname.clone(),
        external_lb: s.external_lb,
        https_port,
        http_port,
        routes,
        backends: backends(ctl)?,
        // With the health mark, drains take a node out through the path the balancer checks.
        health_check_path: if s.external_lb && s.external_lb_health_wait_secs > 0 {
            clustermgr_workflow::drain::HEALTH_MARK_PATH.into()
        } else {
            HEALTH_PATH.into()
        },
        backend_tls_name: s.lb_hostname.clone(),
    })
}

/// The load balancer's workflow kinds (install and remove): their plans only.
pub fn kind() -> std::sync::Arc<dyn crate::ctl::WorkflowKind> {
    crate::ctl::plan_only(
        &[
            clustermgr_workflow::lb::INSTALL_KIND,
            clustermgr_workflow::lb::REMOVE_KIND,
        ],
        |ctl, wf| Ok(definition(ctl, wf)?),
    )
}

/// The backends (hostnames) a running workflow took out of rotation and has not put back: a
/// reconfiguration of the balancer keeps them out.
pub fn drained(ctl: &Ctl) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for wf in ctl.store.active_workflows()? {
        for id in clustermgr_workflow::drain::drained_nodes(&wf) {
            if let Some(n) = wf.nodes.iter().find(|n| n.node_id == id) {
                out.push(n.hostname.clone());
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}
