//! Redis on a cache host: its whole redis.conf, where the distribution's unit reads it.
//!
//! **Passwords** (`requirepass` for one; Redis 6 and later: the default user's ACL line for
//! several, `user default on ">a" ">b" ~* &* +@all`). A password roll (`keep_accepting`) adds the
//! new password to those the file accepts now; the roll's end (`keep_accepting` off) leaves the
//! new one alone. A running Redis takes a change that touches only its passwords at once (`ACL
//! SETUSER default on resetpass ...`, or `CONFIG SET requirepass` before Redis 6), over its own
//! port (never an argv), and is not restarted: its data stays. Redis before 6 holds one
//! password: a roll there moves to the new one at once.

use super::names::Names;
use super::{
    enable, host_port, local_address, make_dir, password, port, quoted, read_file, remove_file,
    service_owner, system, write_file,
};
use crate::host::Command;
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

/// redis.conf: the whole file is ours. `passwords`: those Redis accepts (none, or one empty:
/// none needed); several only where Redis has ACLs (6 and later).
pub fn redis_conf(
    ctx: &Ctx,
    bind: &str,
    port: u16,
    passwords: &[String],
) -> Result<String, OpError> {
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
    c.push_str(&password_lines(passwords));
    Ok(c)
}

/// The lines of redis.conf that say which passwords Redis accepts.
fn password_lines(passwords: &[String]) -> String {
    match passwords {
        _ if passwords.iter().any(String::is_empty) => String::new(),
        [] => String::new(),
        [one] => format!("requirepass {}\n", quoted(one)),
        several => {
            let each: Vec<String> = several.iter().map(|p| quoted(&format!(">{p}"))).collect();
            format!("user default on {} ~* &* +@all\n", each.join(" "))
        }
    }
}

fn password_line(line: &str) -> bool {
    line.starts_with("requirepass ") || line.starts_with("user default ")
}

/// A double-quoted token of [`quoted`] read back (None: not one).
fn unquoted(token: &str) -> Option<(String, &str)> {
    let mut chars = token.strip_prefix('"')?.char_indices();
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            '"' => return Some((out, &token[i + 2..])),
            c => out.push(c),
        }
    }
    None
}

/// The passwords a redis.conf written by [`redis_conf`] accepts; an empty one when it needs
/// none.
pub fn accepted_passwords(conf: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in conf.lines().filter(|l| password_line(l)) {
        let mut rest = line.split_once(' ').map_or("", |(_, r)| r);
        if let Some(r) = rest.strip_prefix("default on ") {
            rest = r;
        }
        while let Some((p, r)) = unquoted(rest.trim_start()) {
            out.push(p.strip_prefix('>').map_or(p.clone(), str::to_string));
            rest = r;
        }
    }
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

/// Whether this host's redis-server has ACLs (Redis 6 and later), from `redis-server --version`.
async fn has_acls(ctx: &Ctx) -> bool {
    let Ok(out) = ctx
        .host
        .runner
        .run(&Command::new(["redis-server", "--version"]))
        .await
    else {
        return false;
    };
    out.stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok())
        .is_some_and(|major| major >= 6)
}

/// The running Redis at `addr` takes `passwords` (authenticated with one it takes now).
async fn set_running_passwords(
    addr: &str,
    now: &[String],
    passwords: &[String],
    acls: bool,
) -> Result<(), OpError> {
    let mut args: Vec<Vec<u8>> = if acls {
        ["ACL", "SETUSER", "default", "on", "resetpass"]
            .iter()
            .map(|a| a.as_bytes().to_vec())
            .collect()
    } else {
        vec![b"CONFIG".to_vec(), b"SET".to_vec(), b"requirepass".to_vec()]
    };
    match (acls, passwords) {
        (true, p) if p.is_empty() || p.iter().any(String::is_empty) => {
            args.push(b"nopass".to_vec())
        }
        (true, p) => args.extend(p.iter().map(|p| format!(">{p}").into_bytes())),
        (false, p) => args.push(p.last().cloned().unwrap_or_default().into_bytes()),
    }
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    let reply = super::command(addr, now, &refs).await.map_err(OpError)?;
    if reply != "+OK" {
        // Redis may quote a rule it refused: only its error's first word.
        let code = reply.split_whitespace().next().unwrap_or("no answer");
        return Err(OpError(format!(
            "Redis at {addr} refused the change of its passwords ({code})"
        )));
    }
    Ok(())
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
            accepted_passwords: 0,
        });
    }
    let port = port("the Redis port", req.port)?;
    let pw = password(&req.password, log)?;
    let before = read_file(ctx, conf_path)?;
    let now = before
        .as_deref()
        .map(accepted_passwords)
        .unwrap_or_default();
    for p in &now {
        log.secret(p);
    }
    let mut passwords = vec![pw.clone()];
    if req.keep_accepting {
        passwords = now.iter().filter(|p| **p != pw).cloned().collect();
        passwords.push(pw.clone());
    }
    if passwords.len() > 1 && !passwords.iter().any(String::is_empty) && !has_acls(ctx).await {
        log.line("this Redis has no ACLs (before Redis 6): it takes one password, the new one");
        passwords = vec![pw.clone()];
    }
    let conf = redis_conf(ctx, &bind, port, &passwords)?;
    let owner = service_owner(ctx, "redis")?;
    let changed = write_file(ctx, conf_path, conf.as_bytes(), 0o600, owner)?;
    let needed = passwords.iter().filter(|p| !p.is_empty()).count();
    log.line(format!(
        "{conf_path}: bind {bind} port {port}, {} ({})",
        match needed {
            0 => "no password".to_string(),
            1 => "requirepass set".to_string(),
            n => format!("{n} passwords accepted (a password roll)"),
        },
        if changed { "written" } else { "unchanged" }
    ));
    // Started at boot (CentOS and RHEL do not enable the unit they install).
    enable(ctx, &d.unit, true, log).await?;
    let addr = host_port(&bind, u32::from(port));
    let others = |c: &str| -> String {
        c.lines()
            .filter(|l| !password_line(l))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let only_passwords = before
        .as_deref()
        .is_some_and(|b| others(b) == others(&conf));
    if changed && only_passwords && d.state(&ctx.host, log).await?.running() {
        let mut auth = now.clone();
        auth.push(pw.clone());
        let acls = passwords.len() > 1 || has_acls(ctx).await;
        set_running_passwords(&addr, &auth, &passwords, acls).await?;
        log.line("the running Redis took its new passwords (not restarted: its data stays)");
    } else if changed {
        d.restart(&ctx.host, log).await?;
    } else {
        d.ensure_started(&ctx.host, log).await?;
    }
    let running = d.state(&ctx.host, log).await?.running();
    if !running {
        return Err(OpError(format!("{} is not running", d.unit)));
    }
    Ok(ConfigureRedisOutput {
        address: addr,
        changed,
        running,
        accepted_passwords: needed as u32,
    })
}
