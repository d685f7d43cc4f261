//! oxAuth key rotation on a node: the private keys in oxAuth's keystore
//! (`UpdateOxauthKeystore`), the public keys in the node's directory (`SetWebKeys`), and what the
//! node's JWKS serves (`ProbeJwks`).
//!
//! **Keystores.** The stand-in keeps oxAuth's private keys in `/etc/certs/oxauth-keys.json`
//! (`{"<kid>": "<PKCS#8 PEM>"}`, mode 0600), read and replaced on directory handles. Gluu 4.x keeps
//! them in `/etc/certs/oxauth-keys.jks`: each key and its certificate become a PKCS#12 file
//! (openssl, the password on stdin) imported with `keytool -importkeystore` under its kid, and
//! old kids are deleted with `keytool -delete`; the store password travels in the environment
//! (`-storepass:env`), never in argv.
//!
//! **Which keystore, which password.** The controller sends `KEYSTORE_KIND_DETECT`: the node
//! decides from what it has (`oxauth-keys.jks` under the Gluu root: JKS, else `oxauth-keys.json`:
//! the stand-in's JSON, else an error). The JKS password is oxAuth's own `keyStoreSecret`, read
//! from oxAuthConfDynamic in the node's directory (LDAPS, directory manager) unless the request
//! gives one; it is masked in the job's log and reaches keytool and openssl only through the
//! environment and stdin.
//!
//! **Web keys.** oxAuth reloads oxAuthConfWebKeys only when oxRevision changes: the new keys,
//! `keyRegenerationEnabled=false` and the revision are one modify, retried on fresh data when
//! the revision moved meanwhile (see `ldap.rs`).

use super::gluu::Layout;
use super::ldap::{self, OXAUTH_DN};
use super::{Ctx, Log, OpError, run_checked};
use crate::host::Command;
use clustermgr_proto::{
    KeystoreKind, OxauthPrivateKey, UpdateOxauthKeystore, UpdateOxauthKeystoreOutput,
};
use clustermgr_shared::safefs::{self, FilePerms, SafeFsError};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::Path;

pub const CERTS_DIR: &str = "etc/certs";
pub const JSON_KEYSTORE: &str = "oxauth-keys.json";
pub const JKS_KEYSTORE: &str = "/etc/certs/oxauth-keys.jks";
const KEYTOOL: &str = super::certs::KEYTOOL;
const OPENSSL: &str = "/usr/bin/openssl";
/// The environment variable keytool reads the store password from.
const PASS_ENV: &str = "CLUSTERMGR_KEYSTORE_PASS";
const MAX_KEYSTORE: u64 = 4 * 1024 * 1024;

fn fs_err(path: &str, e: SafeFsError) -> OpError {
    OpError(format!("{path}: {e}"))
}

fn check_kid(kid: &str) -> Result<(), OpError> {
    let ok = !kid.is_empty()
        && kid.len() <= 128
        && kid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(OpError(format!("{kid:?} is not a key id")))
    }
}

// ----- keystore -----

fn certs_dir(root: &Path, layout: &Layout) -> Result<OwnedFd, OpError> {
    let handle = safefs::open_dir(root).map_err(|e| fs_err(&root.display().to_string(), e))?;
    let rel = layout
        .base
        .strip_prefix(root)
        .map_err(|_| OpError("the Gluu root is not under the agent's root".into()))?;
    safefs::open_dir_beneath(&handle, &rel.join(CERTS_DIR), false).map_err(|e| fs_err(CERTS_DIR, e))
}

/// The JSON keystore after adding `add` and keeping only `keep` (when not empty); whether it
/// changed.
pub fn merge_json(
    current: &BTreeMap<String, String>,
    add: &[OxauthPrivateKey],
    keep: &[String],
) -> Result<(BTreeMap<String, String>, bool), OpError> {
    let mut next = current.clone();
    for k in add {
        check_kid(&k.kid)?;
        let pem = String::from_utf8(k.pkcs8_pem.clone())
            .map_err(|_| OpError(format!("the key {} is not PEM", k.kid)))?;
        if !pem.starts_with("-----BEGIN PRIVATE KEY-----") {
            return Err(OpError(format!("the key {} is not a PKCS#8 PEM", k.kid)));
        }
        next.insert(k.kid.clone(), pem);
    }
    if !keep.is_empty() {
        next.retain(|kid, _| keep.contains(kid));
    }
    let changed = &next != current;
    Ok((next, changed))
}

