//! preflight: checks a node before an install and reports every problem at once. A problem does
//! not fail the job (the workflow decides what to do with it); only a malformed request does.
//!
//! - ports: a TCP connect to `address:port` with a short timeout. An answer means something
//!   listens; a refusal or no answer means the port is free. No privilege is needed.
//! - disk: statvfs of `disk_path` under the agent's root (or of its nearest existing ancestor:
//!   the directory is usually made by the install). The path is followed like the install will
//!   follow it, links included: free space is measured where the files will land.
//! - names: resolved with the machine's resolver (a sandbox root's own /etc/hosts is not used).

use super::{Ctx, Log, OpError};
use clustermgr_proto::{Preflight, PreflightOutput};
use clustermgr_shared::paths::normalize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Address the ports are checked on when the request names none.
const DEFAULT_ADDRESS: &str = "127.0.0.1";
/// Most ports / names checked in one request.
const MAX_ITEMS: usize = 256;

pub async fn run(ctx: &Ctx, req: Preflight, log: &mut Log) -> Result<PreflightOutput, OpError> {
    if req.ports.len() > MAX_ITEMS || req.resolve.len() > MAX_ITEMS {
        return Err(OpError(format!(
            "at most {MAX_ITEMS} ports and {MAX_ITEMS} names are checked at once"
        )));
    }
    let address = if req.address.trim().is_empty() {
        DEFAULT_ADDRESS.to_string()
    } else {
        req.address.trim().to_string()
    };
    let disk = if req.disk_path.is_empty() {
        None
    } else {
        Some(host_disk_path(ctx.root(), &req.disk_path)?)
    };
    let mut problems = Vec::new();

    let (ports, names) = tokio::join!(
        futures::future::join_all(req.ports.iter().map(|p| check_port(&address, *p))),
        futures::future::join_all(req.resolve.iter().map(|n| check_name(n))),
    );
    for (port, r) in req.ports.iter().zip(ports) {
        match r {
            Ok(()) => log.line(format!("port {port} on {address}: free")),
            Err(p) => {
                log.line(format!("problem: {p}"));
                problems.push(p);
            }
        }
    }
    for (name, r) in req.resolve.iter().zip(names) {
        match r {
            Ok(addrs) => log.line(format!("{name} resolves to {addrs}")),
            Err(p) => {
                log.line(format!("problem: {p}"));
                problems.push(p);
            }
        }
    }

    let mut free_bytes = 0;
    if let Some(path) = disk {
        let shown = req.disk_path.clone();
        let measured = tokio::task::spawn_blocking(move || free_space(&path))
            .await
            .map_err(|e| OpError(format!("disk check: {e}")))?;
        match measured {
            Ok((free, at)) => {
                free_bytes = free;
                log.line(format!(
                    "{shown}: {free} bytes free (measured at {})",
                    at.display()
                ));
                if free < req.min_free_bytes {
                    let p = format!("{shown}: {free} bytes free, {} needed", req.min_free_bytes);
                    log.line(format!("problem: {p}"));
                    problems.push(p);
                }
            }
            Err(e) => {
                let p = format!("{shown}: cannot measure free space: {e}");
                log.line(format!("problem: {p}"));
                problems.push(p);
            }
        }
    }
    log.line(match problems.len() {
        0 => "preflight: no problem found".to_string(),
        n => format!("preflight: {n} problem(s)"),
    });
    Ok(PreflightOutput {
        problems,
        free_bytes,
    })
}

/// `Err(problem)` when something accepts connections on the port (or the check itself fails in
/// a way that says the address is not usable).
async fn check_port(address: &str, port: u32) -> Result<(), String> {
    let Ok(port16) = u16::try_from(port) else {
        return Err(format!("port {port} is not a TCP port"));
    };
    if port16 == 0 {
        return Err("port 0 is not a TCP port".into());
    }
    let target = format!("{}:{port16}", bracket(address));
    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(target.as_str())).await
        {
            Ok(Ok(a)) => a.collect(),
            Ok(Err(e)) => return Err(format!("{address}: cannot check port {port}: {e}")),
            Err(_) => return Err(format!("{address}: cannot check port {port}: no answer")),
        };
    for addr in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => {
                return Err(format!(
                    "port {port} on {address} already accepts connections"
                ));
            }
            // Refused, or filtered (no answer): nothing we could reach listens there.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(_) => {}
            Ok(Err(e)) => return Err(format!("{address}: cannot check port {port}: {e}")),
        }
    }
    Ok(())
}

