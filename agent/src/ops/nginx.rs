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

use super::daemon::{self, Daemon};
use super::{Ctx, Log, OpError, run_checked};
use crate::host::{Command, Host, PackageMode};
use clustermgr_proto::{
    BackendHealth, ConfigureNginx, ConfigureNginxOutput, LbBackend, NginxStatus, NginxStatusOutput,
    OxauthBalancing, ProbeNginx, ProbeOutput, RemoveNginx, RemoveNginxOutput,
};
use clustermgr_shared::fsutil::write_atomic;
use nix::sys::signal::Signal;
use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the load balancer's files are on this host.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
    pub conf: PathBuf,
    pub ssl: PathBuf,
    pub state: PathBuf,
    pub pid: PathBuf,
    pub error_log: PathBuf,
    pub access_log: PathBuf,
    /// Sandbox: temporary files under the root, and nginx's prefix.
    pub temp_dir: Option<PathBuf>,
    pub system: bool,
}

impl Layout {
    pub fn of(host: &Host) -> Self {
        let system = host.packages == PackageMode::System;
        let dir = host.path("/etc/nginx");
        if system {
            Self {
                conf: dir.join("nginx.conf"),
                ssl: dir.join("ssl"),
                state: dir.join("clustermgr-lb.json"),
                dir,
                pid: PathBuf::from("/run/nginx.pid"),
                error_log: PathBuf::from("/var/log/nginx/error.log"),
                access_log: PathBuf::from("/var/log/nginx/access.log"),
                temp_dir: None,
                system,
            }
        } else {
            Self {
                conf: dir.join("nginx.conf"),
                ssl: dir.join("ssl"),
                state: dir.join("clustermgr-lb.json"),
                dir,
                pid: daemon::pid_file(host, "nginx"),
                error_log: host.path("/var/log/nginx/error.log"),
                access_log: host.path("/var/log/nginx/access.log"),
                temp_dir: Some(host.path("/var/lib/nginx")),
                system,
            }
        }
    }

    fn candidate(&self) -> PathBuf {
        self.dir.join("nginx.conf.clustermgr-candidate")
    }

    fn original(&self) -> PathBuf {
        self.dir.join("nginx.conf.clustermgr-orig")
    }

    fn cert(&self, generation: &str) -> PathBuf {
        self.ssl.join(format!("clustermgr-{generation}.crt"))
    }

    fn key(&self, generation: &str) -> PathBuf {
        self.ssl.join(format!("clustermgr-{generation}.key"))
    }

    /// nginx's argv with `conf` (the sandbox's prefix and error log under the root).
    fn argv(&self, conf: &Path, extra: &[&str]) -> Vec<String> {
        let mut v = vec![NGINX.to_string()];
        v.extend(extra.iter().map(|s| s.to_string()));
        if !self.system {
            v.push("-p".into());
            v.push(path_str(&self.dir));
            v.push("-e".into());
            v.push(path_str(&self.error_log));
        }
        v.push("-c".into());
        v.push(path_str(conf));
        v
    }

    fn daemon(&self) -> Daemon {
        Daemon {
            unit: "nginx".into(),
            start_argv: self.argv(&self.conf, &[]),
            pid_file: self.pid.clone(),
            reload_signal: Some(Signal::SIGHUP),
        }
    }
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// What the agent records beside the configuration (no secret): for status and the probe.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Applied {
    pub server_name: String,
    pub backends: Vec<(String, u32, String)>,
    pub sticky_oxauth: bool,
    pub listen_address: String,
    pub https_port: u32,
    pub http_port: u32,
    /// The certificate and key files' generation.
    pub generation: String,
    /// Backends (names) out of rotation (`down`).
    #[serde(default)]
    pub drained: Vec<String>,
    /// Certificates (PEM) trusted on the backends besides `generation`'s (a certificate roll).
    #[serde(default)]
    pub also_trust: Vec<String>,
}

