//! The cluster's cache: Redis on the nodes of role `cache`, behind stunnel, with a stunnel
//! client on every Gluu server (the planning is `clustermgr_workflow::cache`).
//!
//! - The record of the cache the cluster should have (`CacheRecord`: the Redis hosts, the Gluu
//!   nodes with a client, the sealed password) is written when a workflow starts; `cache
//!   status` asks the nodes what is true.
//! - The Redis password is random (20 characters) unless an operator gives one from a file; it
//!   is sealed at rest, reaches the nodes only inside the operations that need it, and never
//!   appears in a job record, a summary, the audit log or `cache status`.
//! - **The cache CA** (`DATA_DIR/cache-ca.{crt,key}`, made once) signs the stunnel
//!   certificates, and only them: stunnel trusts it alone, so an agent's identity certificate
//!   (cluster CA) opens no tunnel. A node gets a certificate only for a CSR it sends while its
//!   own configure-stunnel job runs (`issue_certificate`); the key stays on the node.
//! - `cache install` adds cache hosts to those installed (a second one puts twemproxy in front
//!   on every Gluu node); `server add` gives the new server its client (`after_server_add`),
//!   `server remove` takes it away (`after_server_remove`: a `cache-detach` workflow, also
//!   after a replicated server has left replication).
//! - Turning the LDAP cache setting on is refused while a cache is installed
//!   (`refuse_ldap_cache`).
//! - Offline, the cache's packages come from the controller's repository (`packages`); a node
//!   that has the programs already installs nothing.

use crate::audit::Audit;
use crate::ctl::Ctl;
use crate::error::{Classify, Kind};
use crate::nodes::{self, NodeError};
use crate::settings;
use crate::settings::ClusterError;
use crate::store::StoreError;
use crate::workflows::{self, WhenBusy, WorkflowError};
use clustermgr_proto::{
    CacheNodeState, CacheRecord, CacheStatus, CacheStatusReport, IssueCacheCertificateResponse,
    NodeRecord, NodeRole, Operation, StartWorkflowResponse, Workflow, operation, operation_output,
};
use clustermgr_shared::Secret;
use clustermgr_shared::pki::{self, Ca, PkiError, Usage};
use clustermgr_shared::util::now_ms;
use clustermgr_workflow::cache::{
    Action, Cache, Inputs, NUTCRACKER_PORT, Packages, PasswordChange, PushedPackage, REDIS_PORT,
};
use clustermgr_workflow::gluu_install::Component;
use clustermgr_workflow::inputs::KindInputs;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

mod servers;
pub use servers::{after_server_add, after_server_remove};
mod password;
pub use password::{NewPassword, set_password};
mod certs;
pub use certs::issue_certificate;
mod status;
pub use status::{health_probes, status};
mod admission;
mod kind;
pub use admission::take_nodes;
pub use kind::CacheKind;

