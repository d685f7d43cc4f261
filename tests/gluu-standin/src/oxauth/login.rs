//! oxAuth's login page (`/oxauth/login.htm`): the form carries the authorization request, the
//! password is checked by an LDAP bind as the user found by `uid` under `ou=people,o=gluu`, and
//! the browser goes back to the client with a single-use code kept in the cluster's cache.

use hyper::StatusCode;
use hyper::header::HeaderValue;
use serde_json::{Value, json};

use super::dir::{Attrs, first};
use super::oidc::{CODE_LIFETIME, REQUEST_PARAMS, all, check_request, code_key, found, with_query};
use super::{Reply, State, cache_kind, now, param};

const PEOPLE: &str = "ou=people,o=gluu";

fn html(status: StatusCode, title: &str, body: &str) -> Reply {
    let page = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1>{body}</body></html>"
    );
    let mut r = super::respond(status, "text/html; charset=utf-8", page);
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// `GET /oxauth/login.htm`: the login form, carrying the authorization request.
pub(super) async fn login_page(state: &State, pairs: &[(String, String)]) -> Reply {
    if let Err(r) = check_request(state, pairs).await {
        return *r;
    }
    login_form(StatusCode::OK, pairs, None)
}

fn login_form(status: StatusCode, pairs: &[(String, String)], error: Option<&str>) -> Reply {
    let mut hidden = String::new();
    for k in REQUEST_PARAMS {
        if let Some(v) = param(pairs, k) {
            hidden.push_str(&format!(
                "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
                escape(v)
            ));
        }
    }
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "{error}<form method=\"post\" action=\"/oxauth/login.htm\">{hidden}\
         <label for=\"username\">Username</label> \
         <input id=\"username\" name=\"username\" autocomplete=\"username\" required> \
         <label for=\"password\">Password</label> \
         <input id=\"password\" name=\"password\" type=\"password\" required> \
         <button id=\"loginButton\" type=\"submit\">Login</button></form>"
    );
    html(status, "Gluu Server login", &body)
}

/// `POST /oxauth/login.htm`: checks the user's password (an LDAP bind as the user) and sends the
/// browser back to the client with a code.
pub(super) async fn login_submit(state: &State, pairs: &[(String, String)]) -> Reply {
    let req = match check_request(state, pairs).await {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let username = param(pairs, "username").unwrap_or("").trim();
    let password = param(pairs, "password").unwrap_or("");
    let user = match find_user(state, username).await {
        Ok(Some((dn, attrs))) => match state.dir.check_password(&dn, password).await {
            Ok(true) => Some(attrs),
            Ok(false) => None,
            Err(e) => {
                state.log("ERROR", &format!("login: {e:#}"));
                return html(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Gluu Server login",
                    "<p>The directory is not reachable.</p>",
                );
            }
        },
        Ok(None) => None,
        Err(e) => {
            state.log("ERROR", &format!("login: {e:#}"));
            None
        }
    };
    let Some(user) = user else {
        state.log("INFO", &format!("login failed for user {username:?}"));
        return login_form(
            StatusCode::UNAUTHORIZED,
            pairs,
            Some("The username or password is incorrect"),
        );
    };
    let code = hex::encode(rand::random::<[u8; 32]>());
    let iat = now();
    let record = json!({
        "client_id": req.client.id,
        "redirect_uri": req.redirect_uri,
        "scope": req.scope,
        "nonce": param(pairs, "nonce"),
        "code_challenge": req.challenge.map(|c| c.0),
        "code_challenge_method": req.challenge.map(|c| c.1),
        "auth_time": iat,
        "exp": iat + CODE_LIFETIME,
        "claims": user_claims(username, &user),
    });
    let stored = async {
        let kind = cache_kind(state).await?;
        state
            .cache
            .put(
                &state.dir,
                &kind,
                &code_key(&code),
                &record,
                iat,
                iat + CODE_LIFETIME,
            )
            .await
    };
    if let Err(e) = stored.await {
        state.log("ERROR", &format!("login: storing the code: {e:#}"));
        return html(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Gluu Server login",
            "<p>The code could not be stored.</p>",
        );
    }
    state.log("INFO", &format!("user {username:?} logged in"));
    let mut back = vec![("code", code.as_str())];
    if let Some(s) = param(pairs, "state") {
        back.push(("state", s));
    }
    found(&with_query(req.redirect_uri, &back))
}

async fn find_user(state: &State, uid: &str) -> anyhow::Result<Option<(String, Attrs)>> {
    if uid.is_empty() {
        return Ok(None);
    }
    let filter = format!("(uid={})", ldap3::ldap_escape(uid));
    let found = state
        .dir
        .search(
            PEOPLE,
            &filter,
            &["uid", "inum", "cn", "givenName", "sn", "mail", "role"],
        )
        .await?;
    Ok(match found.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    })
}

/// The claims a user releases: `sub` (the inum, else the uid), `user_name`, `name`, `email`,
/// `given_name`, `family_name`, `role` (every value).
fn user_claims(uid: &str, attrs: &Attrs) -> Value {
    let mut c = serde_json::Map::new();
    c.insert(
        "sub".into(),
        json!(first(attrs, "inum").unwrap_or(uid).to_string()),
    );
    c.insert("user_name".into(), json!(uid));
    for (claim, attr) in [
        ("name", "cn"),
        ("given_name", "givenName"),
        ("family_name", "sn"),
        ("email", "mail"),
    ] {
        if let Some(v) = first(attrs, attr) {
            c.insert(claim.into(), json!(v));
        }
    }
    let roles = all(attrs, "role");
    if !roles.is_empty() {
        c.insert("role".into(), json!(roles));
    }
    Value::Object(c)
}