fn update_json(
    ctx: &Ctx,
    layout: &Layout,
    req: &UpdateOxauthKeystore,
) -> Result<(Vec<String>, bool), OpError> {
    let dir = certs_dir(ctx.root(), layout)?;
    let shown = format!("/{CERTS_DIR}/{JSON_KEYSTORE}");
    let name = OsStr::new(JSON_KEYSTORE);
    let (current, perms) = match safefs::stat_entry(&dir, name).map_err(|e| fs_err(&shown, e))? {
        None => (BTreeMap::new(), None),
        Some(_) => {
            let (bytes, st) =
                safefs::read_regular(&dir, name, MAX_KEYSTORE).map_err(|e| fs_err(&shown, e))?;
            let map: BTreeMap<String, String> = serde_json::from_slice(&bytes)
                .map_err(|e| OpError(format!("{shown} is not a JSON object of keys: {e}")))?;
            (
                map,
                Some(FilePerms {
                    mode: 0o600,
                    uid: Some(st.st_uid),
                    gid: Some(st.st_gid),
                }),
            )
        }
    };
    let (next, changed) = merge_json(&current, &req.add, &req.keep_kids)?;
    let kids: Vec<String> = next.keys().cloned().collect();
    if changed {
        let bytes = serde_json::to_vec_pretty(&next).map_err(|e| OpError(e.to_string()))?;
        let perms = perms.unwrap_or(FilePerms {
            mode: 0o600,
            uid: None,
            gid: None,
        });
        safefs::replace_file(&dir, name, &bytes, perms).map_err(|e| fs_err(&shown, e))?;
    }
    Ok((kids, changed))
}

/// openssl's argv bundling a key and its certificate as PKCS#12 (export password on stdin).
pub fn pkcs12_argv(
    layout: &Layout,
    key: &str,
    cert: &str,
    kid: &str,
    out: &str,
) -> Result<Vec<String>, OpError> {
    let (key, cert, out) = (layout.seen(key), layout.seen(cert), layout.seen(out));
    layout.exec(
        OPENSSL,
        &[
            "pkcs12", "-export", "-inkey", &key, "-in", &cert, "-name", kid, "-out", &out,
            "-passout", "stdin",
        ],
    )
}

/// keytool's argv importing the PKCS#12 file's entry `kid` into oxauth-keys.jks.
pub fn import_argv(layout: &Layout, p12: &str, kid: &str) -> Result<Vec<String>, OpError> {
    let (p12, store) = (layout.seen(p12), layout.seen(JKS_KEYSTORE));
    let env = PASS_ENV.to_string();
    layout.exec(
        KEYTOOL,
        &[
            "-importkeystore",
            "-srckeystore",
            &p12,
            "-srcstoretype",
            "PKCS12",
            "-srcstorepass:env",
            &env,
            "-srcalias",
            kid,
            "-destkeystore",
            &store,
            "-deststoretype",
            "JKS",
            "-deststorepass:env",
            &env,
            "-destalias",
            kid,
            "-noprompt",
        ],
    )
}

/// keytool's argv deleting `kid` from oxauth-keys.jks.
pub fn delete_argv(layout: &Layout, kid: &str) -> Result<Vec<String>, OpError> {
    let store = layout.seen(JKS_KEYSTORE);
    layout.exec(
        KEYTOOL,
        &[
            "-delete",
            "-alias",
            kid,
            "-keystore",
            &store,
            "-storepass:env",
            PASS_ENV,
        ],
    )
}

/// keytool's argv listing oxauth-keys.jks.
pub fn list_argv(layout: &Layout) -> Result<Vec<String>, OpError> {
    let store = layout.seen(JKS_KEYSTORE);
    layout.exec(
        KEYTOOL,
        &["-list", "-keystore", &store, "-storepass:env", PASS_ENV],
    )
}

/// The aliases of `keytool -list` output (`alias, date, PrivateKeyEntry,`).
pub fn listed_aliases(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| l.contains("PrivateKeyEntry") || l.contains("trustedCertEntry"))
        .filter_map(|l| l.split(',').next())
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect()
}

