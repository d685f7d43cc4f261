//! The Gluu cluster's settings and servers.
//!
//! Settings: validated field by field (an error names the field); passwords are sealed before
//! they reach the store and never come back (only "set"/"unset"). The load balancer's hostname
//! is what every node's Gluu is installed with: once a node is installed it can no longer change.
//!
//! Servers: enrolled nodes of role gluu-node that belong to the cluster; the first one is the
//! primary. A node of another OS family than the primary's is refused.

use crate::audit::Audit;
use crate::ctl::Ctl;
use crate::error::{Classify, Kind};
use crate::nodes::{self, NodeError};
use crate::sealing::{SealError, Sealer};
use crate::store::StoreError;
use clustermgr_proto::{
    ClusterSettings, ClusterSettingsRecord, ConfigureRequest, NodeRecord, NodeRole, Server,
    ServerRecord, StartedWorkflow, Workflow, WorkflowStatus,
};
use clustermgr_shared::util::now_ms;
use clustermgr_workflow::gluu_install::Components;
use clustermgr_workflow::{is_terminal, status_name};

/// Purposes (associated data) of the sealed settings.
pub const LDAP_ADMIN_PASSWORD: &str = "cluster/ldap-admin-password";
pub const REPLICATION_PASSWORD: &str = "cluster/replication-password";

/// Gluu Server releases this cluster manager installs.
pub const GLUU_VERSIONS: &[&str] = &[
    "4.0", "4.1.0", "4.1.1", "4.2.0", "4.2.1", "4.2.2", "4.2.3", "4.3.0", "4.3.1", "4.4.0",
    "4.4.1", "4.4.2", "4.5.0", "4.5.1", "4.5.2", "4.5.3", "4.5.4", "4.5.5",
];

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{field}: {msg}")]
    Invalid { field: &'static str, msg: String },
    #[error(
        "the load balancer hostname cannot change: Gluu Server is installed on {0} with the current one (its certificates, LDAP entries and configuration carry it); remove the cluster's Gluu installs first"
    )]
    LbLocked(String),
    #[error("the cluster is not configured: {0} (clustermgr cluster configure)")]
    NotConfigured(&'static str),
    #[error("{0} is not a server of the cluster (clustermgr server add)")]
    NotAServer(String),
    #[error("{host} has role {role}; only nodes of role gluu-node can be Gluu servers")]
    WrongRole { host: String, role: &'static str },
    #[error(
        "{host} runs {os:?}, of another family than the primary {primary} ({primary_os:?}): every Gluu node must run the primary's OS"
    )]
    OsMismatch {
        host: String,
        os: String,
        primary: String,
        primary_os: String,
    },
    #[error("{host}: workflow {workflow} ({kind}) is running on it; wait for it or cancel it")]
    Busy {
        host: String,
        workflow: String,
        kind: String,
    },
    #[error(
        "a Redis cache is installed (on {0}): Gluu uses it, not the LDAP cache; run clustermgr cache remove first, then turn the LDAP cache setting on"
    )]
    CacheInstalled(String),
    #[error(
        "a Redis cache is installed (on {0}): Shibboleth (saml) needs the LDAP cache (NATIVE_PERSISTENCE); run clustermgr cache remove first, then add saml to the components"
    )]
    ShibbolethWithRedis(String),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for ClusterError {
    fn kind(&self) -> Kind {
        match self {
            Self::Invalid { .. } => Kind::InvalidArgument,
            Self::LbLocked(_)
            | Self::NotConfigured(_)
            | Self::WrongRole { .. }
            | Self::OsMismatch { .. }
            | Self::Busy { .. }
            | Self::CacheInstalled(_)
            | Self::ShibbolethWithRedis(_) => Kind::FailedPrecondition,
            Self::NotAServer(_) => Kind::NotFound,
            Self::Node(e) => e.kind(),
            Self::Seal(_) | Self::Store(_) => Kind::Internal,
        }
    }
}

fn invalid(field: &'static str, msg: impl Into<String>) -> ClusterError {
    ClusterError::Invalid {
        field,
        msg: msg.into(),
    }
}

