//! The cluster CA at run time: which CAs are trusted, which one issues, the server certificate,
//! and the `CertificateAuthority` service (server certificate renewal, CA rotation with an
//! overlap, operator credential renewal). Admin role for everything but renewing one's own
//! credential; every change is audited.
//!
//! Rotation: `Rotate` makes a new CA (the old one becomes "previous": still trusted for client
//! certificates, and cross-signs the new one so clients that trust only the old CA still accept
//! the new server certificate), re-issues the server certificate, and sends every connected agent
//! the CA bundle with the order to renew. Agents that connect later get the same at session
//! start. `RetirePrevious` ends the overlap once every node has a certificate from the new CA.
//!
//! Files in the data directory (besides `ca.crt`/`ca.key`, the issuing CA):
//! `ca-previous.crt` and `ca-cross.crt` exist only during an overlap; `ca-next.crt`/`ca-next.key`
//! only for an instant during `Rotate` (a crash there is completed at the next start).

use super::listener::TlsSwitch;
use super::{Ctl, internal};
use crate::audit;
use crate::auth::{Principal, Role, caller, require};
use crate::config::DataDir;
use crate::registry::Outbound;
use crate::store::Store;
use anyhow::{Context, Result as AnyResult};
use clustermgr_proto::certificate_authority_server::CertificateAuthority;
use clustermgr_proto::{
    CaInfo, CaStatusRequest, CaStatusResponse, CaUpdate, ControllerMessage, NodeCaInfo,
    RenewCredentialRequest, RenewCredentialResponse, RenewServerRequest, RenewServerResponse,
    RetirePreviousRequest, RetirePreviousResponse, RotateRequest, RotateResponse,
    controller_message,
};
use clustermgr_shared::Secret;
use clustermgr_shared::fsutil::{write_atomic, write_private};
use clustermgr_shared::pki::{self, Ca, CertInfo, Usage, validity_from_now};
use clustermgr_shared::tls;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tonic::{Request, Response, Status};

const DAY: u64 = 86_400;
pub const CA_TTL: Duration = Duration::from_secs(10 * 365 * DAY);
pub const SERVER_TTL: Duration = Duration::from_secs(2 * 365 * DAY);
/// The longest credential `RenewCredential` issues.
const MAX_OPERATOR_TTL: Duration = Duration::from_secs(5 * 365 * DAY);
pub const SERVER_CN: &str = "clustermgr controller";

fn previous_path(d: &DataDir) -> PathBuf {
    d.root.join("ca-previous.crt")
}
fn cross_path(d: &DataDir) -> PathBuf {
    d.root.join("ca-cross.crt")
}
fn next_cert_path(d: &DataDir) -> PathBuf {
    d.root.join("ca-next.crt")
}
fn next_key_path(d: &DataDir) -> PathBuf {
    d.root.join("ca-next.key")
}

fn read(p: &std::path::Path) -> AnyResult<String> {
    std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
}

fn read_opt(p: &std::path::Path) -> AnyResult<Option<String>> {
    match std::fs::read_to_string(p) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
    }
}

fn remove_if_exists(p: &std::path::Path) -> AnyResult<()> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", p.display())),
    }
}

/// The previous CA during an overlap.
pub struct Previous {
    pub cert_pem: String,
    pub pin: String,
    pub key_id: String,
    /// The current CA's certificate signed by the previous CA.
    pub cross_pem: String,
}

/// Which CA issued a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issuer {
    Current,
    Previous,
    Unknown,
}

impl Issuer {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Previous => "previous",
            Self::Unknown => "unknown",
        }
    }
}

/// The CAs in force: the issuing one and, during an overlap, the previous one.
pub struct Authority {
    pub current: Ca,
    pub current_key_id: String,
    pub previous: Option<Previous>,
}

impl Authority {
    fn new(current: Ca, previous: Option<Previous>) -> Self {
        Self {
            current_key_id: current.key_id(),
            current,
            previous,
        }
    }

