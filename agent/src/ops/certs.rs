//! The Gluu certificate set: read on the primary, installed on the other nodes.
//!
//! The set is what Gluu's cluster manager copied from the primary: every regular file of
//! `/etc/certs/` (certificates, keys, keystores), the SCIM RP client keystore
//! (`/install/community-edition-setup/output/scim-rp.jks`) and Passport's configuration
//! (`/etc/gluu/conf/passport-config.json`), paths relative to the Gluu root (the container on a
//! chroot install). Every file is read and written on directory handles (`safefs`) that never
//! follow a symbolic link; a write goes through a random `O_EXCL` temporary file created 0600 in
//! the target's own directory, gets its mode on the handle, and is renamed over the old file.
//!
//! **The directory's TLS identity stays per node.** `openldap.crt`, `openldap.key`, `opendj.crt`
//! and `opendj.pkcs12` (Gluu 4.x's OpenDJ keystore; OpenDJ's own `/opt/opendj/config` keystore,
//! truststore and pin are outside the set anyway) are neither read into the set nor written from
//! it: each node's directory keeps the certificate setup made for it (its own address in the
//! names), so LDAPS pinned to that file stays valid and replication peers can verify each other.
//!
//! After writing, the public certificates `httpd`, `shibIDP`, `idp-encryption` and `opendj` are
//! imported into the JRE trust store with Gluu's keytool (alias `<alias_prefix>_<suffix>`, the
//! old alias deleted first), run inside Gluu through its [`Layout`]: in the machine (started
//! first when it is not running) on a 4.2.x node, through `chroot` on an init.d chroot install.

use super::gluu::Layout;
use super::{Ctx, Log, OpError, run_checked, run_logged};
use crate::host::Command;
use clustermgr_proto::{
    CertificateFile, GluuCertificates, InstallGluuCertificates, InstallGluuCertificatesOutput,
    ReadGluuCertificates,
};
use clustermgr_shared::MAX_FILE_BYTES;
use clustermgr_shared::safefs::{self, FilePerms, SafeFsError};
use nix::sys::stat::SFlag;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::Path;

pub use clustermgr_proto::gluu::{CERTS_DIR, DIRECTORY_IDENTITY, EXTRA_FILES, TRUSTED};

/// Whether a set path is the directory's own TLS identity.
pub fn is_directory_identity(path: &str) -> bool {
    path.strip_prefix("etc/certs/")
        .is_some_and(|n| DIRECTORY_IDENTITY.contains(&n))
}

/// Gluu's keytool, inside the Gluu root.
pub const KEYTOOL: &str = "/opt/jre/bin/keytool";
/// The JRE trust store: JRE 11's layout first, then JRE 8's (Gluu 4.2.3 picks the same way).
pub const CACERTS: &[&str] = &[
    "/opt/jre/lib/security/cacerts",
    "/opt/jre/jre/lib/security/cacerts",
];
/// The JRE trust store's well-known password (not a secret).
const STOREPASS: &str = "changeit";
/// Most bytes of the whole set (it travels in one message).
const MAX_SET_BYTES: usize = MAX_FILE_BYTES;
/// Most files in the set.
const MAX_FILES: usize = 512;

fn fs_err(path: &str, e: SafeFsError) -> OpError {
    OpError(format!("{path}: {e}"))
}

/// Opens the Gluu root below the agent's root without following links.
fn open_base(root: &Path, layout: &Layout) -> Result<OwnedFd, OpError> {
    let handle = safefs::open_dir(root).map_err(|e| fs_err(&root.display().to_string(), e))?;
    let rel = layout.base.strip_prefix(root).map_err(|_| {
        OpError(format!(
            "the Gluu root {} is not under the agent's root",
            layout.base.display()
        ))
    })?;
    safefs::open_dir_beneath(&handle, rel, false)
        .map_err(|e| fs_err(&layout.base.display().to_string(), e))
}

/// Splits a set path into its directory and file name.
fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// The names in a directory handle, sorted (`.`/`..` and our own temporary files left out).
fn list(dir: &OwnedFd) -> Result<Vec<String>, OpError> {
    let dup = dir
        .try_clone()
        .map_err(|e| OpError(format!("{CERTS_DIR}: {e}")))?;
    let mut d = nix::dir::Dir::from_fd(dup).map_err(|e| OpError(format!("{CERTS_DIR}: {e}")))?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let entry = entry.map_err(|e| OpError(format!("{CERTS_DIR}: {e}")))?;
        let Ok(name) = entry.file_name().to_str() else {
            continue;
        };
        if name == "." || name == ".." || name.starts_with(".clustermgr-") {
            continue;
        }
        names.push(name.to_string());
    }
    names.sort();
    Ok(names)
}

