//! The oxAuth service's view of the directory: the servers in `gluu-ldap.properties`, tried in
//! order over LDAPS, bound as the administrator. One connection is kept and replaced on error.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry};
use tokio::sync::Mutex;

use crate::layout::Layout;
use crate::props::Props;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const OP_TIMEOUT: Duration = Duration::from_secs(5);
const NO_SUCH_OBJECT: u32 = 32;

pub type Attrs = HashMap<String, Vec<String>>;

pub struct Directory {
    servers: Vec<String>,
    bind_dn: String,
    password: String,
    conn: Mutex<Option<Ldap>>,
}

/// First value of an attribute, matching the name without regard to case.
pub fn first<'a>(attrs: &'a Attrs, name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first())
        .map(String::as_str)
}

impl Directory {
    pub fn from_properties(layout: &Layout) -> Result<Self> {
        let path = layout.ldap_properties();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let props = Props::parse(&text);
        let servers: Vec<String> = props
            .get("servers")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if servers.is_empty() {
            return Err(anyhow!("{}: no servers line", path.display()));
        }
        let bind_dn = props
            .get("bindDN")
            .with_context(|| format!("{}: no bindDN", path.display()))?
            .to_string();
        let encoded = props
            .get("bindPassword")
            .with_context(|| format!("{}: no bindPassword", path.display()))?;
        let password = String::from_utf8(
            STANDARD
                .decode(encoded.trim())
                .with_context(|| format!("{}: bindPassword is not base64", path.display()))?,
        )
        .with_context(|| format!("{}: bindPassword is not UTF-8", path.display()))?;
        Ok(Directory {
            servers,
            bind_dn,
            password,
            conn: Mutex::new(None),
        })
    }

    async fn connect(&self) -> Result<Ldap> {
        Ok(self
            .bind(&self.bind_dn, &self.password, |rc| rc == 0)
            .await?
            .0)
    }

    /// A new connection bound as `dn`, to the first server whose bind answer `accept`s (by its
    /// result code): the connection and that code.
    async fn bind(
        &self,
        dn: &str,
        password: &str,
        accept: impl Fn(u32) -> bool,
    ) -> Result<(Ldap, u32)> {
        let mut last = anyhow!("no LDAP server configured");
        for server in &self.servers {
            let url = format!("ldaps://{server}");
            let settings = LdapConnSettings::new()
                .set_conn_timeout(CONNECT_TIMEOUT)
                .set_no_tls_verify(true);
            match LdapConnAsync::with_settings(settings, &url).await {
                Ok((conn, mut ldap)) => {
                    ldap3::drive!(conn);
                    match ldap
                        .with_timeout(OP_TIMEOUT)
                        .simple_bind(dn, password)
                        .await
                    {
                        Ok(r) if accept(r.rc) => return Ok((ldap, r.rc)),
                        Ok(r) => last = anyhow!("bind to {url} as {dn} failed: {r}"),
                        Err(e) => last = anyhow!("bind to {url} as {dn} failed: {e}"),
                    }
                }
                Err(e) => last = anyhow!("connecting to {url} failed: {e}"),
            }
        }
        Err(last)
    }

    async fn handle(&self) -> Result<Ldap> {
        let mut guard = self.conn.lock().await;
        if let Some(ldap) = guard.as_ref() {
            return Ok(ldap.clone());
        }
        let ldap = self.connect().await?;
        *guard = Some(ldap.clone());
        Ok(ldap)
    }

    async fn reset(&self) {
        *self.conn.lock().await = None;
    }

    /// Read one entry; `None` when it does not exist.
    pub async fn read(&self, dn: &str, attrs: &[&str]) -> Result<Option<Attrs>> {
        Ok(self
            .find(dn, Scope::Base, "(objectClass=*)", attrs)
            .await?
            .and_then(|entries| entries.into_iter().next().map(|(_, a)| a)))
    }

    /// Entries under `base` (whole subtree) matching `filter`: (DN, attributes).
    pub async fn search(
        &self,
        base: &str,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<(String, Attrs)>> {
        Ok(self
            .find(base, Scope::Subtree, filter, attrs)
            .await?
            .unwrap_or_default())
    }

    /// A search; `None` when `base` does not exist. Tried twice, on a new connection after a
    /// transport error.
    async fn find(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Option<Vec<(String, Attrs)>>> {
        let mut last = anyhow!("not tried");
        for _ in 0..2 {
            let mut ldap = match self.handle().await {
                Ok(l) => l,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            match ldap
                .with_timeout(OP_TIMEOUT)
                .search(base, scope, filter, attrs.to_vec())
                .await
            {
                Ok(res) => {
                    if res.1.rc == NO_SUCH_OBJECT {
                        return Ok(None);
                    }
                    let (entries, _) = res.success().map_err(|e| anyhow!("search {base}: {e}"))?;
                    return Ok(Some(
                        entries
                            .into_iter()
                            .map(|e| {
                                let e = SearchEntry::construct(e);
                                (e.dn, e.attrs)
                            })
                            .collect(),
                    ));
                }
                Err(e) => {
                    self.reset().await;
                    last = transport(e, base);
                }
            }
        }
        Err(last)
    }

    /// Add one entry.
    pub async fn add(&self, dn: &str, attrs: Vec<(&str, Vec<String>)>) -> Result<()> {
        let attrs: Vec<(&str, HashSet<&str>)> = attrs
            .iter()
            .map(|(k, vs)| (*k, vs.iter().map(String::as_str).collect()))
            .collect();
        let mut last = anyhow!("not tried");
        for _ in 0..2 {
            let mut ldap = match self.handle().await {
                Ok(l) => l,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            match ldap.with_timeout(OP_TIMEOUT).add(dn, attrs.clone()).await {
                Ok(res) => {
                    res.success().map_err(|e| anyhow!("add {dn}: {e}"))?;
                    return Ok(());
                }
                Err(e) => {
                    self.reset().await;
                    last = transport(e, dn);
                }
            }
        }
        Err(last)
    }
    /// Delete one entry; false when it did not exist (another request deleted it first).
    pub async fn delete(&self, dn: &str) -> Result<bool> {
        let mut ldap = self.handle().await?;
        match ldap.with_timeout(OP_TIMEOUT).delete(dn).await {
            Ok(res) if res.rc == NO_SUCH_OBJECT => Ok(false),
            Ok(res) => {
                res.success().map_err(|e| anyhow!("delete {dn}: {e}"))?;
                Ok(true)
            }
            Err(e) => {
                self.reset().await;
                Err(transport(e, dn))
            }
        }
    }

    /// Whether `password` is the password of `dn`: a simple bind as that entry on a connection
    /// of its own (an empty password would be an unauthenticated bind: refused here).
    pub async fn check_password(&self, dn: &str, password: &str) -> Result<bool> {
        const INVALID_CREDENTIALS: u32 = 49;
        if password.is_empty() {
            return Ok(false);
        }
        let answered = |rc| rc == 0 || rc == INVALID_CREDENTIALS || rc == NO_SUCH_OBJECT;
        let (mut ldap, rc) = self.bind(dn, password, answered).await?;
        let _ = ldap.unbind().await;
        Ok(rc == 0)
    }
}

fn transport(e: LdapError, dn: &str) -> anyhow::Error {
    anyhow!("LDAP operation on {dn} failed: {e}")
}
