//! Token storage in the cache that `oxCacheConfiguration` names.
//!
//! - `NATIVE_PERSISTENCE`: an entry `uuid=<key>,ou=cache,o=gluu` (object class `cache`) in the
//!   directory the node uses, so replicated directories share tokens;
//! - `REDIS`: `SET <key> <json> EX <ttl>` on the first server of `redisConfiguration.servers`,
//!   after `AUTH` with `redisConfiguration.decryptedPassword` when it is set;
//! - `IN_MEMORY`: this process only (never shared).

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use super::dir::{Directory, first};
use super::redis::{Client, Reply};

pub const CACHE_BASE: &str = "ou=cache,o=gluu";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheKind {
    NativePersistence,
    Redis {
        addr: String,
        password: Option<String>,
    },
    InMemory,
}

impl CacheKind {
    pub fn name(&self) -> &'static str {
        match self {
            CacheKind::NativePersistence => "NATIVE_PERSISTENCE",
            CacheKind::Redis { .. } => "REDIS",
            CacheKind::InMemory => "IN_MEMORY",
        }
    }

    /// Parse the JSON of `oxCacheConfiguration`.
    pub fn parse(json: &str) -> Result<CacheKind> {
        let v: Value = serde_json::from_str(json).context("oxCacheConfiguration is not JSON")?;
        let kind = v
            .get("cacheProviderType")
            .and_then(Value::as_str)
            .unwrap_or("NATIVE_PERSISTENCE");
        match kind {
            "NATIVE_PERSISTENCE" => Ok(CacheKind::NativePersistence),
            "IN_MEMORY" => Ok(CacheKind::InMemory),
            "REDIS" => {
                let redis = v
                    .get("redisConfiguration")
                    .context("REDIS cache without redisConfiguration")?;
                if redis.get("useSSL").and_then(Value::as_bool) == Some(true) {
                    bail!("redisConfiguration.useSSL=true is not supported by the stand-in");
                }
                let servers = redis
                    .get("servers")
                    .and_then(Value::as_str)
                    .context("redisConfiguration.servers is missing")?;
                let addr = servers
                    .split(',')
                    .map(str::trim)
                    .find(|s| !s.is_empty())
                    .context("redisConfiguration.servers is empty")?
                    .to_string();
                let password = redis
                    .get("decryptedPassword")
                    .and_then(Value::as_str)
                    .filter(|p| !p.is_empty())
                    .map(str::to_string);
                Ok(CacheKind::Redis { addr, password })
            }
            other => bail!("cacheProviderType {other} is not supported by the stand-in"),
        }
    }
}

#[derive(Default)]
pub struct Cache {
    memory: Mutex<HashMap<String, Value>>,
}

fn generalized_time(epoch: i64) -> Result<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(epoch).context("timestamp")?;
    Ok(format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    ))
}

impl Cache {
    /// Store `record` under `key` until `exp` (Unix seconds).
    pub async fn put(
        &self,
        dir: &Directory,
        kind: &CacheKind,
        key: &str,
        record: &Value,
        iat: i64,
        exp: i64,
    ) -> Result<()> {
        let data = serde_json::to_string(record)?;
        match kind {
            CacheKind::InMemory => {
                self.memory
                    .lock()
                    .map_err(|_| anyhow!("cache lock poisoned"))?
                    .insert(key.to_string(), record.clone());
                Ok(())
            }
            CacheKind::Redis { addr, password } => {
                let ttl = (exp - iat).max(1).to_string();
                let mut client = Client::connect(addr, password.as_deref()).await?;
                match client
                    .command(&[
                        b"SET",
                        key.as_bytes(),
                        data.as_bytes(),
                        b"EX",
                        ttl.as_bytes(),
                    ])
                    .await?
                {
                    Reply::Simple(s) if s == "OK" => Ok(()),
                    other => bail!("redis SET answered {other:?}"),
                }
            }
            CacheKind::NativePersistence => {
                let dn = format!("uuid={key},{CACHE_BASE}");
                dir.add(
                    &dn,
                    vec![
                        ("objectClass", vec!["top".into(), "cache".into()]),
                        ("uuid", vec![key.to_string()]),
                        ("iat", vec![generalized_time(iat)?]),
                        ("exp", vec![generalized_time(exp)?]),
                        ("dat", vec![data]),
                        ("del", vec!["FALSE".into()]),
                    ],
                )
                .await
            }
        }
    }

    /// The record stored under `key`, if any.
    pub async fn get(&self, dir: &Directory, kind: &CacheKind, key: &str) -> Result<Option<Value>> {
        self.fetch(dir, kind, key, false).await
    }

    /// The record stored under `key`, removed: of two requests taking the same key, one gets it (an
    /// authorization code is used once).
    pub async fn take(
        &self,
        dir: &Directory,
        kind: &CacheKind,
        key: &str,
    ) -> Result<Option<Value>> {
        self.fetch(dir, kind, key, true).await
    }

    async fn fetch(
        &self,
        dir: &Directory,
        kind: &CacheKind,
        key: &str,
        remove: bool,
    ) -> Result<Option<Value>> {
        let raw = match kind {
            CacheKind::InMemory => {
                let mut memory = self
                    .memory
                    .lock()
                    .map_err(|_| anyhow!("cache lock poisoned"))?;
                return Ok(if remove {
                    memory.remove(key)
                } else {
                    memory.get(key).cloned()
                });
            }
            CacheKind::Redis { addr, password } => {
                let mut client = Client::connect(addr, password.as_deref()).await?;
                let data = match client.command(&[b"GET", key.as_bytes()]).await? {
                    Reply::Bulk(Some(data)) => {
                        Some(String::from_utf8(data).context("redis value")?)
                    }
                    Reply::Bulk(None) => None,
                    other => bail!("redis GET answered {other:?}"),
                };
                // GET then DEL, not GETDEL: twemproxy (the cache's sharding proxy) does not
                // know GETDEL. Whoever deletes the key owns the value.
                match data {
                    Some(d) if remove => match client.command(&[b"DEL", key.as_bytes()]).await? {
                        Reply::Int(1) => Some(d),
                        Reply::Int(_) => None,
                        other => bail!("redis DEL answered {other:?}"),
                    },
                    other => other,
                }
            }
            CacheKind::NativePersistence => {
                let dn = format!("uuid={key},{CACHE_BASE}");
                let data = dir
                    .read(&dn, &["dat"])
                    .await?
                    .and_then(|attrs| first(&attrs, "dat").map(str::to_string));
                match data {
                    // Whoever deletes the entry owns it.
                    Some(d) if remove => dir.delete(&dn).await?.then_some(d),
                    other => other,
                }
            }
        };
        raw.map(|s| serde_json::from_str(&s).context("cached record is not JSON"))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cache_configuration() {
        assert_eq!(
            CacheKind::parse(r#"{"cacheProviderType":"NATIVE_PERSISTENCE"}"#).ok(),
            Some(CacheKind::NativePersistence)
        );
        let redis = CacheKind::parse(
            r#"{"cacheProviderType":"REDIS","redisConfiguration":{"servers":"127.0.0.1:6390,x:1","decryptedPassword":"pw"}}"#,
        );
        assert_eq!(
            redis.ok(),
            Some(CacheKind::Redis {
                addr: "127.0.0.1:6390".into(),
                password: Some("pw".into())
            })
        );
        assert!(CacheKind::parse(r#"{"cacheProviderType":"MEMCACHED"}"#).is_err());
        assert_eq!(generalized_time(0).ok().as_deref(), Some("19700101000000Z"));
    }
}
