//! ID token verification: an RS256 JWS checked against the OP's JWKS (ring), then its claims:
//! `iss`, `sub`, `aud` (and `azp` when several audiences), `exp`, `iat`, `nonce`. Nothing else is
//! accepted: no `none`, no HMAC, no key from the token itself.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use serde_json::{Map, Value};

use super::OidcError;

/// Clock difference tolerated between the controller and the OP (seconds).
const LEEWAY: i64 = 60;

/// What the ID token must say.
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    /// Unix seconds.
    pub now: i64,
}

fn refused(why: impl Into<String>) -> OidcError {
    OidcError::IdToken(why.into())
}

fn part(b64: &str, what: &str) -> Result<Vec<u8>, OidcError> {
    URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| refused(format!("its {what} is not base64url")))
}

/// The verified claims of `token`.
pub fn verify(token: &str, jwks: &Value, want: &Expected) -> Result<Map<String, Value>, OidcError> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(refused("it is not a signed JWT (three parts)"));
    };
    let header: Value = serde_json::from_slice(&part(h, "header")?)
        .map_err(|_| refused("its header is not JSON"))?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    if alg != "RS256" {
        return Err(refused(format!("alg {alg:?} is not RS256")));
    }
    let kid = header.get("kid").and_then(Value::as_str);
    let key = signing_key(jwks, kid)?;
    let sig = part(s, "signature")?;
    key.verify(
        &RSA_PKCS1_2048_8192_SHA256,
        format!("{h}.{c}").as_bytes(),
        &sig,
    )
    .map_err(|_| refused("its signature does not verify with the OP's key"))?;
    let claims: Map<String, Value> = serde_json::from_slice(&part(c, "claims")?)
        .map_err(|_| refused("its claims are not a JSON object"))?;
    check_claims(&claims, want)?;
    Ok(claims)
}

/// The RSA key of the JWKS with `kid` (without a kid: the only RS256 signing key).
fn signing_key(
    jwks: &Value,
    kid: Option<&str>,
) -> Result<RsaPublicKeyComponents<Vec<u8>>, OidcError> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| refused("the OP's JWKS has no keys"))?;
    let usable = |k: &&Value| {
        k.get("kty").and_then(Value::as_str) == Some("RSA")
            && k.get("use")
                .and_then(Value::as_str)
                .is_none_or(|u| u == "sig")
            && k.get("alg")
                .and_then(Value::as_str)
                .is_none_or(|a| a == "RS256")
    };
    let candidates: Vec<&Value> = keys.iter().filter(usable).collect();
    let jwk = match kid {
        Some(kid) => candidates
            .iter()
            .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
            .ok_or_else(|| refused(format!("no RS256 key with kid {kid:?} in the OP's JWKS")))?,
        None => match candidates.as_slice() {
            [one] => one,
            _ => return Err(refused("it names no kid and the JWKS has several keys")),
        },
    };
    let field = |name: &str| {
        jwk.get(name)
            .and_then(Value::as_str)
            .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
            .ok_or_else(|| refused(format!("the JWK has no valid {name}")))
    };
    Ok(RsaPublicKeyComponents {
        n: field("n")?,
        e: field("e")?,
    })
}

