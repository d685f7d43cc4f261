//! Paths inside the controller's data directory, and the default directories: what the
//! controller (which owns the directory) and the CLI (which reads the admin credential and the
//! CA certificate from it, and makes one for the sandbox) both name.
//!
//! ```text
//! DATA_DIR/
//!   controller.toml   settings written by `init`, read by `serve`
//!   ca.crt ca.key     the cluster CA (key 0600)
//!   server.crt/.key   the controller's TLS identity (chain: leaf + CA)
//!   admin.toml        the admin operator credential (0600)
//!   state.redb        the embedded store
//! ```

use std::path::PathBuf;

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
