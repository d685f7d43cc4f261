//! Changes in the node's own directory (LDAPS, bound as `cn=directory manager`):
//! oxAuth's dynamic configuration (`SetOxAuthConfig`) and a host rename (`RenameGluuHost`).
//!
//! **Trust.** A Gluu node's directory has a self-signed certificate. The connection is accepted
//! only when the server presents, byte for byte, the certificate the node keeps for its
//! directory under the Gluu root (`/etc/certs/opendj.crt`, which Gluu's setup exports from the
//! running server, else `/etc/certs/openldap.crt`), read through a directory handle that never
//! follows a link. Host name checks do not apply: the certificate itself is pinned.
//!
//! **Writes.** oxAuth reloads its configuration when `oxRevision` changes, so a configuration
//! change and its revision are one modify. The revision is changed as "delete the value read,
//! add the next one": if someone else changed it in between, the server refuses the modify and
//! the change is retried on fresh data.

use super::gluu::Layout;
use super::{Ctx, Log, OpError};
use clustermgr_proto::{
    RenameGluuHost, RenameGluuHostOutput, SetOxAuthConfig, SetOxAuthConfigOutput,
};
use clustermgr_shared::safefs::{self, FilePerms, SafeFsError};
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Mod, Scope, SearchEntry};
use rustls::ClientConfig;
use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub const ADMIN_DN: &str = "cn=directory manager";
pub const OXAUTH_DN: &str = "ou=oxauth,ou=configuration,o=gluu";
pub const GLUU_BASE: &str = "o=gluu";
const DEFAULT_PORT: u32 = 1636;
const TIMEOUT: Duration = Duration::from_secs(30);
/// The directory's certificate, under the Gluu root, in order of preference.
const DIRECTORY_CERTS: &[&str] = &["opendj.crt", "openldap.crt"];
/// How often a configuration change is retried when the revision moved under it.
pub(crate) const ATTEMPTS: usize = 3;
/// LDAP result codes: the value to delete was not there / the value to add already was.
const NO_SUCH_ATTRIBUTE: u32 = 16;
const ATTRIBUTE_OR_VALUE_EXISTS: u32 = 20;

/// What one read of the oxAuth configuration entry decided: the guarded modifications to write
/// ([`revision_mods`]), none when the entry already is as asked.
pub(crate) struct OxauthPlan<T> {
    pub mods: Vec<Mod<String>>,
    /// What the caller reports either way.
    pub detail: T,
}

/// How a change of the oxAuth configuration entry ended.
pub(crate) struct OxauthChanged<T> {
    pub changed: bool,
    /// The entry's oxRevision after the change.
    pub revision: u64,
    pub detail: T,
}

/// Changes the oxAuth configuration entry on the node's directory: `plan` says what to write
/// given the entry as read, the write is guarded by the oxRevision it read, and when another writer
/// changed the entry meanwhile it is read and planned again (up to [`ATTEMPTS`] times). One
/// connection, unbound at the end either way.
pub(crate) async fn change_oxauth<T>(
    ctx: &Ctx,
    (host, port, password): (&str, u32, &[u8]),
    log: &mut Log,
    mut plan: impl FnMut(OxauthEntry, &mut Log) -> Result<OxauthPlan<T>, OpError>,
) -> Result<OxauthChanged<T>, OpError> {
    let mut ldap = connect(ctx, host, port, password, log).await?;
    let result = async {
        for _ in 0..ATTEMPTS {
            let entry = read_oxauth(&mut ldap).await?;
            let rev = entry.revision.unwrap_or(0);
            let p = plan(entry, log)?;
            if p.mods.is_empty() {
                return Ok(OxauthChanged {
                    changed: false,
                    revision: rev,
                    detail: p.detail,
                });
            }
            if modify_oxauth(&mut ldap, p.mods, log).await? {
                log.line(format!("oxRevision {rev} -> {}", rev + 1));
                return Ok(OxauthChanged {
                    changed: true,
                    revision: rev + 1,
                    detail: p.detail,
                });
            }
        }
        Err(OpError(format!(
            "{OXAUTH_DN} kept changing during {ATTEMPTS} attempts; try again"
        )))
    }
    .await;
    let _ = ldap.unbind().await;
    result
}

/// One revision-guarded modify of the oxAuth configuration entry (`mods` from
/// [`revision_mods`]): `Ok(true)` applied, `Ok(false)` another writer changed the entry
/// meanwhile (read it again and retry), an error when the directory refused it.
async fn modify_oxauth(
    ldap: &mut Ldap,
    mods: Vec<Mod<String>>,
    log: &mut Log,
) -> Result<bool, OpError> {
    let r = ldap
        .modify(OXAUTH_DN, mods)
        .await
        .map_err(|e| ldap_err(OXAUTH_DN, e))?;
    match r.rc {
        0 => Ok(true),
        NO_SUCH_ATTRIBUTE | ATTRIBUTE_OR_VALUE_EXISTS => {
            log.line("the configuration changed meanwhile; reading it again");
            Ok(false)
        }
        rc => Err(OpError(format!(
            "modify of {OXAUTH_DN} refused (LDAP result code {rc})"
        ))),
    }
}