impl Applied {
    /// The backends as the operations name them.
    pub fn lb_backends(&self) -> Vec<LbBackend> {
        self.backends
            .iter()
            .map(|(address, port, name)| LbBackend {
                address: address.clone(),
                port: *port,
                name: name.clone(),
            })
            .collect()
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && !n.starts_with(['-', '.'])
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
}

fn host_port(addr: &IpAddr, port: u32) -> String {
    match addr {
        IpAddr::V6(a) => format!("[{a}]:{port}"),
        IpAddr::V4(a) => format!("{a}:{port}"),
    }
}

fn port(p: u32, what: &str) -> Result<u32, OpError> {
    if (1..=65535).contains(&p) {
        Ok(p)
    } else {
        Err(OpError(format!("{what} {p} is not a port")))
    }
}

/// The configuration text for `req` with the files of `layout` and `generation`; every value
/// checked first.
pub fn render(
    template: &str,
    req: &ConfigureNginx,
    layout: &Layout,
    generation: &str,
) -> Result<String, OpError> {
    render_trusting(template, req, layout, generation, &layout.cert(generation))
}

/// [`render`], the backends verified against the certificates in `trusted`.
pub fn render_trusting(
    template: &str,
    req: &ConfigureNginx,
    layout: &Layout,
    generation: &str,
    trusted: &Path,
) -> Result<String, OpError> {
    if !valid_name(&req.server_name) {
        return Err(OpError(format!("{:?} is not a host name", req.server_name)));
    }
    if req.backends.is_empty() {
        return Err(OpError(
            "no Gluu server to balance (install Gluu on a server first)".into(),
        ));
    }
    let listen: IpAddr = req.listen_address.parse().map_err(|_| {
        OpError(format!(
            "listen address {:?} is not an IP address",
            req.listen_address
        ))
    })?;
    let https = port(req.https_port, "https port")?;
    let http = port(req.http_port, "http port")?;
    if https == http {
        return Err(OpError(format!("https and http both on port {https}")));
    }
    let mut backends = Vec::new();
    for b in &req.backends {
        let a: IpAddr = b.address.parse().map_err(|_| {
            OpError(format!(
                "backend address {:?} is not an IP address",
                b.address
            ))
        })?;
        if !valid_name(&b.name) {
            return Err(OpError(format!(
                "backend name {:?} is not a host name",
                b.name
            )));
        }
        backends.push(minijinja::context! {
            hostport => host_port(&a, port(b.port, "backend port")?),
            name => b.name.clone(),
            down => req.drained.contains(&b.name),
        });
    }
    let balancing =
        OxauthBalancing::try_from(req.oxauth_balancing).unwrap_or(OxauthBalancing::Unspecified);
    let listen = match listen {
        IpAddr::V6(a) => format!("[{a}]"),
        IpAddr::V4(a) => a.to_string(),
    };
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_template("nginx.conf", template)
        .map_err(|e| OpError(format!("the nginx template: {e}")))?;
    let tmpl = env
        .get_template("nginx.conf")
        .map_err(|e| OpError(format!("the nginx template: {e}")))?;
    let text = tmpl
        .render(minijinja::context! {
            marker => MARKER,
            server_name => req.server_name.clone(),
            pid_path => path_str(&layout.pid),
            error_log => path_str(&layout.error_log),
            access_log => path_str(&layout.access_log),
            temp_dir => layout.temp_dir.as_deref().map(path_str),
            backends => backends,
            oxauth_sticky => balancing != OxauthBalancing::RoundRobin,
            listen => listen,
            http_port => http,
            https_port => https,
            https_suffix => if https == 443 { String::new() } else { format!(":{https}") },
            cert_path => path_str(&layout.cert(generation)),
            key_path => path_str(&layout.key(generation)),
            trusted_path => path_str(trusted),
            sticky_paths => STICKY_PATHS.to_vec(),
            oxauth_paths => OXAUTH_PATHS.to_vec(),
        })
        .map_err(|e| OpError(format!("the nginx template: {e}")))?;
    let mut text = text;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    check_down_marks(&text, req)?;
    Ok(text)
}

fn io(what: &Path) -> impl Fn(std::io::Error) -> OpError + '_ {
    move |e| OpError(format!("{}: {e}", what.display()))
}

fn read_applied(layout: &Layout) -> Option<Applied> {
    let text = std::fs::read_to_string(&layout.state).ok()?;
    serde_json::from_str(&text).ok()
}

fn ours(conf: &Path) -> bool {
    std::fs::read_to_string(conf).is_ok_and(|t| t.starts_with(&format!("# {MARKER}")))
}

