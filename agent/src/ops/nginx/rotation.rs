//! `set-backend-rotation`: one backend out of the balancer's rotation (drain) or back into it
//! (rejoin), by re-rendering the running configuration with the backend marked `down` or not.
//!
//! The running configuration is rebuilt from what the last `configure-nginx` recorded (server
//! name, backends, ports, balancing) and the certificate and key files of its generation, then
//! written the one way every configuration is ([`super::apply`]: template, `nginx -t`, graceful
//! reload). A drain ends once every worker of the previous configuration has exited: nginx lets
//! such a worker finish the requests it is serving and close its idle connections, and sends it
//! no new one. A rejoin first waits until the backend's own web tier answers every ready path
//! with 200, asked with the trust and Host header nginx uses.

use super::{Applied, Layout, apply, balancing, get, host_header, io, ours, read_applied, tls_for};
use crate::ops::{Ctx, Log, OpError};
use clustermgr_proto::{ConfigureNginx, LbBackend, SetBackendRotation, SetBackendRotationOutput};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

const DEFAULT_WITHIN: Duration = Duration::from_secs(120);

fn within(ms: u32) -> Duration {
    match ms {
        0 => DEFAULT_WITHIN,
        ms => Duration::from_millis(u64::from(ms).min(1_800_000)),
    }
}

/// The configuration last applied, as a request (with its certificate and key read back).
fn running_request(layout: &Layout, a: &Applied) -> Result<ConfigureNginx, OpError> {
    let cert = layout.cert(&a.generation);
    let key = layout.key(&a.generation);
    Ok(ConfigureNginx {
        server_name: a.server_name.clone(),
        backends: a.lb_backends(),
        oxauth_balancing: balancing(a.sticky_oxauth),
        listen_address: a.listen_address.clone(),
        https_port: a.https_port,
        http_port: a.http_port,
        certificate_pem: std::fs::read_to_string(&cert).map_err(io(&cert))?,
        key_pem: std::fs::read(&key).map_err(io(&key))?,
        drained: a.drained.clone(),
    })
}

/// The pids of the processes whose parent is `parent`, from `proc`.
pub fn children(proc: &Path, parent: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    let Ok(rd) = std::fs::read_dir(proc) else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(parent) {
            out.insert(pid);
        }
    }
    out
}

/// The workers of `master` still finishing the requests of a replaced configuration (nginx
/// titles them "worker process is shutting down").
pub fn shutting_down(proc: &Path, master: i32) -> BTreeSet<i32> {
    children(proc, master)
        .into_iter()
        .filter(|pid| {
            std::fs::read(proc.join(pid.to_string()).join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("shutting down"))
        })
        .collect()
}

