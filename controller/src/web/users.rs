//! The console's local users: names, roles (the gRPC API's viewer / operator / admin), argon2id
//! password hashes in the store, and the first-run setup: while no user exists, the first admin
//! can be created only with the setup code the controller writes to `DATA/web-setup-code`
//! (0600), so that whoever reaches the port first cannot claim the console.

use crate::auth::Role;
use crate::store::{Store, StoreError, WebUserAdd, WebUserRecord, WebUserRemoval};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use clustermgr_shared::Secret;
use std::path::PathBuf;
use std::sync::Mutex;

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 12;
/// Longest password accepted (hashing cost grows with it).
const MAX_PASSWORD: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("a user name is 1-64 characters: lower-case letters, digits, '.', '_', '-'")]
    InvalidName,
    #[error("a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")]
    WeakPassword,
    #[error("the two passwords differ")]
    Mismatch,
    #[error("user {0} exists already")]
    Exists(String),
    #[error("no user {0}")]
    NotFound(String),
    #[error("{0} is the last admin: add another admin first")]
    LastAdmin(String),
    #[error("the setup code is not the one in the controller's data directory (web-setup-code)")]
    BadSetupCode,
    #[error("the console has its first admin already: sign in")]
    SetupDone,
    #[error("cannot write the setup code: {0}")]
    SetupFile(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl crate::error::Classify for UserError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            Self::InvalidName | Self::WeakPassword | Self::Mismatch | Self::BadSetupCode => {
                Kind::InvalidArgument
            }
            Self::Exists(_) => Kind::AlreadyExists,
            Self::NotFound(_) => Kind::NotFound,
            Self::LastAdmin(_) | Self::SetupDone => Kind::FailedPrecondition,
            Self::SetupFile(_) | Self::Hash(_) | Self::Store(_) => Kind::Internal,
        }
    }
}

/// A console user as pages show it (no hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub created_unix_ms: u64,
}

pub struct Users {
    store: Store,
    /// While no user exists: the code the first admin's creation needs.
    setup_code: Mutex<Option<Secret<String>>>,
    code_path: PathBuf,
}

fn hasher() -> Argon2<'static> {
    // OWASP's argon2id minimum: 19 MiB, 2 passes, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub fn check_name(name: &str) -> Result<(), UserError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(UserError::InvalidName)
    }
}

fn check_password(password: &str, again: &str) -> Result<(), UserError> {
    let n = password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
        return Err(UserError::WeakPassword);
    }
    if password != again {
        return Err(UserError::Mismatch);
    }
    Ok(())
}

async fn hash(password: &str) -> Result<String, UserError> {
    let password = Secret::new(password.to_string());
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
            .map_err(|e| UserError::Hash(e.to_string()))?;
        hasher()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| UserError::Hash(e.to_string()))
    })
    .await
    .map_err(|e| UserError::Hash(e.to_string()))?
}

/// Whether `password` matches the PHC string `phc` (false for a malformed one).
fn verify_blocking(phc: &str, password: &[u8]) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| hasher().verify_password(password, &h).is_ok())
}

/// Compares two secrets by their digests: the comparison's time says nothing of where they
/// differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

