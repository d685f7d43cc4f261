//! LDAP multi-provider replication of the node's directory, and the directory server lists
//! Gluu's services use.
//!
//! **OpenLDAP** (the layout has `opt/openldap/etc/slapd.conf` under the Gluu root, as the Gluu
//! stand-in does): slapd.conf includes hook files this module owns, in `opt/openldap/etc/`:
//! `replication-global.conf` (`serverID N`) and `replication-<o>.conf` per base `o=<o>` (the
//! replicator's access rules and limits, one `syncrepl` consumer per peer verified against
//! `replication-ca.pem` with `tls_reqcert=demand`, `multiprovider on`). The hook files hold the
//! replicator's password, so they are written 0600. A candidate configuration (a copy of
//! slapd.conf including candidate hook files) is checked with `slaptest -u` first; only then are
//! the files replaced and the directory alone restarted (its init script), and the module waits
//! until LDAPS answers again. No peer: hook files without directives (no replication).
//!
//! **OpenDJ** (`/opt/opendj/bin/dsreplication` under the Gluu root): what Gluu's cluster manager
//! ran, `dsreplication enable` against the primary per base, the crypto manager's
//! `ssl-encryption`, `dsreplication initialize-all` from the primary. Passwords go in 0600
//! files (`--bindPasswordFile1/2`, `--adminPasswordFile`, `--bindPasswordFile`) removed after,
//! never in argv. The node's OpenDJ keystore is left as Gluu made it (each node keeps its own
//! certificate; the old cluster manager copied the primary's keystore instead).

use super::gluu::Layout;
use super::ldap::{ADMIN_DN, bracket, connect};
use super::{Ctx, Log, OpError, run_checked};
use crate::host::Command;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clustermgr_proto::{
    BaseReplication, ConfigureReplication, ConfigureReplicationOutput, DirectoryInfo,
    DirectoryInfoOutput, ReplicationPeer, ReplicationProbe, ReplicationProbeOutput,
    ReplicationStatus, ReplicationStatusOutput, SetLdapServers, SetLdapServersOutput,
    replication_probe,
};
use clustermgr_shared::safefs::{self, FilePerms, SafeFsError};
use ldap3::{Ldap, LdapError, Mod, Scope, SearchEntry};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::fd::OwnedFd;
use std::path::Path;
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
/// OpenDJ's administration and replication ports (Gluu 4.x's).
pub const OPENDJ_ADMIN_PORT: &str = "4444";
pub const OPENDJ_REPLICATION_PORT: &str = "8989";
/// Gluu's properties files, inside the Gluu root.
pub const GLUU_LDAP_PROPERTIES: &str = "etc/gluu/conf/gluu-ldap.properties";
pub const SHIB_LDAP_PROPERTIES: &str = "opt/shibboleth-idp/conf/ldap.properties";
pub const SHIB_LDAP_URL: &str = "idp.authn.LDAP.ldapURL";
pub const CONFIGURATION_DN: &str = "ou=configuration,o=gluu";
/// The container of probe markers, under each base.
pub const PROBE_OU: &str = "clustermgr";
const DEFAULT_PORT: u32 = 1636;
/// How long a restarted directory has to answer on LDAPS.
const READY_WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);
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

// ----- DirectoryInfo -----

pub async fn directory_info(
    ctx: &Ctx,
    _req: DirectoryInfo,
    log: &mut Log,
) -> Result<DirectoryInfoOutput, OpError> {
    let layout = Layout::detect(&ctx.host)?;
    let kind = detect(&layout)?;
    let root = ctx.root().clone();
    let l = layout.clone();
    let file = kind.cert_file();
    let pem = tokio::task::spawn_blocking(move || {
        let certs = open_in_base(&root, &l, "etc/certs")?;
        read_opt(&certs, file)?
            .map(|(c, _)| c)
            .ok_or_else(|| OpError(format!("/etc/certs/{file} is missing")))
    })
    .await
    .map_err(|e| OpError(e.to_string()))??;
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
    Ok(DirectoryInfoOutput {
        kind: kind.name().into(),
        certificate_pem: pem,
        bases: BASES.iter().map(|b| b.to_string()).collect(),
    })
}

// ----- slapd.conf hook rendering -----

