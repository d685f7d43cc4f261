//! "Sign in with OpenID Connect": the console as a confidential client of an OpenID Provider
//! (by default the cluster's own Gluu through its load balancer hostname).
//!
//! Authorization code flow with PKCE (S256), `state` and `nonce` ([`flow`]), the sign-in in
//! progress sealed in the browser's cookie ([`pending`]); the OP's endpoints
//! from its discovery document (kept 5 minutes); the ID token verified against the OP's JWKS,
//! fetched at each callback so that a rotated key is known at once ([`jwt`]); the console role
//! from a claim mapped by [`config::RoleMap`]; the session's user is `NAME@openid (sub SUB)`
//! ([`user_name`]: the OP's `sub` identifies the person, the name is for reading). Settings in
//! `DATA/oidc.toml` ([`config`]), read again when the file changes, and then every OpenID
//! Connect session ends; TLS to the OP verified with the configured CA file or the cluster's CA
//! ([`http`]).

pub mod config;
mod flow;
pub mod http;
mod jwt;
mod pending;

use crate::sealing::Sealer;
use crate::web::sessions::Sessions;
use clustermgr_proto::ClusterSettings;
use clustermgr_shared::secret::Secret;
use config::{OidcSettings, RoleMap};
use http::OpClient;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub(super) use flow::{callback, start};

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("OpenID Connect settings: {0}")]
    Config(String),
    #[error("the OpenID Provider: {0}")]
    Op(String),
    #[error("the ID token is refused: {0}")]
    IdToken(String),
}

/// The OP's discovery document is used this long before it is fetched again (an unauthenticated
/// visitor starting sign-ins does not make the console call the OP each time).
const DISCOVERY_TTL: Duration = Duration::from_secs(300);

/// The console's client at the OP, as `DATA/oidc.toml` describes it.
pub struct Oidc {
    settings: OidcSettings,
    secret: Secret<String>,
    roles: RoleMap,
    client: OpClient,
    discovered: Mutex<Option<(Instant, Discovery)>>,
}

/// What the console uses of the OP's discovery document.
#[derive(Clone)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    userinfo_endpoint: Option<String>,
}

/// The issuer of the cluster's own Gluu: `https://LB_HOSTNAME[:PORT]`.
pub fn cluster_issuer(s: &ClusterSettings) -> Option<String> {
    if s.lb_hostname.is_empty() {
        return None;
    }
    Some(match s.https_port {
        0 | 443 => format!("https://{}", s.lb_hostname),
        p => format!("https://{}:{p}", s.lb_hostname),
    })
}

/// The CA certificates that verify the OP: `ca_file`, else the cluster's CA.
pub fn op_client(
    settings_ca_file: &str,
    connect_to: &str,
    data_root: &Path,
) -> Result<OpClient, OidcError> {
    let ca = if settings_ca_file.is_empty() {
        crate::config::DataDir::new(data_root).ca_cert()
    } else {
        settings_ca_file.into()
    };
    let pem = std::fs::read_to_string(&ca)
        .map_err(|e| OidcError::Config(format!("the OP's CA file {}: {e}", ca.display())))?;
    let connect_to = (!connect_to.is_empty()).then(|| connect_to.to_string());
    OpClient::new(&pem, connect_to)
}

impl Oidc {
    /// The client of `DATA/oidc.toml`; `None` when OpenID Connect is not configured.
    pub fn load(data_root: &Path, sealer: &Sealer) -> Result<Option<Self>, OidcError> {
        let Some(settings) = OidcSettings::load(data_root)? else {
            return Ok(None);
        };
        let roles = RoleMap::parse(&settings.role_map).map_err(OidcError::Config)?;
        let secret = Secret::new(settings.client_secret(sealer)?);
        let client = op_client(&settings.ca_file, &settings.connect_to, data_root)?;
        Ok(Some(Self {
            settings,
            secret,
            roles,
            client,
            discovered: Mutex::new(None),
        }))
    }

    /// The issuer: the configured one, else the cluster's own Gluu.
    fn issuer(&self, cluster: Option<&ClusterSettings>) -> Result<String, OidcError> {
        if !self.settings.issuer.is_empty() {
            return Ok(self.settings.issuer.clone());
        }
        cluster.and_then(cluster_issuer).ok_or_else(|| {
            OidcError::Config(
                "no issuer configured and the cluster has no load balancer hostname yet".into(),
            )
        })
    }

