//! The day-2 client: talks only to the load balancer, one round every period from a rotating
//! source address, and counts the rounds that failed, per phase (the operation running).
//!
//! A round, from source `i`: discovery (`GET /.well-known/openid-configuration`), a token
//! (`POST /oxauth/restv1/token`, client credentials), that token introspected from source
//! `i + 1` (`POST /oxauth/restv1/introspection`: another address, so with `ip_hash` usually
//! another node, which knows the token only through the shared cache), then `GET /identity/`.
//! Every request goes over a new connection from its source address (TLS, the balancer's
//! certificate verified byte for byte against the trusted ones); a round fails when one of its
//! requests does not answer 200 (and an active token) within the timeout. Sources differ in
//! their first three octets, because nginx's `ip_hash` keys IPv4 clients on those.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_rustls::rustls::{self, pki_types::CertificateDer, pki_types::ServerName};

/// How long one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Failures kept per phase, as examples.
const SAMPLES: usize = 5;

/// The balancer and the OAuth client the rounds use.
#[derive(Debug, Clone)]
pub struct Target {
    pub lb: IpAddr,
    pub port: u16,
    /// The balancer's name (Host header and TLS server name).
    pub host: String,
    pub client_id: String,
    pub secret: String,
}

/// `n` loopback source addresses, each in a /24 of its own (127.201.0.1, 127.202.0.1, ...).
pub fn sources(n: u8) -> Vec<IpAddr> {
    (0..n)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 201u8.saturating_add(i), 0, 1)))
        .collect()
}

/// Rounds and failures of one phase.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub rounds: u64,
    pub failed: u64,
    /// A few of the failures, in words.
    pub samples: Vec<String>,
}

type Phases = Vec<(String, Tally)>;

