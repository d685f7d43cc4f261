//! Clients of a node's oxAuth: tokens, introspection, JWT verification, the install record.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::{Node, PASSWORD, text};

pub fn issue_token(node: &Node) -> String {
    let (code, _, body) = node.curl(
        "/oxauth/restv1/token",
        &[
            "-u",
            "test-client:test-secret",
            "-d",
            "grant_type=client_credentials",
            "-d",
            "scope=openid",
        ],
    );
    assert_eq!(code, 200, "token endpoint: {body}");
    let v: Value = serde_json::from_str(&body).expect("token json");
    assert_eq!(v["token_type"], "Bearer");
    v["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

pub fn introspect(node: &Node, token: &str) -> Value {
    let (code, _, body) = node.curl(
        "/oxauth/restv1/introspection",
        &["--data-urlencode", &format!("token={token}")],
    );
    assert_eq!(code, 200, "introspection: {body}");
    serde_json::from_str(&body).expect("introspection json")
}

pub fn last_text(node: &Node) -> String {
    let out = node.decrypted_last(PASSWORD);
    assert!(
        out.status.success(),
        "decrypting setup.properties.last.enc: {}",
        text(&out)
    );
    String::from_utf8(out.stdout).expect("utf-8 properties")
}

/// Verify an RS256 JWT against a JWKS; returns its claims.
pub fn verify_jwt(token: &str, jwks: &Value) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWS compact token");
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("header b64"))
            .expect("header");
    assert_eq!(header["alg"], "RS256");
    let kid = header["kid"].as_str().expect("kid");
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("kid {kid} not in JWKS"));
    let n = URL_SAFE_NO_PAD
        .decode(jwk["n"].as_str().expect("n"))
        .expect("n b64");
    let e = URL_SAFE_NO_PAD
        .decode(jwk["e"].as_str().expect("e"))
        .expect("e b64");
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).expect("sig b64");
    ring::signature::RsaPublicKeyComponents { n: &n, e: &e }
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &sig,
        )
        .expect("JWT signature verifies against /jwks");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("claims b64")).expect("claims")
}

pub fn token_cache_key(token: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    format!("oxauth_token_{}", hex::encode(d.as_ref()))
}
