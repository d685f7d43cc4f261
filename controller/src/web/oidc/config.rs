//! The console's OpenID Connect settings, `DATA/oidc.toml` (0600), written by
//! `clustermgr console oidc register` and read by `serve`; the client secret in it is sealed
//! with the data directory's sealing key, never in plain text.

use crate::auth::Role;
use crate::sealing::Sealer;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::OidcError;

/// The sealing purpose of the client secret.
const SEAL_PURPOSE: &str = "web.oidc.client-secret";
/// The role claim and mapping of the seed: users whose `role` holds `clusteradmin` are admins.
pub const DEFAULT_ROLE_CLAIM: &str = "role";
pub const DEFAULT_ROLE_MAP: &str = "clusteradmin=admin";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OidcSettings {
    /// The OP's issuer URL (its discovery document is `ISSUER/.well-known/openid-configuration`);
    /// empty: the cluster's own Gluu through its load balancer hostname.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer: String,
    pub client_id: String,
    /// The client secret, sealed (base64).
    pub client_secret_sealed: String,
    /// The console's callback, `https://CONSOLE/login/oidc/callback`, as registered at the OP.
    pub redirect_uri: String,
    /// The ID token (or userinfo) claim that holds the user's roles.
    #[serde(default = "default_claim")]
    pub role_claim: String,
    /// `VALUE=ROLE,...`: which claim value gives which console role (the highest wins).
    #[serde(default = "default_map")]
    pub role_map: String,
    /// PEM CA certificates that verify the OP's TLS certificate; empty: the cluster's CA.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_file: String,
    /// Dial this `ADDRESS:PORT` for the OP's host instead of resolving its name (the
    /// certificate is still verified for the name).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub connect_to: String,
}

fn default_claim() -> String {
    DEFAULT_ROLE_CLAIM.into()
}
fn default_map() -> String {
    DEFAULT_ROLE_MAP.into()
}

pub fn path(data_root: &Path) -> PathBuf {
    data_root.join("oidc.toml")
}

impl OidcSettings {
    /// The settings in `DATA/oidc.toml`; `None` when the file does not exist.
    pub fn load(data_root: &Path) -> Result<Option<Self>, OidcError> {
        let p = path(data_root);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(OidcError::Config(format!("{}: {e}", p.display()))),
        };
        let s: Self = toml::from_str(&text)
            .map_err(|e| OidcError::Config(format!("{}: {e}", p.display())))?;
        RoleMap::parse(&s.role_map)
            .map_err(|e| OidcError::Config(format!("{}: role_map: {e}", p.display())))?;
        Ok(Some(s))
    }

    pub fn save(&self, data_root: &Path) -> Result<(), OidcError> {
        let p = path(data_root);
        let text = toml::to_string(self).map_err(|e| OidcError::Config(e.to_string()))?;
        clustermgr_shared::fsutil::write_atomic(&p, text.as_bytes(), 0o600)
            .map_err(|e| OidcError::Config(format!("{}: {e}", p.display())))
    }

    pub fn seal_secret(sealer: &Sealer, secret: &str) -> Result<String, OidcError> {
        let sealed = sealer
            .seal(SEAL_PURPOSE, secret.as_bytes())
            .map_err(|e| OidcError::Config(format!("sealing the client secret: {e}")))?;
        Ok(STANDARD.encode(sealed))
    }

    pub fn client_secret(&self, sealer: &Sealer) -> Result<String, OidcError> {
        let bad = |e: String| OidcError::Config(format!("the sealed client secret: {e}"));
        let sealed = STANDARD
            .decode(&self.client_secret_sealed)
            .map_err(|e| bad(e.to_string()))?;
        let plain = sealer
            .open(SEAL_PURPOSE, &sealed)
            .map_err(|e| bad(e.to_string()))?;
        String::from_utf8(plain).map_err(|e| bad(e.to_string()))
    }
}

/// Claim values and the console role each gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleMap(Vec<(String, Role)>);

impl RoleMap {
    /// `clusteradmin=admin,clusterops=operator,clusterview=viewer`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (value, role) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not VALUE=ROLE"))?;
            let role = Role::parse(role.trim())
                .ok_or_else(|| format!("{role:?} is not admin, operator or viewer"))?;
            if value.trim().is_empty() {
                return Err(format!("{item:?} has no claim value"));
            }
            out.push((value.trim().to_string(), role));
        }
        if out.is_empty() {
            return Err("no VALUE=ROLE pair".into());
        }
        Ok(Self(out))
    }

    /// The highest role the claim's values give (a string or an array of strings).
    pub fn role(&self, claim: Option<&serde_json::Value>) -> Option<Role> {
        let values: Vec<&str> = match claim {
            Some(serde_json::Value::String(s)) => vec![s.as_str()],
            Some(serde_json::Value::Array(a)) => {
                a.iter().filter_map(serde_json::Value::as_str).collect()
            }
            _ => Vec::new(),
        };
        self.0
            .iter()
            .filter(|(v, _)| values.contains(&v.as_str()))
            .map(|(_, r)| *r)
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_role_map_gives_the_highest_mapped_role_and_nothing_without_the_claim() {
        let m =
            RoleMap::parse("clusteradmin=admin, clusterops=operator,clusterview=viewer").unwrap();
        assert_eq!(m.role(Some(&json!("clusteradmin"))), Some(Role::Admin));
        assert_eq!(
            m.role(Some(&json!(["clusterview", "clusterops"]))),
            Some(Role::Operator)
        );
        assert_eq!(m.role(Some(&json!(["staff"]))), None);
        assert_eq!(m.role(Some(&json!(7))), None);
        assert_eq!(m.role(None), None);
        assert!(RoleMap::parse("clusteradmin=root").is_err());
        assert!(RoleMap::parse("clusteradmin").is_err());
        assert!(RoleMap::parse("").is_err());
    }

    #[test]
    fn the_secret_is_sealed_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::load_or_create(&dir.path().join("sealing.key")).unwrap();
        let s = OidcSettings {
            issuer: "https://idp.example.org".into(),
            client_id: "c1".into(),
            client_secret_sealed: OidcSettings::seal_secret(&sealer, "s3cret-value").unwrap(),
            redirect_uri: "https://console.example.org/login/oidc/callback".into(),
            role_claim: default_claim(),
            role_map: default_map(),
            ca_file: String::new(),
            connect_to: String::new(),
        };
        s.save(dir.path()).unwrap();
        let text = std::fs::read_to_string(path(dir.path())).unwrap();
        assert!(!text.contains("s3cret-value"), "{text}");
        let back = OidcSettings::load(dir.path()).unwrap().unwrap();
        assert_eq!(back, s);
        assert_eq!(back.client_secret(&sealer).unwrap(), "s3cret-value");
    }
}
