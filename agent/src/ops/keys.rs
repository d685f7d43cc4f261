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
    KeystoreKind, OxauthPrivateKey, ProbeJwks, ProbeJwksOutput, SetWebKeys, SetWebKeysOutput,
    UpdateOxauthKeystore, UpdateOxauthKeystoreOutput,
};
use clustermgr_shared::safefs::{self, FilePerms, SafeFsError};
use ldap3::{Ldap, Scope, SearchEntry};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

pub const CERTS_DIR: &str = "etc/certs";
pub const JSON_KEYSTORE: &str = "oxauth-keys.json";
pub const JKS_KEYSTORE: &str = "/etc/certs/oxauth-keys.jks";
const KEYTOOL: &str = super::certs::KEYTOOL;
const OPENSSL: &str = "/usr/bin/openssl";
/// The environment variable keytool reads the store password from.
const PASS_ENV: &str = "CLUSTERMGR_KEYSTORE_PASS";
const MAX_KEYSTORE: u64 = 4 * 1024 * 1024;
const ATTEMPTS: usize = 3;
const NO_SUCH_ATTRIBUTE: u32 = 16;
const ATTRIBUTE_OR_VALUE_EXISTS: u32 = 20;
const MAX_WITHIN: Duration = Duration::from_secs(1800);
const ATTEMPT_EVERY: Duration = Duration::from_millis(500);

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
        Ok(read?.0)
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

// ----- web keys -----

/// oxAuthConfWebKeys after the change: `add` appended when new, only `keep` kept (when not
/// empty), `first` moved first in that order. Errors name positions, never key material.
pub fn apply_web_keys(
    current: &str,
    add: &[String],
    keep: &[String],
    first: &[String],
) -> Result<String, OpError> {
    let mut doc: serde_json::Value = if current.trim().is_empty() {
        serde_json::json!({"keys": []})
    } else {
        serde_json::from_str(current)
            .map_err(|e| OpError(format!("oxAuthConfWebKeys is not JSON: {e}")))?
    };
    let keys = doc
        .get_mut("keys")
        .and_then(|k| k.as_array_mut())
        .ok_or_else(|| OpError("oxAuthConfWebKeys has no \"keys\" array".into()))?;
    let kid_of = |v: &serde_json::Value| v.get("kid").and_then(|k| k.as_str()).map(str::to_string);
    for a in add {
        let v: serde_json::Value =
            serde_json::from_str(a).map_err(|e| OpError(format!("a new key is not JSON: {e}")))?;
        let kid = kid_of(&v).ok_or_else(|| OpError("a new key has no kid".into()))?;
        check_kid(&kid)?;
        if v.get("d").is_some() || v.get("p").is_some() {
            return Err(OpError(format!("the key {kid} carries private parameters")));
        }
        if !keys.iter().any(|k| kid_of(k).as_deref() == Some(&kid)) {
            keys.push(v);
        }
    }
    if !keep.is_empty() {
        keys.retain(|k| kid_of(k).is_some_and(|kid| keep.contains(&kid)));
    }
    if !first.is_empty() {
        let rank = |k: &serde_json::Value| {
            kid_of(k)
                .and_then(|kid| first.iter().position(|f| *f == kid))
                .unwrap_or(first.len())
        };
        // Stable: the others keep their order.
        keys.sort_by_key(rank);
    }
    serde_json::to_string(&doc).map_err(|e| OpError(e.to_string()))
}

pub fn kids_of(web_keys: &str) -> Vec<String> {
    serde_json::from_str::<serde_json::Value>(web_keys)
        .ok()
        .and_then(|d| d.get("keys").and_then(|k| k.as_array()).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|k| k.get("kid").and_then(|k| k.as_str()).map(str::to_string))
        .collect()
}

struct OxauthEntry {
    web_keys: String,
    dynamic: String,
    revision: Option<u64>,
}

