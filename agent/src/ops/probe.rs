//! Readiness probes: poll a service until it answers (an LDAPS bind, an HTTPS GET answering 200)
//! or the time is up. Workflows advance on these, never on a fixed sleep.
//!
//! TLS is always verified: against the CA the request names, or else against the node's own
//! certificate for that service read from its Gluu layout by host path (under the container root
//! of a machine or chroot; Gluu's services use self-signed certificates), matched byte for byte.
//!
//! A probe only observes: it runs nothing and never starts Gluu. When the node's Gluu is a
//! machine that is not running, the probe's failure says so.

use super::{Ctx, Log, OpError};
use crate::ops::gluu::{Flavor, Layout};
use clustermgr_proto::{LdapsBind, Probe, ProbeOutput, probe};
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
    let within = within(req.within_ms);
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
    let r = retry(
        within,
        Pace::backoff(Duration::from_millis(200)),
        || bounded(attempt(&target, tls.clone())),
        |n, e| {
            if n == 1 || n.is_multiple_of(10) {
                log.line(format!("not ready yet ({e}){}", machine_note(ctx)));
            }
        },
    )
    .await;
    ended(r, log, "ready", |e, t| {
        format!(
            "{what}: not ready after {} attempts in {} s: {e}{}",
            t.attempts,
            t.elapsed.as_secs(),
            machine_note(ctx)
        )
    })
}

/// A retried probe's end: its output, logged as `done` after so many attempts; else the
/// error `failed` words from the last attempt's error.
pub(crate) fn ended(
    r: Result<((), Tried), (String, Tried)>,
    log: &mut Log,
    done: &str,
    failed: impl FnOnce(&str, &Tried) -> String,
) -> Result<ProbeOutput, OpError> {
    match r {
        Ok(((), t)) => {
            log.line(format!(
                "{done} after {} attempt(s), {} ms",
                t.attempts,
                t.elapsed.as_millis()
            ));
            Ok(t.output())
        }
        Err((e, t)) => Err(OpError(failed(&e, &t))),
    }
}

/// How long a probe asking for `within_ms` keeps trying: 2 minutes when it names no time, at
/// most half an hour.
pub(crate) fn within(within_ms: u32) -> Duration {
    match within_ms {
        0 => DEFAULT_WITHIN,
        ms => Duration::from_millis(u64::from(ms)).min(MAX_WITHIN),
    }
}

/// The pauses between the attempts of a retried check: `first`, doubled after each failure up
/// to `max`.
pub(crate) struct Pace {
    pub first: Duration,
    pub max: Duration,
}

impl Pace {
    /// From `first`, doubling up to 2 s.
    pub(crate) fn backoff(first: Duration) -> Pace {
        Pace {
            first,
            max: Duration::from_secs(2),
        }
    }
}

/// How a retried check went: how many attempts it made and in how long.
pub(crate) struct Tried {
    pub attempts: u32,
    pub elapsed: Duration,
}

impl Tried {
    pub(crate) fn output(&self) -> ProbeOutput {
        ProbeOutput {
            attempts: self.attempts,
            elapsed_ms: self.elapsed.as_millis() as u64,
        }
    }
}

/// Tries `attempt` until it succeeds or the next pause would run past `within`. `failed` sees
/// each failure that is tried again (the attempt's number and error), e.g. to log it. The error
/// is the last attempt's.
pub(crate) async fn retry<T, Fut>(
    within: Duration,
    pace: Pace,
    mut attempt: impl FnMut() -> Fut,
    mut failed: impl FnMut(u32, &str),
) -> Result<(T, Tried), (String, Tried)>
where
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    let mut attempts = 0u32;
    let mut pause = pace.first;
    loop {
        attempts += 1;
        let tried = |attempts| Tried {
            attempts,
            elapsed: start.elapsed(),
        };
        let e = match attempt().await {
            Ok(v) => return Ok((v, tried(attempts))),
            Err(e) => e,
        };
        if start.elapsed() + pause >= within {
            return Err((e, tried(attempts)));
        }
        failed(attempts, &e);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(pace.max);
    }
}

/// `attempt`, given up after the attempt timeout.
pub(crate) async fn bounded<T>(
    attempt: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(ATTEMPT_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err("no answer within 5 s".into()))
}

/// What a failed probe adds when this node's Gluu is a machine that is not running (nothing in
/// it can answer until it is started).
fn machine_note(ctx: &Ctx) -> &'static str {
    match Layout::detect(&ctx.host) {
        Ok(l) if l.flavor == Flavor::Machine && l.leader().is_none() => {
            "; the Gluu Server machine on this node is not running"
        }
        _ => "",
    }
}

/// One attempt, bounded by the attempt timeout (for health checks).
pub async fn check_once(ctx: &Ctx, target: &probe::Target) -> Result<(), String> {
    let tls = match target {
        probe::Target::Ldaps(b) => tls_config(ctx, &b.ca_pem, LDAP_CERTS),
        probe::Target::Https(g) => tls_config(ctx, &g.ca_pem, HTTPD_CERTS),
    }
    .map_err(|e| e.0)?;
    bounded(attempt(target, tls)).await
}

async fn attempt(target: &probe::Target, tls: Arc<ClientConfig>) -> Result<(), String> {
    match target {
        probe::Target::Ldaps(b) => {
            let mut ldap = ldaps_bound(b, tls).await?;
            let _ = ldap.unbind().await;
            Ok(())
        }
        probe::Target::Https(g) => {
            let status = https_get(tls, &HttpsTo::url(&g.url)?).await?.status();
            if status == http::StatusCode::OK {
                Ok(())
            } else {
                Err(format!("HTTP status {status}"))
            }
        }
    }
}

