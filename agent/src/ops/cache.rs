//! The cache: redis-server, stunnel (server on a cache host, client on a Gluu node), twemproxy
//! (nutcracker) and Gluu's `oxCacheConfiguration`.
//!
//! - Configuration files are rendered here and written on directory handles under the agent's
//!   root (`/etc/redis/redis.conf` 0600, `/etc/stunnel/clustermgr-redis-*.conf`,
//!   `/etc/nutcracker/nutcracker.yml` 0600); the programs run through the daemon seam
//!   (`daemon.rs`: systemd units on a real host, the program itself with a pid file on a sandbox
//!   host).
//! - **Local address**: 127.0.0.1 on a real host; on a sandbox host its own loopback address
//!   (each sandbox host has one), so hosts sharing one machine do not collide.
//! - **stunnel keys never leave the node**: a fresh key and a CSR are made here, the controller
//!   signs the CSR with its cache CA (`CacheAgent/IssueCertificate`, honoured only for this
//!   running job), and stunnel trusts that CA alone, both ways (`verifyChain`, client
//!   certificates required by the server; the client also checks the server's address).
//! - twemproxy's configuration is checked with `nutcracker --test-conf` on a candidate file
//!   before it replaces the running one; on a sandbox host its statistics listen on the host's
//!   own address (its default, 0.0.0.0:22222, would collide between hosts on one machine).
//! - `CacheStatus` with `programs` reports which of them the node lacks (the install's
//!   package steps).
//! - The Redis password is registered with the job log's masking before anything runs, never
//!   formatted into an error, and written only into 0600 files.

use super::daemon::{self, Daemon};
use super::ids::{self, Db};
use super::{Ctx, Log, OpError, run_checked};
use crate::host::Command;
use crate::host::PackageMode;
use clustermgr_proto::cache_agent_client::CacheAgentClient;
use clustermgr_proto::{
    CacheStatus, CacheStatusOutput, ConfigureNutcracker, ConfigureNutcrackerOutput, ConfigureRedis,
    ConfigureRedisOutput, ConfigureStunnel, ConfigureStunnelOutput, IssueCacheCertificateRequest,
    SetCacheConfiguration, SetCacheConfigurationOutput, StunnelService, configure_stunnel,
    set_cache_configuration,
};
use clustermgr_shared::safefs::{self, FilePerms, SafeFsError};
use ldap3::{Mod, Scope, SearchEntry};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

pub const REDIS_CONF: &str = "/etc/redis/redis.conf";
pub const NUTCRACKER_CONF: &str = "/etc/nutcracker/nutcracker.yml";
/// The candidate configuration `nutcracker --test-conf` checks.
const NUTCRACKER_CHECK: &str = "/etc/nutcracker/nutcracker.yml.check";
const CONFIGURATION_DN: &str = "ou=configuration,o=gluu";
const PING_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_FILE: u64 = 1 << 20;

/// The address the node's local services use.
pub fn local_address(ctx: &Ctx) -> String {
    if ctx.host.packages == PackageMode::System {
        return "127.0.0.1".into();
    }
    ctx.view
        .address
        .clone()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "127.0.0.1".into())
}

fn system(ctx: &Ctx) -> bool {
    ctx.host.packages == PackageMode::System
}

fn host_port(host: &str, port: u32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn port(what: &str, p: u32) -> Result<u16, OpError> {
    u16::try_from(p)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| OpError(format!("{what}: {p} is not a TCP port")))
}

/// The password as text: UTF-8, no control characters, at most 512 bytes. The message never
/// holds it.
fn password(raw: &[u8], log: &mut Log) -> Result<String, OpError> {
    let p = String::from_utf8(raw.to_vec())
        .map_err(|_| OpError("the Redis password is not UTF-8".into()))?;
    if p.len() > 512 || p.chars().any(char::is_control) {
        return Err(OpError(
            "the Redis password must be at most 512 bytes without control characters".into(),
        ));
    }
    log.secret(&p);
    Ok(p)
}

