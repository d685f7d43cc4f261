//! The operation catalogue: what the controller and the agent know of each operation kind.
//!
//! * its name ([`OpName`]): the word job records store and users see (never changed: records
//!   keep it);
//! * whether it takes the node's exclusive lock ([`OpName::exclusive`]): operations that must
//!   not overlap on a node (packages, Gluu setup and services, certificates, oxAuth and
//!   directory configuration, host rename, nginx, keys, restore);
//! * its summary ([`operation::Kind::summary`], written per family in the submodules): one
//!   line for the job record, never holding a secret the operation carries;
//! * its secrets: the Debug of every operation and output hides them (`redact`), and
//!   [`OperationOutput::take_secrets`] takes out what an output must not keep once stored.
//!
//! A new operation kind does not build until [`operation::Kind::name`] names it, and its name
//! until [`OpName`]'s table gives its word and lock.

use crate::v1::{OperationOutput, operation, operation_output};

mod cache;
mod directory;
mod gluu;
mod lb;
mod node;

#[cfg(test)]
mod tests;

/// The name of an operation kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpName {
    Ping,
    CollectFacts,
    ReadFile,
    WriteFile,
    InstallPackage,
    RunGluuSetup,
    GluuServices,
    ReadSetupProperties,
    Probe,
    ReceivePackage,
    Preflight,
    ReadGluuCertificates,
    InstallGluuCertificates,
    SetOxAuthConfig,
    RenameGluuHost,
    DirectoryInfo,
    ConfigureReplication,
    ReplicationStatus,
    ReplicationProbe,
    SetLdapServers,
    SetHosts,
    ConfigureNginx,
    NginxStatus,
    ProbeNginx,
    RemoveNginx,
    SetBackendRotation,
    ConfigureRedis,
    ConfigureStunnel,
    ConfigureNutcracker,
    CacheStatus,
    SetCacheConfiguration,
    SearchLogs,
    InstallHttpdCertificate,
    ReadServedCertificate,
    ApplyLdapSchema,
    VerifyLdapSchema,
    BackupNode,
    RestoreNode,
    UpdateOxauthKeystore,
    SetWebKeys,
    ProbeJwks,
    UpgradeAgent,
}

/// Whether an operation kind takes the node's exclusive lock while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lock {
    /// One at a time on a node: a job of such a kind waits for the one holding the lock.
    Exclusive,
    /// Runs beside any other job.
    Shared,
}

/// The name a job record stores for an operation this build does not know.
pub const UNKNOWN: &str = "unknown";

impl OpName {
    /// The catalogue's table: each kind's word and lock. `set-backend-rotation` is shared: a
    /// rejoin waits minutes for its node, and the load balancer's own lock orders it with
    /// `configure-nginx` (the agent's `ops::nginx::lock`).
    const fn entry(self) -> (&'static str, Lock) {
        use Lock::{Exclusive as X, Shared as S};
        match self {
            Self::Ping => ("ping", S),
            Self::CollectFacts => ("collect-facts", S),
            Self::ReadFile => ("read-file", S),
            Self::WriteFile => ("write-file", S),
            Self::InstallPackage => ("install-package", X),
            Self::RunGluuSetup => ("gluu-setup", X),
            Self::GluuServices => ("gluu-services", X),
            Self::ReadSetupProperties => ("read-setup-properties", S),
            Self::Probe => ("probe", S),
            Self::ReceivePackage => ("receive-package", S),
            Self::Preflight => ("preflight", S),
            Self::ReadGluuCertificates => ("read-gluu-certificates", S),
            Self::InstallGluuCertificates => ("install-gluu-certificates", X),
            Self::SetOxAuthConfig => ("set-oxauth-config", X),
            Self::RenameGluuHost => ("rename-gluu-host", X),
            Self::DirectoryInfo => ("directory-info", S),
            Self::ConfigureReplication => ("configure-replication", X),
            Self::ReplicationStatus => ("replication-status", S),
            Self::ReplicationProbe => ("replication-probe", S),
            Self::SetLdapServers => ("set-ldap-servers", X),
            Self::SetHosts => ("set-hosts", S),
            Self::ConfigureNginx => ("configure-nginx", X),
            Self::NginxStatus => ("nginx-status", S),
            Self::ProbeNginx => ("probe-nginx", S),
            Self::RemoveNginx => ("remove-nginx", X),
            Self::SetBackendRotation => ("set-backend-rotation", S),
            Self::ConfigureRedis => ("configure-redis", S),
            Self::ConfigureStunnel => ("configure-stunnel", S),
            Self::ConfigureNutcracker => ("configure-nutcracker", S),
            Self::CacheStatus => ("cache-status", S),
            Self::SetCacheConfiguration => ("set-cache-configuration", S),
            Self::SearchLogs => ("search-logs", S),
            Self::InstallHttpdCertificate => ("install-httpd-certificate", X),
            Self::ReadServedCertificate => ("read-served-certificate", S),
            Self::ApplyLdapSchema => ("apply-ldap-schema", S),
            Self::VerifyLdapSchema => ("verify-ldap-schema", S),
            Self::BackupNode => ("backup-node", S),
            Self::RestoreNode => ("restore-node", X),
            Self::UpdateOxauthKeystore => ("update-oxauth-keystore", X),
            Self::SetWebKeys => ("set-web-keys", X),
            Self::ProbeJwks => ("probe-jwks", S),
            Self::UpgradeAgent => ("upgrade-agent", X),
        }
    }