    /// Loads the CA files of a data directory, completing a rotation a crash interrupted.
    pub fn load(data: &DataDir) -> AnyResult<Self> {
        finish_interrupted_rotation(data)?;
        let current = Ca::load(&read(&data.ca_cert())?, &Secret::new(read(&data.ca_key())?))
            .with_context(|| format!("cannot load the CA from {}", data.root.display()))?;
        let previous = match (
            read_opt(&previous_path(data))?,
            read_opt(&cross_path(data))?,
        ) {
            (Some(cert_pem), Some(cross_pem)) => {
                let info = CertInfo::from_pem(&cert_pem)?;
                let pin = pki::pin_of(&pki::pem_to_der(&cert_pem, "CERTIFICATE")?);
                // A rotation that stopped before the new CA was in place left these behind.
                if pin == current.pin() {
                    None
                } else {
                    Some(Previous {
                        cert_pem,
                        pin,
                        key_id: info.subject_key_id,
                        cross_pem,
                    })
                }
            }
            _ => None,
        };
        if previous.is_none() {
            remove_if_exists(&previous_path(data))?;
            remove_if_exists(&cross_path(data))?;
        }
        Ok(Self::new(current, previous))
    }

    /// Every CA clients must trust now, PEM (current first).
    pub fn trusted_pem(&self) -> String {
        let mut s = self.current.cert_pem().trim().to_string() + "\n";
        if let Some(p) = &self.previous {
            s.push_str(p.cert_pem.trim());
            s.push('\n');
        }
        s
    }

    /// The chain the server presents with a leaf the current CA issued: the leaf, then (during
    /// an overlap) the cross certificate, then every CA certificate, so that joining agents
    /// find either pin and clients that trust only the previous CA find a path.
    pub fn chain(&self, leaf_pem: &str) -> String {
        let mut s = leaf_pem.trim().to_string() + "\n";
        if let Some(p) = &self.previous {
            s.push_str(p.cross_pem.trim());
            s.push('\n');
        }
        s.push_str(&self.trusted_pem());
        s
    }

    /// Which CA a certificate with this authority key id comes from. Principal records from
    /// before rotation existed carry no key id: they come from the first CA, which is the
    /// previous one during the first overlap and the current one otherwise.
    pub fn issuer_of(&self, ca_key_id: &str) -> Issuer {
        if ca_key_id.is_empty() {
            return if self.previous.is_some() {
                Issuer::Previous
            } else {
                Issuer::Current
            };
        }
        if ca_key_id == self.current_key_id {
            Issuer::Current
        } else if self
            .previous
            .as_ref()
            .is_some_and(|p| p.key_id == ca_key_id)
        {
            Issuer::Previous
        } else {
            Issuer::Unknown
        }
    }

    fn pin_of(&self, i: Issuer) -> String {
        match (i, &self.previous) {
            (Issuer::Current, _) => self.current.pin(),
            (Issuer::Previous, Some(p)) => p.pin.clone(),
            _ => String::new(),
        }
    }

    fn reloaded(&self) -> AnyResult<Self> {
        let current = Ca::load(self.current.cert_pem(), &self.current.key_pem())?;
        let previous = self.previous.as_ref().map(|p| Previous {
            cert_pem: p.cert_pem.clone(),
            pin: p.pin.clone(),
            key_id: p.key_id.clone(),
            cross_pem: p.cross_pem.clone(),
        });
        Ok(Self::new(current, previous))
    }
}

fn finish_interrupted_rotation(data: &DataDir) -> AnyResult<()> {
    // ca-next.crt is written last: without it the rotation never happened.
    if next_cert_path(data).exists() {
        if next_key_path(data).exists() {
            std::fs::rename(next_key_path(data), data.ca_key())
                .context("cannot complete the CA rotation (ca.key)")?;
        }
        std::fs::rename(next_cert_path(data), data.ca_cert())
            .context("cannot complete the CA rotation (ca.crt)")?;
    } else {
        remove_if_exists(&next_key_path(data))?;
    }
    Ok(())
}

