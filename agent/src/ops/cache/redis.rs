//! Redis on a cache host: its whole redis.conf, where the distribution's unit reads it.

use super::names::Names;
use super::{
    enable, host_port, local_address, make_dir, password, port, quoted, remove_file, service_owner,
    system, write_file,
};
use crate::ops::daemon::{self, Daemon};
use crate::ops::{Ctx, Log, OpError};
use clustermgr_proto::{ConfigureRedis, ConfigureRedisOutput};

/// The redis.conf this host's Redis reads (under the root on a sandbox host).
pub fn redis_conf_path(ctx: &Ctx) -> &'static str {
    if system(ctx) {
        Names::of(&ctx.host).redis_conf(&ctx.host)
    } else {
        super::REDIS_CONF
    }
}

pub fn redis_daemon(ctx: &Ctx) -> Daemon {
    Daemon {
        unit: Names::of(&ctx.host).redis_unit.into(),
        start_argv: vec![
            "redis-server".into(),
            ctx.host.path(redis_conf_path(ctx)).display().to_string(),
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
        let names = Names::of(&ctx.host);
        c.push_str("daemonize no\nsupervised systemd\n");
        if let Some(pid) = names.redis_pid {
            c.push_str(&format!("pidfile {pid}\n"));
        }
        c.push_str(&format!(
            "dir /var/lib/redis\nlogfile {}\n",
            names.redis_log
        ));
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
    let conf_path = redis_conf_path(ctx);
    let bind = local_address(ctx);
    if req.remove {
        d.stop(&ctx.host, log).await?;
        // Not started again at boot without its configuration.
        enable(ctx, &d.unit, false, log).await?;
        let changed = remove_file(ctx, conf_path)?;
        log.line(format!(
            "{} stopped{}",
            d.unit,
            if changed {
                format!("; {conf_path} removed")
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
    let changed = write_file(ctx, conf_path, conf.as_bytes(), 0o600, owner)?;
    log.line(format!(
        "{conf_path}: bind {bind} port {port}, {} ({})",
        if pw.is_empty() {
            "no password"
        } else {
            "requirepass set"
        },
        if changed { "written" } else { "unchanged" }
    ));
    // Started at boot (CentOS and RHEL do not enable the unit they install).
    enable(ctx, &d.unit, true, log).await?;
    if changed {
        d.restart(&ctx.host, log).await?;
    } else {
        d.ensure_started(&ctx.host, log).await?;
    }
    let running = d.state(&ctx.host, log).await?.running();
    if !running {
        return Err(OpError(format!("{} is not running", d.unit)));
    }
    Ok(ConfigureRedisOutput {
        address: host_port(&bind, u32::from(port)),
        changed,
        running,
    })
}
