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
use crate::jobs::JobSpec;
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
    Action, Cache, NUTCRACKER_PORT, Packages, PushedPackage, REDIS_PORT,
};
use clustermgr_workflow::gluu_install::Component;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

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

fn ids(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
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
    let get = |k: &str| wf.inputs.get(k).cloned().unwrap_or_default();
    let rec = ctl.store.cache_record()?.unwrap_or_default();
    let password = password_of(ctl, &rec).map_err(|e| WorkflowError::Refused(e.to_string()))?;
    let s = settings::settings_record(ctl)?;
    Ok(Cache {
        action,
        servers: ids(&get("servers")),
        clients: ids(&get("clients")),
        password,
        admin_password: settings::ldap_admin_password(ctl, &s)?,
        https_port: (s.https_port != 0).then_some(s.https_port as u16),
        primary: get("primary"),
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
    inputs: Vec<(&'static str, String)>,
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
            inputs: Vec::new(),
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
    let mut inputs = BTreeMap::new();
    inputs.insert("servers".to_string(), st.servers.join(","));
    inputs.insert("clients".to_string(), st.clients.join(","));
    inputs.insert("primary".to_string(), st.primary.to_string());
    for (k, v) in st.inputs {
        inputs.insert(k.to_string(), v);
    }
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
        inputs,
        nodes,
        servers: Vec::new(),
        kept: st.kept,
    };
    Ok(workflows::start_nodes_when(ctl, new, dry_run, when_busy, audit).await?)
}

/// The kept value holding a new password (`cache password set`) until the workflow starts.
const NEW_PASSWORD: &str = "new-password";
/// The input saying whether `cache password` sets a password or clears it.
const PASSWORD_INPUT: &str = "password";

/// What `cache password` does to the record's password ([`PASSWORD_INPUT`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PasswordChange {
    /// The kept new password becomes the record's.
    Set,
    /// Redis runs without a password.
    Clear,
}

impl PasswordChange {
    fn input(self) -> &'static str {
        match self {
            Self::Set => "set",
            Self::Clear => "clear",
        }
    }

    fn from_input(s: &str) -> Self {
        if s == Self::Clear.input() {
            Self::Clear
        } else {
            Self::Set
        }
    }
}

