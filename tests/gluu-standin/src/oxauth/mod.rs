//! The oxAuth-like HTTPS service of a stand-in node.
//!
//! Configuration comes from the directory (`ou=oxauth,ou=configuration,o=gluu`), polled every
//! 200 ms: when `oxRevision` changes, `oxAuthConfDynamic`, `oxAuthConfWebKeys` and the private
//! keys file (`/etc/certs/oxauth-keys.json`) are reloaded. The cache configuration
//! (`oxCacheConfiguration` on `ou=configuration,o=gluu`) is read for every token and
//! introspection request. The health check's `configuration_polls` (not in Gluu's) counts the
//! polls done, so that a test can wait for a poll instead of a period of time.

mod cache;
mod dir;
mod jwt;
mod login;
mod oidc;
mod redis;
mod register;
mod token;

use std::convert::Infallible;
use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue, LOCATION, SET_COOKIE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::layout::Layout;
use crate::setup::{Node, host_port_ip};
use cache::Cache;
use dir::{Directory, first};
use jwt::SigningKey;
use token::{access_token_lifetime, cache_key, cache_kind, client_credentials, issuer};

const OXAUTH_DN: &str = "ou=oxauth,ou=configuration,o=gluu";
const CONFIGURATION_DN: &str = "ou=configuration,o=gluu";
const POLL_INTERVAL: Duration = Duration::from_millis(200);
const STARTUP_WAIT: Duration = Duration::from_secs(10);
const MAX_BODY: usize = 64 * 1024;

struct OxConfig {
    revision: String,
    dynamic: Value,
    web_keys: Value,
    signing: Option<SigningKey>,
}

struct State {
    layout: Layout,
    node: Node,
    server_name: String,
    dir: Directory,
    cache: Cache,
    config: RwLock<Option<Arc<OxConfig>>>,
    db_online: AtomicBool,
    /// Directory polls completed (successful or not).
    polls: AtomicU64,
    oxauth_log: Mutex<fs::File>,
    oxtrust_log: Mutex<fs::File>,
}

fn open_log(path: &std::path::Path) -> Result<fs::File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn timestamp() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02},{:03}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

impl State {
    fn log(&self, level: &str, msg: &str) {
        write_line(&self.oxauth_log, level, msg);
    }

    fn current(&self) -> Option<Arc<OxConfig>> {
        self.config.read().ok().and_then(|g| g.clone())
    }

    fn base_url(&self) -> String {
        let host = &self.node.hostname;
        if self.node.https_port == 443 {
            format!("https://{host}")
        } else {
            format!("https://{host}:{}", self.node.https_port)
        }
    }
}

fn write_line(file: &Mutex<fs::File>, level: &str, msg: &str) {
    let line = format!("{} {level:<5} {msg}\n", timestamp());
    if let Ok(mut f) = file.lock() {
        let _ = f.write_all(line.as_bytes());
    }
}

/// Read the oxAuth configuration entry; `None` when it does not exist (an empty directory).
async fn load_config(state: &State) -> Result<Option<OxConfig>> {
    let Some(attrs) = state
        .dir
        .read(
            OXAUTH_DN,
            &["oxRevision", "oxAuthConfDynamic", "oxAuthConfWebKeys"],
        )
        .await?
    else {
        return Ok(None);
    };
    let revision = first(&attrs, "oxRevision").unwrap_or("0").to_string();
    let dynamic: Value = match first(&attrs, "oxAuthConfDynamic") {
        Some(s) => serde_json::from_str(s).context("oxAuthConfDynamic is not JSON")?,
        None => json!({}),
    };
    let web_keys: Value = match first(&attrs, "oxAuthConfWebKeys") {
        Some(s) => serde_json::from_str(s).context("oxAuthConfWebKeys is not JSON")?,
        None => json!({"keys": []}),
    };
    let keys_path = state.layout.oxauth_keys();
    let private: Value = match fs::read_to_string(&keys_path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", keys_path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({}),
        Err(e) => return Err(e).with_context(|| format!("reading {}", keys_path.display())),
    };
    let (signing, notes) = jwt::select_signing_key(&web_keys, &private);
    for note in notes {
        state.log("WARN", &format!("key selection: {note}"));
    }
    if signing.is_none() {
        state.log(
            "WARN",
            "no RS256 signing key with a private key: the token endpoint will fail",
        );
    }
    Ok(Some(OxConfig {
        revision,
        dynamic,
        web_keys,
        signing,
    }))
}

async fn poll_once(state: &State) -> Result<()> {
    let current = state.current();
    let revision = state
        .dir
        .read(OXAUTH_DN, &["oxRevision"])
        .await?
        .map(|a| first(&a, "oxRevision").unwrap_or("0").to_string());
    let changed = match (&revision, &current) {
        (None, None) => false,
        (Some(r), Some(c)) => *r != c.revision,
        _ => true,
    };
    if changed {
        let cfg = load_config(state).await?;
        let msg = match &cfg {
            Some(c) => format!(
                "configuration loaded, oxRevision={} signing kid={}",
                c.revision,
                c.signing.as_ref().map(|k| k.kid.as_str()).unwrap_or("-")
            ),
            None => "configuration entry is gone".to_string(),
        };
        if let Ok(mut g) = state.config.write() {
            *g = cfg.map(Arc::new);
        }
        state.log("INFO", &msg);
    }
    Ok(())
}