/// The keystore kind to use on this node: `kind` itself, or for `Detect` the keystore file
/// present under the Gluu root (JKS first).
fn resolve_kind(ctx: &Ctx, layout: &Layout, kind: KeystoreKind) -> Result<KeystoreKind, OpError> {
    match kind {
        KeystoreKind::Json | KeystoreKind::Jks => Ok(kind),
        KeystoreKind::Unspecified => Err(OpError("the keystore kind is required".into())),
        KeystoreKind::Detect => {
            let dir = certs_dir(ctx.root(), layout)?;
            let jks = JKS_KEYSTORE.rsplit('/').next().unwrap_or(JKS_KEYSTORE);
            let present = |name: &str| {
                safefs::stat_entry(&dir, OsStr::new(name))
                    .map(|st| st.is_some())
                    .map_err(|e| fs_err(&format!("/{CERTS_DIR}/{name}"), e))
            };
            if present(jks)? {
                Ok(KeystoreKind::Jks)
            } else if present(JSON_KEYSTORE)? {
                Ok(KeystoreKind::Json)
            } else {
                Err(OpError(format!(
                    "no oxAuth keystore on this node: neither {JKS_KEYSTORE} nor /{CERTS_DIR}/{JSON_KEYSTORE} under {}",
                    layout.base.display()
                )))
            }
        }
    }
}

/// oxAuth's `keyStoreSecret` in an oxAuthConfDynamic document. Errors never quote the document.
pub fn keystore_secret(dynamic: &str) -> Result<String, OpError> {
    let conf: serde_json::Value = serde_json::from_str(dynamic)
        .map_err(|e| OpError(format!("oxAuthConfDynamic is not JSON: {e}")))?;
    match conf.get("keyStoreSecret") {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(serde_json::Value::String(_)) | None | Some(serde_json::Value::Null) => Err(OpError(
            "oxAuthConfDynamic has no keyStoreSecret: the JKS keystore's password is unknown"
                .into(),
        )),
        Some(_) => Err(OpError(
            "keyStoreSecret in oxAuthConfDynamic is not a string".into(),
        )),
    }
}

/// Where the agent reads oxAuthConfDynamic from (the node's directory; a fixed document in
/// tests).
trait DynamicSource {
    async fn oxauth_dynamic(
        &self,
        ctx: &Ctx,
        req: &UpdateOxauthKeystore,
        log: &mut Log,
    ) -> Result<String, OpError>;
}

/// The node's own directory, over LDAPS as the directory manager (`req.host`, `req.port`,
/// `req.password`).
struct Directory;

impl DynamicSource for Directory {
    async fn oxauth_dynamic(
        &self,
        ctx: &Ctx,
        req: &UpdateOxauthKeystore,
        log: &mut Log,
    ) -> Result<String, OpError> {
        let mut l = ldap::connect(ctx, &req.host, req.port, &req.password, log).await?;
        let read = ldap::read_oxauth(&mut l).await;
        let _ = l.unbind().await;
        Ok(read?.dynamic)
    }
}

/// The JKS password: the one given with the request, else oxAuth's keyStoreSecret. Masked in
/// the log before anything else is logged.
async fn jks_password(
    ctx: &Ctx,
    req: &UpdateOxauthKeystore,
    source: &impl DynamicSource,
    log: &mut Log,
) -> Result<String, OpError> {
    if !req.keystore_password.is_empty() {
        let password = String::from_utf8(req.keystore_password.clone())
            .map_err(|_| OpError("the keystore password is not UTF-8".into()))?;
        log.secret(&password);
        log.line("the keystore password is the one given with the request");
        return Ok(password);
    }
    log.line(format!(
        "reading oxAuth's keyStoreSecret from oxAuthConfDynamic of {OXAUTH_DN}"
    ));
    let dynamic = source.oxauth_dynamic(ctx, req, log).await?;
    let password = keystore_secret(&dynamic)?;
    log.secret(&password);
    Ok(password)
}

