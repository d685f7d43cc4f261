//! oxAuth's OpenID Connect authorization code flow, as Gluu 4.2.3 serves it at
//! `/oxauth/restv1/authorize`, `/oxauth/login.htm`, `/oxauth/restv1/token` (grant
//! `authorization_code`), `/oxauth/restv1/userinfo` and `/oxauth/restv1/register`.
//!
//! - Clients live in the directory as Gluu keeps them (`inum=ID,ou=clients,o=gluu`, object class
//!   `oxAuthClient`); dynamic registration creates them. A client registered here requires PKCE
//!   with S256 unless its registration says `"require_pkce": false` (kept in `oxAttributes`).
//! - Users are the entries under `ou=people,o=gluu`; the login page finds one by `uid` and
//!   checks the password by an LDAP bind as that entry. Its `role` values are released as the
//!   claim `role` (scope `role`).
//! - The login form carries the authorization request itself, so any node behind the load
//!   balancer can take it; codes and access tokens are kept in the cluster's cache
//!   (`oxCacheConfiguration`), so any node redeems them. A code is taken from the cache once.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::StatusCode;
use hyper::header::{HeaderValue, LOCATION};
use serde_json::{Value, json};

use super::dir::{Attrs, first};
use super::{OxConfig, Reply, State, cache_key, cache_kind, json_reply, now, oauth_error, param};

pub(super) const CLIENTS: &str = "ou=clients,o=gluu";
/// Gluu's default `authorizationCodeLifetime` (seconds).
pub(super) const CODE_LIFETIME: i64 = 60;
/// Gluu's default `idTokenLifetime` (seconds).
const ID_TOKEN_LIFETIME: i64 = 3600;
/// The authorization request's parameters the login form carries.
pub(super) const REQUEST_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
];

/// A registered client, as read from the directory.
pub(super) struct Client {
    pub id: String,
    secret: String,
    redirect_uris: Vec<String>,
    require_pkce: bool,
}

pub(super) async fn client(state: &State, id: &str) -> anyhow::Result<Option<Client>> {
    if id.is_empty() || id.contains([',', '=', '+', '"', '\\', '<', '>', ';']) {
        return Ok(None);
    }
    let attrs = state
        .dir
        .read(
            &format!("inum={id},{CLIENTS}"),
            &["oxAuthClientSecret", "oxAuthRedirectURI", "oxAttributes"],
        )
        .await?;
    Ok(attrs.map(|a| Client {
        id: id.to_string(),
        secret: first(&a, "oxAuthClientSecret").unwrap_or("").to_string(),
        redirect_uris: all(&a, "oxAuthRedirectURI"),
        require_pkce: first(&a, "oxAttributes")
            .and_then(|j| serde_json::from_str::<Value>(j).ok())
            .and_then(|v| v.get("requirePkce").and_then(Value::as_bool))
            .unwrap_or(true),
    }))
}

impl Client {
    /// Whether `secret` is this client's secret.
    pub(super) fn authenticates(&self, secret: &str) -> bool {
        // Digests compared, so the time taken says nothing about the secret's prefix.
        let d = |s: &str| ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
        !self.secret.is_empty() && d(&self.secret).as_ref() == d(secret).as_ref()
    }
}

pub(super) fn all(attrs: &Attrs, name: &str) -> Vec<String> {
    attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

pub(super) fn found(location: &str) -> Reply {
    let mut r = super::respond(StatusCode::FOUND, "text/plain", "");
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

pub(super) fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{}", q.finish())
}

/// A checked authorization request: its client and parameters.
pub(super) struct Authz<'a> {
    pub client: Client,
    pub redirect_uri: &'a str,
    pub scope: &'a str,
    pub challenge: Option<(&'a str, &'a str)>,
}