    /// The OP's discovery document (kept for [`DISCOVERY_TTL`]).
    async fn discover(&self, issuer: &str) -> Result<Discovery, OidcError> {
        let same = |d: &Discovery| d.issuer.trim_end_matches('/') == issuer.trim_end_matches('/');
        if let Some((at, d)) = &*self.discovered.lock().unwrap_or_else(|e| e.into_inner())
            && at.elapsed() < DISCOVERY_TTL
            && same(d)
        {
            return Ok(d.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let doc = self.client.get_json(&url, None).await?;
        let field = |k: &str| {
            doc.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| OidcError::Op(format!("{url} has no {k}")))
        };
        let d = Discovery {
            issuer: field("issuer")?,
            authorization_endpoint: field("authorization_endpoint")?,
            token_endpoint: field("token_endpoint")?,
            jwks_uri: field("jwks_uri")?,
            userinfo_endpoint: field("userinfo_endpoint").ok(),
        };
        // OpenID Connect Discovery 1.0, 4.3: the document's issuer is the one asked for.
        if !same(&d) {
            return Err(OidcError::Op(format!(
                "{url} names the issuer {:?}, not {issuer:?}",
                d.issuer
            )));
        }
        *self.discovered.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), d.clone()));
        Ok(d)
    }
}

/// The templates of the OpenID Connect pages, and `oidc_sign_in()`: whether the sign-in page
/// offers it.
pub(super) fn templates(
    env: &mut minijinja::Environment<'static>,
    slot: Arc<OidcSlot>,
) -> Result<(), minijinja::Error> {
    env.add_template(
        "oidc_signed_in.html",
        include_str!("../templates/oidc_signed_in.html"),
    )?;
    env.add_function("oidc_sign_in", move || slot.offered());
    Ok(())
}

/// The session user of the person the OP names `sub`: `NAME@openid (sub SUB)`, NAME its
/// `preferred_username` or `user_name` (neither is unique nor stable: OpenID Connect Core 5.7),
/// else the sub.
pub fn user_name(claims: &serde_json::Map<String, Value>) -> Result<String, OidcError> {
    let s = |k: &str| {
        claims
            .get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    let sub = s("sub").ok_or_else(|| OidcError::IdToken("it has no sub".into()))?;
    let name = s("preferred_username").or(s("user_name")).unwrap_or(sub);
    Ok(format!("{name}@openid (sub {sub})"))
}

/// Whether a session's user signed in through OpenID Connect (local user names have no `@`).
pub fn is_openid_user(user: &str) -> bool {
    user.contains("@openid (sub ")
}

/// The client of `DATA/oidc.toml`, loaded again when the file changes: `console oidc register`
/// and `remove` take effect at once, without a restart, and end every OpenID Connect session
/// (a role revoked at the OP takes effect at that user's next sign-in or session expiry).
pub struct OidcSlot {
    data_root: PathBuf,
    loaded: Mutex<(Option<SystemTime>, Option<Arc<Oidc>>)>,
    /// The sign-ins in progress, sealed in the browsers' cookies.
    pending: pending::PendingSeal,
}

impl OidcSlot {
    /// The settings as they are now; an invalid file is an error here (at start).
    pub fn new(data_root: &Path, sealer: &Sealer) -> Result<Self, OidcError> {
        let modified = Self::modified(data_root);
        let oidc = Oidc::load(data_root, sealer)?.map(Arc::new);
        Ok(Self {
            data_root: data_root.to_path_buf(),
            loaded: Mutex::new((modified, oidc)),
            pending: pending::PendingSeal::new()?,
        })
    }

    fn modified(data_root: &Path) -> Option<SystemTime> {
        std::fs::metadata(config::path(data_root))
            .and_then(|m| m.modified())
            .ok()
    }

    /// Whether the settings file exists (the sign-in page shows the button).
    fn offered(&self) -> bool {
        config::path(&self.data_root).exists()
    }

    /// The client, reloaded when the file changed since it was read (an invalid file: logged,
    /// and no OpenID Connect sign-in until it is mended); a reload ends every OpenID Connect
    /// session in `sessions`.
    pub fn current(&self, sealer: &Sealer, sessions: &Sessions) -> Option<Arc<Oidc>> {
        let modified = Self::modified(&self.data_root);
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.0 != modified {
            let fresh = match Oidc::load(&self.data_root, sealer) {
                Ok(o) => {
                    tracing::info!(
                        configured = o.is_some(),
                        "web console: OpenID Connect settings read again"
                    );
                    o.map(Arc::new)
                }
                Err(e) => {
                    tracing::error!(error = %e, "web console: OpenID Connect sign-in is off");
                    None
                }
            };
            *loaded = (modified, fresh);
            let ended = sessions.end_where(is_openid_user);
            if ended > 0 {
                tracing::info!(
                    sessions = ended,
                    "web console: OpenID Connect settings changed, its sessions ended"
                );
            }
        }
        loaded.1.clone()
    }
}
