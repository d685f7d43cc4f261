//! The cluster CA: which CAs are trusted, which one issues, the server certificate, and the
//! changes an admin makes (server certificate renewal, CA rotation with an overlap, retirement of
//! the previous CA) and an operator's renewal of its own credential. `server/ca.rs` is the thin
//! `CertificateAuthority` service over these functions; every change writes its audit row here.
//!
//! Rotation: [`rotate`] makes a new CA (the old one becomes "previous": still trusted for client
//! certificates, and cross-signs the new one so clients that trust only the old CA still accept
//! the new server certificate), re-issues the server certificate, and sends every connected agent
//! the CA bundle with the order to renew. Agents that connect later get the same at session
//! start ([`greet`]). [`retire`] ends the overlap once every node has a certificate from the new
//! CA.

pub use crate::authority::{
    Authority, CA_TTL, CaState, Issuer, Previous, SERVER_CN, SERVER_TTL, issue_server, merge_sans,
    node_issuers, server_leaf, server_tls,
};

use crate::audit::Audit;
use crate::auth::Principal;
use crate::authority::{
    DAY, MAX_OPERATOR_TTL, cross_path, previous_path, remove_if_exists, write_rotation,
};
use crate::config::DataDir;
use crate::ctl::Ctl;
use crate::error::{Classify, Kind};
use crate::limits::PerPrincipal;
use crate::registry::Outbound;
use clustermgr_proto::{
    CaInfo, CaStatusResponse, CaUpdate, ControllerMessage, NodeCaInfo, RenewCredentialRequest,
    RenewCredentialResponse, RenewServerResponse, RetirePreviousResponse, RotateResponse,
    controller_message,
};
use clustermgr_shared::pki::{Ca, CertInfo, Usage, validity_from_now};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio_rustls::rustls::ServerConfig;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error(
        "a CA rotation is already in progress (previous CA {0} is still trusted); finish it with \
         `clustermgr ca rotate --finish` first"
    )]
    RotationInProgress(String),
    #[error("no CA rotation is in progress (start one with `clustermgr ca rotate`)")]
    NoRotation,
    #[error(
        "your own credential is from the previous CA and would stop working: renew it first with \
         `clustermgr operator renew`"
    )]
    CallerFromPrevious,
    #[error(
        "{count} node(s) still have a certificate from the previous CA: {names}. Connected agents \
         renew on their own (see `clustermgr ca status`); pass --force to retire anyway (those \
         nodes then have to re-join)"
    )]
    Stragglers { count: usize, names: String },
    #[error("{0}")]
    BadName(String),
    #[error("a credential lives at most {0} days")]
    TtlTooLong(u64),
    #[error("{0}")]
    BadCsr(String),
    #[error("operator {0:?} was removed")]
    OperatorRemoved(String),
    #[error(
        "operator {0:?} renewed its credential {RENEWALS_PER_HOUR} times in the last hour; retry later"
    )]
    TooManyRenewals(String),
    #[error("nodes renew over their session, not here")]
    NodeCaller,
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

impl Classify for CaError {
    fn kind(&self) -> Kind {
        match self {
            Self::RotationInProgress(_)
            | Self::NoRotation
            | Self::CallerFromPrevious
            | Self::Stragglers { .. } => Kind::FailedPrecondition,
            Self::BadName(_) | Self::TtlTooLong(_) | Self::BadCsr(_) => Kind::InvalidArgument,
            Self::OperatorRemoved(_) => Kind::NotFound,
            Self::TooManyRenewals(_) => Kind::ResourceExhausted,
            Self::NodeCaller => Kind::PermissionDenied,
            Self::Internal(_) => Kind::Internal,
        }
    }
}

type Result<T> = std::result::Result<T, CaError>;

fn internal(e: impl Into<anyhow::Error>) -> CaError {
    CaError::Internal(e.into())
}

/// The row of a change made (files, not the store: written after the change; a row that cannot
/// be written is logged).
async fn record_ok(ctl: &Ctl, audit: &Audit, detail: String) {
    if let Err(e) = ctl.store.append_audit(audit.ok(detail)).await {
        tracing::error!(error = %e, action = audit.action, "cannot write the audit log");
    }
}

fn ca_update(bundle: String, renew: bool) -> ControllerMessage {
    ControllerMessage {
        msg: Some(controller_message::Msg::CaUpdate(CaUpdate {
            ca_bundle_pem: bundle,
            renew_certificate: renew,
        })),
    }
}

/// At session start: the agent gets the CA bundle, and the order to renew when its
/// certificate is not from the current CA. Never waits on a full stream.
pub fn greet(ctl: &Ctl, peer_leaf: Option<&[u8]>, tx: &Outbound) {
    let a = ctl.ca.get();
    let renew = peer_leaf
        .and_then(|der| CertInfo::from_der(der).ok())
        .is_some_and(|i| i.authority_key_id != a.current_key_id);
    let _ = tx.try_send(Ok(ca_update(a.trusted_pem(), renew)));
}

