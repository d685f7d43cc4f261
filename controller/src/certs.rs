//! The cluster's web certificate (Gluu's httpd certificate): what every node serves
//! (`cert show`), and `cert install`: a certificate, its key and chain validated here before any
//! node is touched (the key matches, the chain verifies, the load balancer's hostname is in it,
//! it is valid now), then the `cert-install` workflow (see `clustermgr_workflow::certs`).
//!
//! The new key is never in the workflow's inputs, a job record, a log line or an audit row: it
//! is kept sealed with the workflow (like the outputs its steps keep) before the workflow is
//! persisted, and dropped when the workflow ends.

use crate::audit::Audit;
use crate::ctl::Ctl;
use crate::error::{Classify, Kind};
use crate::jobs::JobSpec;
use crate::settings;
use crate::settings::ClusterError;
use crate::store::StoreError;
use crate::workflows::{self, WhenBusy, WorkflowError};
use clustermgr_proto::{
    CertWorkflowStarted, CertificateFacts, CertificatesShown, ConfigureNginx,
    InstallCertificateRequest, NodeRecord, NodeRole, Operation, ReadServedCertificate, ServedBy,
    operation, operation_output,
};
use clustermgr_shared::secret::Secret;
use clustermgr_workflow::certs::{CertInstall, Inputs, KIND, NEW};
use clustermgr_workflow::inputs::KindInputs;
use clustermgr_workflow::new_workflow;
use prost::Message as _;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::ServerCertVerifier as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// How long each node's probe (after its restart) keeps trying.
const PROBE_WITHIN_MS: u32 = 5 * 60_000;
/// How long `cert show` waits for a node.
const SHOW_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of a certificate, key or chain.
const MAX_PEM: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("the {0} is not PEM (or holds nothing usable): {1}")]
    NotPem(&'static str, String),
    #[error("the {0} is larger than {MAX_PEM} bytes")]
    TooLarge(&'static str),
    #[error("the private key does not match the certificate (its public key differs)")]
    KeyMismatch,
    #[error("the private key's type is not supported: {0}")]
    UnsupportedKey(String),
    #[error("the certificate expired on {0}")]
    Expired(String),
    #[error("the certificate is not valid before {0}")]
    NotYetValid(String),
    #[error(
        "the certificate is not issued to the load balancer's hostname {host} (its names: {names})"
    )]
    WrongHost { host: String, names: String },
    #[error("the chain does not verify: {0}")]
    Chain(String),
    #[error("no Gluu server is installed yet (clustermgr gluu install)")]
    NoGluu,
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("sealing the new certificate: {0}")]
    Seal(String),
    #[error("the load balancer: {0}")]
    Lb(String),
}

impl Classify for CertError {
    fn kind(&self) -> Kind {
        match self {
            Self::NotPem(..)
            | Self::TooLarge(_)
            | Self::KeyMismatch
            | Self::UnsupportedKey(_)
            | Self::Expired(_)
            | Self::NotYetValid(_)
            | Self::WrongHost { .. }
            | Self::Chain(_) => Kind::InvalidArgument,
            Self::NoGluu => Kind::FailedPrecondition,
            Self::Workflow(e) => e.kind(),
            Self::Cluster(e) => e.kind(),
            Self::Store(_) | Self::Seal(_) | Self::Lb(_) => Kind::Internal,
        }
    }
}

