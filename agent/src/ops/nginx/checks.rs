//! `nginx-status` and `probe-nginx`, and the HTTPS checks they and a rejoin make: each backend
//! asked directly, and a request through the balancer, trusting exactly the certificates nginx
//! trusts.

use super::*;
use crate::ops::probe::{self as probes, HttpsTo, Pace};

/// TLS that trusts exactly the certificate nginx serves (the cluster's httpd certificate, which
/// every backend serves too) and, during a certificate roll, the new one it trusts on backends.
pub(super) fn tls_for(layout: &Layout, a: &Applied) -> Result<Arc<ClientConfig>, OpError> {
    let path = layout.cert(&a.generation);
    let own = std::fs::read_to_string(&path).map_err(io(&path))?;
    let mut certs: Vec<CertificateDer<'static>> = Vec::new();
    for pem in std::iter::once(&own).chain(a.also_trust.iter()) {
        certs.push(
            clustermgr_shared::tls::certs_from_pem(pem)
                .ok()
                .and_then(|c| c.into_iter().next())
                .ok_or_else(|| OpError(format!("{} holds no certificate", path.display())))?,
        );
    }
    let config = ClientConfig::builder_with_provider(clustermgr_shared::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| OpError(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(clustermgr_shared::tls::ExactCertVerifier::any_of(certs))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// One HTTPS GET: the response's status code.
pub(super) async fn get(
    tls: Arc<ClientConfig>,
    address: &str,
    port: u32,
    host_header: &str,
    path: &str,
) -> Result<u16, String> {
    let ip: IpAddr = address
        .parse()
        .map_err(|_| format!("{address:?} is not an address"))?;
    let to = HttpsTo {
        host: ip.to_string(),
        port: port as u16,
        host_header: host_header.to_string(),
        path: path.to_string(),
    };
    probes::bounded(async { Ok(probes::https_get(tls, &to).await?.status().as_u16()) }).await
}

pub(super) fn host_header(a: &Applied) -> String {
    if a.https_port == 443 {
        a.server_name.clone()
    } else {
        format!("{}:{}", a.server_name, a.https_port)
    }
}

pub async fn status(
    ctx: &Ctx,
    _req: NginxStatus,
    log: &mut Log,
) -> Result<NginxStatusOutput, OpError> {
    let layout = Layout::of(&ctx.host);
    let mut out = NginxStatusOutput {
        installed: Path::new(NGINX).exists(),
        ..Default::default()
    };
    let Some(a) = read_applied(&layout).filter(|_| ours(&layout.conf)) else {
        log.line("nginx is not configured as the load balancer");
        return Ok(out);
    };
    out.configured = true;
    out.running = layout.daemon().state(&ctx.host, log).await?.running();
    out.server_name = a.server_name.clone();
    out.backends = a.lb_backends();
    out.drained = a.drained.clone();
    out.oxauth_balancing = balancing(a.sticky_oxauth);
    out.listen_address = a.listen_address.clone();
    out.https_port = a.https_port;
    out.http_port = a.http_port;
    let tls = tls_for(&layout, &a)?;
    let checks = out.backends.iter().map(|b| {
        let tls = tls.clone();
        let host = host_header(&a);
        async move {
            let r = get(tls, &b.address, b.port, &host, HEALTH_PATH).await;
            BackendHealth {
                address: b.address.clone(),
                port: b.port,
                ok: r == Ok(200),
                detail: match r {
                    Ok(code) => format!("HTTP {code}"),
                    Err(e) => e,
                },
            }
        }
    });
    out.health = futures::future::join_all(checks).await;
    if out.running {
        match get(
            tls,
            &a.listen_address,
            a.https_port,
            &host_header(&a),
            HEALTH_PATH,
        )
        .await
        {
            Ok(200) => {
                out.through_lb_ok = true;
                out.through_lb_detail = "HTTP 200".into();
            }
            Ok(code) => out.through_lb_detail = format!("HTTP {code}"),
            Err(e) => out.through_lb_detail = e,
        }
    } else {
        out.through_lb_detail = "nginx is not running".into();
    }
    for h in &out.health {
        log.line(format!("backend {}:{}: {}", h.address, h.port, h.detail));
    }
    log.line(format!(
        "nginx {}; through the balancer: {}",
        if out.running { "running" } else { "stopped" },
        out.through_lb_detail
    ));
    Ok(out)
}

pub async fn probe(ctx: &Ctx, req: ProbeNginx, log: &mut Log) -> Result<ProbeOutput, OpError> {
    let layout = Layout::of(&ctx.host);
    let a = read_applied(&layout)
        .filter(|_| ours(&layout.conf))
        .ok_or_else(|| OpError("nginx is not configured as the load balancer".into()))?;
    let path = if req.path.starts_with('/') {
        req.path.clone()
    } else {
        HEALTH_PATH.to_string()
    };
    let within = probes::within(req.within_ms);
    let tls = tls_for(&layout, &a)?;
    let url = format!(
        "https://{}{path}",
        host_port(
            &a.listen_address
                .parse()
                .map_err(|_| OpError("bad listen address".into()))?,
            a.https_port
        )
    );
    log.line(format!(
        "probing: GET {url} through the balancer (for up to {} s)",
        within.as_secs()
    ));
    let host = host_header(&a);
    let r = probes::retry(
        within,
        Pace::backoff(Duration::from_millis(100)),
        || async {
            match get(tls.clone(), &a.listen_address, a.https_port, &host, &path).await {
                Ok(200) => Ok(()),
                Ok(code) => Err(format!("HTTP status {code}")),
                Err(e) => Err(e),
            }
        },
        |n, e| {
            if n == 1 || n.is_multiple_of(10) {
                log.line(format!("not yet ({e})"));
            }
        },
    )
    .await;
    probes::ended(r, log, "answered", |e, t| {
        format!(
            "GET {url}: not answering after {} attempts in {} s: {e}",
            t.attempts,
            t.elapsed.as_secs()
        )
    })
}
