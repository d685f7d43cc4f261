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

pub mod gluu;

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

/// An enumeration field shown as prost's own Debug shows it: the variant's name, or the number
/// when it is not a known variant.
struct EnumField<E>(i32, std::marker::PhantomData<E>);

fn enum_field<E>(value: i32) -> EnumField<E> {
    EnumField(value, std::marker::PhantomData)
}

impl<E: TryFrom<i32> + std::fmt::Debug> std::fmt::Debug for EnumField<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match E::try_from(self.0) {
            Ok(e) => e.fmt(f),
            Err(_) => self.0.fmt(f),
        }
    }
}

// `skip_debug` also drops the derived Debug of the enums nested in those messages: theirs is
// written here, as the derive writes it (the variant's name).

impl std::fmt::Debug for v1::replication_probe::Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "Unspecified",
            Self::Write => "Write",
            Self::Read => "Read",
            Self::Remove => "Remove",
        })
    }
}

impl std::fmt::Debug for v1::set_cache_configuration::Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "Unspecified",
            Self::NativePersistence => "NativePersistence",
            Self::Redis => "Redis",
        })
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

impl std::fmt::Debug for v1::ApplyLdapSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyLdapSchema")
            .field("schemas", &self.schemas)
            .field("check_only", &self.check_only)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("admin_password", &Redacted(self.admin_password.len()))
            .field("within_ms", &self.within_ms)
            .field("only_missing", &self.only_missing)
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
            .field("no_wait", &self.no_wait)
            .finish()
    }
}

impl std::fmt::Debug for v1::ConfigureRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigureRequest")
            .field("gluu_version", &self.gluu_version)
            .field("lb_hostname", &self.lb_hostname)
            .field("lb_ip", &self.lb_ip)
            .field("external_lb", &self.external_lb)
            .field("ldap_cache", &self.ldap_cache)
            .field("offline", &self.offline)
            .field("ldap_check_period", &self.ldap_check_period)
            .field("manage_hosts", &self.manage_hosts)
            .field("org", &self.org)
            .field("country", &self.country)
            .field("city", &self.city)
            .field("state", &self.state)
            .field("admin_email", &self.admin_email)
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
            .field("https_port", &self.https_port)
            .field("gluu_repo_url", &self.gluu_repo_url)
            .field("gluu_repo_suite", &self.gluu_repo_suite)
            .field(
                "gluu_repo_key",
                &self.gluu_repo_key.as_ref().map(String::len),
            )
            .field("components", &self.components)
            .field(
                "external_lb_health_wait_secs",
                &self.external_lb_health_wait_secs,
            )
            .finish()
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
            .field("sha256", &Redacted(self.sha256.len()))
            .field("size", &self.size)
            .field("content", &Redacted(self.content.len()))
            .finish()
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

impl v1::LogType {
    /// any | oxauth | oxtrust | httpd | ldap | redis | agent
    pub const fn label(self) -> &'static str {
        match self {
            Self::Unspecified => "any",
            Self::Oxauth => "oxauth",
            Self::Oxtrust => "oxtrust",
            Self::Httpd => "httpd",
            Self::Ldap => "ldap",
            Self::Redis => "redis",
            Self::Agent => "agent",
        }
    }
}

impl v1::MetricsRefusal {
    /// not_approved | batch_too_large | out_of_window | invalid | rate | series_cap
    pub const fn label(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::NotApproved => "not_approved",
            Self::BatchTooLarge => "batch_too_large",
            Self::OutOfWindow => "out_of_window",
            Self::Invalid => "invalid",
            Self::Rate => "rate",
            Self::SeriesCap => "series_cap",
        }
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
            .field("keep_accepting", &self.keep_accepting)
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
            .field(
                "provider",
                &enum_field::<v1::set_cache_configuration::Provider>(self.provider),
            )
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
            .field("no_wait", &self.no_wait)
            .finish()
    }
}

// --- Files read from a node: their content (and its digest) may be secret. ---

impl std::fmt::Debug for v1::ReadFileOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadFileOutput")
            .field("content", &Redacted(self.content.len()))
            .field("mode", &self.mode)
            .field("size", &self.size)
            .field("sha256", &Redacted(self.sha256.len()))
            .finish()
    }
}

impl std::fmt::Debug for v1::SubmitJobResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubmitJobResponse")
            .field("job", &self.job)
            .field("content", &Redacted(self.content.len()))
            .finish()
    }
}

