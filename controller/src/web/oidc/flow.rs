//! The two requests of an OpenID Connect sign-in: `GET /login/oidc` (to the OP) and
//! `GET /login/oidc/callback` (back from it).

use super::http::{Body, brief};
use super::jwt::{Expected, verify};
use super::pending::{LIFETIME, Pending};
use super::{Oidc, OidcError, user_name};
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

/// The sign-in in progress, sealed ([`super::pending`]), in the browser that started it.
/// `SameSite=Lax`: the OP sends the browser back with a cross-site top-level GET, which a
/// Strict cookie would not come with.
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
    web.oidc
        .current(&web.ctl.sealer, &web.sessions)
        .ok_or_else(|| {
            Box::new(plain(
                StatusCode::NOT_FOUND,
                "OpenID Connect sign-in is not configured (clustermgr console oidc register)",
            ))
        })
}

/// Why a sign-in that outlived a change of the settings is refused.
const SETTINGS_CHANGED: &str = "the console's OpenID Connect settings changed since this \
     sign-in started; start again from the sign-in page";

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// `GET /login/oidc`: a new sign-in (state, nonce, PKCE verifier) sealed in the browser's
/// cookie, and the browser to the OP.
pub(in crate::web) async fn start(State(web): W) -> Response {
    let o = match oidc(&web) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let cluster = crate::settings::settings(&web.ctl).ok();
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
    let p = Pending::new(state, nonce, verifier, op.issuer, now());
    let sealed = match web.oidc.pending.seal(&p) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "web console: OpenID Connect sign-in cannot start");
            return message(
                &web,
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
                &e.to_string(),
            );
        }
    };
    let mut r = redirect(&to);
    state_cookie(&mut r, &sealed, LIFETIME.as_secs());
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
    // The state: the one sealed in this browser's cookie, in time, taken now (a callback
    // works once).
    let state = q.state.unwrap_or_default();
    let pending =
        cookie(&headers, STATE_COOKIE).and_then(|c| web.oidc.pending.take(&c, &state, now()));
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
    // Settings changed since this sign-in started (console oidc register or remove): its code
    // is not for the client now configured, and the client's secret goes to no other issuer.
    let cluster = crate::settings::settings(&web.ctl).ok();
    if o.issuer(cluster.as_ref()).ok().as_deref() != Some(p.issuer.as_str()) {
        return refuse(StatusCode::BAD_REQUEST, SETTINGS_CHANGED.into()).await;
    }
    let claims = match exchange(&o, &p, &code).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "web console: OpenID Connect sign-in refused");
            return refuse(StatusCode::UNAUTHORIZED, e.to_string()).await;
        }
    };
    let user = match user_name(&claims) {
        Ok(u) => u,
        Err(e) => return refuse(StatusCode::UNAUTHORIZED, e.to_string()).await,
    };
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
    // Nor a session when the settings changed during the exchange: that change ended every
    // OpenID Connect session, this one included.
    if !oidc(&web).is_ok_and(|now| Arc::ptr_eq(&now, &o)) {
        return refuse(StatusCode::BAD_REQUEST, SETTINGS_CHANGED.into()).await;
    }
    let (id, session) = web.sessions.create(&user, role);
    let a = session.audit("web.sign-in", user.clone());
    record(
        &web,
        a.ok(format!(
            "from {source} as {} through OpenID Connect ({})",
            role.as_str(),
            p.issuer
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
    let op = o.discover(&p.issuer).await?;
    let (status, answer) = o
        .client
        .post(&op.token_endpoint, Body::Form(&form), basic)
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
    let jwks = o.client.get_json(&op.jwks_uri, None).await?;
    let want = Expected {
        issuer: &op.issuer,
        client_id: &o.settings.client_id,
        nonce: &p.nonce,
        now: now(),
    };
    let mut claims = verify(id_token, &jwks, &want)?;
    let claim = &o.settings.role_claim;
    if !claims.contains_key(claim)
        && let (Some(url), Some(token)) = (
            &op.userinfo_endpoint,
            answer.get("access_token").and_then(Value::as_str),
        )
    {
        let info = o.client.get_json(url, Some(token)).await?;
        add_userinfo(&mut claims, &info, claim)?;
    }
    Ok(claims)
}

/// The role claim of userinfo added to the ID token's claims, when userinfo is about the same
/// subject (OpenID Connect Core 5.3.2: its `sub` is the ID token's, both present).
fn add_userinfo(
    claims: &mut serde_json::Map<String, Value>,
    info: &Value,
    claim: &str,
) -> Result<(), OidcError> {
    fn sub(v: Option<&Value>) -> Option<&str> {
        v.and_then(Value::as_str).filter(|s| !s.is_empty())
    }
    match (sub(claims.get("sub")), sub(info.get("sub"))) {
        (Some(a), Some(b)) if a == b => {}
        _ => return Err(OidcError::Op("userinfo names another subject".into())),
    }
    if let Some(v) = info.get(claim) {
        claims.insert(claim.to_string(), v.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn userinfo_adds_the_role_only_for_the_id_tokens_subject() {
        let mut c = claims(json!({"sub": "inum-1"}));
        add_userinfo(
            &mut c,
            &json!({"sub": "inum-1", "role": "clusteradmin"}),
            "role",
        )
        .unwrap();
        assert_eq!(c["role"], json!("clusteradmin"));
        for (token, info) in [
            (
                json!({"sub": "inum-1"}),
                json!({"sub": "inum-2", "role": "x"}),
            ),
            (json!({"sub": "inum-1"}), json!({"role": "x"})),
            (json!({}), json!({"role": "x"})),
            (json!({"sub": ""}), json!({"sub": "", "role": "x"})),
        ] {
            let mut c = claims(token);
            assert!(add_userinfo(&mut c, &info, "role").is_err(), "{info}");
            assert!(!c.contains_key("role"));
        }
    }

    #[test]
    fn the_user_is_named_by_the_ops_subject() {
        let alice = |extra: Value| {
            let mut c = claims(json!({"sub": "inum-1"}));
            c.extend(claims(extra));
            user_name(&c).unwrap()
        };
        assert_eq!(
            alice(json!({"preferred_username": "alice", "user_name": "al"})),
            "alice@openid (sub inum-1)"
        );
        assert_eq!(alice(json!({"user_name": "al"})), "al@openid (sub inum-1)");
        assert_eq!(alice(json!({})), "inum-1@openid (sub inum-1)");
        // Two people the OP both calls alice are two users.
        let mut other = claims(json!({"sub": "inum-2", "preferred_username": "alice"}));
        assert_ne!(
            user_name(&other).unwrap(),
            alice(json!({"preferred_username": "alice"}))
        );
        other.remove("sub");
        assert!(user_name(&other).is_err());
        assert!(super::super::is_openid_user("alice@openid (sub inum-1)"));
        assert!(!super::super::is_openid_user("alice"));
    }
}
