//! The peers' directory certificates in an OpenDJ node's truststores, so that the connections
//! OpenDJ verifies with its trust manager and oxAuth's failover to another `servers:` entry
//! verify TLS (replication's own connections are verified with the certificates
//! `dsreplication enable` registers in OpenDJ's administration data):
//!
//! - OpenDJ's own truststore `/opt/opendj/config/truststore`, opened with its PIN file
//!   (`truststore.pin` when there is one, else `keystore.pin`, the PIN file the old cluster
//!   manager copied along with the two stores) through keytool's `-storepass:file`;
//! - oxAuth's and oxTrust's LDAP truststore `/etc/certs/opendj.pkcs12` (gluu-ldap.properties'
//!   `ssl.trustStoreFile`), which Gluu's setup made holding the node's own certificate only.
//!   Its password is setup's `opendj_p12_pass`, read from the node's `setup.properties.last`
//!   (Gluu 4.2.3 keeps it encrypted with the oxTrust admin password, the directory manager's
//!   unless setup was told otherwise: decrypted inside Gluu with that password on standard
//!   input) and handed to keytool in the environment (`-storepass:env`), masked in the job's
//!   log.
//!
//! Each peer certificate is the entry `clustermgr-peer-<first 16 hex digits of its SHA-256>`;
//! entries with that prefix no longer wanted (a node that left) are deleted, the node's own
//! entries are left alone. keytool runs inside Gluu; the certificates go through files under
//! the container's `/root`, removed after.

use super::{TempFiles, join};
use crate::host::Command;
use crate::ops::certs::KEYTOOL;
use crate::ops::gluu::{Layout, decrypt_argv};
use crate::ops::{Ctx, Log, OpError, run_checked, run_logged};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clustermgr_proto::ConfigureReplication;
use clustermgr_shared::Secret;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// OpenDJ's truststore, inside Gluu.
pub const OPENDJ_TRUSTSTORE: &str = "/opt/opendj/config/truststore";
/// Its PIN files, in the order they are looked for.
const OPENDJ_PINS: [&str; 2] = [
    "/opt/opendj/config/truststore.pin",
    "/opt/opendj/config/keystore.pin",
];
/// oxAuth's and oxTrust's truststore for LDAPS (Gluu 4.x's `ldapTrustStoreFn`).
pub const LDAP_TRUSTSTORE: &str = "/etc/certs/opendj.pkcs12";
/// The prefix of the entries this module owns.
pub const PEER_ALIAS: &str = "clustermgr-peer-";
/// The setup property holding the LDAP truststore's password.
const P12_PASS_KEY: &str = "opendj_p12_pass";
/// The environment variable keytool reads that password from.
const STOREPASS_ENV: &str = "CLUSTERMGR_STOREPASS";
/// Largest setup.properties.last read.
const MAX_PROPERTIES: u64 = 256 * 1024;

/// A peer's directory certificate and the entry it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    pub alias: String,
    pub pem: String,
}

/// The entry name of a certificate (DER).
pub fn peer_alias(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    format!("{PEER_ALIAS}{}", &hex::encode(digest)[..16])
}

fn pem_of(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The certificates of the peers' bundle, one entry each (duplicates once). An empty bundle
/// is refused when there are peers to verify.
pub(super) fn peer_certs(ca_pem: &str, required: bool) -> Result<Vec<PeerCert>, OpError> {
    if ca_pem.trim().is_empty() {
        if required {
            return Err(OpError(
                "the CA bundle holds no certificate (peers could not be verified)".into(),
            ));
        }
        return Ok(Vec::new());
    }
    let certs = clustermgr_shared::tls::certs_from_pem(ca_pem)
        .map_err(|e| OpError(format!("the CA bundle: {e}")))?;
    let mut seen = BTreeSet::new();
    Ok(certs
        .iter()
        .filter_map(|c| {
            let alias = peer_alias(c.as_ref());
            seen.insert(alias.clone()).then(|| PeerCert {
                alias,
                pem: pem_of(c.as_ref()),
            })
        })
        .collect())
}

/// How keytool opens a store.
enum Pass {
    /// A PIN file, as keytool sees it.
    File(String),
    /// The password, given in the environment.
    Env(Secret<String>),
}

struct Store {
    /// The store, inside Gluu.
    path: &'static str,
    pkcs12: bool,
    pass: Pass,
    /// Gluu's services read it (else: the directory does).
    services: bool,
}

impl Store {
    /// keytool's argv for `args` on this store.
    fn argv(&self, layout: &Layout, args: &[&str]) -> Result<Vec<String>, OpError> {
        let store = layout.seen(self.path);
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-keystore", store.as_str()]);
        if self.pkcs12 {
            all.extend(["-storetype", "PKCS12"]);
        }
        match &self.pass {
            Pass::File(f) => all.extend(["-storepass:file", f.as_str()]),
            Pass::Env(_) => all.extend(["-storepass:env", STOREPASS_ENV]),
        }
        layout.exec(KEYTOOL, &all)
    }

    fn command(&self, argv: Vec<String>) -> Command {
        match &self.pass {
            Pass::File(_) => Command::new(argv),
            Pass::Env(p) => Command::new(argv).env(STOREPASS_ENV, p.expose()),
        }
    }
}

/// The entries this module owns in `keytool -list` output (`alias, date, type,` lines).
pub(super) fn owned_aliases(list: &str) -> BTreeSet<String> {
    list.lines()
        .filter_map(|l| l.split(',').next())
        .map(|a| a.trim().to_ascii_lowercase())
        .filter(|a| a.starts_with(PEER_ALIAS))
        .collect()
}

/// What changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Trusted {
    /// OpenDJ's own truststore (the directory reads it at start).
    pub directory: bool,
    /// oxAuth's and oxTrust's LDAP truststore (they read it at start).
    pub services: bool,
}

