//! Where the load balancer's files are on this host ([`Layout`]: the configuration, its
//! candidate and the distribution's original, the certificate generations, the trust bundles),
//! and what the agent records beside the configuration ([`Applied`]).

use super::{MARKER, NGINX};
use crate::host::{Host, PackageMode};
use crate::ops::daemon::{self, Daemon};
use clustermgr_proto::LbBackend;
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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

    pub(super) fn candidate(&self) -> PathBuf {
        self.dir.join("nginx.conf.clustermgr-candidate")
    }

    pub(super) fn original(&self) -> PathBuf {
        self.dir.join("nginx.conf.clustermgr-orig")
    }

    pub(super) fn cert(&self, generation: &str) -> PathBuf {
        self.ssl.join(format!("clustermgr-{generation}.crt"))
    }

    pub(super) fn key(&self, generation: &str) -> PathBuf {
        self.ssl.join(format!("clustermgr-{generation}.key"))
    }

    /// nginx's argv with `conf` (the sandbox's prefix and error log under the root).
    pub(super) fn argv(&self, conf: &Path, extra: &[&str]) -> Vec<String> {
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

    pub(super) fn daemon(&self) -> Daemon {
        Daemon {
            unit: "nginx".into(),
            start_argv: self.argv(&self.conf, &[]),
            pid_file: self.pid.clone(),
            reload_signal: Some(Signal::SIGHUP),
        }
    }
}

pub(super) fn path_str(p: &Path) -> String {
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

pub(super) fn read_applied(layout: &Layout) -> Option<Applied> {
    let text = std::fs::read_to_string(&layout.state).ok()?;
    serde_json::from_str(&text).ok()
}

pub(super) fn ours(conf: &Path) -> bool {
    std::fs::read_to_string(conf).is_ok_and(|t| t.starts_with(&format!("# {MARKER}")))
}

/// Removes the certificate generations other than `keep`, and the trust bundles other than
/// `trust`.
pub(super) fn prune_generations(layout: &Layout, keep: &str, trust: Option<&Path>) {
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

/// The trust bundle's file for `also_trust` beside `generation`'s certificate (None: the
/// certificate alone).
pub(super) fn trust_file(
    layout: &Layout,
    generation: &str,
    also_trust: &[String],
) -> Option<PathBuf> {
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