impl Users {
    /// The users in `store`; when there is none, a new setup code in `code_path` (0600).
    pub fn load(store: Store, code_path: PathBuf) -> Result<Self, UserError> {
        let users = Self {
            store,
            setup_code: Mutex::new(None),
            code_path,
        };
        if users.store.web_users()?.is_empty() {
            let code = hex::encode(rand::random::<[u8; 16]>());
            clustermgr_shared::fsutil::write_private(&users.code_path, code.as_bytes())
                .map_err(|e| UserError::SetupFile(e.to_string()))?;
            *users.lock() = Some(Secret::new(code));
        } else {
            let _ = std::fs::remove_file(&users.code_path);
        }
        Ok(users)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Secret<String>>> {
        self.setup_code.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the first admin is still to be created.
    pub fn needs_setup(&self) -> bool {
        self.lock().is_some()
    }

    pub fn setup_code_path(&self) -> &std::path::Path {
        &self.code_path
    }

    /// Creates the first admin, given the setup code.
    pub async fn setup(
        &self,
        code: &str,
        name: &str,
        password: &str,
        again: &str,
    ) -> Result<User, UserError> {
        {
            let guard = self.lock();
            let Some(expected) = guard.as_ref() else {
                return Err(UserError::SetupDone);
            };
            if !same_secret(expected.expose(), code.trim()) {
                return Err(UserError::BadSetupCode);
            }
        }
        let user = self
            .insert(name, password, again, Role::Admin, true)
            .await?;
        *self.lock() = None;
        let _ = std::fs::remove_file(&self.code_path);
        Ok(user)
    }

    /// Adds a user (an admin's action).
    pub async fn add(
        &self,
        name: &str,
        password: &str,
        again: &str,
        role: Role,
    ) -> Result<User, UserError> {
        self.insert(name, password, again, role, false).await
    }

    async fn insert(
        &self,
        name: &str,
        password: &str,
        again: &str,
        role: Role,
        first: bool,
    ) -> Result<User, UserError> {
        check_name(name)?;
        check_password(password, again)?;
        let rec = WebUserRecord {
            name: name.to_string(),
            role,
            password_hash: hash(password).await?,
            created_unix_ms: clustermgr_shared::util::now_ms(),
        };
        let user = User {
            name: rec.name.clone(),
            role,
            created_unix_ms: rec.created_unix_ms,
        };
        match self.store.add_web_user(rec, first).await? {
            WebUserAdd::Added => Ok(user),
            WebUserAdd::Exists => Err(UserError::Exists(name.to_string())),
            WebUserAdd::NotFirst => Err(UserError::SetupDone),
        }
    }

    pub async fn remove(&self, name: &str) -> Result<(), UserError> {
        match self.store.remove_web_user(name).await? {
            WebUserRemoval::Removed => Ok(()),
            WebUserRemoval::NotFound => Err(UserError::NotFound(name.to_string())),
            WebUserRemoval::LastAdmin => Err(UserError::LastAdmin(name.to_string())),
        }
    }

    pub fn list(&self) -> Result<Vec<User>, UserError> {
        Ok(self
            .store
            .web_users()?
            .into_iter()
            .map(|r| User {
                name: r.name,
                role: r.role,
                created_unix_ms: r.created_unix_ms,
            })
            .collect())
    }

    /// The user's role when `password` is theirs. An unknown user costs the same hashing as a
    /// known one, so that timing does not tell which names exist.
    pub async fn verify(&self, name: &str, password: &str) -> Result<Option<Role>, UserError> {
        let rec = self.store.web_user(name)?;
        let phc = rec.as_ref().map(|r| r.password_hash.clone());
        let password = Secret::new(password.to_string());
        let ok = tokio::task::spawn_blocking(move || {
            let phc = phc.as_deref().unwrap_or_else(|| dummy_hash());
            verify_blocking(phc, password.expose().as_bytes())
        })
        .await
        .map_err(|e| UserError::Hash(e.to_string()))?;
        Ok(rec.filter(|_| ok).map(|r| r.role))
    }
}

/// An argon2id hash of a random password nobody knows, with the console's parameters, verified
/// against when the user does not exist (made once, on first use).
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).ok();
        salt.and_then(|salt| {
            hasher()
                .hash_password(&rand::random::<[u8; 32]>(), &salt)
                .ok()
                .map(|h| h.to_string())
        })
        .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_passwords_are_checked() {
        for bad in ["", "Alice", "a b", "ä", &"x".repeat(65)] {
            assert!(
                matches!(check_name(bad), Err(UserError::InvalidName)),
                "{bad}"
            );
        }
        check_name("ops.admin-1_x").unwrap();
        assert!(matches!(
            check_password("short", "short"),
            Err(UserError::WeakPassword)
        ));
        assert!(matches!(
            check_password("long enough pw", "long enough pX"),
            Err(UserError::Mismatch)
        ));
        check_password("long enough pw", "long enough pw").unwrap();
    }

    #[test]
    fn the_dummy_hash_has_the_console_parameters() {
        let h = PasswordHash::new(dummy_hash()).unwrap();
        assert_eq!(h.algorithm.as_str(), "argon2id");
        assert!(dummy_hash().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(!verify_blocking(dummy_hash(), b""));
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse battery").await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_blocking(&h, b"correct horse battery"));
        assert!(!verify_blocking(&h, b"correct horse batterY"));
    }
}