/// A double-quoted string for redis.conf and nutcracker's YAML (backslash and quote escaped).
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

// ----- files on handles -----

/// Writes `abs` (under the root) unless it already holds `content` with `mode`; returns whether
/// it changed. Parent directories are created on handles.
fn write_file(
    ctx: &Ctx,
    abs: &str,
    content: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<bool, OpError> {
    let rel = abs.trim_start_matches('/');
    let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let err = |e: SafeFsError| OpError(format!("{abs}: {e}"));
    let base = safefs::open_dir(ctx.root()).map_err(err)?;
    let d = safefs::open_dir_beneath(&base, Path::new(dir), true).map_err(err)?;
    let name = OsStr::new(name);
    if let Some(st) = safefs::stat_entry(&d, name).map_err(err)?
        && (st.st_mode & 0o7777) == mode
        && owner.is_none_or(|(u, g)| st.st_uid == u && st.st_gid == g)
        && let Ok((old, _)) = safefs::read_regular(&d, name, MAX_FILE)
        && old == content
    {
        return Ok(false);
    }
    safefs::replace_file(
        &d,
        name,
        content,
        FilePerms {
            mode,
            uid: owner.map(|o| o.0),
            gid: owner.map(|o| o.1),
        },
    )
    .map_err(err)?;
    Ok(true)
}

/// Removes `abs` (under the root) when it exists; returns whether it did.
fn remove_file(ctx: &Ctx, abs: &str) -> Result<bool, OpError> {
    let p = ctx.host.path(abs);
    match std::fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => Err(OpError(format!("{abs} is a directory"))),
        Ok(_) => std::fs::remove_file(&p)
            .map(|()| true)
            .map_err(|e| OpError(format!("cannot remove {abs}: {e}"))),
        Err(_) => Ok(false),
    }
}

fn make_dir(ctx: &Ctx, abs: &str) -> Result<String, OpError> {
    let p = ctx.host.path(abs);
    std::fs::create_dir_all(&p).map_err(|e| OpError(format!("cannot create {abs}: {e}")))?;
    Ok(p.display().to_string())
}

/// The service account's ids on a real host run as root (the daemon reads its 0600 file).
fn service_owner(ctx: &Ctx, user: &str) -> Result<Option<(u32, u32)>, OpError> {
    if !system(ctx) || !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let uid = ids::resolve(ctx.root(), Db::Passwd, user)?;
    let gid = ids::resolve(ctx.root(), Db::Group, user)?;
    Ok(uid.zip(gid))
}

// ----- redis-server -----

pub fn redis_daemon(ctx: &Ctx) -> Daemon {
    Daemon {
        unit: "redis-server".into(),
        start_argv: vec![
            "redis-server".into(),
            ctx.host.path(REDIS_CONF).display().to_string(),
        ],
        pid_file: daemon::pid_file(&ctx.host, "redis"),
        reload_signal: None,
    }
}

/// redis.conf: the whole file is ours.
pub fn redis_conf(ctx: &Ctx, bind: &str, port: u16, password: &str) -> Result<String, OpError> {
    let mut c = String::from(
        "# Written by clustermgr (cache install); this file is replaced on every change.\n",
    );
    c.push_str(&format!("bind {bind}\nport {port}\nprotected-mode yes\n"));
    if system(ctx) {
        c.push_str("daemonize no\nsupervised systemd\npidfile /run/redis/redis-server.pid\n");
        c.push_str("dir /var/lib/redis\nlogfile /var/log/redis/redis-server.log\n");
    } else {
        let pid = daemon::pid_file(&ctx.host, "redis");
        // redis-server rewrites its command line: keep the configuration's path in it, so
        // the sandbox recognises its process (`sandbox down`).
        c.push_str("proc-title-template \"{title} {listen-addr} clustermgr {config-file}\"\n");
        c.push_str(&format!(
            "daemonize yes\npidfile {}\ndir {}\nlogfile {}/redis-server.log\n",
            pid.display(),
            make_dir(ctx, "/var/lib/redis")?,
            make_dir(ctx, "/var/log/redis")?,
        ));
    }
    c.push_str("save \"\"\nappendonly no\n");
    if !password.is_empty() {
        c.push_str(&format!("requirepass {}\n", quoted(password)));
    }
    Ok(c)
}