pub fn settings_record(ctl: &Ctl) -> Result<ClusterSettingsRecord, ClusterError> {
    Ok(ctl.store.cluster_settings()?.unwrap_or_default())
}

/// The settings as the API shows them: secrets only as set / unset.
pub fn settings(ctl: &Ctl) -> Result<ClusterSettings, ClusterError> {
    let r = settings_record(ctl)?;
    let locked = installed_server(ctl)?.is_some();
    Ok(view(&r, locked))
}

fn view(r: &ClusterSettingsRecord, locked: bool) -> ClusterSettings {
    ClusterSettings {
        gluu_version: r.gluu_version.clone(),
        lb_hostname: r.lb_hostname.clone(),
        lb_ip: r.lb_ip.clone(),
        external_lb: r.external_lb,
        ldap_cache: r.ldap_cache,
        offline: r.offline,
        ldap_check_period_ms: r.ldap_check_period_ms,
        manage_hosts: r.manage_hosts,
        org: r.org.clone(),
        country: r.country.clone(),
        city: r.city.clone(),
        state: r.state.clone(),
        admin_email: r.admin_email.clone(),
        ldap_admin_password_set: !r.ldap_admin_password_sealed.is_empty(),
        replication_password_set: !r.replication_password_sealed.is_empty(),
        https_port: r.https_port,
        lb_hostname_locked: locked,
        gluu_repo_url: r.gluu_repo_url.clone(),
        gluu_repo_suite: r.gluu_repo_suite.clone(),
        gluu_repo_key_set: !r.gluu_repo_key.is_empty(),
        components: crate::components::of(r).names(),
        external_lb_health_wait_secs: r.external_lb_health_wait_secs,
    }
}

/// The hostname of a server on which Gluu is installed, if any.
fn installed_server(ctl: &Ctl) -> Result<Option<String>, ClusterError> {
    for s in ctl.store.servers()? {
        let node = ctl.store.node(&s.node_id)?;
        let on_node = node
            .as_ref()
            .and_then(|n| n.inventory.as_ref())
            .and_then(|i| i.gluu.as_ref())
            .is_some_and(|g| g.installed);
        if s.install_complete || on_node {
            return Ok(Some(
                node.map(|n| n.hostname)
                    .unwrap_or_else(|| s.node_id.clone()),
            ));
        }
    }
    Ok(None)
}

/// A DNS name: labels of 1-63 letters, digits and inner hyphens; 253 characters at most.
fn dns_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn text(field: &'static str, v: &str, max: usize) -> Result<String, ClusterError> {
    let v = v.trim();
    if v.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if v.len() > max {
        return Err(invalid(field, format!("longer than {max} characters")));
    }
    if v.chars().any(|c| c.is_control()) {
        return Err(invalid(field, "contains control characters"));
    }
    Ok(v.to_string())
}

fn password(field: &'static str, v: &[u8]) -> Result<String, ClusterError> {
    let s = std::str::from_utf8(v).map_err(|_| invalid(field, "is not UTF-8 text"))?;
    let s = s.strip_suffix('\n').unwrap_or(s);
    let s = s.strip_suffix('\r').unwrap_or(s);
    if s.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if s.len() < 6 {
        return Err(invalid(field, "must be at least 6 characters"));
    }
    if s.len() > 256 {
        return Err(invalid(field, "longer than 256 characters"));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(invalid(
            field,
            "contains control characters (a password file holds one line)",
        ));
    }
    Ok(s.to_string())
}

fn email(v: &str) -> Result<String, ClusterError> {
    let v = text("admin-email", v, 254)?;
    let ok = match v.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !local.contains(char::is_whitespace)
                && dns_name(&domain.to_ascii_lowercase())
                && domain.contains('.')
        }
        None => false,
    };
    if !ok {
        return Err(invalid(
            "admin-email",
            format!("{v:?} is not an e-mail address"),
        ));
    }
    Ok(v)
}

