//! `serve --metrics-listen ADDR`: the Prometheus text endpoint (GET /metrics), HTTPS only, for
//! clients presenting a certificate issued by this controller to an operator (any role); node
//! certificates are refused. HTTP/1.1 (what Prometheus scrapes with).

use super::Ctl;
use crate::auth::Principal;
use crate::https::{DerivedTls, accept_loop};
use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;

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
pub async fn serve(
    ctl: Arc<Ctl>,
    metrics: Arc<crate::metrics::Metrics>,
    health: Arc<crate::health::Health>,
    addr: SocketAddr,
    tls: Arc<DerivedTls>,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for metrics"))?;
    tracing::info!(%addr, "Prometheus metrics on https://{addr}/metrics (client certificate required)");
    // Checked once before serving: a listener that cannot build its TLS does not start.
    tls.config()
        .context("cannot set up TLS for the metrics listener")?;
    accept_loop(
        "metrics",
        listener,
        MAX_CONNECTIONS,
        tls,
        move |stream, _| {
            let ctl = ctl.clone();
            let metrics = metrics.clone();
            let health = health.clone();
            async move {
                let fp: Option<Arc<str>> = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|leaf| clustermgr_shared::pki::fingerprint(leaf.as_ref()).into());
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let ctl = ctl.clone();
                        let metrics = metrics.clone();
                        let health = health.clone();
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
                                response(200, crate::prometheus::render(&ctl, &metrics, &health))
                            };
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    },
                );
                crate::https::serve_http1(stream, IDLE, service).await;
            }
        },
    );
    Ok(())
}