pub async fn configure_redis(
    ctx: &Ctx,
    req: ConfigureRedis,
    log: &mut Log,
) -> Result<ConfigureRedisOutput, OpError> {
    let d = redis_daemon(ctx);
    let bind = local_address(ctx);
    if req.remove {
        d.stop(&ctx.host, log).await?;
        let changed = remove_file(ctx, REDIS_CONF)?;
        log.line(format!(
            "redis-server stopped{}",
            if changed {
                format!("; {REDIS_CONF} removed")
            } else {
                String::new()
            }
        ));
        return Ok(ConfigureRedisOutput {
            address: String::new(),
            changed,
            running: false,
        });
    }
    let port = port("the Redis port", req.port)?;
    let pw = password(&req.password, log)?;
    let conf = redis_conf(ctx, &bind, port, &pw)?;
    let owner = service_owner(ctx, "redis")?;
    let changed = write_file(ctx, REDIS_CONF, conf.as_bytes(), 0o600, owner)?;
    log.line(format!(
        "{REDIS_CONF}: bind {bind} port {port}, {} ({})",
        if pw.is_empty() {
            "no password"
        } else {
            "requirepass set"
        },
        if changed { "written" } else { "unchanged" }
    ));
    if changed {
        d.restart(&ctx.host, log).await?;
    } else {
        d.ensure_started(&ctx.host, log).await?;
    }
    let running = d.state(&ctx.host, log).await?.running();
    if !running {
        return Err(OpError("redis-server is not running".into()));
    }
    Ok(ConfigureRedisOutput {
        address: host_port(&bind, u32::from(port)),
        changed,
        running,
    })
}

// ----- stunnel -----

fn stunnel_name(mode: configure_stunnel::Mode) -> Result<&'static str, OpError> {
    match mode {
        configure_stunnel::Mode::Server => Ok("clustermgr-redis-server"),
        configure_stunnel::Mode::Client => Ok("clustermgr-redis-client"),
        configure_stunnel::Mode::Unspecified => Err(OpError(
            "the stunnel mode (server or client) is required".into(),
        )),
    }
}

fn stunnel_file(name: &str, ext: &str) -> String {
    format!("/etc/stunnel/{name}.{ext}")
}

pub fn stunnel_daemon(ctx: &Ctx, name: &str) -> Daemon {
    Daemon {
        unit: "stunnel4".into(),
        start_argv: vec![
            "stunnel4".into(),
            ctx.host
                .path(&stunnel_file(name, "conf"))
                .display()
                .to_string(),
        ],
        pid_file: daemon::pid_file(&ctx.host, name),
        reload_signal: None,
    }
}

/// One stunnel service: `[name]`, accept, connect, and (client) the address or name the
/// server's certificate must carry.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub accept: String,
    pub connect: String,
    pub check: Option<String>,
}