/// A running client; stopped (and its thread joined) by [`Day2Client::stop`].
pub struct Day2Client {
    stop: Arc<AtomicBool>,
    phase: Arc<Mutex<String>>,
    tally: Arc<Mutex<Phases>>,
    trusted: Arc<Mutex<Vec<CertificateDer<'static>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Day2Client {
    /// Starts rounds every `period` from `sources`, trusting `trusted` (PEM certificates).
    pub fn start(
        target: Target,
        sources: Vec<IpAddr>,
        trusted: &[String],
        period: Duration,
    ) -> Self {
        clustermgr_shared::tls::install_crypto_provider();
        let certs = trusted
            .iter()
            .flat_map(|pem| clustermgr_shared::tls::certs_from_pem(pem).unwrap_or_default())
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(Mutex::new("start".to_string()));
        let tally = Arc::new(Mutex::new(Vec::new()));
        let trusted = Arc::new(Mutex::new(certs));
        let (s, p, t, tr) = (stop.clone(), phase.clone(), tally.clone(), trusted.clone());
        let thread = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(run(target, sources, period, s, p, t, tr));
        });
        Self {
            stop,
            phase,
            tally,
            trusted,
            thread: Some(thread),
        }
    }

    /// Rounds started from now on count under `name`.
    pub fn phase(&self, name: &str) {
        *lock(&self.phase) = name.to_string();
    }

    /// Trusts one more certificate (PEM) from now on (a certificate roll).
    pub fn trust(&self, pem: &str) {
        let certs = clustermgr_shared::tls::certs_from_pem(pem).unwrap_or_default();
        lock(&self.trusted).extend(certs);
    }

    /// The phases so far, in the order they began.
    pub fn tally(&self) -> Phases {
        lock(&self.tally).clone()
    }

    /// Waits until `name` has counted `rounds` finished rounds (or `limit` passed).
    pub fn wait_rounds(&self, name: &str, rounds: u64, limit: Duration) -> Tally {
        let start = Instant::now();
        loop {
            let t = self
                .tally()
                .into_iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t)
                .unwrap_or_default();
            if t.rounds >= rounds || start.elapsed() > limit {
                return t;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the rounds (the running ones finish) and returns every phase.
    pub fn stop(mut self) -> Phases {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.tally()
    }
}

impl Drop for Day2Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn run(
    target: Target,
    sources: Vec<IpAddr>,
    period: Duration,
    stop: Arc<AtomicBool>,
    phase: Arc<Mutex<String>>,
    tally: Arc<Mutex<Phases>>,
    trusted: Arc<Mutex<Vec<CertificateDer<'static>>>>,
) {
    let target = Arc::new(target);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = tokio::task::JoinSet::new();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let name = lock(&phase).clone();
        let from = sources[n % sources.len().max(1)];
        let other = sources[(n + 1) % sources.len().max(1)];
        n += 1;
        let (target, tally, trusted) = (target.clone(), tally.clone(), trusted.clone());
        tasks.spawn(async move {
            let tls = config(lock(&trusted).clone());
            let r = match tls {
                Ok(tls) => round(&target, tls, from, other).await,
                Err(e) => Err(e),
            };
            let mut t = lock(&tally);
            let i = match t.iter().position(|(p, _)| *p == name) {
                Some(i) => i,
                None => {
                    t.push((name.clone(), Tally::default()));
                    t.len() - 1
                }
            };
            let entry = &mut t[i].1;
            entry.rounds += 1;
            if let Err(e) = r {
                entry.failed += 1;
                if entry.samples.len() < SAMPLES {
                    entry.samples.push(format!("from {from}: {e}"));
                }
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

fn config(certs: Vec<CertificateDer<'static>>) -> Result<Arc<rustls::ClientConfig>, String> {
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(clustermgr_shared::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(clustermgr_shared::tls::ExactCertVerifier::any_of(
                certs,
            ))
            .with_no_client_auth(),
    ))
}

/// One request over a new connection from `from`: (status, body).
async fn request(
    t: &Target,
    tls: Arc<rustls::ClientConfig>,
    from: IpAddr,
    req: http::Request<Full<Bytes>>,
) -> Result<(u16, Vec<u8>), String> {
    let attempt = async {
        let sock = match from {
            IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .map_err(|e| e.to_string())?;
        sock.bind(SocketAddr::new(from, 0))
            .map_err(|e| format!("bind {from}: {e}"))?;
        let tcp = sock
            .connect(SocketAddr::new(t.lb, t.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let name = ServerName::try_from(t.host.clone()).map_err(|e| e.to_string())?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes()
            .to_vec();
        Ok((status, body))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())))
}

fn build(
    t: &Target,
    method: http::Method,
    path: &str,
    form: Option<String>,
    basic: bool,
) -> Result<http::Request<Full<Bytes>>, String> {
    use base64::Engine as _;
    let host = if t.port == 443 {
        t.host.clone()
    } else {
        format!("{}:{}", t.host, t.port)
    };
    let mut b = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, host);
    if basic {
        let cred = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", t.client_id, t.secret));
        b = b.header(http::header::AUTHORIZATION, format!("Basic {cred}"));
    }
    let body = match form {
        Some(f) => {
            b = b.header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
            Bytes::from(f)
        }
        None => Bytes::new(),
    };
    b.body(Full::new(body)).map_err(|e| e.to_string())
}

fn expect_200(what: &str, r: Result<(u16, Vec<u8>), String>) -> Result<Vec<u8>, String> {
    match r {
        Ok((200, body)) => Ok(body),
        Ok((code, body)) => Err(format!(
            "{what}: HTTP {code} {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(120)
                .collect::<String>()
        )),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

async fn round(
    t: &Target,
    tls: Arc<rustls::ClientConfig>,
    from: IpAddr,
    other: IpAddr,
) -> Result<(), String> {
    let get = |p: &str| build(t, http::Method::GET, p, None, false);
    let path = "/.well-known/openid-configuration";
    expect_200("discovery", request(t, tls.clone(), from, get(path)?).await)?;
    let token = build(
        t,
        http::Method::POST,
        "/oxauth/restv1/token",
        Some("grant_type=client_credentials".into()),
        true,
    )?;
    let body = expect_200("token", request(t, tls.clone(), from, token).await)?;
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("token: not JSON: {e}"))?;
    let Some(token) = v["access_token"].as_str() else {
        return Err(format!("token: no access_token in {v}"));
    };
    let introspect = build(
        t,
        http::Method::POST,
        "/oxauth/restv1/introspection",
        Some(format!("token={token}")),
        true,
    )?;
    let body = expect_200(
        "introspection",
        request(t, tls.clone(), other, introspect).await,
    )?;
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("introspection: not JSON: {e}"))?;
    if v["active"] != true {
        return Err(format!("introspection from {other}: not active: {v}"));
    }
    expect_200("identity", request(t, tls, from, get("/identity/")?).await)?;
    Ok(())
}

/// The failed/total line of each phase, for reports.
pub fn report(phases: &Phases) -> String {
    phases
        .iter()
        .map(|(name, t)| {
            let mut line = format!("{name}: {} / {} rounds failed", t.failed, t.rounds);
            if let Some(s) = t.samples.first() {
                line.push_str(&format!(" (first: {s})"));
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub mod sequence;

#[cfg(test)]
mod tests;
