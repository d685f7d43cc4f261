//! The sandbox's Gluu cluster: settings, the package, the servers, `gluu install --all`, then
//! replication, the cache and the load balancer, each followed to its end and timed.

use super::{Event, Phase, Proc, Progress, load, secrets_dir};
use crate::client::{Cluster, Target, channel, cluster, explain};
use anyhow::{Context, Result, bail};
use clustermgr_proto::cache_client::CacheClient;
use clustermgr_proto::load_balancer_client::LoadBalancerClient;
use clustermgr_proto::packages_client::PackagesClient;
use clustermgr_proto::{
    AddServerRequest, ConfigureRequest, InstallCacheRequest, InstallGluuRequest,
    InstallLoadBalancerRequest, ListServersRequest, NodeRef, Workflow, WorkflowRef, WorkflowStatus,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// The load balancer hostname the sandbox's Gluu is installed with.
pub const LB_HOSTNAME: &str = "idp.sandbox.test";
/// The web tier's port on each sandbox node (the machines share the host's network: not 443).
pub const HTTPS_PORT: u32 = 8443;

pub struct GluuUp {
    pub workflow_id: String,
    /// The replication deploy that followed the install (two nodes or more).
    pub replication_workflow_id: Option<String>,
    /// The cache install that followed.
    pub cache_workflow_id: Option<String>,
    /// The load balancer's install, after them.
    pub lb_workflow_id: Option<String>,
    /// succeeded | failed | cancelled
    pub status: String,
    pub installed: Vec<String>,
    /// The directory holding the generated passwords.
    pub secrets: PathBuf,
    /// Wall time of each phase (install, replication, cache, load balancer).
    pub phases: Vec<(String, Duration)>,
    /// The install workflow on each node.
    pub nodes: Vec<NodeInstall>,
}

/// How long the install took on one node: from its first step's start to its last step's end,
/// and its own steps (package: dpkg and the machine's first boot; setup: setup.py inside).
pub struct NodeInstall {
    pub hostname: String,
    pub total: Duration,
    pub steps: Vec<(String, Duration)>,
}

/// The Gluu package `sandbox up` installs: the given file, else the stand-in package that
/// `scripts/sandbox` builds beside the binary.
pub fn gluu_package(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        if !p.is_file() {
            bail!("--gluu-package {}: no such file", p.display());
        }
        return Ok(p);
    }
    let me = std::env::current_exe()?;
    let cache = me
        .parent()
        .map(|d| d.join("gluu-standin-cache"))
        .unwrap_or_default();
    let mut found: Vec<PathBuf> = std::fs::read_dir(&cache)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("gluu-server_") && n.ends_with(".deb"))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().ok_or_else(|| {
        anyhow::anyhow!(
            "no Gluu Server package to install: give one with --gluu-package FILE (scripts/sandbox \
             builds the stand-in into {}), or start the hosts alone with --no-gluu",
            cache.display()
        )
    })
}

/// What booting Gluu machines needs on this host: root, systemd-nspawn and nsenter.
pub fn check_machine_host() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the sandbox installs Gluu Server as systemd-nspawn machines, which needs root: run \
             scripts/sandbox (it uses sudo), run as root, or start the hosts alone with --no-gluu"
        );
    }
    for (program, package) in [
        ("systemd-nspawn", "systemd-container"),
        ("nsenter", "util-linux"),
    ] {
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()));
        if !found {
            bail!("{program} is missing: install Debian's {package} (scripts/sandbox does)");
        }
    }
    Ok(())
}

/// Writes the machine console's address of a Gluu host (`ROOT/etc/default/gluu-server`) before
/// its package is installed: its sshd on port 60022 binds the host's own loopback address.
pub fn write_console_address(root: &Path, address: &str) -> Result<()> {
    let dir = root.join("etc/default");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("gluu-server"),
        format!("GLUU_CONSOLE_ADDRESS={address}\n"),
    )
    .with_context(|| format!("cannot write {}/gluu-server", dir.display()))
}

/// A password for the sandbox: 24 random letters and digits.
fn new_password() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..24)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