/// stunnel's configuration: mutual verification against the cache CA only.
pub fn stunnel_conf(
    ctx: &Ctx,
    name: &str,
    client: bool,
    services: &[Service],
) -> Result<String, OpError> {
    let path = |ext: &str| {
        ctx.host
            .path(&stunnel_file(name, ext))
            .display()
            .to_string()
    };
    let mut c = format!(
        "; Written by clustermgr (cache install); this file is replaced on every change.\n; stunnel {} for Redis.\n",
        if client { "client" } else { "server" }
    );
    if system(ctx) {
        c.push_str(&format!("pid = /run/stunnel4/{name}.pid\n"));
        c.push_str(&format!("output = /var/log/stunnel4/{name}.log\n"));
    } else {
        c.push_str(&format!(
            "pid = {}\n",
            daemon::pid_file(&ctx.host, name).display()
        ));
        c.push_str(&format!(
            "output = {}/{name}.log\n",
            make_dir(ctx, "/var/log/stunnel4")?
        ));
    }
    c.push_str("foreground = no\n");
    for Service {
        name: svc,
        accept,
        connect,
        check,
    } in services
    {
        c.push_str(&format!("\n[{svc}]\n"));
        if client {
            c.push_str("client = yes\n");
        }
        c.push_str(&format!("accept = {accept}\nconnect = {connect}\n"));
        c.push_str(&format!(
            "cert = {}\nkey = {}\nCAfile = {}\n",
            path("crt"),
            path("key"),
            ctx.host.path(&stunnel_file(name, "ca.crt")).display()
        ));
        c.push_str("sslVersionMin = TLSv1.2\nverifyChain = yes\nrequireCert = yes\n");
        if let Some(h) = check {
            if h.parse::<std::net::IpAddr>().is_ok() {
                c.push_str(&format!("checkIP = {h}\n"));
            } else {
                c.push_str(&format!("checkHost = {h}\n"));
            }
        }
    }
    Ok(c)
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
}

fn valid_service(n: &str) -> bool {
    !n.is_empty() && n.len() <= 64 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

pub async fn configure_stunnel(
    ctx: &Ctx,
    req: ConfigureStunnel,
    log: &mut Log,
) -> Result<ConfigureStunnelOutput, OpError> {
    let mode = req.mode();
    let name = stunnel_name(mode)?;
    let client = mode == configure_stunnel::Mode::Client;
    let d = stunnel_daemon(ctx, name);
    if req.remove {
        d.stop(&ctx.host, log).await?;
        let mut removed = Vec::new();
        for ext in ["conf", "crt", "key", "ca.crt"] {
            let f = stunnel_file(name, ext);
            if remove_file(ctx, &f)? {
                removed.push(f);
            }
        }
        if system(ctx) && !removed.is_empty() {
            // Debian's stunnel4 unit runs every configuration: restarting drops this one.
            d.restart(&ctx.host, log).await?;
        }
        log.line(format!(
            "stunnel {name} stopped; removed {}",
            if removed.is_empty() {
                "nothing".to_string()
            } else {
                removed.join(", ")
            }
        ));
        return Ok(ConfigureStunnelOutput {
            accepts: Vec::new(),
            running: false,
        });
    }
    if req.services.is_empty() {
        return Err(OpError("no stunnel service to configure".into()));
    }
    let local = local_address(ctx);
    let mut services = Vec::new();
    let mut accepts = Vec::new();
    for StunnelService {
        name: svc,
        accept_host,
        accept_port,
        connect_host,
        connect_port,
    } in &req.services
    {
        if !valid_service(svc) {
            return Err(OpError(format!("{svc:?} is not a service name")));
        }
        let ah = if accept_host.is_empty() {
            local.clone()
        } else {
            accept_host.clone()
        };
        let ch = if connect_host.is_empty() {
            local.clone()
        } else {
            connect_host.clone()
        };
        for h in [&ah, &ch] {
            if !valid_host(h) {
                return Err(OpError(format!("{h:?} is not a host")));
            }
        }
        accepts.push(host_port(&ah, *accept_port));
        services.push(Service {
            name: svc.clone(),
            accept: format!("{ah}:{}", port("accept port", *accept_port)?),
            connect: format!("{ch}:{}", port("connect port", *connect_port)?),
            check: client.then_some(ch),
        });
    }
    // The key is made here and never sent; the controller signs its CSR for this job only.
    let cn = ctx
        .view
        .hostname
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| local.clone());
    let (key, csr) = clustermgr_shared::pki::new_key_and_csr(&cn)
        .map_err(|e| OpError(format!("cannot make a key: {e}")))?;
    let channel = ctx.channel.clone().ok_or_else(|| {
        OpError("this agent has no connection to ask for its certificate over".into())
    })?;
    log.line(format!(
        "key made on the node; asking the controller to sign its CSR ({name})"
    ));
    let issued = CacheAgentClient::new(channel)
        .issue_certificate(IssueCacheCertificateRequest {
            job_id: req.job_id.clone(),
            csr_der: csr,
        })
        .await
        .map_err(|s| {
            OpError(format!(
                "the controller refused the certificate: {}",
                s.message()
            ))
        })?
        .into_inner();
    let conf = stunnel_conf(ctx, name, client, &services)?;
    write_file(
        ctx,
        &stunnel_file(name, "key"),
        key.expose().as_bytes(),
        0o600,
        None,
    )?;
    write_file(
        ctx,
        &stunnel_file(name, "crt"),
        issued.certificate_pem.as_bytes(),
        0o644,
        None,
    )?;
    write_file(
        ctx,
        &stunnel_file(name, "ca.crt"),
        issued.ca_pem.as_bytes(),
        0o644,
        None,
    )?;
    write_file(
        ctx,
        &stunnel_file(name, "conf"),
        conf.as_bytes(),
        0o644,
        None,
    )?;
    for s in &services {
        log.line(format!(
            "[{}] accept {} -> connect {}",
            s.name, s.accept, s.connect
        ));
    }
    // A new certificate: the daemon restarts to load it.
    d.restart(&ctx.host, log).await?;
    let running = d.state(&ctx.host, log).await?.running();
    if !running {
        return Err(OpError(format!("stunnel ({name}) is not running")));
    }
    Ok(ConfigureStunnelOutput { accepts, running })
}

