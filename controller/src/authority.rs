//! The CA's state and files: which CAs are trusted and which one issues (`Authority`, held at
//! run time by `CaState`), the rotation's files and the completion of a rotation a crash
//! interrupted, the server certificate, and which CA each node's certificate is from.
//!
//! Files in the data directory (besides `ca.crt`/`ca.key`, the issuing CA):
//! `ca-previous.crt` and `ca-cross.crt` exist only during an overlap; `ca-next.crt`/`ca-next.key`
//! only for an instant during a rotation (a crash there is completed at the next start).

use crate::config::DataDir;
use crate::store::Store;
use anyhow::{Context, Result as AnyResult};
use clustermgr_proto::NodeCaInfo;
use clustermgr_shared::Secret;
use clustermgr_shared::fsutil::{write_atomic, write_private};
use clustermgr_shared::pki::{self, Ca, CertInfo, Usage};
use clustermgr_shared::tls;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub(crate) const DAY: u64 = 86_400;
pub const CA_TTL: Duration = Duration::from_secs(10 * 365 * DAY);
pub const SERVER_TTL: Duration = Duration::from_secs(2 * 365 * DAY);
/// The longest credential `RenewCredential` issues.
pub(crate) const MAX_OPERATOR_TTL: Duration = Duration::from_secs(5 * 365 * DAY);
pub const SERVER_CN: &str = "clustermgr controller";

pub(crate) fn previous_path(d: &DataDir) -> PathBuf {
    d.root.join("ca-previous.crt")
}
pub(crate) fn cross_path(d: &DataDir) -> PathBuf {
    d.root.join("ca-cross.crt")
}
fn next_cert_path(d: &DataDir) -> PathBuf {
    d.root.join("ca-next.crt")
}
fn next_key_path(d: &DataDir) -> PathBuf {
    d.root.join("ca-next.key")
}

fn read(p: &std::path::Path) -> AnyResult<String> {
    std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
}

fn read_opt(p: &std::path::Path) -> AnyResult<Option<String>> {
    match std::fs::read_to_string(p) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
    }
}

pub(crate) fn remove_if_exists(p: &std::path::Path) -> AnyResult<()> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", p.display())),
    }
}

/// The previous CA during an overlap.
pub struct Previous {
    pub cert_pem: String,
    pub pin: String,
    pub key_id: String,
    /// The current CA's certificate signed by the previous CA.
    pub cross_pem: String,
}

/// Which CA issued a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issuer {
    Current,
    Previous,
    Unknown,
}

impl Issuer {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Previous => "previous",
            Self::Unknown => "unknown",
        }
    }
}

/// The CAs in force: the issuing one and, during an overlap, the previous one.
pub struct Authority {
    pub current: Ca,
    pub current_key_id: String,
    pub previous: Option<Previous>,
}

impl Authority {
    pub(crate) fn new(current: Ca, previous: Option<Previous>) -> Self {
        Self {
            current_key_id: current.key_id(),
            current,
            previous,
        }
    }

    /// Loads the CA files of a data directory, completing a rotation a crash interrupted.
    pub fn load(data: &DataDir) -> AnyResult<Self> {
        finish_interrupted_rotation(data)?;
        let current = Ca::load(&read(&data.ca_cert())?, &Secret::new(read(&data.ca_key())?))
            .with_context(|| format!("cannot load the CA from {}", data.root.display()))?;
        let previous = match (
            read_opt(&previous_path(data))?,
            read_opt(&cross_path(data))?,
        ) {
            (Some(cert_pem), Some(cross_pem)) => {
                let info = CertInfo::from_pem(&cert_pem)?;
                let pin = pki::pin_of(&pki::pem_to_der(&cert_pem, "CERTIFICATE")?);
                // A rotation that stopped before the new CA was in place left these behind.
                if pin == current.pin() {
                    None
                } else {
                    Some(Previous {
                        cert_pem,
                        pin,
                        key_id: info.subject_key_id,
                        cross_pem,
                    })
                }
            }
            _ => None,
        };
        if previous.is_none() {
            remove_if_exists(&previous_path(data))?;
            remove_if_exists(&cross_path(data))?;
        }
        Ok(Self::new(current, previous))
    }

    /// Every CA clients must trust now, PEM (current first).
    pub fn trusted_pem(&self) -> String {
        let mut s = self.current.cert_pem().trim().to_string() + "\n";
        if let Some(p) = &self.previous {
            s.push_str(p.cert_pem.trim());
            s.push('\n');
        }
        s
    }

    /// The chain the server presents with a leaf the current CA issued: the leaf, then (during
    /// an overlap) the cross certificate, then every CA certificate, so that joining agents
    /// find either pin and clients that trust only the previous CA find a path.
    pub fn chain(&self, leaf_pem: &str) -> String {
        let mut s = leaf_pem.trim().to_string() + "\n";
        if let Some(p) = &self.previous {
            s.push_str(p.cross_pem.trim());
            s.push('\n');
        }
        s.push_str(&self.trusted_pem());
        s
    }