/// Sends a CA update to every connected agent; returns how many got it.
fn notify_all(ctl: &Ctl, a: &Authority, renew: bool) -> u32 {
    let bundle = a.trusted_pem();
    let mut n = 0;
    for (_, tx) in ctl.registry.senders() {
        if tx.try_send(Ok(ca_update(bundle.clone(), renew))).is_ok() {
            n += 1;
        }
    }
    n
}

/// The CAs, the server certificate, and which CA each node's certificate is from.
pub fn status(ctl: &Ctl, data: &DataDir) -> Result<CaStatusResponse> {
    let a = ctl.ca.get();
    let cur = CertInfo::from_der(a.current.cert_der()).map_err(internal)?;
    let mut cas = vec![CaInfo {
        state: "current".into(),
        pin: a.current.pin(),
        subject: cur.common_name,
        not_after_unix: cur.not_after_unix,
    }];
    if let Some(prev) = &a.previous {
        let info = CertInfo::from_pem(&prev.cert_pem).map_err(internal)?;
        cas.push(CaInfo {
            state: "previous".into(),
            pin: prev.pin.clone(),
            subject: info.common_name,
            not_after_unix: info.not_after_unix,
        });
    }
    let server = server_leaf(data)?;
    let nodes = node_issuers(&ctl.store, &a)?;
    Ok(CaStatusResponse {
        cas,
        server_not_after_unix: server.not_after_unix,
        server_ca_pin: a.pin_of(a.issuer_of(&server.authority_key_id)),
        server_sans: server.sans,
        nodes,
        overlap: a.previous.is_some(),
    })
}

/// A new server certificate from the current CA with `extra` names added; `install` puts the
/// listener's new TLS configuration in force.
pub async fn renew_server(
    ctl: &Ctl,
    data: &DataDir,
    extra: &[String],
    audit: &Audit,
    install: impl FnOnce(Arc<ServerConfig>),
) -> Result<RenewServerResponse> {
    let _g = ctl.ca.changing.lock().await;
    let a = ctl.ca.get();
    let leaf = server_leaf(data)?;
    let sans = merge_sans(&leaf.sans, extra).map_err(CaError::BadName)?;
    let (chain, key, info) = issue_server(data, &a, &sans)?;
    install(server_tls(&a, &chain, &key)?);
    tracing::info!(names = %sans.join(","), "server certificate renewed and in use");
    record_ok(ctl, audit, format!("sans={}", sans.join(","))).await;
    Ok(RenewServerResponse {
        not_after_unix: info.not_after_unix,
        sans,
        reloaded: true,
    })
}

/// Starts a rotation (see the module's documentation).
pub async fn rotate(
    ctl: &Ctl,
    data: &DataDir,
    audit: &Audit,
    install: impl FnOnce(Arc<ServerConfig>),
) -> Result<RotateResponse> {
    let _g = ctl.ca.changing.lock().await;
    let old = ctl.ca.get();
    if let Some(p) = &old.previous {
        return Err(CaError::RotationInProgress(p.pin.clone()));
    }
    let name = format!(
        "clustermgr cluster CA {}",
        clustermgr_shared::util::fmt_unix(clustermgr_shared::util::now_unix())
    );
    let new = Ca::generate(&name, CA_TTL).map_err(internal)?;
    let cross = old.current.cross_sign(&new).map_err(internal)?;
    let sans = server_leaf(data)?.sans;
    write_rotation(data, &old.current, &new, &cross)?;
    let next = Authority::new(
        new,
        Some(Previous {
            cert_pem: old.current.cert_pem().to_string(),
            pin: old.current.pin(),
            key_id: old.current_key_id.clone(),
            cross_pem: cross,
        }),
    );
    let (chain, key, _) = issue_server(data, &next, &sans)?;
    let config = server_tls(&next, &chain, &key)?;
    let (new_pin, previous_pin, bundle) =
        (next.current.pin(), old.current.pin(), next.trusted_pem());
    ctl.ca.set(next);
    install(config);
    let notified = notify_all(ctl, &ctl.ca.get(), true);
    tracing::info!(new = %new_pin, previous = %previous_pin, notified, "CA rotation started");
    let detail = format!("new={new_pin} previous={previous_pin} agents_notified={notified}");
    record_ok(ctl, audit, detail).await;
    Ok(RotateResponse {
        new_pin,
        previous_pin,
        agents_notified: notified,
        ca_bundle_pem: bundle,
    })
}

