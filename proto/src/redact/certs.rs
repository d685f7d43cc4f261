//! Redacted Debug for TLS material: the load balancer's configuration, the web server's and
//! Gluu's certificates (their private keys).

use super::Redacted;
use crate::v1;

impl std::fmt::Debug for v1::ConfigureNginx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigureNginx")
            .field("server_name", &self.server_name)
            .field("backends", &self.backends)
            .field("oxauth_balancing", &self.oxauth_balancing)
            .field("listen_address", &self.listen_address)
            .field("https_port", &self.https_port)
            .field("http_port", &self.http_port)
            .field("certificate_pem", &self.certificate_pem.len())
            .field("key_pem", &Redacted(self.key_pem.len()))
            .field("drained", &self.drained)
            .finish()
    }
}

impl std::fmt::Debug for v1::InstallHttpdCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstallHttpdCertificate")
            .field("certificate_pem", &self.certificate_pem.len())
            .field("key_pem", &Redacted(self.key_pem.len()))
            .field("certificate_sha256", &self.certificate_sha256)
            .field("key_sha256", &Redacted(self.key_sha256.len()))
            .field("alias_prefix", &self.alias_prefix)
            .field("probe_url", &self.probe_url)
            .field("within_ms", &self.within_ms)
            .field("keep_on_failure", &self.keep_on_failure)
            .finish()
    }
}

impl std::fmt::Debug for v1::InstallCertificateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstallCertificateRequest")
            .field("certificate_pem", &self.certificate_pem.len())
            .field("key_pem", &Redacted(self.key_pem.len()))
            .field("chain_pem", &self.chain_pem.len())
            .field("dry_run", &self.dry_run)
            .field("no_wait", &self.no_wait)
            .finish()
    }
}

impl std::fmt::Debug for v1::CertificateFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateFile")
            .field("path", &self.path)
            .field("content", &Redacted(self.content.len()))
            .field("mode", &self.mode)
            .field("sha256", &self.sha256)
            .finish()
    }
}