fn fmt_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// Subject, names, issuer, validity and fingerprint of a DER certificate.
pub fn facts(der: &[u8]) -> Result<CertificateFacts, String> {
    let (_, c) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let sans = c
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .map(|g| match g {
                    x509_parser::extensions::GeneralName::DNSName(d) => d.to_string(),
                    x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                        4 => std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
                        16 => <[u8; 16]>::try_from(*b)
                            .map(|a| std::net::Ipv6Addr::from(a).to_string())
                            .unwrap_or_default(),
                        _ => String::new(),
                    },
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    let fp = clustermgr_shared::pki::fingerprint(der).to_uppercase();
    let fingerprint = fp
        .as_bytes()
        .chunks(2)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect::<Vec<_>>()
        .join(":");
    Ok(CertificateFacts {
        subject: c.subject().to_string(),
        sans,
        issuer: c.issuer().to_string(),
        not_before_unix: u64::try_from(c.validity().not_before.timestamp()).unwrap_or(0),
        not_after_unix: u64::try_from(c.validity().not_after.timestamp()).unwrap_or(0),
        fingerprint,
    })
}

/// Whether `name` (a DNS name of a certificate, maybe `*.`) covers `host`.
fn name_matches(name: &str, host: &str) -> bool {
    let (name, host) = (name.to_ascii_lowercase(), host.to_ascii_lowercase());
    if let Some(rest) = name.strip_prefix("*.") {
        return host
            .split_once('.')
            .is_some_and(|(first, tail)| !first.is_empty() && tail == rest);
    }
    name == host
}

fn certs(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    if pem.len() > MAX_PEM {
        return Err(CertError::TooLarge(what));
    }
    if pem.trim().is_empty() {
        return Ok(Vec::new());
    }
    let c = clustermgr_shared::tls::certs_from_pem(pem)
        .map_err(|e| CertError::NotPem(what, e.to_string()))?;
    if c.is_empty() {
        return Err(CertError::NotPem(what, "no CERTIFICATE block".into()));
    }
    Ok(c)
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// A validated certificate: its facts and what the nodes get (the certificate, then its chain).
#[derive(Debug)]
pub struct Validated {
    pub facts: CertificateFacts,
    pub full_chain_pem: String,
}

/// Checks, in this order, before any node is touched: the PEM blocks, that the key matches the
/// certificate, the validity period, the load balancer's hostname among the certificate's
/// names, and that the chain verifies (to the chain's last certificate, or to the certificate
/// itself when it is self-signed and no chain is given).
pub fn validate(
    cert_pem: &str,
    key_pem: &[u8],
    chain_pem: &str,
    lb_hostname: &str,
    now_unix: u64,
) -> Result<Validated, CertError> {
    let mut given = certs(cert_pem, "certificate")?;
    if given.is_empty() {
        return Err(CertError::NotPem("certificate", "it is empty".into()));
    }
    let leaf = given.remove(0);
    // Certificates after the first in the certificate file are chain too.
    let mut chain = given;
    chain.extend(certs(chain_pem, "chain")?);
    let spki = key_spki(key_pem)?;
    let provider = clustermgr_shared::tls::provider();
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| CertError::NotPem("certificate", e.to_string()))?;
    if parsed.tbs_certificate.subject_pki.raw != spki.as_slice() {
        return Err(CertError::KeyMismatch);
    }
    let facts = facts(leaf.as_ref()).map_err(|e| CertError::NotPem("certificate", e))?;
    if now_unix > facts.not_after_unix {
        return Err(CertError::Expired(fmt_time(facts.not_after_unix as i64)));
    }
    if now_unix < facts.not_before_unix {
        return Err(CertError::NotYetValid(fmt_time(
            facts.not_before_unix as i64,
        )));
    }
    check_host(&facts, lb_hostname)?;
    let self_signed = parsed.subject() == parsed.issuer();
    let (anchor, intermediates) = match chain.split_last() {
        Some((last, rest)) => (last.clone(), rest.to_vec()),
        None if self_signed => (leaf.clone(), Vec::new()),
        None => {
            return Err(CertError::Chain(format!(
                "the certificate is issued by {} and no chain was given (--chain)",
                facts.issuer
            )));
        }
    };
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(anchor)
        .map_err(|e| CertError::Chain(format!("the chain's last certificate: {e}")))?;
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| CertError::Chain(e.to_string()))?;
    let name = ServerName::try_from(lb_hostname.to_string())
        .map_err(|e| CertError::Chain(format!("{lb_hostname}: {e}")))?;
    if !(self_signed && chain.is_empty()) {
        verifier
            .verify_server_cert(
                &leaf,
                &intermediates,
                &name,
                &[],
                UnixTime::since_unix_epoch(Duration::from_secs(now_unix)),
            )
            .map_err(|e| CertError::Chain(e.to_string()))?;
    }
    let mut full_chain_pem = pem_of(leaf.as_ref());
    for c in &chain {
        full_chain_pem.push_str(&pem_of(c.as_ref()));
    }
    Ok(Validated {
        facts,
        full_chain_pem,
    })
}

