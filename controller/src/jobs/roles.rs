//! The one catalogue of who may run which operation through `job run` (the Operator service's
//! `SubmitJob`). Workflows submit their own jobs inside the controller and are not checked
//! here. Most kinds need role operator; those that read secrets, write secret-bearing files or
//! carry out a workflow's step without the checks the workflow makes need role admin. The match
//! over the catalogue's names (`clustermgr_proto::OpName`) is exhaustive: a new operation kind
//! does not build until it is placed here.

use crate::auth::Role;
use clustermgr_proto::{OpName, Operation, operation::Kind};

/// Why a kind needs more than role operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Its output holds secrets (keys, passwords, setup.properties).
    ReadsSecrets,
    /// It replaces a file that holds keys or passwords.
    WritesSecrets,
    /// A workflow step run alone: the workflow's checks (certificate, schema, configuration
    /// validation, rolling restarts) are skipped. The workflow's command is named.
    SkipsWorkflow(&'static str),
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ReadsSecrets => f.write_str("reads secrets"),
            Self::WritesSecrets => f.write_str("writes a file holding secrets"),
            Self::SkipsWorkflow(w) => write!(f, "skips the checks of `clustermgr {w}`"),
        }
    }
}

/// The role an operation needs through `job run`, and why when it is more than operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub role: Role,
    pub why: Option<Why>,
}

const OPERATOR: Need = Need {
    role: Role::Operator,
    why: None,
};

const fn admin(why: Why) -> Need {
    Need {
        role: Role::Admin,
        why: Some(why),
    }
}

/// What running `op` through `job run` needs.
pub fn required(op: &Operation) -> Need {
    use OpName as N;
    use Why::*;
    let Some(kind) = &op.kind else {
        return OPERATOR;
    };
    match kind {
        Kind::ReadFile(r) if holds_secrets(&r.path) => return admin(ReadsSecrets),
        Kind::WriteFile(w) if holds_secrets(&w.path) => return admin(WritesSecrets),
        _ => {}
    }
    match kind.name() {
        N::Ping
        | N::CollectFacts
        | N::ReadFile
        | N::WriteFile
        | N::Probe
        | N::Preflight
        | N::DirectoryInfo
        | N::ReplicationStatus
        | N::ReplicationProbe
        | N::NginxStatus
        | N::ProbeNginx
        | N::CacheStatus
        | N::ReadServedCertificate
        | N::VerifyLdapSchema
        | N::ProbeJwks
        | N::SearchLogs
        | N::GluuServices
        | N::InstallPackage
        | N::ReceivePackage => OPERATOR,
        N::ReadSetupProperties | N::ReadGluuCertificates => admin(ReadsSecrets),
        N::RunGluuSetup | N::RenameGluuHost => admin(SkipsWorkflow("gluu install")),
        N::InstallGluuCertificates | N::InstallHttpdCertificate => {
            admin(SkipsWorkflow("certs install"))
        }
        N::SetOxAuthConfig => admin(SkipsWorkflow("gluu install")),
        N::ConfigureReplication | N::SetLdapServers => admin(SkipsWorkflow("replication deploy")),
        N::SetHosts => admin(SkipsWorkflow("hosts apply")),
        N::ConfigureRedis
        | N::ConfigureStunnel
        | N::ConfigureNutcracker
        | N::SetCacheConfiguration => admin(SkipsWorkflow("cache install")),
        N::ConfigureNginx | N::RemoveNginx | N::SetBackendRotation => {
            admin(SkipsWorkflow("lb install"))
        }
        N::ApplyLdapSchema => admin(SkipsWorkflow("schema add")),
        N::UpdateOxauthKeystore | N::SetWebKeys => admin(SkipsWorkflow("keys rotate")),
        N::UpgradeAgent => admin(SkipsWorkflow("agent upgrade")),
        // The archive (the node's keys and passwords) goes to the controller's backups.
        N::BackupNode => admin(SkipsWorkflow("backup")),
        N::RestoreNode => admin(SkipsWorkflow("backup restore")),
    }
}

/// The audit detail's note for a kind that needs role admin, e.g. ` [admin: reads secrets]`.
pub fn note(op: &Operation) -> String {
    match required(op).why {
        Some(why) => format!(" [admin: {why}]"),
        None => String::new(),
    }
}

/// Whether a managed path's file holds keys or passwords, by its name: key stores and private
/// keys, the Gluu files holding the directory's bind password or the salt that decodes it,
/// setup.properties, and anything named like a key, password or secret.
pub fn holds_secrets(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    const EXTENSIONS: &[&str] = &[
        ".key",
        ".pem",
        ".jks",
        ".p12",
        ".pkcs12",
        ".pfx",
        ".keystore",
        ".bcfks",
        ".psk",
    ];
    const WORDS: &[&str] = &["key", "pass", "pw", "secret", "salt", "token", "cred"];
    const FILES: &[&str] = &[
        "setup.properties",
        "setup.properties.last",
        "gluu-ldap.properties",
        "ox-ldap.properties",
        "gluu-couchbase.properties",
        "gluu-sql.properties",
        "gluu-spanner.properties",
        "redis.conf",
        "nutcracker.yml",
        "shadow",
        "gshadow",
    ];
    EXTENSIONS.iter().any(|e| name.ends_with(e))
        || WORDS.iter().any(|w| name.contains(w))
        || FILES.contains(&name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clustermgr_proto::{Ping, ReadFile, ReadSetupProperties, WriteFile};

    fn op(kind: Kind) -> Operation {
        Operation { kind: Some(kind) }
    }

    #[test]
    fn secret_reads_and_writes_need_admin_and_say_why() {
        let read = |p: &str| required(&op(Kind::ReadFile(ReadFile { path: p.into() })));
        assert_eq!(
            read("/opt/gluu-server/etc/certs/httpd.key"),
            admin(Why::ReadsSecrets)
        );
        assert_eq!(
            read("/etc/gluu/conf/gluu-ldap.properties"),
            admin(Why::ReadsSecrets)
        );
        assert_eq!(read("/etc/gluu/conf/salt").role, Role::Admin);
        assert_eq!(read("/etc/certs/oxauth-keys.JKS").role, Role::Admin);
        assert_eq!(read("/etc/gluu/conf/gluu.properties"), OPERATOR);
        assert_eq!(read("/etc/certs/httpd.crt"), OPERATOR);
        let write = required(&op(Kind::WriteFile(WriteFile {
            path: "/etc/certs/httpd.key".into(),
            ..Default::default()
        })));
        assert_eq!(write, admin(Why::WritesSecrets));
        let props = op(Kind::ReadSetupProperties(ReadSetupProperties::default()));
        assert_eq!(required(&props).role, Role::Admin);
        assert_eq!(note(&props), " [admin: reads secrets]");
        let ping = op(Kind::Ping(Ping::default()));
        assert_eq!(required(&ping), OPERATOR);
        assert_eq!(note(&ping), "");
    }
}