/// Reads `name` in `dir` if it is a regular file; `Ok(None)` (with the reason) otherwise.
fn read_one(
    dir: &OwnedFd,
    name: &str,
    shown: &str,
    budget: usize,
) -> Result<Result<CertificateFile, String>, OpError> {
    let st = match safefs::stat_entry(dir, OsStr::new(name)).map_err(|e| fs_err(shown, e))? {
        None => return Ok(Err("absent".into())),
        Some(st) => st,
    };
    if safefs::kind(&st) != SFlag::S_IFREG {
        return Ok(Err("not a regular file".into()));
    }
    let (content, st) =
        safefs::read_regular(dir, OsStr::new(name), budget as u64).map_err(|e| match e {
            SafeFsError::TooLarge { .. } => OpError(format!(
                "the certificate set is larger than {MAX_SET_BYTES} bytes (at {shown})"
            )),
            e => fs_err(shown, e),
        })?;
    Ok(Ok(CertificateFile {
        path: shown.to_string(),
        mode: st.st_mode & 0o777,
        sha256: hex::encode(Sha256::digest(&content)),
        content,
    }))
}

/// Reads the set under the Gluu root `layout.base`; returns it and the paths skipped (why).
pub fn read_set(
    root: &Path,
    layout: &Layout,
) -> Result<(Vec<CertificateFile>, Vec<String>), OpError> {
    let base = open_base(root, layout)?;
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    let mut certs_absent = false;
    let mut identity = Vec::new();
    let mut used = 0usize;
    let mut take = |dir: &OwnedFd, name: &str, shown: String| -> Result<(), OpError> {
        match read_one(dir, name, &shown, MAX_SET_BYTES - used)? {
            Ok(f) => {
                used += f.content.len();
                files.push(f);
            }
            Err(why) if why == "absent" => {}
            Err(why) => skipped.push(format!("{shown}: {why}")),
        }
        if files.len() > MAX_FILES {
            return Err(OpError(format!(
                "the certificate set has more than {MAX_FILES} files"
            )));
        }
        Ok(())
    };
    match safefs::open_dir_beneath(&base, Path::new(CERTS_DIR), false) {
        Ok(dir) => {
            for name in list(&dir)? {
                if DIRECTORY_IDENTITY.contains(&name.as_str()) {
                    identity.push(format!("{CERTS_DIR}/{name}: the directory's own identity"));
                    continue;
                }
                take(&dir, &name, format!("{CERTS_DIR}/{name}"))?;
            }
        }
        Err(SafeFsError::NotFound(_)) => certs_absent = true,
        Err(e) => return Err(fs_err(CERTS_DIR, e)),
    }
    for extra in EXTRA_FILES {
        let (dir, name) = split(extra);
        match safefs::open_dir_beneath(&base, Path::new(dir), false) {
            Ok(d) => take(&d, name, extra.to_string())?,
            Err(SafeFsError::NotFound(_)) => {}
            Err(e) => return Err(fs_err(extra, e)),
        }
    }
    skipped.extend(identity);
    if certs_absent {
        skipped.push(format!("{CERTS_DIR}: absent"));
    }
    Ok((files, skipped))
}

pub async fn read(
    ctx: &Ctx,
    _req: ReadGluuCertificates,
    log: &mut Log,
) -> Result<GluuCertificates, OpError> {
    let layout = Layout::detect(&ctx.host)?;
    let root = ctx.root().clone();
    let l = layout.clone();
    let (files, skipped) = tokio::task::spawn_blocking(move || read_set(&root, &l))
        .await
        .map_err(|e| OpError(format!("reading the certificate set: {e}")))??;
    for s in skipped {
        log.line(format!("skipped {s}"));
    }
    let total: usize = files.iter().map(|f| f.content.len()).sum();
    // Names and sizes only: no content, no digest (a digest of a key allows guessing).
    for f in &files {
        log.line(format!(
            "read {} ({} bytes, mode {:o})",
            f.path,
            f.content.len(),
            f.mode
        ));
    }
    log.line(format!(
        "certificate set of {}: {} files, {total} bytes",
        layout.base.display(),
        files.len()
    ));
    Ok(GluuCertificates { files })
}

