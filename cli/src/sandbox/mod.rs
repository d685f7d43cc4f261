//! `clustermgr sandbox`: a whole cluster on one machine. A controller and one agent per "host"
//! run as local processes; each host has its own loopback address (127.0.0.x), its own state
//! directory and its own file-system root under the sandbox directory. Each Gluu host's Gluu
//! Server is the package's systemd-nspawn machine booted under its root (so installing Gluu
//! needs root); `gluu.rs` installs the cluster, `down.rs` stops it all.
//!
//! The sandbox prints nothing: [`up`], [`status`] and [`down`] return what they did or found,
//! and report progress (workflows started, each followed to its end) through [`Progress`]; the
//! `sandbox` command (`sandbox_cmd.rs`) renders it all. The controller's data directory is made
//! by running `clustermgr init`, as the controller itself runs as `clustermgr serve`.

mod down;
mod gluu;

pub use down::{Down, MachinesStopped, down, local_machine_state};
pub use gluu::{GluuUp, HTTPS_PORT, LB_HOSTNAME, NodeInstall, gluu_package};

use crate::client::{Cluster, Target, channel, connect, explain};
use crate::records::{gluu_flavor_label, machine_state_label};
use anyhow::{Context, Result, bail};
use clustermgr_proto::cache_client::CacheClient;
use clustermgr_proto::cluster_client::ClusterClient;
use clustermgr_proto::{
    CacheStatusReport, CacheStatusRequest, CreateTokenRequest, ListNodesRequest,
    ListServersRequest, Node, PackageInfo, WhoAmIRequest,
};
use clustermgr_shared::datadir::DataDir;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What `sandbox up` reports as it goes.
pub enum Event {
    /// Machines an earlier sandbox in the same directory left running, powered off before its
    /// directory was cleared.
    LeftoverMachines {
        dir: PathBuf,
        stopped: MachinesStopped,
    },
    /// The Gluu Server package, added to the controller's repository.
    PackageAdded(PackageInfo),
    /// A workflow the sandbox started (it is followed next).
    WorkflowStarted { phase: Phase, id: String },
}

/// The workflows `sandbox up` runs, in their order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    GluuInstall,
    Replication,
    /// The cache on cache.sandbox.
    Cache,
    /// The load balancer on lb.sandbox.
    LoadBalancer,
}

/// How the caller of [`up`] shows its progress.
pub trait Progress {
    fn event(&mut self, event: Event);
    /// Follows a workflow the sandbox started until it ends.
    fn follow(&mut self, cluster: &mut Cluster, id: &str) -> impl Future<Output = Result<()>>;
}

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
    /// The web console's address (`serve --web-listen`); empty in a sandbox made before it.
    #[serde(default)]
    pub console: String,
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
    /// The web console's address (HTTPS, the controller's certificate).
    pub console: String,
    pub nodes: Vec<Node>,
    /// The Gluu install, unless the sandbox was started without it.
    pub gluu: Option<GluuUp>,
    /// Wall time of each phase (controller and hosts, then the Gluu phases) and in all.
    pub phases: Vec<(String, Duration)>,
    pub total: Duration,
}

fn secrets_dir(dir: &Path) -> PathBuf {
    dir.join("secrets")
}