/// Writes a rotation's files: previous CA and cross certificate, then the new CA in place.
fn write_rotation(data: &DataDir, old: &Ca, new: &Ca, cross: &str) -> AnyResult<()> {
    write_atomic(&previous_path(data), old.cert_pem().as_bytes(), 0o644)?;
    write_atomic(&cross_path(data), cross.as_bytes(), 0o644)?;
    write_private(&next_key_path(data), new.key_pem().expose().as_bytes())?;
    write_atomic(&next_cert_path(data), new.cert_pem().as_bytes(), 0o644)?;
    finish_interrupted_rotation(data)
}

/// The first certificate of `server.crt` (the leaf).
pub fn server_leaf(data: &DataDir) -> AnyResult<CertInfo> {
    let chain = read(&data.server_cert())?;
    Ok(CertInfo::from_pem(&chain)?)
}

/// Issues a server certificate from the current CA for `sans` and writes `server.crt` (chain)
/// and `server.key`. Returns the chain, the key and the leaf's facts.
pub fn issue_server(
    data: &DataDir,
    a: &Authority,
    sans: &[String],
) -> AnyResult<(String, Secret<String>, CertInfo)> {
    let (leaf, key) = a
        .current
        .issue_with_new_key(SERVER_CN, sans, Usage::Server, SERVER_TTL)?;
    let info = CertInfo::from_pem(&leaf)?;
    let chain = a.chain(&leaf);
    write_private(&data.server_key(), key.expose().as_bytes())?;
    write_atomic(&data.server_cert(), chain.as_bytes(), 0o644)?;
    Ok((chain, key, info))
}

/// Checks and merges extra server names.
pub fn merge_sans(current: &[String], extra: &[String]) -> Result<Vec<String>, String> {
    let mut sans = current.to_vec();
    for s in extra {
        let s = s.trim();
        let ok = !s.is_empty()
            && s.len() <= 253
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:*".contains(c));
        if !ok {
            return Err(format!("invalid server name {s:?}"));
        }
        sans.push(s.to_string());
    }
    sans.sort();
    sans.dedup();
    Ok(sans)
}

/// The CAs at run time; the issuing CA changes with a rotation.
pub struct CaState {
    inner: RwLock<Arc<Authority>>,
}

impl CaState {
    pub fn new(a: Authority) -> Self {
        Self {
            inner: RwLock::new(Arc::new(a)),
        }
    }

