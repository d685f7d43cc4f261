use super::generate::x509_time;
use super::*;
use ring::signature;

#[test]
fn every_key_has_its_public_parameters_a_certificate_and_no_private_part() {
    let now = 1_800_000_000_000;
    let g = generate(now, now + 3_600_000).unwrap();
    assert_eq!(g.infos.len(), ALGS.len());
    assert_eq!(g.signing_kids.len(), 9);
    assert!(g.signing_kids[0].ends_with("_sig_rs256"));
    for (jwk, p) in g.keys.jwks.iter().zip(&g.keys.private) {
        let v: serde_json::Value = serde_json::from_str(jwk).unwrap();
        assert_eq!(v["kid"], p.kid.as_str());
        assert_eq!(v["exp"], now + 3_600_000);
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(v.get(private).is_none(), "{jwk}");
        }
        let x5c = STANDARD.decode(v["x5c"][0].as_str().unwrap()).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&x5c).unwrap();
        assert!(cert.subject().to_string().contains(CN));
        assert!(String::from_utf8_lossy(&p.pkcs8_pem).starts_with("-----BEGIN PRIVATE KEY-----"));
        match v["kty"].as_str().unwrap() {
            "RSA" => assert!(v["n"].as_str().unwrap().len() > 300 && v["e"] == "AQAB"),
            "EC" => assert!(v["x"].is_string() && v["y"].is_string() && v["crv"].is_string()),
            other => panic!("{other}"),
        }
    }
    let algs: Vec<_> = g.infos.iter().map(|i| i.alg.as_str()).collect();
    assert_eq!(
        algs,
        [
            "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512",
            "RSA1_5", "RSA-OAEP"
        ]
    );
}

#[test]
fn the_rs256_private_key_signs_what_its_jwk_verifies() {
    let now = 1_800_000_000_000;
    let (jwk, p, _) = generate_one(ALGS[0], now, now + 1000).unwrap();
    let pem = String::from_utf8(p.pkcs8_pem).unwrap();
    let der = tokio_rustls::rustls::pki_types::PrivatePkcs8KeyDer::from(rustls_pemfile_der(&pem));
    let kp = signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap();
    let mut sig = vec![0; kp.public().modulus_len()];
    kp.sign(
        &signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        b"msg",
        &mut sig,
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&jwk).unwrap();
    let n = URL_SAFE_NO_PAD.decode(v["n"].as_str().unwrap()).unwrap();
    let e = URL_SAFE_NO_PAD.decode(v["e"].as_str().unwrap()).unwrap();
    signature::RsaPublicKeyComponents { n: &n, e: &e }
        .verify(&signature::RSA_PKCS1_2048_8192_SHA256, b"msg", &sig)
        .unwrap();
}