// ----- twemproxy -----

/// nutcracker's statistics port (on the local address; its default is 0.0.0.0:22222, which
/// sandbox hosts sharing one machine would fight over).
pub const NUTCRACKER_STATS_PORT: u16 = 22222;

pub fn nutcracker_daemon(ctx: &Ctx) -> Daemon {
    let log_dir = ctx.host.path("/var/log/nutcracker");
    Daemon {
        unit: "nutcracker".into(),
        start_argv: vec![
            "nutcracker".into(),
            "--daemonize".into(),
            "--conf-file".into(),
            ctx.host.path(NUTCRACKER_CONF).display().to_string(),
            "--pid-file".into(),
            daemon::pid_file(&ctx.host, "nutcracker")
                .display()
                .to_string(),
            "--output".into(),
            log_dir.join("nutcracker.log").display().to_string(),
            "--stats-addr".into(),
            local_address(ctx),
            "--stats-port".into(),
            NUTCRACKER_STATS_PORT.to_string(),
        ],
        pid_file: daemon::pid_file(&ctx.host, "nutcracker"),
        reload_signal: None,
    }
}

/// nutcracker's pool: the reference's settings (sharded with ketama over fnv1a_64).
pub fn nutcracker_conf(listen: &str, servers: &[String], password: &str) -> String {
    let mut c = String::from(
        "# Written by clustermgr (cache install); this file is replaced on every change.\nclustermgr:\n",
    );
    c.push_str(&format!("  listen: {listen}\n"));
    c.push_str("  hash: fnv1a_64\n  distribution: ketama\n  auto_eject_hosts: true\n");
    c.push_str("  redis: true\n");
    if !password.is_empty() {
        c.push_str(&format!("  redis_auth: {}\n", quoted(password)));
    }
    c.push_str("  server_retry_timeout: 30000\n  server_failure_limit: 2\n  timeout: 400\n");
    c.push_str("  servers:\n");
    for s in servers {
        c.push_str(&format!("   - {s}:1\n"));
    }
    c
}