fn master_pid(layout: &Layout) -> Option<i32> {
    std::fs::read_to_string(&layout.pid)
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Waits until `backend` answers every path with 200 under one of the trusted certificates.
async fn wait_ready(
    layout: &Layout,
    a: &Applied,
    backend: &LbBackend,
    paths: &[String],
    within: Duration,
    log: &mut Log,
) -> Result<(), OpError> {
    let tls = tls_for(layout, a)?;
    let host = host_header(a);
    let start = Instant::now();
    let mut pause = Duration::from_millis(100);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let mut missing = None;
        for path in paths {
            let why = match get(tls.clone(), &backend.address, backend.port, &host, path).await {
                Ok(200) => continue,
                Ok(code) => format!("HTTP {code}"),
                Err(e) => e,
            };
            missing = Some(format!("{path}: {why}"));
            break;
        }
        let Some(why) = missing else {
            log.line(format!(
                "{} answers {} through its own web tier ({} attempt(s), {} ms)",
                backend.name,
                paths.join(" and "),
                attempts,
                start.elapsed().as_millis()
            ));
            return Ok(());
        };
        if start.elapsed() + pause >= within {
            return Err(OpError(format!(
                "{} is not ready after {} s ({why}): it stays out of the load balancer's rotation",
                backend.name,
                start.elapsed().as_secs()
            )));
        }
        if attempts == 1 || attempts.is_multiple_of(10) {
            log.line(format!("{} not ready yet ({why})", backend.name));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// The paths `backend` answers with 200 now (each asked once).
async fn answering(
    layout: &Layout,
    a: &Applied,
    backend: &LbBackend,
    paths: &[String],
    log: &mut Log,
) -> Result<Vec<String>, OpError> {
    let tls = tls_for(layout, a)?;
    let host = host_header(a);
    let mut out = Vec::new();
    for path in paths {
        match get(tls.clone(), &backend.address, backend.port, &host, path).await {
            Ok(200) => out.push(path.clone()),
            Ok(code) => log.line(format!(
                "{} before the drain: {path}: HTTP {code}",
                backend.name
            )),
            Err(e) => log.line(format!("{} before the drain: {path}: {e}", backend.name)),
        }
    }
    Ok(out)
}

/// Waits until none of `old` (the previous configuration's workers) is a child of `master`.
async fn wait_exited(
    master: i32,
    old: &BTreeSet<i32>,
    within: Duration,
    log: &mut Log,
) -> Result<u64, OpError> {
    let start = Instant::now();
    let proc = Path::new("/proc");
    loop {
        let left: Vec<i32> = children(proc, master).intersection(old).copied().collect();
        if left.is_empty() {
            let ms = start.elapsed().as_millis() as u64;
            log.line(format!(
                "the previous configuration's {} worker(s) finished their requests and exited in {ms} ms",
                old.len()
            ));
            return Ok(ms);
        }
        if start.elapsed() >= within {
            return Err(OpError(format!(
                "{} worker(s) of the previous configuration still serve requests after {} s",
                left.len(),
                start.elapsed().as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The running configuration as `ours` reads it: what was applied and its request.
fn running(layout: &Layout) -> Result<(Applied, ConfigureNginx), OpError> {
    let a = read_applied(layout)
        .filter(|_| ours(&layout.conf))
        .ok_or_else(|| OpError("nginx is not configured as the load balancer".into()))?;
    let r = running_request(layout, &a)?;
    Ok((a, r))
}

fn backend_of(running: &ConfigureNginx, name: &str) -> Result<LbBackend, OpError> {
    running
        .backends
        .iter()
        .find(|b| b.name == name)
        .cloned()
        .ok_or_else(|| {
            OpError(format!(
                "{name:?} is not one of the load balancer's backends"
            ))
        })
}

/// `a`'s trusted certificates with `pem` added (empty: as they are).
fn trusting(a: &Applied, pem: &str) -> Vec<String> {
    let mut also_trust = a.also_trust.clone();
    if !pem.trim().is_empty() && !also_trust.iter().any(|c| c.trim() == pem.trim()) {
        also_trust.push(pem.to_string());
    }
    also_trust
}

/// The backends out of rotation once `req` is applied to `running` (names no longer in the
/// configuration dropped), sorted; taking the last backend in rotation out is refused.
fn drained_after(
    a: &Applied,
    running: &ConfigureNginx,
    req: &SetBackendRotation,
) -> Result<Vec<String>, OpError> {
    let mut drained: Vec<String> = a
        .drained
        .iter()
        .filter(|n| running.backends.iter().any(|b| &b.name == *n))
        .cloned()
        .collect();
    if req.in_rotation {
        drained.retain(|n| n != &req.name);
    } else {
        if !drained.contains(&req.name) {
            drained.push(req.name.clone());
        }
        if running.backends.iter().all(|b| drained.contains(&b.name)) {
            return Err(OpError(format!(
                "taking {} out would leave the load balancer no backend in rotation",
                req.name
            )));
        }
    }
    drained.sort();
    Ok(drained)
}

/// One backend out of rotation or back in. The readiness wait (a rejoin) and the wait for the
/// previous configuration's workers (a drain) run outside the configuration's lock
/// ([`super::lock`]), which is held only while the rotation changes; the node's exclusive lock
/// is not taken at all (a rejoin may wait minutes for its node).
pub async fn set_backend_rotation(
    ctx: &Ctx,
    req: SetBackendRotation,
    log: &mut Log,
) -> Result<SetBackendRotationOutput, OpError> {
    if req.health_mark {
        return super::health_mark::set(ctx, &req, log).await;
    }
    let layout = Layout::of(&ctx.host);
    let (a, running_now) = running(&layout)?;
    let backend = backend_of(&running_now, &req.name)?;
    let within = within(req.within_ms);
    let probe_view = Applied {
        also_trust: trusting(&a, &req.also_trust_pem),
        ..a.clone()
    };
    let mut ready = Vec::new();
    if req.in_rotation {
        if !req.ready_paths.is_empty() {
            wait_ready(
                &layout,
                &probe_view,
                &backend,
                &req.ready_paths,
                within,
                log,
            )
            .await?;
        }
    } else {
        ready = answering(&layout, &probe_view, &backend, &req.ready_paths, log).await?;
    }
    // The change itself, on the configuration as it is now (another change may have come in
    // during the wait).
    let lock = super::lock(&layout);
    let guard = lock.lock().await;
    let (a, mut running) = running(&layout)?;
    backend_of(&running, &req.name)?;
    let also_trust = trusting(&a, &req.also_trust_pem);
    let drained = drained_after(&a, &running, &req)?;
    running.drained = drained.clone();
    let master = master_pid(&layout);
    let before = master
        .map(|m| children(Path::new("/proc"), m))
        .unwrap_or_default();
    let changed = drained != a.drained || also_trust != a.also_trust;
    let out = apply(ctx, running, also_trust, log).await?;
    drop(guard);
    let mut drained_in_ms = 0;
    if !req.in_rotation {
        match master {
            Some(m) if out.changed => {
                drained_in_ms = wait_exited(m, &before, within, log).await?;
            }
            // Already out (a drain sent again, e.g. after this agent restarted during the
            // wait): the workers of the configuration that took it out may still be finishing
            // its requests; wait for them too.
            Some(m) => {
                let old = shutting_down(Path::new("/proc"), m);
                log.line(format!(
                    "{} was already out of rotation; {} worker(s) of an earlier configuration still finishing",
                    req.name,
                    old.len()
                ));
                if !old.is_empty() {
                    drained_in_ms = wait_exited(m, &old, within, log).await?;
                }
            }
            None => log.line("nginx's master pid is not known: not waiting for its workers"),
        }
    }
    log.line(format!(
        "{} {} the load balancer's rotation",
        req.name,
        if req.in_rotation {
            "is in"
        } else {
            "is out of"
        }
    ));
    Ok(SetBackendRotationOutput {
        changed: changed || out.changed,
        drained,
        drained_in_ms,
        ready,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_found_by_their_parent_in_proc() {
        let dir = tempfile::tempdir().unwrap();
        let stat = |pid: i32, comm: &str, ppid: i32| {
            let d = dir.path().join(pid.to_string());
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("stat"), format!("{pid} ({comm}) S {ppid} 1 1 0")).unwrap();
        };
        stat(10, "nginx", 1);
        stat(11, "nginx", 10);
        stat(12, "a (weird) name", 10);
        stat(13, "other", 11);
        std::fs::create_dir_all(dir.path().join("self")).unwrap();
        assert_eq!(
            children(dir.path(), 10),
            BTreeSet::from([11, 12]),
            "workers of master 10"
        );
        assert!(children(dir.path(), 99).is_empty());
    }

    #[test]
    fn workers_still_finishing_an_old_configuration_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let proc_ = |pid: i32, ppid: i32, title: &str| {
            let d = dir.path().join(pid.to_string());
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("stat"), format!("{pid} (nginx) S {ppid} 1 1 0")).unwrap();
            std::fs::write(d.join("cmdline"), format!("{title}\0")).unwrap();
        };
        proc_(10, 1, "nginx: master process /usr/sbin/nginx");
        proc_(11, 10, "nginx: worker process");
        proc_(12, 10, "nginx: worker process is shutting down");
        proc_(13, 99, "nginx: worker process is shutting down");
        assert_eq!(shutting_down(dir.path(), 10), BTreeSet::from([12]));
    }
}