/// A slapd.conf argument, quoted: `"` and `\` escaped with `\` (slapd.conf's tokenizer removes
/// quotes and backslashes), so spaces, `!`, `'`, `$` and `"` survive. Line breaks and NUL
/// cannot be written.
pub fn quote(value: &str) -> Result<String, OpError> {
    if value.contains(['\n', '\r', '\0']) {
        return Err(OpError(
            "a value for slapd.conf holds a line break or NUL".into(),
        ));
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(out)
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

/// What the hook files should hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hooks {
    pub global: String,
    /// (file name, content) per base, in the request's order.
    pub bases: Vec<(String, String)>,
    /// The CA bundle (None: no peer, the file is left as it is).
    pub ca: Option<String>,
}

const HEADER: &str =
    "# Written by clustermgr (configure-replication); changes here are overwritten.\n";

/// Renders the hook files. `ca_path` is the CA bundle's path as slapd sees it.
pub fn render_hooks(req: &ConfigureReplication, ca_path: &str) -> Result<Hooks, OpError> {
    if req.bases.is_empty() {
        return Err(OpError("no base to replicate".into()));
    }
    if req.bases.len() > 9 {
        return Err(OpError("at most 9 bases".into()));
    }
    let mut peers: Vec<&ReplicationPeer> = req.peers.iter().collect();
    peers.sort_by_key(|p| p.server_id);
    let mut ids = HashSet::new();
    if !peers.is_empty() {
        if !(1..=99).contains(&req.server_id) {
            return Err(OpError(format!(
                "server id {} is not in 1..99",
                req.server_id
            )));
        }
        ids.insert(req.server_id);
    }
    for p in &peers {
        check_host("peer", &p.host)?;
        port_of(p.port)?;
        if !(1..=99).contains(&p.server_id) {
            return Err(OpError(format!(
                "peer {} has server id {}, not in 1..99",
                p.host, p.server_id
            )));
        }
        if !ids.insert(p.server_id) {
            return Err(OpError(format!(
                "server id {} is given twice (this node and its peers need distinct ids)",
                p.server_id
            )));
        }
    }
    let mut global = HEADER.to_string();
    let mut bases = Vec::new();
    let ca = if peers.is_empty() {
        None
    } else {
        let _ = writeln!(global, "serverID {}", req.server_id);
        if req.replicator_dn.trim().is_empty() {
            return Err(OpError("the replicator's DN is required".into()));
        }
        if req.replicator_password.is_empty() {
            return Err(OpError("the replicator's password is required".into()));
        }
        let n = clustermgr_shared::tls::certs_from_pem(&req.ca_pem)
            .map_err(|e| OpError(format!("the CA bundle: {e}")))?
            .len();
        if n == 0 {
            return Err(OpError(
                "the CA bundle holds no certificate (peers could not be verified)".into(),
            ));
        }
        Some(req.ca_pem.clone())
    };
    let password = String::from_utf8(req.replicator_password.clone())
        .map_err(|_| OpError("the replicator's password is not UTF-8".into()))?;
    let mut seen = HashSet::new();
    for (i, base) in req.bases.iter().enumerate() {
        let file = base_hook(base)?;
        if !seen.insert(file.clone()) {
            return Err(OpError(format!("base {base} is given twice")));
        }
        let mut c = HEADER.to_string();
        if !peers.is_empty() {
            let dn = quote(req.replicator_dn.trim())?;
            let _ = writeln!(
                c,
                "access to dn.exact={dn} attrs=userPassword by anonymous auth by * break"
            );
            let _ = writeln!(c, "access to * by dn.exact={dn} read by * break");
            let _ = writeln!(c, "limits dn.exact={dn} size=unlimited time=unlimited");
            for p in &peers {
                let rid = i as u32 * 100 + p.server_id;
                let url = format!("ldaps://{}:{}", bracket(&p.host), port_of(p.port)?);
                let _ = writeln!(
                    c,
                    "syncrepl rid={rid:03} provider={url} bindmethod=simple binddn={dn} \
                     credentials={} searchbase={} type=refreshAndPersist retry=\"1 10 5 +\" \
                     timeout=3 tls_cacert={} tls_reqcert=demand",
                    quote(&password)?,
                    quote(base)?,
                    quote(ca_path)?
                );
            }
            c.push_str("multiprovider on\n");
        }
        bases.push((file, c));
    }
    Ok(Hooks { global, bases, ca })
}

/// `{SSHA}` of a password (salted SHA-1, what slapd checks `userPassword` against).
pub fn ssha(password: &[u8]) -> String {
    let salt: [u8; 8] = rand::random();
    ssha_with(password, &salt)
}

fn ssha_with(password: &[u8], salt: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(password);
    ctx.update(salt);
    let mut raw = ctx.finish().as_ref().to_vec();
    raw.extend_from_slice(salt);
    format!("{{SSHA}}{}", STANDARD.encode(raw))
}

/// Whether an `{SSHA}` value is the hash of `password`.
pub fn ssha_matches(value: &str, password: &[u8]) -> bool {
    let Some(b64) = value.strip_prefix("{SSHA}") else {
        return false;
    };
    let Ok(raw) = STANDARD.decode(b64.trim()) else {
        return false;
    };
    if raw.len() <= 20 {
        return false;
    }
    ssha_with(password, &raw[20..]) == value.trim()
}

// ----- OpenDJ argv -----

/// The commands that make a node replicate with the primary (OpenDJ), given the password
/// files as the tools see them.
pub fn opendj_argv(
    layout: &Layout,
    node: &str,
    primary: &str,
    bases: &[String],
    admin_pw_file: &str,
    repl_pw_file: &str,
) -> Result<Vec<Vec<String>>, OpError> {
    let mut cmds = Vec::new();
    for base in bases {
        cmds.push(layout.exec(
            DSREPLICATION,
            &[
                "enable",
                "--host1",
                primary,
                "--port1",
                OPENDJ_ADMIN_PORT,
                "--bindDN1",
                ADMIN_DN,
                "--bindPasswordFile1",
                admin_pw_file,
                "--replicationPort1",
                OPENDJ_REPLICATION_PORT,
                "--host2",
                node,
                "--port2",
                OPENDJ_ADMIN_PORT,
                "--bindDN2",
                ADMIN_DN,
                "--bindPasswordFile2",
                admin_pw_file,
                "--replicationPort2",
                OPENDJ_REPLICATION_PORT,
                "--adminUID",
                "admin",
                "--adminPasswordFile",
                repl_pw_file,
                "--baseDN",
                base,
                "-X",
                "-n",
            ],
        )?);
    }
    cmds.push(layout.exec(
        DSCONFIG,
        &[
            "--hostname",
            node,
            "--port",
            OPENDJ_ADMIN_PORT,
            "--bindDN",
            ADMIN_DN,
            "--bindPasswordFile",
            admin_pw_file,
            "--trustAll",
            "--no-prompt",
            "set-crypto-manager-prop",
            "--set",
            "ssl-encryption:true",
        ],
    )?);
    for base in bases {
        cmds.push(layout.exec(
            DSREPLICATION,
            &[
                "initialize-all",
                "--baseDN",
                base,
                "--hostname",
                primary,
                "--port",
                OPENDJ_ADMIN_PORT,
                "--adminUID",
                "admin",
                "--adminPasswordFile",
                repl_pw_file,
                "-X",
                "-n",
            ],
        )?);
    }
    Ok(cmds)
}

/// Password files for the OpenDJ tools (0600 under the Gluu root's /root), removed on drop.
struct PasswordFiles {
    paths: Vec<std::path::PathBuf>,
}

impl Drop for PasswordFiles {
    fn drop(&mut self) {
        for p in &self.paths {
            let _ = std::fs::remove_file(p);
        }
    }
}

async fn configure_opendj(
    ctx: &Ctx,
    layout: &Layout,
    req: &ConfigureReplication,
    log: &mut Log,
) -> Result<ConfigureReplicationOutput, OpError> {
    let primary = req
        .primary
        .as_ref()
        .map(|p| p.host.trim().to_string())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| OpError("OpenDJ replication needs the primary".into()))?;
    check_host("primary", &primary)?;
    check_host("host", req.host.trim())?;
    if primary == req.host.trim() {
        log.line("this node is the primary: the other nodes are enabled against it");
        return Ok(ConfigureReplicationOutput {
            changed: false,
            restarted: false,
        });
    }
    if req.admin_password.is_empty() || req.replicator_password.is_empty() {
        return Err(OpError(
            "the directory manager's and the replication administrator's passwords are required"
                .into(),
        ));
    }
    for b in &req.bases {
        base_hook(b)?;
    }
    let dir = layout.host_path("/root");
    std::fs::create_dir_all(&dir)
        .map_err(|e| OpError(format!("cannot create {}: {e}", dir.display())))?;
    let tag = hex::encode(rand::random::<[u8; 8]>());
    let admin_file = format!("/root/.clustermgr-dm-{tag}");
    let repl_file = format!("/root/.clustermgr-repl-{tag}");
    let files = PasswordFiles {
        paths: vec![layout.host_path(&admin_file), layout.host_path(&repl_file)],
    };
    for (path, pw) in files
        .paths
        .iter()
        .zip([&req.admin_password, &req.replicator_password])
    {
        clustermgr_shared::fsutil::write_private(path, pw)
            .map_err(|e| OpError(format!("cannot write {}: {e}", path.display())))?;
    }
    let argvs = opendj_argv(
        layout,
        req.host.trim(),
        &primary,
        &req.bases,
        &layout.seen(&admin_file),
        &layout.seen(&repl_file),
    )?;
    for argv in argvs {
        let what = format!("{} {}", argv[..argv.len().min(4)].join(" "), "");
        run_checked(&ctx.host, &Command::new(argv), log, what.trim()).await?;
    }
    drop(files);
    Ok(ConfigureReplicationOutput {
        changed: true,
        restarted: false,
    })
}

