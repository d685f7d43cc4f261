//! LDAP multi-provider replication of the node's directory, and the directory server lists
//! Gluu's services use.
//!
//! Everything goes through the node's Gluu [`Layout`]: on a Gluu 4.2.3 node (a systemd-nspawn
//! machine) slaptest, dsreplication, dsconfig, keytool and openssl run inside the machine (by
//! entering its namespaces), the directory is restarted as the machine's `opendj` unit, and
//! files are read and written by their host path under the container root. On an init.d
//! chroot the same programs run through `chroot` and the directory by its init script. An
//! operation that must run something inside starts a stopped machine first (`gluu-serverd
//! enable` and `start`, Gluu's own order); status and probes only report a stopped machine.
//!
//! **OpenLDAP** ([`openldap`]; the stand-in's directory: `opt/openldap/etc/slapd.conf` under
//! the container root) is driven through hook files slapd.conf includes, checked with
//! `slaptest -u` as candidates before they replace the live ones.
//!
//! **OpenDJ** ([`opendj`]; Gluu 4.x's directory, `/opt/opendj/bin/dsreplication`): what Gluu's
//! cluster manager ran (`dsreplication enable` against the primary, the crypto manager's
//! `ssl-encryption`, `dsreplication initialize-all`), the primary's crypto manager set alike,
//! and every node's OpenDJ truststore and oxAuth's LDAP truststore made to trust the peers'
//! directory certificates ([`truststore`]).
//!
//! [`status`] reads the replication state and runs the marker probes; [`servers`] rewrites the
//! directory lists (gluu-ldap.properties, Shibboleth's ldapURL, oxIDPAuthentication).

mod opendj;
mod openldap;
mod servers;
mod status;
mod truststore;

pub use opendj::{crypto_manager_argv, disable_argv};
pub(crate) use openldap::{Candidates, slaptest_argv};
pub use openldap::{Hooks, partners, quote, render_hooks, server_id, ssha, ssha_matches};
pub use servers::{idp_values, set_ldap_servers, set_property};
pub use status::{marker_dn, probe, status};
pub use truststore::{LDAP_TRUSTSTORE, OPENDJ_TRUSTSTORE, PEER_ALIAS, peer_alias};

use super::gluu::{Flavor, Layout, ServiceAction};
use super::ldap::connect;
use super::{Ctx, Log, OpError, run_checked};
use crate::host::Command;
use clustermgr_proto::{
    ConfigureReplication, ConfigureReplicationOutput, DirectoryInfo, DirectoryInfoOutput,
};
use clustermgr_shared::fsutil::write_private;
use clustermgr_shared::safefs::{self, FilePerms, SafeFsError};
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const KIND_OPENLDAP: &str = "openldap";
pub const KIND_OPENDJ: &str = "opendj";
/// The bases a Gluu 4.x directory holds.
pub const BASES: &[&str] = &["o=gluu", "o=site"];
/// Where the OpenLDAP configuration and its hook files live, inside the Gluu root.
pub const OPENLDAP_ETC: &str = "/opt/openldap/etc";
pub const GLOBAL_HOOK: &str = "replication-global.conf";
pub const CA_FILE: &str = "replication-ca.pem";
pub const DSREPLICATION: &str = "/opt/opendj/bin/dsreplication";
pub const DSCONFIG: &str = "/opt/opendj/bin/dsconfig";
/// OpenDJ's replication port (Gluu 4.x's; the administration port is in [`opendj`]).
pub const OPENDJ_REPLICATION_PORT: &str = "8989";
/// Gluu's properties files, inside the Gluu root.
pub const GLUU_LDAP_PROPERTIES: &str = "etc/gluu/conf/gluu-ldap.properties";
pub const SHIB_LDAP_PROPERTIES: &str = "opt/shibboleth-idp/conf/ldap.properties";
pub const SHIB_LDAP_URL: &str = "idp.authn.LDAP.ldapURL";
pub const CONFIGURATION_DN: &str = "ou=configuration,o=gluu";
/// The container of probe markers, under each base.
pub const PROBE_OU: &str = "clustermgr";
/// The directory's service inside Gluu (OpenDJ's unit; the stand-in names its slapd alike).
pub const DIRECTORY_SERVICE: &str = "opendj";
const DEFAULT_PORT: u32 = 1636;
/// How long a restarted directory has to answer on LDAPS.
const READY_WAIT: Duration = Duration::from_secs(60);
const MAX_CONF: u64 = 1024 * 1024;
/// LDAP result codes.
const NO_SUCH_OBJECT: u32 = 32;
const ALREADY_EXISTS: u32 = 68;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directory {
    OpenLdap,
    OpenDj,
}

impl Directory {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::OpenLdap => KIND_OPENLDAP,
            Self::OpenDj => KIND_OPENDJ,
        }
    }
    fn cert_file(self) -> &'static str {
        match self {
            Self::OpenLdap => "openldap.crt",
            Self::OpenDj => "opendj.crt",
        }
    }
}

