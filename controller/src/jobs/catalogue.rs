//! The operation catalogue: each operation's kind and summary, and the secrets its output
//! must not keep.

use super::*;

pub mod cache;
pub mod logs;

pub fn kind_of(op: &Operation) -> (&'static str, String) {
    match &op.kind {
        Some(operation::Kind::Ping(_)) => ("ping", "ping".into()),
        Some(operation::Kind::CollectFacts(_)) => ("collect-facts", "collect facts".into()),
        Some(operation::Kind::ReadFile(r)) => ("read-file", format!("read {}", r.path)),
        Some(operation::Kind::WriteFile(w)) => (
            "write-file",
            format!(
                "write {} ({} bytes{})",
                w.path,
                w.content.len(),
                if w.mode == 0 {
                    String::new()
                } else {
                    format!(", mode {:o}", w.mode)
                }
            ),
        ),
        Some(operation::Kind::InstallPackage(r)) => (
            "install-package",
            match &r.source {
                Some(install_package::Source::CachedSha256(s)) => {
                    format!("install pushed package {s}")
                }
                Some(install_package::Source::Name(n)) => format!("install package {n}"),
                None => "install package (no source)".into(),
            },
        ),
        Some(operation::Kind::RunGluuSetup(r)) => (
            "gluu-setup",
            format!(
                "run Gluu setup{}",
                if r.no_data { " --no-data" } else { "" }
            ),
        ),
        Some(operation::Kind::GluuServices(r)) => (
            "gluu-services",
            format!(
                "gluu-serverd {}",
                r.action()
                    .as_str_name()
                    .trim_start_matches("ACTION_")
                    .to_ascii_lowercase()
            ),
        ),
        Some(operation::Kind::ReadSetupProperties(_)) => {
            ("read-setup-properties", "read setup.properties.last".into())
        }
        Some(operation::Kind::Probe(p)) => (
            "probe",
            match &p.target {
                Some(probe::Target::Ldaps(b)) => format!("probe LDAPS {}:{}", b.host, b.port),
                Some(probe::Target::Https(h)) => format!("probe {}", h.url),
                None => "probe (no target)".into(),
            },
        ),
        Some(operation::Kind::ReceivePackage(r)) => (
            "receive-package",
            format!("receive {} ({} bytes)", r.display_name, r.size),
        ),
        Some(operation::Kind::Preflight(p)) => (
            "preflight",
            format!("preflight: ports {:?} on {}", p.ports, p.address),
        ),
        Some(operation::Kind::ReadGluuCertificates(_)) => (
            "read-gluu-certificates",
            "read the Gluu certificate set".into(),
        ),
        Some(operation::Kind::InstallGluuCertificates(c)) => (
            "install-gluu-certificates",
            format!(
                "install {} certificate files (aliases {}_*)",
                c.files.len(),
                c.alias_prefix
            ),
        ),
        Some(operation::Kind::SetOxAuthConfig(c)) => (
            "set-oxauth-config",
            format!(
                "set oxAuth configuration {}",
                c.values.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ),
        Some(operation::Kind::RenameGluuHost(r)) => (
            "rename-gluu-host",
            format!("rename Gluu host {} to {}", r.from, r.to),
        ),
        Some(operation::Kind::DirectoryInfo(_)) => (
            "directory-info",
            "read the directory's kind and certificate".into(),
        ),
        Some(operation::Kind::ConfigureReplication(c)) => (
            "configure-replication",
            format!(
                "replicate {} as server {} with {}",
                c.bases.join(", "),
                c.server_id,
                if c.peers.is_empty() {
                    "no peer".to_string()
                } else {
                    c.peers
                        .iter()
                        .map(|p| format!("{}:{}", p.host, p.port))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        ),
        Some(operation::Kind::ReplicationStatus(r)) => (
            "replication-status",
            format!("replication status of {}", r.bases.join(", ")),
        ),
        Some(operation::Kind::ReplicationProbe(p)) => (
            "replication-probe",
            format!(
                "{} marker {} in {}",
                match p.action() {
                    clustermgr_proto::replication_probe::Action::Write => "write",
                    clustermgr_proto::replication_probe::Action::Read => "wait for",
                    clustermgr_proto::replication_probe::Action::Remove => "remove",
                    clustermgr_proto::replication_probe::Action::Unspecified => "probe",
                },
                p.marker,
                p.base
            ),
        ),
        Some(operation::Kind::SetHosts(h)) => (
            "set-hosts",
            format!(
                "write {} cluster host lines into /etc/hosts",
                h.entries.len()
            ),
        ),
        Some(operation::Kind::SetLdapServers(s)) => (
            "set-ldap-servers",
            format!("set the LDAP servers to {}", s.servers.join(",")),
        ),
        Some(operation::Kind::SearchLogs(s)) => (
            "search-logs",
            // The pattern is left out: an operator may search for a secret.
            logs::summary(s),
        ),
        Some(
            operation::Kind::ConfigureRedis(_)
            | operation::Kind::ConfigureStunnel(_)
            | operation::Kind::ConfigureNutcracker(_)
            | operation::Kind::CacheStatus(_)
            | operation::Kind::SetCacheConfiguration(_),
        ) => cache::kind_of(op),
        Some(operation::Kind::ConfigureNginx(c)) => (
            "configure-nginx",
            format!(
                "configure nginx for {} with {} backend(s)",
                c.server_name,
                c.backends.len()
            ),
        ),
        Some(operation::Kind::NginxStatus(_)) => ("nginx-status", "nginx status".into()),
        Some(operation::Kind::ProbeNginx(p)) => (
            "probe-nginx",
            format!("GET {} through the load balancer", p.path),
        ),
        Some(operation::Kind::RemoveNginx(_)) => (
            "remove-nginx",
            "stop nginx and remove the load balancer's configuration".into(),
        ),
        Some(operation::Kind::SetBackendRotation(r)) => (
            "set-backend-rotation",
            if r.in_rotation {
                format!("put {} back into the load balancer's rotation", r.name)
            } else {
                format!("take {} out of the load balancer's rotation", r.name)
            },
        ),
        Some(operation::Kind::InstallHttpdCertificate(c)) => (
            "install-httpd-certificate",
            format!(
                "install the web certificate (alias {}_httpd), restart, probe {}",
                c.alias_prefix, c.probe_url
            ),
        ),
        Some(operation::Kind::ReadServedCertificate(r)) => (
            "read-served-certificate",
            format!("read the certificate {} serves", r.address),
        ),
        Some(operation::Kind::ApplyLdapSchema(a)) => (
            "apply-ldap-schema",
            format!(
                "{} schema {} in the directory",
                if a.check_only { "check" } else { "install" },
                a.schemas
                    .iter()
                    .map(|s| format!("{:?} ({} elements)", s.name, s.elements.len()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Some(operation::Kind::VerifyLdapSchema(v)) => (
            "verify-ldap-schema",
            format!(
                "verify schema {:?} in the directory",
                v.schema.as_ref().map(|s| s.name.as_str()).unwrap_or("")
            ),
        ),
        Some(operation::Kind::UpdateOxauthKeystore(u)) => (
            "update-oxauth-keystore",
            format!(
                "oxAuth keystore: add {}{}",
                u.add
                    .iter()
                    .map(|k| k.kid.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if u.keep_kids.is_empty() {
                    String::new()
                } else {
                    format!("; keep only {}", u.keep_kids.join(", "))
                }
            ),
        ),
        Some(operation::Kind::SetWebKeys(w)) => (
            "set-web-keys",
            format!(
                "oxAuthConfWebKeys: add {} keys, keep {}, first {}",
                w.add_jwks.len(),
                w.keep_kids.join(", "),
                w.first_kids.join(", ")
            ),
        ),
        Some(operation::Kind::ProbeJwks(p)) => (
            "probe-jwks",
            format!("wait until {} serves {}", p.url, p.expect_kids.join(", ")),
        ),
        Some(operation::Kind::UpgradeAgent(u)) => (
            "upgrade-agent",
            format!(
                "upgrade clustermgr-agent to {} (pushed package {}; online within {} s or the previous package goes back)",
                u.version,
                u.sha256,
                u.online_within_ms / 1000
            ),
        ),
        Some(operation::Kind::BackupNode(b)) => (
            "backup-node",
            format!(
                "back up the directory and Gluu configuration as {}",
                b.backup_id
            ),
        ),
        Some(operation::Kind::RestoreNode(r)) => (
            "restore-node",
            format!(
                "restore backup {} ({} bytes) onto the stopped directory",
                r.backup_id, r.size
            ),
        ),
        None => ("unknown", "unknown".into()),
    }
}

/// Takes read-file content out of an output so it is never persisted (returned for the caller),
/// and drops its digest: a hash of a low-entropy secret file allows offline guessing.
pub(super) fn strip_secrets(output: &mut Option<OperationOutput>) -> Option<Vec<u8>> {
    match output.as_mut().and_then(|o| o.kind.as_mut()) {
        Some(operation_output::Kind::ReadFile(r)) => {
            r.sha256.clear();
            Some(std::mem::take(&mut r.content))
        }
        // setup.properties.last holds the cluster's passwords.
        Some(operation_output::Kind::ReadSetupProperties(r)) => {
            Some(std::mem::take(&mut r.content))
        }
        // Private keys and keystores: the caller gets them re-encoded, the record keeps names.
        Some(operation_output::Kind::ReadGluuCertificates(c)) => {
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