fn write_secrets(dir: &Path) -> Result<(PathBuf, String, String)> {
    let secrets = secrets_dir(dir);
    std::fs::create_dir_all(&secrets)?;
    std::fs::set_permissions(
        &secrets,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )?;
    let ldap = new_password();
    let repl = new_password();
    clustermgr_shared::fsutil::write_private(
        &secrets.join("ldap-admin-password"),
        ldap.as_bytes(),
    )?;
    clustermgr_shared::fsutil::write_private(
        &secrets.join("replication-password"),
        repl.as_bytes(),
    )?;
    Ok((secrets, ldap, repl))
}

fn settings(ldap: String, repl: String) -> ConfigureRequest {
    ConfigureRequest {
        gluu_version: Some("4.2.3".into()),
        lb_hostname: Some(LB_HOSTNAME.into()),
        lb_ip: Some("127.0.0.2".into()),
        org: Some("Sandbox".into()),
        country: Some("US".into()),
        city: Some("Austin".into()),
        state: Some("TX".into()),
        admin_email: Some("admin@sandbox.test".into()),
        ldap_admin_password: Some(ldap.into_bytes()),
        replication_password: Some(repl.into_bytes()),
        offline: Some(true),
        manage_hosts: Some(true),
        https_port: Some(HTTPS_PORT),
        // Services are checked every 10 s (`clustermgr status`), the shortest period.
        ldap_check_period: Some("10s".into()),
        ..Default::default()
    }
}

/// Cluster settings, the package, the servers, then `gluu install --all`, replication, the
/// cache and the load balancer, each followed to its end through `progress`.
pub async fn install(
    dir: &Path,
    target: &Target,
    package: &Path,
    progress: &mut impl Progress,
) -> Result<GluuUp> {
    let (secrets, ldap, repl) = write_secrets(dir)?;
    let ch = channel(target).await?;
    let mut cluster = cluster(target).await?;
    cluster
        .configure(settings(ldap, repl))
        .await
        .map_err(explain)?;
    let mut pkgs = PackagesClient::new(ch.clone())
        .max_encoding_message_size(clustermgr_shared::MAX_MESSAGE_BYTES)
        .max_decoding_message_size(clustermgr_shared::MAX_MESSAGE_BYTES);
    let info = crate::package::add(&mut pkgs, package)
        .await
        .with_context(|| format!("cannot add {} to the repository", package.display()))?;
    progress.event(Event::PackageAdded(info));
    let gluu_nodes = add_servers(dir, &mut cluster).await?;
    let mut phases = Vec::new();
    let started_at = Instant::now();
    let started = cluster
        .install_gluu(InstallGluuRequest {
            all: true,
            ..Default::default()
        })
        .await
        .map_err(explain)?
        .into_inner();
    let workflow_id = started_id(started, "install")?;
    let mut done = run(&mut cluster, progress, Phase::GluuInstall, &workflow_id).await?;
    phases.push(("gluu install".to_string(), started_at.elapsed()));
    let nodes = node_installs(&done);
    let servers = cluster
        .list_servers(ListServersRequest {})
        .await
        .map_err(explain)?
        .into_inner()
        .servers;
    // Then LDAP replication between the nodes (with two or more), the cache on the sandbox's
    // cache host and the load balancer on lb.sandbox (nginx on 127.0.0.2, https 8443, http
    // 8080), each once the one before succeeded.
    let mut replication = None;
    if done.status() == WorkflowStatus::Succeeded && gluu_nodes >= 2 {
        let t = Instant::now();
        if let Some(id) = start_replication(&mut cluster).await? {
            done = run(&mut cluster, progress, Phase::Replication, &id).await?;
            replication = Some(id);
        }
        phases.push(("replication".to_string(), t.elapsed()));
    }
    let mut cache = None;
    if done.status() == WorkflowStatus::Succeeded {
        let t = Instant::now();
        let id = start_cache(&ch).await?;
        done = run(&mut cluster, progress, Phase::Cache, &id).await?;
        cache = Some(id);
        phases.push(("cache".to_string(), t.elapsed()));
    }
    let mut lb = None;
    if done.status() == WorkflowStatus::Succeeded {
        let t = Instant::now();
        let id = start_lb(&ch).await?;
        done = run(&mut cluster, progress, Phase::LoadBalancer, &id).await?;
        lb = Some(id);
        phases.push(("load balancer".to_string(), t.elapsed()));
    }
    Ok(GluuUp {
        cache_workflow_id: cache,
        lb_workflow_id: lb,
        replication_workflow_id: replication,
        workflow_id,
        status: clustermgr_workflow::status_name(done.status()).into(),
        installed: servers
            .iter()
            .filter(|s| s.install_state == "installed")
            .map(|s| s.hostname.clone())
            .collect(),
        secrets,
        phases,
        nodes,
    })
}

