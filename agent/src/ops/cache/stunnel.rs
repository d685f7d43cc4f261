//! stunnel: the server in front of Redis on a cache host, the client on a Gluu node. Debian's
//! `stunnel4` unit runs every configuration in /etc/stunnel; on CentOS and RHEL each of ours runs
//! in its own `stunnel@NAME` unit, whose file is written here (as Gluu's cluster manager wrote
//! its own stunnel unit there): its type and pid file are then those of this configuration
//! whatever the distribution's template says, and it exists where the package has none.

use super::names::Names;
use super::{
    daemon_reload, enable, host_port, local_address, make_dir, port, remove_file, system,
    write_file,
};
use crate::host::PackageFormat;
use crate::ops::daemon::{self, Daemon};
use crate::ops::{Ctx, Log, OpError};
use clustermgr_proto::cache_agent_client::CacheAgentClient;
use clustermgr_proto::{
    ConfigureStunnel, ConfigureStunnelOutput, IssueCacheCertificateRequest, StunnelService,
    configure_stunnel,
};

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
    let names = Names::of(&ctx.host);
    Daemon {
        unit: names.stunnel_unit(name),
        start_argv: vec![
            names.stunnel_program.into(),
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
        let names = Names::of(&ctx.host);
        c.push_str(&format!("pid = {}\n", names.stunnel_pid(name)));
        if let Some(output) = names.stunnel_output(name) {
            c.push_str(&format!("output = {output}\n"));
        }
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
    if req.remove {
        remove_stunnel(ctx, name, log).await?;
        return Ok(ConfigureStunnelOutput {
            accepts: Vec::new(),
            running: false,
        });
    }
    if req.services.is_empty() {
        return Err(OpError("no stunnel service to configure".into()));
    }
    let local = local_address(ctx);
    let (services, accepts) = services_of(&req, &local, client)?;
    let (key, issued) = issue_certificate(ctx, &req.job_id, name, &local, log).await?;
    let conf = stunnel_conf(ctx, name, client, &services)?;
    let files: [(&str, &[u8], u32); 4] = [
        ("key", key.expose().as_bytes(), 0o600),
        ("crt", issued.certificate_pem.as_bytes(), 0o644),
        ("ca.crt", issued.ca_pem.as_bytes(), 0o644),
        ("conf", conf.as_bytes(), 0o644),
    ];
    for (ext, content, mode) in files {
        write_file(ctx, &stunnel_file(name, ext), content, mode, None)?;
    }
    for s in &services {
        log.line(format!(
            "[{}] accept {} -> connect {}",
            s.name, s.accept, s.connect
        ));
    }
    // A new certificate: the daemon restarts to load it.
    restart(ctx, name, log).await?;
    Ok(ConfigureStunnelOutput {
        accepts,
        running: true,
    })
}

/// Stops stunnel `name` and removes its files (and its own unit, where it has one).
async fn remove_stunnel(ctx: &Ctx, name: &str, log: &mut Log) -> Result<(), OpError> {
    let d = stunnel_daemon(ctx, name);
    d.stop(&ctx.host, log).await?;
    let shared = Names::of(&ctx.host).stunnel_shared();
    if !shared {
        enable(ctx, &d.unit, false, log).await?;
    }
    let mut removed = Vec::new();
    for ext in ["conf", "crt", "key", "ca.crt"] {
        let f = stunnel_file(name, ext);
        if remove_file(ctx, &f)? {
            removed.push(f);
        }
    }
    if let Some((unit_file, _)) = unit_file(ctx, name)
        && remove_file(ctx, &unit_file)?
    {
        removed.push(unit_file);
        daemon_reload(ctx, log).await?;
    }
    if system(ctx) && shared && !removed.is_empty() {
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
    Ok(())
}

/// The request's services as stunnel runs them (a host left empty: this node's address) and
/// the addresses they accept on.
fn services_of(
    req: &ConfigureStunnel,
    local: &str,
    client: bool,
) -> Result<(Vec<Service>, Vec<String>), OpError> {
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
            local.to_string()
        } else {
            accept_host.clone()
        };
        let ch = if connect_host.is_empty() {
            local.to_string()
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
    Ok((services, accepts))
}

/// A key made on the node and its certificate, which the controller signs for this job.
async fn issue_certificate(
    ctx: &Ctx,
    job_id: &str,
    name: &str,
    local: &str,
    log: &mut Log,
) -> Result<
    (
        clustermgr_shared::Secret<String>,
        clustermgr_proto::IssueCacheCertificateResponse,
    ),
    OpError,
> {
    // The key is made here and never sent; the controller signs its CSR for this job only.
    let cn = ctx
        .view
        .hostname
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| local.to_string());
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
            job_id: job_id.to_string(),
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
    Ok((key, issued))
}

/// CentOS and RHEL: the unit that runs configuration `name` (its path and content).
pub fn unit_file(ctx: &Ctx, name: &str) -> Option<(String, String)> {
    let names = Names::of(&ctx.host);
    if !system(ctx) || names.format != PackageFormat::Rpm {
        return None;
    }
    let unit = names.stunnel_unit(name);
    let conf = stunnel_file(name, "conf");
    Some((
        format!("/etc/systemd/system/{unit}.service"),
        format!(
            "# Written by clustermgr (cache install); this file is replaced on every change.\n\
             [Unit]\n\
             Description=stunnel {name} (clustermgr cache)\n\
             Wants=network-online.target\n\
             After=network-online.target\n\
             \n\
             [Service]\n\
             Type=forking\n\
             PIDFile={pid}\n\
             ExecStart=/usr/bin/{program} {conf}\n\
             Restart=on-failure\n\
             \n\
             [Install]\n\
             WantedBy=multi-user.target\n",
            pid = names.stunnel_pid(name),
            program = names.stunnel_program,
        ),
    ))
}

/// (Re)starts the unit or program that runs configuration `name` (its unit written and enabled
/// first where it is ours); fails unless it then runs.
pub async fn restart(ctx: &Ctx, name: &str, log: &mut Log) -> Result<(), OpError> {
    let d = stunnel_daemon(ctx, name);
    if let Some((path, content)) = unit_file(ctx, name)
        && write_file(ctx, &path, content.as_bytes(), 0o644, None)?
    {
        log.line(format!("{path} written"));
        daemon_reload(ctx, log).await?;
    }
    enable(ctx, &d.unit, true, log).await?;
    d.restart(&ctx.host, log).await?;
    if !d.state(&ctx.host, log).await?.running() {
        return Err(OpError(format!("stunnel ({name}) is not running")));
    }
    Ok(())
}
