//! oxAuth's dynamic client registration (`/oxauth/restv1/register`) and discovery document.

use hyper::StatusCode;
use hyper::header::HeaderValue;
use serde_json::{Value, json};

use super::oidc::CLIENTS;
use super::{OxConfig, Reply, State, json_reply, now, oauth_error};

/// `POST /oxauth/restv1/register`: dynamic client registration (RFC 7591 / OpenID Connect
/// Dynamic Client Registration), when `dynamicRegistrationEnabled` is not false.
pub(super) async fn register(state: &State, cfg: &OxConfig, body: &[u8]) -> Reply {
    if cfg
        .dynamic
        .get("dynamicRegistrationEnabled")
        .and_then(Value::as_bool)
        == Some(false)
    {
        return oauth_error(
            StatusCode::FORBIDDEN,
            "access_denied",
            "dynamic registration is disabled",
        );
    }
    let bad = |d: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_client_metadata", d);
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return bad("the request is not a JSON object");
    };
    let uris: Vec<String> = req
        .get("redirect_uris")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if uris.is_empty() || uris.iter().any(|u| !u.starts_with("https://")) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_redirect_uri",
            "redirect_uris must list https URIs",
        );
    }
    let name = req
        .get("client_name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let require_pkce = req
        .get("require_pkce")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let id = format!("{}", uuid::Uuid::new_v4());
    let secret = hex::encode(rand::random::<[u8; 24]>());
    let attrs = vec![
        (
            "objectClass",
            vec!["top".to_string(), "oxAuthClient".into()],
        ),
        ("inum", vec![id.clone()]),
        (
            "displayName",
            vec![if name.is_empty() {
                id.clone()
            } else {
                name.clone()
            }],
        ),
        ("oxAuthClientSecret", vec![secret.clone()]),
        ("oxAuthRedirectURI", uris.clone()),
        ("oxAuthGrantType", vec!["authorization_code".into()]),
        ("oxAuthResponseType", vec!["code".into()]),
        (
            "oxAuthTokenEndpointAuthMethod",
            vec!["client_secret_basic".into()],
        ),
        (
            "oxAttributes",
            vec![json!({ "requirePkce": require_pkce }).to_string()],
        ),
    ];
    if let Err(e) = state.dir.add(&format!("inum={id},{CLIENTS}"), attrs).await {
        state.log("ERROR", &format!("register: {e:#}"));
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the client could not be stored",
        );
    }
    state.log("INFO", &format!("client {id} registered ({name})"));
    let mut r = json_reply(
        StatusCode::CREATED,
        &json!({
            "client_id": id,
            "client_secret": secret,
            "client_id_issued_at": now(),
            "client_secret_expires_at": 0,
            "client_name": name,
            "redirect_uris": uris,
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
        }),
    );
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

/// The discovery document (`/.well-known/openid-configuration`): the endpoints from the dynamic
/// configuration, else under this node's base URL.
pub(super) fn discovery(state: &State, cfg: &OxConfig) -> Value {
    let base = state.base_url();
    let get = |key: &str, path: &str| {
        cfg.dynamic
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("{base}{path}"))
    };
    json!({
        "issuer": super::issuer(state, cfg),
        "authorization_endpoint": get("authorizationEndpoint", "/oxauth/restv1/authorize"),
        "token_endpoint": get("tokenEndpoint", "/oxauth/restv1/token"),
        "userinfo_endpoint": get("userInfoEndpoint", "/oxauth/restv1/userinfo"),
        "registration_endpoint": get("registrationEndpoint", "/oxauth/restv1/register"),
        "jwks_uri": get("jwksUri", "/oxauth/restv1/jwks"),
        "introspection_endpoint": get("introspectionEndpoint", "/oxauth/restv1/introspection"),
        "grant_types_supported": ["authorization_code", "client_credentials"],
        "response_types_supported": ["code", "token", "id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["plain", "S256"],
        "scopes_supported": ["openid", "profile", "email", "user_name", "role"],
        "claims_supported": ["sub", "user_name", "name", "given_name", "family_name", "email", "role"],
    })
}
