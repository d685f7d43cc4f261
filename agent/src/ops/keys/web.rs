//! oxAuth's public keys in the node's directory (`SetWebKeys`) and what its JWKS serves
//! (`ProbeJwks`).
//!
//! oxAuth reloads oxAuthConfWebKeys only when oxRevision changes: the new keys,
//! `keyRegenerationEnabled=false` and the revision are one modify, retried on fresh data when
//! the revision moved meanwhile (see `ldap.rs`).

use super::check_kid;
use crate::ops::ldap::{self, ATTEMPTS, OXAUTH_DN};
use crate::ops::{Ctx, Log, OpError};
use clustermgr_proto::{ProbeJwks, ProbeJwksOutput, SetWebKeys, SetWebKeysOutput};
use ldap3::{Ldap, Scope, SearchEntry};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

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

struct OxauthEntry {
    web_keys: String,
    dynamic: String,
    revision: Option<u64>,
}

async fn read_entry(l: &mut Ldap) -> Result<OxauthEntry, OpError> {
    let err = |e: ldap3::LdapError| OpError(format!("{OXAUTH_DN}: {e}"));
    let (entries, _) = l
        .search(
            OXAUTH_DN,
            Scope::Base,
            "(objectClass=*)",
            vec!["oxAuthConfWebKeys", "oxAuthConfDynamic", "oxRevision"],
        )
        .await
        .map_err(err)?
        .success()
        .map_err(err)?;
    let e = entries
        .into_iter()
        .next()
        .map(SearchEntry::construct)
        .ok_or_else(|| OpError(format!("{OXAUTH_DN} does not exist")))?;
    let first = |a: &str| e.attrs.get(a).and_then(|v| v.first()).cloned();
    let revision = match first("oxRevision") {
        None => None,
        Some(r) => Some(
            r.trim()
                .parse::<u64>()
                .map_err(|_| OpError(format!("oxRevision {r:?} is not a number")))?,
        ),
    };
    Ok(OxauthEntry {
        web_keys: first("oxAuthConfWebKeys").unwrap_or_default(),
        dynamic: first("oxAuthConfDynamic")
            .ok_or_else(|| OpError(format!("{OXAUTH_DN} has no oxAuthConfDynamic")))?,
        revision,
    })
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
    let mut l = ldap::connect(ctx, &req.host, req.port, &req.password, log).await?;
    let result = async {
        for _ in 0..ATTEMPTS {
            let cur = read_entry(&mut l).await?;
            let next = apply_web_keys(
                &cur.web_keys,
                &req.add_jwks,
                &req.keep_kids,
                &req.first_kids,
            )?;
            let dynamic = web_keys_dynamic(&cur.dynamic)?;
            let kids = kids_of(&next);
            let rev = cur.revision.unwrap_or(0);
            let same_keys = serde_json::from_str::<serde_json::Value>(&cur.web_keys).ok()
                == serde_json::from_str::<serde_json::Value>(&next).ok();
            if same_keys && dynamic == cur.dynamic {
                log.line(format!(
                    "oxAuthConfWebKeys already is {} (revision {rev}); nothing to do",
                    kids.join(", ")
                ));
                return Ok(SetWebKeysOutput {
                    changed: false,
                    revision: rev,
                    previous: cur.web_keys,
                    kids,
                });
            }
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
            if ldap::modify_oxauth(&mut l, mods, log).await? {
                log.line(format!("oxRevision {rev} -> {}", rev + 1));
                return Ok(SetWebKeysOutput {
                    changed: true,
                    revision: rev + 1,
                    previous: cur.web_keys,
                    kids,
                });
            }
        }
        Err(ldap::kept_changing())
    }
    .await;
    let _ = l.unbind().await;
    result
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
    let tls = crate::ops::probe::tls_config(ctx, "", &["/etc/certs/httpd.crt"])?;
    let start = Instant::now();
    let mut attempts = 0u32;
    let mut last = String::new();
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
    loop {
        attempts += 1;
        match https_get_body(&req.url, tls.clone()).await {
            Ok(body) => {
                let served = kids_of(&body);
                if jwks_ok(&served, &req.expect_kids, req.only_expected) {
                    log.line(format!(
                        "{} serves {} (attempt {attempts})",
                        req.url,
                        served.join(", ")
                    ));
                    return Ok(ProbeJwksOutput {
                        served_kids: served,
                        attempts,
                    });
                }
                let s = format!("serves {}", served.join(", "));
                if s != last {
                    log.line(s.clone());
                    last = s;
                }
            }
            Err(e) => {
                if e != last {
                    log.line(e.clone());
                    last = e;
                }
            }
        }
        if start.elapsed() >= within {
            return Err(OpError(format!(
                "{} did not serve the expected keys within {} s ({last})",
                req.url,
                within.as_secs()
            )));
        }
        tokio::time::sleep(ATTEMPT_EVERY).await;
    }
}

/// GET `url` over TLS with `tls`; the body of a 200 answer (at most 1 MiB).
async fn https_get_body(
    url: &str,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> Result<String, String> {
    use http_body_util::{BodyExt, Empty, Limited};
    use hyper::body::Bytes;
    let uri: http::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err("only https:// URLs are probed".into());
    }
    let host = uri.host().ok_or("the URL has no host")?.to_string();
    let bare = host.trim_matches(['[', ']']).to_string();
    let port = uri.port_u16().unwrap_or(443);
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect((bare.as_str(), port))
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let name =
            rustls::pki_types::ServerName::try_from(bare.clone()).map_err(|e| e.to_string())?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let req = http::Request::get(path)
            .header(http::header::HOST, host.as_str())
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        if resp.status() != http::StatusCode::OK {
            return Err(format!("HTTP status {}", resp.status()));
        }
        let body = Limited::new(resp.into_body(), 1 << 20)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| "the answer is not UTF-8".to_string())
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .map_err(|_| "no answer within 5 s".to_string())?
}
