//! `serve --web-listen ADDR`: the web console, HTTPS only (the controller's listener
//! certificate, renewed with it; no client certificate asked), HTTP/1.1.
//!
//! Server-rendered pages ([`pages`], minijinja templates in `templates/`, HTML-escaped) over the
//! same domain modules the gRPC API uses; one stylesheet and one script served from
//! `/static/`, under a Content-Security-Policy without inline script or style. Sign-in is by
//! local users ([`users`]: argon2id; the first admin needs the setup code in
//! `DATA/web-setup-code`) with the API's roles; sessions and the sign-in rate limit are in
//! [`sessions`]. Every state change is a POST carrying the session's CSRF token (sign-in and
//! setup: a double-submit token), checked before anything else.

#[macro_use]
mod act;
mod actions;
mod admin;
mod charts;
mod live;
mod logs;
mod manage;
mod monitoring;
pub mod oidc;
mod pages;
mod replication;
mod servers;
pub mod sessions;
mod settings;
mod signin;
mod status;
mod uploads;
pub mod users;
mod views;

use crate::auth::Role;
use crate::ctl::Ctl;
use crate::https::{DerivedTls, accept_loop};
use anyhow::{Context, Result};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sessions::{COOKIE, LoginLimiter, Session, Sessions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use users::Users;

/// Connections served at once (browsers open a few each).
const MAX_CONNECTIONS: usize = 256;
/// A connection that sends no request for this long is closed.
const IDLE: std::time::Duration = std::time::Duration::from_secs(60);
/// The pre-session cookie of the sign-in and setup forms (double-submit CSRF token).
const PRE_COOKIE: &str = "__Host-clustermgr-form";

pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's state, shared by every request.
/// The domain state the console's screens read, handed in by the daemon.
#[derive(Clone)]
pub struct Parts {
    pub logs: Arc<crate::logs::Broker>,
    pub health: Arc<crate::health::Health>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub fsrep: Arc<crate::fsrep::Fsrep>,
}

pub struct Web {
    pub ctl: Arc<Ctl>,
    pub parts: Parts,
    pub users: Users,
    pub sessions: Sessions,
    pub limiter: LoginLimiter,
    /// OpenID Connect sign-in, when `DATA/oidc.toml` configures it.
    pub oidc: Arc<oidc::OidcSlot>,
    templates: minijinja::Environment<'static>,
}

impl Web {
    pub fn new(ctl: Arc<Ctl>, parts: Parts, data_root: PathBuf) -> Result<Self> {
        let users = Users::load(ctl.store.clone(), data_root.join("web-setup-code"))
            .context("cannot load the web console's users")?;
        let oidc = Arc::new(
            oidc::OidcSlot::new(&data_root, &ctl.sealer)
                .context("cannot load the console's OpenID Connect settings")?,
        );
        let mut templates = pages::templates()?;
        oidc::templates(&mut templates, oidc.clone())?;
        Ok(Self {
            ctl,
            parts,
            users,
            sessions: Sessions::default(),
            limiter: LoginLimiter::default(),
            oidc,
            templates,
        })
    }

    /// A page: the template rendered with `ctx`, or the error page.
    fn render(&self, name: &str, ctx: minijinja::Value) -> Response {
        match self
            .templates
            .get_template(name)
            .and_then(|t| t.render(ctx))
        {
            Ok(html) => page(StatusCode::OK, html),
            Err(e) => {
                tracing::error!(template = name, error = %e, "web console: cannot render a page");
                plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page could not be rendered",
                )
            }
        }
    }

    /// A fragment (the live part of a page) rendered to a string; None (logged) on error.
    fn fragment(&self, name: &str, ctx: minijinja::Value) -> Option<String> {
        match self
            .templates
            .get_template(name)
            .and_then(|t| t.render(ctx))
        {
            Ok(html) => Some(html),
            Err(e) => {
                tracing::error!(template = name, error = %e, "web console: cannot render a fragment");
                None
            }
        }
    }

    /// The session of the request's cookie (after the OpenID Connect settings are checked).
    fn session(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = cookie(headers, COOKIE)?;
        // OpenID Connect settings changed (`console oidc register|remove`): its sessions end.
        self.oidc.current(&self.ctl.sealer, &self.sessions);
        self.sessions.get(&id).map(|s| (id, s))
    }
}

/// The value of cookie `name` in the request.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Headers every response carries.
fn secure_headers(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

fn page(status: StatusCode, html: String) -> Response {
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response();
    secure_headers(&mut r);
    r
}

fn plain(status: StatusCode, text: &str) -> Response {
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{text}\n"),
    )
        .into_response();
    secure_headers(&mut r);
    r
}

fn redirect(to: &str) -> Response {
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response();
    secure_headers(&mut r);
    r
}

/// `Set-Cookie` for a cookie the console sets (`max_age` 0 deletes it).
fn set_cookie(r: &mut Response, name: &str, value: &str, max_age: u64) {
    let v = format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}");
    if let Ok(v) = HeaderValue::from_str(&v) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Whether `role` may do what needs `needed`.
fn allowed(role: Role, needed: Role) -> bool {
    role >= needed
}

/// Serves the console on `addr` until the process ends.
pub async fn serve(web: Arc<Web>, addr: SocketAddr, tls: Arc<DerivedTls>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the web console"))?;
    tls.config()
        .context("cannot set up TLS for the web console")?;
    if web.users.needs_setup() {
        tracing::warn!(
            %addr,
            "web console on https://{addr}/: no user yet; create the first admin at /setup with \
             the setup code in {}",
            web.users.setup_code_path().display()
        );
    } else {
        tracing::info!(%addr, "web console on https://{addr}/");
    }
    let router = pages::router(web);
    accept_loop(
        "web console",
        listener,
        MAX_CONNECTIONS,
        tls,
        move |stream, peer| {
            let router = router.clone();
            // A response's TLS records go out at once: with Nagle's algorithm a page's last
            // small segment waited for the browser's delayed ACK (40 ms).
            let _ = stream.get_ref().0.set_nodelay(true);
            async move {
                let service = hyper::service::service_fn(
                    move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut()
                            .insert(axum::extract::ConnectInfo(peer));
                        let router = router.clone();
                        async move {
                            use tower::ServiceExt;
                            router.oneshot(req.map(axum::body::Body::new)).await
                        }
                    },
                );
                crate::https::serve_http1(stream, IDLE, service).await;
            }
        },
    );
    Ok(())
}
