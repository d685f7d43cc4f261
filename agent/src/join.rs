//! `clustermgr-agent join`: make a key and CSR here, prove the controller's CA against the pin,
//! trade the one-time token for a certificate, store everything with 0600 permissions.

use crate::state::{AgentConfig, StateDir};
use anyhow::{Context, Result, bail};
use clustermgr_proto::EnrollRequest;
use clustermgr_proto::enrollment_client::EnrollmentClient;
use clustermgr_shared::Secret;
use clustermgr_shared::dial::{self, DialOptions};
use clustermgr_shared::pki::{self, pin_of};
use clustermgr_shared::tls::pinned_client_config;
use std::path::PathBuf;

pub struct JoinArgs {
    pub controller: String,
    pub token: Secret<String>,
    pub ca_pin: String,
    pub state: StateDir,
    pub force: bool,
    pub root: PathBuf,
    pub hostname: Option<String>,
    pub address: Option<String>,
}

/// Joins and returns the saved configuration.
pub async fn join(a: JoinArgs) -> Result<AgentConfig> {
    clustermgr_shared::tls::install_crypto_provider();
    let pin = pki::parse_pin(&a.ca_pin)?;
    if a.state.is_joined() && !a.force {
        let cfg = a.state.load_config()?;
        bail!(
            "this host already joined as node {} (state in {}); use `join --force` with a new token to re-join",
            cfg.node_id,
            a.state.dir.display()
        );
    }
    let view_hostname = a.hostname.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    });
    let (key_pem, csr_der) = pki::new_key_and_csr(&view_hostname)?;
    let (tls, seen) = pinned_client_config(&pin)?;
    let bind = a
        .address
        .as_deref()
        .map(|s| s.parse())
        .transpose()
        .context("--address must be an IP address")?;
    let channel = match dial::connect(
        &a.controller,
        tls,
        DialOptions {
            bind,
            ..Default::default()
        },
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            let obs = seen.lock().map(|o| o.clone()).unwrap_or_default();
            return Err(not_dialled(e, &obs, &pin, &a.controller));
        }
    };
    let mut client = EnrollmentClient::new(channel);
    let resp = client
        .enroll(EnrollRequest {
            token: a.token.expose().clone(),
            csr_der,
            hostname: view_hostname,
        })
        .await
        .map_err(|s| {
            anyhow::anyhow!(
                "the controller refused to enroll this host: {}",
                s.message()
            )
        })?
        .into_inner();
    // The CAs we will trust from now on must include the pinned one (during a CA rotation the
    // controller trusts, and sends, two; either pin is accepted).
    let bundle = clustermgr_shared::tls::certs_from_pem(&resp.ca_pem)?;
    if !bundle.iter().any(|c| pin_of(c) == pin) {
        bail!(
            "the controller returned CA certificates that do not match --ca-pin; nothing was saved"
        );
    }
    let cfg = AgentConfig {
        controller: a.controller.clone(),
        node_id: resp.node_id.clone(),
        role: resp.role.clone(),
        root: a.root.clone(),
        hostname: a.hostname.clone(),
        address: a.address.clone(),
        extra_managed_paths: Vec::new(),
    };
    a.state
        .save_join(&cfg, &resp.certificate_pem, &key_pem, &resp.ca_pem)?;
    if resp.pending_approval {
        eprintln!(
            "joined as node {} (role {}); the controller requires approval: run `clustermgr node approve {}`",
            resp.node_id, resp.role, resp.node_id
        );
    } else {
        eprintln!("joined as node {} (role {})", resp.node_id, resp.role);
    }
    Ok(cfg)
}

/// Why the controller could not be reached: a CA that does not match the pin, else no CA
/// sent at all, else the dial's own error.
fn not_dialled(
    e: dial::DialError,
    obs: &clustermgr_shared::tls::PinObservation,
    pin: &str,
    controller: &str,
) -> anyhow::Error {
    if obs.matched_ca_der.is_none() && !obs.presented.is_empty() {
        return anyhow::anyhow!(
            "refusing to join: the controller at {} presented a CA that does not match --ca-pin\n  expected: {pin}\n  presented: {}",
            controller,
            obs.presented
                .iter()
                .map(|f| format!("sha256:{f}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if obs.matched_ca_der.is_none() {
        return anyhow::anyhow!(
            "{e} (root cause: {}); if the controller is reachable, check that it sends its CA certificate and that --ca-pin matches",
            dial::root_cause(&e)
        );
    }
    e.into()
}