/// The public key (DER SubjectPublicKeyInfo) of a PEM private key.
fn key_spki(key_pem: &[u8]) -> Result<Vec<u8>, CertError> {
    if key_pem.len() > MAX_PEM {
        return Err(CertError::TooLarge("key"));
    }
    let key_text = Secret::new(
        String::from_utf8(key_pem.to_vec())
            .map_err(|_| CertError::NotPem("key", "not text".into()))?,
    );
    let key = clustermgr_shared::tls::key_from_pem(&key_text)
        .map_err(|e| CertError::NotPem("key", e.to_string()))?;
    let signing = clustermgr_shared::tls::provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| CertError::UnsupportedKey(e.to_string()))?;
    let spki = signing
        .public_key()
        .ok_or_else(|| CertError::UnsupportedKey("its public key cannot be derived".into()))?;
    Ok(spki.as_ref().to_vec())
}

/// The load balancer's hostname must be among the certificate's DNS names.
fn check_host(facts: &CertificateFacts, lb_hostname: &str) -> Result<(), CertError> {
    let dns: Vec<&String> = facts
        .sans
        .iter()
        .filter(|n| n.parse::<std::net::IpAddr>().is_err())
        .collect();
    if !dns.iter().any(|n| name_matches(n, lb_hostname)) {
        return Err(CertError::WrongHost {
            host: lb_hostname.to_string(),
            names: if facts.sans.is_empty() {
                "none".into()
            } else {
                facts.sans.join(", ")
            },
        });
    }
    Ok(())
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The load balancer nginx serves now: the inputs of the last lb-install, when it succeeded
/// and no lb-remove came after it.
fn installed_lb(ctl: &Ctl) -> Result<Option<clustermgr_workflow::lb::Inputs>, CertError> {
    let s = settings::settings_record(ctl)?;
    if s.external_lb {
        return Ok(None);
    }
    crate::lb::installed_inputs(ctl).map_err(|e| CertError::Lb(e.to_string()))
}

/// nginx's configuration as the last lb-install made it, with today's backends (certificate
/// and key left for the step to fill in).
fn nginx_template(ctl: &Ctl, lb_node: &str) -> Result<Option<ConfigureNginx>, WorkflowError> {
    let s = settings::settings_record(ctl)?;
    let last = installed_lb(ctl).map_err(|e| WorkflowError::Refused(e.to_string()))?;
    let Some(inputs) = last.filter(|i| i.lb == lb_node) else {
        return Ok(None);
    };
    let Some(node) = ctl.store.node(lb_node)? else {
        return Ok(None);
    };
    let addrs = node
        .inventory
        .as_ref()
        .map(|i| i.addresses.clone())
        .unwrap_or_default();
    let Some(listen) = addrs
        .iter()
        .find(|a| !s.lb_ip.is_empty() && **a == s.lb_ip)
        .or(addrs.first())
        .cloned()
    else {
        return Ok(None);
    };
    let backends = crate::lb::backends(ctl).map_err(|e| WorkflowError::Refused(e.to_string()))?;
    Ok(Some(ConfigureNginx {
        server_name: s.lb_hostname.clone(),
        backends,
        oxauth_balancing: inputs.balancing as i32,
        listen_address: listen,
        https_port: inputs.https_port,
        http_port: inputs.http_port,
        certificate_pem: String::new(),
        key_pem: Vec::new(),
        drained: crate::lb::drained(ctl)?,
    }))
}

/// The definition of a cert-install workflow from its inputs and the settings now.
pub fn definition(
    ctl: &Ctl,
    wf: &clustermgr_proto::Workflow,
) -> Result<CertInstall, WorkflowError> {
    let s = settings::settings_record(ctl)?;
    let inputs = Inputs::decode(&wf.inputs)?;
    let lb = if inputs.lb.is_empty() {
        None
    } else {
        nginx_template(ctl, &inputs.lb)?
    };
    Ok(CertInstall {
        inputs,
        lb_hostname: s.lb_hostname.clone(),
        https_port: (s.https_port != 0).then_some(s.https_port as u16),
        probe_within_ms: PROBE_WITHIN_MS,
        lb,
        balancer: crate::drain::balancer(ctl)?,
    })
}

/// `cert install --cert F --key F [--chain F] [--dry-run]`.
pub async fn install(
    ctl: &Ctl,
    req: &InstallCertificateRequest,
    audit: &Audit,
) -> Result<CertWorkflowStarted, CertError> {
    let s = settings::settings_record(ctl)?;
    if s.lb_hostname.is_empty() {
        return Err(ClusterError::NotConfigured("--lb-hostname").into());
    }
    let v = validate(
        &req.certificate_pem,
        &req.key_pem,
        &req.chain_pem,
        &s.lb_hostname,
        now_unix(),
    )?;
    let nodes = settings::installed_gluu_nodes(ctl)?;
    let Some(primary) = nodes.iter().find(|n| n.1).or(nodes.first()) else {
        return Err(CertError::NoGluu);
    };
    let lb = installed_lb(ctl)?.and_then(|i| ctl.store.node(&i.lb).ok().flatten());
    let inputs = Inputs {
        order: nodes.iter().map(|n| n.0.id.clone()).collect(),
        primary: primary.0.id.clone(),
        lb: lb.as_ref().map(|n| n.id.clone()).unwrap_or_default(),
    };
    let id = uuid::Uuid::now_v7().to_string();
    let mut wf = new_workflow(
        &id,
        KIND,
        &audit.who,
        clustermgr_shared::util::now_ms(),
        nodes
            .iter()
            .map(|(n, _)| n)
            .chain(lb.as_ref())
            .map(|n| {
                (
                    n.id.clone(),
                    n.hostname.clone(),
                    clustermgr_workflow::certs::steps(&inputs, &n.id),
                )
            })
            .collect(),
    );
    wf.inputs = inputs.encode().into_iter().collect();
    let pair = clustermgr_workflow::certs::new_pair_with(
        &v.full_chain_pem,
        &req.key_pem,
        &sha256_hex(v.full_chain_pem.as_bytes()),
        &sha256_hex(&req.key_pem),
    )
    .encode_to_vec();
    let def = definition(ctl, &wf)?;
    if req.dry_run {
        let mut obs = workflows::observe(ctl, &wf, &def)?;
        obs.kept.insert(NEW.into(), pair);
        let plan = workflows::plan_of(clustermgr_workflow::dry_run(&wf, &def, &obs));
        return Ok(CertWorkflowStarted {
            workflow: None,
            plan,
            certificate: Some(v.facts),
        });
    }
    let _admitted = workflows::admit_new(ctl, &mut wf, WhenBusy::from_no_wait(req.no_wait)).await?;
    let sealed = ctl
        .sealer
        .seal(&workflows::purpose(&id, NEW), &pair)
        .map_err(|e| CertError::Seal(e.to_string()))?;
    // Kept before the record exists: the driver never sees the workflow without it.
    ctl.store.put_kept(&id, NEW, sealed).await?;
    let servers = settings::servers_pointing_at(ctl, &nodes, &id)?;
    let row = audit.on(id.clone()).ok(format!(
        "kind={KIND} nodes={} certificate={} fingerprint={}",
        nodes.len(),
        v.facts.subject,
        v.facts.fingerprint
    ));
    if let Err(e) = ctl.store.put_workflow(wf.clone(), servers, Some(row)).await {
        let _ = ctl.store.drop_kept(&id).await;
        return Err(e.into());
    }
    ctl.workflows.kick();
    Ok(CertWorkflowStarted {
        workflow: Some(wf),
        plan: Vec::new(),
        certificate: Some(v.facts),
    })
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(b))
}

