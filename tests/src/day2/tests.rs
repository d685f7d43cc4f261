//! The client is honest: against a stand-in balancer it counts rounds that pass, and it counts
//! the rounds a backend that went away (502, or a port nobody answers on) breaks.

use super::*;
use hyper::service::service_fn;
use tokio_rustls::rustls::pki_types::PrivateKeyDer;

/// A TLS server on 127.0.0.1 answering like the balancer (or 502 while `broken`).
struct Standin {
    port: u16,
    cert_pem: String,
    broken: Arc<AtomicBool>,
    _rt: tokio::runtime::Runtime,
}

fn standin() -> Standin {
    clustermgr_shared::tls::install_crypto_provider();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["lb.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(clustermgr_shared::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let broken = Arc::new(AtomicBool::new(false));
    let b = broken.clone();
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, b) = (acceptor.clone(), b.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let broken = b.load(Ordering::Relaxed);
                    async move {
                        let body = match req.uri().path() {
                            "/oxauth/restv1/token" => r#"{"access_token":"t1"}"#,
                            "/oxauth/restv1/introspection" => r#"{"active":true}"#,
                            _ => "{}",
                        };
                        let status = if broken { 502 } else { 200 };
                        http::Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::from(body)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Standin {
        port,
        cert_pem: cert.pem(),
        broken,
        _rt: rt,
    }
}

fn target(port: u16) -> Target {
    Target {
        lb: "127.0.0.1".parse().unwrap(),
        port,
        host: "lb.test".into(),
        client_id: "c".into(),
        secret: "s".into(),
    }
}

#[test]
fn rounds_pass_then_a_backend_gone_fails_them() {
    let s = standin();
    let c = Day2Client::start(
        target(s.port),
        sources(3),
        std::slice::from_ref(&s.cert_pem),
        Duration::from_millis(20),
    );
    let ok = c.wait_rounds("start", 5, Duration::from_secs(30));
    assert_eq!((ok.rounds >= 5, ok.failed), (true, 0), "{ok:?}");
    s.broken.store(true, Ordering::Relaxed);
    c.phase("killed");
    let bad = c.wait_rounds("killed", 3, Duration::from_secs(30));
    assert!(bad.rounds >= 3 && bad.failed >= 3, "{bad:?}");
    assert!(bad.samples[0].contains("HTTP 502"), "{bad:?}");
    let phases = c.stop();
    assert!(report(&phases).contains("killed: "));
}

#[test]
fn nobody_answering_and_an_untrusted_certificate_are_failures() {
    let s = standin();
    // A port nobody listens on.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let c = Day2Client::start(
        target(port),
        sources(2),
        std::slice::from_ref(&s.cert_pem),
        Duration::from_millis(20),
    );
    let t = c.wait_rounds("start", 3, Duration::from_secs(30));
    assert_eq!(t.failed, t.rounds, "{t:?}");
    assert!(t.samples[0].contains("connect"), "{t:?}");
    drop(c);
    // The balancer's certificate is not trusted: no round passes.
    let other = standin();
    let c = Day2Client::start(
        target(s.port),
        sources(2),
        std::slice::from_ref(&other.cert_pem),
        Duration::from_millis(20),
    );
    let t = c.wait_rounds("start", 3, Duration::from_secs(30));
    assert!(t.rounds >= 3 && t.failed == t.rounds, "{t:?}");
    // Trusted from now on: rounds pass.
    c.trust(&s.cert_pem);
    c.phase("trusted");
    let t = c.wait_rounds("trusted", 3, Duration::from_secs(30));
    assert_eq!(t.failed, 0, "{t:?}");
}