/// Checks an authorization request (the client, its redirect URI, `response_type=code` and
/// PKCE); the refusal is an error page (never a redirect to an unchecked URI).
pub(super) async fn check_request<'a>(
    state: &State,
    pairs: &'a [(String, String)],
) -> Result<Authz<'a>, Box<Reply>> {
    let bad = |e: &str, d: &str| Err(Box::new(oauth_error(StatusCode::BAD_REQUEST, e, d)));
    let Some(id) = param(pairs, "client_id") else {
        return bad("invalid_request", "client_id is required");
    };
    let client = match client(state, id).await {
        Ok(Some(c)) => c,
        Ok(None) => return bad("invalid_client", "unknown client_id"),
        Err(e) => {
            state.log("ERROR", &format!("authorization: {e:#}"));
            return Err(Box::new(oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the directory is not reachable",
            )));
        }
    };
    let redirect_uri = param(pairs, "redirect_uri").unwrap_or("");
    if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
        return bad(
            "invalid_request",
            "redirect_uri is not registered for this client",
        );
    }
    if param(pairs, "response_type") != Some("code") {
        return bad(
            "unsupported_response_type",
            "only response_type=code is supported",
        );
    }
    let scope = param(pairs, "scope").unwrap_or("");
    if !scope.split(' ').any(|s| s == "openid") {
        return bad("invalid_scope", "scope must include openid");
    }
    let challenge = param(pairs, "code_challenge").filter(|c| !c.is_empty());
    let method = param(pairs, "code_challenge_method").unwrap_or("plain");
    let challenge = match (challenge, method) {
        (None, _) if client.require_pkce => {
            return bad(
                "invalid_request",
                "this client requires PKCE: code_challenge with code_challenge_method=S256",
            );
        }
        (None, _) => None,
        (Some(_), "plain") if client.require_pkce => {
            return bad(
                "invalid_request",
                "this client requires code_challenge_method=S256",
            );
        }
        (Some(c), m @ ("plain" | "S256")) => Some((c, m)),
        (Some(_), _) => {
            return bad("invalid_request", "code_challenge_method must be S256");
        }
    };
    Ok(Authz {
        client,
        redirect_uri,
        scope,
        challenge,
    })
}

/// `GET /oxauth/restv1/authorize`: a checked request goes to the login page.
pub(super) async fn authorize(state: &State, pairs: &[(String, String)]) -> Reply {
    if let Err(r) = check_request(state, pairs).await {
        return *r;
    }
    let carried: Vec<(&str, &str)> = REQUEST_PARAMS
        .iter()
        .filter_map(|k| param(pairs, k).map(|v| (*k, v)))
        .collect();
    found(&with_query("/oxauth/login.htm", &carried))
}

/// The claims of `claims` that `scope` releases.
fn released(claims: &Value, scope: &str) -> serde_json::Map<String, Value> {
    let scopes: Vec<&str> = scope.split(' ').collect();
    let mut out = serde_json::Map::new();
    let Some(all) = claims.as_object() else {
        return out;
    };
    for (k, v) in all {
        let scope_of = match k.as_str() {
            "sub" => "openid",
            "user_name" => "user_name",
            "email" => "email",
            "role" => "role",
            _ => "profile",
        };
        if scopes.contains(&scope_of) {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

pub(super) fn code_key(code: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, code.as_bytes());
    format!("oxauth_code_{}", hex::encode(digest.as_ref()))
}

/// The client of a token request: HTTP Basic or `client_id`/`client_secret`, checked against
/// the registered client.
async fn authenticated_client(
    state: &State,
    headers: &hyper::HeaderMap,
    form: &[(String, String)],
) -> Result<Client, Reply> {
    let refused = || {
        oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        )
    };
    let Some((id, secret)) = super::client_credentials(headers, form) else {
        return Err(refused());
    };
    match client(state, &id).await {
        Ok(Some(c)) if c.authenticates(&secret) => Ok(c),
        Ok(_) => Err(refused()),
        Err(e) => {
            state.log("ERROR", &format!("token: {e:#}"));
            Err(oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the directory is not reachable",
            ))
        }
    }
}

