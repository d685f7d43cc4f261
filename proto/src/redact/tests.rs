//! No Debug output of a message, an operation or an output shows a secret it carries.

use crate::*;

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
pub(crate) fn leaks(s: &str) -> bool {
    let as_list = format!("{:?}", b"SECRETSECRET".to_vec());
    let as_list = &as_list[1..as_list.len() - 1];
    s.contains("SECRETSECRET") || s.contains(as_list)
}

// Long: one table with a case per message that embeds a secret, all checked by the same loop.
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