    pub fn get(&self) -> Arc<Authority> {
        match self.inner.read() {
            Ok(a) => a.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, a: Authority) {
        let a = Arc::new(a);
        match self.inner.write() {
            Ok(mut cur) => *cur = a,
            Err(poisoned) => *poisoned.into_inner() = a,
        }
    }

    /// Signs a CSR with the current CA (see [`Ca::sign_csr`]).
    pub fn sign_csr(
        &self,
        csr_der: &[u8],
        common_name: &str,
        usage: Usage,
        validity: (time::OffsetDateTime, time::OffsetDateTime),
    ) -> pki::Result<String> {
        self.get()
            .current
            .sign_csr(csr_der, common_name, usage, validity)
    }

    /// Every CA clients must trust now (PEM bundle).
    pub fn cert_pem(&self) -> String {
        self.get().trusted_pem()
    }
}

/// The server's TLS config for the given CAs and server identity.
pub fn server_tls(
    a: &Authority,
    chain: &str,
    key: &Secret<String>,
) -> AnyResult<Arc<tokio_rustls::rustls::ServerConfig>> {
    Ok(tls::server_config(&a.trusted_pem(), chain, key)?)
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

/// Per node: which CA its newest certificate is from. A certificate from the current CA is
/// newer than any from the previous one (expiry times have a resolution of a second and the
/// lifetime may have changed, so they alone cannot tell).
pub fn node_issuers(store: &Store, a: &Authority) -> AnyResult<Vec<NodeCaInfo>> {
    let rank = |i: Issuer| match i {
        Issuer::Current => 2,
        Issuer::Previous => 1,
        Issuer::Unknown => 0,
    };
    let mut newest: HashMap<String, (Issuer, u64)> = HashMap::new();
    for (_, p) in store.principals()? {
        if p.kind() != clustermgr_proto::PrincipalKind::Node {
            continue;
        }
        let cand = (a.issuer_of(&p.ca_key_id), p.not_after_unix);
        match newest.get(&p.id) {
            Some(best) if (rank(best.0), best.1) >= (rank(cand.0), cand.1) => {}
            _ => {
                newest.insert(p.id.clone(), cand);
            }
        }
    }
    let mut out = Vec::new();
    for n in store.nodes()? {
        let (issuer, not_after) = newest
            .get(&n.id)
            .copied()
            .unwrap_or((Issuer::Unknown, n.certificate_not_after_unix));
        out.push(NodeCaInfo {
            node_id: n.id,
            hostname: n.hostname,
            ca_pin: a.pin_of(issuer),
            ca_state: issuer.as_str().into(),
            certificate_not_after_unix: not_after,
        });
    }
    out.sort_by(|x, y| (&x.hostname, &x.node_id).cmp(&(&y.hostname, &y.node_id)));
    Ok(out)
}

pub struct CaApi {
    pub ctl: Arc<Ctl>,
    pub data: DataDir,
    pub tls: Arc<TlsSwitch>,
    /// One change of CA files at a time.
    pub changing: tokio::sync::Mutex<()>,
}

impl CaApi {
    async fn audit<T>(
        &self,
        p: &Principal,
        action: &str,
        target: String,
        result: Result<(T, String), Status>,
    ) -> Result<T, Status> {
        let (detail, out) = match result {
            Ok((v, d)) => (d, Ok(v)),
            Err(e) => (String::new(), Err(e)),
        };
        if let Err(e) = audit::record(
            &self.ctl.store,
            p.to_string(),
            action,
            target,
            detail,
            audit::outcome(&out),
        )
        .await
        {
            tracing::error!(error = %e, "cannot write the audit log");
        }
        out
    }

    async fn renew_server_inner(
        &self,
        extra: &[String],
    ) -> Result<(RenewServerResponse, String), Status> {
        let _g = self.changing.lock().await;
        let a = self.ctl.ca.get();
        let leaf = server_leaf(&self.data).map_err(internal)?;
        let sans = merge_sans(&leaf.sans, extra).map_err(Status::invalid_argument)?;
        let (chain, key, info) = issue_server(&self.data, &a, &sans).map_err(internal)?;
        self.tls
            .set(server_tls(&a, &chain, &key).map_err(internal)?);
        tracing::info!(names = %sans.join(","), "server certificate renewed and in use");
        let detail = format!("sans={}", sans.join(","));
        Ok((
            RenewServerResponse {
                not_after_unix: info.not_after_unix,
                sans,
                reloaded: true,
            },
            detail,
        ))
    }

    async fn rotate_inner(&self) -> Result<(RotateResponse, String), Status> {
        let _g = self.changing.lock().await;
        let old = self.ctl.ca.get();
        if let Some(p) = &old.previous {
            return Err(Status::failed_precondition(format!(
                "a CA rotation is already in progress (previous CA {} is still trusted); \
                 finish it with `clustermgr ca rotate --finish` first",
                p.pin
            )));
        }
        let name = format!(
            "clustermgr cluster CA {}",
            clustermgr_shared::util::fmt_unix(clustermgr_shared::util::now_unix())
        );
        let new = Ca::generate(&name, CA_TTL).map_err(internal)?;
        let cross = old.current.cross_sign(&new).map_err(internal)?;
        let sans = server_leaf(&self.data).map_err(internal)?.sans;
        write_rotation(&self.data, &old.current, &new, &cross).map_err(internal)?;
        let next = Authority::new(
            new,
            Some(Previous {
                cert_pem: old.current.cert_pem().to_string(),
                pin: old.current.pin(),
                key_id: old.current_key_id.clone(),
                cross_pem: cross,
            }),
        );
        let (chain, key, _) = issue_server(&self.data, &next, &sans).map_err(internal)?;
        let config = server_tls(&next, &chain, &key).map_err(internal)?;
        let resp = RotateResponse {
            new_pin: next.current.pin(),
            previous_pin: old.current.pin(),
            agents_notified: 0,
            ca_bundle_pem: next.trusted_pem(),
        };
        self.ctl.ca.set(next);
        self.tls.set(config);
        let notified = notify_all(&self.ctl, &self.ctl.ca.get(), true);
        tracing::info!(new = %resp.new_pin, previous = %resp.previous_pin, notified, "CA rotation started");
        let detail = format!(
            "new={} previous={} agents_notified={notified}",
            resp.new_pin, resp.previous_pin
        );
        Ok((
            RotateResponse {
                agents_notified: notified,
                ..resp
            },
            detail,
        ))
    }

    async fn retire_inner(
        &self,
        caller_key_id: &str,
        force: bool,
    ) -> Result<(RetirePreviousResponse, String), Status> {
        let _g = self.changing.lock().await;
        let a = self.ctl.ca.get();
        let Some(prev) = &a.previous else {
            return Err(Status::failed_precondition(
                "no CA rotation is in progress (start one with `clustermgr ca rotate`)",
            ));
        };
        if a.issuer_of(caller_key_id) != Issuer::Current {
            return Err(Status::failed_precondition(
                "your own credential is from the previous CA and would stop working: \
                 renew it first with `clustermgr operator renew`",
            ));
        }
        let stragglers: Vec<NodeCaInfo> = node_issuers(&self.ctl.store, &a)
            .map_err(internal)?
            .into_iter()
            .filter(|n| n.ca_state != Issuer::Current.as_str())
            .collect();
        let names: Vec<String> = stragglers
            .iter()
            .map(|n| format!("{} ({})", n.hostname, n.node_id))
            .collect();
        if !stragglers.is_empty() && !force {
            return Err(Status::failed_precondition(format!(
                "{} node(s) still have a certificate from the previous CA: {}. Connected agents \
                 renew on their own (see `clustermgr ca status`); pass --force to retire anyway \
                 (those nodes then have to re-join)",
                stragglers.len(),
                names.join(", ")
            )));
        }
        let retired = prev.pin.clone();
        remove_if_exists(&cross_path(&self.data)).map_err(internal)?;
        remove_if_exists(&previous_path(&self.data)).map_err(internal)?;
        let mut next = a.reloaded().map_err(internal)?;
        next.previous = None;
        let sans = server_leaf(&self.data).map_err(internal)?.sans;
        let (chain, key, _) = issue_server(&self.data, &next, &sans).map_err(internal)?;
        let config = server_tls(&next, &chain, &key).map_err(internal)?;
        self.ctl.ca.set(next);
        self.tls.set(config);
        notify_all(&self.ctl, &self.ctl.ca.get(), false);
        for n in &stragglers {
            self.ctl.registry.drop_session(
                &n.node_id,
                Status::unauthenticated("this node's certificate is from a retired CA; re-join it"),
            );
        }
        tracing::info!(retired = %retired, stragglers = stragglers.len(), "previous CA retired");
        let detail = format!("retired={retired} stragglers={}", stragglers.len());
        Ok((
            RetirePreviousResponse {
                retired_pin: retired,
                stragglers: names,
            },
            detail,
        ))
    }

    async fn renew_credential_inner(
        &self,
        name: &str,
        role: Role,
        r: RenewCredentialRequest,
    ) -> Result<(RenewCredentialResponse, String), Status> {
        let ctl = &self.ctl;
        let ttl = match r.ttl_seconds {
            0 => ctl.rt.operator_cert_ttl,
            s => Duration::from_secs(s),
        };
        if ttl > MAX_OPERATOR_TTL {
            return Err(Status::invalid_argument(format!(
                "a credential lives at most {} days",
                MAX_OPERATOR_TTL.as_secs() / DAY
            )));
        }
        let pem = ctl
            .ca
            .sign_csr(&r.csr_der, name, Usage::Client, validity_from_now(ttl))
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
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
            return Err(Status::not_found(format!("operator {name:?} was removed")));
        }
        let detail = format!(
            "not_after={}",
            clustermgr_shared::util::fmt_unix(info.not_after_unix)
        );
        Ok((
            RenewCredentialResponse {
                certificate_pem: pem,
                ca_bundle_pem: ctl.ca.cert_pem(),
                name: name.to_string(),
                role: role.as_str().into(),
            },
            detail,
        ))
    }
}

/// Credentials one operator may mint for itself (`operator renew`) per hour.
const RENEWALS_PER_HOUR: u32 = 5;
static RENEWALS: std::sync::LazyLock<crate::limits::PerPrincipal> =
    std::sync::LazyLock::new(|| {
        crate::limits::PerPrincipal::new(RENEWALS_PER_HOUR, Duration::from_secs(3600))
    });

/// The authority key id of the caller's certificate ("" when none).
fn caller_key_id<T>(req: &Request<T>) -> String {
    req.peer_certs()
        .and_then(|c| c.first().and_then(|l| CertInfo::from_der(l).ok()))
        .map(|i| i.authority_key_id)
        .unwrap_or_default()
}

#[tonic::async_trait]
impl CertificateAuthority for CaApi {
    async fn status(
        &self,
        req: Request<CaStatusRequest>,
    ) -> Result<Response<CaStatusResponse>, Status> {
        let p = caller(&req)?;
        require(&p, Role::Admin, "reading the CA status")?;
        let a = self.ctl.ca.get();
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
        let server = server_leaf(&self.data).map_err(internal)?;
        let nodes = node_issuers(&self.ctl.store, &a).map_err(internal)?;
        Ok(Response::new(CaStatusResponse {
            cas,
            server_not_after_unix: server.not_after_unix,
            server_ca_pin: a.pin_of(a.issuer_of(&server.authority_key_id)),
            server_sans: server.sans,
            nodes,
            overlap: a.previous.is_some(),
        }))
    }

