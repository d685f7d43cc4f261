//! `clustermgr sandbox`: a whole cluster on one machine without root. A controller and one agent
//! per "host" run as local processes; each host has its own loopback address (127.0.0.x), its
//! own state directory and its own file-system root under the sandbox directory.

use crate::cli::client::{Target, connect, explain};
use crate::cli::init;
use crate::config::DataDir;
use anyhow::{Context, Result, bail};
use clustermgr_proto::cluster_client::ClusterClient;
use clustermgr_proto::packages_client::PackagesClient;
use clustermgr_proto::{
    AddServerRequest, ConfigureRequest, CreateTokenRequest, InstallGluuRequest, ListNodesRequest,
    ListServersRequest, Node, NodeRef, WhoAmIRequest,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proc {
    pub name: String,
    pub role: String,
    pub address: String,
    pub pid: i32,
    pub log: PathBuf,
    #[serde(default)]
    pub node_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct State {
    pub controller: String,
    pub ca_pin: String,
    pub procs: Vec<Proc>,
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("sandbox.json")
}

fn load(dir: &Path) -> Result<State> {
    let p = state_path(dir);
    let text = std::fs::read_to_string(&p).with_context(|| {
        format!(
            "no sandbox in {} (run `clustermgr sandbox up`)",
            dir.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("invalid {}", p.display()))
}

fn save(dir: &Path, s: &State) -> Result<()> {
    let text = serde_json::to_string_pretty(s)?;
    clustermgr_shared::fsutil::write_atomic(&state_path(dir), text.as_bytes(), 0o600)?;
    Ok(())
}

/// Alive and still one of ours (guards against pid reuse; zombies count as gone).
pub fn alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(_) => return false,
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    if state == Some('Z') || state == Some('X') {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("clustermgr"))
        .unwrap_or(false)
}

fn sibling_binary(name: &str) -> PathBuf {
    if let Ok(me) = std::env::current_exe()
        && let Some(dir) = me.parent()
    {
        let p = dir.join(name);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from(name)
}

fn spawn_logged(cmd: &mut Command, log: &Path) -> Result<i32> {
    let f =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let f2 = f.try_clone()?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(f)
        .stderr(f2)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
    Ok(child.id() as i32)
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

async fn wait_ready(target: &Target, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        let err = match connect(target).await {
            Ok(mut c) => match c.who_am_i(WhoAmIRequest {}).await {
                Ok(_) => return Ok(()),
                Err(s) => explain(s),
            },
            Err(e) => e,
        };
        if start.elapsed() > timeout {
            return Err(err.context("the sandbox controller did not become ready"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A sandbox that came up: its nodes (all online) and where it lives.
pub struct Up {
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub controller: String,
    pub nodes: Vec<Node>,
    /// The Gluu install, unless the sandbox was started without it.
    pub gluu: Option<GluuUp>,
}

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
}

/// The load balancer hostname the sandbox's Gluu is installed with.
pub const LB_HOSTNAME: &str = "idp.sandbox.test";
/// The web tier's port on each sandbox node (no root: not 443).
pub const HTTPS_PORT: u32 = 8443;

fn secrets_dir(dir: &Path) -> PathBuf {
    dir.join("secrets")
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

/// A password for the sandbox: 24 random letters and digits.
fn new_password() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..24)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// Cluster settings, the package, the servers, then `gluu install --all`, followed to its end.
async fn install_gluu(dir: &Path, target: &Target, package: &Path) -> Result<GluuUp> {
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
    let ch = crate::cli::client::channel(target).await?;
    let mut cluster = ClusterClient::new(ch.clone());
    cluster
        .configure(ConfigureRequest {
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
        })
        .await
        .map_err(explain)?;
    let mut pkgs = PackagesClient::new(ch.clone())
        .max_encoding_message_size(clustermgr_shared::MAX_MESSAGE_BYTES)
        .max_decoding_message_size(clustermgr_shared::MAX_MESSAGE_BYTES);
    let info = crate::cli::package::add(&mut pkgs, package)
        .await
        .with_context(|| format!("cannot add {} to the repository", package.display()))?;
    eprintln!(
        "added {} {} ({}) to the repository",
        info.name, info.version, info.format
    );
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
    let started = cluster
        .install_gluu(InstallGluuRequest {
            all: true,
            ..Default::default()
        })
        .await
        .map_err(explain)?
        .into_inner();
    let wf = started
        .workflow
        .ok_or_else(|| anyhow::anyhow!("the controller started no install"))?;
    eprintln!("installing Gluu Server: workflow {}", wf.id);
    crate::cli::workflow::follow(&mut cluster, &wf.id, crate::cli::Output::Table).await?;
    let servers = cluster
        .list_servers(ListServersRequest {})
        .await
        .map_err(explain)?
        .into_inner()
        .servers;
    let mut done = cluster
        .get_workflow(clustermgr_proto::WorkflowRef { id: wf.id.clone() })
        .await
        .map_err(explain)?
        .into_inner();
    // Then LDAP replication between the nodes (with two or more).
    let mut replication = None;
    if done.status() == clustermgr_proto::WorkflowStatus::Succeeded && gluu_nodes.len() >= 2 {
        let started = cluster
            .deploy_replication(clustermgr_proto::DeployReplicationRequest {
                all: true,
                ..Default::default()
            })
            .await
            .map_err(explain)?
            .into_inner();
        if let Some(rw) = started.workflow {
            eprintln!("deploying LDAP replication: workflow {}", rw.id);
            crate::cli::workflow::follow(&mut cluster, &rw.id, crate::cli::Output::Table).await?;
            done = cluster
                .get_workflow(clustermgr_proto::WorkflowRef { id: rw.id.clone() })
                .await
                .map_err(explain)?
                .into_inner();
            replication = Some(rw.id);
        }
    }
    // Then the cache on the sandbox's cache host.
    let mut cache = None;
    if done.status() == clustermgr_proto::WorkflowStatus::Succeeded {
        let (id, status) = crate::cli::cache::sandbox_install(target, "cache.sandbox").await?;
        done.set_status(status);
        cache = Some(id);
    }
    // Then the load balancer on lb.sandbox (nginx on 127.0.0.2, https 8443, http 8080).
    let mut lb = None;
    if done.status() == clustermgr_proto::WorkflowStatus::Succeeded {
        let lw = crate::cli::lb::install_and_follow(&mut cluster, ch.clone()).await?;
        lb = Some(lw.id.clone());
        done = lw;
    }
    Ok(GluuUp {
        cache_workflow_id: cache,
        lb_workflow_id: lb,
        replication_workflow_id: replication,
        workflow_id: wf.id,
        status: clustermgr_workflow::status_name(done.status()).into(),
        installed: servers
            .iter()
            .filter(|s| s.install_state == "installed")
            .map(|s| s.hostname.clone())
            .collect(),
        secrets,
    })
}

/// Starts a sandbox and waits until every agent is online.
pub async fn up(dir: &Path, nodes: u8, gluu: Option<&Path>) -> Result<Up> {
    if !(1..=50).contains(&nodes) {
        bail!("--nodes must be between 1 and 50");
    }
    if let Ok(s) = load(dir)
        && s.procs.iter().any(|p| alive(p.pid))
    {
        bail!(
            "a sandbox is already running in {} (stop it with `clustermgr sandbox down --dir {}`)",
            dir.display(),
            dir.display()
        );
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("cannot clear the old sandbox in {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    let dir = std::fs::canonicalize(dir)?;
    let data = DataDir::new(dir.join("controller"));
    let port = free_port()?;
    let controller = format!("127.0.0.1:{port}");
    let pin = init::run(
        &data,
        init::InitArgs {
            listen: controller.clone(),
            advertise: None,
            sans: vec![],
            force: false,
        },
    )
    .await?;
    let mut state = State {
        controller: controller.clone(),
        ca_pin: pin.clone(),
        procs: vec![],
    };
    let me = std::env::current_exe()?;
    let log = data.root.join("controller.log");
    let pid = spawn_logged(
        Command::new(&me)
            .arg("serve")
            .arg("--data-dir")
            .arg(&data.root)
            .arg("--heartbeat-interval")
            .arg("2s"),
        &log,
    )?;
    state.procs.push(Proc {
        name: "controller".into(),
        role: "controller".into(),
        address: controller.clone(),
        pid,
        log,
        node_id: String::new(),
    });
    save(&dir, &state)?;
    let target = Target {
        bundle_path: data.admin_bundle(),
        controller: None,
    };
    wait_ready(&target, Duration::from_secs(20)).await?;
    let mut client = connect(&target).await?;

    let mut hosts: Vec<(String, &str, String)> = vec![
        ("lb.sandbox".into(), "lb", "127.0.0.2".into()),
        ("cache.sandbox".into(), "cache", "127.0.0.3".into()),
    ];
    for i in 1..=nodes {
        hosts.push((
            format!("gluu{i}.sandbox"),
            "gluu-node",
            format!("127.0.0.{}", 10 + i),
        ));
    }
    let agent = sibling_binary("clustermgr-agent");
    for (name, role, addr) in hosts {
        let host_dir = dir.join("hosts").join(&name);
        let root = host_dir.join("root");
        std::fs::create_dir_all(root.join("etc"))?;
        std::fs::write(root.join("etc/hostname"), format!("{name}\n"))?;
        let token = client
            .create_token(CreateTokenRequest {
                role: role.into(),
                ttl_seconds: 300,
                uses: 1,
            })
            .await
            .map_err(explain)?
            .into_inner()
            .token;
        let state_dir = host_dir.join("state");
        let out = Command::new(&agent)
            .arg("--state-dir")
            .arg(&state_dir)
            .arg("join")
            .arg("--controller")
            .arg(&controller)
            .arg("--ca-pin")
            .arg(&pin)
            .arg("--root")
            .arg(&root)
            .arg("--hostname")
            .arg(&name)
            .arg("--address")
            .arg(&addr)
            .env("CLUSTERMGR_JOIN_TOKEN", &token)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", agent.display()))?;
        if !out.status.success() {
            bail!(
                "{name}: agent join failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let node_id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        // Where a node keeps the agent's log (`clustermgr logs --type agent`).
        let log_dir = root.join("var/log/clustermgr-agent");
        std::fs::create_dir_all(&log_dir)?;
        let log = log_dir.join("agent.log");
        let pid = spawn_logged(
            Command::new(&agent)
                .arg("--state-dir")
                .arg(&state_dir)
                .arg("run")
                .arg("--max-backoff")
                .arg("2s"),
            &log,
        )?;
        state.procs.push(Proc {
            name: name.clone(),
            role: role.into(),
            address: addr,
            pid,
            log,
            node_id,
        });
        save(&dir, &state)?;
    }

    // Every agent online?
    let expected = state.procs.len() - 1;
    let start = Instant::now();
    let _online: Vec<Node> = loop {
        let nodes = client
            .list_nodes(ListNodesRequest {})
            .await
            .map_err(explain)?
            .into_inner()
            .nodes;
        let online = nodes.iter().filter(|n| n.status == "online").count();
        if online >= expected {
            break nodes;
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!(
                "only {online} of {expected} sandbox agents came online; see the logs under {}/hosts",
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let gluu = match gluu {
        Some(package) => Some(install_gluu(&dir, &target, package).await?),
        None => None,
    };
    let nodes = client
        .list_nodes(ListNodesRequest {})
        .await
        .map_err(explain)?
        .into_inner()
        .nodes;
    Ok(Up {
        dir,
        data_dir: data.root,
        controller,
        nodes,
        gluu,
    })
}

/// One sandbox process as `sandbox status` sees it.
pub struct ProcStatus {
    pub proc: Proc,
    pub running: bool,
    /// A Gluu node's install state (installed, installing, failed, not-installed).
    pub gluu: Option<String>,
    /// The node's status from the controller ("serving"/"-" for the controller itself).
    pub status: String,
}

/// What `sandbox status` found.
pub struct Status {
    pub procs: Vec<ProcStatus>,
    /// Every process running and every node online.
    pub all_ok: bool,
    /// Where the generated passwords are.
    pub secrets: PathBuf,
    /// The cache, when one is installed (one line).
    pub cache: Option<String>,
    /// The load balancer as the controller sees it (when it could be asked).
    pub lb: Option<clustermgr_proto::LoadBalancerStatus>,
}

pub async fn status(dir: &Path) -> Result<Status> {
    let state = load(dir)?;
    let data = DataDir::new(dir.join("controller"));
    let target = Target {
        bundle_path: data.admin_bundle(),
        controller: None,
    };
    let nodes = match connect(&target).await {
        Ok(mut c) => c
            .list_nodes(ListNodesRequest {})
            .await
            .map(|r| r.into_inner().nodes)
            .unwrap_or_default(),
        Err(_) => vec![],
    };
    let lb = match crate::cli::client::channel(&target).await {
        Ok(ch) => clustermgr_proto::load_balancer_client::LoadBalancerClient::new(ch)
            .get_load_balancer_status(clustermgr_proto::GetLoadBalancerStatusRequest {})
            .await
            .ok()
            .map(|r| r.into_inner()),
        Err(_) => None,
    };
    let servers = match crate::cli::client::channel(&target).await {
        Ok(ch) => ClusterClient::new(ch)
            .list_servers(ListServersRequest {})
            .await
            .map(|r| r.into_inner().servers)
            .unwrap_or_default(),
        Err(_) => vec![],
    };
    let mut all_ok = true;
    let mut procs = Vec::new();
    for p in state.procs {
        let running = alive(p.pid);
        let status = if p.role == "controller" {
            if running { "serving" } else { "-" }.to_string()
        } else {
            nodes
                .iter()
                .find(|n| n.id == p.node_id)
                .map(|n| n.status.clone())
                .unwrap_or_else(|| "unknown".into())
        };
        all_ok &= running && (p.role == "controller" || status == "online");
        let gluu = servers
            .iter()
            .find(|s| s.node_id == p.node_id)
            .map(|s| s.install_state.clone());
        procs.push(ProcStatus {
            proc: p,
            running,
            status,
            gluu,
        });
    }
    let cache = crate::cli::cache::sandbox_summary(&target).await;
    all_ok &= cache.as_ref().is_none_or(|(healthy, _)| *healthy);
    // An installed load balancer must be healthy.
    all_ok &= lb
        .as_ref()
        .is_none_or(|l| l.state != "installed" || l.healthy);
    Ok(Status {
        procs,
        all_ok,
        secrets: secrets_dir(dir),
        cache: cache.map(|(_, line)| line),
        lb,
    })
}

pub fn down(dir: &Path, purge: bool) -> Result<()> {
    let mut state = load(dir)?;
    // Agents first, then the controller.
    let mut order: Vec<usize> = (0..state.procs.len()).collect();
    order.sort_by_key(|&i| state.procs[i].role == "controller");
    for i in order {
        let p = &state.procs[i];
        if !alive(p.pid) {
            continue;
        }
        let pid = Pid::from_raw(p.pid);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(p.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive(p.pid) {
            let _ = kill(pid, Signal::SIGKILL);
            let deadline = Instant::now() + Duration::from_secs(5);
            while alive(p.pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if alive(p.pid) {
            bail!("{} (pid {}) did not stop", p.name, p.pid);
        }
    }
    // The Gluu services the nodes run (the stand-in's slapd and web tier, under each root).
    for p in state.procs.iter().filter(|p| p.role == "gluu-node") {
        let root = dir.join("hosts").join(&p.name).join("root");
        let serverd = root.join("sbin/gluu-serverd");
        if serverd.is_file() {
            let _ = Command::new(&serverd)
                .arg("stop")
                .arg("--root")
                .arg(&root)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
    // The services agents started on their hosts (nginx, redis-server, stunnel, nutcracker):
    // each writes a pid file under its host's root (`run/clustermgr/*.pid`); redis-server
    // rewrites its command line, so the scan below would not find it.
    for pid in daemon_pids(dir) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while running(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if running(pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    // Anything else still running from the sandbox directory.
    let left = processes_under(dir);
    for pid in &left {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    for p in &mut state.procs {
        p.pid = 0;
    }
    save(dir, &state)?;
    if purge {
        std::fs::remove_dir_all(dir)?;
        eprintln!("sandbox stopped and {} removed", dir.display());
    } else {
        eprintln!("sandbox stopped (state kept in {})", dir.display());
    }
    Ok(())
}

/// Processes whose command line or executable lies under `dir` (the sandbox's own).
fn processes_under(dir: &Path) -> Vec<i32> {
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return Vec::new();
    };
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .unwrap_or_default();
        if cmd.contains(&needle) {
            out.push(pid);
        }
    }
    out
}

/// Alive and not a zombie, whatever its command line (a service's own pid file names it; nginx's
/// master shows "nginx: master process", and its workers outlive a master killed with SIGKILL,
/// so it must get SIGTERM and the time to stop them).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
        })
        .is_some_and(|st| st != 'Z' && st != 'X')
}

/// Live processes named by the pid files agents keep for their services
/// (`hosts/*/root/run/clustermgr/*.pid`).
fn daemon_pids(dir: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(hosts) = std::fs::read_dir(dir.join("hosts")) else {
        return out;
    };
    for h in hosts.flatten() {
        let Ok(files) = std::fs::read_dir(h.path().join("root/run/clustermgr")) else {
            continue;
        };
        for f in files.flatten() {
            if f.path().extension().is_some_and(|e| e == "pid")
                && let Some(pid) = std::fs::read_to_string(f.path())
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                && pid > 1
                && running(pid)
            {
                out.push(pid);
            }
        }
    }
    out
}