async fn check_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!("{name:?} is not a host name"));
    }
    match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, 0))).await {
        Ok(Ok(addrs)) => {
            let mut ips: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
            ips.sort();
            ips.dedup();
            if ips.is_empty() {
                Err(format!("{name} does not resolve"))
            } else {
                Ok(ips.join(", "))
            }
        }
        Ok(Err(e)) => Err(format!("{name} does not resolve: {e}")),
        Err(_) => Err(format!(
            "{name} does not resolve: no answer within {} s",
            RESOLVE_TIMEOUT.as_secs()
        )),
    }
}

fn bracket(address: &str) -> String {
    if address.contains(':') && !address.starts_with('[') {
        format!("[{address}]")
    } else {
        address.to_string()
    }
}

/// The host path of an absolute node path (no `..`) under the agent's root.
fn host_disk_path(root: &Path, disk_path: &str) -> Result<PathBuf, OpError> {
    let p = normalize(disk_path)?;
    Ok(root.join(p.strip_prefix("/").unwrap_or(&p)))
}

/// Free bytes for an unprivileged writer on the file system holding `path` (or its nearest
/// existing ancestor), and where it was measured.
fn free_space(path: &Path) -> Result<(u64, PathBuf), String> {
    let mut at = path.to_path_buf();
    while !at.exists() {
        if !at.pop() {
            return Err("no existing directory on the way".into());
        }
    }
    let st = nix::sys::statvfs::statvfs(&at).map_err(|e| e.to_string())?;
    #[allow(clippy::useless_conversion)] // the field types differ between targets
    let free = u64::from(st.blocks_available()).saturating_mul(u64::from(st.fragment_size()));
    Ok((free, at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Host, PackageFormat, PackageMode, Runner};
    use crate::ops::tests::{ctx_with, log};

    fn ctx(root: &Path) -> Ctx {
        ctx_with(Host {
            root: root.to_path_buf(),
            packages: PackageMode::UnderRoot,
            format: Some(PackageFormat::Deb),
            runner: Runner::Real,
            proc: std::path::PathBuf::from("/proc"),
        })
    }

    #[tokio::test]
    async fn every_problem_is_reported_at_once() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("opt")).unwrap();
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy_port = busy.local_addr().unwrap().port();
        let free_port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (mut l, _rx) = log();
        let out = run(
            &ctx(d.path()),
            Preflight {
                address: "127.0.0.1".into(),
                ports: vec![u32::from(busy_port), u32::from(free_port), 70000],
                disk_path: "/opt/gluu-server".into(),
                min_free_bytes: u64::MAX,
                resolve: vec!["localhost".into(), "no-such-host.invalid".into()],
            },
            &mut l,
        )
        .await
        .unwrap();
        let p = out.problems.join("\n");
        assert_eq!(out.problems.len(), 4, "{p}");
        assert!(
            p.contains(&format!("port {busy_port} on 127.0.0.1 already accepts")),
            "{p}"
        );
        assert!(!p.contains(&format!("port {free_port} ")), "{p}");
        assert!(p.contains("port 70000 is not a TCP port"), "{p}");
        assert!(p.contains("no-such-host.invalid does not resolve"), "{p}");
        assert!(
            p.contains("/opt/gluu-server:") && p.contains("needed"),
            "{p}"
        );
        assert!(out.free_bytes > 0);

        // Nothing wrong: no problem, and the free space still reported.
        let (mut l, _rx) = log();
        let out = run(
            &ctx(d.path()),
            Preflight {
                address: String::new(),
                ports: vec![u32::from(free_port)],
                disk_path: "/opt".into(),
                min_free_bytes: 1,
                resolve: vec!["localhost".into()],
            },
            &mut l,
        )
        .await
        .unwrap();
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        assert!(out.free_bytes > 0);
        drop(busy);
    }

    #[tokio::test]
    async fn a_disk_path_must_stay_under_the_root() {
        let d = tempfile::tempdir().unwrap();
        let (mut l, _rx) = log();
        for bad in ["../etc", "/opt/../../etc", "relative"] {
            let e = run(
                &ctx(d.path()),
                Preflight {
                    disk_path: bad.into(),
                    ..Default::default()
                },
                &mut l,
            )
            .await
            .unwrap_err();
            assert!(!e.0.is_empty(), "{bad}");
        }
    }
}
