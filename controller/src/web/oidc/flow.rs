//! The two requests of an OpenID Connect sign-in: `GET /login/oidc` (to the OP) and
//! `GET /login/oidc/callback` (back from it).

use super::http::{Body, brief};
use super::jwt::{Expected, verify};
use super::{Oidc, OidcError, Pending};
use crate::audit::{Audit, UNAUTHENTICATED};
use crate::web::pages::{W, message};
use crate::web::sessions::{ABSOLUTE, COOKIE};
use crate::web::signin::record;
use crate::web::{Web, cookie, plain, redirect, set_cookie};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;

/// Binds a pending sign-in to the browser that started it. `SameSite=Lax`: the OP sends the
/// browser back with a cross-site top-level GET, which a Strict cookie would not come with.
const STATE_COOKIE: &str = "__Host-clustermgr-oidc";

fn random() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn state_cookie(r: &mut Response, value: &str, max_age: u64) {
    let v = format!(
        "{STATE_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}"
    );
    if let Ok(v) = HeaderValue::from_str(&v) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn oidc(web: &Web) -> Result<Arc<Oidc>, Box<Response>> {
    web.oidc.current(&web.ctl.sealer).ok_or_else(|| {
        Box::new(plain(
            StatusCode::NOT_FOUND,
            "OpenID Connect sign-in is not configured (clustermgr console oidc register)",
        ))
    })
}

/// `GET /login/oidc`: a new sign-in (state, nonce, PKCE verifier), and the browser to the OP.
pub(in crate::web) async fn start(State(web): W) -> Response {
    let o = match oidc(&web) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let cluster = crate::cluster::settings(&web.ctl).ok();
    let op = match o.issuer(cluster.as_ref()) {
        Ok(issuer) => o.discover(&issuer).await,
        Err(e) => Err(e),
    };
    let op = match op {
        Ok(op) => op,
        Err(e) => {
            tracing::warn!(error = %e, "web console: OpenID Connect sign-in cannot start");
            return message(&web, StatusCode::BAD_GATEWAY, None, &e.to_string());
        }
    };
    let (state, nonce, verifier) = (random(), random(), random());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code")
        .append_pair("client_id", &o.settings.client_id)
        .append_pair("redirect_uri", &o.settings.redirect_uri)
        .append_pair(
            "scope",
            &format!("openid profile user_name {}", o.settings.role_claim),
        )
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let sep = if op.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    let to = format!("{}{sep}{}", op.authorization_endpoint, q.finish());
    o.remember(
        state.clone(),
        Pending {
            created: std::time::Instant::now(),
            nonce,
            verifier,
            op,
        },
    );
    let mut r = redirect(&to);
    state_cookie(&mut r, &state, super::PENDING_LIFETIME.as_secs());
    r
}

#[derive(Deserialize)]
pub(in crate::web) struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// `GET /login/oidc/callback`: the code exchanged (with the PKCE verifier), the ID token
/// verified, the role mapped; a session, or a refusal page and an audit row.
pub(in crate::web) async fn callback(
    State(web): W,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let o = match oidc(&web) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let source = peer.ip().to_string();
    let refuse = |status: StatusCode, text: String| {
        let web = web.clone();
        let source = source.clone();
        async move {
            let a = Audit::new(UNAUTHENTICATED, "web.sign-in", source);
            record(&web, a.failed(&format!("OpenID Connect: {text}"))).await;
            let mut r = message(&web, status, None, &format!("Sign-in refused: {text}"));
            state_cookie(&mut r, "", 0);
            r
        }
    };
    // The state: this browser's (its cookie), pending, and taken now (a callback works once).
    let state = q.state.unwrap_or_default();
    let pending = match cookie(&headers, STATE_COOKIE) {
        Some(c) if !state.is_empty() && c == state => o.take(&state),
        _ => None,
    };
    let Some(p) = pending else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "this sign-in is unknown, expired or already used (start again from the sign-in page)"
                .into(),
        )
        .await;
    };
    if let Some(e) = q.error {
        let d = q.error_description.unwrap_or_default();
        return refuse(
            StatusCode::UNAUTHORIZED,
            format!("the OP answered {e}: {d}"),
        )
        .await;
    }
    let Some(code) = q.code.filter(|c| !c.is_empty()) else {
        return refuse(StatusCode::BAD_REQUEST, "the OP sent no code".into()).await;
    };
    let claims = match exchange(&o, &p, &code).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "web console: OpenID Connect sign-in refused");
            return refuse(StatusCode::UNAUTHORIZED, e.to_string()).await;
        }
    };
    let name = ["preferred_username", "user_name", "sub"]
        .iter()
        .find_map(|k| claims.get(*k).and_then(Value::as_str))
        .unwrap_or("unknown");
    let user = format!("{name}@openid");
    let claim = &o.settings.role_claim;
    let Some(role) = o.roles.role(claims.get(claim)) else {
        return refuse(
            StatusCode::FORBIDDEN,
            format!(
                "{user} has no value of the claim {claim:?} that gives a console role (this \
                 console maps {})",
                o.settings.role_map
            ),
        )
        .await;
    };
    let (id, session) = web.sessions.create(&user, role);
    let a = session.audit("web.sign-in", user.clone());
    record(
        &web,
        a.ok(format!(
            "from {source} as {} through OpenID Connect ({})",
            role.as_str(),
            p.op.issuer
        )),
    )
    .await;
    // A page that moves on by itself: the session cookie is SameSite=Strict, and a browser does
    // not send it on a redirect that continues the OP's cross-site navigation.
    let mut r = web.render(
        "oidc_signed_in.html",
        minijinja::context! { user => user, role => role.as_str() },
    );
    set_cookie(&mut r, COOKIE, &id, ABSOLUTE.as_secs());
    state_cookie(&mut r, "", 0);
    r
}

/// The code exchanged at the token endpoint; the ID token's verified claims, with the role
/// claim taken from userinfo when the ID token does not carry it.
async fn exchange(
    o: &Oidc,
    p: &Pending,
    code: &str,
) -> Result<serde_json::Map<String, Value>, OidcError> {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", o.settings.redirect_uri.as_str()),
        ("code_verifier", p.verifier.as_str()),
    ];
    let basic = Some((o.settings.client_id.as_str(), o.secret.expose().as_str()));
    let (status, answer) = o
        .client
        .post(&p.op.token_endpoint, Body::Form(&form), basic)
        .await?;
    if status != 200 {
        return Err(OidcError::Op(format!(
            "the token endpoint refused the code ({status}): {}",
            brief(&answer)
        )));
    }
    let id_token = answer
        .get("id_token")
        .and_then(Value::as_str)
        .ok_or_else(|| OidcError::Op("the token endpoint returned no id_token".into()))?;
    let jwks = o.client.get_json(&p.op.jwks_uri, None).await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let want = Expected {
        issuer: &p.op.issuer,
        client_id: &o.settings.client_id,
        nonce: &p.nonce,
        now,
    };
    let mut claims = verify(id_token, &jwks, &want)?;
    let claim = &o.settings.role_claim;
    if !claims.contains_key(claim)
        && let (Some(url), Some(token)) = (
            &p.op.userinfo_endpoint,
            answer.get("access_token").and_then(Value::as_str),
        )
    {
        let info = o.client.get_json(url, Some(token)).await?;
        // OpenID Connect Core 5.3.2: userinfo's sub must be the ID token's.
        if info.get("sub") != claims.get("sub") {
            return Err(OidcError::Op("userinfo names another subject".into()));
        }
        if let Some(v) = info.get(claim) {
            claims.insert(claim.clone(), v.clone());
        }
    }
    Ok(claims)
}
