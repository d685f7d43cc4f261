//! Every kind has its own name, the exclusive set is the one below, and no summary shows a
//! secret the operation carries.

use super::*;
use crate::redact::tests::leaks;
use crate::v1::*;
use std::collections::BTreeSet;

/// One operation of every kind.
fn every_kind() -> Vec<operation::Kind> {
    use operation::Kind as K;
    vec![
        K::Ping(Default::default()),
        K::CollectFacts(Default::default()),
        K::ReadFile(Default::default()),
        K::WriteFile(Default::default()),
        K::InstallPackage(Default::default()),
        K::RunGluuSetup(Default::default()),
        K::GluuServices(Default::default()),
        K::ReadSetupProperties(Default::default()),
        K::Probe(Default::default()),
        K::ReceivePackage(Default::default()),
        K::Preflight(Default::default()),
        K::ReadGluuCertificates(Default::default()),
        K::InstallGluuCertificates(Default::default()),
        K::SetOxAuthConfig(Default::default()),
        K::RenameGluuHost(Default::default()),
        K::DirectoryInfo(Default::default()),
        K::ConfigureReplication(Default::default()),
        K::ReplicationStatus(Default::default()),
        K::ReplicationProbe(Default::default()),
        K::SetLdapServers(Default::default()),
        K::SetHosts(Default::default()),
        K::ConfigureNginx(Default::default()),
        K::NginxStatus(Default::default()),
        K::ProbeNginx(Default::default()),
        K::RemoveNginx(Default::default()),
        K::SetBackendRotation(Default::default()),
        K::ConfigureRedis(Default::default()),
        K::ConfigureStunnel(Default::default()),
        K::ConfigureNutcracker(Default::default()),
        K::CacheStatus(Default::default()),
        K::SetCacheConfiguration(Default::default()),
        K::SearchLogs(Default::default()),
        K::InstallHttpdCertificate(Default::default()),
        K::ReadServedCertificate(Default::default()),
        K::ApplyLdapSchema(Default::default()),
        K::VerifyLdapSchema(Default::default()),
        K::BackupNode(Default::default()),
        K::RestoreNode(Default::default()),
        K::UpdateOxauthKeystore(Default::default()),
        K::SetWebKeys(Default::default()),
        K::ProbeJwks(Default::default()),
        K::UpgradeAgent(Default::default()),
    ]
}

