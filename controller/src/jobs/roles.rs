//! The one catalogue of who may run which operation through `job run` (the Operator service's
//! `SubmitJob`). Workflows submit their own jobs inside the controller and are not checked
//! here. Most kinds need role operator; those that read secrets, write secret-bearing files or
//! carry out a workflow's step without the checks the workflow makes need role admin. The match
//! is exhaustive: a new operation kind does not build until it is placed here.

use crate::auth::Role;
use clustermgr_proto::{Operation, operation::Kind};

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
    use Why::*;
    let Some(kind) = &op.kind else {
        return OPERATOR;
    };
    match kind {
        Kind::Ping(_)
        | Kind::CollectFacts(_)
        | Kind::Probe(_)
        | Kind::Preflight(_)
        | Kind::DirectoryInfo(_)
        | Kind::ReplicationStatus(_)
        | Kind::ReplicationProbe(_)
        | Kind::NginxStatus(_)
        | Kind::ProbeNginx(_)
        | Kind::CacheStatus(_)
        | Kind::ReadServedCertificate(_)
        | Kind::VerifyLdapSchema(_)
        | Kind::ProbeJwks(_)
        | Kind::SearchLogs(_)
        | Kind::GluuServices(_)
        | Kind::InstallPackage(_)
        | Kind::ReceivePackage(_) => OPERATOR,
        Kind::ReadFile(r) if holds_secrets(&r.path) => admin(ReadsSecrets),
        Kind::ReadFile(_) => OPERATOR,
        Kind::WriteFile(w) if holds_secrets(&w.path) => admin(WritesSecrets),
        Kind::WriteFile(_) => OPERATOR,
        Kind::ReadSetupProperties(_) | Kind::ReadGluuCertificates(_) => admin(ReadsSecrets),
        Kind::RunGluuSetup(_) | Kind::RenameGluuHost(_) => admin(SkipsWorkflow("gluu install")),
        Kind::InstallGluuCertificates(_) | Kind::InstallHttpdCertificate(_) => {
            admin(SkipsWorkflow("certs install"))
        }
        Kind::SetOxAuthConfig(_) => admin(SkipsWorkflow("gluu install")),
        Kind::ConfigureReplication(_) | Kind::SetLdapServers(_) => {
            admin(SkipsWorkflow("replication deploy"))
        }
        Kind::SetHosts(_) => admin(SkipsWorkflow("hosts apply")),
        Kind::ConfigureRedis(_)
        | Kind::ConfigureStunnel(_)
        | Kind::ConfigureNutcracker(_)
        | Kind::SetCacheConfiguration(_) => admin(SkipsWorkflow("cache install")),
        Kind::ConfigureNginx(_) | Kind::RemoveNginx(_) | Kind::SetBackendRotation(_) => {
            admin(SkipsWorkflow("lb install"))
        }
        Kind::ApplyLdapSchema(_) => admin(SkipsWorkflow("schema add")),
        Kind::UpdateOxauthKeystore(_) | Kind::SetWebKeys(_) => admin(SkipsWorkflow("keys rotate")),
        Kind::UpgradeAgent(_) => admin(SkipsWorkflow("agent upgrade")),
        // The archive (the node's keys and passwords) goes to the controller's backups.
        Kind::BackupNode(_) => admin(SkipsWorkflow("backup")),
        Kind::RestoreNode(_) => admin(SkipsWorkflow("backup restore")),
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
