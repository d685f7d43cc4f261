//! rustls configurations (ring provider only): the agent's and CLI's client configs, and the
//! CA-pinning verifier used while joining, and the controller's server config.

use crate::Secret;
use crate::pki::{fingerprint, pin_of};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS configuration error: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("certificate verifier error: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("invalid PEM ({what}): {msg}")]
    Pem { what: &'static str, msg: String },
}

/// Installs the ring crypto provider as the process default. Call once at start-up; later calls
/// are harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses all certificates of a PEM bundle.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut reader = std::io::BufReader::new(pem.as_bytes());
    let certs = rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: "certificate",
            msg: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what: "certificate",
            msg: "no certificate found".into(),
        });
    }
    Ok(certs)
}

/// Parses a PEM private key.
pub fn key_from_pem(pem: &Secret<String>) -> Result<PrivateKeyDer<'static>, TlsError> {
    let mut reader = std::io::BufReader::new(pem.expose().as_bytes());
    rustls_pemfile::private_key(&mut reader)
        .map_err(|e| TlsError::Pem {
            what: "private key",
            msg: e.to_string(),
        })?
        .ok_or(TlsError::Pem {
            what: "private key",
            msg: "no private key found".into(),
        })
}

fn finish(mut config: ClientConfig) -> Arc<ClientConfig> {
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// A client config that trusts only the cluster CA and, when given, presents a client
/// certificate.
pub fn client_config(
    ca_pem: &str,
    identity: Option<(&str, &Secret<String>)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs_from_pem(ca_pem)? {
        roots.add(c)?;
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert_pem, key_pem)) => {
            builder.with_client_auth_cert(certs_from_pem(cert_pem)?, key_from_pem(key_pem)?)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(finish(config))
}

/// What the pinned verifier saw: the CA certificate that matched the pin, or the fingerprints
/// of what the controller presented instead.
/// The handshake-signature half of a `ServerCertVerifier` whose `provider` field holds the
/// crypto provider: verified with the provider's algorithms, as rustls itself does.
macro_rules! signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

#[derive(Debug, Default, Clone)]
pub struct PinObservation {
    pub matched_ca_der: Option<Vec<u8>>,
    pub presented: Vec<String>,
}

/// Trusts a server whose chain contains a CA certificate with the given SHA-256 pin and whose
/// leaf that CA signed (kubeadm-style discovery). Used only for joining.
#[derive(Debug)]
pub struct PinnedCaVerifier {
    pin: String,
    provider: Arc<CryptoProvider>,
    seen: Arc<Mutex<PinObservation>>,
}

impl PinnedCaVerifier {
    pub fn new(pin: String) -> (Arc<Self>, Arc<Mutex<PinObservation>>) {
        let seen = Arc::new(Mutex::new(PinObservation::default()));
        (
            Arc::new(Self {
                pin,
                provider: provider(),
                seen: seen.clone(),
            }),
            seen,
        )
    }
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let matched = intermediates.iter().find(|c| pin_of(c) == self.pin);
        let Some(ca) = matched else {
            if let Ok(mut seen) = self.seen.lock() {
                seen.presented = intermediates.iter().map(|c| fingerprint(c)).collect();
            }
            return Err(rustls::Error::General(
                "the controller's CA does not match the CA pin".into(),
            ));
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        // During a CA rotation the chain also carries the new CA cross-signed by the old one, so
        // either CA's pin leads to a valid path.
        let others: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .filter(|c| pin_of(c) != self.pin)
            .cloned()
            .collect();
        inner.verify_server_cert(end_entity, &others, server_name, ocsp_response, now)?;
        if let Ok(mut seen) = self.seen.lock() {
            seen.matched_ca_der = Some(ca.to_vec());
        }
        Ok(ServerCertVerified::assertion())
    }

    signature_checks!();
}

/// Accepts any server certificate (handshake signatures are still checked): used only to read
/// what a server presents, never to send anything over the connection.
#[derive(Debug)]
pub struct CaptureVerifier {
    provider: Arc<CryptoProvider>,
}

impl CaptureVerifier {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            provider: provider(),
        })
    }
}

impl ServerCertVerifier for CaptureVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    signature_checks!();
}

/// Trusts exactly one certificate, byte for byte (a service's self-signed certificate read from
/// the node itself), or one of a few (a certificate roll), with the handshake signatures
/// verified as usual.
#[derive(Debug)]
pub struct ExactCertVerifier {
    certs: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl ExactCertVerifier {
    pub fn new(cert: CertificateDer<'static>) -> Arc<Self> {
        Self::any_of(vec![cert])
    }

    /// Trusts each of `certs`, byte for byte.
    pub fn any_of(certs: Vec<CertificateDer<'static>>) -> Arc<Self> {
        Arc::new(Self {
            certs,
            provider: provider(),
        })
    }
}

impl ServerCertVerifier for ExactCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.certs.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server's certificate is not the expected one".into(),
            ))
        }
    }

    signature_checks!();
}

/// The controller's server config: presents `chain_pem` (leaf first) with `key_pem`; asks for
/// a client certificate and, when one is presented, verifies it against every CA in
/// `client_ca_pem` (more than one during a CA rotation). Calls without a certificate reach the
/// services, whose interceptors refuse all but enrollment.
pub fn server_config(
    client_ca_pem: &str,
    chain_pem: &str,
    key_pem: &Secret<String>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs_from_pem(client_ca_pem)? {
        roots.add(c)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs_from_pem(chain_pem)?, key_from_pem(key_pem)?)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A client config for joining: trusts the controller only through the pin, presents no
/// certificate.
pub fn pinned_client_config(
    pin: &str,
) -> Result<(Arc<ClientConfig>, Arc<Mutex<PinObservation>>), TlsError> {
    let (verifier, seen) = PinnedCaVerifier::new(pin.to_string());
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok((finish(config), seen))
}