    /// The word job records store for the kind.
    pub const fn as_str(self) -> &'static str {
        self.entry().0
    }

    /// Whether jobs of this kind take the node's exclusive lock.
    pub const fn exclusive(self) -> bool {
        matches!(self.entry().1, Lock::Exclusive)
    }
}

impl std::fmt::Display for OpName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl operation::Kind {
    /// The kind's name.
    pub fn name(&self) -> OpName {
        use operation::Kind as K;
        match self {
            K::Ping(_) => OpName::Ping,
            K::CollectFacts(_) => OpName::CollectFacts,
            K::ReadFile(_) => OpName::ReadFile,
            K::WriteFile(_) => OpName::WriteFile,
            K::InstallPackage(_) => OpName::InstallPackage,
            K::RunGluuSetup(_) => OpName::RunGluuSetup,
            K::GluuServices(_) => OpName::GluuServices,
            K::ReadSetupProperties(_) => OpName::ReadSetupProperties,
            K::Probe(_) => OpName::Probe,
            K::ReceivePackage(_) => OpName::ReceivePackage,
            K::Preflight(_) => OpName::Preflight,
            K::ReadGluuCertificates(_) => OpName::ReadGluuCertificates,
            K::InstallGluuCertificates(_) => OpName::InstallGluuCertificates,
            K::SetOxAuthConfig(_) => OpName::SetOxAuthConfig,
            K::RenameGluuHost(_) => OpName::RenameGluuHost,
            K::DirectoryInfo(_) => OpName::DirectoryInfo,
            K::ConfigureReplication(_) => OpName::ConfigureReplication,
            K::ReplicationStatus(_) => OpName::ReplicationStatus,
            K::ReplicationProbe(_) => OpName::ReplicationProbe,
            K::SetLdapServers(_) => OpName::SetLdapServers,
            K::SetHosts(_) => OpName::SetHosts,
            K::ConfigureNginx(_) => OpName::ConfigureNginx,
            K::NginxStatus(_) => OpName::NginxStatus,
            K::ProbeNginx(_) => OpName::ProbeNginx,
            K::RemoveNginx(_) => OpName::RemoveNginx,
            K::SetBackendRotation(_) => OpName::SetBackendRotation,
            K::ConfigureRedis(_) => OpName::ConfigureRedis,
            K::ConfigureStunnel(_) => OpName::ConfigureStunnel,
            K::ConfigureNutcracker(_) => OpName::ConfigureNutcracker,
            K::CacheStatus(_) => OpName::CacheStatus,
            K::SetCacheConfiguration(_) => OpName::SetCacheConfiguration,
            K::SearchLogs(_) => OpName::SearchLogs,
            K::InstallHttpdCertificate(_) => OpName::InstallHttpdCertificate,
            K::ReadServedCertificate(_) => OpName::ReadServedCertificate,
            K::ApplyLdapSchema(_) => OpName::ApplyLdapSchema,
            K::VerifyLdapSchema(_) => OpName::VerifyLdapSchema,
            K::BackupNode(_) => OpName::BackupNode,
            K::RestoreNode(_) => OpName::RestoreNode,
            K::UpdateOxauthKeystore(_) => OpName::UpdateOxauthKeystore,
            K::SetWebKeys(_) => OpName::SetWebKeys,
            K::ProbeJwks(_) => OpName::ProbeJwks,
            K::UpgradeAgent(_) => OpName::UpgradeAgent,
        }
    }

