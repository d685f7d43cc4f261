//! Secrets at rest: the cluster's passwords and the secret outputs a workflow keeps (the
//! primary's setup.properties.last, its certificate set) are sealed with ChaCha20-Poly1305 under
//! a key kept beside the store (`DATA_DIR/sealing.key`, 0600), so a copy of the store file alone
//! reveals none of them. Each value is bound to its purpose (associated data), so a sealed value
//! cannot be moved to another field.

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use std::io::ErrorKind;
use std::path::Path;

const KEY_LEN: usize = 32;
/// Format byte in front of every sealed value.
const VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("cannot read or create the sealing key {path}: {source}")]
    Key {
        path: String,
        source: std::io::Error,
    },
    #[error("the sealing key {0} is not 32 bytes")]
    KeyLength(String),
    #[error("a sealed value does not open with this data directory's key (purpose {0})")]
    Open(String),
    #[error("cannot draw random bytes")]
    Random,
}

pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(***)")
    }
}

impl Sealer {
    /// Loads the key, creating it (0600) on first use.
    pub fn load_or_create(path: &Path) -> Result<Self, SealError> {
        let err = |source| SealError::Key {
            path: path.display().to_string(),
            source,
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let mut k = [0u8; KEY_LEN];
                rand::fill(&mut k);
                clustermgr_shared::fsutil::write_private(path, &k).map_err(err)?;
                k.to_vec()
            }
            Err(e) => return Err(err(e)),
        };
        Self::from_bytes(&bytes).map_err(|_| SealError::KeyLength(path.display().to_string()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        if bytes.len() != KEY_LEN {
            return Err(SealError::KeyLength(String::new()));
        }
        let key = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .map_err(|_| SealError::KeyLength(String::new()))?;
        Ok(Self {
            key: LessSafeKey::new(key),
        })
    }

    /// version || nonce || ciphertext+tag.
    pub fn seal(&self, purpose: &str, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose.as_bytes()),
                &mut buf,
            )
            .map_err(|_| SealError::Random)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    pub fn open(&self, purpose: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let bad = || SealError::Open(purpose.to_string());
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != VERSION {
            return Err(bad());
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[1..1 + NONCE_LEN]);
        let mut buf = sealed[1 + NONCE_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose.as_bytes()),
                &mut buf,
            )
            .map_err(|_| bad())?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_binds_the_purpose() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sealing.key");
        let s = Sealer::load_or_create(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let sealed = s.seal("ldap-admin-password", b"Pa$$ w0rd").unwrap();
        assert!(!sealed.windows(4).any(|w| w == b"Pa$$"));
        assert_eq!(
            s.open("ldap-admin-password", &sealed).unwrap(),
            b"Pa$$ w0rd"
        );
        assert!(s.open("replication-password", &sealed).is_err());
        // The same key after a restart.
        let again = Sealer::load_or_create(&path).unwrap();
        assert_eq!(
            again.open("ldap-admin-password", &sealed).unwrap(),
            b"Pa$$ w0rd"
        );
        // Another data directory's key cannot open it.
        let other = Sealer::from_bytes(&[7u8; 32]).unwrap();
        assert!(other.open("ldap-admin-password", &sealed).is_err());
        // Two seals of the same value differ (random nonce).
        assert_ne!(sealed, s.seal("ldap-admin-password", b"Pa$$ w0rd").unwrap());
    }
}