async fn poller(state: Arc<State>) {
    let mut last_error = String::new();
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    loop {
        ticker.tick().await;
        let polled = poll_once(&state).await;
        state.polls.fetch_add(1, Ordering::Relaxed);
        match polled {
            Ok(()) => {
                state.db_online.store(true, Ordering::Relaxed);
                last_error.clear();
            }
            Err(e) => {
                state.db_online.store(false, Ordering::Relaxed);
                let msg = format!("{e:#}");
                if msg != last_error {
                    state.log("ERROR", &format!("reloading configuration: {msg}"));
                    last_error = msg;
                }
            }
        }
    }
}

fn tls_acceptor(layout: &Layout) -> Result<TlsAcceptor> {
    let cert_path = layout.cert("httpd.crt");
    let key_path = layout.cert("httpd.key");
    let cert_pem =
        fs::read(&cert_path).with_context(|| format!("reading {}", cert_path.display()))?;
    let key_pem = fs::read(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", cert_path.display()))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .with_context(|| format!("parsing {}", key_path.display()))?
        .with_context(|| format!("no private key in {}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

pub fn run(layout: Layout) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(layout))
}

async fn serve(layout: Layout) -> Result<()> {
    let node = Node::load(&layout)?;
    let acceptor = tls_acceptor(&layout)?;
    let dir = Directory::from_properties(&layout)?;
    let server_name = fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let state = Arc::new(State {
        oxauth_log: Mutex::new(open_log(&layout.oxauth_log())?),
        oxtrust_log: Mutex::new(open_log(&layout.oxtrust_log())?),
        layout,
        node,
        server_name,
        dir,
        cache: Cache::default(),
        config: RwLock::new(None),
        db_online: AtomicBool::new(false),
        polls: AtomicU64::new(0),
    });
    state.log("INFO", "oxAuth stand-in starting");

    // Load the configuration before accepting connections, so that a started service answers.
    let deadline = Instant::now() + STARTUP_WAIT;
    loop {
        match poll_once(&state).await {
            Ok(()) => {
                state.db_online.store(true, Ordering::Relaxed);
                break;
            }
            Err(e) if Instant::now() > deadline => {
                state.log(
                    "ERROR",
                    &format!("directory not reachable, starting without configuration: {e:#}"),
                );
                break;
            }
            Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
    if state.current().is_none() {
        state.log(
            "WARN",
            &format!("{OXAUTH_DN} not found: serving without configuration until it appears"),
        );
    }

    let addr = SocketAddr::new(state.node.ip, state.node.https_port);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    state.log("INFO", &format!("listening on https://{addr}/"));
    tokio::spawn(poller(state.clone()));
    // oxauth.service is Type=notify: `systemctl start oxauth` returns now.
    if let Err(e) = crate::notify::notify(&format!("READY=1\nSTATUS=listening on https://{addr}/"))
    {
        state.log("WARN", &format!("cannot notify the service manager: {e:#}"));
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => {
                state.log("INFO", "SIGTERM received, stopping");
                let _ = crate::notify::notify("STOPPING=1");
                return Ok(());
            }
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        state.log("WARN", &format!("accept failed: {e}"));
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let state = state.clone();
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            // A bare TCP connect (a readiness probe) ends with an EOF: not worth a line.
                            if e.kind() != std::io::ErrorKind::UnexpectedEof {
                                state.log("DEBUG", &format!("TLS handshake with {peer} failed: {e}"));
                            }
                            return;
                        }
                        Err(_) => return,
                    };
                    let svc = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(state, peer, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        }
    }
}

type Reply = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(CONTENT_TYPE, v);
    }
    resp
}

