//! RS256 JSON Web Tokens signed with the node's current signing key.

use anyhow::{Context, Result, anyhow};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde_json::Value;

use crate::certs;

pub struct SigningKey {
    pub kid: String,
    key: RsaKeyPair,
}

/// The signing key: the first RS256 key of the JWKS (`use` = `sig` or absent) whose kid has a
/// private key in `private` (an object kid -> PKCS#8 PEM) that matches its modulus.
/// Returns the key and notes on keys that were skipped.
pub fn select_signing_key(jwks: &Value, private: &Value) -> (Option<SigningKey>, Vec<String>) {
    let mut notes = Vec::new();
    let keys = jwks.get("keys").and_then(Value::as_array);
    for jwk in keys.into_iter().flatten() {
        let alg = jwk.get("alg").and_then(Value::as_str);
        let usage = jwk.get("use").and_then(Value::as_str).unwrap_or("sig");
        if alg != Some("RS256") || usage != "sig" {
            continue;
        }
        let Some(kid) = jwk.get("kid").and_then(Value::as_str) else {
            continue;
        };
        let Some(pem) = private.get(kid).and_then(Value::as_str) else {
            notes.push(format!("no private key for kid {kid}"));
            continue;
        };
        match certs::rsa_from_pem(pem) {
            Ok(key) => {
                if jwk.get("n").and_then(Value::as_str) != Some(certs::jwk_n(&key).as_str()) {
                    notes.push(format!("private key of kid {kid} does not match its JWK"));
                    continue;
                }
                return (
                    Some(SigningKey {
                        kid: kid.to_string(),
                        key,
                    }),
                    notes,
                );
            }
            Err(e) => notes.push(format!("private key of kid {kid}: {e:#}")),
        }
    }
    (None, notes)
}

pub fn sign(key: &SigningKey, claims: &Value) -> Result<String> {
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": key.kid});
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?)
    );
    let mut sig = vec![0u8; key.key.public().modulus_len()];
    key.key
        .sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            signing_input.as_bytes(),
            &mut sig,
        )
        .map_err(|_| anyhow!("RSA signing failed"))
        .context("signing the token")?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}
