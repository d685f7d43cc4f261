//! The controller's settings file in its data directory (the directory's layout is
//! `clustermgr_shared::datadir`, which the CLI shares).

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
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

pub use clustermgr_shared::datadir::{DataDir, default_data_dir, default_sandbox_dir, home};

/// The settings file of a data directory (`controller.toml`).
pub trait SettingsFile {
    fn load_settings(&self) -> Result<Settings>;
    fn save_settings(&self, s: &Settings) -> Result<()>;
}

impl SettingsFile for DataDir {
    fn load_settings(&self) -> Result<Settings> {
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

    fn save_settings(&self, s: &Settings) -> Result<()> {
        let text = toml::to_string(s)?;
        clustermgr_shared::fsutil::write_atomic(&self.settings(), text.as_bytes(), 0o600)
            .with_context(|| format!("cannot write {}", self.settings().display()))
    }
}

pub fn exists(p: &Path) -> bool {
    p.try_exists().unwrap_or(false)
}