/// Makes the node's truststores trust exactly `wanted` among the entries this module owns.
pub(super) async fn trust_peers(
    ctx: &Ctx,
    layout: &Layout,
    req: &ConfigureReplication,
    wanted: &[PeerCert],
    log: &mut Log,
) -> Result<Trusted, OpError> {
    let stores = stores_here(ctx, layout, req, log).await?;
    let mut out = Trusted::default();
    if stores.is_empty() {
        return Ok(out);
    }
    if !layout.host_path(KEYTOOL).exists() {
        return Err(OpError(format!(
            "no keytool at {} (the Gluu JRE is missing)",
            layout.host_path(KEYTOOL).display()
        )));
    }
    // The certificates, as files keytool reads (public; removed after all the same).
    let mut files = TempFiles::default();
    let mut cert_files = Vec::new();
    for c in wanted {
        let inside = format!("/root/.{}.crt", c.alias);
        files.write(layout, &inside, c.pem.as_bytes())?;
        cert_files.push(layout.seen(&inside));
    }
    for store in &stores {
        if sync_store(ctx, layout, store, wanted, &cert_files, log).await? {
            if store.services {
                out.services = true;
            } else {
                out.directory = true;
            }
        }
    }
    drop(files);
    Ok(out)
}

/// The truststores this node has, with how each is opened.
async fn stores_here(
    ctx: &Ctx,
    layout: &Layout,
    req: &ConfigureReplication,
    log: &mut Log,
) -> Result<Vec<Store>, OpError> {
    let mut stores = Vec::new();
    if layout.host_path(OPENDJ_TRUSTSTORE).is_file() {
        let pin = OPENDJ_PINS
            .iter()
            .find(|p| layout.host_path(p).is_file())
            .ok_or_else(|| {
                OpError(format!(
                    "{OPENDJ_TRUSTSTORE} has no PIN file ({})",
                    OPENDJ_PINS.join(", ")
                ))
            })?;
        stores.push(Store {
            path: OPENDJ_TRUSTSTORE,
            pkcs12: false,
            pass: Pass::File(layout.seen(pin)),
            services: false,
        });
    } else {
        log.line(format!(
            "{OPENDJ_TRUSTSTORE} does not exist: nothing to trust there"
        ));
    }
    if layout.host_path(LDAP_TRUSTSTORE).is_file() {
        let pin = setup_property(ctx, layout, &req.admin_password, P12_PASS_KEY, log)
            .await?
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                OpError(format!(
                    "this node's setup.properties.last records no {P12_PASS_KEY}: the password \
                     of {LDAP_TRUSTSTORE} is unknown"
                ))
            })?;
        log.secret(&pin);
        stores.push(Store {
            path: LDAP_TRUSTSTORE,
            pkcs12: true,
            pass: Pass::Env(Secret::new(pin)),
            services: true,
        });
    } else {
        log.line(format!(
            "{LDAP_TRUSTSTORE} does not exist: nothing to trust there"
        ));
    }
    Ok(stores)
}