/// Ends the overlap: the previous CA is no longer trusted. Refused while nodes still hold a
/// certificate from it (unless `force`: their sessions are dropped) or when the caller's own
/// credential (`caller_key_id`, its issuer's key id) is from it.
pub async fn retire(
    ctl: &Ctl,
    data: &DataDir,
    caller_key_id: &str,
    force: bool,
    audit: &Audit,
    install: impl FnOnce(Arc<ServerConfig>),
) -> Result<RetirePreviousResponse> {
    let _g = ctl.ca.changing.lock().await;
    let a = ctl.ca.get();
    let Some(prev) = &a.previous else {
        return Err(CaError::NoRotation);
    };
    if a.issuer_of(caller_key_id) != Issuer::Current {
        return Err(CaError::CallerFromPrevious);
    }
    let stragglers: Vec<NodeCaInfo> = node_issuers(&ctl.store, &a)?
        .into_iter()
        .filter(|n| n.ca_state != Issuer::Current.as_str())
        .collect();
    let names: Vec<String> = stragglers
        .iter()
        .map(|n| format!("{} ({})", n.hostname, n.node_id))
        .collect();
    if !stragglers.is_empty() && !force {
        return Err(CaError::Stragglers {
            count: stragglers.len(),
            names: names.join(", "),
        });
    }
    let retired = prev.pin.clone();
    remove_if_exists(&cross_path(data))?;
    remove_if_exists(&previous_path(data))?;
    let mut next = a.reloaded()?;
    next.previous = None;
    let sans = server_leaf(data)?.sans;
    let (chain, key, _) = issue_server(data, &next, &sans)?;
    let config = server_tls(&next, &chain, &key)?;
    ctl.ca.set(next);
    install(config);
    notify_all(ctl, &ctl.ca.get(), false);
    for n in &stragglers {
        ctl.registry.drop_session(
            &n.node_id,
            tonic::Status::unauthenticated(
                "this node's certificate is from a retired CA; re-join it",
            ),
        );
    }
    tracing::info!(retired = %retired, stragglers = stragglers.len(), "previous CA retired");
    let detail = format!(
        "retired={retired} stragglers={} force={force}",
        stragglers.len()
    );
    record_ok(ctl, audit, detail).await;
    Ok(RetirePreviousResponse {
        retired_pin: retired,
        stragglers: names,
    })
}

/// Credentials one operator may mint for itself (`operator renew`) per hour.
const RENEWALS_PER_HOUR: u32 = 5;
static RENEWALS: LazyLock<PerPrincipal> =
    LazyLock::new(|| PerPrincipal::new(RENEWALS_PER_HOUR, Duration::from_secs(3600)));

/// An operator's new credential for its own key (the CSR), with its role: at most
/// [`RENEWALS_PER_HOUR`] an hour; nodes renew over their session instead.
pub async fn renew_credential(
    ctl: &Ctl,
    caller: &Principal,
    r: RenewCredentialRequest,
    audit: &Audit,
) -> Result<RenewCredentialResponse> {
    let (name, role) = match caller {
        Principal::Operator { name, role } => (name.as_str(), *role),
        Principal::Node { .. } => return Err(CaError::NodeCaller),
    };
    if RENEWALS.admit(name).is_err() {
        return Err(CaError::TooManyRenewals(name.to_string()));
    }
    let ttl = match r.ttl_seconds {
        0 => ctl.rt.operator_cert_ttl,
        s => Duration::from_secs(s),
    };
    if ttl > MAX_OPERATOR_TTL {
        return Err(CaError::TtlTooLong(MAX_OPERATOR_TTL.as_secs() / DAY));
    }
    let pem = ctl
        .ca
        .sign_csr(&r.csr_der, name, Usage::Client, validity_from_now(ttl))
        .map_err(|e| CaError::BadCsr(e.to_string()))?;
    let info = CertInfo::from_pem(&pem).map_err(internal)?;
    ctl.store
        .add_principal(
            info.fingerprint.clone(),
            crate::records::principal(clustermgr_proto::PrincipalKind::Operator, name, &info),
        )
        .await
        .map_err(internal)?;
    ctl.auth.insert(
        info.fingerprint.clone(),
        Principal::Operator {
            name: name.to_string(),
            role,
        },
        info.not_after_unix,
    );
    // Removed meanwhile: the new certificate must not outlive the removal.
    if ctl.store.operator(name).map_err(internal)?.is_none() {
        ctl.auth.remove_operator(name);
        return Err(CaError::OperatorRemoved(name.to_string()));
    }
    let detail = format!(
        "not_after={}",
        clustermgr_shared::util::fmt_unix(info.not_after_unix)
    );
    record_ok(ctl, audit, detail).await;
    Ok(RenewCredentialResponse {
        certificate_pem: pem,
        ca_bundle_pem: ctl.ca.cert_pem(),
        name: name.to_string(),
        role: role.as_str().into(),
    })
}