/// Applies a configure request to a settings record (pure; the caller stores it).
pub fn apply(
    mut r: ClusterSettingsRecord,
    req: &ConfigureRequest,
    sealer: &Sealer,
) -> Result<ClusterSettingsRecord, ClusterError> {
    if let Some(v) = &req.gluu_version {
        let v = v.trim();
        if !GLUU_VERSIONS.contains(&v) {
            return Err(invalid(
                "gluu-version",
                format!(
                    "{v:?} is not a Gluu Server 4.x release this cluster manager installs ({})",
                    GLUU_VERSIONS.join(", ")
                ),
            ));
        }
        r.gluu_version = v.to_string();
    }
    if let Some(h) = &req.lb_hostname {
        let h = h.trim().to_ascii_lowercase();
        if h.parse::<std::net::IpAddr>().is_ok() {
            return Err(invalid(
                "lb-hostname",
                "must be a hostname, not an address (Gluu is installed with it)",
            ));
        }
        if !dns_name(&h) {
            return Err(invalid(
                "lb-hostname",
                format!(
                    "{h:?} is not a valid DNS name (letters, digits and inner hyphens, dot-separated)"
                ),
            ));
        }
        if !h.contains('.') {
            return Err(invalid(
                "lb-hostname",
                format!("{h:?} is not a fully qualified name (e.g. idp.example.org)"),
            ));
        }
        r.lb_hostname = h;
    }
    if let Some(ip) = &req.lb_ip {
        let ip = ip.trim();
        if ip.is_empty() {
            r.lb_ip.clear();
        } else {
            let a: std::net::IpAddr = ip
                .parse()
                .map_err(|_| invalid("lb-ip", format!("{ip:?} is not an IP address")))?;
            r.lb_ip = a.to_string();
        }
    }
    if let Some(v) = req.external_lb {
        r.external_lb = v;
    }
    if let Some(v) = req.external_lb_health_wait_secs {
        if v > 3600 {
            return Err(invalid(
                "external-lb-health-wait",
                format!("{v} s is more than an hour"),
            ));
        }
        r.external_lb_health_wait_secs = v;
    }
    if let Some(v) = req.ldap_cache {
        r.ldap_cache = v;
    }
    if let Some(v) = req.offline {
        r.offline = v;
    }
    if let Some(p) = &req.ldap_check_period {
        let d = clustermgr_shared::duration::parse_duration(p)
            .map_err(|e| invalid("ldap-check-period", e.to_string()))?;
        if d.as_secs() < 10 || d.as_secs() > 7 * 24 * 3600 {
            return Err(invalid(
                "ldap-check-period",
                "must be between 10 s and 7 days",
            ));
        }
        r.ldap_check_period_ms = d.as_millis() as u64;
    }
    if let Some(v) = req.manage_hosts {
        r.manage_hosts = v;
    }
    if let Some(v) = &req.org {
        r.org = text("org", v, 128)?;
    }
    if let Some(v) = &req.country {
        let c = v.trim().to_ascii_uppercase();
        if c.len() != 2 || !c.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(invalid(
                "country",
                format!("{v:?} is not a two-letter country code (e.g. US)"),
            ));
        }
        r.country = c;
    }
    if let Some(v) = &req.city {
        r.city = text("city", v, 128)?;
    }
    if let Some(v) = &req.state {
        r.state = text("state", v, 128)?;
    }
    if let Some(v) = &req.admin_email {
        r.admin_email = email(v)?;
    }
    if let Some(v) = &req.components {
        let c = Components::parse(v).map_err(|e| invalid("components", e.to_string()))?;
        r.components = c.names();
    }
    if let Some(p) = &req.ldap_admin_password {
        let p = password("ldap-admin-password", p)?;
        r.ldap_admin_password_sealed = sealer.seal(LDAP_ADMIN_PASSWORD, p.as_bytes())?;
    }
    if let Some(p) = &req.replication_password {
        let p = password("replication-password", p)?;
        r.replication_password_sealed = sealer.seal(REPLICATION_PASSWORD, p.as_bytes())?;
    }
    if let Some(u) = &req.gluu_repo_url {
        let u = u.trim();
        if !u.is_empty() && (!u.starts_with("https://") || u.contains(char::is_whitespace)) {
            return Err(invalid(
                "gluu-repo-url",
                format!(
                    "{u:?} is not an https:// URL (packages are never fetched over plain HTTP)"
                ),
            ));
        }
        r.gluu_repo_url = u.to_string();
    }
    if let Some(v) = &req.gluu_repo_suite {
        let v = v.trim();
        if !v.is_empty()
            && !v
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid(
                "gluu-repo-suite",
                format!("{v:?} is not a suite name"),
            ));
        }
        r.gluu_repo_suite = v.to_string();
    }
    if let Some(k) = &req.gluu_repo_key {
        if !k.trim().is_empty() && !k.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") {
            return Err(invalid(
                "gluu-repo-key-file",
                "is not an ASCII-armored OpenPGP public key",
            ));
        }
        r.gluu_repo_key = k.trim().to_string();
    }
    if let Some(p) = req.https_port {
        if p > u16::MAX as u32 {
            return Err(invalid("https-port", format!("{p} is not a port")));
        }
        r.https_port = if p == 443 { 0 } else { p };
    }
    Ok(r)
}