/// Asks one node for the certificate `address` serves.
async fn served(ctl: &Ctl, node: &NodeRecord, address: String, sni: &str) -> ServedBy {
    let mut out = ServedBy {
        node_id: node.id.clone(),
        hostname: node.hostname.clone(),
        role: node.role().label().to_string(),
        address: address.clone(),
        ..Default::default()
    };
    let spec = JobSpec::new(
        Operation {
            kind: Some(operation::Kind::ReadServedCertificate(
                ReadServedCertificate {
                    address,
                    server_name: sni.to_string(),
                },
            )),
        },
        SHOW_TIMEOUT,
        "controller:cert-show".into(),
    );
    let audit = Audit::new("controller", "cert.show", node.id.clone());
    let finished = match ctl.jobs.run(node, spec, &audit).await {
        Ok(f) => f,
        Err(e) => {
            out.error = e.to_string();
            return out;
        }
    };
    match finished.map(|f| (f.job.output.and_then(|o| o.kind), f.job.error)) {
        Some((Some(operation_output::Kind::ReadServedCertificate(c)), _)) => {
            match c.chain_der.first().map(|d| facts(d)) {
                Some(Ok(f)) => out.certificate = Some(f),
                Some(Err(e)) => out.error = format!("the served certificate does not parse: {e}"),
                None => out.error = "no certificate was presented".into(),
            }
        }
        Some((_, e)) if !e.is_empty() => out.error = e,
        _ => out.error = "the node gave no answer".into(),
    }
    out
}

