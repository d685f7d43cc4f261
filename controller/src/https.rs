//! What the controller's HTTPS listeners (the Prometheus endpoint, the web console) share: a TLS
//! config derived from the gRPC listener's (its server certificate, renewed with it) and an
//! accept loop with a connection cap, accept-error backoff and a handshake deadline.

use crate::ctl::Ctl;

use anyhow::Result;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::server::TlsStream;

/// Which clients the listener's TLS asks a certificate of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCerts {
    /// Required, issued by a CA this controller trusts now (both during a CA rotation).
    Required,
    /// Not asked (browsers: no certificate picker).
    None,
}

/// A listener's TLS, following the gRPC listener's: its server certificate and, when client
/// certificates are required, the CAs trusted now; HTTP/1.1 as the protocol. Rebuilt when the
/// gRPC listener's config changes (the CA state is updated before it).
pub struct DerivedTls {
    ctl: Arc<Ctl>,
    switch: Arc<TlsSwitch>,
    clients: ClientCerts,
    /// (the gRPC config it was derived from, the derived config)
    cached: Mutex<Option<(Arc<ServerConfig>, Arc<ServerConfig>)>>,
}

impl DerivedTls {
    pub fn new(ctl: Arc<Ctl>, switch: Arc<TlsSwitch>, clients: ClientCerts) -> Self {
        Self {
            ctl,
            switch,
            clients,
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
        let builder =
            ServerConfig::builder_with_provider(tls::provider()).with_protocol_versions(&[
                &tokio_rustls::rustls::version::TLS13,
                &tokio_rustls::rustls::version::TLS12,
            ])?;
        let builder = match self.clients {
            ClientCerts::Required => {
                let mut roots = tokio_rustls::rustls::RootCertStore::empty();
                for c in tls::certs_from_pem(&self.ctl.ca.get().trusted_pem())? {
                    roots.add(c)?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), tls::provider())
                        .build()?;
                builder.with_client_cert_verifier(verifier)
            }
            ClientCerts::None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(main.cert_resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let derived = Arc::new(config);
        *cached = Some((main, derived.clone()));
        Ok(derived)
    }
}

/// Serves one connection's HTTP/1.1 requests with `service` until it closes; a request's
/// headers must arrive within `header_timeout`.
pub async fn serve_http1<S>(stream: TlsStream<TcpStream>, header_timeout: Duration, service: S)
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    let _ = conn.await;
}

/// Accepts connections on `listener` until the process ends: at most `max` served at once
/// (more are closed at accept), accept errors (out of file descriptors, say) waited out with a
/// backoff instead of spinning, the TLS handshake bounded; `serve` runs per connection with its
/// peer address.
pub fn accept_loop<F, Fut>(
    name: &'static str,
    listener: TcpListener,
    max: usize,
    tls: Arc<DerivedTls>,
    serve: F,
) where
    F: Fn(TlsStream<TcpStream>, std::net::SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let serve = Arc::new(serve);
    let slots = Arc::new(tokio::sync::Semaphore::new(max));
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(10);
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(a) => {
                    backoff = Duration::from_millis(10);
                    a
                }
                Err(e) => {
                    tracing::warn!(error = %e, "{name} listener: accept failed; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::debug!("{name} listener: {max} connections open; closing a new one");
                continue;
            };
            let acceptor = match tls.config() {
                Ok(c) => tokio_rustls::TlsAcceptor::from(c),
                Err(e) => {
                    tracing::error!(error = %e, "{name} listener: no TLS configuration");
                    continue;
                }
            };
            let serve = serve.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
                let Ok(Ok(stream)) = handshake.await else {
                    return;
                };
                serve(stream, peer).await;
            });
        }
    });
}

/// The server TLS config in force; replaced as a whole (new server certificate, new trusted
/// CAs).
pub struct TlsSwitch {
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsSwitch {
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self {
            current: RwLock::new(config),
        }
    }

    /// The config new connections get.
    pub fn get(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Connections accepted from now on use `config`.
    pub fn set(&self, config: Arc<ServerConfig>) {
        match self.current.write() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
    }
}
