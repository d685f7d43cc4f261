//! twemproxy (nutcracker) on a Gluu node in front of several Redis servers: its configuration is
//! checked with `nutcracker --test-conf` on a candidate file before it replaces the running one.

use super::{
    host_port, local_address, make_dir, password, port, quoted, remove_file, service_owner,
    write_file,
};
use crate::host::Command;
use crate::ops::daemon::{self, Daemon};
use crate::ops::{Ctx, Log, OpError, run_checked};
use clustermgr_proto::{ConfigureNutcracker, ConfigureNutcrackerOutput};

pub const NUTCRACKER_CONF: &str = "/etc/nutcracker/nutcracker.yml";
/// The candidate configuration `nutcracker --test-conf` checks.
const NUTCRACKER_CHECK: &str = "/etc/nutcracker/nutcracker.yml.check";

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