/// When a cache workflow starts (at once, or when the driver takes it from the queue): the
/// record of the cache the cluster should have changes.
pub async fn on_admit(ctl: &Ctl, wf: &Workflow) -> Result<(), CacheError> {
    let Some(action) = Action::from_kind(&wf.kind) else {
        return Ok(());
    };
    let get = |k: &str| wf.inputs.get(k).cloned().unwrap_or_default();
    let mut rec = record(ctl)?;
    match action {
        Action::Install => {
            for s in ids(&get("servers")) {
                if !rec.server_node_ids.contains(&s) {
                    rec.server_node_ids.push(s);
                }
            }
            for c in ids(&get("clients")) {
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
            rec.password_sealed = match PasswordChange::from_input(&get(PASSWORD_INPUT)) {
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
    let rec = record(ctl)?;
    if !rec.installed {
        return Err(CacheError::NotInstalled);
    }
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

/// What `cache password` asks for.
pub enum NewPassword {
    Random,
    Given(Secret<String>),
    None,
}

impl NewPassword {
    /// What a `SetCachePasswordRequest` asks for, with its audit action (the kind of change,
    /// never the value): clear, a random password (empty), or the one given (checked).
    pub fn of(
        r: &clustermgr_proto::SetCachePasswordRequest,
    ) -> (&'static str, Result<Self, CacheError>) {
        if r.clear {
            ("cache.password.clear", Ok(NewPassword::None))
        } else if r.password.is_empty() {
            ("cache.password.set", Ok(NewPassword::Random))
        } else {
            (
                "cache.password.set",
                check_password(&r.password).map(|s| NewPassword::Given(Secret::new(s))),
            )
        }
    }
}

/// `cache password set|clear`: Redis first, then every Gluu node, rolling.
pub async fn set_password(
    ctl: &Ctl,
    new: NewPassword,
    dry_run: bool,
    when_busy: WhenBusy,
    audit: &Audit,
) -> Result<StartWorkflowResponse, CacheError> {
    let rec = record(ctl)?;
    if !rec.installed {
        return Err(CacheError::NotInstalled);
    }
    let (_, primary) = gluu_servers(ctl)?;
    let (set, kept) = match new {
        NewPassword::Random => (PasswordChange::Set, vec![random_password().into_bytes()]),
        NewPassword::Given(p) => (PasswordChange::Set, vec![p.expose().as_bytes().to_vec()]),
        NewPassword::None => (PasswordChange::Clear, Vec::new()),
    };
    let clients = current_clients(ctl, &rec)?;
    let st = Start {
        action: Action::Password,
        servers: &rec.server_node_ids,
        clients: &clients,
        primary: &primary,
        with_servers: true,
        inputs: vec![(PASSWORD_INPUT, set.input().to_string())],
        kept: kept
            .into_iter()
            .map(|p| (NEW_PASSWORD.to_string(), p))
            .collect(),
    };
    start(ctl, st, dry_run, when_busy, audit).await
}

/// After `server add`: a Gluu server joining a cluster with a cache gets its stunnel client
/// (and twemproxy), and Gluu's configuration once Gluu runs there. Returns the workflow it
/// started.
pub async fn after_server_add(ctl: &Ctl, node_id: &str, audit: &Audit) -> Option<Workflow> {
    let r = async {
        let mut rec = record(ctl)?;
        if !rec.installed || rec.client_node_ids.iter().any(|c| c == node_id) {
            return Ok::<_, CacheError>(None);
        }
        rec.client_node_ids.push(node_id.to_string());
        ctl.store.put_cache_record(rec.clone()).await?;
        let (_, primary) = gluu_servers(ctl)?;
        let client = [node_id.to_string()];
        let st = Start::plain(
            Action::Install,
            &rec.server_node_ids,
            &client,
            &primary,
            false,
        );
        Ok(start(ctl, st, false, WhenBusy::Queue, audit)
            .await?
            .workflow)
    };
    r.await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot give the new server its cache client");
        None
    })
}

/// After `server remove`: the removed server leaves the cache's clients, and its twemproxy
/// and stunnel client (with their keys) are removed by a `cache-detach` workflow. The
/// replicated `oxCacheConfiguration` is not touched.
pub async fn after_server_remove(ctl: &Ctl, node_id: &str, audit: &Audit) {
    let r = async {
        let mut rec = record(ctl)?;
        if !rec.installed || !rec.client_node_ids.iter().any(|c| c == node_id) {
            return Ok::<_, CacheError>(());
        }
        rec.client_node_ids.retain(|c| c != node_id);
        rec.changed_unix_ms = now_ms();
        ctl.store.put_cache_record(rec.clone()).await?;
        if ctl.store.node(node_id)?.is_none() {
            return Ok(());
        }
        let (_, primary) = gluu_servers(ctl)?;
        let client = [node_id.to_string()];
        let st = Start::plain(
            Action::Detach,
            &rec.server_node_ids,
            &client,
            &primary,
            false,
        );
        start(ctl, st, false, WhenBusy::Queue, audit).await?;
        Ok(())
    };
    if let Err(e) = r.await {
        tracing::warn!(error = %e, "cannot remove the cache client of the removed server");
    }
}

/// Signs a node's stunnel CSR, only while its own configure-stunnel job runs: a server
/// certificate for a cache host (its addresses and name), a client certificate otherwise.
pub fn issue_certificate(
    ctl: &Ctl,
    cache_ca: &clustermgr_shared::pki::Ca,
    node_id: &str,
    job_id: &str,
    csr_der: &[u8],
) -> Result<IssueCacheCertificateResponse, CacheError> {
    let not_yours = || CacheError::NotYourJob(crate::audit::clean(job_id, 64));
    match ctl.jobs.running(job_id) {
        Some(j) if j.node_id == node_id && j.kind == "configure-stunnel" => {}
        _ => return Err(not_yours()),
    }
    let node: NodeRecord = ctl.store.node(node_id)?.ok_or_else(not_yours)?;
    let usage = if node.role() == NodeRole::Cache {
        Usage::Server
    } else {
        Usage::Client
    };
    let mut sans: Vec<String> = node
        .inventory
        .as_ref()
        .map(|i| i.addresses.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.parse::<std::net::IpAddr>().is_ok())
        .collect();
    if node
        .hostname
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !node.hostname.is_empty()
    {
        sans.push(node.hostname.clone());
    }
    let cert = cache_ca.sign_csr_with_names(
        csr_der,
        &node.hostname,
        &sans,
        usage,
        pki::validity_from_now(CERT_TTL),
    )?;
    tracing::info!(node = %node_id, job = %job_id, usage = ?usage, "cache certificate issued");
    Ok(IssueCacheCertificateResponse {
        certificate_pem: cert,
        ca_pem: cache_ca.cert_pem().to_string(),
    })
}

/// `cache status`: every cache host and Gluu node asked now.
/// What the nodes check for the cache's health: a Redis PING on every cache host (redis-server
/// itself) and through every Gluu node's stunnel client (or twemproxy), by node id.
pub fn health_probes(
    ctl: &Ctl,
) -> Result<Vec<(String, clustermgr_proto::HealthProbe)>, CacheError> {
    let rec = record(ctl)?;
    if !rec.installed {
        return Ok(Vec::new());
    }
    let password = password_of(ctl, &rec)?;
    let sharded = rec.server_node_ids.len() > 1;
    let probe = |port: u32| clustermgr_proto::HealthProbe {
        service: "redis".into(),
        check: Some(clustermgr_proto::health_probe::Check::Redis(
            clustermgr_proto::RedisPing {
                port,
                password: password.as_bytes().to_vec(),
            },
        )),
    };
    let mut out: Vec<(String, clustermgr_proto::HealthProbe)> = rec
        .server_node_ids
        .iter()
        .map(|id| (id.clone(), probe(REDIS_PORT)))
        .collect();
    for id in current_clients(ctl, &rec)? {
        out.push((
            id,
            probe(if sharded { NUTCRACKER_PORT } else { REDIS_PORT }),
        ));
    }
    Ok(out)
}

pub async fn status(ctl: &Arc<Ctl>) -> Result<CacheStatusReport, CacheError> {
    let rec = record(ctl)?;
    let password = password_of(ctl, &rec)?;
    let sharded = rec.server_node_ids.len() > 1;
    let clients = current_clients(ctl, &rec)?;
    let mut asks = Vec::new();
    for (id, server) in rec
        .server_node_ids
        .iter()
        .map(|s| (s, true))
        .chain(clients.iter().map(|c| (c, false)))
    {
        let op = CacheStatus {
            server,
            client: !server,
            nutcracker: !server && sharded,
            ping_port: if !server && sharded {
                NUTCRACKER_PORT
            } else {
                REDIS_PORT
            },
            password: password.as_bytes().to_vec(),
            require_healthy: false,
            programs: Vec::new(),
        };
        let ctl = ctl.clone();
        let id = id.clone();
        asks.push(async move { ask(&ctl, &id, server, op).await });
    }
    let nodes: Vec<CacheNodeState> = futures::future::join_all(asks).await;
    let healthy = rec.installed && !nodes.is_empty() && nodes.iter().all(|n| n.healthy);
    Ok(CacheStatusReport {
        installed: rec.installed,
        password_set: !rec.password_sealed.is_empty(),
        nodes,
        healthy,
        checked_unix_ms: now_ms(),
    })
}

async fn ask(ctl: &Arc<Ctl>, node_id: &str, server: bool, op: CacheStatus) -> CacheNodeState {
    let mut out = CacheNodeState {
        node_id: node_id.to_string(),
        role: if server { "cache" } else { "gluu" }.into(),
        ..Default::default()
    };
    let Ok(Some(node)) = ctl.store.node(node_id) else {
        out.error = "the node was removed".into();
        return out;
    };
    out.hostname = node.hostname.clone();
    out.online = ctl.registry.get(&node.id).is_some();
    if !out.online {
        out.error = "offline".into();
        return out;
    }
    let spec = JobSpec::new(
        Operation {
            kind: Some(operation::Kind::CacheStatus(op)),
        },
        Duration::from_secs(30),
        "controller:cache-status".into(),
    );
    let audit = Audit::new("controller", "cache.status", node.id.clone());
    let finished = match ctl.jobs.run(&node, spec, &audit).await {
        Ok(f) => f,
        Err(e) => {
            out.error = e.to_string();
            return out;
        }
    };
    let Some(f) = finished else {
        out.error = "no result".into();
        return out;
    };
    match f.job.output.and_then(|o| o.kind) {
        Some(operation_output::Kind::CacheStatus(s)) => {
            out.redis_running = s.redis_running;
            out.stunnel_running = s.stunnel_running;
            out.nutcracker_running = s.nutcracker_running;
            out.ping_ok = s.ping_ok;
            out.ping_address = s.ping_address;
            out.error = s.ping_error;
            out.healthy = s.ping_ok
                && s.stunnel_running
                && (!server || s.redis_running)
                && (server || !op_sharded(&out) || s.nutcracker_running);
        }
        _ => {
            out.error = if f.job.error.is_empty() {
                "no status".into()
            } else {
                f.job.error
            };
        }
    }
    out
}

fn op_sharded(n: &CacheNodeState) -> bool {
    n.ping_address.ends_with(&format!(":{NUTCRACKER_PORT}"))
}
