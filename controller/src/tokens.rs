//! Join tokens: `<id>.<secret>`. The id is public (it names the token in the audit log); only a
//! SHA-256 of the secret is stored. Tokens expire and have a use count (1 by default).

use crate::audit::Audit;
use crate::error::{Classify, Kind};
use crate::store::{Store, StoreError};
use base64::Engine;
use clustermgr_proto::{NodeRole, TokenInfo, TokenRecord};
use clustermgr_shared::Secret;
use clustermgr_shared::util::{fmt_unix, now_unix};
use sha2::{Digest, Sha256};

pub const DEFAULT_TTL_SECS: u64 = 1800;
pub const MAX_TTL_SECS: u64 = 7 * 86_400;
pub const MAX_USES: u32 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("unknown role {0:?}; expected one of gluu-node, cache, lb")]
    UnknownRole(String),
    #[error("token lifetime is limited to 7 days")]
    TtlTooLong,
    #[error("a token allows at most {MAX_USES} uses")]
    TooManyUses,
    #[error("no join token with id {0:?}")]
    NotFound(String),
    #[error("malformed join token")]
    Malformed,
    #[error("unknown join token")]
    Unknown,
    #[error(
        "join token {id} expired at {}; create a new one with `clustermgr token create`",
        fmt_unix(*expires_unix)
    )]
    Expired { id: String, expires_unix: u64 },
    #[error(
        "join token {0} has already been used; create a new one with `clustermgr token create`"
    )]
    Used(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for TokenError {
    fn kind(&self) -> Kind {
        match self {
            Self::UnknownRole(_) | Self::TtlTooLong | Self::TooManyUses => Kind::InvalidArgument,
            Self::NotFound(_) => Kind::NotFound,
            Self::Malformed | Self::Unknown | Self::Expired { .. } | Self::Used(_) => {
                Kind::Unauthenticated
            }
            Self::Store(_) => Kind::Internal,
        }
    }
}

/// A fresh token: (token id, full token, record to store).
pub fn generate(
    role: NodeRole,
    ttl_secs: u64,
    uses: u32,
    by: &str,
) -> (String, Secret<String>, TokenRecord) {
    let id = hex::encode(rand::random::<[u8; 5]>());
    let secret =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let rec = TokenRecord {
        id: id.clone(),
        secret_sha256: Sha256::digest(secret.as_bytes()).to_vec(),
        role: role as i32,
        expires_unix: now_unix().saturating_add(ttl_secs),
        uses_left: uses,
        created_by: by.to_string(),
        created_unix_ms: clustermgr_shared::util::now_ms(),
    };
    (id.clone(), Secret::new(format!("{id}.{secret}")), rec)
}

/// What operators may see of a token.
pub fn info(rec: &TokenRecord) -> TokenInfo {
    let state = if rec.uses_left == 0 {
        "used"
    } else if now_unix() >= rec.expires_unix {
        "expired"
    } else {
        "active"
    };
    TokenInfo {
        id: rec.id.clone(),
        role: rec.role().label().into(),
        expires_unix: rec.expires_unix,
        uses_left: rec.uses_left,
        created_by: rec.created_by.clone(),
        created_unix_ms: rec.created_unix_ms,
        state: state.into(),
    }
}

/// Splits a token into (id, secret) if it is well formed.
pub fn split(token: &str) -> Option<(String, &str)> {
    let (id, secret) = token.trim().split_once('.')?;
    let ok_id = id.len() == 10 && id.bytes().all(|b| b.is_ascii_hexdigit());
    let ok_secret = !secret.is_empty()
        && secret.len() <= 128
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (ok_id && ok_secret).then(|| (id.to_ascii_lowercase(), secret))
}

/// Verifies a secret against its record: constant-time hash comparison, expiry, uses left.
pub fn check(rec: &TokenRecord, secret: &str) -> Result<(), TokenError> {
    let digest = Sha256::digest(secret.as_bytes());
    let same = digest.len() == rec.secret_sha256.len()
        && digest
            .iter()
            .zip(&rec.secret_sha256)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return Err(TokenError::Unknown);
    }
    if now_unix() >= rec.expires_unix {
        return Err(TokenError::Expired {
            id: rec.id.clone(),
            expires_unix: rec.expires_unix,
        });
    }
    if rec.uses_left == 0 {
        return Err(TokenError::Used(rec.id.clone()));
    }
    Ok(())
}

