//! HTTPS to the OpenID Provider: TLS verified with the configured CA (or the cluster's), never
//! skipped; JSON answers of bounded size; an optional fixed address to dial for the OP's host.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls::pki_types::ServerName;

use super::OidcError;

/// An OP's answer larger than this is refused.
const MAX_ANSWER: usize = 256 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct OpClient {
    tls: Arc<tokio_rustls::rustls::ClientConfig>,
    connect_to: Option<String>,
}

/// A request body.
pub enum Body<'a> {
    None,
    Form(&'a [(&'a str, &'a str)]),
    Json(&'a Value),
}

impl OpClient {
    /// `ca_pem`: the CA certificates that verify the OP's certificate.
    pub fn new(ca_pem: &str, connect_to: Option<String>) -> Result<Self, OidcError> {
        let shared = clustermgr_shared::tls::client_config(ca_pem, None)
            .map_err(|e| OidcError::Config(format!("the OP's CA certificates: {e}")))?;
        // The shared configuration offers h2 (gRPC); this client speaks HTTP/1.1.
        let mut tls = (*shared).clone();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            tls: Arc::new(tls),
            connect_to,
        })
    }

    /// GETs `url`; the JSON of a 200 answer.
    pub async fn get_json(&self, url: &str, bearer: Option<&str>) -> Result<Value, OidcError> {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        match self.call(url, Body::None, auth.as_deref()).await? {
            (200, v) => Ok(v),
            (code, v) => Err(OidcError::Op(format!(
                "{url} answered {code}: {}",
                brief(&v)
            ))),
        }
    }

    /// POSTs to `url`, with HTTP Basic client authentication when `basic` is given; the
    /// status and the answer's JSON.
    pub async fn post(
        &self,
        url: &str,
        body: Body<'_>,
        basic: Option<(&str, &str)>,
    ) -> Result<(u16, Value), OidcError> {
        let auth = basic.map(|(id, secret)| {
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            format!(
                "Basic {}",
                STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
            )
        });
        self.call(url, body, auth.as_deref()).await
    }

    async fn call(
        &self,
        url: &str,
        body: Body<'_>,
        authorization: Option<&str>,
    ) -> Result<(u16, Value), OidcError> {
        tokio::time::timeout(TIMEOUT, self.exchange(url, body, authorization))
            .await
            .map_err(|_| OidcError::Op(format!("{url}: no answer within {TIMEOUT:?}")))?
    }

    async fn exchange(
        &self,
        url: &str,
        body: Body<'_>,
        authorization: Option<&str>,
    ) -> Result<(u16, Value), OidcError> {
        let fail = |what: &str, e: String| OidcError::Op(format!("{url}: {what}: {e}"));
        let uri: hyper::Uri = url.parse().map_err(|e| fail("bad URL", format!("{e}")))?;
        if uri.scheme_str() != Some("https") {
            return Err(OidcError::Op(format!("{url}: the OP must be https://")));
        }
        let host = uri
            .host()
            .ok_or_else(|| fail("bad URL", "no host".into()))?
            .trim_matches(['[', ']'])
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        let dial = self
            .connect_to
            .clone()
            .unwrap_or_else(|| format!("{}:{port}", bracket(&host)));
        let tcp = tokio::net::TcpStream::connect(&dial)
            .await
            .map_err(|e| fail(&format!("cannot connect to {dial}"), e.to_string()))?;
        let name = ServerName::try_from(host.clone()).map_err(|e| fail("host", e.to_string()))?;
        let stream = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| fail("TLS", e.to_string()))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| fail("HTTP", e.to_string()))?;
        tokio::spawn(conn);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let host_header = match uri.port_u16() {
            Some(p) => format!("{}:{p}", bracket(&host)),
            None => bracket(&host),
        };
        let (method, content_type, bytes) = match body {
            Body::None => ("GET", None, Bytes::new()),
            Body::Form(pairs) => {
                let mut s = form_urlencoded::Serializer::new(String::new());
                for (k, v) in pairs {
                    s.append_pair(k, v);
                }
                (
                    "POST",
                    Some("application/x-www-form-urlencoded"),
                    Bytes::from(s.finish()),
                )
            }
            Body::Json(v) => ("POST", Some("application/json"), Bytes::from(v.to_string())),
        };
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, host_header)
            .header(hyper::header::ACCEPT, "application/json");
        if let Some(ct) = content_type {
            req = req.header(hyper::header::CONTENT_TYPE, ct);
        }
        if let Some(a) = authorization {
            req = req.header(hyper::header::AUTHORIZATION, a);
        }
        let req = req
            .body(Full::new(bytes))
            .map_err(|e| fail("request", e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| fail("HTTP", e.to_string()))?;
        let status = resp.status().as_u16();
        let raw = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| fail("reading the answer", e.to_string()))?
            .to_bytes();
        let v = serde_json::from_slice(&raw).unwrap_or_else(|_| {
            Value::String(String::from_utf8_lossy(&raw[..raw.len().min(200)]).into_owned())
        });
        Ok((status, v))
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// An OP's error answer in one line: `error: error_description`, or the text.
pub fn brief(v: &Value) -> String {
    match (v.get("error"), v.get("error_description")) {
        (Some(e), Some(d)) => format!(
            "{}: {}",
            e.as_str().unwrap_or("?"),
            d.as_str().unwrap_or("")
        ),
        (Some(e), None) => e.as_str().unwrap_or("?").to_string(),
        _ => v.to_string().chars().take(200).collect(),
    }
}