fn check_claims(claims: &Map<String, Value>, want: &Expected) -> Result<(), OidcError> {
    let s = |k: &str| claims.get(k).and_then(Value::as_str);
    if s("iss") != Some(want.issuer) {
        return Err(refused(format!(
            "iss {:?} is not the issuer {:?}",
            s("iss").unwrap_or(""),
            want.issuer
        )));
    }
    // OpenID Connect Core 2: the subject, the one stable, unique name of the person at the OP.
    if s("sub").is_none_or(str::is_empty) {
        return Err(refused("it has no sub"));
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&want.client_id) {
        return Err(refused("aud does not name this console's client id"));
    }
    if audiences.len() > 1 && s("azp") != Some(want.client_id) {
        return Err(refused("several audiences and azp is not this console"));
    }
    let int = |k: &str| claims.get(k).and_then(Value::as_i64);
    match int("exp") {
        Some(exp) if exp + LEEWAY > want.now => {}
        Some(_) => return Err(refused("it has expired")),
        None => return Err(refused("it has no exp")),
    }
    if int("iat").is_some_and(|iat| iat > want.now + LEEWAY) {
        return Err(refused("it was issued in the future (iat)"));
    }
    if s("nonce") != Some(want.nonce) {
        return Err(refused("its nonce is not this sign-in's"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
    use rsa::pkcs8::EncodePrivateKey as _;
    use serde_json::json;

    fn key() -> RsaKeyPair {
        let k = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        RsaKeyPair::from_pkcs8(k.to_pkcs8_der().unwrap().as_bytes()).unwrap()
    }

    fn jwks(k: &RsaKeyPair, kid: &str) -> Value {
        let public = k.public_key();
        let c: RsaPublicKeyComponents<Vec<u8>> = public.into();
        json!({"keys": [
            {"kty": "EC", "kid": "ec1", "use": "sig", "alg": "ES256", "crv": "P-256"},
            {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
             "n": URL_SAFE_NO_PAD.encode(&c.n), "e": URL_SAFE_NO_PAD.encode(&c.e)},
        ]})
    }

    fn sign(k: &RsaKeyPair, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0; k.public().modulus_len()];
        k.sign(
            &RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut sig,
        )
        .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    const NOW: i64 = 1_800_000_000;

    fn want() -> Expected<'static> {
        Expected {
            issuer: "https://idp.example.org",
            client_id: "console",
            nonce: "n-123",
            now: NOW,
        }
    }

    fn claims() -> Value {
        json!({"iss": "https://idp.example.org", "aud": "console", "sub": "alice",
               "iat": NOW, "exp": NOW + 300, "nonce": "n-123", "role": ["clusteradmin"]})
    }

    #[test]
    fn a_token_of_the_op_verifies_and_every_tampering_is_refused() {
        let k = key();
        let set = jwks(&k, "k1");
        let h = json!({"alg": "RS256", "kid": "k1", "typ": "JWT"});
        let good = sign(&k, &h, &claims());
        let got = verify(&good, &set, &want()).unwrap();
        assert_eq!(got["role"], json!(["clusteradmin"]));

        let refused = |token: &str, why: &str| {
            let e = verify(token, &set, &want()).unwrap_err().to_string();
            assert!(e.contains(why), "{why}: {e}");
        };
        // The claims changed after signing (a role added).
        let (hc, sig) = good.rsplit_once('.').unwrap();
        let (hh, _) = hc.split_once('.').unwrap();
        let mut forged = claims();
        forged["role"] = json!(["clusteradmin", "root"]);
        forged["sub"] = json!("mallory");
        let tampered = format!("{hh}.{}.{sig}", URL_SAFE_NO_PAD.encode(forged.to_string()));
        refused(&tampered, "signature");
        // Signed by another key under the OP's kid.
        refused(&sign(&key(), &h, &claims()), "signature");
        // alg none, HS256.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(json!({"alg": "none"}).to_string()),
            URL_SAFE_NO_PAD.encode(claims().to_string())
        );
        refused(&none, "RS256");
        refused(
            &sign(&k, &json!({"alg": "HS256", "kid": "k1"}), &claims()),
            "RS256",
        );
        refused(
            &sign(&k, &json!({"alg": "RS256", "kid": "k9"}), &claims()),
            "kid",
        );
        for (field, value, why) in [
            ("iss", json!("https://evil.example.org"), "iss"),
            ("aud", json!("another-client"), "aud"),
            ("aud", json!(["console", "other"]), "azp"),
            ("exp", json!(NOW - 120), "expired"),
            ("iat", json!(NOW + 600), "future"),
            ("nonce", json!("n-other"), "nonce"),
            ("sub", json!(""), "sub"),
            ("sub", json!(7), "sub"),
        ] {
            let mut c = claims();
            c[field] = value;
            refused(&sign(&k, &h, &c), why);
        }
        let mut c = claims();
        c.as_object_mut().unwrap().remove("nonce");
        refused(&sign(&k, &h, &c), "nonce");
        let mut c = claims();
        c.as_object_mut().unwrap().remove("sub");
        refused(&sign(&k, &h, &c), "no sub");
        refused("a.b", "three parts");
    }
}