async fn read_entry(l: &mut Ldap) -> Result<OxauthEntry, OpError> {
    let err = |e: ldap3::LdapError| OpError(format!("{OXAUTH_DN}: {e}"));
    let (entries, _) = l
        .search(
            OXAUTH_DN,
            Scope::Base,
            "(objectClass=*)",
            vec!["oxAuthConfWebKeys", "oxAuthConfDynamic", "oxRevision"],
        )
        .await
        .map_err(err)?
        .success()
        .map_err(err)?;
    let e = entries
        .into_iter()
        .next()
        .map(SearchEntry::construct)
        .ok_or_else(|| OpError(format!("{OXAUTH_DN} does not exist")))?;
    let first = |a: &str| e.attrs.get(a).and_then(|v| v.first()).cloned();
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

/// oxAuthConfDynamic as `SetWebKeys` leaves it: `keyRegenerationEnabled=false` (else oxAuth
/// would replace the keys itself), every other value as the node has it. In particular
/// `webKeysStorage` (Gluu's keystore mode) and `keyStoreSecret` (the JKS password the keystore
/// steps read) are never written.
pub fn web_keys_dynamic(current: &str) -> Result<String, OpError> {
    let off = BTreeMap::from([(
        "keyRegenerationEnabled".to_string(),
        serde_json::Value::Bool(false),
    )]);
    Ok(ldap::apply_values(current, &off)?.1)
}

pub async fn set_web_keys(
    ctx: &Ctx,
    req: SetWebKeys,
    log: &mut Log,
) -> Result<SetWebKeysOutput, OpError> {
    for k in req.keep_kids.iter().chain(req.first_kids.iter()) {
        check_kid(k)?;
    }
    let mut l = ldap::connect(ctx, &req.host, req.port, &req.password, log).await?;
    let result = async {
        for _ in 0..ATTEMPTS {
            let cur = read_entry(&mut l).await?;
            let next = apply_web_keys(
                &cur.web_keys,
                &req.add_jwks,
                &req.keep_kids,
                &req.first_kids,
            )?;
            let dynamic = web_keys_dynamic(&cur.dynamic)?;
            let kids = kids_of(&next);
            let rev = cur.revision.unwrap_or(0);
            let same_keys = serde_json::from_str::<serde_json::Value>(&cur.web_keys).ok()
                == serde_json::from_str::<serde_json::Value>(&next).ok();
            if same_keys && dynamic == cur.dynamic {
                log.line(format!(
                    "oxAuthConfWebKeys already is {} (revision {rev}); nothing to do",
                    kids.join(", ")
                ));
                return Ok(SetWebKeysOutput {
                    changed: false,
                    revision: rev,
                    previous: cur.web_keys,
                    kids,
                });
            }
            let mut mods = ldap::revision_mods("oxAuthConfWebKeys", next, cur.revision);
            mods.push(ldap3::Mod::Replace(
                "oxAuthConfDynamic".into(),
                std::collections::HashSet::from([dynamic]),
            ));
            log.line(format!(
                "oxAuthConfWebKeys: {} -> {}; keyRegenerationEnabled=false",
                kids_of(&cur.web_keys).join(", "),
                kids.join(", ")
            ));
            let r = l
                .modify(OXAUTH_DN, mods)
                .await
                .map_err(|e| OpError(format!("{OXAUTH_DN}: {e}")))?;
            match r.rc {
                0 => {
                    log.line(format!("oxRevision {rev} -> {}", rev + 1));
                    return Ok(SetWebKeysOutput {
                        changed: true,
                        revision: rev + 1,
                        previous: cur.web_keys,
                        kids,
                    });
                }
                NO_SUCH_ATTRIBUTE | ATTRIBUTE_OR_VALUE_EXISTS => {
                    log.line("the configuration changed meanwhile; reading it again");
                }
                rc => {
                    return Err(OpError(format!(
                        "modify of {OXAUTH_DN} refused (LDAP result code {rc})"
                    )));
                }
            }
        }
        Err(OpError(format!(
            "{OXAUTH_DN} kept changing during {ATTEMPTS} attempts; try again"
        )))
    }
    .await;
    let _ = l.unbind().await;
    result
}

// ----- JWKS probe -----

/// Whether what is served satisfies the probe.
pub fn jwks_ok(served: &[String], expect: &[String], only_expected: bool) -> bool {
    expect.iter().all(|k| served.contains(k))
        && (!only_expected || served.iter().all(|k| expect.contains(k)))
}

pub async fn probe_jwks(
    ctx: &Ctx,
    req: ProbeJwks,
    log: &mut Log,
) -> Result<ProbeJwksOutput, OpError> {
    if req.expect_kids.is_empty() {
        return Err(OpError("no kid to expect".into()));
    }
    let within = Duration::from_millis(u64::from(req.within_ms)).min(MAX_WITHIN);
    let tls = super::probe::tls_config(ctx, "", &["/etc/certs/httpd.crt"])?;
    let start = Instant::now();
    let mut attempts = 0u32;
    let mut last = String::new();
    log.line(format!(
        "waiting until {} serves {}{}",
        req.url,
        req.expect_kids.join(", "),
        if req.only_expected {
            " (and nothing else)"
        } else {
            ""
        }
    ));
    loop {
        attempts += 1;
        match https_get_body(&req.url, tls.clone()).await {
            Ok(body) => {
                let served = kids_of(&body);
                if jwks_ok(&served, &req.expect_kids, req.only_expected) {
                    log.line(format!(
                        "{} serves {} (attempt {attempts})",
                        req.url,
                        served.join(", ")
                    ));
                    return Ok(ProbeJwksOutput {
                        served_kids: served,
                        attempts,
                    });
                }
                let s = format!("serves {}", served.join(", "));
                if s != last {
                    log.line(s.clone());
                    last = s;
                }
            }
            Err(e) => {
                if e != last {
                    log.line(e.clone());
                    last = e;
                }
            }
        }
        if start.elapsed() >= within {
            return Err(OpError(format!(
                "{} did not serve the expected keys within {} s ({last})",
                req.url,
                within.as_secs()
            )));
        }
        tokio::time::sleep(ATTEMPT_EVERY).await;
    }
}

/// GET `url` over TLS with `tls`; the body of a 200 answer (at most 1 MiB).
async fn https_get_body(
    url: &str,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> Result<String, String> {
    use http_body_util::{BodyExt, Empty, Limited};
    use hyper::body::Bytes;
    let uri: http::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err("only https:// URLs are probed".into());
    }
    let host = uri.host().ok_or("the URL has no host")?.to_string();
    let bare = host.trim_matches(['[', ']']).to_string();
    let port = uri.port_u16().unwrap_or(443);
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect((bare.as_str(), port))
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let name =
            rustls::pki_types::ServerName::try_from(bare.clone()).map_err(|e| e.to_string())?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let req = http::Request::get(path)
            .header(http::header::HOST, host.as_str())
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        if resp.status() != http::StatusCode::OK {
            return Err(format!("HTTP status {}", resp.status()));
        }
        let body = Limited::new(resp.into_body(), 1 << 20)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| "the answer is not UTF-8".to_string())
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .map_err(|_| "no answer within 5 s".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Host, PackageFormat, PackageMode, Recorder, Runner};
    use crate::ops::tests::{ctx_with, log};
    use std::sync::Arc;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn key(kid: &str) -> OxauthPrivateKey {
        OxauthPrivateKey {
            kid: kid.into(),
            pkcs8_pem: format!(
                "-----BEGIN PRIVATE KEY-----\nSECRET{kid}\n-----END PRIVATE KEY-----\n"
            )
            .into_bytes(),
            certificate_pem: "-----BEGIN CERTIFICATE-----\nC\n-----END CERTIFICATE-----\n".into(),
        }
    }

    #[test]
    fn web_keys_add_keep_and_order() {
        let cur =
            r#"{"keys":[{"kid":"old_sig","alg":"RS256"},{"kid":"old_enc","alg":"RSA-OAEP"}]}"#;
        let add = s(&[
            r#"{"kid":"new_sig","alg":"RS256"}"#,
            r#"{"kid":"old_sig","alg":"RS256"}"#,
        ]);
        // (case, add, keep, first, kids after)
        type Case<'a> = (&'a str, Vec<String>, Vec<String>, Vec<String>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            (
                "publish: appended, old signing key stays first",
                add.clone(),
                vec![],
                vec![],
                vec!["old_sig", "old_enc", "new_sig"],
            ),
            (
                "switch: the new signing key first, the rest in order",
                add.clone(),
                vec![],
                s(&["new_sig"]),
                vec!["new_sig", "old_sig", "old_enc"],
            ),
            (
                "retire: only the kept kids",
                add.clone(),
                s(&["new_sig"]),
                vec![],
                vec!["new_sig"],
            ),
        ];
        for (name, a, k, f, want) in cases {
            let out = apply_web_keys(cur, &a, &k, &f).unwrap();
            assert_eq!(kids_of(&out), want, "{name}");
        }
        let private = s(&[r#"{"kid":"x","d":"secret"}"#]);
        assert!(
            apply_web_keys(cur, &private, &[], &[]).is_err(),
            "private JWK refused"
        );
        assert!(apply_web_keys("nope", &[], &[], &[]).is_err());
    }

    #[test]
    fn json_keystore_merge_keeps_old_keys_until_retired() {
        let cur = BTreeMap::from([("old".to_string(), "PEM".to_string())]);
        let (next, changed) = merge_json(&cur, &[key("new")], &[]).unwrap();
        assert!(changed);
        assert_eq!(next.keys().collect::<Vec<_>>(), ["new", "old"]);
        let (again, changed) = merge_json(&next, &[key("new")], &[]).unwrap();
        assert!(!changed, "adding twice changes nothing");
        let (retired, _) = merge_json(&again, &[], &s(&["new"])).unwrap();
        assert_eq!(retired.keys().collect::<Vec<_>>(), ["new"]);
        let mut bad = key("../x");
        assert!(merge_json(&cur, &[bad.clone()], &[]).is_err());
        bad.kid = "ok".into();
        bad.pkcs8_pem = b"not pem".to_vec();
        assert!(merge_json(&cur, &[bad], &[]).is_err());
    }

    #[test]
    fn jwks_probe_conditions() {
        let cases = [
            (vec!["a", "b"], vec!["b"], false, true),
            (vec!["a"], vec!["b"], false, false),
            (vec!["a", "b"], vec!["b"], true, false),
            (vec!["b"], vec!["b"], true, true),
        ];
        for (served, expect, only, ok) in cases {
            assert_eq!(
                jwks_ok(&s(&served), &s(&expect), only),
                ok,
                "{served:?} {expect:?} {only}"
            );
        }
    }

    /// A Gluu container (chroot) under a temporary root, with `files` in its /etc/certs; the
    /// agent's commands are recorded.
    fn gluu_root(
        files: &[(&str, &str)],
    ) -> (tempfile::TempDir, std::path::PathBuf, Arc<Recorder>, Ctx) {
        let d = tempfile::tempdir().unwrap();
        let c = d.path().join("opt/gluu-server");
        std::fs::create_dir_all(c.join("install/community-edition-setup")).unwrap();
        std::fs::write(c.join("install/community-edition-setup/setup.py"), "").unwrap();
        std::fs::create_dir_all(c.join("etc/certs")).unwrap();
        std::fs::create_dir_all(c.join("bin")).unwrap();
        std::fs::write(c.join("bin/sh"), "").unwrap();
        for (name, content) in files {
            std::fs::write(c.join("etc/certs").join(name), content).unwrap();
        }
        let rec = Arc::new(Recorder::default());
        let host = Host {
            root: d.path().to_path_buf(),
            packages: PackageMode::System,
            format: Some(PackageFormat::Deb),
            runner: Runner::Recording(rec.clone()),
            proc: std::path::PathBuf::from("/proc"),
        };
        let ctx = ctx_with(host);
        (d, c, rec, ctx)
    }

    /// oxAuthConfDynamic as a fixed document; records the directory each read was asked of.
    #[derive(Default)]
    struct Given {
        dynamic: String,
        asked: std::sync::Mutex<Vec<(String, u32, Vec<u8>)>>,
    }

    impl DynamicSource for Given {
        async fn oxauth_dynamic(
            &self,
            _ctx: &Ctx,
            req: &UpdateOxauthKeystore,
            _log: &mut Log,
        ) -> Result<String, OpError> {
            self.asked
                .lock()
                .unwrap()
                .push((req.host.clone(), req.port, req.password.clone()));
            Ok(self.dynamic.clone())
        }
    }

    const STORE_SECRET: &str = "k3yStore-Secr3t";
    const DIR_PASSWORD: &str = "dirMgr-pw-9";

    fn detect_request(add: Vec<OxauthPrivateKey>, keep: Vec<String>) -> UpdateOxauthKeystore {
        UpdateOxauthKeystore {
            kind: KeystoreKind::Detect as i32,
            add,
            keep_kids: keep,
            keystore_password: Vec::new(),
            host: "127.0.0.11".into(),
            port: 1636,
            password: DIR_PASSWORD.as_bytes().to_vec(),
        }
    }

    fn given_secret() -> Given {
        Given {
            dynamic: format!(
                r#"{{"webKeysStorage":"keystore","keyStoreFile":"/etc/certs/oxauth-keys.jks","keyStoreSecret":"{STORE_SECRET}"}}"#
            ),
            ..Default::default()
        }
    }

    #[test]
    fn detect_picks_the_keystore_the_node_has() {
        // (case, files in /etc/certs, kind asked, kind used or None for an error)
        let cases: Vec<(&str, Vec<&str>, KeystoreKind, Option<KeystoreKind>)> = vec![
            (
                "real Gluu",
                vec!["oxauth-keys.jks"],
                KeystoreKind::Detect,
                Some(KeystoreKind::Jks),
            ),
            (
                "the stand-in",
                vec!["oxauth-keys.json"],
                KeystoreKind::Detect,
                Some(KeystoreKind::Json),
            ),
            (
                "both: the JKS oxAuth reads",
                vec!["oxauth-keys.json", "oxauth-keys.jks"],
                KeystoreKind::Detect,
                Some(KeystoreKind::Jks),
            ),
            ("none", vec![], KeystoreKind::Detect, None),
            (
                "explicit JSON",
                vec!["oxauth-keys.jks"],
                KeystoreKind::Json,
                Some(KeystoreKind::Json),
            ),
            (
                "explicit JKS",
                vec![],
                KeystoreKind::Jks,
                Some(KeystoreKind::Jks),
            ),
            (
                "unspecified",
                vec!["oxauth-keys.jks"],
                KeystoreKind::Unspecified,
                None,
            ),
        ];
        for (name, files, kind, want) in cases {
            let files: Vec<(&str, &str)> = files.iter().map(|f| (*f, "")).collect();
            let (_d, _c, _rec, ctx) = gluu_root(&files);
            let layout = Layout::detect(&ctx.host).unwrap();
            let got = resolve_kind(&ctx, &layout, kind);
            match want {
                Some(k) => assert_eq!(got.unwrap(), k, "{name}"),
                None => assert!(got.is_err(), "{name}: {got:?}"),
            }
        }
    }

    #[test]
    fn key_store_secret_is_read_from_oxauth_conf_dynamic() {
        let ok = keystore_secret(r#"{"webKeysStorage":"keystore","keyStoreSecret":"abc-123"}"#);
        assert_eq!(ok.unwrap(), "abc-123");
        for bad in [
            r#"{"webKeysStorage":"keystore"}"#,
            r#"{"keyStoreSecret":""}"#,
            r#"{"keyStoreSecret":null}"#,
            r#"{"keyStoreSecret":42}"#,
            r#"{"keyStoreSecret":"abc-123""#,
        ] {
            let e = keystore_secret(bad).unwrap_err();
            assert!(!e.0.contains("abc-123"), "{bad}: {e:?}");
        }
    }

    #[tokio::test]
    async fn detect_on_real_gluu_updates_the_jks_with_key_store_secret() {
        let (_d, c, rec, ctx) = gluu_root(&[("oxauth-keys.jks", "")]);
        rec.answer(
            0,
            "Keystore type: JKS\n\nold_rs256, Nov 1, 2026, PrivateKeyEntry,\n",
        );
        let source = given_secret();
        let (mut l, mut rx) = log();
        let out = update_keystore_with(
            &ctx,
            detect_request(vec![key("new_rs256")], Vec::new()),
            &source,
            &mut l,
        )
        .await
        .unwrap();
        assert_eq!(out.kids, ["old_rs256", "new_rs256"]);
        assert!(out.changed);
        // The directory read is the node's own, as the directory manager.
        assert_eq!(
            *source.asked.lock().unwrap(),
            [(
                "127.0.0.11".to_string(),
                1636,
                DIR_PASSWORD.as_bytes().to_vec()
            )]
        );
        let base = c.display().to_string();
        let argvs = rec.argvs();
        assert_eq!(argvs.len(), 3, "{argvs:?}");
        assert_eq!(argvs[0], list_argv(&Layout::detect(&ctx.host).unwrap()));
        assert_eq!(argvs[0][..3], s(&["chroot", &base, KEYTOOL]));
        assert!(argvs[1].contains(&OPENSSL.to_string()));
        assert!(argvs[2].contains(&"-importkeystore".to_string()));
        let calls = rec.calls.lock().unwrap();
        for call in calls.iter() {
            assert!(
                !call
                    .argv
                    .iter()
                    .any(|a| a.contains(STORE_SECRET) || a.contains(DIR_PASSWORD)),
                "{:?}",
                call.argv
            );
        }
        // keytool gets keyStoreSecret in its environment, openssl on stdin.
        for i in [0, 2] {
            assert!(
                calls[i]
                    .env
                    .iter()
                    .any(|(k, v)| k == PASS_ENV && v == STORE_SECRET),
                "{:?}",
                calls[i].argv
            );
        }
        let stdin = calls[1].stdin.as_ref().unwrap().expose().clone();
        assert_eq!(stdin, format!("{STORE_SECRET}\n").into_bytes());
        drop(calls);
        // Both secrets are masked in every later line of the job's log.
        l.line(format!("echo {STORE_SECRET} {DIR_PASSWORD}"));
        drop(l);
        let mut lines = Vec::new();
        while let Ok((_, line)) = rx.try_recv() {
            assert!(
                !line.contains(STORE_SECRET)
                    && !line.contains(DIR_PASSWORD)
                    && !line.contains("SECRET"),
                "{line}"
            );
            lines.push(line);
        }
        assert!(lines.iter().any(|x| x.contains("JKS")), "{lines:?}");
        assert_eq!(lines.last().map(String::as_str), Some("echo *** ***"));
    }

    #[tokio::test]
    async fn detect_on_the_standin_updates_the_json_without_the_directory() {
        let (_d, c, rec, ctx) = gluu_root(&[("oxauth-keys.json", r#"{"old": "PEM"}"#)]);
        let source = given_secret();
        let (mut l, _rx) = log();
        let out = update_keystore_with(
            &ctx,
            detect_request(vec![key("new_rs256")], Vec::new()),
            &source,
            &mut l,
        )
        .await
        .unwrap();
        assert_eq!(out.kids, ["new_rs256", "old"]);
        assert!(rec.argvs().is_empty(), "no keytool for JSON");
        assert!(source.asked.lock().unwrap().is_empty(), "no directory read");
        let file: BTreeMap<String, String> =
            serde_json::from_slice(&std::fs::read(c.join("etc/certs/oxauth-keys.json")).unwrap())
                .unwrap();
        assert_eq!(file.keys().collect::<Vec<_>>(), ["new_rs256", "old"]);
        // Without any keystore the node refuses, naming both files.
        let (_d, _c, _rec, ctx) = gluu_root(&[]);
        let e = update_keystore_with(&ctx, detect_request(vec![], s(&["x"])), &source, &mut l)
            .await
            .unwrap_err();
        assert!(
            e.0.contains("oxauth-keys.jks") && e.0.contains("oxauth-keys.json"),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn jks_without_key_store_secret_fails_before_keytool() {
        let (_d, _c, rec, ctx) = gluu_root(&[("oxauth-keys.jks", "")]);
        let source = Given {
            dynamic: r#"{"webKeysStorage":"keystore","keyStoreSecret":""}"#.into(),
            ..Default::default()
        };
        let (mut l, _rx) = log();
        let e = update_keystore_with(
            &ctx,
            detect_request(vec![key("n")], vec![]),
            &source,
            &mut l,
        )
        .await
        .unwrap_err();
        assert!(e.0.contains("keyStoreSecret"), "{e:?}");
        assert!(rec.argvs().is_empty());
    }

    #[test]
    fn web_keys_leave_keystore_mode_and_its_secret_alone() {
        let cur = r#"{"keyRegenerationEnabled":true,"webKeysStorage":"keystore","keyStoreSecret":"abc-123","keyStoreFile":"/etc/certs/oxauth-keys.jks"}"#;
        let next: serde_json::Value =
            serde_json::from_str(&web_keys_dynamic(cur).unwrap()).unwrap();
        assert_eq!(next["keyRegenerationEnabled"], false);
        assert_eq!(next["webKeysStorage"], "keystore");
        assert_eq!(next["keyStoreSecret"], "abc-123");
        assert_eq!(next["keyStoreFile"], "/etc/certs/oxauth-keys.jks");
        let other: serde_json::Value =
            serde_json::from_str(&web_keys_dynamic(r#"{"webKeysStorage":"ldap"}"#).unwrap())
                .unwrap();
        assert_eq!(other["webKeysStorage"], "ldap");
        assert!(other.get("keyStoreSecret").is_none());
    }

    #[tokio::test]
    async fn jks_keystore_runs_openssl_and_keytool_with_the_password_off_argv() {
        let (_d, c, rec, ctx) = gluu_root(&[]);
        // keytool -list answers with the old key.
        rec.answer(0, "Keystore type: JKS\n\nold_rs256, Nov 1, 2026, PrivateKeyEntry,\nCertificate fingerprint (SHA-256): AA\n");
        let (mut l, mut rx) = log();
        let out = update_keystore(
            &ctx,
            UpdateOxauthKeystore {
                kind: KeystoreKind::Jks as i32,
                add: vec![key("new_rs256")],
                keep_kids: s(&["new_rs256"]),
                keystore_password: b"s3cret!pw".to_vec(),
                ..Default::default()
            },
            &mut l,
        )
        .await
        .unwrap();
        assert_eq!(out.kids, ["new_rs256"]);
        let base = c.display().to_string();
        let argvs = rec.argvs();
        assert_eq!(
            argvs,
            vec![
                s(&[
                    "chroot",
                    &base,
                    KEYTOOL,
                    "-list",
                    "-keystore",
                    JKS_KEYSTORE,
                    "-storepass:env",
                    PASS_ENV
                ]),
                s(&[
                    "chroot",
                    &base,
                    OPENSSL,
                    "pkcs12",
                    "-export",
                    "-inkey",
                    "/etc/certs/.rotation-new_rs256.key",
                    "-in",
                    "/etc/certs/.rotation-new_rs256.crt",
                    "-name",
                    "new_rs256",
                    "-out",
                    "/etc/certs/.rotation-new_rs256.p12",
                    "-passout",
                    "stdin"
                ]),
                s(&[
                    "chroot",
                    &base,
                    KEYTOOL,
                    "-importkeystore",
                    "-srckeystore",
                    "/etc/certs/.rotation-new_rs256.p12",
                    "-srcstoretype",
                    "PKCS12",
                    "-srcstorepass:env",
                    PASS_ENV,
                    "-srcalias",
                    "new_rs256",
                    "-destkeystore",
                    JKS_KEYSTORE,
                    "-deststoretype",
                    "JKS",
                    "-deststorepass:env",
                    PASS_ENV,
                    "-destalias",
                    "new_rs256",
                    "-noprompt"
                ]),
                s(&[
                    "chroot",
                    &base,
                    KEYTOOL,
                    "-delete",
                    "-alias",
                    "old_rs256",
                    "-keystore",
                    JKS_KEYSTORE,
                    "-storepass:env",
                    PASS_ENV
                ]),
            ]
        );
        let calls = rec.calls.lock().unwrap();
        assert!(
            calls
                .iter()
                .all(|c| !c.argv.iter().any(|a| a.contains("s3cret")))
        );
        assert!(
            calls[2]
                .env
                .iter()
                .any(|(k, v)| k == PASS_ENV && v == "s3cret!pw")
        );
        drop(calls);
        // The temporary key files are gone.
        let left: Vec<_> = std::fs::read_dir(c.join("etc/certs")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        drop(l);
        while let Ok((_, line)) = rx.try_recv() {
            assert!(
                !line.contains("SECRET") && !line.contains("s3cret"),
                "{line}"
            );
        }
    }
}