    /// The job record's one-line summary (never a secret the operation carries).
    pub fn summary(&self) -> String {
        use operation::Kind as K;
        match self {
            K::Ping(_) => "ping".into(),
            K::CollectFacts(_) => "collect facts".into(),
            K::ReadFile(r) => format!("read {}", r.path),
            K::WriteFile(w) => node::write_file(w),
            K::InstallPackage(p) => node::install_package(p),
            K::ReceivePackage(r) => format!("receive {} ({} bytes)", r.display_name, r.size),
            K::UpgradeAgent(u) => node::upgrade_agent(u),
            K::Preflight(p) => format!("preflight: ports {:?} on {}", p.ports, p.address),
            K::Probe(p) => node::probe(p),
            K::SetHosts(h) => node::set_hosts(h),
            K::SearchLogs(s) => node::search_logs(s),
            K::BackupNode(b) => node::backup(b),
            K::RestoreNode(r) => node::restore(r),
            K::RunGluuSetup(r) => gluu::setup(r),
            K::GluuServices(r) => gluu::services(r),
            K::ReadSetupProperties(_) => "read setup.properties.last".into(),
            K::ReadGluuCertificates(_) => "read the Gluu certificate set".into(),
            K::InstallGluuCertificates(c) => gluu::install_certificates(c),
            K::SetOxAuthConfig(c) => gluu::set_oxauth_config(c),
            K::RenameGluuHost(r) => format!("rename Gluu host {} to {}", r.from, r.to),
            K::UpdateOxauthKeystore(u) => gluu::update_keystore(u),
            K::SetWebKeys(w) => gluu::set_web_keys(w),
            K::ProbeJwks(p) => gluu::probe_jwks(p),
            K::DirectoryInfo(_) => "read the directory's kind and certificate".into(),
            K::ConfigureReplication(c) => directory::configure_replication(c),
            K::ReplicationStatus(r) => format!("replication status of {}", r.bases.join(", ")),
            K::ReplicationProbe(p) => directory::replication_probe(p),
            K::SetLdapServers(s) => format!("set the LDAP servers to {}", s.servers.join(",")),
            K::ApplyLdapSchema(a) => directory::apply_schema(a),
            K::VerifyLdapSchema(v) => directory::verify_schema(v),
            K::ConfigureRedis(r) => cache::configure_redis(r),
            K::ConfigureStunnel(s) => cache::configure_stunnel(s),
            K::ConfigureNutcracker(n) => cache::configure_nutcracker(n),
            K::CacheStatus(c) => cache::status(c),
            K::SetCacheConfiguration(c) => cache::set_configuration(c),
            K::ConfigureNginx(c) => lb::configure_nginx(c),
            K::NginxStatus(_) => "nginx status".into(),
            K::ProbeNginx(p) => format!("GET {} through the load balancer", p.path),
            K::RemoveNginx(_) => "stop nginx and remove the load balancer's configuration".into(),
            K::SetBackendRotation(r) => lb::set_backend_rotation(r),
            K::InstallHttpdCertificate(c) => lb::install_httpd_certificate(c),
            K::ReadServedCertificate(r) => format!("read the certificate {} serves", r.address),
        }
    }

    /// Whether jobs of this kind take the node's exclusive lock.
    pub fn exclusive(&self) -> bool {
        self.name().exclusive()
    }
}

impl crate::v1::Operation {
    /// The name a job record stores: the kind's, or [`UNKNOWN`].
    pub fn kind_name(&self) -> &'static str {
        self.kind.as_ref().map_or(UNKNOWN, |k| k.name().as_str())
    }

    /// The job record's summary: the kind's, or [`UNKNOWN`].
    pub fn summary(&self) -> String {
        self.kind
            .as_ref()
            .map_or_else(|| UNKNOWN.into(), operation::Kind::summary)
    }
}

impl OperationOutput {
    /// Takes out what a stored output must not keep and returns it for the caller alone:
    /// read-file content (and its digest is dropped: a hash of a low-entropy secret file allows
    /// offline guessing), setup.properties.last (it holds the cluster's passwords), and the
    /// Gluu certificate set's private keys and keystores (returned whole, encoded; the record
    /// keeps the file names). None for the other kinds.
    pub fn take_secrets(&mut self) -> Option<Vec<u8>> {
        match self.kind.as_mut()? {
            operation_output::Kind::ReadFile(r) => {
                r.sha256.clear();
                Some(std::mem::take(&mut r.content))
            }
            operation_output::Kind::ReadSetupProperties(r) => Some(std::mem::take(&mut r.content)),
            operation_output::Kind::ReadGluuCertificates(c) => {
                let whole = prost::Message::encode_to_vec(&*c);
                for f in &mut c.files {
                    f.content.clear();
                    f.sha256.clear();
                }
                Some(whole)
            }
            _ => None,
        }
    }
}
