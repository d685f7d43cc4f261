//! The console's routes: thin handlers over the domain modules (`cluster`, `workflows`,
//! `audit`) and [`super::users`]; every page is a template in `templates/`.

use super::sessions::Session;
use super::users::same_secret;
use super::{
    PRE_COOKIE, Web, actions, admin, allowed, cookie, logs, manage, monitoring, plain, redirect,
    replication, servers, set_cookie, settings, signin, status, uploads, views,
};
use crate::auth::Role;
use crate::error::{Classify, Kind};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::context;
use serde::Serialize;
use std::sync::Arc;

pub(super) type W = State<Arc<Web>>;

const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("templates/layout.html")),
    ("setup.html", include_str!("templates/setup.html")),
    ("login.html", include_str!("templates/login.html")),
    ("dashboard.html", include_str!("templates/dashboard.html")),
    ("workflows.html", include_str!("templates/workflows.html")),
    ("workflow.html", include_str!("templates/workflow.html")),
    (
        "workflow_live.html",
        include_str!("templates/workflow_live.html"),
    ),
    ("audit.html", include_str!("templates/audit.html")),
    ("users.html", include_str!("templates/users.html")),
    ("message.html", include_str!("templates/message.html")),
    ("logs.html", include_str!("templates/logs.html")),
    ("status.html", include_str!("templates/status.html")),
    (
        "status_actions.html",
        include_str!("templates/status_actions.html"),
    ),
    ("settings.html", include_str!("templates/settings.html")),
    (
        "replication.html",
        include_str!("templates/replication.html"),
    ),
    ("log_row.html", include_str!("templates/log_row.html")),
    ("monitoring.html", include_str!("templates/monitoring.html")),
    ("charts.html", include_str!("templates/charts.html")),
];
const CSS: &str = include_str!("static/console.css");
const JS: &str = include_str!("static/console.js");

pub fn templates() -> anyhow::Result<minijinja::Environment<'static>> {
    let mut env = minijinja::Environment::new();
    for (name, src) in TEMPLATES {
        env.add_template(name, src)?;
    }
    Ok(env)
}

