//! The operator credential bundle: one TOML file with the controller address, the CA, and the
//! operator's certificate and private key. `clustermgr init` writes the admin's; `clustermgr
//! operator create` writes others.

use crate::Secret;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid credential file: {msg}")]
    Parse { path: String, msg: String },
}

impl Serialize for Secret<String> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for Secret<String> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// An operator credential.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientBundle {
    /// `HOST:PORT` of the controller.
    pub controller: String,
    /// Operator name (informational; the controller knows it from the certificate).
    pub name: String,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: Secret<String>,
}

impl ClientBundle {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            msg: e.message().to_string(),
        })
    }

    /// Writes the bundle with mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let text = toml::to_string(self).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        let body = format!(
            "# clustermgr operator credential: keep it private (it holds a private key)\n{text}"
        );
        crate::fsutil::write_private(path, body.as_bytes()).map_err(|source| ConfigError::Write {
            path: path.display().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_debug_hides_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        let b = ClientBundle {
            controller: "127.0.0.1:7443".into(),
            name: "admin".into(),
            ca_pem: "CA".into(),
            cert_pem: "CERT".into(),
            key_pem: Secret::new("KEY-MATERIAL".into()),
        };
        b.save(&p).unwrap();
        let back = ClientBundle::load(&p).unwrap();
        assert_eq!(back.key_pem.expose(), "KEY-MATERIAL");
        assert!(!format!("{back:?}").contains("KEY-MATERIAL"));
    }
}
