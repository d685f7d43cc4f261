//! An HTTPS man in the middle between the console and the OP: it holds the OP's certificate and
//! key (as an attacker who stole them could), forwards every request to the real OP and changes
//! the ID token of each token answer (its claims, not its signature).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clustermgr_shared::Secret;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_rustls::rustls::{self, pki_types::ServerName};

pub(crate) struct TamperingOp {
    pub(crate) addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

/// `claims` -> the same claims with `role: ["clusteradmin"]`, the header and signature kept.
fn tamper(id_token: &str) -> String {
    let mut parts: Vec<String> = id_token.split('.').map(str::to_string).collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    claims["role"] = serde_json::json!(["clusteradmin"]);
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    parts.join(".")
}

impl TamperingOp {
    /// Listens on 127.0.0.1 with the OP's `cert_pem`/`key_pem`; forwards to `upstream`, which
    /// presents the same certificate for `host`.
    pub(crate) fn start(cert_pem: &str, key_pem: &str, upstream: SocketAddr, host: &str) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let certs = clustermgr_shared::tls::certs_from_pem(cert_pem).unwrap();
        let key = clustermgr_shared::tls::key_from_pem(&Secret::new(key_pem.to_string())).unwrap();
        let server =
            rustls::ServerConfig::builder_with_provider(clustermgr_shared::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let mut client = (*clustermgr_shared::tls::client_config(cert_pem, None).unwrap()).clone();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        let client = Arc::new(client);
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let host = host.to_string();
        rt.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, client, host) = (acceptor.clone(), client.clone(), host.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        let (client, host) = (client.clone(), host.clone());
                        async move { forward(req, client, upstream, &host).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Self { addr, _rt: rt }
    }
}

async fn forward(
    req: hyper::Request<hyper::body::Incoming>,
    client: Arc<rustls::ClientConfig>,
    upstream: SocketAddr,
    host: &str,
) -> Result<hyper::Response<Full<Bytes>>, String> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    let tcp = tokio::net::TcpStream::connect(upstream)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(client)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let path = parts.uri.path().to_string();
    let resp = sender
        .send_request(hyper::Request::from_parts(parts, Full::new(body)))
        .await
        .map_err(|e| e.to_string())?;
    let (mut parts, body) = resp.into_parts();
    let mut bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    if path == "/oxauth/restv1/token"
        && let Ok(mut v) = serde_json::from_slice::<Value>(&bytes)
        && let Some(t) = v["id_token"].as_str()
    {
        v["id_token"] = Value::String(tamper(t));
        bytes = Bytes::from(v.to_string());
        parts.headers.remove(hyper::header::CONTENT_LENGTH);
    }
    Ok(hyper::Response::from_parts(parts, Full::new(bytes)))
}
