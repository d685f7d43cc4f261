//! Readiness probes: poll a service until it answers (an LDAPS bind, an HTTPS GET answering 200)
//! or the time is up. Workflows advance on these, never on a fixed sleep.
//!
//! TLS is always verified: against the CA the request names, or else against the node's own
//! certificate for that service read from its Gluu layout (Gluu's services use self-signed
//! certificates), matched byte for byte.

use super::{Ctx, Log, OpError};
use crate::ops::gluu::Layout;
use clustermgr_proto::{HttpsGet, LdapsBind, Probe, ProbeOutput, probe};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEFAULT_WITHIN: Duration = Duration::from_secs(120);
const MAX_WITHIN: Duration = Duration::from_secs(1800);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Certificates a Gluu node serves, inside its container: HTTPS, then the directory's.
const HTTPD_CERTS: &[&str] = &["/etc/certs/httpd.crt"];
const LDAP_CERTS: &[&str] = &["/etc/certs/opendj.crt", "/etc/certs/openldap.crt"];

pub async fn run(ctx: &Ctx, req: Probe, log: &mut Log) -> Result<ProbeOutput, OpError> {
    let within = match req.within_ms {
        0 => DEFAULT_WITHIN,
        ms => Duration::from_millis(u64::from(ms)).min(MAX_WITHIN),
    };
    let target = req
        .target
        .ok_or_else(|| OpError("a probe needs a target (ldaps or https)".into()))?;
    let (what, tls) = match &target {
        probe::Target::Ldaps(b) => (
            format!("LDAPS bind to {}:{} as {}", b.host, b.port, b.bind_dn),
            tls_config(ctx, &b.ca_pem, LDAP_CERTS)?,
        ),
        probe::Target::Https(g) => (
            format!("HTTPS GET {}", g.url),
            tls_config(ctx, &g.ca_pem, HTTPD_CERTS)?,
        ),
    };
    if let probe::Target::Ldaps(b) = &target
        && !b.password.is_empty()
    {
        log.secret(&String::from_utf8_lossy(&b.password));
    }
    log.line(format!(
        "probing: {what} (for up to {} s)",
        within.as_secs()
    ));
    let start = Instant::now();
    let mut attempts = 0u32;
    let mut pause = Duration::from_millis(200);
    loop {
        attempts += 1;
        let r = tokio::time::timeout(ATTEMPT_TIMEOUT, attempt(&target, tls.clone()))
            .await
            .unwrap_or_else(|_| Err("no answer within 5 s".into()));
        match r {
            Ok(()) => {
                let elapsed = start.elapsed();
                log.line(format!(
                    "ready after {attempts} attempt(s), {} ms",
                    elapsed.as_millis()
                ));
                return Ok(ProbeOutput {
                    attempts,
                    elapsed_ms: elapsed.as_millis() as u64,
                });
            }
            Err(e) => {
                if start.elapsed() + pause >= within {
                    return Err(OpError(format!(
                        "{what}: not ready after {attempts} attempts in {} s: {e}",
                        start.elapsed().as_secs()
                    )));
                }
                if attempts == 1 || attempts.is_multiple_of(10) {
                    log.line(format!("not ready yet ({e})"));
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// One attempt, bounded by the attempt timeout (for health checks).
pub async fn check_once(ctx: &Ctx, target: &probe::Target) -> Result<(), String> {
    let tls = match target {
        probe::Target::Ldaps(b) => tls_config(ctx, &b.ca_pem, LDAP_CERTS),
        probe::Target::Https(g) => tls_config(ctx, &g.ca_pem, HTTPD_CERTS),
    }
    .map_err(|e| e.0)?;
    tokio::time::timeout(ATTEMPT_TIMEOUT, attempt(target, tls))
        .await
        .unwrap_or_else(|_| Err("no answer within 5 s".into()))
}

async fn attempt(target: &probe::Target, tls: Arc<ClientConfig>) -> Result<(), String> {
    match target {
        probe::Target::Ldaps(b) => ldaps_bind(b, tls).await,
        probe::Target::Https(g) => https_get(g, tls).await,
    }
}

/// An LDAPS connection bound as `b` names, TLS verified as for the probe (for reading the
/// directory's monitor entries). Errors never carry the server's text or the password.
pub async fn ldaps_session(ctx: &Ctx, b: &LdapsBind) -> Result<ldap3::Ldap, String> {
    use ldap3::{LdapConnAsync, LdapConnSettings};
    let tls = tls_config(ctx, &b.ca_pem, LDAP_CERTS).map_err(|e| e.0)?;
    let url = format!(
        "ldaps://{}:{}",
        bracket(&b.host),
        if b.port == 0 { 1636 } else { b.port }
    );
    let settings = LdapConnSettings::new()
        .set_config(tls)
        .set_conn_timeout(ATTEMPT_TIMEOUT);
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &url)
        .await
        .map_err(|e| e.to_string())?;
    ldap3::drive!(conn);
    let password = String::from_utf8_lossy(&b.password).into_owned();
    let r = ldap
        .simple_bind(&b.bind_dn, &password)
        .await
        .map_err(|e| e.to_string())?;
    if r.rc != 0 {
        return Err(format!("bind refused (LDAP result code {})", r.rc));
    }
    Ok(ldap)
}

async fn ldaps_bind(b: &LdapsBind, tls: Arc<ClientConfig>) -> Result<(), String> {
    use ldap3::{LdapConnAsync, LdapConnSettings};
    let url = format!(
        "ldaps://{}:{}",
        bracket(&b.host),
        if b.port == 0 { 1636 } else { b.port }
    );
    let settings = LdapConnSettings::new()
        .set_config(tls)
        .set_conn_timeout(ATTEMPT_TIMEOUT);
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &url)
        .await
        .map_err(|e| e.to_string())?;
    ldap3::drive!(conn);
    let password = String::from_utf8_lossy(&b.password).into_owned();
    let r = ldap
        .simple_bind(&b.bind_dn, &password)
        .await
        .map_err(|e| e.to_string())?;
    let _ = ldap.unbind().await;
    // The result code only, never the server's text (which could echo input).
    if r.rc == 0 {
        Ok(())
    } else {
        Err(format!("bind refused (LDAP result code {})", r.rc))
    }
}

async fn https_get(g: &HttpsGet, tls: Arc<ClientConfig>) -> Result<(), String> {
    use http_body_util::Empty;
    use hyper::body::Bytes;
    let uri: http::Uri = g.url.parse().map_err(|e| format!("bad URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err("only https:// URLs are probed".into());
    }
    let host = uri.host().ok_or("the URL has no host")?.to_string();
    let port = uri.port_u16().unwrap_or(443);
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
        .map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let req = http::Request::get(path)
        .header(http::header::HOST, host.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if resp.status() == http::StatusCode::OK {
        Ok(())
    } else {
        Err(format!("HTTP status {}", resp.status()))
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// TLS trust for a probe: the named CA, else the node's own certificate for the service.
pub(crate) fn tls_config(
    ctx: &Ctx,
    ca_pem: &str,
    own: &[&str],
) -> Result<Arc<ClientConfig>, OpError> {
    let provider = clustermgr_shared::tls::provider();
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| OpError(e.to_string()))?;
    let config = if !ca_pem.trim().is_empty() {
        let mut roots = RootCertStore::empty();
        let certs = clustermgr_shared::tls::certs_from_pem(ca_pem)
            .map_err(|e| OpError(format!("bad CA certificate: {e}")))?;
        for c in certs {
            roots
                .add(c)
                .map_err(|e| OpError(format!("bad CA certificate: {e}")))?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        let layout = Layout::detect(&ctx.host)?;
        let file = own
            .iter()
            .map(|p| layout.host_path(p))
            .find(|p| p.exists())
            .ok_or_else(|| {
                OpError(format!(
                    "no CA given and none of the node's own certificates ({}) exists",
                    own.join(", ")
                ))
            })?;
        let pem = std::fs::read_to_string(&file)
            .map_err(|e| OpError(format!("cannot read {}: {e}", file.display())))?;
        let cert = clustermgr_shared::tls::certs_from_pem(&pem)
            .ok()
            .and_then(|c| c.into_iter().next())
            .ok_or_else(|| OpError(format!("{} holds no certificate", file.display())))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(clustermgr_shared::tls::ExactCertVerifier::new(cert))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}