pub async fn configure_nutcracker(
    ctx: &Ctx,
    req: ConfigureNutcracker,
    log: &mut Log,
) -> Result<ConfigureNutcrackerOutput, OpError> {
    let d = nutcracker_daemon(ctx);
    if req.remove {
        d.stop(&ctx.host, log).await?;
        let removed = remove_file(ctx, NUTCRACKER_CONF)?;
        log.line(format!(
            "twemproxy stopped{}",
            if removed {
                format!("; {NUTCRACKER_CONF} removed")
            } else {
                String::new()
            }
        ));
        return Ok(ConfigureNutcrackerOutput {
            listen: String::new(),
            running: false,
        });
    }
    let pw = password(&req.password, log)?;
    let local = local_address(ctx);
    let listen = host_port(&local, u32::from(port("listen port", req.listen_port)?));
    let mut servers = Vec::new();
    for p in &req.server_ports {
        servers.push(host_port(&local, u32::from(port("server port", *p)?)));
    }
    if servers.is_empty() {
        return Err(OpError("twemproxy needs at least one server".into()));
    }
    make_dir(ctx, "/var/log/nutcracker")?;
    let owner = service_owner(ctx, "nutcracker")?;
    let conf = nutcracker_conf(&listen, &servers, &pw);
    // The candidate is checked by nutcracker itself before it replaces the running one.
    write_file(ctx, NUTCRACKER_CHECK, conf.as_bytes(), 0o600, owner)?;
    let checked = run_checked(
        &ctx.host,
        &Command::new([
            "nutcracker".to_string(),
            "--test-conf".into(),
            "--conf-file".into(),
            ctx.host.path(NUTCRACKER_CHECK).display().to_string(),
        ]),
        log,
        "nutcracker --test-conf",
    )
    .await;
    remove_file(ctx, NUTCRACKER_CHECK)?;
    checked?;
    let changed = write_file(ctx, NUTCRACKER_CONF, conf.as_bytes(), 0o600, owner)?;
    log.line(format!(
        "{NUTCRACKER_CONF}: listen {listen}, servers {} ({})",
        servers.join(", "),
        if changed { "written" } else { "unchanged" }
    ));
    if changed {
        d.restart(&ctx.host, log).await?;
    } else {
        d.ensure_started(&ctx.host, log).await?;
    }
    let running = d.state(&ctx.host, log).await?.running();
    if !running {
        return Err(OpError("twemproxy is not running".into()));
    }
    Ok(ConfigureNutcrackerOutput { listen, running })
}

// ----- status -----

/// One RESP command as an array of bulk strings.
pub fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// AUTH (when a password is given) then PING; the reply's first line, errors without the
/// password.
pub async fn ping(addr: &str, password: &str) -> Result<(), String> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        let mut line = String::new();
        if !password.is_empty() {
            w.write_all(&resp(&[b"AUTH", password.as_bytes()]))
                .await
                .map_err(|e| format!("write: {e}"))?;
            r.read_line(&mut line)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if line.trim_end() != "+OK" {
                return Err(format!("AUTH refused: {}", first_words(&line)));
            }
            line.clear();
        }
        w.write_all(&resp(&[b"PING"]))
            .await
            .map_err(|e| format!("write: {e}"))?;
        r.read_line(&mut line)
            .await
            .map_err(|e| format!("read: {e}"))?;
        match line.trim_end() {
            "+PONG" => Ok(()),
            "" => Err("the connection closed without an answer".into()),
            other => Err(format!("PING answered {}", first_words(other))),
        }
    };
    tokio::time::timeout(PING_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer from {addr} within {PING_TIMEOUT:?}"))?
}

fn first_words(s: &str) -> String {
    s.trim().chars().take(120).collect()
}

