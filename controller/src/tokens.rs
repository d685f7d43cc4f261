//! Join tokens: `<id>.<secret>`. The id is public (it names the token in the audit log); only a
//! SHA-256 of the secret is stored. Tokens expire and have a use count (1 by default).

use base64::Engine;
use clustermgr_proto::TokenRecord;
use clustermgr_shared::Secret;
use clustermgr_shared::util::{fmt_unix, now_unix};
use sha2::{Digest, Sha256};
use tonic::Status;

/// A fresh token: (token id, full token, record to store).
pub fn generate(
    role: &str,
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
        role: role.to_string(),
        expires_unix: now_unix() + ttl_secs,
        uses_left: uses,
        created_by: by.to_string(),
        created_unix_ms: clustermgr_shared::util::now_ms(),
    };
    (id.clone(), Secret::new(format!("{id}.{secret}")), rec)
}

/// What operators may see of a token.
pub fn info(rec: &TokenRecord) -> clustermgr_proto::TokenInfo {
    let state = if rec.uses_left == 0 {
        "used"
    } else if now_unix() >= rec.expires_unix {
        "expired"
    } else {
        "active"
    };
    clustermgr_proto::TokenInfo {
        id: rec.id.clone(),
        role: rec.role.clone(),
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
pub fn check(rec: &TokenRecord, secret: &str) -> Result<(), Status> {
    let digest = Sha256::digest(secret.as_bytes());
    let same = digest.len() == rec.secret_sha256.len()
        && digest
            .iter()
            .zip(&rec.secret_sha256)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return Err(Status::unauthenticated("unknown join token"));
    }
    if now_unix() >= rec.expires_unix {
        return Err(Status::unauthenticated(format!(
            "join token {} expired at {}; create a new one with `clustermgr token create`",
            rec.id,
            fmt_unix(rec.expires_unix)
        )));
    }
    if rec.uses_left == 0 {
        return Err(Status::unauthenticated(format!(
            "join token {} has already been used; create a new one with `clustermgr token create`",
            rec.id
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_verify_once_formed() {
        let (id, token, rec) = generate("gluu-node", 60, 1, "admin");
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
                .message()
                .contains("already been used")
        );
        let expired = TokenRecord {
            expires_unix: 1,
            ..rec
        };
        assert!(
            check(&expired, secret)
                .unwrap_err()
                .message()
                .contains("expired")
        );
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        assert!(split("nodot").is_none());
        assert!(split("zz.abc").is_none());
        assert!(split("0123456789.a b").is_none());
    }
}
