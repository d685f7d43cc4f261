//! `CacheStatus`: which programs the node lacks, whether its daemons run, a PING through its
//! local end.

use super::{
    host_port, local_address, nutcracker_daemon, password, port, redis_daemon, stunnel_daemon,
};
use crate::ops::{Ctx, Log, OpError};
use clustermgr_proto::{CacheStatus, CacheStatusOutput};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const PING_TIMEOUT: Duration = Duration::from_secs(5);

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
    let passwords = [password.to_string()];
    match command(addr, &passwords, &[b"PING"]).await?.as_str() {
        "+PONG" => Ok(()),
        "" => Err("the connection closed without an answer".into()),
        other => Err(format!("PING answered {}", first_words(other))),
    }
}

/// Connects to `addr`, authenticates with the first of `passwords` Redis takes (an empty one:
/// without AUTH; none given: no AUTH), sends `args` and returns the reply's first line. Errors
/// never hold a password.
pub async fn command(addr: &str, passwords: &[String], args: &[&[u8]]) -> Result<String, String> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        let mut refused = None;
        for p in passwords.iter().filter(|p| !p.is_empty()) {
            let line = ask(&mut w, &mut r, &[b"AUTH", p.as_bytes()]).await?;
            if line == "+OK" {
                refused = None;
                break;
            }
            refused = Some(format!("AUTH refused: {}", first_words(&line)));
        }
        if let Some(e) = refused
            && !passwords.iter().any(String::is_empty)
        {
            return Err(e);
        }
        ask(&mut w, &mut r, args).await
    };
    tokio::time::timeout(PING_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer from {addr} within {PING_TIMEOUT:?}"))?
}

/// Sends one command and reads the first line of its reply (trailing line end removed).
async fn ask(
    w: &mut (impl AsyncWriteExt + Unpin),
    r: &mut (impl AsyncBufReadExt + Unpin),
    args: &[&[u8]],
) -> Result<String, String> {
    w.write_all(&resp(args))
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut line = String::new();
    r.read_line(&mut line)
        .await
        .map_err(|e| format!("read: {e}"))?;
    Ok(line.trim_end().to_string())
}

pub(super) fn first_words(s: &str) -> String {
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