/// Removes the certificate generations other than `keep`, and the trust bundles other than
/// `trust`.
fn prune_generations(layout: &Layout, keep: &str, trust: Option<&Path>) {
    let Ok(rd) = std::fs::read_dir(&layout.ssl) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("clustermgr-")
            && (name.ends_with(".crt") || name.ends_with(".key"))
            && name != format!("clustermgr-{keep}.crt")
            && name != format!("clustermgr-{keep}.key")
        {
            let _ = std::fs::remove_file(e.path());
        }
        if name.starts_with("clustermgr-trust-") && trust != Some(e.path().as_path()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The certificate parses and the key is its own. nginx -t alone would not say so: OpenSSL keeps
/// a key of another type (an RSA key for an EC certificate) in a slot of its own, and the
/// handshakes fail only once the configuration serves.
pub fn check_pair(certificate_pem: &str, key_pem: String) -> Result<(), OpError> {
    let certs = clustermgr_shared::tls::certs_from_pem(certificate_pem)
        .ok()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| OpError("the certificate is not a PEM certificate".into()))?;
    let key = clustermgr_shared::tls::key_from_pem(&clustermgr_shared::Secret::new(key_pem))
        .map_err(|_| OpError("the key is not a PEM private key".into()))?;
    rustls::sign::CertifiedKey::from_der(certs, key, &clustermgr_shared::tls::provider())
        .map(|_| ())
        .map_err(|e| OpError(format!("the key does not belong to the certificate: {e}")))
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

/// The trust bundle's file for `also_trust` beside `generation`'s certificate (None: the
/// certificate alone).
fn trust_file(layout: &Layout, generation: &str, also_trust: &[String]) -> Option<PathBuf> {
    use sha2::Digest as _;
    if also_trust.is_empty() {
        return None;
    }
    let mut h = sha2::Sha256::new();
    h.update(generation.as_bytes());
    for c in also_trust {
        h.update(c.as_bytes());
    }
    let digest = hex::encode(h.finalize());
    Some(
        layout
            .ssl
            .join(format!("clustermgr-trust-{}.pem", &digest[..16])),
    )
}

/// Writes the configuration `req` (with `also_trust` trusted on the backends too), checked
/// with `nginx -t` before it replaces the running one, then reloads or starts nginx.
pub(crate) async fn apply(
    ctx: &Ctx,
    req: ConfigureNginx,
    also_trust: Vec<String>,
    log: &mut Log,
) -> Result<ConfigureNginxOutput, OpError> {
    let key_text = String::from_utf8_lossy(&req.key_pem).into_owned();
    log.secret(&key_text);
    if !Path::new(NGINX).exists() {
        return Err(OpError(format!(
            "{NGINX} does not exist: install the nginx package first"
        )));
    }
    check_pair(&req.certificate_pem, key_text)?;
    let layout = Layout::of(&ctx.host);
    let previous = read_applied(&layout).filter(|_| ours(&layout.conf));
    // Same certificate and key as the running generation: keep it; else a new one.
    let same_files = previous.as_ref().is_some_and(|p| {
        std::fs::read(layout.cert(&p.generation)).ok().as_deref()
            == Some(req.certificate_pem.as_bytes())
            && std::fs::read(layout.key(&p.generation)).ok().as_deref()
                == Some(req.key_pem.as_slice())
    });
    let generation = match (&previous, same_files) {
        (Some(p), true) => p.generation.clone(),
        _ => clustermgr_shared::util::now_ms().to_string(),
    };
    let custom = ctx.host.path(TEMPLATE_OVERRIDE);
    let template = match std::fs::read_to_string(&custom) {
        Ok(t) => {
            log.line(format!("using the template {}", custom.display()));
            t
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => TEMPLATE.to_string(),
        Err(e) => return Err(io(&custom)(e)),
    };
    let trust = trust_file(&layout, &generation, &also_trust);
    let text = render_trusting(
        &template,
        &req,
        &layout,
        &generation,
        trust.as_deref().unwrap_or(&layout.cert(&generation)),
    )?;
    let applied = Applied {
        drained: req.drained.clone(),
        also_trust: also_trust.clone(),
        server_name: req.server_name.clone(),
        backends: req
            .backends
            .iter()
            .map(|b| (b.address.clone(), b.port, b.name.clone()))
            .collect(),
        sticky_oxauth: OxauthBalancing::try_from(req.oxauth_balancing)
            != Ok(OxauthBalancing::RoundRobin),
        listen_address: req.listen_address.clone(),
        https_port: req.https_port,
        http_port: req.http_port,
        generation: generation.clone(),
    };
    let d = layout.daemon();
    let running = d.state(&ctx.host, log).await?.running();
    let unchanged =
        same_files && std::fs::read_to_string(&layout.conf).ok().as_deref() == Some(text.as_str());
    if unchanged && running {
        log.line(format!(
            "{}: unchanged, nginx running",
            layout.conf.display()
        ));
        write_atomic(
            &layout.state,
            &serde_json::to_vec_pretty(&applied).unwrap_or_default(),
            0o644,
        )
        .map_err(io(&layout.state))?;
        return Ok(ConfigureNginxOutput {
            changed: false,
            started: false,
            config_path: path_str(&layout.conf),
        });
    }
    for dir in [
        Some(&layout.dir),
        Some(&layout.ssl),
        layout.temp_dir.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    if !layout.system {
        for p in [&layout.error_log, &layout.pid] {
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
        }
    }
    let (cert, key) = (layout.cert(&generation), layout.key(&generation));
    if let Some(t) = &trust {
        let mut bundle = req.certificate_pem.trim_end().to_string();
        for c in &also_trust {
            bundle.push('\n');
            bundle.push_str(c.trim_end());
        }
        bundle.push('\n');
        write_atomic(t, bundle.as_bytes(), 0o644).map_err(io(t))?;
        log.line(format!(
            "the backends' certificates trusted: {} ({} besides the balancer's own)",
            t.display(),
            also_trust.len()
        ));
    }
    if !same_files {
        write_atomic(&cert, req.certificate_pem.as_bytes(), 0o644).map_err(io(&cert))?;
        write_atomic(&key, &req.key_pem, 0o600).map_err(io(&key))?;
        log.line(format!(
            "certificate {} and key {} (0600) written",
            cert.display(),
            key.display()
        ));
    }
    let candidate = layout.candidate();
    write_atomic(&candidate, text.as_bytes(), 0o644).map_err(io(&candidate))?;
    let check = run_checked(
        &ctx.host,
        &Command::new(layout.argv(&candidate, &["-t", "-q"])),
        log,
        "nginx -t (the new configuration)",
    )
    .await;
    if let Err(e) = check {
        let _ = std::fs::remove_file(&candidate);
        if !same_files {
            let _ = std::fs::remove_file(&cert);
            let _ = std::fs::remove_file(&key);
        }
        log.line("the running configuration is unchanged");
        return Err(e);
    }
    // The distribution's own configuration is kept, once, for `lb remove`.
    if layout.conf.exists() && !ours(&layout.conf) && !layout.original().exists() {
        std::fs::rename(&layout.conf, layout.original()).map_err(io(&layout.conf))?;
        log.line(format!(
            "the existing {} kept as {}",
            layout.conf.display(),
            layout.original().display()
        ));
    }
    std::fs::rename(&candidate, &layout.conf).map_err(io(&layout.conf))?;
    write_atomic(
        &layout.state,
        &serde_json::to_vec_pretty(&applied).unwrap_or_default(),
        0o644,
    )
    .map_err(io(&layout.state))?;
    log.line(format!(
        "{} in place: {} backend(s){}, /oxauth {}",
        layout.conf.display(),
        req.backends.len(),
        if req.drained.is_empty() {
            String::new()
        } else {
            format!(" ({} out of rotation)", req.drained.join(", "))
        },
        if applied.sticky_oxauth {
            "sticky"
        } else {
            "round robin"
        }
    ));
    if running {
        d.reload(&ctx.host, log).await?;
    } else {
        d.ensure_started(&ctx.host, log).await?;
    }
    prune_generations(&layout, &generation, trust.as_deref());
    Ok(ConfigureNginxOutput {
        changed: true,
        started: !running,
        config_path: path_str(&layout.conf),
    })
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

mod checks;
mod drained;
pub mod health_mark;
mod rotation;
use checks::{get, host_header, tls_for};
pub use checks::{probe, status};
pub(crate) use drained::lock;
use drained::{check_down_marks, keep_drained};
pub use rotation::set_backend_rotation;

#[cfg(test)]
mod tests;
