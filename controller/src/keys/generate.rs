//! oxAuth's keys made: RSA (rsa), P-256/P-384 (ring) with their x5c (rcgen), ES512's P-521 (p521) with an x5c built by x509-cert.

use super::*;

/// A generated key set: public JWKs, private keys, and what the record keeps.
pub struct Generated {
    pub keys: NewOxauthKeys,
    pub infos: Vec<KeyInfo>,
    pub signing_kids: Vec<String>,
}

pub(super) fn b64u(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

pub(super) fn gen_err(e: impl std::fmt::Display) -> KeysError {
    KeysError::Generate(e.to_string())
}

/// A self-signed certificate for `key`, valid from a day ago until `exp_ms`.
pub(super) fn certificate(
    key: &rcgen::KeyPair,
    now_ms: u64,
    exp_ms: u64,
) -> Result<rcgen::Certificate, KeysError> {
    let at =
        |ms: u64| time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64).map_err(gen_err);
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, CN);
    params.distinguished_name = dn;
    params.not_before = at(now_ms.saturating_sub(86_400_000))?;
    params.not_after = at(exp_ms)?;
    params.self_signed(key).map_err(gen_err)
}

/// The certificate's validity time: UTCTime before 2050, GeneralizedTime from then on (RFC 5280).
pub(super) fn x509_time(ms: u64) -> Result<x509_cert::time::Time, KeysError> {
    use x509_cert::der::asn1::{GeneralizedTime, UtcTime};
    use x509_cert::time::Time;
    let d = Duration::from_secs(ms / 1000);
    match UtcTime::from_unix_duration(d) {
        Ok(t) => Ok(Time::UtcTime(t)),
        Err(_) => Ok(Time::GeneralTime(
            GeneralizedTime::from_unix_duration(d).map_err(gen_err)?,
        )),
    }
}

/// An ES512 key and its self-signed certificate.
pub(super) struct Es512 {
    pkcs8_pem: String,
    /// The public point's coordinates, 66 bytes each.
    x: Vec<u8>,
    y: Vec<u8>,
    cert_der: Vec<u8>,
    cert_pem: String,
}

/// A P-521 key and a self-signed certificate for it (ecdsa-with-SHA512), valid from a day ago
/// until `exp_ms`.
pub(super) fn es512(now_ms: u64, exp_ms: u64) -> Result<Es512, KeysError> {
    use p521::ecdsa::signature::Signer;
    use p521::elliptic_curve::sec1::ToEncodedPoint;
    use p521::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    use sha2::Digest;
    use std::str::FromStr;
    use x509_cert::der::asn1::BitString;
    use x509_cert::der::oid::db::rfc5912::ECDSA_WITH_SHA_512;
    use x509_cert::der::{Decode, Encode, EncodePem};
    use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
    use x509_cert::{Certificate, TbsCertificate, Version};

    let secret = p521::SecretKey::random(&mut p521::elliptic_curve::rand_core::OsRng);
    let public = secret.public_key();
    let point = public.to_encoded_point(false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else {
        return Err(KeysError::Generate("unexpected P-521 public key".into()));
    };
    let pem = secret.to_pkcs8_pem(LineEnding::LF).map_err(gen_err)?;
    let spki_der = public.to_public_key_der().map_err(gen_err)?;
    let spki = SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes()).map_err(gen_err)?;
    // As rcgen does: the serial is the public key's SHA-256, 20 bytes, positive.
    let mut serial = sha2::Sha256::digest(spki_der.as_bytes())[..20].to_vec();
    serial[0] = (serial[0] & 0x7f).max(1);
    let alg = AlgorithmIdentifierOwned {
        oid: ECDSA_WITH_SHA_512,
        parameters: None,
    };
    let name = x509_cert::name::Name::from_str(&format!("CN={CN}")).map_err(gen_err)?;
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: x509_cert::serial_number::SerialNumber::new(&serial).map_err(gen_err)?,
        signature: alg.clone(),
        issuer: name.clone(),
        validity: x509_cert::time::Validity {
            not_before: x509_time(now_ms.saturating_sub(86_400_000))?,
            not_after: x509_time(exp_ms)?,
        },
        subject: name,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: None,
    };
    let signer = p521::ecdsa::SigningKey::from_bytes(&secret.to_bytes()).map_err(gen_err)?;
    let signature: p521::ecdsa::Signature = signer
        .try_sign(&tbs.to_der().map_err(gen_err)?)
        .map_err(gen_err)?;
    let cert = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: alg,
        signature: BitString::from_bytes(signature.to_der().as_bytes()).map_err(gen_err)?,
    };
    let der = cert.to_der().map_err(gen_err)?;
    let cert_pem = cert.to_pem(LineEnding::LF).map_err(gen_err)?;
    Ok(Es512 {
        pkcs8_pem: pem.to_string(),
        x: x.to_vec(),
        y: y.to_vec(),
        cert_der: der,
        cert_pem,
    })
}

