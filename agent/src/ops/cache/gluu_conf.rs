//! Gluu's `oxCacheConfiguration` (ou=configuration,o=gluu) in the node's own directory, and
//! oxRevision moved on so oxAuth reloads it.

use super::password;
use crate::ops::{Ctx, Log, OpError};
use clustermgr_proto::{
    SetCacheConfiguration, SetCacheConfigurationOutput, set_cache_configuration,
};
use ldap3::{Scope, SearchEntry};
use std::collections::HashSet;

const CONFIGURATION_DN: &str = "ou=configuration,o=gluu";

/// The new `oxCacheConfiguration` JSON from the current one (other keys kept).
pub fn cache_configuration(
    current: &str,
    provider: set_cache_configuration::Provider,
    servers: &str,
    password: &str,
    sharded: bool,
) -> Result<String, OpError> {
    let mut conf: serde_json::Value = if current.trim().is_empty() {
        serde_json::json!({})
    } else {
        serde_json::from_str(current)
            .map_err(|e| OpError(format!("oxCacheConfiguration is not JSON: {e}")))?
    };
    let obj = conf
        .as_object_mut()
        .ok_or_else(|| OpError("oxCacheConfiguration is not a JSON object".into()))?;
    match provider {
        set_cache_configuration::Provider::NativePersistence => {
            obj.insert("cacheProviderType".into(), "NATIVE_PERSISTENCE".into());
        }
        set_cache_configuration::Provider::Redis => {
            obj.insert("cacheProviderType".into(), "REDIS".into());
            let redis = obj
                .entry("redisConfiguration")
                .or_insert_with(|| serde_json::json!({}));
            let r = redis
                .as_object_mut()
                .ok_or_else(|| OpError("redisConfiguration is not a JSON object".into()))?;
            if !servers.is_empty() {
                r.insert("servers".into(), servers.into());
                r.insert(
                    "redisProviderType".into(),
                    if sharded { "SHARDED" } else { "STANDALONE" }.into(),
                );
            }
            r.insert("useSSL".into(), false.into());
            r.insert(
                "decryptedPassword".into(),
                if password.is_empty() {
                    serde_json::Value::Null
                } else {
                    password.into()
                },
            );
            r.insert("password".into(), serde_json::Value::Null);
        }
        set_cache_configuration::Provider::Unspecified => {
            return Err(OpError("the cache provider is required".into()));
        }
    }
    serde_json::to_string(&conf).map_err(|e| OpError(e.to_string()))
}

fn first_value(entry: &SearchEntry, attr: &str) -> Option<String> {
    entry.attrs.get(attr).and_then(|v| v.first()).cloned()
}

async fn read_entry(
    ldap: &mut ldap3::Ldap,
    dn: &str,
    attr: &str,
) -> Result<Option<String>, OpError> {
    let (entries, _) = ldap
        .search(dn, Scope::Base, "(objectClass=*)", vec![attr])
        .await
        .map_err(|e| OpError(format!("{dn}: {e}")))?
        .success()
        .map_err(|e| OpError(format!("{dn}: {e}")))?;
    let entry = entries
        .into_iter()
        .next()
        .map(SearchEntry::construct)
        .ok_or_else(|| OpError(format!("{dn} does not exist")))?;
    Ok(first_value(&entry, attr))
}

pub async fn set_cache_configuration(
    ctx: &Ctx,
    req: SetCacheConfiguration,
    log: &mut Log,
) -> Result<SetCacheConfigurationOutput, OpError> {
    let pw = password(&req.redis_password, log)?;
    let provider = req.provider();
    let mut ldap =
        crate::ops::ldap::connect(ctx, &req.host, req.port, &req.admin_password, log).await?;
    let result = async {
        let current = read_entry(&mut ldap, CONFIGURATION_DN, "oxCacheConfiguration")
            .await?
            .unwrap_or_default();
        let next = cache_configuration(&current, provider, &req.servers, &pw, req.sharded)?;
        let kind = match provider {
            set_cache_configuration::Provider::Redis => "REDIS",
            _ => "NATIVE_PERSISTENCE",
        };
        let old_rev = read_entry(&mut ldap, crate::ops::ldap::OXAUTH_DN, "oxRevision")
            .await?
            .and_then(|r| r.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let same = serde_json::from_str::<serde_json::Value>(&current).ok()
            == serde_json::from_str::<serde_json::Value>(&next).ok();
        if same {
            log.line(format!(
                "oxCacheConfiguration already {kind} as asked (revision {old_rev}); nothing to do"
            ));
            return Ok(SetCacheConfigurationOutput {
                changed: false,
                revision: old_rev,
            });
        }
        crate::ops::ldap::replace(
            &mut ldap,
            CONFIGURATION_DN,
            "oxCacheConfiguration",
            HashSet::from([next]),
        )
        .await?;
        log.line(format!(
            "oxCacheConfiguration: cacheProviderType {kind}{}",
            if provider == set_cache_configuration::Provider::Redis {
                format!(
                    ", servers {}, {}",
                    if req.servers.is_empty() {
                        "kept"
                    } else {
                        req.servers.as_str()
                    },
                    if pw.is_empty() {
                        "no password"
                    } else {
                        "password set"
                    }
                )
            } else {
                String::new()
            }
        ));
        let next_rev = old_rev + 1;
        crate::ops::ldap::replace(
            &mut ldap,
            crate::ops::ldap::OXAUTH_DN,
            "oxRevision",
            HashSet::from([next_rev.to_string()]),
        )
        .await
        .map_err(|e| {
            OpError(format!(
                "oxRevision not moved on (the cache configuration is written, but oxAuth will \
                 not reload it until the revision moves): {}",
                e.0
            ))
        })?;
        log.line(format!("oxRevision {old_rev} -> {next_rev}"));
        Ok(SetCacheConfigurationOutput {
            changed: true,
            revision: next_rev,
        })
    }
    .await;
    let _ = ldap.unbind().await;
    result
}
