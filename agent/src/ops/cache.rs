//! The cache: redis-server, stunnel (server on a cache host, client on a Gluu node), twemproxy
//! (nutcracker) and Gluu's `oxCacheConfiguration`.
//!
//! - Configuration files are rendered here and written on directory handles under the agent's
//!   root (`/etc/redis/redis.conf` 0600 — `/etc/redis.conf` on CentOS and RHEL 7 and 8 —,
//!   `/etc/stunnel/clustermgr-redis-*.conf`, `/etc/nutcracker/nutcracker.yml` 0600); the programs
//!   run through the daemon seam (`daemon.rs`: systemd units on a real host, the program itself
//!   with a pid file on a sandbox host).
//! - **The distribution's names** ([`names`]): Debian and Ubuntu run `redis-server` and
//!   `stunnel4`; CentOS and RHEL run `redis` and `stunnel@NAME` (each configuration its own unit),
//!   enabled here since their packages do not enable them.
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

use super::ids::{self, Db};
use super::{Ctx, Log, OpError, run_checked};
use crate::host::{Command, PackageFormat, PackageMode};
use clustermgr_shared::safefs::{self, FilePerms, SafeFsError};
use std::ffi::OsStr;
use std::path::Path;

mod gluu_conf;
pub mod names;
mod nutcracker;
mod redis;
mod status;
mod stunnel;

pub use gluu_conf::{cache_configuration, set_cache_configuration};
pub use nutcracker::{
    NUTCRACKER_CONF, NUTCRACKER_STATS_PORT, configure_nutcracker, nutcracker_conf,
    nutcracker_daemon,
};
pub use redis::{accepted_passwords, configure_redis, redis_conf, redis_conf_path, redis_daemon};
pub use status::{command, ping, program_present, resp, status};
pub use stunnel::{Service, configure_stunnel, stunnel_conf, stunnel_daemon};

/// Debian's redis.conf (and EL 9's); a sandbox host's, under its root.
pub const REDIS_CONF: &str = "/etc/redis/redis.conf";
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

/// `systemctl enable|disable UNIT` on a real CentOS or RHEL host, whose packages do not enable
/// what they install (Debian's do, and nothing runs there).
async fn enable(ctx: &Ctx, unit: &str, on: bool, log: &mut Log) -> Result<(), OpError> {
    if !system(ctx) || ctx.host.format != Some(PackageFormat::Rpm) {
        return Ok(());
    }
    let verb = if on { "enable" } else { "disable" };
    run_checked(
        &ctx.host,
        &Command::new(["systemctl", verb, unit]),
        log,
        &format!("{verb} {unit}"),
    )
    .await
    .map(|_| ())
}

/// systemd reads unit files written or removed here.
async fn daemon_reload(ctx: &Ctx, log: &mut Log) -> Result<(), OpError> {
    run_checked(
        &ctx.host,
        &Command::new(["systemctl", "daemon-reload"]),
        log,
        "systemctl daemon-reload",
    )
    .await
    .map(|_| ())
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

/// The text of `abs` (under the root), read on handles; None when it does not exist.
fn read_file(ctx: &Ctx, abs: &str) -> Result<Option<String>, OpError> {
    let rel = abs.trim_start_matches('/');
    let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let err = |e: SafeFsError| OpError(format!("{abs}: {e}"));
    let base = safefs::open_dir(ctx.root()).map_err(err)?;
    let Ok(d) = safefs::open_dir_beneath(&base, Path::new(dir), false) else {
        return Ok(None);
    };
    if safefs::stat_entry(&d, OsStr::new(name))
        .map_err(err)?
        .is_none()
    {
        return Ok(None);
    }
    let (bytes, _) = safefs::read_regular(&d, OsStr::new(name), MAX_FILE).map_err(err)?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
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

#[cfg(test)]
mod tests;
