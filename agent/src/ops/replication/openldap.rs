//! OpenLDAP replication (the stand-in's directory: `opt/openldap/etc/slapd.conf` under the
//! container root).
//!
//! slapd.conf includes hook files this module owns, in `opt/openldap/etc/`:
//! `replication-global.conf` (`serverID N`) and `replication-<o>.conf` per base `o=<o>` (the
//! replicator's access rules and limits, one `syncrepl` consumer per peer verified against
//! `replication-ca.pem` with `tls_reqcert=demand`, `multiprovider on`). The hook files hold the
//! replicator's password, so they are written 0600. A candidate configuration (a copy of
//! slapd.conf including candidate hook files) is checked with `slaptest -u` inside Gluu first;
//! only then are the files replaced and the directory alone restarted (the `opendj` service
//! through the layout), and the module waits until LDAPS answers again. No peer: hook files
//! without directives (no replication).

use super::{
    CA_FILE, GLOBAL_HOOK, NO_SUCH_OBJECT, OPENLDAP_ETC, base_hook, check_host, join, open_in_base,
    port_of, read_opt, restart_directory, write_file,
};
use crate::host::Command;
use crate::ops::gluu::Layout;
use crate::ops::ldap::{bracket, connect};
use crate::ops::{Ctx, Log, OpError, run_checked};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clustermgr_proto::{ConfigureReplication, ConfigureReplicationOutput, ReplicationPeer};
use ldap3::{Ldap, LdapError, Mod, Scope, SearchEntry};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::fd::OwnedFd;
use std::time::Duration;

/// slapd's configuration checker, inside Gluu.
pub const SLAPTEST: &str = "/usr/sbin/slaptest";

/// The first line of every hook file.
pub const HEADER: &str =
    "# Written by clustermgr (configure-replication); changes here are overwritten.\n";

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

/// What the hook files should hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hooks {
    pub global: String,
    /// (file name, content) per base, in the request's order.
    pub bases: Vec<(String, String)>,
    /// The CA bundle (None: no peer, the file is left as it is).
    pub ca: Option<String>,
}

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

/// slaptest inside Gluu, checking the configuration `conf` (a path as [`Layout::seen`] gives).
pub(crate) fn slaptest_argv(layout: &Layout, conf: &str) -> Result<Vec<String>, OpError> {
    layout.exec(SLAPTEST, &["-u", "-f", conf])
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
        return set_replicator_password(ldap, dn, entry, password, log).await;
    }
    if res.rc != NO_SUCH_OBJECT {
        return Err(OpError(format!(
            "reading {dn} failed (LDAP result code {})",
            res.rc
        )));
    }
    add_replicator(ldap, dn, password, log).await
}

/// The replicator's password set on its `entry` unless it already is the only one.
async fn set_replicator_password(
    ldap: &mut Ldap,
    dn: &str,
    entry: Option<SearchEntry>,
    password: &[u8],
    log: &mut Log,
) -> Result<bool, OpError> {
    let err = |e: LdapError| OpError(format!("{dn}: {e}"));
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
    Ok(true)
}