// ----- ConfigureReplication (OpenLDAP) -----

/// The directory's restart inside Gluu (the `opendj` unit, whatever the directory is).
pub(crate) fn restart_argv(layout: &Layout) -> Result<Vec<String>, OpError> {
    layout.service("opendj", super::gluu::ServiceAction::Restart)
}

/// slaptest inside Gluu, checking the configuration `conf` (a path as [`Layout::seen`] gives).
pub(crate) fn slaptest_argv(layout: &Layout, conf: &str) -> Result<Vec<String>, OpError> {
    layout.exec("/usr/sbin/slaptest", &["-u", "-f", conf])
}

/// Candidate files removed on drop.
pub(crate) struct Candidates {
    pub(crate) dir: Option<OwnedFd>,
    pub(crate) names: Vec<String>,
}

impl Drop for Candidates {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            for n in &self.names {
                let _ = nix::unistd::unlinkat(
                    dir,
                    OsStr::new(n.as_str()),
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                );
            }
        }
    }
}

/// Creates or updates the replicator entry; Ok(false) when it was already so or cannot exist
/// here yet (its parent arrives by replication on a node installed without data).
async fn ensure_replicator(
    ldap: &mut Ldap,
    dn: &str,
    password: &[u8],
    log: &mut Log,
) -> Result<bool, OpError> {
    let err = |e: LdapError| OpError(format!("{dn}: {e}"));
    let r = ldap
        .search(dn, Scope::Base, "(objectClass=*)", vec!["userPassword"])
        .await
        .map_err(err)?;
    let (entries, res) = (r.0, r.1);
    if res.rc == 0 {
        let entry = entries.into_iter().next().map(SearchEntry::construct);
        let current: Vec<String> = entry
            .map(|e| {
                let mut v = e.attrs.get("userPassword").cloned().unwrap_or_default();
                for b in e.bin_attrs.get("userPassword").into_iter().flatten() {
                    v.push(String::from_utf8_lossy(b).into_owned());
                }
                v
            })
            .unwrap_or_default();
        if current.len() == 1 && ssha_matches(&current[0], password) {
            log.line(format!("{dn}: present with this password"));
            return Ok(false);
        }
        let r = ldap
            .modify(
                dn,
                vec![Mod::Replace(
                    "userPassword".to_string(),
                    HashSet::from([ssha(password)]),
                )],
            )
            .await
            .map_err(err)?;
        if r.rc != 0 {
            return Err(OpError(format!(
                "setting the password of {dn} refused (LDAP result code {})",
                r.rc
            )));
        }
        log.line(format!("{dn}: password set"));
        return Ok(true);
    }
    if res.rc != NO_SUCH_OBJECT {
        return Err(OpError(format!(
            "reading {dn} failed (LDAP result code {})",
            res.rc
        )));
    }
    let (rdn_attr, rdn_value) = dn
        .split(',')
        .next()
        .and_then(|r| r.split_once('='))
        .map(|(a, v)| (a.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| OpError(format!("{dn:?} is not a DN")))?;
    if !rdn_attr.eq_ignore_ascii_case("cn") {
        return Err(OpError(format!(
            "the replicator's DN {dn:?} must be cn=NAME,..."
        )));
    }
    let hash = ssha(password);
    let r = ldap
        .add(
            dn,
            vec![
                (
                    "objectClass".to_string(),
                    HashSet::from([
                        "top".to_string(),
                        "person".to_string(),
                        "organizationalPerson".to_string(),
                    ]),
                ),
                ("cn".to_string(), HashSet::from([rdn_value.clone()])),
                ("sn".to_string(), HashSet::from([rdn_value])),
                (
                    "description".to_string(),
                    HashSet::from(["LDAP replication identity (clustermgr)".to_string()]),
                ),
                ("userPassword".to_string(), HashSet::from([hash])),
            ],
        )
        .await
        .map_err(err)?;
    match r.rc {
        0 => {
            log.line(format!("{dn}: created"));
            Ok(true)
        }
        NO_SUCH_OBJECT => {
            log.line(format!(
                "{dn}: its parent is not here (a node installed without data); the entry \
                 arrives by replication"
            ));
            Ok(false)
        }
        rc => Err(OpError(format!(
            "adding {dn} refused (LDAP result code {rc})"
        ))),
    }
}

async fn wait_ready(
    ctx: &Ctx,
    host: &str,
    port: u32,
    password: &[u8],
    log: &mut Log,
) -> Result<(), OpError> {
    wait_ready_within(ctx, host, port, password, log, READY_WAIT).await
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
    let kind = detect(&layout)?;
    if kind == Directory::OpenDj {
        return configure_opendj(ctx, &layout, &req, log).await;
    }
    let ca_seen = layout.seen(&format!("{OPENLDAP_ETC}/{CA_FILE}"));
    let hooks = render_hooks(&req, &ca_seen)?;
    check_host("host", req.host.trim())?;

    // The replicator first: peers bind as it once the hook files are live.
    if !req.peers.is_empty() {
        let mut ldap = connect(ctx, &req.host, req.port, &req.admin_password, log).await?;
        let r = ensure_replicator(
            &mut ldap,
            req.replicator_dn.trim(),
            &req.replicator_password,
            log,
        )
        .await;
        let _ = ldap.unbind().await;
        r?;
    }

    // What changes.
    let mut wanted: Vec<(String, Vec<u8>, u32)> = Vec::new();
    if let Some(ca) = &hooks.ca {
        wanted.push((CA_FILE.into(), ca.clone().into_bytes(), 0o644));
    }
    for (name, text) in &hooks.bases {
        wanted.push((name.clone(), text.clone().into_bytes(), 0o600));
    }
    wanted.push((GLOBAL_HOOK.into(), hooks.global.clone().into_bytes(), 0o600));
    let root = ctx.root().clone();
    let l = layout.clone();
    let w = wanted.clone();
    let (etc, changed_names, conf) = tokio::task::spawn_blocking(move || {
        let etc = open_in_base(&root, &l, OPENLDAP_ETC)?;
        let mut changed = Vec::new();
        for (name, content, mode) in &w {
            let same = read_opt(&etc, name)?
                .is_some_and(|(c, st)| c == *content && st.st_mode & 0o7777 == *mode);
            if !same {
                changed.push(name.clone());
            }
        }
        let conf = read_opt(&etc, "slapd.conf")?
            .map(|(c, _)| c)
            .ok_or_else(|| OpError(format!("{OPENLDAP_ETC}/slapd.conf is missing")))?;
        Ok::<_, OpError>((etc, changed, conf))
    })
    .await
    .map_err(|e| OpError(e.to_string()))??;
    if changed_names.is_empty() {
        log.line("the replication configuration is already so; nothing to do");
        return Ok(ConfigureReplicationOutput {
            changed: false,
            restarted: false,
        });
    }
    log.line(format!("changing {}", changed_names.join(", ")));

    // A candidate configuration: slapd.conf including the candidate hook files.
    let mut conf = String::from_utf8(conf)
        .map_err(|_| OpError(format!("{OPENLDAP_ETC}/slapd.conf is not text")))?;
    let mut candidates = Candidates {
        dir: None,
        names: Vec::new(),
    };
    let cand = |n: &str| format!(".clustermgr-candidate-{n}");
    for (name, _, _) in &wanted {
        let real = layout.seen(&format!("{OPENLDAP_ETC}/{name}"));
        let temp = layout.seen(&format!("{OPENLDAP_ETC}/{}", cand(name)));
        if name.ends_with(".conf") {
            let include = format!("include {real}");
            if !conf.lines().any(|l| l.trim() == include) {
                return Err(OpError(format!(
                    "slapd.conf does not include {real}: this directory has no replication hooks"
                )));
            }
        }
        conf = conf.replace(&real, &temp);
    }
    {
        let etc2 = etc
            .try_clone()
            .map_err(|e| OpError(format!("{OPENLDAP_ETC}: {e}")))?;
        let mut files: Vec<(String, Vec<u8>)> = wanted
            .iter()
            .map(|(n, c, _)| {
                // The candidate hooks point at the candidate CA bundle.
                let text = String::from_utf8_lossy(c).replace(
                    &ca_seen,
                    &layout.seen(&format!("{OPENLDAP_ETC}/{}", cand(CA_FILE))),
                );
                (cand(n), text.into_bytes())
            })
            .collect();
        files.push((cand("slapd.conf"), conf.into_bytes()));
        candidates.names = files.iter().map(|(n, _)| n.clone()).collect();
        tokio::task::spawn_blocking(move || {
            for (n, c) in &files {
                write_file(&etc2, n, c, 0o600)?;
            }
            Ok::<_, OpError>(etc2)
        })
        .await
        .map_err(|e| OpError(e.to_string()))??;
        candidates.dir = Some(
            etc.try_clone()
                .map_err(|e| OpError(format!("{OPENLDAP_ETC}: {e}")))?,
        );
    }
    let test = layout.seen(&format!("{OPENLDAP_ETC}/{}", cand("slapd.conf")));
    run_checked(
        &ctx.host,
        &Command::new(slaptest_argv(&layout, &test)?),
        log,
        "slaptest",
    )
    .await?;
    drop(candidates);

    // Install: the CA bundle, the per-base hooks, the global hook last.
    let w = wanted.clone();
    let names = changed_names.clone();
    tokio::task::spawn_blocking(move || {
        for (name, content, mode) in &w {
            if names.contains(name) {
                write_file(&etc, name, content, *mode)?;
            }
        }
        Ok::<_, OpError>(())
    })
    .await
    .map_err(|e| OpError(e.to_string()))??;
    for n in &changed_names {
        log.line(format!("wrote {OPENLDAP_ETC}/{n}"));
    }
    run_checked(
        &ctx.host,
        &Command::new(restart_argv(&layout)?),
        log,
        "restarting the directory",
    )
    .await?;
    wait_ready(ctx, &req.host, req.port, &req.admin_password, log).await?;
    log.line("the directory answers on LDAPS");
    Ok(ConfigureReplicationOutput {
        changed: true,
        restarted: true,
    })
}

// ----- ReplicationStatus -----

/// The providers named in a hook file (`host:port`).
pub fn partners(hook: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in hook.lines() {
        let line = line.trim();
        if !line.starts_with("syncrepl ") {
            continue;
        }
        for tok in line.split_whitespace() {
            if let Some(url) = tok.strip_prefix("provider=") {
                let hp = url
                    .trim_matches('"')
                    .trim_start_matches("ldaps://")
                    .trim_start_matches("ldap://")
                    .trim_end_matches('/');
                out.push(hp.to_string());
            }
        }
    }
    out
}

/// The `serverID` of the global hook (0 when none).
pub fn server_id(global: &str) -> u32 {
    global
        .lines()
        .filter_map(|l| l.trim().strip_prefix("serverID"))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .next()
        .unwrap_or(0)
}

pub async fn status(
    ctx: &Ctx,
    req: ReplicationStatus,
    log: &mut Log,
) -> Result<ReplicationStatusOutput, OpError> {
    let layout = Layout::detect(&ctx.host)?;
    let kind = detect(&layout)?;
    let bases: Vec<String> = if req.bases.is_empty() {
        BASES.iter().map(|b| b.to_string()).collect()
    } else {
        req.bases.clone()
    };
    // The configured partners (OpenLDAP: from the hook files).
    let mut hooks: Vec<(String, String)> = Vec::new();
    let mut global = String::new();
    if kind == Directory::OpenLdap {
        let root = ctx.root().clone();
        let l = layout.clone();
        let names: Vec<String> = bases.iter().filter_map(|b| base_hook(b).ok()).collect();
        let (g, h) = tokio::task::spawn_blocking(move || {
            let etc = open_in_base(&root, &l, OPENLDAP_ETC)?;
            let text = |n: &str| -> Result<String, OpError> {
                Ok(read_opt(&etc, n)?
                    .map(|(c, _)| String::from_utf8_lossy(&c).into_owned())
                    .unwrap_or_default())
            };
            let g = text(GLOBAL_HOOK)?;
            let mut h = Vec::new();
            for n in names {
                let t = text(&n)?;
                h.push((n, t));
            }
            Ok::<_, OpError>((g, h))
        })
        .await
        .map_err(|e| OpError(e.to_string()))??;
        global = g;
        hooks = h;
    }
    let mut ldap = connect(ctx, &req.host, req.port, &req.admin_password, log).await?;
    let mut out = ReplicationStatusOutput {
        bases: Vec::new(),
        server_id: server_id(&global),
    };
    for base in &bases {
        let mut b = BaseReplication {
            base: base.clone(),
            ..Default::default()
        };
        if let Ok(name) = base_hook(base) {
            b.partners = hooks
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| partners(t))
                .unwrap_or_default();
        }
        match ldap
            .search(
                base,
                Scope::Base,
                "(objectClass=*)",
                vec!["contextCSN", "ds-sync-state"],
            )
            .await
        {
            Ok(r) if r.1.rc == 0 => {
                b.reachable = true;
                if let Some(e) = r.0.into_iter().next().map(SearchEntry::construct) {
                    let mut csn: Vec<String> = e
                        .attrs
                        .iter()
                        .filter(|(k, _)| {
                            k.eq_ignore_ascii_case("contextCSN")
                                || k.eq_ignore_ascii_case("ds-sync-state")
                        })
                        .flat_map(|(_, v)| v.clone())
                        .collect();
                    csn.sort();
                    b.context_csn = csn;
                }
            }
            Ok(r) => {
                b.error = format!("LDAP result code {}", r.1.rc);
            }
            Err(e) => b.error = e.to_string(),
        }
        log.line(format!(
            "{base}: {} contextCSN value(s), partners [{}]{}",
            b.context_csn.len(),
            b.partners.join(", "),
            if b.error.is_empty() {
                String::new()
            } else {
                format!(", error: {}", b.error)
            }
        ));
        out.bases.push(b);
    }
    let _ = ldap.unbind().await;
    Ok(out)
}

