//! Readiness, observed on the node: the probes every Gluu workflow waits on (never a sleep).

use crate::engine::{JobSpec, StepPlan};
use crate::gluu_install::{DIRECTORY_ADMIN_DN, LDAPS_PORT};
use clustermgr_proto::{HttpsGet, LdapsBind, Probe, operation, probe};

/// `https://ADDR[:PORT]PATH`, with IPv6 addresses bracketed and 443 left out.
pub fn web_url(addr: &str, https_port: Option<u16>, path: &str) -> String {
    let host = if addr.contains(':') {
        format!("[{addr}]")
    } else {
        addr.to_string()
    };
    match https_port {
        Some(p) if p != 443 => format!("https://{host}:{p}{path}"),
        _ => format!("https://{host}{path}"),
    }
}

/// Waits until the node's directory accepts the directory manager's bind over LDAPS.
pub fn directory(ip: &str, password: &str, within_ms: u32) -> StepPlan {
    run(
        Probe {
            target: Some(probe::Target::Ldaps(LdapsBind {
                host: ip.to_string(),
                port: LDAPS_PORT,
                bind_dn: DIRECTORY_ADMIN_DN.into(),
                password: password.as_bytes().to_vec(),
                ca_pem: String::new(),
            })),
            within_ms,
        },
        format!("wait for the directory: LDAPS bind to {ip}:{LDAPS_PORT}"),
    )
}

/// Waits until the node's web tier answers `path` with 200: oxAuth's health on the primary;
/// the web tier's liveness (/identity) on a --no-data node, whose oxAuth has no configuration
/// until replication brings it.
pub fn web(ip: &str, https_port: Option<u16>, primary: bool, within_ms: u32) -> StepPlan {
    let path = if primary {
        "/oxauth/restv1/health-check"
    } else {
        "/identity/restv1/health-check"
    };
    let url = web_url(ip, https_port, path);
    run(
        Probe {
            target: Some(probe::Target::Https(HttpsGet {
                url: url.clone(),
                ca_pem: String::new(),
            })),
            within_ms,
        },
        format!("wait for {url}"),
    )
}

fn run(p: Probe, summary: String) -> StepPlan {
    let within = p.within_ms;
    JobSpec::rerunnable(
        operation::Kind::Probe(p),
        within.saturating_add(30_000),
        summary,
    )
    .into()
}