    /// Which CA a certificate with this authority key id comes from. Principal records from
    /// before rotation existed carry no key id: they come from the first CA, which is the
    /// previous one during the first overlap and the current one otherwise.
    pub fn issuer_of(&self, ca_key_id: &str) -> Issuer {
        if ca_key_id.is_empty() {
            return if self.previous.is_some() {
                Issuer::Previous
            } else {
                Issuer::Current
            };
        }
        if ca_key_id == self.current_key_id {
            Issuer::Current
        } else if self
            .previous
            .as_ref()
            .is_some_and(|p| p.key_id == ca_key_id)
        {
            Issuer::Previous
        } else {
            Issuer::Unknown
        }
    }

    pub(crate) fn pin_of(&self, i: Issuer) -> String {
        match (i, &self.previous) {
            (Issuer::Current, _) => self.current.pin(),
            (Issuer::Previous, Some(p)) => p.pin.clone(),
            _ => String::new(),
        }
    }

    pub(crate) fn reloaded(&self) -> AnyResult<Self> {
        let current = Ca::load(self.current.cert_pem(), &self.current.key_pem())?;
        let previous = self.previous.as_ref().map(|p| Previous {
            cert_pem: p.cert_pem.clone(),
            pin: p.pin.clone(),
            key_id: p.key_id.clone(),
            cross_pem: p.cross_pem.clone(),
        });
        Ok(Self::new(current, previous))
    }
}

fn finish_interrupted_rotation(data: &DataDir) -> AnyResult<()> {
    // ca-next.crt is written last: without it the rotation never happened.
    if next_cert_path(data).exists() {
        if next_key_path(data).exists() {
            std::fs::rename(next_key_path(data), data.ca_key())
                .context("cannot complete the CA rotation (ca.key)")?;
        }
        std::fs::rename(next_cert_path(data), data.ca_cert())
            .context("cannot complete the CA rotation (ca.crt)")?;
    } else {
        remove_if_exists(&next_key_path(data))?;
    }
    Ok(())
}

/// Writes a rotation's files: previous CA and cross certificate, then the new CA in place.
pub(crate) fn write_rotation(data: &DataDir, old: &Ca, new: &Ca, cross: &str) -> AnyResult<()> {
    write_atomic(&previous_path(data), old.cert_pem().as_bytes(), 0o644)?;
    write_atomic(&cross_path(data), cross.as_bytes(), 0o644)?;
    write_private(&next_key_path(data), new.key_pem().expose().as_bytes())?;
    write_atomic(&next_cert_path(data), new.cert_pem().as_bytes(), 0o644)?;
    finish_interrupted_rotation(data)
}

/// The first certificate of `server.crt` (the leaf).
pub fn server_leaf(data: &DataDir) -> AnyResult<CertInfo> {
    let chain = read(&data.server_cert())?;
    Ok(CertInfo::from_pem(&chain)?)
}

/// Issues a server certificate from the current CA for `sans` and writes `server.crt` (chain)
/// and `server.key`. Returns the chain, the key and the leaf's facts.
pub fn issue_server(
    data: &DataDir,
    a: &Authority,
    sans: &[String],
) -> AnyResult<(String, Secret<String>, CertInfo)> {
    let (leaf, key) = a
        .current
        .issue_with_new_key(SERVER_CN, sans, Usage::Server, SERVER_TTL)?;
    let info = CertInfo::from_pem(&leaf)?;
    let chain = a.chain(&leaf);
    write_private(&data.server_key(), key.expose().as_bytes())?;
    write_atomic(&data.server_cert(), chain.as_bytes(), 0o644)?;
    Ok((chain, key, info))
}

/// Checks and merges extra server names.
pub fn merge_sans(current: &[String], extra: &[String]) -> Result<Vec<String>, String> {
    let mut sans = current.to_vec();
    for s in extra {
        let s = s.trim();
        let ok = !s.is_empty()
            && s.len() <= 253
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:*".contains(c));
        if !ok {
            return Err(format!("invalid server name {s:?}"));
        }
        sans.push(s.to_string());
    }
    sans.sort();
    sans.dedup();
    Ok(sans)
}

/// The CAs at run time; the issuing CA changes with a rotation.
pub struct CaState {
    inner: RwLock<Arc<Authority>>,
    /// One change of CA files at a time.
    pub(crate) changing: tokio::sync::Mutex<()>,
}

impl CaState {
    pub fn new(a: Authority) -> Self {
        Self {
            inner: RwLock::new(Arc::new(a)),
            changing: tokio::sync::Mutex::new(()),
        }
    }