pub async fn configure(
    ctl: &Ctl,
    fsrep: &crate::fsrep::Fsrep,
    req: ConfigureRequest,
    audit: &Audit,
) -> Result<ClusterSettings, ClusterError> {
    let old = settings_record(ctl)?;
    let mut new = apply(old.clone(), &req, &ctl.sealer)?;
    if new.ldap_cache && !old.ldap_cache {
        crate::cache::refuse_ldap_cache(ctl)?;
    }
    crate::components::check_change(ctl, &old, &new)?;
    new.updated_unix_ms = now_ms();
    // What changed, by field name (never a secret's value).
    let mut changed = Vec::new();
    let fields: [(&str, bool); 21] = [
        ("gluu_version", old.gluu_version != new.gluu_version),
        ("lb_hostname", old.lb_hostname != new.lb_hostname),
        ("lb_ip", old.lb_ip != new.lb_ip),
        ("external_lb", old.external_lb != new.external_lb),
        (
            "external_lb_health_wait",
            old.external_lb_health_wait_secs != new.external_lb_health_wait_secs,
        ),
        ("ldap_cache", old.ldap_cache != new.ldap_cache),
        ("offline", old.offline != new.offline),
        (
            "ldap_check_period",
            old.ldap_check_period_ms != new.ldap_check_period_ms,
        ),
        ("manage_hosts", old.manage_hosts != new.manage_hosts),
        ("org", old.org != new.org),
        ("country", old.country != new.country),
        ("city", old.city != new.city),
        ("state", old.state != new.state),
        ("admin_email", old.admin_email != new.admin_email),
        ("ldap_admin_password", req.ldap_admin_password.is_some()),
        ("replication_password", req.replication_password.is_some()),
        ("https_port", old.https_port != new.https_port),
        ("gluu_repo_url", old.gluu_repo_url != new.gluu_repo_url),
        (
            "gluu_repo_suite",
            old.gluu_repo_suite != new.gluu_repo_suite,
        ),
        ("gluu_repo_key", old.gluu_repo_key != new.gluu_repo_key),
        (
            "components",
            crate::components::of(&old) != crate::components::of(&new),
        ),
    ];
    for (name, c) in fields {
        if c {
            changed.push(name);
        }
    }
    let locked_host = installed_server(ctl)?;
    let row = audit.ok(format!("changed: {}", changed.join(",")));
    let lb = new.lb_hostname.clone();
    let refused = ctl
        .store
        .put_cluster_settings(
            new.clone(),
            move |stored, _servers| {
                let before = stored.map(|s| s.lb_hostname.as_str()).unwrap_or("");
                match &locked_host {
                    Some(host) if !before.is_empty() && before != lb => {
                        Err(ClusterError::LbLocked(host.clone()))
                    }
                    _ => Ok(()),
                }
            },
            row,
        )
        .await?;
    refused?;
    if req.components.is_some() {
        crate::fsrep::follow_components(ctl, fsrep, &crate::components::of(&new), audit).await;
    }
    let locked = installed_server(ctl)?.is_some();
    Ok(view(&new, locked))
}