// ----- ReplicationProbe -----

/// A marker's name: letters, digits, `-`, `_`, `.`.
fn check_marker(m: &str) -> Result<(), OpError> {
    let ok = !m.is_empty()
        && m.len() <= 64
        && m.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(OpError(format!(
            "marker {m:?} must be letters, digits, '-', '_', '.'"
        )))
    }
}

pub fn marker_dn(marker: &str, base: &str) -> String {
    format!("cn={marker},ou={PROBE_OU},{base}")
}

async fn exists(ldap: &mut Ldap, dn: &str) -> Result<bool, OpError> {
    let r = ldap
        .search(dn, Scope::Base, "(objectClass=*)", vec!["1.1"])
        .await
        .map_err(|e| OpError(format!("{dn}: {e}")))?;
    match r.1.rc {
        0 => Ok(!r.0.is_empty()),
        NO_SUCH_OBJECT => Ok(false),
        rc => Err(OpError(format!(
            "reading {dn} failed (LDAP result code {rc})"
        ))),
    }
}

async fn add(ldap: &mut Ldap, dn: &str, attrs: Vec<(&str, Vec<&str>)>) -> Result<u32, OpError> {
    let attrs = attrs
        .into_iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                v.into_iter().map(str::to_string).collect::<HashSet<_>>(),
            )
        })
        .collect();
    let r = ldap
        .add(dn, attrs)
        .await
        .map_err(|e| OpError(format!("{dn}: {e}")))?;
    Ok(r.rc)
}

