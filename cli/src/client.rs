//! The CLI's connection to the controller, with errors a person can act on.

use anyhow::{Result, anyhow, bail};
use clustermgr_proto::cluster_client::ClusterClient;
use clustermgr_proto::operator_client::OperatorClient;
use clustermgr_shared::MAX_MESSAGE_BYTES;
use clustermgr_shared::config::ClientBundle;
use clustermgr_shared::dial::{self, DialOptions};
use clustermgr_shared::pki::CertInfo;
use clustermgr_shared::util::{fmt_unix, now_unix};
use std::path::{Path, PathBuf};
use tonic::transport::Channel;

pub type Client = OperatorClient<Channel>;
/// The cluster service: servers, Gluu, workflows.
pub type Cluster = ClusterClient<Channel>;

/// Where the credential comes from.
#[derive(Debug, Clone)]
pub struct Target {
    pub bundle_path: PathBuf,
    pub controller: Option<String>,
}

pub fn load_bundle(path: &Path) -> Result<ClientBundle> {
    if !path.exists() {
        let sandbox = clustermgr_shared::datadir::default_sandbox_dir().join("controller");
        let hint = if sandbox.join("admin.toml").exists() {
            format!(
                "; a sandbox is set up: export CLUSTERMGR_DATA_DIR={}",
                sandbox.display()
            )
        } else {
            String::new()
        };
        bail!(
            "no operator credential at {}: run `clustermgr init` (which writes the admin credential), \
             or pass --config with a credential from `clustermgr operator create`{hint}",
            path.display()
        );
    }
    let b = ClientBundle::load(path)?;
    let info = CertInfo::from_pem(&b.cert_pem).map_err(|e| {
        anyhow!(
            "the credential {} holds an invalid certificate: {e}",
            path.display()
        )
    })?;
    if now_unix() >= info.not_after_unix {
        bail!(
            "the credential {} expired at {}; ask an admin for a new one (`clustermgr operator create`)",
            path.display(),
            fmt_unix(info.not_after_unix)
        );
    }
    Ok(b)
}

pub async fn cluster(t: &Target) -> Result<Cluster> {
    Ok(ClusterClient::new(channel(t).await?)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

pub async fn connect(t: &Target) -> Result<Client> {
    Ok(OperatorClient::new(channel(t).await?)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// A connection to the controller with the operator credential, for any service.
pub async fn channel(t: &Target) -> Result<Channel> {
    clustermgr_shared::tls::install_crypto_provider();
    let b = load_bundle(&t.bundle_path)?;
    let addr = t.controller.clone().unwrap_or(b.controller.clone());
    let tls = clustermgr_shared::tls::client_config(&b.ca_pem, Some((&b.cert_pem, &b.key_pem)))?;
    let channel = dial::connect(&addr, tls, DialOptions::default())
        .await
        .map_err(|e| {
            let cause = dial::root_cause(&e);
            if cause.contains("invalid peer certificate") {
                anyhow!(
                    "the controller at {addr} is not the one the credential {} belongs to \
                     (its certificate was not issued by the credential's CA: {cause}); \
                     is the credential from another cluster?",
                    t.bundle_path.display()
                )
            } else if cause.contains("alert") {
                anyhow!(
                    "the controller at {addr} refused the credential {} during the TLS handshake \
                     ({cause}); it may be expired, revoked or from another cluster",
                    t.bundle_path.display()
                )
            } else {
                anyhow!(
                    "cannot reach the controller at {addr}: {cause} (is `clustermgr serve` running there?)"
                )
            }
        })?;
    Ok(channel)
}

/// Turns a failed call into a message naming what to do.
pub fn explain(s: tonic::Status) -> anyhow::Error {
    use tonic::Code;
    let detail = {
        let mut msg = s.message().to_string();
        let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&s);
        while let Some(e) = src {
            msg = format!("{msg}: {e}");
            src = e.source();
        }
        msg
    };
    match s.code() {
        Code::Unauthenticated => anyhow!("the controller did not accept this credential: {detail}"),
        Code::PermissionDenied => anyhow!("permission denied: {detail}"),
        Code::Unavailable => anyhow!(
            "the controller is unavailable or refused the connection: {detail} \
             (a refused TLS handshake means the credential is expired, revoked or from another cluster)"
        ),
        Code::NotFound => anyhow!("{detail}"),
        Code::InvalidArgument => anyhow!("invalid request: {detail}"),
        Code::FailedPrecondition => anyhow!("{detail}"),
        Code::AlreadyExists => anyhow!("{detail}"),
        _ => anyhow!("{:?}: {detail}", s.code()),
    }
}