/// An LDAPS connection bound as `b` names, TLS verified as for the probe (for reading the
/// directory's monitor entries). Errors never carry the server's text or the password.
pub async fn ldaps_session(ctx: &Ctx, b: &LdapsBind) -> Result<ldap3::Ldap, String> {
    let tls = tls_config(ctx, &b.ca_pem, LDAP_CERTS).map_err(|e| e.0)?;
    ldaps_bound(b, tls).await
}

async fn ldaps_bound(b: &LdapsBind, tls: Arc<ClientConfig>) -> Result<ldap3::Ldap, String> {
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
    // The result code only, never the server's text (which could echo input).
    if r.rc != 0 {
        return Err(format!("bind refused (LDAP result code {})", r.rc));
    }
    Ok(ldap)
}

/// Where one HTTPS GET goes: the host connected to (and named to TLS), its port, the Host
/// header sent and the path asked for.
pub(crate) struct HttpsTo {
    pub host: String,
    pub port: u16,
    pub host_header: String,
    pub path: String,
}

impl HttpsTo {
    /// The GET of an `https://` URL.
    pub(crate) fn url(url: &str) -> Result<HttpsTo, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err("only https:// URLs are probed".into());
        }
        let host = uri.host().ok_or("the URL has no host")?;
        Ok(HttpsTo {
            host: host.trim_matches(['[', ']']).to_string(),
            port: uri.port_u16().unwrap_or(443),
            host_header: host.to_string(),
            path: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        })
    }
}

/// One HTTPS GET, TLS verified by `tls`: the answer, its body not read yet. Unbounded in time:
/// callers bound it ([`bounded`]).
pub(crate) async fn https_get(
    tls: Arc<ClientConfig>,
    to: &HttpsTo,
) -> Result<http::Response<hyper::body::Incoming>, String> {
    use http_body_util::Empty;
    use hyper::body::Bytes;
    let tcp = tokio::net::TcpStream::connect((to.host.as_str(), to.port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let name = ServerName::try_from(to.host.clone()).map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::get(to.path.as_str())
        .header(http::header::HOST, to.host_header.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    sender.send_request(req).await.map_err(|e| e.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Recorder;
    use crate::ops::gluu::layout::fixture::{recorded_host, start_machine};
    use crate::ops::tests::{ctx_with, log};
    use clustermgr_proto::HttpsGet;
    use std::path::Path;

    /// A Gluu machine (running when `running`) whose container keeps `crt` as its httpd.crt.
    fn machine(root: &Path, crt: &str, running: bool) -> (Ctx, Arc<Recorder>) {
        let (h, rec) = recorded_host(root, Flavor::Machine);
        let certs = root.join("opt/gluu-server/etc/certs");
        std::fs::create_dir_all(&certs).unwrap();
        std::fs::write(certs.join("httpd.crt"), crt).unwrap();
        if running {
            start_machine(root, &h.proc, 4747);
        }
        (ctx_with(h), rec)
    }

    /// A self-signed certificate for 127.0.0.1: its PEM, its DER and its key.
    fn self_signed() -> (
        String,
        rustls::pki_types::CertificateDer<'static>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        let c = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(c.signing_key.serialize_der().into());
        (c.cert.pem(), c.cert.der().clone(), key)
    }

    /// An HTTPS server on 127.0.0.1 answering 200 to every request, with `cert`.
    async fn serve(
        cert: rustls::pki_types::CertificateDer<'static>,
        key: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let config =
            rustls::ServerConfig::builder_with_provider(clustermgr_shared::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert], key)
                .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = [0u8; 4096];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        port
    }

    fn https(port: u16, within_ms: u32) -> Probe {
        Probe {
            target: Some(probe::Target::Https(HttpsGet {
                url: format!("https://127.0.0.1:{port}/identity/restv1/health-check"),
                ca_pem: String::new(),
            })),
            within_ms,
        }
    }

    #[tokio::test]
    async fn a_machine_is_probed_against_the_certificate_under_its_container_root() {
        let d = tempfile::tempdir().unwrap();
        let (pem, der, key) = self_signed();
        let (ctx, rec) = machine(d.path(), &pem, true);
        let port = serve(der, key).await;
        let (mut l, _rx) = log();
        let out = run(&ctx, https(port, 10_000), &mut l).await.unwrap();
        assert_eq!(out.attempts, 1);
        // Another certificate for the same name is not the one the node keeps: refused.
        let (_, other, other_key) = self_signed();
        let port = serve(other, other_key).await;
        let e = run(&ctx, https(port, 1), &mut l).await.unwrap_err();
        assert!(e.0.contains("TLS"), "{e}");
        assert!(!e.0.contains("not running"), "{e}");
        // A probe observes: nothing was run.
        assert!(rec.argvs().is_empty());
    }

    #[tokio::test]
    async fn a_probe_of_a_stopped_machine_says_so_and_starts_nothing() {
        let d = tempfile::tempdir().unwrap();
        let (pem, _, _) = self_signed();
        let (ctx, rec) = machine(d.path(), &pem, false);
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (mut l, _rx) = log();
        let e = run(&ctx, https(closed, 1), &mut l).await.unwrap_err();
        assert!(
            e.0.contains("the Gluu Server machine on this node is not running"),
            "{e}"
        );
        assert!(rec.argvs().is_empty());
        // No certificate under the container root and no CA: refused before any attempt.
        std::fs::remove_file(d.path().join("opt/gluu-server/etc/certs/httpd.crt")).unwrap();
        let e = run(&ctx, https(closed, 1), &mut l).await.unwrap_err();
        assert!(e.0.contains("no CA given"), "{e}");
    }
}