/// `cert show`: the certificate every installed Gluu node serves on its web port, and the one
/// the load balancer serves when a node of role lb is enrolled (each asked on its own address).
pub async fn show(ctl: &Ctl) -> Result<CertificatesShown, CertError> {
    let s = settings::settings_record(ctl)?;
    let (port, _) = crate::lb::ports(&s);
    let mut targets: Vec<NodeRecord> = settings::installed_gluu_nodes(ctl)?
        .into_iter()
        .map(|n| n.0)
        .collect();
    if !s.external_lb {
        targets.extend(
            ctl.store
                .nodes()?
                .into_iter()
                .filter(|n| n.role() == NodeRole::Lb),
        );
    }
    let mut asks = Vec::new();
    for n in &targets {
        let addr = n
            .inventory
            .as_ref()
            .and_then(|i| {
                if n.role() == NodeRole::Lb && !s.lb_ip.is_empty() {
                    i.addresses
                        .iter()
                        .find(|a| **a == s.lb_ip)
                        .or(i.addresses.first())
                } else {
                    i.addresses.first()
                }
            })
            .cloned()
            .unwrap_or_default();
        let address = if addr.contains(':') {
            format!("[{addr}]:{port}")
        } else {
            format!("{addr}:{port}")
        };
        asks.push(served(ctl, n, address, &s.lb_hostname));
    }
    Ok(CertificatesShown {
        lb_hostname: s.lb_hostname.clone(),
        served: futures::future::join_all(asks).await,
    })
}

/// The `cert install` workflow kind: its plan only.
pub fn kind() -> std::sync::Arc<dyn crate::ctl::WorkflowKind> {
    crate::ctl::plan_only(&[clustermgr_workflow::certs::KIND], |ctl, wf| {
        Ok(Box::new(definition(ctl, wf)?))
    })
}

#[cfg(test)]
mod tests;
