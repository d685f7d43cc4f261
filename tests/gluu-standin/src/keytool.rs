//! A stand-in for the JRE's `keytool` (`/opt/jre/bin/keytool` inside the Gluu root), for the
//! commands a cluster manager runs against the JRE trust store:
//!
//! ```text
//! keytool -import|-importcert -trustcacerts -alias A -file CERT.crt -keystore STORE -storepass P -noprompt
//! keytool -delete -alias A -keystore STORE -storepass P
//! keytool -list -keystore STORE -storepass P
//! ```
//!
//! The trust store is a JSON file (`{"entries": {alias: {"sha256": ..., "pem": ...}}}`) guarded
//! by the store password `changeit`, like the JRE's `cacerts`. Aliases are case-insensitive and
//! stored in lower case (as in a JKS store). Errors are printed as keytool prints them
//! (`keytool error: java.lang.Exception: Alias <a> does not exist`) with exit status 1.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

/// The password of the JRE's trust store.
pub const STORE_PASSWORD: &str = "changeit";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Store {
    pub entries: BTreeMap<String, Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Entry {
    pub sha256: String,
    pub pem: String,
}

impl Store {
    pub fn load(path: &Path) -> Result<Store> {
        match fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|_| anyhow!("java.io.IOException: Invalid keystore format")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Store::default()),
            Err(e) => Err(anyhow!("java.io.FileNotFoundException: {e}")),
        }
    }

    /// Replaces the file atomically (a temporary file next to it, then a rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let dir = path.parent().context("trust store path has no directory")?;
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = dir.join(format!(".cacerts.{}.tmp", std::process::id()));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
        Ok(())
    }
}

/// Adds `cert` (a PEM file) under `alias`; refuses an alias that is taken.
pub fn import(store_path: &Path, alias: &str, cert: &Path) -> Result<()> {
    let alias = alias.to_ascii_lowercase();
    let pem = fs::read_to_string(cert)
        .map_err(|e| anyhow!("java.io.FileNotFoundException: {} ({e})", cert.display()))?;
    let der = first_certificate(&pem)
        .ok_or_else(|| anyhow!("java.lang.Exception: Input not an X.509 certificate"))?;
    let mut store = Store::load(store_path)?;
    if store.entries.contains_key(&alias) {
        bail!("java.lang.Exception: Certificate not imported, alias <{alias}> already exists");
    }
    let sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, &der));
    store.entries.insert(alias, Entry { sha256, pem });
    store.save(store_path)
}

fn first_certificate(pem: &str) -> Option<Vec<u8>> {
    let mut reader = pem.as_bytes();
    rustls_pemfile::certs(&mut reader)
        .next()
        .and_then(|c| c.ok())
        .map(|c| c.to_vec())
}

#[derive(Debug, PartialEq, Eq)]
enum Command {
    Import,
    Delete,
    List,
}

#[derive(Debug, Default)]
struct Args {
    command: Option<Command>,
    alias: Option<String>,
    file: Option<PathBuf>,
    keystore: Option<PathBuf>,
    storepass: Option<String>,
}

fn parse(argv: &[String]) -> Result<Args> {
    let mut a = Args::default();
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| anyhow!("Command option {name} needs an argument."))
        };
        let command = match arg.as_str() {
            "-import" | "-importcert" => Some(Command::Import),
            "-delete" => Some(Command::Delete),
            "-list" => Some(Command::List),
            "-alias" => {
                a.alias = Some(value(arg)?);
                None
            }
            "-file" => {
                a.file = Some(PathBuf::from(value(arg)?));
                None
            }
            "-keystore" => {
                a.keystore = Some(PathBuf::from(value(arg)?));
                None
            }
            "-storepass" => {
                a.storepass = Some(value(arg)?);
                None
            }
            "-storetype" => {
                value(arg)?;
                None
            }
            "-noprompt" | "-trustcacerts" | "-v" => None,
            other => bail!("Illegal option:  {other}"),
        };
        if let Some(c) = command {
            if a.command.is_some() {
                bail!("Only one command is allowed: {arg}");
            }
            a.command = Some(c);
        }
    }
    Ok(a)
}

fn act(argv: &[String]) -> Result<()> {
    let a = parse(argv)?;
    let command = a
        .command
        .context("no command given (-import, -delete, -list)")?;
    let keystore = a.keystore.context("-keystore is required")?;
    if a.storepass.as_deref() != Some(STORE_PASSWORD) {
        bail!("java.io.IOException: Keystore was tampered with, or password was incorrect");
    }
    match command {
        Command::Import => {
            let alias = a.alias.unwrap_or_else(|| "mykey".into());
            let file = a.file.context("-file is required (no standard input)")?;
            import(&keystore, &alias, &file)?;
            println!("Certificate was added to keystore");
        }
        Command::Delete => {
            let alias = a.alias.context("-alias is required")?.to_ascii_lowercase();
            let mut store = Store::load(&keystore)?;
            if store.entries.remove(&alias).is_none() {
                bail!("java.lang.Exception: Alias <{alias}> does not exist");
            }
            store.save(&keystore)?;
        }
        Command::List => {
            let store = Store::load(&keystore)?;
            println!("Keystore type: JKS");
            println!("Your keystore contains {} entries\n", store.entries.len());
            for (alias, e) in &store.entries {
                println!("{alias}, trustedCertEntry, ");
                println!("Certificate fingerprint (SHA-256): {}", e.sha256);
            }
        }
    }
    Ok(())
}

pub fn run(argv: &[String]) -> ExitCode {
    match act(argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("keytool error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
