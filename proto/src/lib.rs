//! Generated gRPC types for `clustermgr.v1`.
//!
//! * `Enrollment` — the one call served without a client certificate (a join token authenticates it).
//! * `AgentSession` — the agent's long-lived bidirectional stream and certificate renewal.
//! * `Operator` — the CLI / integration API.
//! * store records (`*Record`) — internal persisted forms, never sent on the wire.
#![forbid(unsafe_code)]
#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("clustermgr.v1");
}

/// Encoded `FileDescriptorSet` of every clustermgr proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/clustermgr_descriptor.bin"));

pub use v1::*;

impl v1::AgentMessage {
    /// An event about one job (log line, progress or result), as the agent sends it.
    pub fn job_event(job_id: &str, event: v1::job_event::Event) -> Self {
        Self {
            msg: Some(v1::agent_message::Msg::JobEvent(v1::JobEvent {
                job_id: job_id.to_string(),
                event: Some(event),
            })),
        }
    }
}

// --- Debug for messages that carry secrets: the secret is never printed. ---

struct Redacted(usize);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<redacted, {} bytes>", self.0)
    }
}

impl std::fmt::Debug for v1::EnrollRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollRequest")
            .field("token", &Redacted(self.token.len()))
            .field("csr_der", &Redacted(self.csr_der.len()))
            .field("hostname", &self.hostname)
            .finish()
    }
}

impl std::fmt::Debug for v1::CreateTokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateTokenResponse")
            .field("token", &Redacted(self.token.len()))
            .field("token_id", &self.token_id)
            .field("expires_unix", &self.expires_unix)
            .finish()
    }
}

impl std::fmt::Debug for v1::WriteFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteFile")
            .field("path", &self.path)
            .field("content", &Redacted(self.content.len()))
            .field("mode", &self.mode)
            .field("owner", &self.owner)
            .field("group", &self.group)
            .field("allow_setid", &self.allow_setid)
            .finish()
    }
}

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
            .finish()
    }
}

impl std::fmt::Debug for v1::InstallHttpdCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstallHttpdCertificate")
            .field("certificate_pem", &self.certificate_pem.len())
            .field("key_pem", &Redacted(self.key_pem.len()))
            .field("alias_prefix", &self.alias_prefix)
            .field("probe_url", &self.probe_url)
            .field("within_ms", &self.within_ms)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for v1::ApplyLdapSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyLdapSchema")
            .field("schemas", &self.schemas)
            .field("check_only", &self.check_only)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("admin_password", &Redacted(self.admin_password.len()))
            .field("within_ms", &self.within_ms)
            .finish()
    }
}

impl std::fmt::Debug for v1::VerifyLdapSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyLdapSchema")
            .field("schema", &self.schema)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("admin_password", &Redacted(self.admin_password.len()))
            .field("base", &self.base)
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
            .finish()
    }
}

impl std::fmt::Debug for v1::ConfigureRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigureRequest")
            .field("gluu_version", &self.gluu_version)
            .field("lb_hostname", &self.lb_hostname)
            .field("lb_ip", &self.lb_ip)
            .field("org", &self.org)
            .field(
                "ldap_admin_password",
                &self.ldap_admin_password.as_ref().map(|p| Redacted(p.len())),
            )
            .field(
                "replication_password",
                &self
                    .replication_password
                    .as_ref()
                    .map(|p| Redacted(p.len())),
            )
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for v1::FsrepFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsrepFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("deleted", &self.deleted)
            .field("mode", &self.mode)
            .field("owner", &self.owner)
            .field("group", &self.group)
            .field("size", &self.size)
            .field("content", &Redacted(self.content.len()))
            .finish_non_exhaustive()
    }
}

// --- The words the API and the CLI use for stored enums. ---

impl v1::JobState {
    /// running | succeeded | failed | timed-out | interrupted
    pub const fn label(self) -> &'static str {
        match self {
            Self::Unspecified => "unknown",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed-out",
            Self::Interrupted => "interrupted",
        }
    }
    pub const fn is_finished(self) -> bool {
        !matches!(self, Self::Running | Self::Unspecified)
    }
}

impl v1::NodeRole {
    /// gluu-node | cache | lb
    pub fn label(self) -> &'static str {
        match self {
            Self::Unspecified => "unknown",
            Self::GluuNode => "gluu-node",
            Self::Cache => "cache",
            Self::Lb => "lb",
        }
    }
    pub fn from_label(s: &str) -> Option<Self> {
        match s {
            "gluu-node" => Some(Self::GluuNode),
            "cache" => Some(Self::Cache),
            "lb" => Some(Self::Lb),
            _ => None,
        }
    }
}

// --- Cache messages carry the Redis and directory passwords. ---