/// A set path is `etc/certs/<plain name>` or one of [`EXTRA_FILES`]; nothing else is written.
fn check_path(path: &str) -> Result<(), OpError> {
    if EXTRA_FILES.contains(&path) {
        return Ok(());
    }
    if let Some(name) = path.strip_prefix("etc/certs/")
        && !name.is_empty()
        && !name.contains('/')
        && name != "."
        && name != ".."
        && !name.starts_with(".clustermgr-")
        && !name.contains('\0')
    {
        return Ok(());
    }
    Err(OpError(format!(
        "{path:?} is not part of the Gluu certificate set (etc/certs/NAME, {})",
        EXTRA_FILES.join(", ")
    )))
}

/// An alias prefix is a host name: letters, digits, `-`, `.`.
fn check_alias_prefix(p: &str) -> Result<(), OpError> {
    let ok = !p.is_empty()
        && p.len() <= 253
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !p.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(OpError(format!(
            "alias prefix {p:?} is not a host name (the load balancer's)"
        )))
    }
}

/// Checks every file of a request before anything is written.
fn check_request(req: &InstallGluuCertificates) -> Result<(), OpError> {
    check_alias_prefix(&req.alias_prefix)?;
    if req.files.len() > MAX_FILES {
        return Err(OpError(format!("more than {MAX_FILES} files")));
    }
    let mut seen = BTreeSet::new();
    let mut total = 0usize;
    for f in &req.files {
        check_path(&f.path)?;
        if !seen.insert(f.path.as_str()) {
            return Err(OpError(format!("{} is given twice", f.path)));
        }
        if f.mode == 0 || f.mode > 0o777 {
            return Err(OpError(format!(
                "{}: mode {:o} is not a permission mode (1..0777; no setuid, setgid or sticky bit)",
                f.path, f.mode
            )));
        }
        total += f.content.len();
        if total > MAX_SET_BYTES {
            return Err(OpError(format!(
                "the certificate set is larger than {MAX_SET_BYTES} bytes"
            )));
        }
        let digest = hex::encode(Sha256::digest(&f.content));
        if !digest.eq_ignore_ascii_case(f.sha256.trim()) {
            // Neither digest is shown: a digest of a key allows guessing.
            return Err(OpError(format!(
                "{}: the content does not match its SHA-256 (corrupted in transfer?); nothing \
                 was written",
                f.path
            )));
        }
    }
    Ok(())
}

/// Writes one file of the set; returns whether it changed.
fn write_one(base: &OwnedFd, f: &CertificateFile) -> Result<bool, OpError> {
    let (dir, name) = split(&f.path);
    let name = OsStr::new(name);
    let d = safefs::open_dir_beneath(base, Path::new(dir), true).map_err(|e| fs_err(dir, e))?;
    let root = nix::unistd::geteuid().is_root();
    let perms = match safefs::stat_entry(&d, name).map_err(|e| fs_err(&f.path, e))? {
        Some(_) => {
            let (file, st) = safefs::open_regular(&d, name).map_err(|e| fs_err(&f.path, e))?;
            let same_mode = st.st_mode & 0o7777 == f.mode;
            if same_mode && u64::try_from(st.st_size).is_ok_and(|s| s == f.content.len() as u64) {
                let old = safefs::read_to_limit(file, &st, name, f.content.len() as u64)
                    .map_err(|e| fs_err(&f.path, e))?;
                if old == f.content {
                    return Ok(false);
                }
            }
            // The file keeps its owner and group (root can keep them; others own theirs).
            FilePerms {
                mode: f.mode,
                uid: root.then_some(st.st_uid),
                gid: root.then_some(st.st_gid),
            }
        }
        None => {
            // A new file gets the owner and group of its directory (e.g. jetty's /etc/certs).
            let st = nix::sys::stat::fstat(&d).map_err(|e| OpError(format!("{dir}: {e}")))?;
            FilePerms {
                mode: f.mode,
                uid: root.then_some(st.st_uid),
                gid: root.then_some(st.st_gid),
            }
        }
    };
    safefs::replace_file(&d, name, &f.content, perms).map_err(|e| fs_err(&f.path, e))?;
    Ok(true)
}

/// keytool's argv to delete `alias` from the trust store.
pub fn keytool_delete_argv(
    layout: &Layout,
    cacerts: &str,
    alias: &str,
) -> Result<Vec<String>, OpError> {
    let store = layout.seen(cacerts);
    layout.exec(
        KEYTOOL,
        &[
            "-delete",
            "-alias",
            alias,
            "-keystore",
            &store,
            "-storepass",
            STOREPASS,
        ],
    )
}

