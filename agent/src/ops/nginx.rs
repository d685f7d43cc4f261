//! nginx as the cluster's load balancer: `configure-nginx`, `nginx-status`, `probe-nginx`,
//! `remove-nginx`.
//!
//! The configuration is rendered with minijinja from the template embedded in this binary
//! (`nginx.conf.j2`) from typed, validated parameters (no value reaches the file unchecked). A
//! change is written as a candidate beside the running configuration, with the certificate and
//! key under a new generation name (the key 0600), and checked with `nginx -t`; only a passing
//! candidate replaces the running configuration, then nginx reloads (or starts). A failing check
//! removes the candidate and its files, so the running configuration keeps serving, and the job
//! fails with nginx's own error.
//!
//! Where things live: on a real host (`PackageMode::System`) Debian/RHEL's `/etc/nginx/nginx.conf`
//! (the distribution's file is kept as `nginx.conf.clustermgr-orig` and put back on removal),
//! `/etc/nginx/ssl/`, systemd's `nginx` unit. On a sandbox host everything is under the host's
//! root (`ROOT/etc/nginx`, `ROOT/var/log/nginx`, `ROOT/var/lib/nginx`) and the machine's
//! `/usr/sbin/nginx` runs with `-p/-c/-e` and its pid file at `ROOT/run/clustermgr/nginx.pid`.
//!
//! This file holds the operations' entry points (configure, remove); beside it: `layout.rs`
//! (where the files are, what is recorded), `render.rs` (the configuration's text), `apply.rs`
//! (the checked write and reload), `checks.rs` (status, probe), `rotation.rs` and `drained.rs`
//! (backends in and out of rotation), `health_mark.rs` (the backend-side mark).

use super::{Ctx, Log, OpError};
use clustermgr_proto::{
    BackendHealth, ConfigureNginx, ConfigureNginxOutput, NginxStatus, NginxStatusOutput,
    OxauthBalancing, ProbeNginx, ProbeOutput, RemoveNginx, RemoveNginxOutput,
};
use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The program (Debian's and RHEL's path).
pub const NGINX: &str = "/usr/sbin/nginx";
/// The first line of every configuration this agent writes.
pub const MARKER: &str = "clustermgr load balancer";
/// The built-in template.
pub const TEMPLATE: &str = include_str!("nginx.conf.j2");
/// An operator's own template on the node, used instead of the built-in one when present (same
/// variables); like every configuration, what it renders must pass `nginx -t`.
pub const TEMPLATE_OVERRIDE: &str = "/etc/clustermgr/nginx.conf.j2";
/// Paths a client must stay on one node for.
pub const STICKY_PATHS: [&str; 4] = ["/identity", "/idp", "/passport", "/casa"];
/// Paths balanced as the operator chose (sticky or round robin).
pub const OXAUTH_PATHS: [&str; 2] = ["/oxauth", "/.well-known"];
/// What status and the install probe ask through the balancer.
pub const HEALTH_PATH: &str = "/oxauth/restv1/health-check";

fn io(what: &Path) -> impl Fn(std::io::Error) -> OpError + '_ {
    move |e| OpError(format!("{}: {e}", what.display()))
}

pub async fn configure(
    ctx: &Ctx,
    mut req: ConfigureNginx,
    log: &mut Log,
) -> Result<ConfigureNginxOutput, OpError> {
    let layout = Layout::of(&ctx.host);
    let _lock = lock(&layout).lock_owned().await;
    // The balancer keeps its own list of the backends drained (out of rotation): a
    // configuration that carries a stale list cannot put a draining node back; only a rejoin
    // (set-backend-rotation) takes a name off it, or the backend leaving the configuration.
    keep_drained(&layout, &mut req, log);
    // A full configuration ends a certificate roll: only its own certificate is trusted.
    apply(ctx, req, Vec::new(), log).await
}

fn balancing(sticky: bool) -> i32 {
    if sticky {
        OxauthBalancing::Sticky as i32
    } else {
        OxauthBalancing::RoundRobin as i32
    }
}

pub async fn remove(
    ctx: &Ctx,
    _req: RemoveNginx,
    log: &mut Log,
) -> Result<RemoveNginxOutput, OpError> {
    let layout = Layout::of(&ctx.host);
    let _lock = lock(&layout).lock_owned().await;
    let mut out = RemoveNginxOutput::default();
    if !ours(&layout.conf) {
        log.line("nginx is not configured as the load balancer: nothing to remove");
        return Ok(out);
    }
    let d = layout.daemon();
    out.was_running = d.state(&ctx.host, log).await?.running();
    if out.was_running {
        d.stop(&ctx.host, log).await?;
    }
    if layout.original().exists() {
        std::fs::rename(layout.original(), &layout.conf).map_err(io(&layout.conf))?;
        log.line(format!(
            "{} restored from {}",
            layout.conf.display(),
            layout.original().display()
        ));
    } else {
        std::fs::remove_file(&layout.conf).map_err(io(&layout.conf))?;
        out.removed.push(path_str(&layout.conf));
    }
    for p in [layout.state.clone(), layout.candidate()] {
        if std::fs::remove_file(&p).is_ok() {
            out.removed.push(path_str(&p));
        }
    }
    if let Ok(rd) = std::fs::read_dir(&layout.ssl) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with("clustermgr-")
                && std::fs::remove_file(e.path()).is_ok()
            {
                out.removed.push(path_str(&e.path()));
            }
        }
    }
    log.line(format!("removed {}", out.removed.join(", ")));
    Ok(out)
}

mod apply;
mod checks;
mod drained;
pub mod health_mark;
mod layout;
mod render;
mod rotation;
pub(crate) use apply::apply;
use checks::{get, host_header, tls_for};
pub use checks::{probe, status};
pub(crate) use drained::lock;
use drained::{check_down_marks, keep_drained};
pub use layout::{Applied, Layout};
use layout::{ours, path_str, prune_generations, read_applied, trust_file};
use render::host_port;
pub use render::{check_pair, render, render_trusting};
pub use rotation::set_backend_rotation;

#[cfg(test)]
mod tests;