// --- Gluu operations carry setup.properties, private keys and the directory's passwords. ---

impl std::fmt::Debug for v1::RunGluuSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunGluuSetup")
            .field("properties", &Redacted(self.properties.len()))
            .field("no_data", &self.no_data)
            .finish()
    }
}

impl std::fmt::Debug for v1::ReadSetupProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadSetupProperties")
            .field("password", &Redacted(self.password.len()))
            .finish()
    }
}

impl std::fmt::Debug for v1::ReadSetupPropertiesOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadSetupPropertiesOutput")
            .field("content", &Redacted(self.content.len()))
            .field("was_encrypted", &self.was_encrypted)
            .finish()
    }
}

impl std::fmt::Debug for v1::LdapsBind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapsBind")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("bind_dn", &self.bind_dn)
            .field("password", &Redacted(self.password.len()))
            .field("ca_pem", &self.ca_pem.len())
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

impl std::fmt::Debug for v1::SetOxAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetOxAuthConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("password", &Redacted(self.password.len()))
            .field("values", &self.values)
            .finish()
    }
}

impl std::fmt::Debug for v1::RenameGluuHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenameGluuHost")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("password", &Redacted(self.password.len()))
            .field("from", &self.from)
            .field("to", &self.to)
            .finish()
    }
}

impl std::fmt::Debug for v1::ConfigureReplication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigureReplication")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("server_id", &self.server_id)
            .field("peers", &self.peers)
            .field("bases", &self.bases)
            .field("replicator_dn", &self.replicator_dn)
            .field(
                "replicator_password",
                &Redacted(self.replicator_password.len()),
            )
            .field("admin_password", &Redacted(self.admin_password.len()))
            .field("ca_pem", &self.ca_pem.len())
            .field("primary", &self.primary)
            .field("admin_connectors", &self.admin_connectors.len())
            .field("admin_port", &self.admin_port)
            .finish()
    }
}

impl std::fmt::Debug for v1::ReplicationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationStatus")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("admin_password", &Redacted(self.admin_password.len()))
            .field("bases", &self.bases)
            .finish()
    }
}

impl std::fmt::Debug for v1::ReplicationProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationProbe")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("admin_password", &Redacted(self.admin_password.len()))
            .field("base", &self.base)
            .field("marker", &self.marker)
            .field(
                "action",
                &enum_field::<v1::replication_probe::Action>(self.action),
            )
            .field("within_ms", &self.within_ms)
            .field("also", &self.also)
            .finish()
    }
}

impl std::fmt::Debug for v1::SetLdapServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetLdapServers")
            .field("servers", &self.servers)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("admin_password", &Redacted(self.admin_password.len()))
            .finish()
    }
}