async fn update_jks(
    ctx: &Ctx,
    layout: &Layout,
    req: &UpdateOxauthKeystore,
    password: &str,
    log: &mut Log,
) -> Result<(Vec<String>, bool), OpError> {
    let host = &ctx.host;
    // keytool and openssl are Gluu's own: they run inside (the machine started if need be).
    layout.ensure_running(host, log).await?;
    let with_pass = |argv: Vec<String>| Command::new(argv).env(PASS_ENV, password);
    let listed = run_checked(host, &with_pass(list_argv(layout)?), log, "keytool -list").await?;
    let mut kids = listed_aliases(&listed.stdout);
    let mut changed = false;
    for k in &req.add {
        check_kid(&k.kid)?;
        if kids.iter().any(|a| a.eq_ignore_ascii_case(&k.kid)) {
            log.line(format!("{}: already in the keystore", k.kid));
            continue;
        }
        let key = format!("/{CERTS_DIR}/.rotation-{}.key", k.kid);
        let cert = format!("/{CERTS_DIR}/.rotation-{}.crt", k.kid);
        let p12 = format!("/{CERTS_DIR}/.rotation-{}.p12", k.kid);
        let dir = certs_dir(ctx.root(), layout)?;
        let perms = FilePerms {
            mode: 0o600,
            uid: None,
            gid: None,
        };
        let name = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
        safefs::replace_file(&dir, OsStr::new(&name(&key)), &k.pkcs8_pem, perms)
            .map_err(|e| fs_err(&key, e))?;
        safefs::replace_file(
            &dir,
            OsStr::new(&name(&cert)),
            k.certificate_pem.as_bytes(),
            perms,
        )
        .map_err(|e| fs_err(&cert, e))?;
        let result = async {
            let export = Command::new(pkcs12_argv(layout, &key, &cert, &k.kid, &p12)?)
                .stdin(format!("{password}\n").into_bytes());
            run_checked(host, &export, log, "openssl pkcs12 -export").await?;
            run_checked(
                host,
                &with_pass(import_argv(layout, &p12, &k.kid)?),
                log,
                &format!("keytool -importkeystore {}", k.kid),
            )
            .await
        }
        .await;
        for f in [&key, &cert, &p12] {
            let _ = nix::unistd::unlinkat(
                &dir,
                name(f).as_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
        result?;
        kids.push(k.kid.clone());
        changed = true;
    }
    if !req.keep_kids.is_empty() {
        for alias in kids.clone() {
            if req.keep_kids.iter().any(|k| k.eq_ignore_ascii_case(&alias)) {
                continue;
            }
            run_checked(
                host,
                &with_pass(delete_argv(layout, &alias)?),
                log,
                &format!("keytool -delete {alias}"),
            )
            .await?;
            kids.retain(|a| a != &alias);
            changed = true;
        }
    }
    Ok((kids, changed))
}

pub async fn update_keystore(
    ctx: &Ctx,
    req: UpdateOxauthKeystore,
    log: &mut Log,
) -> Result<UpdateOxauthKeystoreOutput, OpError> {
    update_keystore_with(ctx, req, &Directory, log).await
}

async fn update_keystore_with(
    ctx: &Ctx,
    req: UpdateOxauthKeystore,
    source: &impl DynamicSource,
    log: &mut Log,
) -> Result<UpdateOxauthKeystoreOutput, OpError> {
    for k in &req.keep_kids {
        check_kid(k)?;
    }
    for k in &req.add {
        check_kid(&k.kid)?;
        if let Ok(pem) = std::str::from_utf8(&k.pkcs8_pem) {
            log.secret(pem.trim());
        }
    }
    if let Ok(pw) = std::str::from_utf8(&req.password) {
        log.secret(pw);
    }
    let layout = Layout::detect(&ctx.host)?;
    let kind = resolve_kind(ctx, &layout, req.kind())?;
    if req.kind() == KeystoreKind::Detect {
        log.line(match kind {
            KeystoreKind::Jks => format!("keystore: {JKS_KEYSTORE} (JKS, changed with keytool)"),
            _ => format!("keystore: /{CERTS_DIR}/{JSON_KEYSTORE} (JSON)"),
        });
    }
    let (kids, changed) = match kind {
        KeystoreKind::Json => {
            let c = ctx.clone();
            let l = layout.clone();
            let r = req.clone();
            tokio::task::spawn_blocking(move || update_json(&c, &l, &r))
                .await
                .map_err(|e| OpError(format!("updating the keystore: {e}")))??
        }
        KeystoreKind::Jks => {
            let password = jks_password(ctx, &req, source, log).await?;
            update_jks(ctx, &layout, &req, &password, log).await?
        }
        KeystoreKind::Unspecified | KeystoreKind::Detect => {
            return Err(OpError("the keystore kind is required".into()));
        }
    };
    log.line(format!(
        "oxAuth keystore {}: {}",
        if changed { "updated" } else { "unchanged" },
        kids.join(", ")
    ));
    Ok(UpdateOxauthKeystoreOutput { kids, changed })
}

mod web;
pub use web::{apply_web_keys, jwks_ok, kids_of, probe_jwks, set_web_keys, web_keys_dynamic};

#[cfg(test)]
mod tests;