/// Purpose (associated data) of the sealed Redis password.
pub const REDIS_PASSWORD: &str = "cache/redis-password";
const CA_CERT: &str = "cache-ca.crt";
const CA_KEY: &str = "cache-ca.key";
const CA_TTL: Duration = Duration::from_secs(20 * 365 * 86_400);
const CERT_TTL: Duration = Duration::from_secs(2 * 365 * 86_400);
const PASSWORD_LEN: usize = 20;
const PROBE_WITHIN_MS: u32 = 10 * 60_000;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{0}")]
    Refused(String),
    #[error("{host} has role {role}; the cache runs on nodes of role cache")]
    WrongRole { host: String, role: &'static str },
    #[error("no cache is installed (clustermgr cache install NODE)")]
    NotInstalled,
    #[error("job {0:?} is not a running stunnel configuration of this node")]
    NotYourJob(String),
    #[error("invalid password: {0}")]
    BadPassword(&'static str),
    #[error("the cache CA in {path}: {msg}")]
    CaFile { path: String, msg: String },
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Seal(#[from] crate::sealing::SealError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for CacheError {
    fn kind(&self) -> Kind {
        match self {
            Self::Refused(_) | Self::WrongRole { .. } | Self::NotInstalled => {
                Kind::FailedPrecondition
            }
            Self::NotYourJob(_) => Kind::PermissionDenied,
            Self::BadPassword(_) => Kind::InvalidArgument,
            Self::Pki(PkiError::BadCsr(_)) => Kind::InvalidArgument,
            Self::Workflow(e) => e.kind(),
            Self::Cluster(e) => e.kind(),
            Self::Node(e) => e.kind(),
            Self::Pki(_) | Self::CaFile { .. } | Self::Seal(_) | Self::Store(_) => Kind::Internal,
        }
    }
}

/// Loads the cache CA from the data directory, or makes it (once).
pub fn load_or_create_ca(data_root: &Path) -> Result<Ca, CacheError> {
    let cert = data_root.join(CA_CERT);
    let key = data_root.join(CA_KEY);
    let err = |p: &Path, e: &dyn std::fmt::Display| CacheError::CaFile {
        path: p.display().to_string(),
        msg: e.to_string(),
    };
    if cert.exists() {
        let c = std::fs::read_to_string(&cert).map_err(|e| err(&cert, &e))?;
        let k = std::fs::read_to_string(&key).map_err(|e| err(&key, &e))?;
        return Ok(Ca::load(&c, &Secret::new(k))?);
    }
    let ca = Ca::generate("clustermgr cache CA", CA_TTL)?;
    clustermgr_shared::fsutil::write_private(&key, ca.key_pem().expose().as_bytes())
        .map_err(|e| err(&key, &e))?;
    clustermgr_shared::fsutil::write_atomic(&cert, ca.cert_pem().as_bytes(), 0o644)
        .map_err(|e| err(&cert, &e))?;
    Ok(ca)
}

fn record(ctl: &Ctl) -> Result<CacheRecord, CacheError> {
    Ok(ctl.store.cache_record()?.unwrap_or_default())
}

/// The cache's record, which must say it is installed.
fn installed_record(ctl: &Ctl) -> Result<CacheRecord, CacheError> {
    let rec = record(ctl)?;
    if !rec.installed {
        return Err(CacheError::NotInstalled);
    }
    Ok(rec)
}

fn password_of(ctl: &Ctl, rec: &CacheRecord) -> Result<String, CacheError> {
    if rec.password_sealed.is_empty() {
        return Ok(String::new());
    }
    let p = ctl.sealer.open(REDIS_PASSWORD, &rec.password_sealed)?;
    String::from_utf8(p).map_err(|_| CacheError::BadPassword("not UTF-8"))
}

/// The record's Gluu nodes that are still servers of the cluster (a removed server leaves the
/// record when its `cache-detach` workflow starts).
fn current_clients(ctl: &Ctl, rec: &CacheRecord) -> Result<Vec<String>, CacheError> {
    let mut out = Vec::new();
    for c in &rec.client_node_ids {
        if ctl.store.server(c)?.is_some() {
            out.push(c.clone());
        }
    }
    Ok(out)
}

/// `cluster configure --ldap-cache` while a Redis cache is installed: refused (Gluu would keep
/// using Redis while the settings say otherwise); `cache remove` comes first.
pub fn refuse_ldap_cache(ctl: &Ctl) -> Result<(), ClusterError> {
    match redis_hosts(ctl)? {
        Some(hosts) => Err(ClusterError::CacheInstalled(hosts)),
        None => Ok(()),
    }
}

/// The hosts of the installed Redis cache, if one is.
fn redis_hosts(ctl: &Ctl) -> Result<Option<String>, ClusterError> {
    let rec = ctl.store.cache_record()?.unwrap_or_default();
    if !rec.installed {
        return Ok(None);
    }
    let hosts: Vec<String> = rec
        .server_node_ids
        .iter()
        .map(|id| match ctl.store.node(id) {
            Ok(Some(n)) => n.hostname,
            _ => id.clone(),
        })
        .collect();
    Ok(Some(hosts.join(", ")))
}

fn random_password() -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(PASSWORD_LEN)
        .map(char::from)
        .collect()
}

/// A password an operator gave: UTF-8, 8 to 512 bytes, no control characters (the trailing
/// newline of a file is dropped by the CLI).
pub fn check_password(p: &[u8]) -> Result<String, CacheError> {
    let s = String::from_utf8(p.to_vec()).map_err(|_| CacheError::BadPassword("not UTF-8"))?;
    if s.len() < 8 || s.len() > 512 {
        return Err(CacheError::BadPassword("it must be 8 to 512 bytes"));
    }
    if s.chars().any(char::is_control) {
        return Err(CacheError::BadPassword("control characters"));
    }
    Ok(s)
}

/// Offline mode: the cache's packages the controller's repository holds (the one added last
/// of each name); online: the nodes' own repositories.
fn packages(ctl: &Ctl, offline: bool) -> Result<Packages, WorkflowError> {
    if !offline {
        return Ok(Packages::Online);
    }
    let mut found: BTreeMap<String, clustermgr_proto::PackageRecord> = BTreeMap::new();
    for p in ctl.store.packages()? {
        if clustermgr_workflow::cache::PACKAGE_NAMES.contains(&p.name.as_str())
            && found
                .get(&p.name)
                .is_none_or(|q| q.added_unix_ms < p.added_unix_ms)
        {
            found.insert(p.name.clone(), p);
        }
    }
    let mut out = BTreeMap::new();
    for (name, rec) in found {
        if let Some(operation::Kind::ReceivePackage(receive)) =
            crate::packages::receive_operation(&rec, "").kind
        {
            out.insert(
                name,
                PushedPackage {
                    sha256: rec.sha256.clone(),
                    summary: receive.display_name.clone(),
                    receive,
                },
            );
        }
    }
    Ok(Packages::Pushed(out))
}

/// The definition of a cache workflow from its inputs and the record and settings now.
pub fn definition(ctl: &Ctl, wf: &Workflow) -> Result<Cache, WorkflowError> {
    let action = Action::from_kind(&wf.kind)
        .ok_or_else(|| WorkflowError::Refused(format!("{:?} is not a cache workflow", wf.kind)))?;
    let inputs = Inputs::decode(&wf.inputs)?;
    let rec = ctl.store.cache_record()?.unwrap_or_default();
    let password = password_of(ctl, &rec).map_err(|e| WorkflowError::Refused(e.to_string()))?;
    let s = settings::settings_record(ctl)?;
    Ok(Cache {
        action,
        servers: inputs.servers,
        clients: inputs.clients,
        password,
        admin_password: settings::ldap_admin_password(ctl, &s)?,
        https_port: (s.https_port != 0).then_some(s.https_port as u16),
        primary: inputs.primary,
        probe_within_ms: PROBE_WITHIN_MS,
        packages: packages(ctl, s.offline)?,
        balancer: crate::drain::balancer(ctl)?,
    })
}

/// The Gluu servers in rolling order (the primary first), and the primary's id.
fn gluu_servers(ctl: &Ctl) -> Result<(Vec<String>, String), CacheError> {
    let mut servers = ctl.store.servers()?;
    servers.sort_by_key(|s| (!s.primary, s.added_unix_ms));
    let primary = servers
        .iter()
        .find(|s| s.primary)
        .map(|s| s.node_id.clone())
        .unwrap_or_default();
    Ok((servers.into_iter().map(|s| s.node_id).collect(), primary))
}

/// Why Shibboleth is (or will be) in the cluster: among the configured components, or found
/// on a node (a server installed by hand and adopted).
fn uses_shibboleth(ctl: &Ctl, ids: &[String]) -> Result<Option<String>, CacheError> {
    if crate::settings::of(&settings::settings_record(ctl)?).contains(Component::Saml) {
        return Ok(Some(
            "Shibboleth (saml) is one of the cluster's components".into(),
        ));
    }
    for id in ids {
        if let Some(n) = ctl.store.node(id)?
            && n.inventory
                .as_ref()
                .and_then(|i| i.gluu.as_ref())
                .is_some_and(|g| {
                    g.components
                        .iter()
                        .any(|c| c.to_ascii_lowercase().contains("shibboleth"))
                })
        {
            return Ok(Some(format!("Shibboleth is installed on {}", n.hostname)));
        }
    }
    Ok(None)
}

/// `cluster configure --components` with saml: refused while a Redis cache is installed
/// (Shibboleth needs the LDAP cache).
pub fn refuse_shibboleth(ctl: &Ctl) -> Result<(), ClusterError> {
    match redis_hosts(ctl)? {
        Some(hosts) => Err(ClusterError::ShibbolethWithRedis(hosts)),
        None => Ok(()),
    }
}

/// A cache workflow to start; `kept`: the new password (plain, sealed with the workflow).
struct Start<'a> {
    action: Action,
    servers: &'a [String],
    clients: &'a [String],
    primary: &'a str,
    with_servers: bool,
    password: Option<PasswordChange>,
    kept: Vec<(String, Vec<u8>)>,
}