/// Makes `store` hold exactly the `wanted` certificates (in `cert_files`, as keytool sees
/// them) among the entries this module owns: whether it changed.
async fn sync_store(
    ctx: &Ctx,
    layout: &Layout,
    store: &Store,
    wanted: &[PeerCert],
    cert_files: &[String],
    log: &mut Log,
) -> Result<bool, OpError> {
    let want: BTreeSet<&str> = wanted.iter().map(|c| c.alias.as_str()).collect();
    let cmd = store.command(store.argv(layout, &["-list"])?);
    let listed = run_checked(
        &ctx.host,
        &cmd,
        log,
        &format!("keytool -list {}", store.path),
    )
    .await?;
    let have = owned_aliases(&listed.stdout);
    let mut changed = 0;
    for stale in have.iter().filter(|a| !want.contains(a.as_str())) {
        let cmd = store.command(store.argv(layout, &["-delete", "-alias", stale])?);
        run_checked(&ctx.host, &cmd, log, &format!("keytool -delete {stale}")).await?;
        changed += 1;
    }
    for (c, file) in wanted.iter().zip(cert_files) {
        if have.contains(&c.alias) {
            continue;
        }
        let args = [
            "-importcert",
            "-noprompt",
            "-alias",
            &c.alias,
            "-file",
            file,
        ];
        let cmd = store.command(store.argv(layout, &args)?);
        run_checked(
            &ctx.host,
            &cmd,
            log,
            &format!("keytool -importcert {}", c.alias),
        )
        .await?;
        changed += 1;
    }
    log.line(format!(
        "{}: trusts {} peer certificate(s){}",
        store.path,
        wanted.len(),
        if changed == 0 { " (already so)" } else { "" }
    ));
    Ok(changed > 0)
}

/// A value of this node's setup.properties.last (plain, else decrypted inside Gluu with the
/// directory manager's password on stdin); None when setup left no record. Its text is never
/// logged.
async fn setup_property(
    ctx: &Ctx,
    layout: &Layout,
    admin_password: &[u8],
    key: &str,
    log: &mut Log,
) -> Result<Option<String>, OpError> {
    let plain = layout.setup_last();
    let text = if plain.is_file() {
        join(
            tokio::task::spawn_blocking(move || {
                use std::io::Read;
                let f = std::fs::File::open(&plain)
                    .map_err(|e| OpError(format!("cannot read {}: {e}", plain.display())))?;
                let mut buf = Vec::new();
                f.take(MAX_PROPERTIES)
                    .read_to_end(&mut buf)
                    .map_err(|e| OpError(format!("cannot read {}: {e}", plain.display())))?;
                Ok(String::from_utf8_lossy(&buf).into_owned())
            })
            .await,
        )?
    } else if layout.setup_last_enc().is_file() {
        let mut stdin = admin_password.to_vec();
        stdin.push(b'\n');
        let cmd = Command::new(decrypt_argv(layout)?).stdin(stdin);
        let out = run_logged(&ctx.host, &cmd, log, "openssl enc -d").await?;
        if !out.success() {
            let code = out.code.unwrap_or(-1);
            log.exit_code(code);
            // openssl's stderr says "bad decrypt" and nothing secret.
            return Err(OpError(format!(
                "cannot decrypt setup.properties.last.enc with the directory manager's password \
                 (exit code {code}): {}",
                out.stderr.lines().next().unwrap_or("").trim()
            )));
        }
        out.stdout
    } else {
        return Ok(None);
    };
    Ok(property(&text, key))
}

/// The value of `key` in Java `.properties` text (`key=value`, `key: value`, `key value`;
/// backslash escapes undone).
pub(super) fn property(text: &str, key: &str) -> Option<String> {
    text.lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .map(split_property)
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn split_property(line: &str) -> (String, String) {
    let mut chars = line.chars().peekable();
    let mut key = String::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' => unescape(&mut chars, &mut key),
            '=' | ':' => break,
            c if c.is_whitespace() => {
                while chars.next_if(|c| c.is_whitespace()).is_some() {}
                let _ = chars.next_if(|c| *c == '=' || *c == ':');
                break;
            }
            c => key.push(c),
        }
    }
    while chars.next_if(|c| c.is_whitespace()).is_some() {}
    let mut value = String::new();
    while let Some(c) = chars.next() {
        if c == '\\' {
            unescape(&mut chars, &mut value);
        } else {
            value.push(c);
        }
    }
    (key, value)
}

fn unescape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, out: &mut String) {
    match chars.next() {
        Some('n') => out.push('\n'),
        Some('r') => out.push('\r'),
        Some('t') => out.push('\t'),
        Some('f') => out.push('\u{c}'),
        Some('u') => {
            let hex: String = (0..4).filter_map(|_| chars.next()).collect();
            if let Some(c) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                out.push(c);
            }
        }
        Some(c) => out.push(c),
        None => {}
    }
}
