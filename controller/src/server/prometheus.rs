//! `serve --metrics-listen ADDR`: the Prometheus text endpoint (GET /metrics), HTTPS only, for
//! clients presenting a certificate issued by this controller to an operator (any role); node
//! certificates are refused. HTTP/1.1 (what Prometheus scrapes with).

use super::Ctl;
use crate::auth::Principal;
use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::server::WebPkiClientVerifier;

/// The TLS config: the controller's server certificate; a client certificate from the
/// cluster's CA(s) is required at the handshake.
pub fn tls_config(
    ca_pem: &str,
    chain_pem: &str,
    key_pem: &clustermgr_shared::Secret<String>,
) -> Result<Arc<ServerConfig>> {
    use clustermgr_shared::tls;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for c in tls::certs_from_pem(ca_pem)? {
        roots.add(c)?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), tls::provider()).build()?;
    let mut config = ServerConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[
            &tokio_rustls::rustls::version::TLS13,
            &tokio_rustls::rustls::version::TLS12,
        ])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(tls::certs_from_pem(chain_pem)?, tls::key_from_pem(key_pem)?)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn response(status: u16, body: String) -> hyper::Response<Full<Bytes>> {
    let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    if status == 200 {
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
    }
    r
}

/// Serves until the process ends.
pub async fn serve(ctl: Arc<Ctl>, addr: SocketAddr, tls: Arc<ServerConfig>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for metrics"))?;
    tracing::info!(%addr, "Prometheus metrics on https://{addr}/metrics (client certificate required)");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let ctl = ctl.clone();
            tokio::spawn(async move {
                let handshake =
                    tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp));
                let Ok(Ok(stream)) = handshake.await else {
                    return;
                };
                // Who is calling: an operator credential still known and unexpired.
                let allowed = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|leaf| clustermgr_shared::pki::fingerprint(leaf.as_ref()))
                    .filter(|fp| ctl.auth.is_valid(fp))
                    .and_then(|fp| ctl.auth.lookup(&fp))
                    .is_some_and(|p| matches!(p, Principal::Operator { .. }));
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let ctl = ctl.clone();
                        async move {
                            let r = if !allowed {
                                response(
                                    403,
                                    "an operator credential of this cluster is required\n".into(),
                                )
                            } else if req.method() != hyper::Method::GET {
                                response(405, "GET only\n".into())
                            } else if req.uri().path() != "/metrics" {
                                response(404, "see /metrics\n".into())
                            } else {
                                response(200, crate::prometheus::render(&ctl))
                            };
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(())
}