pub async fn probe(
    ctx: &Ctx,
    req: ReplicationProbe,
    log: &mut Log,
) -> Result<ReplicationProbeOutput, OpError> {
    use replication_probe::Action;
    check_marker(&req.marker)?;
    base_hook(&req.base)?;
    let action = req.action();
    if action == Action::Unspecified {
        return Err(OpError("replication-probe needs an action".into()));
    }
    let started = Instant::now();
    let mut ldap = connect(ctx, &req.host, req.port, &req.admin_password, log).await?;
    let dn = marker_dn(&req.marker, &req.base);
    let result = async {
        match action {
            Action::Write => {
                let ou = format!("ou={PROBE_OU},{}", req.base);
                let rc = add(
                    &mut ldap,
                    &ou,
                    vec![
                        ("objectClass", vec!["top", "organizationalUnit"]),
                        ("ou", vec![PROBE_OU]),
                    ],
                )
                .await?;
                if rc != 0 && rc != ALREADY_EXISTS {
                    return Err(OpError(format!(
                        "adding {ou} refused (LDAP result code {rc})"
                    )));
                }
                let rc = add(
                    &mut ldap,
                    &dn,
                    vec![
                        ("objectClass", vec!["top", "organizationalRole"]),
                        ("cn", vec![req.marker.as_str()]),
                        ("description", vec!["replication probe (clustermgr)"]),
                    ],
                )
                .await?;
                if rc != 0 && rc != ALREADY_EXISTS {
                    return Err(OpError(format!(
                        "adding {dn} refused (LDAP result code {rc})"
                    )));
                }
                log.line(format!("wrote {dn}"));
            }
            Action::Read => {
                let limit = Duration::from_millis(u64::from(req.within_ms));
                // The main marker, then every one in `also`.
                let mut wanted = vec![dn.clone()];
                for m in &req.also {
                    check_marker(m)?;
                    wanted.push(marker_dn(m, &req.base));
                }
                for want in &wanted {
                    loop {
                        if exists(&mut ldap, want).await? {
                            log.line(format!(
                                "{want} is here after {} ms",
                                started.elapsed().as_millis()
                            ));
                            break;
                        }
                        if started.elapsed() > limit {
                            return Err(OpError(format!(
                                "{want} did not arrive within {} ms: replication does not reach this node",
                                req.within_ms
                            )));
                        }
                        tokio::time::sleep(POLL).await;
                    }
                }
            }
            Action::Remove => {
                let r = ldap
                    .delete(&dn)
                    .await
                    .map_err(|e| OpError(format!("{dn}: {e}")))?;
                match r.rc {
                    0 => log.line(format!("removed {dn}")),
                    NO_SUCH_OBJECT => log.line(format!("{dn} was not there")),
                    rc => {
                        return Err(OpError(format!(
                            "removing {dn} refused (LDAP result code {rc})"
                        )));
                    }
                }
            }
            Action::Unspecified => {}
        }
        Ok(())
    }
    .await;
    let _ = ldap.unbind().await;
    result?;
    Ok(ReplicationProbeOutput {
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

// ----- SetLdapServers -----

/// `text` with the value of the property `key` (`key: v`, `key=v`, `key = v`) replaced by
/// `value`, everything else byte for byte. None when the key is absent; Some(unchanged) when
/// it already has that value.
pub fn set_property(text: &str, key: &str, value: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len() + value.len());
    let mut found = false;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let ending = &line[body.len()..];
        let lead = body.len() - body.trim_start().len();
        let rest = &body[lead..];
        if !found && let Some(after) = rest.strip_prefix(key) {
            let sep_at = after.len() - after.trim_start().len();
            let after_ws = &after[sep_at..];
            if after_ws.starts_with([':', '=']) {
                let v = &after_ws[1..];
                let vs = v.len() - v.trim_start().len();
                let prefix_len = lead + key.len() + sep_at + 1 + vs;
                out.push_str(&body[..prefix_len]);
                out.push_str(value);
                out.push_str(ending);
                found = true;
                continue;
            }
        }
        out.push_str(line);
    }
    found.then_some(out)
}

/// `config.servers` of each oxIDPAuthentication value set to `servers`; None when unchanged.
pub fn idp_values(values: &[String], servers: &[String]) -> Result<Option<Vec<String>>, OpError> {
    let mut changed = false;
    let mut out = Vec::new();
    for v in values {
        let mut j: serde_json::Value = serde_json::from_str(v)
            .map_err(|e| OpError(format!("oxIDPAuthentication is not JSON: {e}")))?;
        let want = serde_json::json!(servers);
        let config = j
            .get_mut("config")
            .ok_or_else(|| OpError("oxIDPAuthentication has no config".into()))?;
        // The configuration may be an object or a JSON string holding one.
        if let Some(s) = config.as_str() {
            let mut inner: serde_json::Value = serde_json::from_str(s)
                .map_err(|e| OpError(format!("oxIDPAuthentication config is not JSON: {e}")))?;
            if inner.get("servers") != Some(&want) {
                inner["servers"] = want;
                *config = serde_json::Value::String(
                    serde_json::to_string(&inner).map_err(|e| OpError(e.to_string()))?,
                );
                changed = true;
            }
        } else if config.is_object() {
            if config.get("servers") != Some(&want) {
                config["servers"] = want;
                changed = true;
            }
        } else {
            return Err(OpError(
                "oxIDPAuthentication config is not an object".into(),
            ));
        }
        out.push(serde_json::to_string(&j).map_err(|e| OpError(e.to_string()))?);
    }
    Ok(changed.then_some(out))
}

/// Rewrites one properties file under the Gluu root (mode and owner kept); Ok(None) when the
/// file does not exist, Ok(Some(changed)) otherwise.
fn rewrite_properties(
    root: &Path,
    layout: &Layout,
    rel: &str,
    key: &str,
    value: &str,
) -> Result<Option<bool>, OpError> {
    let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let d = match open_in_base(root, layout, dir) {
        Ok(d) => d,
        Err(_) if !layout.host_path(dir).exists() => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some((content, st)) = read_opt(&d, name)? else {
        return Ok(None);
    };
    let text =
        String::from_utf8(content).map_err(|_| OpError(format!("{rel} is not UTF-8 text")))?;
    let new = set_property(&text, key, value)
        .ok_or_else(|| OpError(format!("{rel} has no {key} line")))?;
    if new == text {
        return Ok(Some(false));
    }
    write_file(&d, name, new.as_bytes(), st.st_mode & 0o7777)?;
    Ok(Some(true))
}

pub async fn set_ldap_servers(
    ctx: &Ctx,
    req: SetLdapServers,
    log: &mut Log,
) -> Result<SetLdapServersOutput, OpError> {
    if req.servers.is_empty() {
        return Err(OpError("no LDAP server given".into()));
    }
    for s in &req.servers {
        let (h, p) = s
            .rsplit_once(':')
            .ok_or_else(|| OpError(format!("{s:?} is not host:port")))?;
        check_host("server", h.trim_start_matches('[').trim_end_matches(']'))?;
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| OpError(format!("{s:?} is not host:port")))?;
    }
    let layout = Layout::detect(&ctx.host)?;
    let mut changed = false;
    let list = req.servers.join(",");
    let urls = req
        .servers
        .iter()
        .map(|s| format!("ldaps://{s}"))
        .collect::<Vec<_>>()
        .join(" ");
    let root = ctx.root().clone();
    let l = layout.clone();
    let (gluu, shib) = tokio::task::spawn_blocking(move || {
        let g = rewrite_properties(&root, &l, GLUU_LDAP_PROPERTIES, "servers", &list)?;
        let s = rewrite_properties(&root, &l, SHIB_LDAP_PROPERTIES, SHIB_LDAP_URL, &urls)?;
        Ok::<_, OpError>((g, s))
    })
    .await
    .map_err(|e| OpError(e.to_string()))??;
    match gluu {
        None => return Err(OpError(format!("/{GLUU_LDAP_PROPERTIES} is missing"))),
        Some(c) => {
            changed |= c;
            log.line(format!(
                "/{GLUU_LDAP_PROPERTIES}: {}",
                if c { "servers rewritten" } else { "already so" }
            ));
        }
    }
    match shib {
        None => log.line(format!("/{SHIB_LDAP_PROPERTIES}: absent (no Shibboleth)")),
        Some(c) => {
            changed |= c;
            log.line(format!(
                "/{SHIB_LDAP_PROPERTIES}: {}",
                if c { "ldapURL rewritten" } else { "already so" }
            ));
        }
    }

    let mut ldap = connect(ctx, &req.host, req.port, &req.admin_password, log).await?;
    let result = async {
        let r = ldap
            .search(
                CONFIGURATION_DN,
                Scope::Base,
                "(objectClass=*)",
                vec!["oxIDPAuthentication"],
            )
            .await
            .map_err(|e| OpError(format!("{CONFIGURATION_DN}: {e}")))?;
        if r.1.rc != 0 {
            return Err(OpError(format!(
                "reading {CONFIGURATION_DN} failed (LDAP result code {})",
                r.1.rc
            )));
        }
        let entry =
            r.0.into_iter()
                .next()
                .map(SearchEntry::construct)
                .ok_or_else(|| OpError(format!("{CONFIGURATION_DN} does not exist")))?;
        let values = entry
            .attrs
            .get("oxIDPAuthentication")
            .cloned()
            .unwrap_or_default();
        if values.is_empty() {
            log.line(format!("{CONFIGURATION_DN}: no oxIDPAuthentication"));
            return Ok(false);
        }
        let Some(new) = idp_values(&values, &req.servers)? else {
            log.line("oxIDPAuthentication: already so");
            return Ok(false);
        };
        let r = ldap
            .modify(
                CONFIGURATION_DN,
                vec![Mod::Replace(
                    "oxIDPAuthentication".to_string(),
                    new.into_iter().collect(),
                )],
            )
            .await
            .map_err(|e| OpError(format!("{CONFIGURATION_DN}: {e}")))?;
        if r.rc != 0 {
            return Err(OpError(format!(
                "modify of {CONFIGURATION_DN} refused (LDAP result code {})",
                r.rc
            )));
        }
        log.line("oxIDPAuthentication: servers rewritten");
        Ok(true)
    }
    .await;
    let _ = ldap.unbind().await;
    changed |= result?;
    Ok(SetLdapServersOutput { changed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Host, PackageFormat, PackageMode, Recorder, Runner};
    use crate::ops::tests::{ctx_with, log};
    use std::sync::Arc;

    fn req(peers: &[(&str, u32)]) -> ConfigureReplication {
        ConfigureReplication {
            host: "10.0.0.1".into(),
            port: 1636,
            server_id: 1,
            peers: peers
                .iter()
                .map(|(h, id)| ReplicationPeer {
                    host: h.to_string(),
                    port: 1636,
                    server_id: *id,
                })
                .collect(),
            bases: vec!["o=gluu".into(), "o=site".into()],
            replicator_dn: "cn=replicator,o=site".into(),
            replicator_password: b"a! b'$\"c\\d".to_vec(),
            admin_password: b"admin".to_vec(),
            ca_pem: rcgen::generate_simple_self_signed(vec!["x".into()])
                .map(|c| c.cert.pem())
                .unwrap_or_default(),
            primary: None,
        }
    }

    #[test]
    fn hooks_quote_the_password_and_number_the_consumers() {
        let h = render_hooks(&req(&[("10.0.0.3", 3), ("10.0.0.2", 2)]), "/e/ca.pem").unwrap();
        assert_eq!(h.global, format!("{HEADER}serverID 1\n"));
        assert_eq!(h.bases[0].0, "replication-gluu.conf");
        assert_eq!(h.bases[1].0, "replication-site.conf");
        let gluu = &h.bases[0].1;
        let want = "syncrepl rid=002 provider=ldaps://10.0.0.2:1636 bindmethod=simple \
                    binddn=\"cn=replicator,o=site\" credentials=\"a! b'$\\\"c\\\\d\" \
                    searchbase=\"o=gluu\" type=refreshAndPersist retry=\"1 10 5 +\" timeout=3 \
                    tls_cacert=\"/e/ca.pem\" tls_reqcert=demand\n";
        assert!(gluu.contains(want), "{gluu}");
        assert!(gluu.contains("rid=003 provider=ldaps://10.0.0.3:1636"));
        assert!(
            h.bases[1]
                .1
                .contains("rid=102 provider=ldaps://10.0.0.2:1636")
        );
        assert!(gluu.ends_with("multiprovider on\n"));
        assert!(gluu.starts_with(&format!(
            "{HEADER}access to dn.exact=\"cn=replicator,o=site\" attrs=userPassword by anonymous auth by * break\n"
        )));
        assert_eq!(partners(gluu), ["10.0.0.2:1636", "10.0.0.3:1636"]);
        assert_eq!(server_id(&h.global), 1);
        assert!(h.ca.is_some());
        // IPv6 peers are bracketed.
        let h = render_hooks(&req(&[("fd00::2", 2)]), "/e/ca.pem").unwrap();
        assert!(h.bases[0].1.contains("provider=ldaps://[fd00::2]:1636 "));
    }

    #[test]
    fn no_peer_means_no_directive_and_bad_requests_are_refused() {
        let h = render_hooks(&req(&[]), "/ca").unwrap();
        assert_eq!(h.global, HEADER);
        assert!(h.bases.iter().all(|(_, t)| t == HEADER));
        assert!(h.ca.is_none());
        let mut r = req(&[("10.0.0.2", 1)]);
        assert!(render_hooks(&r, "/ca").unwrap_err().0.contains("twice"));
        r = req(&[("10.0.0.2", 2)]);
        r.ca_pem = String::new();
        assert!(render_hooks(&r, "/ca").unwrap_err().0.contains("CA bundle"));
        r = req(&[("bad host; x", 2)]);
        assert!(render_hooks(&r, "/ca").is_err());
        r = req(&[("10.0.0.2", 2)]);
        r.replicator_password = b"line\nbreak".to_vec();
        assert!(
            render_hooks(&r, "/ca")
                .unwrap_err()
                .0
                .contains("line break")
        );
        r = req(&[("10.0.0.2", 2)]);
        r.bases = vec!["ou=x".into()];
        assert!(render_hooks(&r, "/ca").is_err());
    }

    #[test]
    fn ssha_round_trip() {
        let h = ssha(b"pw ! $");
        assert!(ssha_matches(&h, b"pw ! $"));
        assert!(!ssha_matches(&h, b"pw"));
        assert!(!ssha_matches("{SHA}xx", b"pw"));
    }

    #[test]
    fn properties_keep_everything_else() {
        let text = "# c\nbindDN: cn=directory manager\r\nservers:  10.0.0.1:1636\nuseSSL: true\nno newline";
        let new = set_property(text, "servers", "a:1636,b:1636").unwrap();
        assert_eq!(
            new,
            "# c\nbindDN: cn=directory manager\r\nservers:  a:1636,b:1636\nuseSSL: true\nno newline"
        );
        assert_eq!(set_property(&new, "servers", "a:1636,b:1636").unwrap(), new);
        assert!(set_property(text, "server", "x").is_none());
        let shib = "idp.authn.LDAP.ldapURL = ldaps://localhost:1636\nx=1\n";
        assert_eq!(
            set_property(shib, SHIB_LDAP_URL, "ldaps://a:1636 ldaps://b:1636").unwrap(),
            "idp.authn.LDAP.ldapURL = ldaps://a:1636 ldaps://b:1636\nx=1\n"
        );
    }

    #[test]
    fn idp_servers_object_or_string() {
        let servers = vec!["a:1636".to_string(), "b:1636".to_string()];
        let v = vec![r#"{"type":"auth","config":{"configId":"auth_ldap_server","servers":["localhost:1636"]}}"#.to_string()];
        let new = idp_values(&v, &servers).unwrap().unwrap();
        let j: serde_json::Value = serde_json::from_str(&new[0]).unwrap();
        assert_eq!(j["config"]["servers"], serde_json::json!(servers));
        assert_eq!(j["config"]["configId"], "auth_ldap_server");
        assert!(idp_values(&new, &servers).unwrap().is_none());
        let s = vec![r#"{"config":"{\"servers\":[\"x:1\"]}"}"#.to_string()];
        let new = idp_values(&s, &servers).unwrap().unwrap();
        assert!(
            new[0].contains(r#"\"servers\":[\"a:1636\",\"b:1636\"]"#),
            "{new:?}"
        );
    }

    #[tokio::test]
    async fn opendj_runs_the_reference_commands_with_password_files() {
        let d = tempfile::tempdir().unwrap();
        let c = d.path().join("opt/gluu-server");
        std::fs::create_dir_all(c.join("install/community-edition-setup")).unwrap();
        std::fs::write(c.join("install/community-edition-setup/setup.py"), "").unwrap();
        std::fs::create_dir_all(c.join("opt/opendj/bin")).unwrap();
        std::fs::write(c.join("opt/opendj/bin/dsreplication"), "").unwrap();
        std::fs::create_dir_all(c.join("bin")).unwrap();
        std::fs::write(c.join("bin/sh"), "").unwrap();
        let rec = Arc::new(Recorder::default());
        let host = Host {
            root: d.path().to_path_buf(),
            packages: PackageMode::System,
            format: Some(PackageFormat::Deb),
            runner: Runner::Recording(rec.clone()),
            proc: std::path::PathBuf::from("/proc"),
        };
        let (mut l, mut rx) = log();
        let mut r = req(&[("10.0.0.1", 1)]);
        r.host = "10.0.0.2".into();
        r.server_id = 2;
        r.replicator_password = b"repl pw!".to_vec();
        r.admin_password = b"dm pw $x".to_vec();
        r.bases = vec!["o=gluu".into()];
        r.primary = Some(ReplicationPeer {
            host: "10.0.0.1".into(),
            port: 1636,
            server_id: 1,
        });
        let out = configure(&ctx_with(host), r, &mut l).await.unwrap();
        assert!(out.changed && !out.restarted);
        let argvs = rec.argvs();
        assert_eq!(argvs.len(), 3);
        let cs = c.display().to_string();
        let dm = argvs[0][argvs[0]
            .iter()
            .position(|a| a == "--bindPasswordFile1")
            .unwrap()
            + 1]
        .clone();
        let rp = argvs[0][argvs[0]
            .iter()
            .position(|a| a == "--adminPasswordFile")
            .unwrap()
            + 1]
        .clone();
        assert!(dm.starts_with("/root/.clustermgr-dm-"), "{dm}");
        assert!(rp.starts_with("/root/.clustermgr-repl-"), "{rp}");
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            argvs[0],
            s(&[
                "chroot",
                &cs,
                DSREPLICATION,
                "enable",
                "--host1",
                "10.0.0.1",
                "--port1",
                "4444",
                "--bindDN1",
                "cn=directory manager",
                "--bindPasswordFile1",
                &dm,
                "--replicationPort1",
                "8989",
                "--host2",
                "10.0.0.2",
                "--port2",
                "4444",
                "--bindDN2",
                "cn=directory manager",
                "--bindPasswordFile2",
                &dm,
                "--replicationPort2",
                "8989",
                "--adminUID",
                "admin",
                "--adminPasswordFile",
                &rp,
                "--baseDN",
                "o=gluu",
                "-X",
                "-n"
            ])
        );
        assert_eq!(
            argvs[1],
            s(&[
                "chroot",
                &cs,
                DSCONFIG,
                "--hostname",
                "10.0.0.2",
                "--port",
                "4444",
                "--bindDN",
                "cn=directory manager",
                "--bindPasswordFile",
                &dm,
                "--trustAll",
                "--no-prompt",
                "set-crypto-manager-prop",
                "--set",
                "ssl-encryption:true"
            ])
        );
        assert_eq!(
            argvs[2],
            s(&[
                "chroot",
                &cs,
                DSREPLICATION,
                "initialize-all",
                "--baseDN",
                "o=gluu",
                "--hostname",
                "10.0.0.1",
                "--port",
                "4444",
                "--adminUID",
                "admin",
                "--adminPasswordFile",
                &rp,
                "-X",
                "-n"
            ])
        );
        // The password files are gone; no password in any argv or line.
        assert!(!c.join(dm.trim_start_matches('/')).exists());
        assert!(!c.join(rp.trim_start_matches('/')).exists());
        for a in argvs.iter().flatten() {
            assert!(!a.contains("repl pw") && !a.contains("dm pw"), "{a}");
        }
        while let Ok((_, line)) = rx.try_recv() {
            assert!(
                !line.contains("repl pw") && !line.contains("dm pw"),
                "{line}"
            );
        }
    }
}