/// The replicator's entry added; Ok(false) when its parent is not here.
async fn add_replicator(
    ldap: &mut Ldap,
    dn: &str,
    password: &[u8],
    log: &mut Log,
) -> Result<bool, OpError> {
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
        .map_err(|e| OpError(format!("{dn}: {e}")))?;
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

fn candidate(name: &str) -> String {
    format!(".clustermgr-candidate-{name}")
}

/// A file the replication configuration writes under the directory's etc: its name, content
/// and mode.
type HookFile = (String, Vec<u8>, u32);

pub(super) async fn configure(
    ctx: &Ctx,
    layout: &Layout,
    req: &ConfigureReplication,
    ready_within: Duration,
    log: &mut Log,
) -> Result<ConfigureReplicationOutput, OpError> {
    let ca_seen = layout.seen(&format!("{OPENLDAP_ETC}/{CA_FILE}"));
    let hooks = render_hooks(req, &ca_seen)?;
    check_host("host", req.host.trim())?;
    // The directory answers and slaptest runs inside Gluu: its machine must run.
    layout.ensure_running(&ctx.host, log).await?;

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
    let mut wanted: Vec<HookFile> = Vec::new();
    if let Some(ca) = &hooks.ca {
        wanted.push((CA_FILE.into(), ca.clone().into_bytes(), 0o644));
    }
    for (name, text) in &hooks.bases {
        wanted.push((name.clone(), text.clone().into_bytes(), 0o600));
    }
    wanted.push((GLOBAL_HOOK.into(), hooks.global.clone().into_bytes(), 0o600));
    let (etc, changed_names, conf) = read_changed(ctx, layout, &wanted).await?;
    if changed_names.is_empty() {
        log.line("the replication configuration is already so; nothing to do");
        return Ok(ConfigureReplicationOutput {
            changed: false,
            restarted: false,
        });
    }
    log.line(format!("changing {}", changed_names.join(", ")));
    test_candidates(ctx, layout, &etc, &wanted, conf, &ca_seen, log).await?;

    // Install: the CA bundle, the per-base hooks, the global hook last.
    let names = changed_names.clone();
    join(
        tokio::task::spawn_blocking(move || {
            for (name, content, mode) in &wanted {
                if names.contains(name) {
                    write_file(&etc, name, content, *mode)?;
                }
            }
            Ok(())
        })
        .await,
    )?;
    for n in &changed_names {
        log.line(format!("wrote {OPENLDAP_ETC}/{n}"));
    }
    restart_directory(ctx, layout, super::DirectoryAt::of(req), ready_within, log).await?;
    Ok(ConfigureReplicationOutput {
        changed: true,
        restarted: true,
    })
}

/// The directory's etc opened, the names of the `wanted` files that differ from what it
/// holds (content or mode), and its slapd.conf.
async fn read_changed(
    ctx: &Ctx,
    layout: &Layout,
    wanted: &[HookFile],
) -> Result<(OwnedFd, Vec<String>, Vec<u8>), OpError> {
    let root = ctx.root().clone();
    let l = layout.clone();
    let w = wanted.to_vec();
    join(
        tokio::task::spawn_blocking(move || {
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
            Ok((etc, changed, conf))
        })
        .await,
    )
}

/// A candidate configuration, tested with slaptest before anything is installed: slapd.conf
/// including candidate copies of the `wanted` files (which point at the candidate CA bundle).
/// The candidates are removed either way.
async fn test_candidates(
    ctx: &Ctx,
    layout: &Layout,
    etc: &OwnedFd,
    wanted: &[HookFile],
    conf: Vec<u8>,
    ca_seen: &str,
    log: &mut Log,
) -> Result<(), OpError> {
    let mut conf = String::from_utf8(conf)
        .map_err(|_| OpError(format!("{OPENLDAP_ETC}/slapd.conf is not text")))?;
    for (name, _, _) in wanted {
        let real = layout.seen(&format!("{OPENLDAP_ETC}/{name}"));
        let temp = layout.seen(&format!("{OPENLDAP_ETC}/{}", candidate(name)));
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
    let dup = || {
        etc.try_clone()
            .map_err(|e| OpError(format!("{OPENLDAP_ETC}: {e}")))
    };
    let etc2 = dup()?;
    let mut files: Vec<(String, Vec<u8>)> = wanted
        .iter()
        .map(|(n, c, _)| {
            // The candidate hooks point at the candidate CA bundle.
            let text = String::from_utf8_lossy(c).replace(
                ca_seen,
                &layout.seen(&format!("{OPENLDAP_ETC}/{}", candidate(CA_FILE))),
            );
            (candidate(n), text.into_bytes())
        })
        .collect();
    files.push((candidate("slapd.conf"), conf.into_bytes()));
    let mut candidates = Candidates {
        dir: None,
        names: files.iter().map(|(n, _)| n.clone()).collect(),
    };
    join(
        tokio::task::spawn_blocking(move || {
            for (n, c) in &files {
                write_file(&etc2, n, c, 0o600)?;
            }
            Ok(())
        })
        .await,
    )?;
    candidates.dir = Some(dup()?);
    let test = layout.seen(&format!("{OPENLDAP_ETC}/{}", candidate("slapd.conf")));
    let r = run_checked(
        &ctx.host,
        &Command::new(slaptest_argv(layout, &test)?),
        log,
        "slaptest",
    )
    .await;
    drop(candidates);
    r.map(|_| ())
}

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