/// Runs a command to its end; its stdout, trimmed (`what` names it when it fails).
fn stdout_of(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", Path::new(cmd.get_program()).display()))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs `clustermgr init` for the sandbox's controller; returns the CA pin it prints.
fn init(data: &DataDir, listen: &str) -> Result<String> {
    stdout_of(
        Command::new(std::env::current_exe()?)
            .arg("init")
            .arg("--data-dir")
            .arg(&data.root)
            .arg("--listen")
            .arg(listen),
        "clustermgr init",
    )
}

/// Starts a sandbox and waits until every agent is online.
pub async fn up(
    dir: &Path,
    nodes: u8,
    gluu: Option<&Path>,
    progress: &mut impl Progress,
) -> Result<Up> {
    let started = Instant::now();
    if !(1..=50).contains(&nodes) {
        bail!("--nodes must be between 1 and 50");
    }
    if gluu.is_some() {
        gluu::check_machine_host()?;
    }
    clear(dir, progress)?;
    let dir = std::fs::canonicalize(dir)?;
    let data = DataDir::new(dir.join("controller"));
    let mut state = start_controller(&dir, &data)?;
    let target = Target {
        bundle_path: data.admin_bundle(),
        controller: None,
    };
    wait_ready(&target, Duration::from_secs(20)).await?;
    let mut client = connect(&target).await?;
    for (name, role, addr) in sandbox_hosts(nodes) {
        let proc = start_host(&mut client, &dir, &state, name, role, addr).await?;
        state.procs.push(proc);
        save(&dir, &state)?;
    }
    wait_online(&mut client, state.procs.len() - 1, &dir).await?;

    let mut phases = vec![("controller and hosts".to_string(), started.elapsed())];
    let gluu = match gluu {
        Some(package) => {
            let g = gluu::install(&dir, &target, package, progress).await?;
            phases.extend(g.phases.iter().cloned());
            Some(g)
        }
        None => None,
    };
    let nodes = list_nodes(&mut client).await?;
    Ok(Up {
        dir,
        data_dir: data.root,
        controller: state.controller,
        console: state.console,
        nodes,
        gluu,
        phases,
        total: started.elapsed(),
    })
}

/// Refuses a directory whose sandbox is running, else clears what an earlier one left.
fn clear(dir: &Path, progress: &mut impl Progress) -> Result<()> {
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
        // A machine an earlier sandbox left running is powered off before its root goes.
        let stopped = down::stop_machines(dir);
        if !stopped.is_empty() {
            progress.event(Event::LeftoverMachines {
                dir: dir.to_path_buf(),
                stopped,
            });
        }
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("cannot clear the old sandbox in {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(())
}

/// Makes the controller's data directory and starts the controller; the state records it.
fn start_controller(dir: &Path, data: &DataDir) -> Result<State> {
    let controller = format!("127.0.0.1:{}", free_port()?);
    let pin = init(data, &controller)?;
    let console = format!("127.0.0.1:{}", free_port()?);
    let log = data.root.join("controller.log");
    let pid = spawn_logged(
        Command::new(std::env::current_exe()?)
            .arg("serve")
            .arg("--data-dir")
            .arg(&data.root)
            .arg("--heartbeat-interval")
            .arg("2s")
            .arg("--web-listen")
            .arg(&console),
        &log,
    )?;
    let state = State {
        procs: vec![Proc {
            name: "controller".into(),
            role: "controller".into(),
            address: controller.clone(),
            pid,
            log,
            node_id: String::new(),
        }],
        controller,
        ca_pin: pin,
        console,
    };
    save(dir, &state)?;
    Ok(state)
}

/// The sandbox's hosts: name, role and loopback address.
fn sandbox_hosts(nodes: u8) -> Vec<(String, &'static str, String)> {
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
    hosts
}

/// Makes one host's root, joins its agent with a new token and starts it.
async fn start_host(
    client: &mut crate::client::Client,
    dir: &Path,
    state: &State,
    name: String,
    role: &str,
    addr: String,
) -> Result<Proc> {
    let agent = sibling_binary("clustermgr-agent");
    let host_dir = dir.join("hosts").join(&name);
    let root = host_dir.join("root");
    std::fs::create_dir_all(root.join("etc"))?;
    std::fs::write(root.join("etc/hostname"), format!("{name}\n"))?;
    if role == "gluu-node" {
        gluu::write_console_address(&root, &addr)?;
    }
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
    let node_id = stdout_of(
        Command::new(&agent)
            .arg("--state-dir")
            .arg(&state_dir)
            .arg("join")
            .arg("--controller")
            .arg(&state.controller)
            .arg("--ca-pin")
            .arg(&state.ca_pin)
            .arg("--root")
            .arg(&root)
            .arg("--hostname")
            .arg(&name)
            .arg("--address")
            .arg(&addr)
            .env("CLUSTERMGR_JOIN_TOKEN", &token),
        &format!("{name}: agent join"),
    )?;
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
    Ok(Proc {
        name,
        role: role.into(),
        address: addr,
        pid,
        log,
        node_id,
    })
}

async fn list_nodes(client: &mut crate::client::Client) -> Result<Vec<Node>> {
    Ok(client
        .list_nodes(ListNodesRequest {})
        .await
        .map_err(explain)?
        .into_inner()
        .nodes)
}

/// Waits up to 30 s for `expected` agents online.
async fn wait_online(
    client: &mut crate::client::Client,
    expected: usize,
    dir: &Path,
) -> Result<()> {
    let start = Instant::now();
    loop {
        let nodes = list_nodes(client).await?;
        let online = nodes.iter().filter(|n| n.status == "online").count();
        if online >= expected {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!(
                "only {online} of {expected} sandbox agents came online; see the logs under {}/hosts",
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One sandbox process as `sandbox status` sees it.
pub struct ProcStatus {
    pub proc: Proc,
    pub running: bool,
    /// A Gluu node's install state (installed, installing, failed, not-installed).
    pub gluu: Option<String>,
    /// How the node's Gluu Server is packaged (nspawn-machine, initd-chroot, nochroot), as its
    /// inventory reports it.
    pub flavor: Option<String>,
    /// Its machine's state (running, starting, degraded, stopped).
    pub machine: Option<String>,
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
    /// The cache, when one is installed.
    pub cache: Option<CacheStatusReport>,
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
    let lb = match channel(&target).await {
        Ok(ch) => clustermgr_proto::load_balancer_client::LoadBalancerClient::new(ch)
            .get_load_balancer_status(clustermgr_proto::GetLoadBalancerStatusRequest {})
            .await
            .ok()
            .map(|r| r.into_inner()),
        Err(_) => None,
    };
    let servers = match channel(&target).await {
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
        let (flavor, machine) = machine_of(dir, &p, &nodes);
        // An installed node's machine must run (as this host sees it now).
        all_ok &= !(gluu.as_deref() == Some("installed")
            && local_machine_state(&host_root(dir, &p.name)) == Some("stopped"));
        procs.push(ProcStatus {
            proc: p,
            running,
            status,
            gluu,
            flavor,
            machine,
        });
    }
    let cache = match channel(&target).await {
        Ok(ch) => CacheClient::new(ch)
            .status(CacheStatusRequest {})
            .await
            .ok()
            .map(|r| r.into_inner())
            .filter(|r| r.installed),
        Err(_) => None,
    };
    all_ok &= cache.as_ref().is_none_or(|c| c.healthy);
    // An installed load balancer must be healthy.
    all_ok &= lb
        .as_ref()
        .is_none_or(|l| l.state != "installed" || l.healthy);
    Ok(Status {
        procs,
        all_ok,
        secrets: secrets_dir(dir),
        cache,
        lb,
    })
}

/// A Gluu host's flavor and machine state as its inventory reports them; the machine's state
/// as this host sees it (the sandbox's hosts share its /proc) when the inventory has none.
fn machine_of(dir: &Path, p: &Proc, nodes: &[Node]) -> (Option<String>, Option<String>) {
    if p.role != "gluu-node" {
        return (None, None);
    }
    let reported = nodes
        .iter()
        .find(|n| n.id == p.node_id)
        .and_then(|n| n.inventory.as_ref())
        .and_then(|i| i.gluu.as_ref());
    let known = |s: &'static str| (s != "-").then(|| s.to_string());
    let flavor = reported.and_then(|g| known(gluu_flavor_label(g.flavor)));
    let machine = reported
        .and_then(|g| known(machine_state_label(g.machine_state)))
        .or_else(|| local_machine_state(&host_root(dir, &p.name)).map(str::to_string));
    (flavor, machine)
}

fn host_root(dir: &Path, name: &str) -> PathBuf {
    dir.join("hosts").join(name).join("root")
}