impl<'a> Start<'a> {
    /// One with no extra input and nothing kept.
    fn plain(
        action: Action,
        servers: &'a [String],
        clients: &'a [String],
        primary: &'a str,
        with_servers: bool,
    ) -> Self {
        Self {
            action,
            servers,
            clients,
            primary,
            with_servers,
            password: None,
            kept: Vec::new(),
        }
    }
}

/// Starts (or queues, or with `dry_run` plans) a cache workflow. The record changes when it
/// starts ([`on_admit`]): a queued one must not change what the running one uses.
async fn start(
    ctl: &Ctl,
    st: Start<'_>,
    dry_run: bool,
    when_busy: WhenBusy,
    audit: &Audit,
) -> Result<StartWorkflowResponse, CacheError> {
    let inputs = Inputs {
        servers: st.servers.to_vec(),
        clients: st.clients.to_vec(),
        primary: st.primary.to_string(),
        password: st.password,
    };
    let mut nodes = Vec::new();
    if st.with_servers {
        for s in st.servers {
            nodes.push((s.clone(), st.action.steps(true)));
        }
    }
    for c in st.clients {
        nodes.push((c.clone(), st.action.steps(false)));
    }
    let new = workflows::New {
        kind: st.action.kind(),
        inputs: inputs.encode(),
        nodes,
        servers: Vec::new(),
        kept: st.kept,
    };
    Ok(workflows::start_nodes_when(ctl, new, dry_run, when_busy, audit).await?)
}