/// Whether `program` is an executable file in the agent's PATH or the system's program
/// directories (sandbox hosts run the machine's programs, so the same look-up serves both).
pub fn program_present(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            [
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
            .map(std::path::PathBuf::from),
        )
        .any(|d| {
            std::fs::metadata(d.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn valid_program(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 64
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !p.starts_with('.')
}

pub async fn status(
    ctx: &Ctx,
    req: CacheStatus,
    log: &mut Log,
) -> Result<CacheStatusOutput, OpError> {
    let pw = password(&req.password, log)?;
    let mut out = CacheStatusOutput::default();
    let mut problems = Vec::new();
    for p in &req.programs {
        if !valid_program(p) {
            return Err(OpError(format!("{p:?} is not a program name")));
        }
        let present = program_present(p);
        log.line(format!(
            "{p}: {}",
            if present { "present" } else { "not found" }
        ));
        if !present {
            out.missing_programs.push(p.clone());
        }
    }
    if !(req.server || req.client || req.nutcracker || req.ping_port != 0) {
        return Ok(out);
    }
    if req.server {
        out.redis_running = redis_daemon(ctx).state(&ctx.host, log).await?.running();
        out.stunnel_running = stunnel_daemon(ctx, "clustermgr-redis-server")
            .state(&ctx.host, log)
            .await?
            .running();
    }
    if req.client {
        out.stunnel_running = stunnel_daemon(ctx, "clustermgr-redis-client")
            .state(&ctx.host, log)
            .await?
            .running();
    }
    if req.nutcracker {
        out.nutcracker_running = nutcracker_daemon(ctx)
            .state(&ctx.host, log)
            .await?
            .running();
        if !out.nutcracker_running {
            problems.push("twemproxy is not running".to_string());
        }
    }
    if req.server && !out.redis_running {
        problems.push("redis-server is not running".into());
    }
    if (req.server || req.client) && !out.stunnel_running {
        problems.push("stunnel is not running".into());
    }
    if req.ping_port != 0 {
        let addr = host_port(
            &local_address(ctx),
            u32::from(port("ping port", req.ping_port)?),
        );
        out.ping_address = addr.clone();
        match ping(&addr, &pw).await {
            Ok(()) => {
                out.ping_ok = true;
                log.line(format!("PING {addr}: PONG"));
            }
            Err(e) => {
                log.line(format!("PING {addr}: {e}"));
                problems.push(format!("PING {addr}: {e}"));
                out.ping_error = e;
            }
        }
    }
    log.line(format!(
        "redis {} stunnel {} twemproxy {}",
        updown(out.redis_running),
        updown(out.stunnel_running),
        updown(out.nutcracker_running)
    ));
    if req.require_healthy && !problems.is_empty() {
        return Err(OpError(problems.join("; ")));
    }
    Ok(out)
}

fn updown(b: bool) -> &'static str {
    if b { "up" } else { "down" }
}

// ----- Gluu's oxCacheConfiguration -----

/// The new `oxCacheConfiguration` JSON from the current one (other keys kept).
pub fn cache_configuration(
    current: &str,
    provider: set_cache_configuration::Provider,
    servers: &str,
    password: &str,
    sharded: bool,
) -> Result<String, OpError> {
    let mut conf: serde_json::Value = if current.trim().is_empty() {
        serde_json::json!({})
    } else {
        serde_json::from_str(current)
            .map_err(|e| OpError(format!("oxCacheConfiguration is not JSON: {e}")))?
    };
    let obj = conf
        .as_object_mut()
        .ok_or_else(|| OpError("oxCacheConfiguration is not a JSON object".into()))?;
    match provider {
        set_cache_configuration::Provider::NativePersistence => {
            obj.insert("cacheProviderType".into(), "NATIVE_PERSISTENCE".into());
        }
        set_cache_configuration::Provider::Redis => {
            obj.insert("cacheProviderType".into(), "REDIS".into());
            let redis = obj
                .entry("redisConfiguration")
                .or_insert_with(|| serde_json::json!({}));
            let r = redis
                .as_object_mut()
                .ok_or_else(|| OpError("redisConfiguration is not a JSON object".into()))?;
            if !servers.is_empty() {
                r.insert("servers".into(), servers.into());
                r.insert(
                    "redisProviderType".into(),
                    if sharded { "SHARDED" } else { "STANDALONE" }.into(),
                );
            }
            r.insert("useSSL".into(), false.into());
            r.insert(
                "decryptedPassword".into(),
                if password.is_empty() {
                    serde_json::Value::Null
                } else {
                    password.into()
                },
            );
            r.insert("password".into(), serde_json::Value::Null);
        }
        set_cache_configuration::Provider::Unspecified => {
            return Err(OpError("the cache provider is required".into()));
        }
    }
    serde_json::to_string(&conf).map_err(|e| OpError(e.to_string()))
}

fn first_value(entry: &SearchEntry, attr: &str) -> Option<String> {
    entry.attrs.get(attr).and_then(|v| v.first()).cloned()
}

async fn read_entry(
    ldap: &mut ldap3::Ldap,
    dn: &str,
    attr: &str,
) -> Result<Option<String>, OpError> {
    let (entries, _) = ldap
        .search(dn, Scope::Base, "(objectClass=*)", vec![attr])
        .await
        .map_err(|e| OpError(format!("{dn}: {e}")))?
        .success()
        .map_err(|e| OpError(format!("{dn}: {e}")))?;
    let entry = entries
        .into_iter()
        .next()
        .map(SearchEntry::construct)
        .ok_or_else(|| OpError(format!("{dn} does not exist")))?;
    Ok(first_value(&entry, attr))
}

pub async fn set_cache_configuration(
    ctx: &Ctx,
    req: SetCacheConfiguration,
    log: &mut Log,
) -> Result<SetCacheConfigurationOutput, OpError> {
    let pw = password(&req.redis_password, log)?;
    let provider = req.provider();
    let mut ldap = super::ldap::connect(ctx, &req.host, req.port, &req.admin_password, log).await?;
    let result = async {
        let current = read_entry(&mut ldap, CONFIGURATION_DN, "oxCacheConfiguration")
            .await?
            .unwrap_or_default();
        let next = cache_configuration(&current, provider, &req.servers, &pw, req.sharded)?;
        let kind = match provider {
            set_cache_configuration::Provider::Redis => "REDIS",
            _ => "NATIVE_PERSISTENCE",
        };
        let old_rev = read_entry(&mut ldap, super::ldap::OXAUTH_DN, "oxRevision")
            .await?
            .and_then(|r| r.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let same = serde_json::from_str::<serde_json::Value>(&current).ok()
            == serde_json::from_str::<serde_json::Value>(&next).ok();
        if same {
            log.line(format!(
                "oxCacheConfiguration already {kind} as asked (revision {old_rev}); nothing to do"
            ));
            return Ok(SetCacheConfigurationOutput {
                changed: false,
                revision: old_rev,
            });
        }
        let r = ldap
            .modify(
                CONFIGURATION_DN,
                vec![Mod::Replace(
                    "oxCacheConfiguration".to_string(),
                    HashSet::from([next]),
                )],
            )
            .await
            .map_err(|e| OpError(format!("{CONFIGURATION_DN}: {e}")))?;
        if r.rc != 0 {
            return Err(OpError(format!(
                "modify of {CONFIGURATION_DN} refused (LDAP result code {})",
                r.rc
            )));
        }
        log.line(format!(
            "oxCacheConfiguration: cacheProviderType {kind}{}",
            if provider == set_cache_configuration::Provider::Redis {
                format!(
                    ", servers {}, {}",
                    if req.servers.is_empty() {
                        "kept"
                    } else {
                        req.servers.as_str()
                    },
                    if pw.is_empty() {
                        "no password"
                    } else {
                        "password set"
                    }
                )
            } else {
                String::new()
            }
        ));
        let next_rev = old_rev + 1;
        let r = ldap
            .modify(
                super::ldap::OXAUTH_DN,
                vec![Mod::Replace(
                    "oxRevision".to_string(),
                    HashSet::from([next_rev.to_string()]),
                )],
            )
            .await
            .map_err(|e| OpError(format!("{}: {e}", super::ldap::OXAUTH_DN)))?;
        if r.rc != 0 {
            return Err(OpError(format!(
                "oxRevision not moved on (LDAP result code {})",
                r.rc
            )));
        }
        log.line(format!("oxRevision {old_rev} -> {next_rev}"));
        Ok(SetCacheConfigurationOutput {
            changed: true,
            revision: next_rev,
        })
    }
    .await;
    let _ = ldap.unbind().await;
    result
}

#[cfg(test)]
mod tests;