fn es512_key(now: u64, exp: u64) -> (serde_json::Value, OxauthPrivateKey, Vec<u8>) {
    let alg = ALGS.into_iter().find(|a| a.name == "ES512").unwrap();
    let (jwk, p, info) = generate_one(alg, now, exp).unwrap();
    assert_eq!((info.alg.as_str(), info.r#use.as_str()), ("ES512", "sig"));
    let v: serde_json::Value = serde_json::from_str(&jwk).unwrap();
    let x5c = STANDARD.decode(v["x5c"][0].as_str().unwrap()).unwrap();
    (v, p, x5c)
}

/// The JWK's public point: 0x04 || x || y, each coordinate 66 bytes.
fn jwk_point(v: &serde_json::Value) -> Vec<u8> {
    let x = URL_SAFE_NO_PAD.decode(v["x"].as_str().unwrap()).unwrap();
    let y = URL_SAFE_NO_PAD.decode(v["y"].as_str().unwrap()).unwrap();
    assert_eq!((x.len(), y.len()), (66, 66));
    [vec![4], x, y].concat()
}

#[test]
fn the_es512_jwk_is_a_p521_point_and_its_certificate_holds_the_same_key() {
    let now = 1_800_000_000_000;
    let exp = now + 7 * 86_400_000;
    let (v, p, x5c) = es512_key(now, exp);
    assert_eq!(
        (&v["kty"], &v["crv"], &v["alg"], &v["use"], &v["exp"]),
        (
            &"EC".into(),
            &"P-521".into(),
            &"ES512".into(),
            &"sig".into(),
            &exp.into()
        )
    );
    let kid = v["kid"].as_str().unwrap();
    assert!(kid.ends_with("_sig_es512"), "{kid}");
    assert!(uuid::Uuid::parse_str(&kid[..36]).is_ok(), "{kid}");
    assert_eq!(p.kid, kid);
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        assert!(v.get(private).is_none(), "{v}");
    }
    let point = jwk_point(&v);
    p521::ecdsa::VerifyingKey::from_sec1_bytes(&point).expect("a point on P-521");

    let (rest, cert) = x509_parser::parse_x509_certificate(&x5c).unwrap();
    assert!(rest.is_empty());
    let spki = cert.public_key();
    assert_eq!(spki.algorithm.algorithm.to_id_string(), "1.2.840.10045.2.1");
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .unwrap()
        .as_oid()
        .unwrap();
    assert_eq!(curve.to_id_string(), "1.3.132.0.35", "secp521r1");
    assert_eq!(&spki.subject_public_key.data[..], &point[..]);
    // The PEM given to the keystore is the same certificate.
    let pem = p.certificate_pem.trim_end();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(pem.ends_with("\n-----END CERTIFICATE-----"));
    assert_eq!(rustls_pemfile_der(pem), x5c);
}

#[test]
fn the_es512_certificate_is_self_signed_with_ecdsa_sha512_until_exp() {
    use p521::ecdsa::signature::Verifier;
    let now = 1_800_000_000_000;
    let exp = now + 7 * 86_400_000;
    let (v, _, x5c) = es512_key(now, exp);
    let (_, cert) = x509_parser::parse_x509_certificate(&x5c).unwrap();
    assert_eq!(cert.version(), x509_parser::x509::X509Version::V3);
    assert_eq!(cert.subject().to_string(), format!("CN={CN}"));
    assert_eq!(cert.issuer().to_string(), format!("CN={CN}"));
    assert_eq!(
        cert.validity().not_before.timestamp(),
        (now / 1000 - 86_400) as i64
    );
    assert_eq!(cert.validity().not_after.timestamp(), (exp / 1000) as i64);
    assert!(!cert.raw_serial().is_empty() && cert.raw_serial()[0] & 0x80 == 0);
    let ecdsa_with_sha512 = "1.2.840.10045.4.3.4";
    assert_eq!(
        cert.signature_algorithm.algorithm.to_id_string(),
        ecdsa_with_sha512
    );
    assert_eq!(
        cert.tbs_certificate.signature.algorithm.to_id_string(),
        ecdsa_with_sha512
    );
    assert!(cert.signature_algorithm.parameters.is_none());
    let key = p521::ecdsa::VerifyingKey::from_sec1_bytes(&jwk_point(&v)).unwrap();
    let sig = p521::ecdsa::Signature::from_der(&cert.signature_value.data).unwrap();
    key.verify(cert.tbs_certificate.as_ref(), &sig)
        .expect("the signature verifies with the JWK's key");
    assert!(key.verify(b"something else", &sig).is_err());
}

#[test]
fn the_es512_pkcs8_pem_holds_the_jwk_key_and_signs_what_it_verifies() {
    use p521::ecdsa::signature::{Signer, Verifier};
    use p521::elliptic_curve::sec1::ToEncodedPoint;
    use p521::pkcs8::DecodePrivateKey;
    let now = 1_800_000_000_000;
    let (v, p, _) = es512_key(now, now + 1000);
    let pem = String::from_utf8(p.pkcs8_pem).unwrap();
    assert!(
        pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
        "{}",
        &pem[..30]
    );
    let secret = p521::SecretKey::from_pkcs8_pem(&pem).unwrap();
    let point = jwk_point(&v);
    assert_eq!(
        secret.public_key().to_encoded_point(false).as_bytes(),
        &point[..]
    );
    let signer = p521::ecdsa::SigningKey::from_bytes(&secret.to_bytes()).unwrap();
    let sig: p521::ecdsa::Signature = signer.sign(b"msg");
    p521::ecdsa::VerifyingKey::from_sec1_bytes(&point)
        .unwrap()
        .verify(b"msg", &sig)
        .unwrap();
}

#[test]
fn certificate_times_are_utc_before_2050_and_generalized_from_then_on() {
    use x509_cert::time::Time;
    let t = x509_time(1_800_000_000_999).unwrap();
    assert!(matches!(t, Time::UtcTime(_)), "{t:?}");
    assert_eq!(t.to_unix_duration().as_secs(), 1_800_000_000);
    // 2050-01-01T00:00:00Z
    let t = x509_time(2_524_608_000_000).unwrap();
    assert!(matches!(t, Time::GeneralTime(_)), "{t:?}");
    assert_eq!(t.to_unix_duration().as_secs(), 2_524_608_000);
    let t = x509_time(2_524_607_999_000).unwrap();
    assert!(matches!(t, Time::UtcTime(_)), "{t:?}");
}

fn rustls_pemfile_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}
