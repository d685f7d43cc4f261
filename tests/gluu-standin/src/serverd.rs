//! `/sbin/gluu-serverd start|stop|restart|status` and the per-service init scripts.
//!
//! Services run as plain background processes with pid files under `<chroot>/var/run/gluu/`.
//! `start` returns once each service accepts connections on its port (bounded wait);
//! `stop` returns once no process of the node is left (SIGTERM, then SIGKILL after a grace period).

use std::fs;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use clustermgr_procfs::{alive, cmdline};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::layout::Layout;
use crate::setup::Node;
use crate::slapd;

const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Action {
    Start,
    Stop,
    Restart,
    Status,
}

#[derive(Args, Debug)]
pub struct ServerdArgs {
    #[arg(value_enum)]
    pub action: Action,
    /// Stand-in only: act on a tree extracted under DIR instead of `/`.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ServiceName {
    /// The directory server (OpenLDAP slapd; named like Gluu 4.x's OpenDJ service).
    Opendj,
    /// The oxAuth-like HTTPS service (also serves /identity and /idp).
    Oxauth,
    /// Alias of `oxauth`: the same process serves /identity.
    Identity,
}

#[derive(Args, Debug)]
pub struct ServiceArgs {
    #[arg(value_enum)]
    pub name: ServiceName,
    #[arg(value_enum)]
    pub action: Action,
    /// Stand-in only: act on a tree extracted under DIR instead of `/`.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Svc {
    Opendj,
    Oxauth,
}

impl Svc {
    fn name(self) -> &'static str {
        match self {
            Svc::Opendj => "opendj",
            Svc::Oxauth => "oxauth",
        }
    }
}

const ALL: [Svc; 2] = [Svc::Opendj, Svc::Oxauth];

pub fn run_serverd(args: ServerdArgs) -> Result<ExitCode> {
    let layout = Layout::resolve(args.root.as_deref())?;
    act(&layout, &ALL, args.action)
}

pub fn run_service(args: ServiceArgs) -> Result<ExitCode> {
    let layout = Layout::resolve(args.root.as_deref())?;
    let svc = match args.name {
        ServiceName::Opendj => Svc::Opendj,
        ServiceName::Oxauth | ServiceName::Identity => Svc::Oxauth,
    };
    act(&layout, &[svc], args.action)
}