pub fn router(web: Arc<Web>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/setup", get(signin::setup_form).post(signin::setup_submit))
        .route("/login", get(signin::login_form).post(signin::login_submit))
        .route("/login/oidc", get(super::oidc::start))
        .route("/login/oidc/callback", get(super::oidc::callback))
        .route("/logout", post(signin::logout))
        .route("/dashboard", get(views::dashboard))
        .route("/servers/add", post(servers::add))
        .route("/servers/remove", post(servers::remove))
        .route("/servers/install", post(servers::install))
        .route("/servers/primary", post(servers::make_primary))
        .route("/servers/adopt", post(servers::adopt))
        .route("/cache/install", post(manage::cache_install))
        .route("/cache/password", post(manage::cache_password))
        .route("/lb/install", post(manage::lb_install))
        .route("/fsrep/change", post(manage::fsrep_change))
        .route("/keys/configure", post(manage::keys_configure))
        .route("/keys/rotate", post(manage::keys_rotate))
        .route("/certs/install", post(uploads::cert_install))
        .route("/schema/add", post(uploads::schema_add))
        .route("/workflows", get(views::workflows))
        .route("/workflows/{id}", get(views::workflow))
        .route("/workflows/{id}/events", get(views::workflow_events))
        .route("/workflows/{id}/cancel", post(actions::workflow_cancel))
        .route("/workflows/{id}/retry", post(actions::workflow_retry))
        .route("/audit", get(views::audit))
        .route("/status/{screen}", get(status::page))
        .route("/settings", get(settings::page).post(settings::save))
        .route("/replication", get(replication::page))
        .route("/replication/deploy", post(replication::deploy))
        .route("/replication/remove", post(replication::remove))
        .route("/logs", get(logs::page))
        .route("/logs/follow", get(logs::follow))
        .route("/monitoring", get(monitoring::cluster))
        .route("/monitoring/{node}", get(monitoring::node))
        .route("/live/monitoring", get(monitoring::cluster_live))
        .route("/live/monitoring/{node}", get(monitoring::node_live))
        .route("/users", get(admin::users_page).post(admin::users_add))
        .route("/users/remove", post(admin::users_remove))
        .route(
            "/static/console.css",
            get(|| async { asset("text/css", CSS) }),
        )
        .route(
            "/static/console.js",
            get(|| async { asset("text/javascript", JS) }),
        )
        .fallback(|| async { plain(StatusCode::NOT_FOUND, "no such page") })
        .with_state(web)
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    let mut r = (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response();
    super::secure_headers(&mut r);
    r
}

/// The signed-in session with at least `needed`, or the response that ends the request: the
/// sign-in page (the setup page before the first admin exists) or 403.
pub(super) fn gate(web: &Web, headers: &HeaderMap, needed: Role) -> Result<Session, Box<Response>> {
    let Some((_, s)) = web.session(headers) else {
        return Err(Box::new(redirect(if web.users.needs_setup() {
            "/setup"
        } else {
            "/login"
        })));
    };
    if !allowed(s.role, needed) {
        return Err(Box::new(message(
            web,
            StatusCode::FORBIDDEN,
            Some(&s),
            &format!(
                "this needs the {} role; you are {}",
                needed.as_str(),
                s.role.as_str()
            ),
        )));
    }
    Ok(s)
}

/// A state change: the session's role and the form's CSRF token, both checked first.
pub(super) fn gate_change(
    web: &Web,
    headers: &HeaderMap,
    needed: Role,
    csrf: Option<&str>,
) -> Result<Session, Box<Response>> {
    let s = gate_role(web, headers, needed)?;
    if !csrf.is_some_and(|t| same_secret(t, &s.csrf)) {
        return Err(Box::new(plain(
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or wrong: reload the page and try again",
        )));
    }
    Ok(s)
}

/// The session's role alone, from the request's headers: what a change whose form is large
/// (multipart) checks before its body is read; [`gate_change`] then checks the form's token.
pub(super) fn gate_role(
    web: &Web,
    headers: &HeaderMap,
    needed: Role,
) -> Result<Session, Box<Response>> {
    let Some((_, s)) = web.session(headers) else {
        return Err(Box::new(plain(StatusCode::FORBIDDEN, "not signed in")));
    };
    if !allowed(s.role, needed) {
        return Err(Box::new(plain(
            StatusCode::FORBIDDEN,
            &format!("this needs the {} role", needed.as_str()),
        )));
    }
    Ok(s)
}

/// The page of a failed domain call, classified as the gRPC API classifies it (`error.rs`):
/// internal failures are logged with their detail and shown as "internal error" only.
pub(super) fn failure<E: Classify>(web: &Web, s: &Session, what: &str, e: E) -> Response {
    let status = match e.kind() {
        Kind::InvalidArgument => StatusCode::BAD_REQUEST,
        Kind::NotFound => StatusCode::NOT_FOUND,
        Kind::AlreadyExists | Kind::FailedPrecondition => StatusCode::CONFLICT,
        Kind::PermissionDenied | Kind::Unauthenticated => StatusCode::FORBIDDEN,
        Kind::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Kind::Internal => {
            tracing::error!(error = %e, "web console: {what} failed");
            return message(
                web,
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(s),
                &format!("{what}: internal error (the controller's log has the detail)"),
            );
        }
    };
    message(web, status, Some(s), &format!("{what}: {e}"))
}

pub(super) fn message(web: &Web, status: StatusCode, s: Option<&Session>, text: &str) -> Response {
    let mut r = web.render("message.html", context! { me => me(s), text => text });
    *r.status_mut() = status;
    r
}

#[derive(Serialize)]
pub(super) struct Me {
    user: String,
    role: &'static str,
    csrf: String,
    can_change: bool,
    admin: bool,
}

pub(super) fn me(s: Option<&Session>) -> Option<Me> {
    s.map(|s| Me {
        user: s.user.clone(),
        role: s.role.as_str(),
        csrf: s.csrf.clone(),
        can_change: s.role >= Role::Operator,
        admin: s.role >= Role::Admin,
    })
}

async fn index(State(web): W, headers: HeaderMap) -> Response {
    match gate(&web, &headers, Role::Viewer) {
        Ok(_) => redirect("/dashboard"),
        Err(r) => *r,
    }
}

/// A page with a form that has no session yet (setup, sign-in): a fresh double-submit token in
/// a cookie and in the form.
pub(super) fn pre_session_form(
    web: &Web,
    name: &str,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let token = hex::encode(rand::random::<[u8; 32]>());
    let mut r = web.render(name, context! { form_token => token, error => error });
    *r.status_mut() = status;
    set_cookie(&mut r, PRE_COOKIE, &token, 3600);
    r
}

/// The double-submit check of a form without a session: the cookie and the field agree, or the
/// refusal.
pub(super) fn pre_session_ok(
    headers: &HeaderMap,
    token: Option<&str>,
) -> Result<(), Box<Response>> {
    match (cookie(headers, PRE_COOKIE), token) {
        (Some(c), Some(t)) if same_secret(&c, t) => Ok(()),
        _ => Err(Box::new(plain(
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or wrong",
        ))),
    }
}