/// Replaces `attr` of the entry `dn` with `values`; an error when the directory refuses it
/// (its result code only, never its text).
pub(crate) async fn replace(
    ldap: &mut Ldap,
    dn: &str,
    attr: &str,
    values: HashSet<String>,
) -> Result<(), OpError> {
    let r = ldap
        .modify(dn, vec![Mod::Replace(attr.to_string(), values)])
        .await
        .map_err(|e| ldap_err(dn, e))?;
    if r.rc != 0 {
        return Err(OpError(format!(
            "modify of {dn} refused (LDAP result code {})",
            r.rc
        )));
    }
    Ok(())
}

fn ldap_err(what: &str, e: impl std::fmt::Display) -> OpError {
    OpError(format!("{what}: {e}"))
}

/// Opens the Gluu root below the agent's root on handles.
fn open_base(root: &Path, layout: &Layout) -> Result<std::os::fd::OwnedFd, OpError> {
    let handle = safefs::open_dir(root).map_err(|e| OpError(format!("{}: {e}", root.display())))?;
    let rel = layout
        .base
        .strip_prefix(root)
        .map_err(|_| OpError("the Gluu root is not under the agent's root".into()))?;
    safefs::open_dir_beneath(&handle, rel, false)
        .map_err(|e| OpError(format!("{}: {e}", layout.base.display())))
}

/// The directory's own certificate (DER) and where it was found.
fn directory_cert(
    root: &Path,
    layout: &Layout,
) -> Result<(rustls::pki_types::CertificateDer<'static>, String), OpError> {
    let base = open_base(root, layout)?;
    let certs = safefs::open_dir_beneath(&base, Path::new("etc/certs"), false)
        .map_err(|e| OpError(format!("etc/certs: {e}")))?;
    for name in DIRECTORY_CERTS {
        let shown = format!("/etc/certs/{name}");
        match safefs::read_regular(&certs, OsStr::new(name), 1024 * 1024) {
            Ok((pem, _)) => {
                let pem = String::from_utf8_lossy(&pem);
                let cert = clustermgr_shared::tls::certs_from_pem(&pem)
                    .ok()
                    .and_then(|c| c.into_iter().next())
                    .ok_or_else(|| OpError(format!("{shown} holds no certificate")))?;
                return Ok((cert, shown));
            }
            Err(SafeFsError::NotFound(_)) => continue,
            Err(e) => return Err(OpError(format!("{shown}: {e}"))),
        }
    }
    Err(OpError(format!(
        "the directory's certificate is missing (none of /etc/certs/{})",
        DIRECTORY_CERTS.join(", /etc/certs/")
    )))
}

