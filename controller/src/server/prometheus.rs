//! `serve --metrics-listen ADDR`: the Prometheus text endpoint (GET /metrics), HTTPS only, for
//! clients presenting a certificate issued by this controller to an operator (any role); node
//! certificates are refused. HTTP/1.1 (what Prometheus scrapes with).

use super::Ctl;
use super::listener::TlsSwitch;
use crate::auth::Principal;
use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::Bytes;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::server::WebPkiClientVerifier;

/// The metrics listener's TLS, following the gRPC listener's: its server certificate (renewed
/// with it) and the CAs trusted now (both during a CA rotation, the new one alone after), with a
/// client certificate required at the handshake and HTTP/1.1 as the protocol. Rebuilt when the
/// gRPC listener's config changes (the CA state is updated before it).
pub struct MetricsTls {
    ctl: Arc<Ctl>,
    switch: Arc<TlsSwitch>,
    /// (the gRPC config it was derived from, the derived config)
    cached: Mutex<Option<(Arc<ServerConfig>, Arc<ServerConfig>)>>,
}

impl MetricsTls {
    pub fn new(ctl: Arc<Ctl>, switch: Arc<TlsSwitch>) -> Self {
        Self {
            ctl,
            switch,
            cached: Mutex::new(None),
        }
    }

    /// The config for a connection accepted now.
    pub fn config(&self) -> Result<Arc<ServerConfig>> {
        let main = self.switch.get();
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((from, derived)) = cached.as_ref()
            && Arc::ptr_eq(from, &main)
        {
            return Ok(derived.clone());
        }
        use clustermgr_shared::tls;
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        for c in tls::certs_from_pem(&self.ctl.ca.get().trusted_pem())? {
            roots.add(c)?;
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), tls::provider())
                .build()?;
        let mut config = ServerConfig::builder_with_provider(tls::provider())
            .with_protocol_versions(&[
                &tokio_rustls::rustls::version::TLS13,
                &tokio_rustls::rustls::version::TLS12,
            ])?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(main.cert_resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let derived = Arc::new(config);
        *cached = Some((main, derived.clone()));
        Ok(derived)
    }
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

/// Connections served at once (more are closed at accept): a scraper needs one.
const MAX_CONNECTIONS: usize = 32;
/// A connection that sends no request for this long is closed.
const IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether the certificate with this fingerprint belongs to an operator credential that is
/// still known and unexpired, asked at every request (a removed operator's keep-alive
/// connection is refused at its next request).
fn operator(ctl: &Ctl, fp: Option<&str>) -> bool {
    fp.filter(|fp| ctl.auth.is_valid(fp))
        .and_then(|fp| ctl.auth.lookup(fp))
        .is_some_and(|p| matches!(p, Principal::Operator { .. }))
}

/// Serves until the process ends.
pub async fn serve(ctl: Arc<Ctl>, addr: SocketAddr, tls: Arc<MetricsTls>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for metrics"))?;
    tracing::info!(%addr, "Prometheus metrics on https://{addr}/metrics (client certificate required)");
    // Checked once before serving: a listener that cannot build its TLS does not start.
    tls.config()
        .context("cannot set up TLS for the metrics listener")?;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        let mut backoff = std::time::Duration::from_millis(10);
        loop {
            let tcp = match listener.accept().await {
                Ok((tcp, _)) => {
                    backoff = std::time::Duration::from_millis(10);
                    tcp
                }
                Err(e) => {
                    // Out of file descriptors, say: wait instead of spinning.
                    tracing::warn!(error = %e, "metrics listener: accept failed; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::debug!(
                    "metrics listener: {MAX_CONNECTIONS} connections open; closing a new one"
                );
                continue;
            };
            let acceptor = match tls.config() {
                Ok(c) => tokio_rustls::TlsAcceptor::from(c),
                Err(e) => {
                    tracing::error!(error = %e, "metrics listener: no TLS configuration");
                    continue;
                }
            };
            let ctl = ctl.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let handshake =
                    tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp));
                let Ok(Ok(stream)) = handshake.await else {
                    return;
                };
                let fp: Option<Arc<str>> = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|leaf| clustermgr_shared::pki::fingerprint(leaf.as_ref()).into());
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let ctl = ctl.clone();
                        let fp = fp.clone();
                        async move {
                            let r = if !operator(&ctl, fp.as_deref()) {
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
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(IDLE)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                let _ = conn.await;
            });
        }
    });
    Ok(())
}
