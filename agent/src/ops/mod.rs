//! Typed operations. Each operation kind is one function; the commands an operation runs are
//! fixed in its module, with argv built in code (through the host seam) and exit codes checked.

pub mod backup;
pub mod cache;
pub mod certs;
pub mod daemon;
pub mod files;
pub mod gluu;
pub mod hosts;
pub mod ids;
pub mod keys;
pub mod ldap;
pub mod logs;
pub mod nginx;
pub mod packages;
pub mod preflight;
pub mod probe;
pub mod push;
pub mod replication;
pub mod schema;
pub mod tls_certs;
pub mod upgrade;

use crate::facts::{self, HostView};
use crate::host::{Command, Host, Output};
use clustermgr_proto::{
    JobResult, Operation, OperationOutput, PingOutput, operation, operation_output,
};
use clustermgr_shared::util::now_ms;
use std::path::PathBuf;
use tokio::sync::mpsc;

/// What operations may touch on this host.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub view: HostView,
    pub managed: Vec<String>,
    pub host: Host,
    /// The session's connection to the controller (for a pushed package's transfer); None
    /// where no session runs (tests).
    pub channel: Option<tonic::transport::Channel>,
}

impl Ctx {
    pub fn root(&self) -> &PathBuf {
        &self.view.root
    }
}

/// Sends numbered log lines for one job. Secrets registered with [`Log::secret`] are replaced
/// by `***` in every line, whatever program printed them.
pub struct Log {
    seq: u64,
    tx: mpsc::UnboundedSender<(u64, String)>,
    secrets: Vec<clustermgr_shared::Secret<String>>,
    exit_code: Option<i32>,
}

impl Log {
    pub fn new(tx: mpsc::UnboundedSender<(u64, String)>) -> Self {
        Self {
            seq: 0,
            tx,
            secrets: Vec::new(),
            exit_code: None,
        }
    }
    pub fn line(&mut self, s: impl Into<String>) {
        let mut s = s.into();
        for secret in &self.secrets {
            if s.contains(secret.expose().as_str()) {
                s = s.replace(secret.expose().as_str(), "***");
            }
        }
        self.seq += 1;
        let _ = self.tx.send((self.seq, s));
    }
    /// Keeps `value` out of every later line (values shorter than 4 characters are ignored:
    /// masking them would garble ordinary output and hide nothing).
    pub fn secret(&mut self, value: &str) {
        if value.len() >= 4 {
            self.secrets
                .push(clustermgr_shared::Secret::new(value.to_string()));
        }
    }
    /// Records the exit code of a command the operation ran (for the job result).
    pub fn exit_code(&mut self, code: i32) {
        self.exit_code = Some(code);
    }
    pub fn take_exit_code(&mut self) -> Option<i32> {
        self.exit_code.take()
    }
}

/// Runs one command for an operation and logs its argv, nothing of its output (which may hold
/// secrets, e.g. decrypted properties); the caller decides what the exit code means.
pub async fn run_logged(
    host: &Host,
    cmd: &Command,
    log: &mut Log,
    what: &str,
) -> Result<Output, OpError> {
    log.line(format!("$ {}", cmd.display()));
    host.runner
        .run(cmd)
        .await
        .map_err(|e| OpError(format!("{what}: {e}")))
}

/// Runs one command for an operation: logs its argv and the tail of its output, records its exit
/// code, and fails with the exit code and the output's tail unless it exits 0.
pub async fn run_checked(
    host: &Host,
    cmd: &Command,
    log: &mut Log,
    what: &str,
) -> Result<Output, OpError> {
    let out = run_logged(host, cmd, log, what).await?;
    for l in out.tail(40) {
        log.line(l);
    }
    let code = out.code.unwrap_or(-1);
    log.exit_code(code);
    if out.success() {
        return Ok(out);
    }
    let tail: Vec<String> = out.tail(10);
    let mut msg = format!(
        "{what} failed (exit code {}): {}",
        out.code
            .map_or("none: killed by a signal".into(), |c| c.to_string()),
        tail.join(" | ")
    );
    // The error lands in the job record: keep registered secrets out of it too.
    for secret in &log.secrets {
        msg = msg.replace(secret.expose().as_str(), "***");
    }
    Err(OpError(msg))
}

/// Operation failure: a message for the job record (never holds file contents or secrets).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OpError(pub String);

impl From<clustermgr_shared::paths::PathError> for OpError {
    fn from(e: clustermgr_shared::paths::PathError) -> Self {
        OpError(e.to_string())
    }
}