fn act(layout: &Layout, services: &[Svc], action: Action) -> Result<ExitCode> {
    match action {
        Action::Start => {
            let node = Node::load(layout)?;
            for svc in services {
                start(layout, &node, *svc)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Action::Stop => {
            for svc in services.iter().rev() {
                stop(layout, *svc)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Action::Restart => {
            let node = Node::load(layout)?;
            for svc in services.iter().rev() {
                stop(layout, *svc)?;
            }
            for svc in services {
                start(layout, &node, *svc)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Action::Status => {
            let mut all = true;
            for svc in services {
                let pids = find_pids(layout, *svc);
                if pids.is_empty() {
                    all = false;
                    println!("{}: stopped", svc.name());
                } else {
                    let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
                    println!("{}: running (pid {})", svc.name(), list.join(" "));
                }
            }
            // LSB: 0 = running, 3 = not running.
            Ok(if all {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
    }
}

/// Start every service of an installed node (used by setup).
pub fn start_all(layout: &Layout, node: &Node) -> Result<()> {
    for svc in ALL {
        start(layout, node, svc)?;
    }
    Ok(())
}

pub fn port_open(ip: IpAddr, port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_millis(300)).is_ok()
}

fn append_log(path: &Path) -> Result<fs::File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

fn log_line(path: &Path, msg: &str) {
    if let Ok(mut f) = append_log(path) {
        let ts = time::OffsetDateTime::now_utc();
        let _ = f.write_all(format!("[{ts}] {msg}\n").as_bytes());
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn start(layout: &Layout, node: &Node, svc: Svc) -> Result<()> {
    let existing = find_pids(layout, svc);
    if !existing.is_empty() {
        println!("{} is already running (pid {})", svc.name(), existing[0]);
        return Ok(());
    }
    let port = match svc {
        Svc::Opendj => slapd::LDAPS_PORT,
        Svc::Oxauth => node.https_port,
    };
    if port_open(node.ip, port) {
        bail!(
            "cannot start {}: {}:{port} is in use by another process",
            svc.name(),
            node.ip
        );
    }
    fs::create_dir_all(layout.run_dir())
        .with_context(|| format!("creating {}", layout.run_dir().display()))?;
    let (mut cmd, log) = match svc {
        Svc::Opendj => {
            let mut cmd = Command::new(slapd::slapd_binary());
            cmd.arg("-d")
                .arg("256")
                .arg("-f")
                .arg(layout.slapd_conf())
                .arg("-h")
                .arg(format!(
                    "{} {}",
                    slapd::ldaps_url(node.ip),
                    slapd::ldapi_url(layout)
                ));
            (cmd, layout.ldap_access_log())
        }
        Svc::Oxauth => {
            let exe = std::env::current_exe().context("locating the stand-in binary")?;
            let mut cmd = Command::new(exe);
            cmd.arg("oxauth").arg("--root").arg(&layout.root);
            (cmd, layout.oxauth_log())
        }
    };
    let out = append_log(&log)?;
    let err = out.try_clone().context("duplicating log handle")?;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", svc.name()))?;
    let pid = child.id();
    fs::write(layout.pid_file(svc.name()), format!("{pid}\n"))
        .with_context(|| format!("writing {}", layout.pid_file(svc.name()).display()))?;
    if svc == Svc::Opendj {
        log_line(
            &layout.ldap_errors_log(),
            &format!("slapd started, pid {pid}"),
        );
    }
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().context("waiting for the service")? {
            let _ = fs::remove_file(layout.pid_file(svc.name()));
            let msg = format!("{} exited during start ({status})", svc.name());
            if svc == Svc::Opendj {
                log_line(&layout.ldap_errors_log(), &msg);
            }
            bail!(
                "{msg}; last lines of {}:\n{}",
                log.display(),
                tail(&log, 15)
            );
        }
        if port_open(node.ip, port) {
            break;
        }
        if Instant::now() > deadline {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            let _ = child.wait();
            let _ = fs::remove_file(layout.pid_file(svc.name()));
            bail!(
                "{} did not accept connections on {}:{port} within {}s; last lines of {}:\n{}",
                svc.name(),
                node.ip,
                START_TIMEOUT.as_secs(),
                log.display(),
                tail(&log, 15)
            );
        }
        std::thread::sleep(POLL);
    }
    println!("Started {} (pid {pid}) on {}:{port}", svc.name(), node.ip);
    Ok(())
}

fn stop(layout: &Layout, svc: Svc) -> Result<()> {
    let pids = find_pids(layout, svc);
    if pids.is_empty() {
        let _ = fs::remove_file(layout.pid_file(svc.name()));
        println!("{} is not running", svc.name());
        return Ok(());
    }
    for pid in &pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
    }
    if !wait_gone(&pids, STOP_GRACE) {
        for pid in &pids {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        if !wait_gone(&pids, Duration::from_secs(5)) {
            bail!("{} (pid {:?}) did not stop", svc.name(), pids);
        }
    }
    let _ = fs::remove_file(layout.pid_file(svc.name()));
    if svc == Svc::Opendj {
        log_line(&layout.ldap_errors_log(), "slapd stopped");
    }
    println!("Stopped {}", svc.name());
    Ok(())
}

fn wait_gone(pids: &[i32], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if pids.iter().all(|p| !alive(*p)) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Whether a command line belongs to this node's service.
fn belongs(layout: &Layout, svc: Svc, args: &[String]) -> bool {
    match svc {
        Svc::Opendj => {
            let conf = layout.slapd_conf();
            let conf = conf.to_string_lossy();
            args.first().is_some_and(|a| a.ends_with("slapd")) && args.iter().any(|a| *a == *conf)
        }
        Svc::Oxauth => {
            let root = layout.root.to_string_lossy();
            args.get(1).is_some_and(|a| a == "oxauth")
                && args.windows(2).any(|w| w[0] == "--root" && w[1] == *root)
        }
    }
}

/// Live processes of a service: its pid file, and any process whose command line names this node.
fn find_pids(layout: &Layout, svc: Svc) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut pids = Vec::new();
    if let Ok(text) = fs::read_to_string(layout.pid_file(svc.name())) {
        if let Ok(pid) = text.trim().parse::<i32>() {
            if pid != me && alive(pid) && cmdline(pid).is_some_and(|a| belongs(layout, svc, &a)) {
                pids.push(pid);
            }
        }
    }
    for p in clustermgr_procfs::find(|args| belongs(layout, svc, args)) {
        if !pids.contains(&p.pid) {
            pids.push(p.pid);
        }
    }
    pids
}