/// The LDAP admin password, opened (for a workflow's jobs only).
pub fn ldap_admin_password(ctl: &Ctl, r: &ClusterSettingsRecord) -> Result<String, ClusterError> {
    if r.ldap_admin_password_sealed.is_empty() {
        return Err(ClusterError::NotConfigured(
            "no LDAP admin password (--ldap-admin-password-file)",
        ));
    }
    let p = ctl
        .sealer
        .open(LDAP_ADMIN_PASSWORD, &r.ldap_admin_password_sealed)?;
    Ok(String::from_utf8_lossy(&p).into_owned())
}

// ----- servers -----

fn family(node: &NodeRecord) -> Option<&'static str> {
    let os = node.inventory.as_ref()?.os_id.as_str();
    match os {
        "debian" | "ubuntu" => Some("deb"),
        "rhel" | "centos" | "rocky" | "almalinux" | "ol" | "fedora" => Some("rpm"),
        _ => None,
    }
}

fn os_of(node: &NodeRecord) -> String {
    node.inventory
        .as_ref()
        .map(|i| {
            if i.os_pretty_name.is_empty() {
                format!("{} {}", i.os_id, i.os_version)
            } else {
                i.os_pretty_name.clone()
            }
        })
        .unwrap_or_default()
}

/// The installed Gluu servers with whether each is the primary: the primary first, then by
/// hostname.
pub fn installed_gluu_nodes(ctl: &Ctl) -> Result<Vec<(NodeRecord, bool)>, StoreError> {
    let mut out = Vec::new();
    for srv in ctl.store.servers()? {
        if !srv.install_complete {
            continue;
        }
        if let Some(n) = ctl.store.node(&srv.node_id)? {
            out.push((n, srv.primary));
        }
    }
    out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.hostname.cmp(&b.0.hostname)));
    Ok(out)
}

/// The server records of `nodes`, pointed at workflow `id` (written with the workflow).
pub fn servers_pointing_at(
    ctl: &Ctl,
    nodes: &[(NodeRecord, bool)],
    id: &str,
) -> Result<Vec<ServerRecord>, StoreError> {
    let mut servers = Vec::new();
    for (n, _) in nodes {
        if let Some(mut srv) = ctl.store.server(&n.id)? {
            srv.last_workflow_id = id.to_string();
            servers.push(srv);
        }
    }
    Ok(servers)
}

/// A running workflow that has steps on `node_id`.
pub fn running_workflow_on(ctl: &Ctl, node_id: &str) -> Result<Option<Workflow>, ClusterError> {
    Ok(ctl.store.active_workflows()?.into_iter().rev().find(|w| {
        // A hosts update is a quick idempotent file edit: it never holds others up.
        w.kind != clustermgr_workflow::hosts::KIND
            && !is_terminal(w.status())
            && w.nodes.iter().any(|n| n.node_id == node_id)
    }))
}

