//! The agent's state directory.
//!
//! ```text
//! STATE_DIR/            (0700)
//!   agent.toml          controller address, node id, role, root, hostname/address overrides
//!   identity.pem        node certificate + private key, one file so renewal replaces both at once (0600)
//!   ca.crt              the CA bundle: the CA the controller proved with the pin, replaced by
//!                       the bundle the controller sends (both CAs during a rotation) (0600)
//! ```

use anyhow::{Context, Result, bail};
use clustermgr_shared::Secret;
use clustermgr_shared::fsutil::{create_private_dir, write_private};
use clustermgr_shared::pki::CertInfo;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct AgentConfig {
    /// `HOST:PORT` of the controller.
    pub controller: String,
    pub node_id: String,
    pub role: String,
    /// File-system root for every path the agent manages ("/" on a real host).
    #[serde(default = "default_root")]
    pub root: PathBuf,
    /// Hostname to report instead of the kernel's (sandbox hosts share one kernel).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Address to report and to dial from (sandbox hosts each have a loopback address).
    #[serde(default)]
    pub address: Option<String>,
    /// Extra managed paths besides the defaults.
    #[serde(default)]
    pub extra_managed_paths: Vec<String>,
}

fn default_root() -> PathBuf {
    PathBuf::from("/")
}

#[derive(Debug, Clone)]
pub struct StateDir {
    pub dir: PathBuf,
}

/// The node's certificate and key.
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: Secret<String>,
    pub info: CertInfo,
}

impl StateDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("agent.toml")
    }
    pub fn identity_path(&self) -> PathBuf {
        self.dir.join("identity.pem")
    }
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn is_joined(&self) -> bool {
        self.identity_path().exists() && self.config_path().exists()
    }

    pub fn load_config(&self) -> Result<AgentConfig> {
        let p = self.config_path();
        let text = std::fs::read_to_string(&p).with_context(|| {
            format!(
                "cannot read {}: this host has not joined a cluster (run `clustermgr-agent join`)",
                p.display()
            )
        })?;
        toml::from_str(&text).with_context(|| format!("invalid agent config {}", p.display()))
    }

    pub fn load_identity(&self) -> Result<Identity> {
        let p = self.identity_path();
        let text = std::fs::read_to_string(&p)
            .with_context(|| format!("cannot read the node identity {}", p.display()))?;
        let cert_end = text
            .find("-----END CERTIFICATE-----")
            .context("identity file holds no certificate")?
            + "-----END CERTIFICATE-----".len();
        let cert_pem = text[..cert_end].trim().to_string() + "\n";
        let key_pem = text[cert_end..].trim().to_string() + "\n";
        if !key_pem.contains("PRIVATE KEY") {
            bail!("identity file {} holds no private key", p.display());
        }
        let info = CertInfo::from_pem(&cert_pem)?;
        Ok(Identity {
            cert_pem,
            key_pem: Secret::new(key_pem),
            info,
        })
    }

    pub fn load_ca(&self) -> Result<String> {
        std::fs::read_to_string(self.ca_path())
            .with_context(|| format!("cannot read {}", self.ca_path().display()))
    }

    /// Replaces the CA bundle with `pem` (every certificate must parse). Returns whether it
    /// changed.
    pub fn save_ca_bundle(&self, pem: &str) -> Result<bool> {
        let certs = clustermgr_shared::tls::certs_from_pem(pem)
            .context("the controller sent an invalid CA bundle")?;
        if certs.len() > 8 {
            bail!(
                "the controller sent a CA bundle of {} certificates",
                certs.len()
            );
        }
        if self.load_ca().ok().as_deref() == Some(pem) {
            return Ok(false);
        }
        write_private(&self.ca_path(), pem.as_bytes())
            .with_context(|| format!("cannot write {}", self.ca_path().display()))?;
        Ok(true)
    }

    /// Writes everything a join produced.
    pub fn save_join(
        &self,
        cfg: &AgentConfig,
        cert_pem: &str,
        key_pem: &Secret<String>,
        ca_pem: &str,
    ) -> Result<()> {
        create_private_dir(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        write_private(&self.ca_path(), ca_pem.as_bytes())?;
        self.save_identity(cert_pem, key_pem)?;
        self.save_config(cfg)
    }

    pub fn save_config(&self, cfg: &AgentConfig) -> Result<()> {
        let text = toml::to_string(cfg)?;
        write_private(&self.config_path(), text.as_bytes())
            .with_context(|| format!("cannot write {}", self.config_path().display()))
    }

    /// Replaces certificate and key in one atomic rename.
    pub fn save_identity(&self, cert_pem: &str, key_pem: &Secret<String>) -> Result<()> {
        let body = format!("{}\n{}", cert_pem.trim(), key_pem.expose().trim());
        write_private(&self.identity_path(), format!("{body}\n").as_bytes())
            .with_context(|| format!("cannot write {}", self.identity_path().display()))
    }
}

/// The default state directory.
pub fn default_state_dir() -> PathBuf {
    Path::new("/var/lib/clustermgr-agent").to_path_buf()
}