pub async fn run(ctx: &Ctx, op: Operation, log: &mut Log) -> JobResult {
    let out = match op.kind {
        Some(operation::Kind::Ping(p)) => {
            log.line("pong");
            Ok(operation_output::Kind::Ping(PingOutput {
                payload: p.payload,
                agent_unix_ms: now_ms(),
            }))
        }
        Some(operation::Kind::CollectFacts(_)) => {
            let inv = facts::inventory(&ctx.view);
            log.line(format!(
                "collected facts: {} {} {}",
                inv.hostname, inv.os_id, inv.os_version
            ));
            Ok(operation_output::Kind::Facts(inv))
        }
        Some(operation::Kind::ReadFile(r)) => files::read(ctx, &r.path, log)
            .await
            .map(operation_output::Kind::ReadFile),
        Some(operation::Kind::WriteFile(w)) => files::write(ctx, w, log)
            .await
            .map(operation_output::Kind::WriteFile),
        Some(operation::Kind::InstallPackage(r)) => packages::install(ctx, r, log)
            .await
            .map(operation_output::Kind::InstallPackage),
        Some(operation::Kind::RunGluuSetup(r)) => gluu::setup(ctx, r, log)
            .await
            .map(operation_output::Kind::RunGluuSetup),
        Some(operation::Kind::GluuServices(r)) => gluu::services(ctx, r, log)
            .await
            .map(operation_output::Kind::GluuServices),
        Some(operation::Kind::ReadSetupProperties(r)) => gluu::read_setup_properties(ctx, r, log)
            .await
            .map(operation_output::Kind::ReadSetupProperties),
        Some(operation::Kind::Probe(r)) => probe::run(ctx, r, log)
            .await
            .map(operation_output::Kind::Probe),
        Some(operation::Kind::ReceivePackage(r)) => push::receive(ctx, r, log)
            .await
            .map(operation_output::Kind::ReceivePackage),
        Some(operation::Kind::UpgradeAgent(r)) => upgrade::upgrade(ctx, r, log)
            .await
            .map(operation_output::Kind::UpgradeAgent),
        Some(operation::Kind::Preflight(r)) => preflight::run(ctx, r, log)
            .await
            .map(operation_output::Kind::Preflight),
        Some(operation::Kind::ReadGluuCertificates(r)) => certs::read(ctx, r, log)
            .await
            .map(operation_output::Kind::ReadGluuCertificates),
        Some(operation::Kind::InstallGluuCertificates(r)) => certs::install(ctx, r, log)
            .await
            .map(operation_output::Kind::InstallGluuCertificates),
        Some(operation::Kind::SetOxAuthConfig(r)) => ldap::set_oxauth_config(ctx, r, log)
            .await
            .map(operation_output::Kind::SetOxAuthConfig),
        Some(operation::Kind::RenameGluuHost(r)) => ldap::rename_host(ctx, r, log)
            .await
            .map(operation_output::Kind::RenameGluuHost),
        Some(operation::Kind::DirectoryInfo(r)) => replication::directory_info(ctx, r, log)
            .await
            .map(operation_output::Kind::DirectoryInfo),
        Some(operation::Kind::ConfigureReplication(r)) => replication::configure(ctx, r, log)
            .await
            .map(operation_output::Kind::ConfigureReplication),
        Some(operation::Kind::ReplicationStatus(r)) => replication::status(ctx, r, log)
            .await
            .map(operation_output::Kind::ReplicationStatus),
        Some(operation::Kind::ReplicationProbe(r)) => replication::probe(ctx, r, log)
            .await
            .map(operation_output::Kind::ReplicationProbe),
        Some(operation::Kind::SetLdapServers(r)) => replication::set_ldap_servers(ctx, r, log)
            .await
            .map(operation_output::Kind::SetLdapServers),
        Some(operation::Kind::SetHosts(r)) => hosts::set(ctx, r, log)
            .await
            .map(operation_output::Kind::SetHosts),
        Some(operation::Kind::SearchLogs(r)) => logs::search(ctx, r, log)
            .await
            .map(operation_output::Kind::SearchLogs),
        Some(operation::Kind::ConfigureRedis(r)) => cache::configure_redis(ctx, r, log)
            .await
            .map(operation_output::Kind::ConfigureRedis),
        Some(operation::Kind::ConfigureStunnel(r)) => cache::configure_stunnel(ctx, r, log)
            .await
            .map(operation_output::Kind::ConfigureStunnel),
        Some(operation::Kind::ConfigureNutcracker(r)) => cache::configure_nutcracker(ctx, r, log)
            .await
            .map(operation_output::Kind::ConfigureNutcracker),
        Some(operation::Kind::CacheStatus(r)) => cache::status(ctx, r, log)
            .await
            .map(operation_output::Kind::CacheStatus),
        Some(operation::Kind::SetCacheConfiguration(r)) => {
            cache::set_cache_configuration(ctx, r, log)
                .await
                .map(operation_output::Kind::SetCacheConfiguration)
        }
        Some(operation::Kind::ConfigureNginx(r)) => nginx::configure(ctx, r, log)
            .await
            .map(operation_output::Kind::ConfigureNginx),
        Some(operation::Kind::NginxStatus(r)) => nginx::status(ctx, r, log)
            .await
            .map(operation_output::Kind::NginxStatus),
        Some(operation::Kind::ProbeNginx(r)) => nginx::probe(ctx, r, log)
            .await
            .map(operation_output::Kind::ProbeNginx),
        Some(operation::Kind::RemoveNginx(r)) => nginx::remove(ctx, r, log)
            .await
            .map(operation_output::Kind::RemoveNginx),
        Some(operation::Kind::SetBackendRotation(r)) => nginx::set_backend_rotation(ctx, r, log)
            .await
            .map(operation_output::Kind::SetBackendRotation),
        Some(operation::Kind::InstallHttpdCertificate(r)) => tls_certs::install(ctx, r, log)
            .await
            .map(operation_output::Kind::InstallHttpdCertificate),
        Some(operation::Kind::ApplyLdapSchema(r)) => schema::apply(ctx, r, log)
            .await
            .map(operation_output::Kind::ApplyLdapSchema),
        Some(operation::Kind::VerifyLdapSchema(r)) => schema::verify(ctx, r, log)
            .await
            .map(operation_output::Kind::VerifyLdapSchema),
        Some(operation::Kind::ReadServedCertificate(r)) => tls_certs::read_served(ctx, r, log)
            .await
            .map(operation_output::Kind::ReadServedCertificate),
        Some(operation::Kind::UpdateOxauthKeystore(r)) => keys::update_keystore(ctx, r, log)
            .await
            .map(operation_output::Kind::UpdateOxauthKeystore),
        Some(operation::Kind::SetWebKeys(r)) => keys::set_web_keys(ctx, r, log)
            .await
            .map(operation_output::Kind::SetWebKeys),
        Some(operation::Kind::ProbeJwks(r)) => keys::probe_jwks(ctx, r, log)
            .await
            .map(operation_output::Kind::ProbeJwks),
        Some(operation::Kind::BackupNode(r)) => backup::backup(ctx, r, log)
            .await
            .map(operation_output::Kind::BackupNode),
        Some(operation::Kind::RestoreNode(r)) => backup::restore(ctx, r, log)
            .await
            .map(operation_output::Kind::RestoreNode),
        None => Err(OpError(
            "this agent does not know the requested operation kind (upgrade the agent?)".into(),
        )),
    };
    let exit_code = log.take_exit_code().unwrap_or(0);
    match out {
        Ok(kind) => JobResult {
            success: true,
            exit_code,
            error: String::new(),
            output: Some(OperationOutput { kind: Some(kind) }),
        },
        Err(e) => {
            log.line(format!("error: {e}"));
            JobResult {
                success: false,
                exit_code,
                error: e.0,
                output: None,
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn ctx_with(host: Host) -> Ctx {
        Ctx {
            view: HostView {
                root: host.root.clone(),
                hostname: None,
                address: None,
            },
            managed: clustermgr_shared::paths::DEFAULT_MANAGED
                .iter()
                .map(|s| s.to_string())
                .collect(),
            host,
            channel: None,
        }
    }

    pub fn log() -> (Log, mpsc::UnboundedReceiver<(u64, String)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Log::new(tx), rx)
    }

    /// A test's prerequisite is missing: a failure under `CI=true` (where `scripts/test`
    /// installs everything and runs as root), else a skip said on stderr. The caller returns.
    pub fn missing_prerequisite(what: &str) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{what}: every prerequisite must be present under CI=true"
        );
        eprintln!("SKIPPED: {what}");
    }

    #[test]
    fn registered_secrets_never_reach_a_line() {
        let (mut l, mut rx) = log();
        l.secret("Pa$$ w0rd");
        l.secret("ab");
        l.line("ldapPass=Pa$$ w0rd and ab");
        assert_eq!(rx.try_recv().unwrap().1, "ldapPass=*** and ab");
    }
}
