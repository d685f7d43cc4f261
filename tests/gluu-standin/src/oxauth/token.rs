//! oxAuth's token endpoint (`client_credentials`; `authorization_code` is in [`super::oidc`]),
//! introspection, and what the endpoints share: client credentials, the issuer, the cache.

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper::StatusCode;
use hyper::header::HeaderValue;
use serde_json::{Value, json};

use super::cache::CacheKind;
use super::dir::first;
use super::{
    CONFIGURATION_DN, OxConfig, Reply, State, json_reply, not_configured, now, oauth_error, param,
};
use crate::setup::host_port_ip;

/// Client credentials from HTTP Basic or the form: (id, secret), both non-empty.
pub(super) fn client_credentials(
    headers: &hyper::HeaderMap,
    form: &[(String, String)],
) -> Option<(String, String)> {
    if let Some(auth) = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let encoded = auth
            .strip_prefix("Basic ")
            .or_else(|| auth.strip_prefix("basic "))?;
        let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        let unescape = |s: &str| {
            form_urlencoded::parse(format!("a={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
        };
        let (id, secret) = (unescape(id)?, unescape(secret)?);
        return (!id.is_empty() && !secret.is_empty()).then_some((id, secret));
    }
    let id = param(form, "client_id")?;
    let secret = param(form, "client_secret")?;
    (!id.is_empty() && !secret.is_empty()).then(|| (id.to_string(), secret.to_string()))
}

/// The client of a `client_credentials` request: any non-empty id and secret are accepted.
fn client_id(headers: &hyper::HeaderMap, form: &[(String, String)]) -> Option<String> {
    client_credentials(headers, form).map(|(id, _)| id)
}

pub(super) fn issuer(state: &State, cfg: &OxConfig) -> String {
    cfg.dynamic
        .get("issuer")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| state.base_url())
}

pub(super) fn access_token_lifetime(cfg: &OxConfig) -> i64 {
    cfg.dynamic
        .get("accessTokenLifetime")
        .and_then(Value::as_i64)
        .filter(|l| *l > 0)
        .unwrap_or(300)
}

pub(super) fn cache_key(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    format!("oxauth_token_{}", hex::encode(digest.as_ref()))
}

pub(super) async fn cache_kind(state: &State) -> Result<CacheKind> {
    let attrs = state
        .dir
        .read(CONFIGURATION_DN, &["oxCacheConfiguration"])
        .await?
        .with_context(|| format!("{CONFIGURATION_DN} does not exist"))?;
    match first(&attrs, "oxCacheConfiguration") {
        Some(json) => CacheKind::parse(json),
        None => Ok(CacheKind::NativePersistence),
    }
}

pub(super) async fn token(
    state: &State,
    headers: &hyper::HeaderMap,
    form: &[(String, String)],
) -> Reply {
    let Some(cfg) = state.current() else {
        return not_configured();
    };
    match param(form, "grant_type") {
        Some("client_credentials") => {}
        Some("authorization_code") => {
            return super::oidc::code_grant(state, &cfg, headers, form).await;
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be client_credentials or authorization_code",
            );
        }
    }
    let Some(client) = client_id(headers, form) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication (HTTP Basic or client_id/client_secret) is required",
        );
    };
    let Some(key) = cfg.signing.as_ref() else {
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "no RS256 signing key with a private key on this node",
        );
    };
    let lifetime = access_token_lifetime(&cfg);
    let iat = now();
    let exp = iat + lifetime;
    let issuer = issuer(state, &cfg);
    let scope = param(form, "scope").unwrap_or("").to_string();
    let claims = json!({
        "iss": issuer,
        "sub": client,
        "aud": client,
        "client_id": client,
        "iat": iat,
        "exp": exp,
        "jti": uuid::Uuid::new_v4().to_string(),
        "scope": scope,
        "token_type": "Bearer",
    });
    let jwt = match super::jwt::sign(key, &claims) {
        Ok(t) => t,
        Err(e) => {
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                &format!("{e:#}"),
            );
        }
    };
    let record = json!({
        "client_id": client,
        "scope": scope,
        "iat": iat,
        "exp": exp,
        "iss": issuer,
        "sub": client,
        "token_type": "Bearer",
        "issued_by": host_port_ip(state.node.ip),
    });
    let stored = async {
        let kind = cache_kind(state).await?;
        state
            .cache
            .put(&state.dir, &kind, &cache_key(&jwt), &record, iat, exp)
            .await
            .with_context(|| format!("storing the token in the {} cache", kind.name()))
    };
    if let Err(e) = stored.await {
        state.log("ERROR", &format!("token endpoint: {e:#}"));
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            &format!("{e:#}"),
        );
    }
    let mut resp = json_reply(
        StatusCode::OK,
        &json!({
            "access_token": jwt,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": scope,
        }),
    );
    resp.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    resp
}

pub(super) async fn introspect(state: &State, form: &[(String, String)]) -> Reply {
    let Some(token) = param(form, "token").filter(|t| !t.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "token is required",
        );
    };
    let found = async {
        let kind = cache_kind(state).await?;
        state
            .cache
            .get(&state.dir, &kind, &cache_key(token))
            .await
            .with_context(|| format!("reading the {} cache", kind.name()))
    };
    match found.await {
        Ok(Some(mut record)) => {
            let exp = record.get("exp").and_then(Value::as_i64).unwrap_or(0);
            if exp <= now() {
                return json_reply(StatusCode::OK, &json!({"active": false}));
            }
            if let Some(obj) = record.as_object_mut() {
                obj.insert("active".into(), Value::Bool(true));
            }
            json_reply(StatusCode::OK, &record)
        }
        Ok(None) => json_reply(StatusCode::OK, &json!({"active": false})),
        Err(e) => {
            state.log("ERROR", &format!("introspection: {e:#}"));
            oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                &format!("{e:#}"),
            )
        }
    }
}
