//! oxAuth's public keys in the node's directory (`SetWebKeys`) and what its JWKS serves
//! (`ProbeJwks`).
//!
//! oxAuth reloads oxAuthConfWebKeys only when oxRevision changes: the new keys,
//! `keyRegenerationEnabled=false` and the revision are one modify, retried on fresh data when
//! the revision moved meanwhile (see `ldap.rs`).

use super::check_kid;
use crate::ops::ldap;
use crate::ops::probe::{self, HttpsTo, Pace};
use crate::ops::{Ctx, Log, OpError};
use clustermgr_proto::{ProbeJwks, ProbeJwksOutput, SetWebKeys, SetWebKeysOutput};
use std::collections::BTreeMap;
use std::time::Duration;

const MAX_WITHIN: Duration = Duration::from_secs(1800);
const ATTEMPT_EVERY: Duration = Duration::from_millis(500);

/// oxAuthConfWebKeys after the change: `add` appended when new, only `keep` kept (when not
/// empty), `first` moved first in that order. Errors name positions, never key material.
pub fn apply_web_keys(
    current: &str,
    add: &[String],
    keep: &[String],
    first: &[String],
) -> Result<String, OpError> {
    let mut doc: serde_json::Value = if current.trim().is_empty() {
        serde_json::json!({"keys": []})
    } else {
        serde_json::from_str(current)
            .map_err(|e| OpError(format!("oxAuthConfWebKeys is not JSON: {e}")))?
    };
    let keys = doc
        .get_mut("keys")
        .and_then(|k| k.as_array_mut())
        .ok_or_else(|| OpError("oxAuthConfWebKeys has no \"keys\" array".into()))?;
    let kid_of = |v: &serde_json::Value| v.get("kid").and_then(|k| k.as_str()).map(str::to_string);
    for a in add {
        let v: serde_json::Value =
            serde_json::from_str(a).map_err(|e| OpError(format!("a new key is not JSON: {e}")))?;
        let kid = kid_of(&v).ok_or_else(|| OpError("a new key has no kid".into()))?;
        check_kid(&kid)?;
        if v.get("d").is_some() || v.get("p").is_some() {
            return Err(OpError(format!("the key {kid} carries private parameters")));
        }
        if !keys.iter().any(|k| kid_of(k).as_deref() == Some(&kid)) {
            keys.push(v);
        }
    }
    if !keep.is_empty() {
        keys.retain(|k| kid_of(k).is_some_and(|kid| keep.contains(&kid)));
    }
    if !first.is_empty() {
        let rank = |k: &serde_json::Value| {
            kid_of(k)
                .and_then(|kid| first.iter().position(|f| *f == kid))
                .unwrap_or(first.len())
        };
        // Stable: the others keep their order.
        keys.sort_by_key(rank);
    }
    serde_json::to_string(&doc).map_err(|e| OpError(e.to_string()))
}

pub fn kids_of(web_keys: &str) -> Vec<String> {
    serde_json::from_str::<serde_json::Value>(web_keys)
        .ok()
        .and_then(|d| d.get("keys").and_then(|k| k.as_array()).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|k| k.get("kid").and_then(|k| k.as_str()).map(str::to_string))
        .collect()
}

/// oxAuthConfDynamic as `SetWebKeys` leaves it: `keyRegenerationEnabled=false` (else oxAuth
/// would replace the keys itself), every other value as the node has it. In particular
/// `webKeysStorage` (Gluu's keystore mode) and `keyStoreSecret` (the JKS password the keystore
/// steps read) are never written.
pub fn web_keys_dynamic(current: &str) -> Result<String, OpError> {
    let off = BTreeMap::from([(
        "keyRegenerationEnabled".to_string(),
        serde_json::Value::Bool(false),
    )]);
    Ok(ldap::apply_values(current, &off)?.1)
}

