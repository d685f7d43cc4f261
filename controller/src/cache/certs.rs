//! Signing a node's stunnel CSR with the cache-only CA, while its own job runs.

use super::*;

/// Signs a node's stunnel CSR, only while its own configure-stunnel job runs: a server
/// certificate for a cache host (its addresses and name), a client certificate otherwise.
pub fn issue_certificate(
    ctl: &Ctl,
    cache_ca: &clustermgr_shared::pki::Ca,
    node_id: &str,
    job_id: &str,
    csr_der: &[u8],
) -> Result<IssueCacheCertificateResponse, CacheError> {
    let not_yours = || CacheError::NotYourJob(crate::audit::clean(job_id, 64));
    match ctl.jobs.running(job_id) {
        Some(j) if j.node_id == node_id && j.kind == "configure-stunnel" => {}
        _ => return Err(not_yours()),
    }
    let node: NodeRecord = ctl.store.node(node_id)?.ok_or_else(not_yours)?;
    let usage = if node.role() == NodeRole::Cache {
        Usage::Server
    } else {
        Usage::Client
    };
    let mut sans: Vec<String> = node
        .inventory
        .as_ref()
        .map(|i| i.addresses.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.parse::<std::net::IpAddr>().is_ok())
        .collect();
    if node
        .hostname
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !node.hostname.is_empty()
    {
        sans.push(node.hostname.clone());
    }
    let cert = cache_ca.sign_csr_with_names(
        csr_der,
        &node.hostname,
        &sans,
        usage,
        pki::validity_from_now(CERT_TTL),
    )?;
    tracing::info!(node = %node_id, job = %job_id, usage = ?usage, "cache certificate issued");
    Ok(IssueCacheCertificateResponse {
        certificate_pem: cert,
        ca_pem: cache_ca.cert_pem().to_string(),
    })
}
