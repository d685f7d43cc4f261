//! The cluster PKI: the controller's certificate authority, CSRs made on the node, certificate
//! facts (validity, fingerprint) and the CA pin agents check before they trust a controller.

use crate::Secret;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use std::time::Duration;
use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("invalid certificate signing request: {0}")]
    BadCsr(String),
    #[error("invalid certificate: {0}")]
    BadCert(String),
    #[error("invalid CA pin {0:?}: expected sha256:<64 hex digits>")]
    BadPin(String),
}

pub type Result<T> = std::result::Result<T, PkiError>;

/// Margin for clock skew between hosts: certificates start this long before issuance.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// What a client certificate is for; it selects the extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Client,
    Server,
}

/// The cluster certificate authority (ECDSA P-256).
pub struct Ca {
    cert_pem: String,
    cert_der: Vec<u8>,
    key: KeyPair,
}

impl Ca {
    /// Generates a new CA valid for `ttl`.
    pub fn generate(name: &str, ttl: Duration) -> Result<Self> {
        let key = KeyPair::generate()?;
        let now = OffsetDateTime::now_utc();
        let cert = ca_params(name, now - BACKDATE, now + ttl).self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key,
        })
    }

    /// A certificate for `next`'s key and name, signed by this CA (a cross certificate): a client
    /// that trusts only this CA can still verify certificates `next` issues when the server sends
    /// this certificate along. Valid as long as `next`.
    pub fn cross_sign(&self, next: &Ca) -> Result<String> {
        let facts = CertInfo::from_der(&next.cert_der)?;
        let to_time = |secs: u64| {
            OffsetDateTime::from_unix_timestamp(secs as i64)
                .map_err(|e| PkiError::BadCert(e.to_string()))
        };
        let params = ca_params(
            &facts.common_name,
            to_time(facts.not_before_unix)?,
            to_time(facts.not_after_unix)?,
        );
        let cert = params.signed_by(&next.key, &self.issuer()?)?;
        Ok(cert.pem())
    }

    /// Loads a CA from its PEM certificate and PEM (PKCS#8) private key; refuses a key that
    /// does not belong to the certificate.
    pub fn load(cert_pem: &str, key_pem: &Secret<String>) -> Result<Self> {
        let key = KeyPair::from_pem(key_pem.expose())?;
        let cert_der = pem_to_der(cert_pem, "CERTIFICATE")?;
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| PkiError::BadCert(e.to_string()))?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(PkiError::BadCert(
                "the CA key does not belong to the CA certificate".into(),
            ));
        }
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            cert_der,
            key,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    pub fn key_pem(&self) -> Secret<String> {
        Secret::new(self.key.serialize_pem())
    }

    /// Hex subject key identifier: what the certificates this CA issues name as their
    /// authority key identifier.
    pub fn key_id(&self) -> String {
        CertInfo::from_der(&self.cert_der)
            .map(|i| i.subject_key_id)
            .unwrap_or_default()
    }

    /// `sha256:<hex>` of the CA certificate DER: what agents are told to expect.
    pub fn pin(&self) -> String {
        pin_of(&self.cert_der)
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>> {
        Ok(Issuer::from_ca_cert_der(
            &self.cert_der.clone().into(),
            &self.key,
        )?)
    }

    /// Issues a certificate for a key pair generated here (used for the controller's own server
    /// certificate). Returns (certificate PEM, private key PEM).
    pub fn issue_with_new_key(
        &self,
        common_name: &str,
        sans: &[String],
        usage: Usage,
        ttl: Duration,
    ) -> Result<(String, Secret<String>)> {
        let key = KeyPair::generate()?;
        let params = leaf_params(common_name, sans, usage, validity_from_now(ttl))?;
        let cert = params.signed_by(&key, &self.issuer()?)?;
        Ok((cert.pem(), Secret::new(key.serialize_pem())))
    }

    /// Signs a CSR made elsewhere. Only the CSR's public key is used: subject, names, usage and
    /// validity are decided here, never taken from the request.
    pub fn sign_csr(
        &self,
        csr_der: &[u8],
        common_name: &str,
        usage: Usage,
        validity: (OffsetDateTime, OffsetDateTime),
    ) -> Result<String> {
        self.sign_csr_with_names(csr_der, common_name, &[], usage, validity)
    }

    /// [`Ca::sign_csr`] with subject alternative names (IP addresses or DNS names) decided by
    /// the caller.
    pub fn sign_csr_with_names(
        &self,
        csr_der: &[u8],
        common_name: &str,
        sans: &[String],
        usage: Usage,
        validity: (OffsetDateTime, OffsetDateTime),
    ) -> Result<String> {
        if csr_der.is_empty() || csr_der.len() > 16 * 1024 {
            return Err(PkiError::BadCsr("empty or oversized".into()));
        }
        let der = csr_der.to_vec().into();
        let csr = CertificateSigningRequestParams::from_der(&der)
            .map_err(|e| PkiError::BadCsr(e.to_string()))?;
        let params = leaf_params(common_name, sans, usage, validity)?;
        let cert = params.signed_by(&csr.public_key, &self.issuer()?)?;
        Ok(cert.pem())
    }
}