fn tls(cert: rustls::pki_types::CertificateDer<'static>) -> Result<Arc<ClientConfig>, OpError> {
    let config = ClientConfig::builder_with_provider(clustermgr_shared::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| OpError(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(clustermgr_shared::tls::ExactCertVerifier::new(cert))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Connects to the node's directory over LDAPS and binds as the directory manager.
pub(crate) async fn connect(
    ctx: &Ctx,
    host: &str,
    port: u32,
    password: &[u8],
    log: &mut Log,
) -> Result<Ldap, OpError> {
    if host.trim().is_empty() {
        return Err(OpError("the directory's host is required".into()));
    }
    let port = if port == 0 { DEFAULT_PORT } else { port };
    if port > u32::from(u16::MAX) {
        return Err(OpError(format!("port {port} is not a TCP port")));
    }
    let password = String::from_utf8(password.to_vec())
        .map_err(|_| OpError("the directory manager's password is not UTF-8".into()))?;
    if password.is_empty() {
        return Err(OpError(
            "the directory manager's password is required".into(),
        ));
    }
    log.secret(&password);
    let layout = Layout::detect(&ctx.host)?;
    let root = ctx.root().clone();
    let (cert, file) = tokio::task::spawn_blocking(move || directory_cert(&root, &layout))
        .await
        .map_err(|e| OpError(e.to_string()))??;
    let url = format!("ldaps://{}:{port}", bracket(host.trim()));
    log.line(format!(
        "connecting to {url} (trusting only the certificate in {file})"
    ));
    let settings = LdapConnSettings::new()
        .set_config(tls(cert)?)
        .set_conn_timeout(TIMEOUT);
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &url)
        .await
        .map_err(|e| ldap_err(&url, e))?;
    ldap3::drive!(conn);
    ldap.with_timeout(TIMEOUT);
    let r = ldap
        .simple_bind(ADMIN_DN, &password)
        .await
        .map_err(|e| ldap_err("bind", e))?;
    // The result code only, never the server's text.
    if r.rc != 0 {
        return Err(OpError(format!(
            "bind as {ADMIN_DN} refused (LDAP result code {})",
            r.rc
        )));
    }
    Ok(ldap)
}

pub(crate) fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// What a configuration change does to the JSON: the keys whose value differs, and the result.
pub fn apply_values(
    current: &str,
    values: &BTreeMap<String, serde_json::Value>,
) -> Result<(Vec<String>, String), OpError> {
    let mut conf: serde_json::Value = serde_json::from_str(current)
        .map_err(|e| OpError(format!("oxAuthConfDynamic is not JSON: {e}")))?;
    let obj = conf
        .as_object_mut()
        .ok_or_else(|| OpError("oxAuthConfDynamic is not a JSON object".into()))?;
    let mut changed = Vec::new();
    for (k, v) in values {
        if obj.get(k) != Some(v) {
            obj.insert(k.clone(), v.clone());
            changed.push(k.clone());
        }
    }
    let text = serde_json::to_string(&conf).map_err(|e| OpError(e.to_string()))?;
    Ok((changed, text))
}

/// The oxAuth configuration entry as read: its web keys (empty when it has none), its dynamic
/// configuration and its revision.
pub(crate) struct OxauthEntry {
    pub web_keys: String,
    pub dynamic: String,
    pub revision: Option<u64>,
}

pub(crate) async fn read_oxauth(ldap: &mut Ldap) -> Result<OxauthEntry, OpError> {
    let (entries, _) = ldap
        .search(
            OXAUTH_DN,
            Scope::Base,
            "(objectClass=*)",
            vec!["oxAuthConfWebKeys", "oxAuthConfDynamic", "oxRevision"],
        )
        .await
        .map_err(|e| ldap_err(OXAUTH_DN, e))?
        .success()
        .map_err(|e| ldap_err(OXAUTH_DN, e))?;
    let entry = entries
        .into_iter()
        .next()
        .map(SearchEntry::construct)
        .ok_or_else(|| OpError(format!("{OXAUTH_DN} does not exist")))?;
    let first = |a: &str| entry.attrs.get(a).and_then(|v| v.first()).cloned();
    let revision = match first("oxRevision") {
        None => None,
        Some(r) => Some(
            r.trim()
                .parse::<u64>()
                .map_err(|_| OpError(format!("oxRevision {r:?} is not a number")))?,
        ),
    };
    Ok(OxauthEntry {
        web_keys: first("oxAuthConfWebKeys").unwrap_or_default(),
        dynamic: first("oxAuthConfDynamic")
            .ok_or_else(|| OpError(format!("{OXAUTH_DN} has no oxAuthConfDynamic")))?,
        revision,
    })
}

/// The modifications that write `text` and move the revision from `old` to `old + 1`, only if
/// it is still `old`.
pub(crate) fn revision_mods(attr: &str, text: String, old: Option<u64>) -> Vec<Mod<String>> {
    let next = old.map_or(1, |r| r + 1);
    let mut mods = vec![Mod::Replace(attr.to_string(), HashSet::from([text]))];
    match old {
        Some(r) => {
            mods.push(Mod::Delete(
                "oxRevision".into(),
                HashSet::from([r.to_string()]),
            ));
            mods.push(Mod::Add(
                "oxRevision".into(),
                HashSet::from([next.to_string()]),
            ));
        }
        None => mods.push(Mod::Replace(
            "oxRevision".into(),
            HashSet::from([next.to_string()]),
        )),
    }
    mods
}

pub async fn set_oxauth_config(
    ctx: &Ctx,
    req: SetOxAuthConfig,
    log: &mut Log,
) -> Result<SetOxAuthConfigOutput, OpError> {
    if req.values.is_empty() {
        return Err(OpError("no configuration value to set".into()));
    }
    let mut values = BTreeMap::new();
    for (k, v) in &req.values {
        if k.is_empty() {
            return Err(OpError("an empty configuration key".into()));
        }
        // serde_json's message names a position, never the text.
        let parsed: serde_json::Value = serde_json::from_str(v)
            .map_err(|e| OpError(format!("the value of {k} is not JSON: {e}")))?;
        values.insert(k.clone(), parsed);
    }
    let done = change_oxauth(
        ctx,
        (&req.host, req.port, &req.password),
        log,
        |entry, log| {
            let revision = entry.revision;
            let (changed, text) = apply_values(&entry.dynamic, &values)?;
            if changed.is_empty() {
                log.line(format!(
                    "oxAuthConfDynamic already has {} (revision {}); nothing to do",
                    keys(&values),
                    revision.unwrap_or(0)
                ));
                return Ok(OxauthPlan {
                    mods: Vec::new(),
                    detail: (),
                });
            }
            // Keys only: a value may be a secret (e.g. keyStoreSecret).
            log.line(format!(
                "setting {} in oxAuthConfDynamic",
                changed.join(", ")
            ));
            Ok(OxauthPlan {
                mods: revision_mods("oxAuthConfDynamic", text, revision),
                detail: (),
            })
        },
    )
    .await?;
    Ok(SetOxAuthConfigOutput {
        changed: done.changed,
        revision: done.revision,
    })
}

fn keys(values: &BTreeMap<String, serde_json::Value>) -> String {
    values.keys().cloned().collect::<Vec<_>>().join(", ")
}

mod rename;
pub use rename::{RENAME_FILES, rename_host, rename_in_hosts, replace_host};

#[cfg(test)]
mod tests;
