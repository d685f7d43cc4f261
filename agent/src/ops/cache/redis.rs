//! Redis on a cache host: its whole redis.conf, where the distribution's unit reads it.
//!
//! **Passwords** (`requirepass` for one; Redis 6 and later: the default user's ACL line for
//! several, `user default on ">a" ">b" ~* &* +@all`). A password roll (`keep_accepting`) adds the
//! new password to those the file accepts now; the roll's end (`keep_accepting` off) leaves the
//! new one alone. A running Redis whose file differs at most in its passwords is given them at
//! every call, before the file is written, whether the file changes or not (`ACL SETUSER
//! default on resetpass ...` where Redis has ACLs, `CONFIG SET requirepass` before Redis 6),
//! over its own port (never an argv), and is not restarted: its data stays. So a call stopped
//! between the two (the agent restarted, the live change timed out) and sent again leaves the
//! running Redis accepting what the file says. Redis before 6 holds one password: a roll there
//! moves to the new one at once (a password cleared: `requirepass ""`).

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
    acls_in_version(&out.stdout)
}

/// Whether `redis-server --version`'s output names Redis 6 or later.
fn acls_in_version(version: &str) -> bool {
    version
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok())
        .is_some_and(|major| major >= 6)
}

/// The passwords Redis is to accept: `pw`, beside those it accepts `now` on a roll
/// (`keep_accepting`) where Redis has ACLs; without them one, the new one (empty: none).
fn wanted_passwords(now: &[String], pw: &str, keep_accepting: bool, acls: bool) -> Vec<String> {
    if !keep_accepting || !acls {
        return vec![pw.to_string()];
    }
    let mut out: Vec<String> = now.iter().filter(|p| *p != pw).cloned().collect();
    out.push(pw.to_string());
    out
}

/// The command that makes a running Redis accept `passwords`: the default user's ACL where
/// Redis has them (`nopass` when one is empty), `CONFIG SET requirepass` before Redis 6 (the
/// last one; empty: none).
fn live_change(passwords: &[String], acls: bool) -> Vec<Vec<u8>> {
    if !acls {
        let last = passwords.last().cloned().unwrap_or_default();
        return vec![
            b"CONFIG".to_vec(),
            b"SET".to_vec(),
            b"requirepass".to_vec(),
            last.into_bytes(),
        ];
    }
    let mut args: Vec<Vec<u8>> = ["ACL", "SETUSER", "default", "on", "resetpass"]
        .iter()
        .map(|a| a.as_bytes().to_vec())
        .collect();
    if passwords.is_empty() || passwords.iter().any(String::is_empty) {
        args.push(b"nopass".to_vec());
    } else {
        args.extend(passwords.iter().map(|p| format!(">{p}").into_bytes()));
    }
    args
}

/// The running Redis at `addr` takes `passwords` (authenticated with one of `auth`).
async fn set_running_passwords(
    addr: &str,
    auth: &[String],
    passwords: &[String],
    acls: bool,
) -> Result<(), OpError> {
    let args = live_change(passwords, acls);
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    let reply = super::command(addr, auth, &refs).await.map_err(OpError)?;
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
    let others = |c: &str| -> String {
        c.lines()
            .filter(|l| !password_line(l))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let without_passwords = others(&redis_conf(ctx, &bind, port, &[])?);
    let only_passwords = before
        .as_deref()
        .is_some_and(|b| others(b) == without_passwords);
    // The running Redis is changed first, and at every call, not only when the file changes:
    // a call stopped after the change of the file (the agent restarted, the change timed out)
    // is sent again and finds the file as wanted while the running Redis may still accept
    // only the passwords it had.
    let live = only_passwords && d.state(&ctx.host, log).await?.running();
    let acls = (req.keep_accepting || live) && has_acls(ctx).await;
    if req.keep_accepting && !acls {
        log.line("this Redis has no ACLs (before Redis 6): it takes one password, the new one");
    }
    let passwords = wanted_passwords(&now, &pw, req.keep_accepting, acls);
    let conf = redis_conf(ctx, &bind, port, &passwords)?;
    let owner = service_owner(ctx, "redis")?;
    let addr = host_port(&bind, u32::from(port));
    if live {
        let mut auth = now.clone();
        auth.extend(passwords.iter().cloned());
        set_running_passwords(&addr, &auth, &passwords, acls).await?;
    }
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
    if live {
        log.line("the running Redis took its passwords (not restarted: its data stays)");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<Vec<u8>> {
        a.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    /// Whether Redis has ACLs decides how its passwords change, not how many there are: a
    /// password cleared during a roll on Redis before 6 (Debian 10, Ubuntu 20.04, EL 7 and 8)
    /// is `CONFIG SET requirepass ""`, never an ACL command that Redis does not know.
    #[test]
    fn the_live_change_follows_the_redis_version() {
        let v5 = "Redis server v=5.0.7 sha=00000000:0 malloc=jemalloc-5.2.1 bits=64 build=1";
        let v6 = "Redis server v=6.0.16 sha=00000000:0 malloc=jemalloc-5.2.1 bits=64 build=1";
        assert!(!acls_in_version(v5) && acls_in_version(v6));
        assert!(!acls_in_version("") && acls_in_version("Redis server v=7.0.15 sha=0"));
        let old = vec!["old".to_string()];
        for (pw, acls, want, change) in [
            (
                "",
                false,
                vec![""],
                args(&["CONFIG", "SET", "requirepass", ""]),
            ),
            (
                "new",
                false,
                vec!["new"],
                args(&["CONFIG", "SET", "requirepass", "new"]),
            ),
            (
                "",
                true,
                vec!["old", ""],
                args(&["ACL", "SETUSER", "default", "on", "resetpass", "nopass"]),
            ),
            (
                "new",
                true,
                vec!["old", "new"],
                args(&[
                    "ACL",
                    "SETUSER",
                    "default",
                    "on",
                    "resetpass",
                    ">old",
                    ">new",
                ]),
            ),
        ] {
            let passwords = wanted_passwords(&old, pw, true, acls);
            assert_eq!(passwords, want, "{pw:?} acls={acls}");
            assert_eq!(live_change(&passwords, acls), change, "{pw:?} acls={acls}");
        }
        assert_eq!(wanted_passwords(&old, "new", false, true), vec!["new"]);
    }
}