/// keytool's argv to import the certificate `cert` (a path inside the Gluu root) as `alias`.
pub fn keytool_import_argv(
    layout: &Layout,
    cacerts: &str,
    alias: &str,
    cert: &str,
) -> Result<Vec<String>, OpError> {
    let store = layout.seen(cacerts);
    let file = layout.seen(cert);
    layout.exec(
        KEYTOOL,
        &[
            "-import",
            "-trustcacerts",
            "-alias",
            alias,
            "-file",
            &file,
            "-keystore",
            &store,
            "-storepass",
            STOREPASS,
            "-noprompt",
        ],
    )
}

pub async fn install(
    ctx: &Ctx,
    req: InstallGluuCertificates,
    log: &mut Log,
) -> Result<InstallGluuCertificatesOutput, OpError> {
    let host = &ctx.host;
    let layout = Layout::detect(host)?;
    check_request(&req)?;
    let root = ctx.root().clone();
    let l = layout.clone();
    let (identity, files): (Vec<_>, Vec<_>) = req
        .files
        .into_iter()
        .partition(|f| is_directory_identity(&f.path));
    for f in &identity {
        log.line(format!(
            "{}: kept as it is (the directory's own identity stays per node)",
            f.path
        ));
    }
    let results = tokio::task::spawn_blocking(move || {
        let base = open_base(&root, &l)?;
        let mut done = Vec::new();
        for f in &files {
            done.push((f.path.clone(), f.mode, write_one(&base, f)?));
        }
        Ok::<_, OpError>(done)
    })
    .await
    .map_err(|e| OpError(format!("writing the certificate set: {e}")))??;
    let mut out = InstallGluuCertificatesOutput::default();
    for (path, mode, changed) in results {
        if changed {
            out.written += 1;
            log.line(format!("wrote {path} (mode {mode:o})"));
        } else {
            out.unchanged += 1;
            log.line(format!("{path}: unchanged"));
        }
    }

    // The public certificates now on disk go into the JRE trust store.
    let present: Vec<&str> = TRUSTED
        .iter()
        .copied()
        .filter(|s| layout.host_path(&cert_path(s)).is_file())
        .collect();
    if present.is_empty() {
        log.line("no public certificate to import into the JRE trust store");
        return Ok(out);
    }
    if !layout.host_path(KEYTOOL).exists() {
        return Err(OpError(format!(
            "no keytool at {} (the Gluu JRE is missing)",
            layout.host_path(KEYTOOL).display()
        )));
    }
    let cacerts = CACERTS
        .iter()
        .copied()
        .find(|c| layout.host_path(c).is_file())
        .ok_or_else(|| {
            OpError(format!(
                "no JRE trust store under {} ({})",
                layout.base.display(),
                CACERTS.join(", ")
            ))
        })?;
    // keytool is Gluu's own JRE: it runs inside.
    layout.ensure_running(host, log).await?;
    for suffix in present {
        let alias = format!("{}_{suffix}", req.alias_prefix);
        import_trusted(host, &layout, cacerts, &alias, suffix, log).await?;
        out.imported += 1;
    }
    log.line(format!(
        "certificate set installed: {} written, {} unchanged, {} imported into {cacerts}",
        out.written, out.unchanged, out.imported
    ));
    Ok(out)
}

/// The certificate `suffix` imported into the JRE trust store as `alias`, in place of the
/// one of that alias (when there is one).
async fn import_trusted(
    host: &crate::host::Host,
    layout: &Layout,
    cacerts: &str,
    alias: &str,
    suffix: &str,
    log: &mut Log,
) -> Result<(), OpError> {
    let del = Command::new(keytool_delete_argv(layout, cacerts, alias)?);
    let o = run_logged(host, &del, log, "keytool -delete").await?;
    for line in o.tail(5) {
        log.line(line);
    }
    if !o.success() {
        let text = format!("{}\n{}", o.stdout, o.stderr);
        if !text.contains("does not exist") {
            let code = o.code.unwrap_or(-1);
            log.exit_code(code);
            return Err(OpError(format!(
                "keytool -delete -alias {alias} failed (exit code {code}): {}",
                o.tail(3).join(" | ")
            )));
        }
    }
    let import = Command::new(keytool_import_argv(
        layout,
        cacerts,
        alias,
        &format!("/{}", cert_path(suffix)),
    )?);
    run_checked(host, &import, log, &format!("keytool -import {alias}")).await?;
    Ok(())
}

fn cert_path(suffix: &str) -> String {
    format!("{CERTS_DIR}/{suffix}.crt")
}

#[cfg(test)]
mod tests;