    pub fn get(&self) -> Arc<Authority> {
        match self.inner.read() {
            Ok(a) => a.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(crate) fn set(&self, a: Authority) {
        let a = Arc::new(a);
        match self.inner.write() {
            Ok(mut cur) => *cur = a,
            Err(poisoned) => *poisoned.into_inner() = a,
        }
    }

    /// Signs a CSR with the current CA (see [`Ca::sign_csr`]).
    pub fn sign_csr(
        &self,
        csr_der: &[u8],
        common_name: &str,
        usage: Usage,
        validity: (time::OffsetDateTime, time::OffsetDateTime),
    ) -> pki::Result<String> {
        self.get()
            .current
            .sign_csr(csr_der, common_name, usage, validity)
    }

    /// Every CA clients must trust now (PEM bundle).
    pub fn cert_pem(&self) -> String {
        self.get().trusted_pem()
    }
}

/// The server's TLS config for the given CAs and server identity.
pub fn server_tls(
    a: &Authority,
    chain: &str,
    key: &Secret<String>,
) -> AnyResult<Arc<tokio_rustls::rustls::ServerConfig>> {
    Ok(tls::server_config(&a.trusted_pem(), chain, key)?)
}

/// Per node: which CA its newest certificate is from. A certificate from the current CA is
/// newer than any from the previous one (expiry times have a resolution of a second and the
/// lifetime may have changed, so they alone cannot tell).
pub fn node_issuers(store: &Store, a: &Authority) -> AnyResult<Vec<NodeCaInfo>> {
    let rank = |i: Issuer| match i {
        Issuer::Current => 2,
        Issuer::Previous => 1,
        Issuer::Unknown => 0,
    };
    let mut newest: HashMap<String, (Issuer, u64)> = HashMap::new();
    for (_, p) in store.principals()? {
        if p.kind() != clustermgr_proto::PrincipalKind::Node {
            continue;
        }
        let cand = (a.issuer_of(&p.ca_key_id), p.not_after_unix);
        match newest.get(&p.id) {
            Some(best) if (rank(best.0), best.1) >= (rank(cand.0), cand.1) => {}
            _ => {
                newest.insert(p.id.clone(), cand);
            }
        }
    }
    let mut out = Vec::new();
    for n in store.nodes()? {
        let (issuer, not_after) = newest
            .get(&n.id)
            .copied()
            .unwrap_or((Issuer::Unknown, n.certificate_not_after_unix));
        out.push(NodeCaInfo {
            node_id: n.id,
            hostname: n.hostname,
            ca_pin: a.pin_of(issuer),
            ca_state: issuer.as_str().into(),
            certificate_not_after_unix: not_after,
        });
    }
    out.sort_by(|x, y| (&x.hostname, &x.node_id).cmp(&(&y.hostname, &y.node_id)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> (tempfile::TempDir, DataDir) {
        let t = tempfile::tempdir().unwrap();
        let d = DataDir::new(t.path());
        let ca = Ca::generate("first", Duration::from_secs(3600)).unwrap();
        write_atomic(&d.ca_cert(), ca.cert_pem().as_bytes(), 0o644).unwrap();
        write_private(&d.ca_key(), ca.key_pem().expose().as_bytes()).unwrap();
        (t, d)
    }

    #[test]
    fn a_rotation_interrupted_after_the_new_ca_was_staged_is_completed_at_load() {
        let (_t, d) = data();
        let old = Authority::load(&d).unwrap();
        let new = Ca::generate("second", Duration::from_secs(3600)).unwrap();
        let cross = old.current.cross_sign(&new).unwrap();
        write_atomic(&previous_path(&d), old.current.cert_pem().as_bytes(), 0o644).unwrap();
        write_atomic(&cross_path(&d), cross.as_bytes(), 0o644).unwrap();
        write_private(&next_key_path(&d), new.key_pem().expose().as_bytes()).unwrap();
        write_atomic(&next_cert_path(&d), new.cert_pem().as_bytes(), 0o644).unwrap();
        // Crash here.
        let a = Authority::load(&d).unwrap();
        assert_eq!(a.current.pin(), new.pin());
        assert_eq!(a.previous.as_ref().unwrap().pin, old.current.pin());
        assert_eq!(a.issuer_of(&old.current_key_id), Issuer::Previous);
        assert_eq!(a.issuer_of(&new.key_id()), Issuer::Current);
        assert_eq!(a.issuer_of(""), Issuer::Previous);
        assert!(a.trusted_pem().contains(old.current.cert_pem().trim()));
    }

    #[test]
    fn a_rotation_interrupted_before_the_new_ca_was_complete_is_dropped() {
        let (_t, d) = data();
        let old = Authority::load(&d).unwrap();
        let new = Ca::generate("second", Duration::from_secs(3600)).unwrap();
        write_atomic(&previous_path(&d), old.current.cert_pem().as_bytes(), 0o644).unwrap();
        write_atomic(&cross_path(&d), b"x", 0o644).unwrap();
        write_private(&next_key_path(&d), new.key_pem().expose().as_bytes()).unwrap();
        let a = Authority::load(&d).unwrap();
        assert_eq!(a.current.pin(), old.current.pin());
        assert!(a.previous.is_none());
        assert!(!next_key_path(&d).exists() && !previous_path(&d).exists());
        assert_eq!(a.issuer_of(""), Issuer::Current);
    }

    #[test]
    fn extra_names_are_checked() {
        let cur = vec!["a.example".to_string()];
        assert_eq!(
            merge_sans(&cur, &["b.example".into(), "a.example".into()]).unwrap(),
            vec!["a.example".to_string(), "b.example".to_string()]
        );
        assert!(merge_sans(&cur, &["bad name".into()]).is_err());
        assert!(merge_sans(&cur, &["".into()]).is_err());
    }
}