pub fn server_view(ctl: &Ctl, s: &ServerRecord) -> Result<Server, ClusterError> {
    let node = ctl.store.node(&s.node_id)?;
    let gluu = node
        .as_ref()
        .and_then(|n| n.inventory.as_ref())
        .and_then(|i| i.gluu.as_ref());
    let (hostname, status, address, os, gluu_version, components, installed) = match &node {
        Some(n) => {
            let inv = n.inventory.as_ref();
            let g = inv.and_then(|i| i.gluu.as_ref());
            (
                n.hostname.clone(),
                nodes::status_of(n.approved, ctl.registry.get(&n.id).is_some())
                    .as_str()
                    .to_string(),
                inv.and_then(|i| i.addresses.first().cloned())
                    .unwrap_or_default(),
                os_of(n),
                g.map(|g| g.version.clone()).unwrap_or_default(),
                g.map(|g| g.components.clone()).unwrap_or_default(),
                g.is_some_and(|g| g.installed),
            )
        }
        None => (
            s.node_id.clone(),
            "removed".into(),
            String::new(),
            String::new(),
            String::new(),
            Vec::new(),
            false,
        ),
    };
    let last = if s.last_workflow_id.is_empty() {
        None
    } else {
        ctl.store.workflow(&s.last_workflow_id)?
    };
    let node_failed = last.as_ref().is_some_and(|w| {
        w.nodes.iter().any(|n| {
            n.node_id == s.node_id
                && n.steps
                    .iter()
                    .any(|st| st.status() == clustermgr_proto::StepStatus::Failed)
        })
    });
    let running = last.as_ref().is_some_and(|w| !is_terminal(w.status()));
    let configured_components = crate::components::of_server(ctl, last.as_ref())?;
    let install_state = if running && !(installed && s.install_complete) {
        "installing"
    } else if installed || s.install_complete {
        "installed"
    } else if node_failed {
        "failed"
    } else {
        "not-installed"
    };
    Ok(Server {
        node_id: s.node_id.clone(),
        hostname,
        primary: s.primary,
        status,
        address,
        os,
        gluu_version,
        components,
        install_state: install_state.into(),
        last_workflow_id: s.last_workflow_id.clone(),
        last_workflow_status: last
            .map(|w| status_name(w.status()).to_string())
            .unwrap_or_default(),
        added_unix_ms: s.added_unix_ms,
        replication: if s.replicated {
            if s.replication_state.is_empty() {
                "replicating".into()
            } else {
                s.replication_state.clone()
            }
        } else {
            "not-replicated".into()
        },
        replication_checked_unix_ms: s.replication_checked_unix_ms,
        removal_workflow_id: String::new(),
        gluu_flavor: gluu.map_or(0, |g| g.flavor),
        machine_state: gluu.map_or(0, |g| g.machine_state),
        configured_components,
        started_workflows: Vec::new(),
    })
}

/// Every server, the primary first, then by hostname.
pub fn list_servers(ctl: &Ctl) -> Result<Vec<Server>, ClusterError> {
    let mut out = ctl
        .store
        .servers()?
        .iter()
        .map(|s| server_view(ctl, s))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by(|a, b| b.primary.cmp(&a.primary).then(a.hostname.cmp(&b.hostname)));
    Ok(out)
}

pub async fn add_server(
    ctl: &Ctl,
    r: &str,
    primary: bool,
    audit: &Audit,
) -> Result<Server, ClusterError> {
    let node = nodes::find(ctl, r)?;
    if node.role() != NodeRole::GluuNode {
        return Err(ClusterError::WrongRole {
            host: node.hostname.clone(),
            role: node.role().label(),
        });
    }
    let by = audit.who.clone();
    let row = audit
        .on(node.id.clone())
        .ok(format!("hostname={} primary={primary}", node.hostname));
    let nodes_now = ctl.store.nodes()?;
    let me = node.clone();
    let out = ctl
        .store
        .change_servers(
            move |servers| {
                let becomes_primary = primary || servers.iter().all(|s| !s.primary);
                // The OS family must match the primary's (the new primary's: the others').
                let others: Vec<&NodeRecord> = servers
                    .iter()
                    .filter(|s| s.node_id != me.id && (s.primary || becomes_primary))
                    .filter_map(|s| nodes_now.iter().find(|n| n.id == s.node_id))
                    .collect();
                for other in others {
                    if let (Some(a), Some(b)) = (family(&me), family(other))
                        && a != b
                    {
                        return Err(ClusterError::OsMismatch {
                            host: me.hostname.clone(),
                            os: os_of(&me),
                            primary: other.hostname.clone(),
                            primary_os: os_of(other),
                        });
                    }
                }
                let mut write = Vec::new();
                if becomes_primary {
                    for s in &servers {
                        if s.primary && s.node_id != me.id {
                            let mut s = s.clone();
                            s.primary = false;
                            write.push(s);
                        }
                    }
                }
                let mut rec = servers
                    .iter()
                    .find(|s| s.node_id == me.id)
                    .cloned()
                    .unwrap_or_else(|| ServerRecord {
                        node_id: me.id.clone(),
                        added_unix_ms: now_ms(),
                        added_by: by.clone(),
                        ..Default::default()
                    });
                rec.primary = rec.primary || becomes_primary;
                write.push(rec.clone());
                Ok((write, Vec::new(), rec))
            },
            Some(row),
        )
        .await??;
    // The follow-ups, each queued behind what holds its nodes; the answer lists them.
    let mut started = Vec::new();
    started.extend(
        crate::hosts::after_change(ctl, &Audit::new(&audit.who, "hosts.apply", "server.add")).await,
    );
    started.extend(
        crate::cache::after_server_add(
            ctl,
            &out.node_id,
            &Audit::new(&audit.who, "cache.install", "server.add"),
        )
        .await,
    );
    let lb_before = ctl
        .store
        .latest_workflow(clustermgr_workflow::lb::INSTALL_KIND)?;
    crate::lb::after_change(ctl, &Audit::new(&audit.who, "lb.update", "server.add")).await;
    let lb_after = ctl
        .store
        .latest_workflow(clustermgr_workflow::lb::INSTALL_KIND)?;
    if let Some(w) = lb_after.filter(|a| lb_before.as_ref().is_none_or(|b| b.id != a.id)) {
        started.push(w);
    }
    let mut view = server_view(ctl, &out)?;
    view.started_workflows = started
        .into_iter()
        .map(|w| StartedWorkflow {
            status: w.status,
            id: w.id,
            kind: w.kind,
            queued_behind: w.queued_behind,
        })
        .collect();
    Ok(view)
}

