//! Summaries of the load balancer's operations and the web certificate's.

use crate::v1::{ConfigureNginx, InstallHttpdCertificate, SetBackendRotation};

/// The server name and backend count (never the certificate's key).
pub(super) fn configure_nginx(c: &ConfigureNginx) -> String {
    format!(
        "configure nginx for {} with {} backend(s)",
        c.server_name,
        c.backends.len()
    )
}

pub(super) fn set_backend_rotation(r: &SetBackendRotation) -> String {
    if r.in_rotation {
        format!("put {} back into the load balancer's rotation", r.name)
    } else {
        format!("take {} out of the load balancer's rotation", r.name)
    }
}

/// The alias and the probe (never the key).
pub(super) fn install_httpd_certificate(c: &InstallHttpdCertificate) -> String {
    format!(
        "install the web certificate (alias {}_httpd), restart, probe {}",
        c.alias_prefix, c.probe_url
    )
}