/// The token endpoint's `grant_type=authorization_code`: the code is taken once, and must have
/// been issued to this client for this redirect URI, with this PKCE verifier.
pub(super) async fn code_grant(
    state: &State,
    cfg: &OxConfig,
    headers: &hyper::HeaderMap,
    form: &[(String, String)],
) -> Reply {
    let client = match authenticated_client(state, headers, form).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let grant = |d: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", d);
    let code = param(form, "code").unwrap_or("");
    let kind = match cache_kind(state).await {
        Ok(k) => k,
        Err(e) => return server_error(state, &e),
    };
    let record = match state.cache.take(&state.dir, &kind, &code_key(code)).await {
        Ok(Some(r)) => r,
        Ok(None) => return grant("the code is unknown, expired or already used"),
        Err(e) => return server_error(state, &e),
    };
    let field = |k: &str| record.get(k).and_then(Value::as_str).unwrap_or("");
    if record.get("exp").and_then(Value::as_i64).unwrap_or(0) <= now() {
        return grant("the code has expired");
    }
    if field("client_id") != client.id {
        return grant("the code was issued to another client");
    }
    if param(form, "redirect_uri") != Some(field("redirect_uri")) {
        return grant("redirect_uri differs from the authorization request's");
    }
    if let Some(challenge) = record.get("code_challenge").and_then(Value::as_str) {
        let verifier = param(form, "code_verifier").unwrap_or("");
        let computed = match field("code_challenge_method") {
            "S256" => URL_SAFE_NO_PAD
                .encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref()),
            _ => verifier.to_string(),
        };
        if verifier.is_empty() || computed != challenge {
            return grant("code_verifier does not match the code_challenge");
        }
    }
    let Some(key) = cfg.signing.as_ref() else {
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "no RS256 signing key with a private key on this node",
        );
    };
    let scope = field("scope").to_string();
    let mut claims = released(&record["claims"], &scope);
    let iat = now();
    claims.insert("iss".into(), json!(super::issuer(state, cfg)));
    claims.insert("aud".into(), json!(client.id));
    claims.insert("iat".into(), json!(iat));
    claims.insert("exp".into(), json!(iat + ID_TOKEN_LIFETIME));
    claims.insert("auth_time".into(), record["auth_time"].clone());
    if let Some(nonce) = record.get("nonce").and_then(Value::as_str) {
        claims.insert("nonce".into(), json!(nonce));
    }
    let id_token = match super::jwt::sign(key, &Value::Object(claims.clone())) {
        Ok(t) => t,
        Err(e) => return server_error(state, &e),
    };
    let lifetime = super::access_token_lifetime(cfg);
    let access = hex::encode(rand::random::<[u8; 32]>());
    let stored = json!({
        "client_id": client.id,
        "scope": scope,
        "iat": iat,
        "exp": iat + lifetime,
        "sub": claims.get("sub"),
        "token_type": "Bearer",
        "claims": released(&record["claims"], &scope),
    });
    if let Err(e) = state
        .cache
        .put(
            &state.dir,
            &kind,
            &cache_key(&access),
            &stored,
            iat,
            iat + lifetime,
        )
        .await
    {
        return server_error(state, &e);
    }
    let mut r = json_reply(
        StatusCode::OK,
        &json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": scope,
            "id_token": id_token,
        }),
    );
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

fn server_error(state: &State, e: &anyhow::Error) -> Reply {
    state.log("ERROR", &format!("token: {e:#}"));
    oauth_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        &format!("{e:#}"),
    )
}

/// `/oxauth/restv1/userinfo`: the claims of a bearer access token's user.
pub(super) async fn userinfo(
    state: &State,
    headers: &hyper::HeaderMap,
    form: &[(String, String)],
) -> Reply {
    let bearer = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| param(form, "access_token"))
        .unwrap_or("");
    let invalid = || {
        oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the access token is missing, unknown or expired",
        )
    };
    if bearer.is_empty() {
        return invalid();
    }
    let found = async {
        let kind = cache_kind(state).await?;
        state.cache.get(&state.dir, &kind, &cache_key(bearer)).await
    };
    match found.await {
        Ok(Some(record)) if record.get("exp").and_then(Value::as_i64).unwrap_or(0) > now() => {
            match record.get("claims") {
                Some(c @ Value::Object(_)) => json_reply(StatusCode::OK, c),
                _ => invalid(),
            }
        }
        Ok(_) => invalid(),
        Err(e) => server_error(state, &e),
    }
}