pub async fn set_web_keys(
    ctx: &Ctx,
    req: SetWebKeys,
    log: &mut Log,
) -> Result<SetWebKeysOutput, OpError> {
    for k in req.keep_kids.iter().chain(req.first_kids.iter()) {
        check_kid(k)?;
    }
    let done = ldap::change_oxauth(
        ctx,
        (&req.host, req.port, &req.password),
        log,
        |cur, log| {
            let next = apply_web_keys(
                &cur.web_keys,
                &req.add_jwks,
                &req.keep_kids,
                &req.first_kids,
            )?;
            let dynamic = web_keys_dynamic(&cur.dynamic)?;
            let kids = kids_of(&next);
            let same_keys = serde_json::from_str::<serde_json::Value>(&cur.web_keys).ok()
                == serde_json::from_str::<serde_json::Value>(&next).ok();
            let mods = if same_keys && dynamic == cur.dynamic {
                log.line(format!(
                    "oxAuthConfWebKeys already is {} (revision {}); nothing to do",
                    kids.join(", "),
                    cur.revision.unwrap_or(0)
                ));
                Vec::new()
            } else {
                let mut mods = ldap::revision_mods("oxAuthConfWebKeys", next, cur.revision);
                mods.push(ldap3::Mod::Replace(
                    "oxAuthConfDynamic".into(),
                    std::collections::HashSet::from([dynamic]),
                ));
                log.line(format!(
                    "oxAuthConfWebKeys: {} -> {}; keyRegenerationEnabled=false",
                    kids_of(&cur.web_keys).join(", "),
                    kids.join(", ")
                ));
                mods
            };
            Ok(ldap::OxauthPlan {
                mods,
                detail: (cur.web_keys, kids),
            })
        },
    )
    .await?;
    let (previous, kids) = done.detail;
    Ok(SetWebKeysOutput {
        changed: done.changed,
        revision: done.revision,
        previous,
        kids,
    })
}

/// Whether what is served satisfies the probe.
pub fn jwks_ok(served: &[String], expect: &[String], only_expected: bool) -> bool {
    expect.iter().all(|k| served.contains(k))
        && (!only_expected || served.iter().all(|k| expect.contains(k)))
}

pub async fn probe_jwks(
    ctx: &Ctx,
    req: ProbeJwks,
    log: &mut Log,
) -> Result<ProbeJwksOutput, OpError> {
    if req.expect_kids.is_empty() {
        return Err(OpError("no kid to expect".into()));
    }
    let within = Duration::from_millis(u64::from(req.within_ms)).min(MAX_WITHIN);
    let tls = probe::tls_config(ctx, "", &["/etc/certs/httpd.crt"])?;
    let to = HttpsTo::url(&req.url).map_err(OpError)?;
    log.line(format!(
        "waiting until {} serves {}{}",
        req.url,
        req.expect_kids.join(", "),
        if req.only_expected {
            " (and nothing else)"
        } else {
            ""
        }
    ));
    let mut last = String::new();
    let served = probe::retry(
        within,
        Pace {
            first: ATTEMPT_EVERY,
            max: ATTEMPT_EVERY,
        },
        || async {
            let served = kids_of(&get_body(&to, tls.clone()).await?);
            if jwks_ok(&served, &req.expect_kids, req.only_expected) {
                Ok(served)
            } else {
                Err(format!("serves {}", served.join(", ")))
            }
        },
        |_, e| {
            if e != last {
                log.line(e);
                last = e.to_string();
            }
        },
    )
    .await;
    match served {
        Ok((served, t)) => {
            log.line(format!(
                "{} serves {} (attempt {})",
                req.url,
                served.join(", "),
                t.attempts
            ));
            Ok(ProbeJwksOutput {
                served_kids: served,
                attempts: t.attempts,
            })
        }
        Err((e, _)) => Err(OpError(format!(
            "{} did not serve the expected keys within {} s ({e})",
            req.url,
            within.as_secs()
        ))),
    }
}

/// The body of a 200 answer to a GET `to` (at most 1 MiB).
async fn get_body(
    to: &HttpsTo,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> Result<String, String> {
    use http_body_util::{BodyExt, Limited};
    probe::bounded(async {
        let resp = probe::https_get(tls, to).await?;
        if resp.status() != http::StatusCode::OK {
            return Err(format!("HTTP status {}", resp.status()));
        }
        let body = Limited::new(resp.into_body(), 1 << 20)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| "the answer is not UTF-8".to_string())
    })
    .await
}