/// The kept value holding a new password (`cache password set`) until the workflow starts.
const NEW_PASSWORD: &str = "new-password";
/// When a cache workflow starts (at once, or when the driver takes it from the queue): the
/// record of the cache the cluster should have changes.
pub async fn on_admit(ctl: &Ctl, wf: &Workflow) -> Result<(), CacheError> {
    let Some(action) = Action::from_kind(&wf.kind) else {
        return Ok(());
    };
    let inputs = Inputs::decode(&wf.inputs).map_err(WorkflowError::from)?;
    let mut rec = record(ctl)?;
    match action {
        Action::Install => {
            for s in inputs.servers {
                if !rec.server_node_ids.contains(&s) {
                    rec.server_node_ids.push(s);
                }
            }
            for c in inputs.clients {
                if !rec.client_node_ids.contains(&c) {
                    rec.client_node_ids.push(c);
                }
            }
            if rec.password_sealed.is_empty() && !rec.installed {
                rec.password_sealed = ctl
                    .sealer
                    .seal(REDIS_PASSWORD, random_password().as_bytes())?;
            }
            rec.installed = true;
        }
        Action::Remove => rec = CacheRecord::default(),
        Action::Password => {
            let change = inputs.password.ok_or_else(|| {
                CacheError::Refused("the workflow's inputs name no password change".into())
            })?;
            rec.password_sealed = match change {
                PasswordChange::Clear => Vec::new(),
                PasswordChange::Set => {
                    let sealed = ctl
                        .store
                        .kept(&wf.id)?
                        .into_iter()
                        .find(|(k, _)| k == NEW_PASSWORD)
                        .map(|(_, v)| v)
                        .ok_or_else(|| {
                            CacheError::Refused("the new password was not kept".into())
                        })?;
                    let plain = ctl
                        .sealer
                        .open(&workflows::purpose(&wf.id, NEW_PASSWORD), &sealed)?;
                    ctl.sealer.seal(REDIS_PASSWORD, &plain)?
                }
            };
        }
        // The record changed when the server was removed.
        Action::Detach => return Ok(()),
    }
    rec.changed_unix_ms = now_ms();
    ctl.store.put_cache_record(rec).await?;
    Ok(())
}