fn ca_params(
    name: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "clustermgr");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial());
    params
}

/// `(now - backdate, now + ttl)`.
pub fn validity_from_now(ttl: Duration) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (now - BACKDATE.min(ttl), now + ttl)
}

fn leaf_params(
    common_name: &str,
    sans: &[String],
    usage: Usage,
    (not_before, not_after): (OffsetDateTime, OffsetDateTime),
) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "clustermgr");
    params.distinguished_name = dn;
    params.subject_alt_names = sans
        .iter()
        .map(|s| match s.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(s.clone().try_into()?)),
        })
        .collect::<std::result::Result<_, rcgen::Error>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![match usage {
        Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
    }];
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    SerialNumber::from_slice(&bytes)
}

/// A fresh private key and a CSR for it. The key stays with the caller.
pub fn new_key_and_csr(common_name: &str) -> Result<(Secret<String>, Vec<u8>)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key)?;
    Ok((Secret::new(key.serialize_pem()), csr.der().to_vec()))
}

/// `sha256:<hex>` of a DER certificate.
pub fn pin_of(der: &[u8]) -> String {
    format!("sha256:{}", fingerprint(der))
}

/// Hex SHA-256 of a DER certificate.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Parses and normalises a `sha256:<hex>` pin (case-insensitive; the prefix is optional).
pub fn parse_pin(pin: &str) -> Result<String> {
    let hex_part = pin
        .strip_prefix("sha256:")
        .unwrap_or(pin)
        .to_ascii_lowercase();
    if hex_part.len() != 64 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(PkiError::BadPin(pin.to_string()));
    }
    Ok(format!("sha256:{hex_part}"))
}

/// The DER of the first PEM block with the given label.
pub fn pem_to_der(pem: &str, label: &str) -> Result<Vec<u8>> {
    let mut reader = std::io::BufReader::new(pem.as_bytes());
    for item in rustls_pemfile::read_all(&mut reader) {
        match item {
            Ok(rustls_pemfile::Item::X509Certificate(der)) if label == "CERTIFICATE" => {
                return Ok(der.to_vec());
            }
            Ok(_) => {}
            Err(e) => return Err(PkiError::BadCert(e.to_string())),
        }
    }
    Err(PkiError::BadCert(format!("no {label} PEM block found")))
}

/// Facts about a certificate that the CLI, agent and controller act on.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub common_name: String,
    pub not_before_unix: u64,
    pub not_after_unix: u64,
    pub fingerprint: String,
    /// Hex authority key identifier: which CA issued it ("" when absent).
    pub authority_key_id: String,
    /// Hex subject key identifier ("" when absent).
    pub subject_key_id: String,
    /// DNS names and IP addresses.
    pub sans: Vec<String>,
}