fn json_reply(status: StatusCode, value: &Value) -> Reply {
    respond(status, "application/json", value.to_string())
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Reply {
    json_reply(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

fn bad_request(e: &anyhow::Error) -> Reply {
    oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &format!("{e:#}"),
    )
}

fn not_configured() -> Reply {
    oauth_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "oxAuth configuration not loaded: the directory holds no ou=oxauth,ou=configuration,o=gluu",
    )
}

async fn handle(state: Arc<State>, peer: SocketAddr, req: Request<Incoming>) -> Reply {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut resp = route(&state, req).await;
    if let Ok(v) = HeaderValue::from_str(&state.node.ip.to_string()) {
        resp.headers_mut().insert("x-gluu-node", v);
    }
    let line = format!(
        "{peer} \"{method} {path}\" {} {}ms node={}",
        resp.status().as_u16(),
        started.elapsed().as_millis(),
        state.node.ip
    );
    state.log("INFO", &line);
    if path == "/identity" || path.starts_with("/identity/") {
        write_line(&state.oxtrust_log, "INFO", &line);
    }
    resp
}

async fn read_form(req: Request<Incoming>) -> Result<(hyper::HeaderMap, Vec<(String, String)>)> {
    let (parts, body) = req.into_parts();
    let mut pairs: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let bytes = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| anyhow!("reading request body: {e}"))?
        .to_bytes();
    pairs.extend(form_urlencoded::parse(&bytes).into_owned());
    Ok((parts.headers, pairs))
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn route(state: &State, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match (method, path.as_str()) {
        (Method::GET, "/") => {
            let mut r = respond(StatusCode::FOUND, "text/plain", "");
            r.headers_mut()
                .insert(LOCATION, HeaderValue::from_static("/identity"));
            r
        }
        (
            Method::GET,
            "/.well-known/openid-configuration" | "/oxauth/.well-known/openid-configuration",
        ) => match state.current() {
            Some(cfg) => json_reply(StatusCode::OK, &register::discovery(state, &cfg)),
            None => not_configured(),
        },
        (Method::GET, "/oxauth/restv1/jwks") => match state.current() {
            Some(cfg) => json_reply(StatusCode::OK, &cfg.web_keys),
            None => not_configured(),
        },
        (Method::GET, "/oxauth/restv1/health-check") => {
            let online = state.db_online.load(Ordering::Relaxed);
            let configured = state.current().is_some();
            let status = if online && configured {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_reply(
                status,
                &json!({
                    "status": "running",
                    "db_status": if online { "online" } else { "offline" },
                    "configuration": if configured { "loaded" } else { "missing" },
                    "configuration_polls": state.polls.load(Ordering::Relaxed),
                }),
            )
        }
        (Method::POST, "/oxauth/restv1/token") => match read_form(req).await {
            Ok((headers, form)) => token::token(state, &headers, &form).await,
            Err(e) => oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("{e:#}"),
            ),
        },
        (Method::GET, "/oxauth/restv1/authorize") => match read_form(req).await {
            Ok((_, q)) => oidc::authorize(state, &q).await,
            Err(e) => bad_request(&e),
        },
        (Method::GET, "/oxauth/login.htm") => match read_form(req).await {
            Ok((_, q)) => login::login_page(state, &q).await,
            Err(e) => bad_request(&e),
        },
        (Method::POST, "/oxauth/login.htm") => match read_form(req).await {
            Ok((_, form)) => login::login_submit(state, &form).await,
            Err(e) => bad_request(&e),
        },
        (Method::GET | Method::POST, "/oxauth/restv1/userinfo") => match read_form(req).await {
            Ok((headers, form)) => oidc::userinfo(state, &headers, &form).await,
            Err(e) => bad_request(&e),
        },
        (Method::POST, "/oxauth/restv1/register") => {
            let Some(cfg) = state.current() else {
                return not_configured();
            };
            match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => register::register(state, &cfg, &b.to_bytes()).await,
                Err(e) => bad_request(&anyhow!("reading request body: {e}")),
            }
        }
        (Method::GET | Method::POST, "/oxauth/restv1/introspection") => {
            match read_form(req).await {
                Ok((_, form)) => token::introspect(state, &form).await,
                Err(e) => oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    &format!("{e:#}"),
                ),
            }
        }
        (Method::GET, "/identity/restv1/health-check") => {
            json_reply(StatusCode::OK, &json!({"status": "running"}))
        }
        (Method::GET, p) if p == "/identity" || p.starts_with("/identity/") => {
            identity(state, &req)
        }
        (Method::GET, "/idp/shibboleth") => match fs::read(state.layout.idp_metadata()) {
            Ok(xml) => respond(StatusCode::OK, "application/samlmetadata+xml", xml),
            Err(_) => respond(
                StatusCode::NOT_FOUND,
                "text/plain",
                "Shibboleth IDP is not installed on this node\n",
            ),
        },
        // What no location proxies comes from Gluu's document root, as Apache serves it.
        (m, _) => match (m == Method::GET)
            .then(|| crate::docroot::file(&state.layout.chroot, &path))
            .flatten()
        {
            Some(body) => respond(StatusCode::OK, "text/plain", body),
            None => oauth_error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no resource at {path}"),
            ),
        },
    }
}

fn identity(state: &State, req: &Request<Incoming>) -> Reply {
    let existing = req
        .headers()
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix("JSESSIONID="))
        .find(|v| !v.is_empty())
        .map(str::to_string);
    let new_session = existing.is_none();
    let session = existing.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let body = json!({
        "application": "oxTrust (stand-in)",
        "node": host_port_ip(state.node.ip),
        "hostname": state.node.hostname,
        "server": state.server_name,
        "session": session,
        "new_session": new_session,
        "path": req.uri().path(),
    });
    let mut resp = json_reply(StatusCode::OK, &body);
    if new_session {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "JSESSIONID={session}; Path=/identity; Secure; HttpOnly"
        )) {
            resp.headers_mut().insert(SET_COOKIE, v);
        }
    }
    resp
}