impl std::fmt::Debug for v1::RedisPing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPing")
            .field("port", &self.port)
            .field("password", &Redacted(self.password.len()))
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
        // A job carrying directory passwords: the passwords are hidden, the rest is shown.
        let replication = JobRequest {
            job_id: "j1".into(),
            timeout_ms: 1,
            operation: Some(Operation {
                kind: Some(operation::Kind::ConfigureReplication(
                    ConfigureReplication {
                        host: "ldap1.example.org".into(),
                        replicator_dn: "cn=replicator,o=gluu".into(),
                        replicator_password: b"SECRETSECRET".to_vec(),
                        admin_password: b"SECRETSECRET".to_vec(),
                        ..Default::default()
                    },
                )),
            }),
        };
        let s = format!("{replication:?}");
        assert!(!leaks(&s), "{s}");
        assert!(
            s.contains("ldap1.example.org") && s.contains("cn=replicator,o=gluu"),
            "{s}"
        );
        assert!(s.contains("<redacted, 12 bytes>"), "{s}");
    }

    /// "SECRETSECRET" as it shows in a Debug of bytes, of a string and of bytes as a list.
    fn leaks(s: &str) -> bool {
        let as_list = format!("{:?}", b"SECRETSECRET".to_vec());
        let as_list = &as_list[1..as_list.len() - 1];
        s.contains("SECRETSECRET") || s.contains(as_list)
    }

    #[test]
    fn operations_embedding_secrets_are_redacted() {
        let pw = || b"SECRETSECRET".to_vec();
        let job = |kind| JobRequest {
            job_id: "j1".into(),
            timeout_ms: 1,
            operation: Some(Operation { kind: Some(kind) }),
        };
        let probe = ReplicationProbe {
            admin_password: pw(),
            action: replication_probe::Action::Write as i32,
            ..Default::default()
        };
        let s = format!("{probe:?}");
        assert!(!leaks(&s) && s.contains("action: Write"), "{s}");

        let outputs = [
            format!(
                "{:?}",
                job(operation::Kind::Probe(Probe {
                    target: Some(probe::Target::Ldaps(LdapsBind {
                        host: "h".into(),
                        password: pw(),
                        ..Default::default()
                    })),
                    within_ms: 1,
                }))
            ),
            format!(
                "{:?}",
                job(operation::Kind::ReplicationStatus(ReplicationStatus {
                    admin_password: pw(),
                    ..Default::default()
                }))
            ),
            format!(
                "{:?}",
                job(operation::Kind::SetLdapServers(SetLdapServers {
                    admin_password: pw(),
                    ..Default::default()
                }))
            ),
            format!(
                "{:?}",
                job(operation::Kind::RunGluuSetup(RunGluuSetup {
                    properties: b"ldapPass=SECRETSECRET".to_vec(),
                    no_data: true,
                }))
            ),
            format!(
                "{:?}",
                job(operation::Kind::ReadSetupProperties(ReadSetupProperties {
                    password: pw()
                }))
            ),
            format!(
                "{:?}",
                job(operation::Kind::SetOxAuthConfig(SetOxAuthConfig {
                    password: pw(),
                    ..Default::default()
                }))
            ),
            format!(
                "{:?}",
                job(operation::Kind::RenameGluuHost(RenameGluuHost {
                    password: pw(),
                    ..Default::default()
                }))
            ),
            format!(
                "{:?}",
                job(operation::Kind::InstallGluuCertificates(
                    InstallGluuCertificates {
                        files: vec![CertificateFile {
                            path: "etc/certs/httpd.key".into(),
                            content: pw(),
                            ..Default::default()
                        }],
                        alias_prefix: "lb".into(),
                    }
                ))
            ),
            format!(
                "{:?}",
                HealthConfig {
                    period_ms: 1,
                    probes: vec![HealthProbe {
                        service: "redis".into(),
                        check: Some(health_probe::Check::Redis(RedisPing {
                            port: 1,
                            password: pw(),
                        })),
                    }],
                }
            ),
            format!(
                "{:?}",
                RedisPing {
                    port: 1,
                    password: pw(),
                }
            ),
        ];
        for s in outputs {
            assert!(!leaks(&s), "{s}");
        }
    }

    #[test]
    fn outputs_carrying_secrets_are_redacted() {
        let result = |output| JobResult {
            success: true,
            output: Some(OperationOutput { kind: Some(output) }),
            ..Default::default()
        };
        let outputs = [
            format!(
                "{:?}",
                result(operation_output::Kind::ReadSetupProperties(
                    ReadSetupPropertiesOutput {
                        content: b"ldapPass=SECRETSECRET".to_vec(),
                        was_encrypted: true,
                    }
                ))
            ),
            format!(
                "{:?}",
                result(operation_output::Kind::ReadGluuCertificates(
                    GluuCertificates {
                        files: vec![CertificateFile {
                            path: "etc/certs/httpd.key".into(),
                            content: b"SECRETSECRET".to_vec(),
                            ..Default::default()
                        }],
                    }
                ))
            ),
            format!(
                "{:?}",
                result(operation_output::Kind::ReadFile(ReadFileOutput {
                    content: b"SECRETSECRET".to_vec(),
                    sha256: "SECRETSECRET-digest".into(),
                    ..Default::default()
                }))
            ),
            format!(
                "{:?}",
                SubmitJobResponse {
                    job: None,
                    content: b"SECRETSECRET".to_vec(),
                }
            ),
        ];
        for s in outputs {
            assert!(!leaks(&s), "{s}");
            assert!(s.contains("redacted"), "{s}");
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
            .field("kind", &enum_field::<v1::KeystoreKind>(self.kind))
            .field("add", &self.add)
            .field("keep_kids", &self.keep_kids)
            .field("keystore_password", &Redacted(self.keystore_password.len()))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("password", &Redacted(self.password.len()))
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