impl CertInfo {
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| PkiError::BadCert(e.to_string()))?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_string();
        let validity = cert.validity();
        let mut authority_key_id = String::new();
        let mut subject_key_id = String::new();
        let mut sans = Vec::new();
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    if let Some(k) = &aki.key_identifier {
                        authority_key_id = hex::encode(k.0);
                    }
                }
                ParsedExtension::SubjectKeyIdentifier(k) => subject_key_id = hex::encode(k.0),
                ParsedExtension::SubjectAlternativeName(san) => {
                    for n in &san.general_names {
                        match n {
                            GeneralName::DNSName(d) => sans.push(d.to_string()),
                            GeneralName::IPAddress(b) => {
                                if let Ok(a) = <[u8; 4]>::try_from(*b) {
                                    sans.push(std::net::IpAddr::from(a).to_string());
                                } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                                    sans.push(std::net::IpAddr::from(a).to_string());
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(Self {
            common_name,
            not_before_unix: validity.not_before.timestamp().max(0) as u64,
            not_after_unix: validity.not_after.timestamp().max(0) as u64,
            fingerprint: fingerprint(der),
            authority_key_id,
            subject_key_id,
            sans,
        })
    }

    pub fn from_pem(pem: &str) -> Result<Self> {
        Self::from_der(&pem_to_der(pem, "CERTIFICATE")?)
    }

    /// When to renew: two thirds into the lifetime.
    pub fn renew_at_unix(&self) -> u64 {
        let life = self.not_after_unix.saturating_sub(self.not_before_unix);
        self.not_before_unix + life * 2 / 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_is_signed_with_names_decided_by_the_ca() {
        let ca = Ca::generate("test CA", Duration::from_secs(3600)).unwrap();
        let (_key, csr) = new_key_and_csr("evil-claimed-name").unwrap();
        let pem = ca
            .sign_csr(
                &csr,
                "node-id-1",
                Usage::Client,
                validity_from_now(Duration::from_secs(600)),
            )
            .unwrap();
        let info = CertInfo::from_pem(&pem).unwrap();
        assert_eq!(info.common_name, "node-id-1");
        assert!(info.not_after_unix > info.not_before_unix);
        assert!(info.renew_at_unix() < info.not_after_unix);
    }

    #[test]
    fn garbage_csr_is_rejected() {
        let ca = Ca::generate("test CA", Duration::from_secs(3600)).unwrap();
        let err = ca
            .sign_csr(
                b"not a csr",
                "x",
                Usage::Client,
                validity_from_now(Duration::from_secs(1)),
            )
            .unwrap_err();
        assert!(matches!(err, PkiError::BadCsr(_)));
    }

    #[test]
    fn ca_reloads_from_pem_with_same_pin() {
        let ca = Ca::generate("test CA", Duration::from_secs(3600)).unwrap();
        let again = Ca::load(ca.cert_pem(), &ca.key_pem()).unwrap();
        assert_eq!(ca.pin(), again.pin());
    }

    #[test]
    fn a_cross_certificate_lets_old_trust_verify_new_leaves() {
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
        let old = Ca::generate("old CA", Duration::from_secs(3600)).unwrap();
        let new = Ca::generate("new CA", Duration::from_secs(7200)).unwrap();
        let cross = old.cross_sign(&new).unwrap();
        let (leaf, _key) = new
            .issue_with_new_key(
                "s",
                &["localhost".into()],
                Usage::Server,
                Duration::from_secs(600),
            )
            .unwrap();
        let leaf_info = CertInfo::from_pem(&leaf).unwrap();
        assert_eq!(leaf_info.authority_key_id, new.key_id());
        assert_ne!(new.key_id(), old.key_id());
        assert_eq!(leaf_info.sans, vec!["localhost".to_string()]);
        let verify = |roots_pem: &str, chain: &[&str]| {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from(
                    pem_to_der(roots_pem, "CERTIFICATE").unwrap(),
                ))
                .unwrap();
            let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
                std::sync::Arc::new(roots),
                crate::tls::provider(),
            )
            .build()
            .unwrap();
            let inter: Vec<CertificateDer> = chain
                .iter()
                .map(|p| CertificateDer::from(pem_to_der(p, "CERTIFICATE").unwrap()))
                .collect();
            v.verify_server_cert(
                &CertificateDer::from(pem_to_der(&leaf, "CERTIFICATE").unwrap()),
                &inter,
                &ServerName::try_from("localhost").unwrap(),
                &[],
                UnixTime::now(),
            )
            .is_ok()
        };
        assert!(verify(new.cert_pem(), &[]));
        assert!(!verify(old.cert_pem(), &[]));
        assert!(verify(old.cert_pem(), &[&cross]));
        assert!(verify(
            old.cert_pem(),
            &[&cross, new.cert_pem(), old.cert_pem()]
        ));
        // The wrong key for a certificate is refused.
        assert!(Ca::load(new.cert_pem(), &old.key_pem()).is_err());
    }

    #[test]
    fn pins_are_validated() {
        assert!(parse_pin("sha256:abc").is_err());
        let good = format!("sha256:{}", "AB".repeat(32));
        assert_eq!(
            parse_pin(&good).unwrap(),
            format!("sha256:{}", "ab".repeat(32))
        );
    }
}