/// Adds every Gluu host as a server, the first by name the primary; returns how many.
async fn add_servers(dir: &Path, cluster: &mut Cluster) -> Result<usize> {
    let state = load(dir)?;
    let mut gluu_nodes: Vec<&Proc> = state
        .procs
        .iter()
        .filter(|p| p.role == "gluu-node")
        .collect();
    gluu_nodes.sort_by(|a, b| a.name.cmp(&b.name));
    for (i, p) in gluu_nodes.iter().enumerate() {
        cluster
            .add_server(AddServerRequest {
                node: Some(NodeRef {
                    node: p.node_id.clone(),
                }),
                primary: i == 0,
            })
            .await
            .map_err(explain)?;
    }
    Ok(gluu_nodes.len())
}

/// Starts LDAP replication between every server; the workflow's id, if one was started.
async fn start_replication(cluster: &mut Cluster) -> Result<Option<String>> {
    let started = cluster
        .deploy_replication(clustermgr_proto::DeployReplicationRequest {
            all: true,
            ..Default::default()
        })
        .await
        .map_err(explain)?
        .into_inner();
    Ok(started.workflow.map(|w| w.id))
}

/// The id of the workflow a start answered with; an error naming `what` when there is none.
fn started_id(started: clustermgr_proto::StartWorkflowResponse, what: &str) -> Result<String> {
    let w = started
        .workflow
        .ok_or_else(|| anyhow::anyhow!("the controller started no {what}"))?;
    Ok(w.id)
}

/// Starts the cache's install on cache.sandbox; the workflow's id.
async fn start_cache(ch: &Channel) -> Result<String> {
    let started = CacheClient::new(ch.clone())
        .install(InstallCacheRequest {
            nodes: vec![NodeRef {
                node: "cache.sandbox".into(),
            }],
            dry_run: false,
            no_wait: false,
        })
        .await
        .map_err(explain)?
        .into_inner();
    started_id(started, "cache install")
}

/// Starts the load balancer's install; the workflow's id.
async fn start_lb(ch: &Channel) -> Result<String> {
    let started = LoadBalancerClient::new(ch.clone())
        .install_load_balancer(InstallLoadBalancerRequest::default())
        .await
        .map_err(explain)?
        .into_inner();
    started_id(started, "load balancer install")
}

/// Reports a workflow the sandbox started, has `progress` follow it to its end, then returns
/// how it ended.
async fn run(
    cluster: &mut Cluster,
    progress: &mut impl Progress,
    phase: Phase,
    id: &str,
) -> Result<Workflow> {
    progress.event(Event::WorkflowStarted {
        phase,
        id: id.to_string(),
    });
    progress.follow(cluster, id).await?;
    Ok(cluster
        .get_workflow(WorkflowRef { id: id.into() })
        .await
        .map_err(explain)?
        .into_inner())
}

/// Each node's part of an install workflow, from its steps' times.
pub fn node_installs(wf: &Workflow) -> Vec<NodeInstall> {
    let ms = |a: u64, b: u64| Duration::from_millis(b.saturating_sub(a));
    wf.nodes
        .iter()
        .map(|n| {
            let ran: Vec<_> = n
                .steps
                .iter()
                .filter(|s| s.started_unix_ms > 0 && s.finished_unix_ms >= s.started_unix_ms)
                .collect();
            let first = ran.iter().map(|s| s.started_unix_ms).min().unwrap_or(0);
            let last = ran.iter().map(|s| s.finished_unix_ms).max().unwrap_or(0);
            NodeInstall {
                hostname: n.hostname.clone(),
                total: ms(first, last),
                steps: ran
                    .iter()
                    .filter(|s| s.name == "package" || s.name == "setup")
                    .map(|s| (s.name.clone(), ms(s.started_unix_ms, s.finished_unix_ms)))
                    .collect(),
            }
        })
        .collect()
}