/// The part of `descriptor.proto` needed to count `Operation`'s fields.
mod descriptor {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FileSet {
        #[prost(message, repeated, tag = "1")]
        pub file: Vec<File>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct File {
        #[prost(string, tag = "2")]
        pub package: String,
        #[prost(message, repeated, tag = "4")]
        pub message_type: Vec<Message>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Message {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, repeated, tag = "2")]
        pub field: Vec<Field>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Field {
        #[prost(string, tag = "1")]
        pub name: String,
    }
}

/// The fields of `clustermgr.v1.Operation` (one per kind), as the proto files declare them.
fn declared_kinds() -> Vec<String> {
    let set: descriptor::FileSet = prost::Message::decode(crate::FILE_DESCRIPTOR_SET).unwrap();
    set.file
        .iter()
        .filter(|f| f.package == "clustermgr.v1")
        .flat_map(|f| &f.message_type)
        .filter(|m| m.name == "Operation")
        .flat_map(|m| m.field.iter().map(|f| f.name.clone()))
        .collect()
}

#[test]
fn every_kind_has_its_own_name() {
    let kinds = every_kind();
    assert_eq!(
        kinds.len(),
        declared_kinds().len(),
        "every_kind() lists one operation of each kind the proto files declare"
    );
    let names: BTreeSet<&str> = kinds.iter().map(|k| k.name().as_str()).collect();
    assert_eq!(names.len(), kinds.len(), "{names:?}");
    assert!(!names.contains(UNKNOWN));
    assert!(names.contains("gluu-setup") && names.contains("set-oxauth-config"));
    for k in &kinds {
        assert_eq!(k.name().to_string(), k.name().as_str());
    }
    assert_eq!(Operation { kind: None }.kind_name(), UNKNOWN);
    assert_eq!(Operation { kind: None }.summary(), UNKNOWN);
}

#[test]
fn the_exclusive_kinds_are_these() {
    let exclusive: BTreeSet<&str> = every_kind()
        .iter()
        .filter(|k| k.exclusive())
        .map(|k| k.name().as_str())
        .collect();
    let expected = BTreeSet::from([
        "install-package",
        "upgrade-agent",
        "gluu-setup",
        "gluu-services",
        "install-gluu-certificates",
        "install-httpd-certificate",
        "set-oxauth-config",
        "rename-gluu-host",
        "configure-replication",
        "set-ldap-servers",
        "configure-nginx",
        "remove-nginx",
        "update-oxauth-keystore",
        "set-web-keys",
        "restore-node",
    ]);
    assert_eq!(exclusive, expected);
    assert!(!OpName::SetBackendRotation.exclusive());
}

// Long: one table with a case per operation that carries a secret, all checked by one loop.
#[test]
fn summaries_never_show_a_secret() {
    use operation::Kind as K;
    let pw = || b"SECRETSECRET".to_vec();
    let text = || "SECRETSECRET".to_string();
    let cert = || CertificateFile {
        path: "etc/certs/httpd.key".into(),
        content: pw(),
        ..Default::default()
    };
    let kinds = [
        K::WriteFile(WriteFile {
            path: "/etc/x".into(),
            content: pw(),
            ..Default::default()
        }),
        K::RunGluuSetup(RunGluuSetup {
            properties: b"ldapPass=SECRETSECRET".to_vec(),
            no_data: true,
        }),
        K::ReadSetupProperties(ReadSetupProperties { password: pw() }),
        K::Probe(Probe {
            target: Some(probe::Target::Ldaps(LdapsBind {
                host: "h".into(),
                password: pw(),
                ..Default::default()
            })),
            within_ms: 1,
        }),
        K::InstallGluuCertificates(InstallGluuCertificates {
            files: vec![cert()],
            alias_prefix: "lb".into(),
        }),
        K::SetOxAuthConfig(SetOxAuthConfig {
            password: pw(),
            values: [("clientSecret".to_string(), text())].into(),
            ..Default::default()
        }),
        K::RenameGluuHost(RenameGluuHost {
            password: pw(),
            ..Default::default()
        }),
        K::ConfigureReplication(ConfigureReplication {
            replicator_password: pw(),
            admin_password: pw(),
            ..Default::default()
        }),
        K::ReplicationStatus(ReplicationStatus {
            admin_password: pw(),
            ..Default::default()
        }),
        K::ReplicationProbe(ReplicationProbe {
            admin_password: pw(),
            ..Default::default()
        }),
        K::SetLdapServers(SetLdapServers {
            admin_password: pw(),
            ..Default::default()
        }),
        K::ConfigureNginx(ConfigureNginx {
            key_pem: pw(),
            ..Default::default()
        }),
        K::ConfigureRedis(ConfigureRedis {
            password: pw(),
            ..Default::default()
        }),
        K::ConfigureNutcracker(ConfigureNutcracker {
            password: pw(),
            ..Default::default()
        }),
        K::CacheStatus(CacheStatus {
            password: pw(),
            ..Default::default()
        }),
        K::SetCacheConfiguration(SetCacheConfiguration {
            admin_password: pw(),
            redis_password: pw(),
            ..Default::default()
        }),
        K::SearchLogs(SearchLogs {
            grep: text(),
            ..Default::default()
        }),
        K::InstallHttpdCertificate(InstallHttpdCertificate {
            key_pem: pw(),
            key_sha256: text(),
            ..Default::default()
        }),
        K::ApplyLdapSchema(ApplyLdapSchema {
            admin_password: pw(),
            ..Default::default()
        }),
        K::VerifyLdapSchema(VerifyLdapSchema {
            admin_password: pw(),
            ..Default::default()
        }),
        K::UpdateOxauthKeystore(UpdateOxauthKeystore {
            add: vec![OxauthPrivateKey {
                kid: "k1".into(),
                pkcs8_pem: pw(),
                ..Default::default()
            }],
            keystore_password: pw(),
            password: pw(),
            ..Default::default()
        }),
        K::SetWebKeys(SetWebKeys {
            password: pw(),
            ..Default::default()
        }),
    ];
    for k in kinds {
        let s = k.summary();
        assert!(!leaks(&s), "{}: {s}", k.name());
        // The same operation's Debug shows where the secret was: the case does carry one.
        assert!(format!("{k:?}").contains("redacted") || k.name() == OpName::SearchLogs);
    }
}

#[test]
fn summaries_read_as_before() {
    use operation::Kind as K;
    let cases = [
        (
            K::WriteFile(WriteFile {
                path: "/etc/x".into(),
                content: vec![0; 3],
                mode: 0o600,
                ..Default::default()
            }),
            "write /etc/x (3 bytes, mode 600)",
        ),
        (
            K::SearchLogs(SearchLogs {
                types: vec![LogType::Oxauth as i32],
                grep: "hunter2".into(),
                since_unix_ms: 1,
                follow: true,
                ..Default::default()
            }),
            "search oxauth logs for a pattern since a time, following",
        ),
        (
            K::ConfigureRedis(ConfigureRedis {
                port: 6379,
                password: b"pw".to_vec(),
                ..Default::default()
            }),
            "configure redis-server on port 6379 (with a password)",
        ),
        (
            K::GluuServices(GluuServices {
                action: gluu_services::Action::Restart as i32,
                ..Default::default()
            }),
            "gluu-serverd restart",
        ),
    ];
    for (k, want) in cases {
        assert_eq!(k.summary(), want);
    }
}

#[test]
fn an_output_keeps_no_secret_once_taken() {
    let mut read = OperationOutput {
        kind: Some(operation_output::Kind::ReadFile(ReadFileOutput {
            content: b"SECRETSECRET".to_vec(),
            sha256: "digest".into(),
            size: 12,
            ..Default::default()
        })),
    };
    assert_eq!(read.take_secrets().as_deref(), Some(&b"SECRETSECRET"[..]));
    let Some(operation_output::Kind::ReadFile(r)) = &read.kind else {
        panic!("{read:?}");
    };
    assert!(r.content.is_empty() && r.sha256.is_empty() && r.size == 12);
    let files = GluuCertificates {
        files: vec![CertificateFile {
            path: "etc/certs/httpd.key".into(),
            content: b"SECRETSECRET".to_vec(),
            sha256: "digest".into(),
            ..Default::default()
        }],
    };
    let mut certs = OperationOutput {
        kind: Some(operation_output::Kind::ReadGluuCertificates(files.clone())),
    };
    let whole = certs.take_secrets().unwrap();
    assert_eq!(
        <GluuCertificates as prost::Message>::decode(&whole[..]).unwrap(),
        files
    );
    assert!(!leaks(&format!(
        "{:?}",
        prost::Message::encode_to_vec(&certs)
    )));
    let mut ping = OperationOutput {
        kind: Some(operation_output::Kind::Ping(Default::default())),
    };
    assert_eq!(ping.take_secrets(), None);
}