impl std::fmt::Debug for v1::ConfigureRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigureRedis")
            .field("port", &self.port)
            .field("password", &Redacted(self.password.len()))
            .field("remove", &self.remove)
            .finish()
    }
}

impl std::fmt::Debug for v1::ConfigureNutcracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigureNutcracker")
            .field("listen_port", &self.listen_port)
            .field("server_ports", &self.server_ports)
            .field("password", &Redacted(self.password.len()))
            .field("remove", &self.remove)
            .finish()
    }
}

impl std::fmt::Debug for v1::CacheStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheStatus")
            .field("server", &self.server)
            .field("client", &self.client)
            .field("nutcracker", &self.nutcracker)
            .field("ping_port", &self.ping_port)
            .field("password", &Redacted(self.password.len()))
            .field("require_healthy", &self.require_healthy)
            .field("programs", &self.programs)
            .finish()
    }
}

impl std::fmt::Debug for v1::SetCacheConfiguration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetCacheConfiguration")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("admin_password", &Redacted(self.admin_password.len()))
            .field("provider", &self.provider)
            .field("servers", &self.servers)
            .field("redis_password", &Redacted(self.redis_password.len()))
            .field("sharded", &self.sharded)
            .finish()
    }
}

impl std::fmt::Debug for v1::SetCachePasswordRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetCachePasswordRequest")
            .field("password", &Redacted(self.password.len()))
            .field("clear", &self.clear)
            .field("dry_run", &self.dry_run)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_secrets() {
        let e = EnrollRequest {
            token: "abcdef0123.SECRETSECRET".into(),
            csr_der: vec![1, 2, 3],
            hostname: "h1".into(),
        };
        let t = CreateTokenResponse {
            token: "abcdef0123.SECRETSECRET".into(),
            token_id: "abcdef0123".into(),
            expires_unix: 1,
        };
        let w = WriteFile {
            path: "/etc/x".into(),
            content: b"SECRETSECRET".to_vec(),
            ..Default::default()
        };
        for s in [format!("{e:?}"), format!("{t:?}"), format!("{w:?}")] {
            assert!(!s.contains("SECRETSECRET"), "{s}");
            assert!(s.contains("redacted"), "{s}");
        }
        // A message that embeds one is redacted too.
        let op = Operation {
            kind: Some(operation::Kind::WriteFile(w)),
        };
        assert!(!format!("{op:?}").contains("SECRETSECRET"));
        assert!(format!("{e:?}").contains("h1"));
        let cache = [
            format!(
                "{:?}",
                ConfigureRedis {
                    password: b"SECRETSECRET".to_vec(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                ConfigureNutcracker {
                    password: b"SECRETSECRET".to_vec(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                CacheStatus {
                    password: b"SECRETSECRET".to_vec(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                SetCacheConfiguration {
                    admin_password: b"SECRETSECRET".to_vec(),
                    redis_password: b"SECRETSECRET".to_vec(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                SetCachePasswordRequest {
                    password: b"SECRETSECRET".to_vec(),
                    ..Default::default()
                }
            ),
        ];
        for s in cache {
            assert!(!s.contains("SECRETSECRET"), "{s}");
        }
    }
}

impl std::fmt::Debug for v1::HealthProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let check = match &self.check {
            Some(v1::health_probe::Check::Ldaps(b)) => {
                format!("ldaps {}:{} as {}", b.host, b.port, b.bind_dn)
            }
            Some(v1::health_probe::Check::Https(g)) => format!("https {}", g.url),
            Some(v1::health_probe::Check::Tcp(a)) => format!("tcp {a}"),
            Some(v1::health_probe::Check::Redis(r)) => format!("redis ping on port {}", r.port),
            None => "none".into(),
        };
        f.debug_struct("HealthProbe")
            .field("service", &self.service)
            .field("check", &check)
            .finish()
    }
}

// --- Key rotation messages carry oxAuth's private keys and the directory password. ---

impl std::fmt::Debug for v1::OxauthPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OxauthPrivateKey")
            .field("kid", &self.kid)
            .field("pkcs8_pem", &Redacted(self.pkcs8_pem.len()))
            .field("certificate_pem", &self.certificate_pem.len())
            .finish()
    }
}

impl std::fmt::Debug for v1::UpdateOxauthKeystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateOxauthKeystore")
            .field("kind", &self.kind)
            .field("add", &self.add)
            .field("keep_kids", &self.keep_kids)
            .field("keystore_password", &Redacted(self.keystore_password.len()))
            .finish()
    }
}

impl std::fmt::Debug for v1::SetWebKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetWebKeys")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("password", &Redacted(self.password.len()))
            .field("add_jwks", &self.add_jwks.len())
            .field("keep_kids", &self.keep_kids)
            .field("first_kids", &self.first_kids)
            .finish()
    }
}