    async fn renew_server(
        &self,
        req: Request<RenewServerRequest>,
    ) -> Result<Response<RenewServerResponse>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let result = match require(&p, Role::Admin, "renewing the server certificate") {
            Ok(()) => self.renew_server_inner(&r.extra_sans).await,
            Err(e) => Err(e),
        };
        self.audit(&p, "ca.renew-server", String::new(), result)
            .await
            .map(Response::new)
    }

    async fn rotate(
        &self,
        req: Request<RotateRequest>,
    ) -> Result<Response<RotateResponse>, Status> {
        let p = caller(&req)?;
        let result = match require(&p, Role::Admin, "rotating the CA") {
            Ok(()) => self.rotate_inner().await,
            Err(e) => Err(e),
        };
        self.audit(&p, "ca.rotate", String::new(), result)
            .await
            .map(Response::new)
    }

    async fn retire_previous(
        &self,
        req: Request<RetirePreviousRequest>,
    ) -> Result<Response<RetirePreviousResponse>, Status> {
        let p = caller(&req)?;
        let key_id = caller_key_id(&req);
        let force = req.into_inner().force;
        let result = match require(&p, Role::Admin, "retiring the previous CA") {
            Ok(()) => self.retire_inner(&key_id, force).await,
            Err(e) => Err(e),
        };
        self.audit(
            &p,
            "ca.retire",
            String::new(),
            result.map(|(r, d)| (r, format!("{d} force={force}"))),
        )
        .await
        .map(Response::new)
    }