/// `cache install NODE...`.
pub async fn install(
    ctl: &Ctl,
    refs: &[String],
    dry_run: bool,
    when_busy: WhenBusy,
    audit: &Audit,
) -> Result<StartWorkflowResponse, CacheError> {
    let settings = settings::settings_record(ctl)?;
    if settings.ldap_cache {
        return Err(CacheError::Refused(
            "the cluster uses the LDAP cache (NATIVE_PERSISTENCE); turn it off first: clustermgr cluster configure --ldap-cache false".into(),
        ));
    }
    if refs.is_empty() {
        return Err(CacheError::Refused(
            "name the cache node(s): clustermgr cache install NODE...".into(),
        ));
    }
    // Additive: the cache hosts installed already stay (a Redis server added later reaches
    // every Gluu node's twemproxy).
    let mut servers: Vec<String> = Vec::new();
    for s in record(ctl)?.server_node_ids {
        if ctl.store.node(&s)?.is_some() && !servers.contains(&s) {
            servers.push(s);
        }
    }
    for r in refs {
        let n = nodes::find(ctl, r)?;
        if n.role() != NodeRole::Cache {
            return Err(CacheError::WrongRole {
                host: n.hostname.clone(),
                role: n.role().label(),
            });
        }
        if !servers.contains(&n.id) {
            servers.push(n.id.clone());
        }
    }
    let (clients, primary) = gluu_servers(ctl)?;
    if clients.is_empty() {
        return Err(CacheError::Refused(
            "the cluster has no Gluu servers yet (clustermgr server add)".into(),
        ));
    }
    if let Some(why) = uses_shibboleth(ctl, &clients)? {
        return Err(CacheError::Refused(format!(
            "{why}: it needs the LDAP cache (NATIVE_PERSISTENCE), Redis is not available to it"
        )));
    }
    let st = Start::plain(Action::Install, &servers, &clients, &primary, true);
    start(ctl, st, dry_run, when_busy, audit).await
}

/// `cache remove`: Gluu back to NATIVE_PERSISTENCE, then stunnel and Redis gone.
pub async fn remove(
    ctl: &Ctl,
    dry_run: bool,
    when_busy: WhenBusy,
    audit: &Audit,
) -> Result<StartWorkflowResponse, CacheError> {
    let rec = installed_record(ctl)?;
    let (mut clients, primary) = gluu_servers(ctl)?;
    for c in &rec.client_node_ids {
        if !clients.contains(c) && ctl.store.node(c)?.is_some() {
            clients.push(c.clone());
        }
    }
    let servers: Vec<String> = rec
        .server_node_ids
        .iter()
        .filter(|s| ctl.store.node(s).ok().flatten().is_some())
        .cloned()
        .collect();
    let st = Start::plain(Action::Remove, &servers, &clients, &primary, true);
    start(ctl, st, dry_run, when_busy, audit).await
}
