//! The controller's data directory and its settings file.
//!
//! ```text
//! DATA_DIR/
//!   controller.toml   settings written by `init`, read by `serve`
//!   ca.crt ca.key     the cluster CA (key 0600)
//!   server.crt/.key   the controller's TLS identity (chain: leaf + CA)
//!   admin.toml        the admin operator credential (0600)
//!   state.redb        the embedded store
//! ```

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Address the daemon listens on.
    pub listen: String,
    /// Address clients are told to dial (written into credential bundles).
    pub advertise: String,
    /// Lifetime of node certificates, e.g. "30d".
    #[serde(default = "default_node_cert_ttl")]
    pub node_cert_ttl: String,
    /// Lifetime of operator certificates.
    #[serde(default = "default_operator_cert_ttl")]
    pub operator_cert_ttl: String,
    /// Agent heartbeat interval.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_interval: String,
    /// New nodes wait as pending until approved.
    #[serde(default)]
    pub require_approval: bool,
    /// Agents older than this version are refused at session start (empty: any).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub min_agent_version: String,
    /// `[listener]`: connection cap, TLS handshake timeout, keep-alive, HTTP/2 limits.
    #[serde(default)]
    pub listener: crate::limits::listener::ListenerSettings,
}

fn default_node_cert_ttl() -> String {
    "30d".into()
}
fn default_operator_cert_ttl() -> String {
    "365d".into()
}
fn default_heartbeat() -> String {
    "5s".into()
}

/// Durations in settings and flags; the parser both binaries share.
pub fn parse_duration(s: &str) -> Result<Duration> {
    Ok(clustermgr_shared::duration::parse_duration(s)?)
}

/// Paths inside a data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn settings(&self) -> PathBuf {
        self.root.join("controller.toml")
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca.key")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.root.join("server.crt")
    }
    pub fn server_key(&self) -> PathBuf {
        self.root.join("server.key")
    }
    pub fn admin_bundle(&self) -> PathBuf {
        self.root.join("admin.toml")
    }
    /// The key that seals secrets in the store (32 random bytes, 0600).
    pub fn sealing_key(&self) -> PathBuf {
        self.root.join("sealing.key")
    }
    pub fn store(&self) -> PathBuf {
        self.root.join("state.redb")
    }

    pub fn load_settings(&self) -> Result<Settings> {
        let path = self.settings();
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}: is {} a clustermgr data directory? (run `clustermgr init` first)",
                path.display(),
                self.root.display()
            )
        })?;
        toml::from_str(&text).with_context(|| format!("invalid settings in {}", path.display()))
    }

    pub fn save_settings(&self, s: &Settings) -> Result<()> {
        let text = toml::to_string(s)?;
        clustermgr_shared::fsutil::write_atomic(&self.settings(), text.as_bytes(), 0o600)
            .with_context(|| format!("cannot write {}", self.settings().display()))
    }
}

/// The default data directory: `$CLUSTERMGR_DATA_DIR`, else `~/.clustermgr`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CLUSTERMGR_DATA_DIR") {
        return PathBuf::from(d);
    }
    home().join(".clustermgr")
}

/// Where `clustermgr sandbox` keeps its cluster by default: `~/.clustermgr-sandbox`.
pub fn default_sandbox_dir() -> PathBuf {
    home().join(".clustermgr-sandbox")
}

pub fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

pub fn exists(p: &Path) -> bool {
    p.try_exists().unwrap_or(false)
}