    async fn renew_credential(
        &self,
        req: Request<RenewCredentialRequest>,
    ) -> Result<Response<RenewCredentialResponse>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let (result, target) = match &p {
            Principal::Operator { name, .. } if RENEWALS.admit(name).is_err() => (
                Err(Status::resource_exhausted(format!(
                    "operator {name:?} renewed its credential {} times in the last hour; \
                     retry later",
                    RENEWALS_PER_HOUR
                ))),
                name.clone(),
            ),
            Principal::Operator { name, role } => (
                self.renew_credential_inner(name, *role, r).await,
                name.clone(),
            ),
            Principal::Node { .. } => (
                Err(Status::permission_denied(
                    "nodes renew over their session, not here",
                )),
                String::new(),
            ),
        };
        self.audit(&p, "operator.renew", target, result)
            .await
            .map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> (tempfile::TempDir, DataDir) {
        let t = tempfile::tempdir().unwrap();
        let d = DataDir::new(t.path());
        let ca = Ca::generate("first", Duration::from_secs(3600)).unwrap();
        write_atomic(&d.ca_cert(), ca.cert_pem().as_bytes(), 0o644).unwrap();
        write_private(&d.ca_key(), ca.key_pem().expose().as_bytes()).unwrap();
        (t, d)
    }