fn find_server(ctl: &Ctl, r: &str) -> Result<(NodeRecord, ServerRecord), ClusterError> {
    let node = nodes::find(ctl, r)?;
    let s = ctl
        .store
        .server(&node.id)?
        .ok_or_else(|| ClusterError::NotAServer(node.hostname.clone()))?;
    Ok((node, s))
}

pub async fn make_primary(ctl: &Ctl, r: &str, audit: &Audit) -> Result<Server, ClusterError> {
    let (node, _) = find_server(ctl, r)?;
    if let Some(w) = running_workflow_on(ctl, &node.id)? {
        return Err(ClusterError::Busy {
            host: node.hostname,
            workflow: w.id,
            kind: w.kind,
        });
    }
    let id = node.id.clone();
    let row = audit
        .on(node.id.clone())
        .ok(format!("hostname={}", node.hostname));
    let rec = ctl
        .store
        .change_servers(
            move |servers| {
                let mut write = Vec::new();
                let mut mine = None;
                for s in servers {
                    let mut s = s.clone();
                    let want = s.node_id == id;
                    if s.primary != want {
                        s.primary = want;
                        write.push(s.clone());
                    }
                    if want {
                        mine = Some(s);
                    }
                }
                match mine {
                    Some(m) => Ok((write, Vec::new(), m)),
                    None => Err(ClusterError::NotAServer(id.clone())),
                }
            },
            Some(row),
        )
        .await??;
    server_view(ctl, &rec)
}

pub async fn remove_server(ctl: &Ctl, r: &str, audit: &Audit) -> Result<Server, ClusterError> {
    let (node, rec) = find_server(ctl, r)?;
    if let Some(w) = running_workflow_on(ctl, &node.id)? {
        return Err(ClusterError::Busy {
            host: node.hostname,
            workflow: w.id,
            kind: w.kind,
        });
    }
    let view = server_view(ctl, &rec)?;
    let id = node.id.clone();
    let row = audit
        .on(node.id.clone())
        .ok(format!("hostname={}", node.hostname));
    ctl.store
        .change_servers(
            move |_| Ok::<_, ClusterError>((Vec::new(), vec![id.clone()], ())),
            Some(row),
        )
        .await??;
    crate::cache::after_server_remove(
        ctl,
        &node.id,
        &Audit::new(&audit.who, "cache.detach", "server.remove"),
    )
    .await;
    crate::hosts::after_change(ctl, &Audit::new(&audit.who, "hosts.apply", "server.remove")).await;
    crate::lb::after_change(ctl, &Audit::new(&audit.who, "lb.update", "server.remove")).await;
    Ok(view)
}

/// The status of a workflow for the server list.
pub fn workflow_status(w: &Workflow) -> WorkflowStatus {
    w.status()
}

#[cfg(test)]
mod tests;