/// The request presents a usable token (well formed, known, the right secret, unexpired, uses
/// left). A valid token is not guessable, so its bearer is let through a source's failure limit
/// (a NAT shared with a flooder must not block provisioning). One store read and one SHA-256.
pub fn presents_valid(store: &Store, token: &str) -> bool {
    let Some((id, secret)) = split(token) else {
        return false;
    };
    matches!(store.token(&id), Ok(Some(rec)) if check(&rec, secret).is_ok())
}

/// Creates a token (`ttl_secs`/`uses` 0 take the defaults). Returns the full token once.
pub async fn create(
    store: &Store,
    role: &str,
    ttl_secs: u64,
    uses: u32,
    by: &str,
    audit: &Audit,
) -> Result<(Secret<String>, TokenRecord), TokenError> {
    let node_role =
        NodeRole::from_label(role).ok_or_else(|| TokenError::UnknownRole(role.into()))?;
    let ttl = if ttl_secs == 0 {
        DEFAULT_TTL_SECS
    } else {
        ttl_secs
    };
    if ttl > MAX_TTL_SECS {
        return Err(TokenError::TtlTooLong);
    }
    let uses = if uses == 0 { 1 } else { uses };
    if uses > MAX_USES {
        return Err(TokenError::TooManyUses);
    }
    let (id, token, rec) = generate(node_role, ttl, uses, by);
    let row = audit.ok(format!(
        "token_id={id} role={} ttl={ttl}s uses={uses}",
        node_role.label()
    ));
    store.create_token(rec.clone(), row).await?;
    Ok((token, rec))
}

pub fn list(store: &Store) -> Result<Vec<TokenInfo>, TokenError> {
    Ok(store.tokens()?.iter().map(info).collect())
}

/// Deletes a token by id (a whole token is accepted too; only its id is ever recorded).
pub async fn revoke(
    store: &Store,
    id_or_token: &str,
    audit: &Audit,
) -> Result<TokenInfo, TokenError> {
    let id = token_id_of(id_or_token);
    let a = audit.on(id.clone());
    let rec = store
        .revoke_token(&id, move |r| a.ok(format!("role={}", r.role().label())))
        .await?
        .ok_or(TokenError::NotFound(id))?;
    Ok(info(&rec))
}

/// The id part of a token id or a whole token, lower-cased.
pub fn token_id_of(s: &str) -> String {
    let id = s.trim().to_ascii_lowercase();
    id.split_once('.')
        .map_or(id.clone(), |(i, _)| i.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_verify_once_formed() {
        let (id, token, rec) = generate(NodeRole::GluuNode, 60, 1, "admin");
        let (sid, secret) = split(token.expose()).unwrap();
        assert_eq!(sid, id);
        check(&rec, secret).unwrap();
        assert!(check(&rec, "wrong").is_err());
        let used = TokenRecord {
            uses_left: 0,
            ..rec.clone()
        };
        assert!(
            check(&used, secret)
                .unwrap_err()
                .to_string()
                .contains("already been used")
        );
        let expired = TokenRecord {
            expires_unix: 1,
            ..rec
        };
        assert!(
            check(&expired, secret)
                .unwrap_err()
                .to_string()
                .contains("expired")
        );
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        assert!(split("nodot").is_none());
        assert!(split("zz.abc").is_none());
        assert!(split("0123456789.a b").is_none());
    }

    #[test]
    fn a_huge_ttl_does_not_overflow() {
        let (_, _, rec) = generate(NodeRole::Lb, u64::MAX, 1, "admin");
        assert_eq!(rec.expires_unix, u64::MAX);
    }
}
