//! The Gluu cluster's settings: validated field by field (an error names the field); passwords
//! are sealed before they reach the store and never come back (only "set"/"unset"). The load
//! balancer's hostname is what every node's Gluu is installed with: once a node is installed it
//! can no longer change. Also the components setup installs (Shibboleth needs the LDAP cache;
//! file replication's actions follow them: `fsrep::follow_components`).
//!
//! Low in the layering: domain modules read the settings here; `cluster` (server add/remove,
//! `cluster configure`) is above them.

use crate::ctl::Ctl;
use crate::error::{Classify, Kind};
use crate::nodes::NodeError;
use crate::sealing::{SealError, Sealer};
use crate::store::StoreError;
use clustermgr_proto::{
    ClusterSettings, ClusterSettingsRecord, ConfigureRequest, NodeRecord, ServerRecord, Workflow,
};
use clustermgr_workflow::gluu_install::{self, Components};
use clustermgr_workflow::inputs::KindInputs;

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

pub(crate) fn view(r: &ClusterSettingsRecord, locked: bool) -> ClusterSettings {
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
        components: of(r).names(),
        external_lb_health_wait_secs: r.external_lb_health_wait_secs,
    }
}

/// The hostname of a server on which Gluu is installed, if any.
pub(crate) fn installed_server(ctl: &Ctl) -> Result<Option<String>, ClusterError> {
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
        r.gluu_version = gluu_version(v)?;
    }
    if let Some(h) = &req.lb_hostname {
        r.lb_hostname = lb_hostname(h)?;
    }
    if let Some(ip) = &req.lb_ip {
        r.lb_ip = lb_ip(ip)?;
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
        r.ldap_check_period_ms = ldap_check_period_ms(p)?;
    }
    if let Some(v) = req.manage_hosts {
        r.manage_hosts = v;
    }
    apply_certificate_subject(&mut r, req)?;
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
    apply_gluu_repo(&mut r, req)?;
    if let Some(p) = req.https_port {
        if p > u16::MAX as u32 {
            return Err(invalid("https-port", format!("{p} is not a port")));
        }
        r.https_port = if p == 443 { 0 } else { p };
    }
    Ok(r)
}

fn gluu_version(v: &str) -> Result<String, ClusterError> {
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
    Ok(v.to_string())
}

fn lb_hostname(h: &str) -> Result<String, ClusterError> {
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
    Ok(h)
}

/// An IP address, or empty (none).
fn lb_ip(ip: &str) -> Result<String, ClusterError> {
    let ip = ip.trim();
    if ip.is_empty() {
        return Ok(String::new());
    }
    let a: std::net::IpAddr = ip
        .parse()
        .map_err(|_| invalid("lb-ip", format!("{ip:?} is not an IP address")))?;
    Ok(a.to_string())
}

fn ldap_check_period_ms(p: &str) -> Result<u64, ClusterError> {
    let d = clustermgr_shared::duration::parse_duration(p)
        .map_err(|e| invalid("ldap-check-period", e.to_string()))?;
    if d.as_secs() < 10 || d.as_secs() > 7 * 24 * 3600 {
        return Err(invalid(
            "ldap-check-period",
            "must be between 10 s and 7 days",
        ));
    }
    Ok(d.as_millis() as u64)
}

/// The organization, country, city, state and admin e-mail of Gluu's certificates.
fn apply_certificate_subject(
    r: &mut ClusterSettingsRecord,
    req: &ConfigureRequest,
) -> Result<(), ClusterError> {
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
    Ok(())
}

/// The package repository Gluu is installed from: its URL, suite and signing key.
fn apply_gluu_repo(
    r: &mut ClusterSettingsRecord,
    req: &ConfigureRequest,
) -> Result<(), ClusterError> {
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
    Ok(())
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

/// The components setup installs on every node (Gluu 4.2.3's defaults until configured).
pub fn of(r: &ClusterSettingsRecord) -> Components {
    // Stored only after `Components::parse` accepted them; a record another version wrote
    // that no longer parses falls back to the defaults.
    Components::stored(&r.components).unwrap_or_default()
}

/// What setup installs on a server: what its install ran with (frozen in the workflow's
/// inputs), else what the next install would.
pub fn of_server(ctl: &Ctl, last: Option<&Workflow>) -> Result<Vec<String>, ClusterError> {
    // An install whose inputs cannot be read shows what the next install would.
    match last
        .filter(|w| w.kind == gluu_install::KIND)
        .and_then(|w| gluu_install::Inputs::decode(&w.inputs).ok())
        .and_then(|i| i.components)
    {
        Some(c) => Ok(c.names()),
        None => Ok(of(&settings_record(ctl)?).names()),
    }
}

#[cfg(test)]
mod tests;