    #[test]
    fn a_rotation_interrupted_after_the_new_ca_was_staged_is_completed_at_load() {
        let (_t, d) = data();
        let old = Authority::load(&d).unwrap();
        let new = Ca::generate("second", Duration::from_secs(3600)).unwrap();
        let cross = old.current.cross_sign(&new).unwrap();
        write_atomic(&previous_path(&d), old.current.cert_pem().as_bytes(), 0o644).unwrap();
        write_atomic(&cross_path(&d), cross.as_bytes(), 0o644).unwrap();
        write_private(&next_key_path(&d), new.key_pem().expose().as_bytes()).unwrap();
        write_atomic(&next_cert_path(&d), new.cert_pem().as_bytes(), 0o644).unwrap();
        // Crash here.
        let a = Authority::load(&d).unwrap();
        assert_eq!(a.current.pin(), new.pin());
        assert_eq!(a.previous.as_ref().unwrap().pin, old.current.pin());
        assert_eq!(a.issuer_of(&old.current_key_id), Issuer::Previous);
        assert_eq!(a.issuer_of(&new.key_id()), Issuer::Current);
        assert_eq!(a.issuer_of(""), Issuer::Previous);
        assert!(a.trusted_pem().contains(old.current.cert_pem().trim()));
    }

    #[test]
    fn a_rotation_interrupted_before_the_new_ca_was_complete_is_dropped() {
        let (_t, d) = data();
        let old = Authority::load(&d).unwrap();
        let new = Ca::generate("second", Duration::from_secs(3600)).unwrap();
        write_atomic(&previous_path(&d), old.current.cert_pem().as_bytes(), 0o644).unwrap();
        write_atomic(&cross_path(&d), b"x", 0o644).unwrap();
        write_private(&next_key_path(&d), new.key_pem().expose().as_bytes()).unwrap();
        let a = Authority::load(&d).unwrap();
        assert_eq!(a.current.pin(), old.current.pin());
        assert!(a.previous.is_none());
        assert!(!next_key_path(&d).exists() && !previous_path(&d).exists());
        assert_eq!(a.issuer_of(""), Issuer::Current);
    }

    #[test]
    fn extra_names_are_checked() {
        let cur = vec!["a.example".to_string()];
        assert_eq!(
            merge_sans(&cur, &["b.example".into(), "a.example".into()]).unwrap(),
            vec!["a.example".to_string(), "b.example".to_string()]
        );
        assert!(merge_sans(&cur, &["bad name".into()]).is_err());
        assert!(merge_sans(&cur, &["".into()]).is_err());
    }
}