pub fn detect(layout: &Layout) -> Result<Directory, OpError> {
    if layout
        .host_path(&format!("{OPENLDAP_ETC}/slapd.conf"))
        .is_file()
    {
        return Ok(Directory::OpenLdap);
    }
    if layout.host_path(DSREPLICATION).exists() {
        return Ok(Directory::OpenDj);
    }
    Err(OpError(format!(
        "no directory server found under {} (neither {OPENLDAP_ETC}/slapd.conf nor {DSREPLICATION})",
        layout.base.display()
    )))
}

/// A Gluu machine that is not running (its services cannot answer); false for the other
/// packagings, whose state is their services'.
pub(crate) fn machine_stopped(layout: &Layout) -> bool {
    layout.flavor == Flavor::Machine && layout.leader().is_none()
}

/// What a job says about a stopped machine.
pub(crate) const MACHINE_STOPPED: &str =
    "the Gluu Server machine is stopped (gluu-serverd start brings it back)";

fn fs_err(what: &str, e: SafeFsError) -> OpError {
    OpError(format!("{what}: {e}"))
}

/// A directory under the Gluu root, on a handle (no link followed).
pub(crate) fn open_in_base(root: &Path, layout: &Layout, rel: &str) -> Result<OwnedFd, OpError> {
    let handle = safefs::open_dir(root).map_err(|e| fs_err(&root.display().to_string(), e))?;
    let base_rel = layout
        .base
        .strip_prefix(root)
        .map_err(|_| OpError("the Gluu root is not under the agent's root".into()))?;
    let base = safefs::open_dir_beneath(&handle, base_rel, false)
        .map_err(|e| fs_err(&layout.base.display().to_string(), e))?;
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        return Ok(base);
    }
    safefs::open_dir_beneath(&base, Path::new(rel), false).map_err(|e| fs_err(rel, e))
}

/// Reads a file in `dir`: None when absent.
pub(crate) fn read_opt(
    dir: &OwnedFd,
    name: &str,
) -> Result<Option<(Vec<u8>, nix::sys::stat::FileStat)>, OpError> {
    match safefs::read_regular(dir, OsStr::new(name), MAX_CONF) {
        Ok(r) => Ok(Some(r)),
        Err(SafeFsError::NotFound(_)) => Ok(None),
        Err(e) => Err(fs_err(name, e)),
    }
}

/// Replaces `name` in `dir` with `content`, keeping its owner (as root) and giving it `mode`.
pub(crate) fn write_file(
    dir: &OwnedFd,
    name: &str,
    content: &[u8],
    mode: u32,
) -> Result<(), OpError> {
    let root = nix::unistd::geteuid().is_root();
    let st = match safefs::stat_entry(dir, OsStr::new(name)).map_err(|e| fs_err(name, e))? {
        Some(st) => st,
        None => nix::sys::stat::fstat(dir).map_err(|e| OpError(format!("{name}: {e}")))?,
    };
    let perms = FilePerms {
        mode,
        uid: root.then_some(st.st_uid),
        gid: root.then_some(st.st_gid),
    };
    safefs::replace_file(dir, OsStr::new(name), content, perms).map_err(|e| fs_err(name, e))
}

/// A host for a URL: a name, an IPv4 or an IPv6 address (bracketed).
fn check_host(what: &str, h: &str) -> Result<(), OpError> {
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b':')
        && !h.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(OpError(format!(
            "{what} {h:?} is not a host name or address"
        )))
    }
}

fn port_of(p: u32) -> Result<u32, OpError> {
    match p {
        0 => Ok(DEFAULT_PORT),
        p if p <= u32::from(u16::MAX) => Ok(p),
        p => Err(OpError(format!("port {p} is not a TCP port"))),
    }
}

/// The hook file's name for a base `o=<name>`.
pub fn base_hook(base: &str) -> Result<String, OpError> {
    let name = base
        .strip_prefix("o=")
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .ok_or_else(|| OpError(format!("base {base:?} is not o=NAME")))?;
    Ok(format!("replication-{name}.conf"))
}

fn join<T>(r: Result<Result<T, OpError>, tokio::task::JoinError>) -> Result<T, OpError> {
    r.map_err(|e| OpError(e.to_string()))?
}

/// Files for the tools run inside Gluu (passwords, certificates), written 0600 by their host
/// path under the container root and removed on drop.
#[derive(Default)]
pub(super) struct TempFiles {
    paths: Vec<PathBuf>,
}

impl TempFiles {
    /// Writes `content` to `inside` (a path inside Gluu).
    pub(super) fn write(
        &mut self,
        layout: &Layout,
        inside: &str,
        content: &[u8],
    ) -> Result<(), OpError> {
        let path = layout.host_path(inside);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| OpError(format!("cannot create {}: {e}", dir.display())))?;
        }
        // Removed on drop even when the write fails half-way.
        self.paths.push(path.clone());
        write_private(&path, content)
            .map_err(|e| OpError(format!("cannot write {}: {e}", path.display())))
    }
}

impl Drop for TempFiles {
    fn drop(&mut self) {
        for p in &self.paths {
            let _ = std::fs::remove_file(p);
        }
    }
}