/// Generates one key of `alg` expiring at `exp_ms`.
pub fn generate_one(
    alg: Alg,
    now_ms: u64,
    exp_ms: u64,
) -> Result<(String, OxauthPrivateKey, KeyInfo), KeysError> {
    use rsa::pkcs8::EncodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let use_ = if alg.sig { "sig" } else { "enc" };
    let kid = format!(
        "{}_{use_}_{}",
        uuid::Uuid::new_v4(),
        alg.name.to_ascii_lowercase().replace('_', "-")
    );
    let mut jwk = serde_json::json!({
        "kid": kid,
        "use": use_,
        "alg": alg.name,
        "exp": exp_ms,
    });
    let (pem, cert_der, cert_pem) = if alg.name == "ES512" {
        let k = es512(now_ms, exp_ms)?;
        jwk["kty"] = "EC".into();
        jwk["crv"] = "P-521".into();
        jwk["x"] = b64u(&k.x).into();
        jwk["y"] = b64u(&k.y).into();
        (k.pkcs8_pem, k.cert_der, k.cert_pem)
    } else if let Some(curve) = match alg.name {
        "ES256" => Some((&rcgen::PKCS_ECDSA_P256_SHA256, "P-256", 32)),
        "ES384" => Some((&rcgen::PKCS_ECDSA_P384_SHA384, "P-384", 48)),
        _ => None,
    } {
        let (sign, crv, len) = curve;
        let kp = rcgen::KeyPair::generate_for(sign).map_err(gen_err)?;
        let raw = kp.public_key_raw();
        // Uncompressed point: 0x04 || x || y.
        if raw.len() != 1 + 2 * len || raw.first() != Some(&4) {
            return Err(KeysError::Generate(format!("unexpected {crv} public key")));
        }
        jwk["kty"] = "EC".into();
        jwk["crv"] = crv.into();
        jwk["x"] = b64u(&raw[1..=len]).into();
        jwk["y"] = b64u(&raw[1 + len..]).into();
        let cert = certificate(&kp, now_ms, exp_ms)?;
        (kp.serialize_pem(), cert.der().to_vec(), cert.pem())
    } else {
        let mut rng = rsa::rand_core::OsRng;
        let key = rsa::RsaPrivateKey::new(&mut rng, RSA_BITS).map_err(gen_err)?;
        jwk["kty"] = "RSA".into();
        jwk["n"] = b64u(&key.n().to_bytes_be()).into();
        jwk["e"] = b64u(&key.e().to_bytes_be()).into();
        let der = key.to_pkcs8_der().map_err(gen_err)?;
        let pem = key
            .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
            .map_err(gen_err)?
            .to_string();
        let pkcs8 = rustls_pki_types_der(der.as_bytes());
        let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256)
            .map_err(gen_err)?;
        let cert = certificate(&kp, now_ms, exp_ms)?;
        (pem, cert.der().to_vec(), cert.pem())
    };
    jwk["x5c"] = serde_json::json!([STANDARD.encode(cert_der)]);
    let private = OxauthPrivateKey {
        kid: kid.clone(),
        pkcs8_pem: pem.into_bytes(),
        certificate_pem: cert_pem,
    };
    let info = KeyInfo {
        kid,
        alg: alg.name.into(),
        r#use: use_.into(),
        exp_unix_ms: exp_ms,
    };
    Ok((jwk.to_string(), private, info))
}

pub(super) fn rustls_pki_types_der(
    b: &[u8],
) -> tokio_rustls::rustls::pki_types::PrivatePkcs8KeyDer<'static> {
    tokio_rustls::rustls::pki_types::PrivatePkcs8KeyDer::from(b.to_vec())
}

/// Generates every key oxAuth uses, expiring at `exp_ms`.
pub fn generate(now_ms: u64, exp_ms: u64) -> Result<Generated, KeysError> {
    let mut g = Generated {
        keys: NewOxauthKeys::default(),
        infos: Vec::new(),
        signing_kids: Vec::new(),
    };
    for alg in ALGS {
        let (jwk, private, info) = generate_one(alg, now_ms, exp_ms)?;
        if alg.sig {
            g.signing_kids.push(info.kid.clone());
        }
        g.keys.jwks.push(jwk);
        g.keys.private.push(private);
        g.infos.push(info);
    }
    Ok(g)
}