// ----- DirectoryInfo -----

pub async fn directory_info(
    ctx: &Ctx,
    req: DirectoryInfo,
    log: &mut Log,
) -> Result<DirectoryInfoOutput, OpError> {
    let layout = Layout::detect(&ctx.host)?;
    let kind = detect(&layout)?;
    let root = ctx.root().clone();
    let l = layout.clone();
    let file = kind.cert_file();
    // The certificate is read by its host path: a stopped machine still has it.
    let pem = join(
        tokio::task::spawn_blocking(move || {
            let certs = open_in_base(&root, &l, "etc/certs")?;
            read_opt(&certs, file)?
                .map(|(c, _)| c)
                .ok_or_else(|| OpError(format!("/etc/certs/{file} is missing")))
        })
        .await,
    )?;
    let pem = String::from_utf8(pem)
        .map_err(|_| OpError(format!("/etc/certs/{file} is not PEM text")))?;
    let n = clustermgr_shared::tls::certs_from_pem(&pem)
        .map_err(|e| OpError(format!("/etc/certs/{file}: {e}")))?
        .len();
    if n == 0 {
        return Err(OpError(format!("/etc/certs/{file} holds no certificate")));
    }
    log.line(format!(
        "directory: {} (certificate /etc/certs/{file})",
        kind.name()
    ));
    let admin_certificate_der = match kind {
        Directory::OpenLdap => Vec::new(),
        Directory::OpenDj => {
            // Read from the running directory: its tools are what peers will contact.
            layout.ensure_running(&ctx.host, log).await?;
            opendj::own_admin_certificate(opendj::admin_port(req.admin_port), log).await?
        }
    };
    Ok(DirectoryInfoOutput {
        kind: kind.name().into(),
        certificate_pem: pem,
        bases: BASES.iter().map(|b| b.to_string()).collect(),
        admin_certificate_der,
    })
}

// ----- ConfigureReplication -----

pub async fn configure(
    ctx: &Ctx,
    req: ConfigureReplication,
    log: &mut Log,
) -> Result<ConfigureReplicationOutput, OpError> {
    let pw = String::from_utf8_lossy(&req.replicator_password).into_owned();
    log.secret(&pw);
    if let Ok(q) = quote(&pw) {
        log.secret(&q);
        log.secret(q.trim_matches('"'));
    }
    log.secret(&String::from_utf8_lossy(&req.admin_password));
    let layout = Layout::detect(&ctx.host)?;
    match detect(&layout)? {
        Directory::OpenDj => opendj::configure(ctx, &layout, &req, READY_WAIT, log).await,
        Directory::OpenLdap => openldap::configure(ctx, &layout, &req, READY_WAIT, log).await,
    }
}

// ----- the directory's restart -----

/// The directory's restart inside Gluu: the machine's `opendj` unit, the chroot's init script,
/// the host's unit for nochroot (whatever the directory is).
pub(crate) fn restart_argv(layout: &Layout) -> Result<Vec<String>, OpError> {
    layout.service(DIRECTORY_SERVICE, ServiceAction::Restart)
}

/// Where the directory answers and the directory manager's password, to wait for it.
pub(crate) struct DirectoryAt<'a> {
    pub(crate) host: &'a str,
    pub(crate) port: u32,
    pub(crate) admin_password: &'a [u8],
}

impl<'a> DirectoryAt<'a> {
    /// The directory a replication request names.
    fn of(req: &'a ConfigureReplication) -> Self {
        DirectoryAt {
            host: &req.host,
            port: req.port,
            admin_password: &req.admin_password,
        }
    }
}

/// Restarts the directory alone (inside Gluu) and waits until it answers on LDAPS again:
/// replication's and the custom schema's one way to apply a directory change.
pub(crate) async fn restart_directory(
    ctx: &Ctx,
    layout: &Layout,
    at: DirectoryAt<'_>,
    within: Duration,
    log: &mut Log,
) -> Result<(), OpError> {
    run_checked(
        &ctx.host,
        &Command::new(restart_argv(layout)?),
        log,
        "restarting the directory",
    )
    .await?;
    wait_ready_within(ctx, at.host, at.port, at.admin_password, log, within).await?;
    log.line("the directory answers on LDAPS");
    Ok(())
}

/// Waits until the directory accepts the directory manager's bind over LDAPS, for at most `within`.
pub(crate) async fn wait_ready_within(
    ctx: &Ctx,
    host: &str,
    port: u32,
    password: &[u8],
    log: &mut Log,
    within: Duration,
) -> Result<(), OpError> {
    let deadline = Instant::now() + within;
    loop {
        match connect(ctx, host, port, password, log).await {
            Ok(mut l) => {
                let _ = l.unbind().await;
                return Ok(());
            }
            Err(e) if Instant::now() > deadline => {
                return Err(OpError(format!(
                    "the directory did not answer on LDAPS within {}s after the restart: {e}",
                    within.as_secs()
                )));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

#[cfg(test)]
mod tests;
