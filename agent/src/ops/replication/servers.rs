//! The directory lists Gluu's services use (`SetLdapServers`): `servers` in
//! gluu-ldap.properties, Shibboleth's `idp.authn.LDAP.ldapURL` (files by their host path under
//! the container root, mode and owner kept) and `config.servers` of oxIDPAuthentication in the
//! directory.

use super::{
    CONFIGURATION_DN, GLUU_LDAP_PROPERTIES, SHIB_LDAP_PROPERTIES, SHIB_LDAP_URL, check_host, join,
    open_in_base, read_opt, write_file,
};
use crate::ops::gluu::Layout;
use crate::ops::ldap::connect;
use crate::ops::{Ctx, Log, OpError};
use clustermgr_proto::{SetLdapServers, SetLdapServersOutput};
use ldap3::{Ldap, Scope, SearchEntry};
use std::path::Path;

/// `text` with the value of the property `key` (`key: v`, `key=v`, `key = v`) replaced by
/// `value`, everything else byte for byte. None when the key is absent; Some(unchanged) when
/// it already has that value.
pub fn set_property(text: &str, key: &str, value: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len() + value.len());
    let mut found = false;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let ending = &line[body.len()..];
        let lead = body.len() - body.trim_start().len();
        let rest = &body[lead..];
        if !found && let Some(after) = rest.strip_prefix(key) {
            let sep_at = after.len() - after.trim_start().len();
            let after_ws = &after[sep_at..];
            if after_ws.starts_with([':', '=']) {
                let v = &after_ws[1..];
                let vs = v.len() - v.trim_start().len();
                let prefix_len = lead + key.len() + sep_at + 1 + vs;
                out.push_str(&body[..prefix_len]);
                out.push_str(value);
                out.push_str(ending);
                found = true;
                continue;
            }
        }
        out.push_str(line);
    }
    found.then_some(out)
}

/// `config.servers` of each oxIDPAuthentication value set to `servers`; None when unchanged.
pub fn idp_values(values: &[String], servers: &[String]) -> Result<Option<Vec<String>>, OpError> {
    let mut changed = false;
    let mut out = Vec::new();
    for v in values {
        let mut j: serde_json::Value = serde_json::from_str(v)
            .map_err(|e| OpError(format!("oxIDPAuthentication is not JSON: {e}")))?;
        let want = serde_json::json!(servers);
        let config = j
            .get_mut("config")
            .ok_or_else(|| OpError("oxIDPAuthentication has no config".into()))?;
        // The configuration may be an object or a JSON string holding one.
        if let Some(s) = config.as_str() {
            let mut inner: serde_json::Value = serde_json::from_str(s)
                .map_err(|e| OpError(format!("oxIDPAuthentication config is not JSON: {e}")))?;
            if inner.get("servers") != Some(&want) {
                inner["servers"] = want;
                *config = serde_json::Value::String(
                    serde_json::to_string(&inner).map_err(|e| OpError(e.to_string()))?,
                );
                changed = true;
            }
        } else if config.is_object() {
            if config.get("servers") != Some(&want) {
                config["servers"] = want;
                changed = true;
            }
        } else {
            return Err(OpError(
                "oxIDPAuthentication config is not an object".into(),
            ));
        }
        out.push(serde_json::to_string(&j).map_err(|e| OpError(e.to_string()))?);
    }
    Ok(changed.then_some(out))
}

/// Rewrites one properties file under the Gluu root (mode and owner kept); Ok(None) when the
/// file does not exist, Ok(Some(changed)) otherwise.
fn rewrite_properties(
    root: &Path,
    layout: &Layout,
    rel: &str,
    key: &str,
    value: &str,
) -> Result<Option<bool>, OpError> {
    let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let d = match open_in_base(root, layout, dir) {
        Ok(d) => d,
        Err(_) if !layout.host_path(dir).exists() => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some((content, st)) = read_opt(&d, name)? else {
        return Ok(None);
    };
    let text =
        String::from_utf8(content).map_err(|_| OpError(format!("{rel} is not UTF-8 text")))?;
    let new = set_property(&text, key, value)
        .ok_or_else(|| OpError(format!("{rel} has no {key} line")))?;
    if new == text {
        return Ok(Some(false));
    }
    write_file(&d, name, new.as_bytes(), st.st_mode & 0o7777)?;
    Ok(Some(true))
}

pub async fn set_ldap_servers(
    ctx: &Ctx,
    req: SetLdapServers,
    log: &mut Log,
) -> Result<SetLdapServersOutput, OpError> {
    if req.servers.is_empty() {
        return Err(OpError("no LDAP server given".into()));
    }
    for s in &req.servers {
        let (h, p) = s
            .rsplit_once(':')
            .ok_or_else(|| OpError(format!("{s:?} is not host:port")))?;
        check_host("server", h.trim_start_matches('[').trim_end_matches(']'))?;
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| OpError(format!("{s:?} is not host:port")))?;
    }
    let layout = Layout::detect(&ctx.host)?;
    let mut changed = false;
    let list = req.servers.join(",");
    let urls = req
        .servers
        .iter()
        .map(|s| format!("ldaps://{s}"))
        .collect::<Vec<_>>()
        .join(" ");
    let root = ctx.root().clone();
    let l = layout.clone();
    let (gluu, shib) = join(
        tokio::task::spawn_blocking(move || {
            let g = rewrite_properties(&root, &l, GLUU_LDAP_PROPERTIES, "servers", &list)?;
            let s = rewrite_properties(&root, &l, SHIB_LDAP_PROPERTIES, SHIB_LDAP_URL, &urls)?;
            Ok((g, s))
        })
        .await,
    )?;
    match gluu {
        None => return Err(OpError(format!("/{GLUU_LDAP_PROPERTIES} is missing"))),
        Some(c) => {
            changed |= c;
            log.line(format!(
                "/{GLUU_LDAP_PROPERTIES}: {}",
                if c { "servers rewritten" } else { "already so" }
            ));
        }
    }
    match shib {
        None => log.line(format!("/{SHIB_LDAP_PROPERTIES}: absent (no Shibboleth)")),
        Some(c) => {
            changed |= c;
            log.line(format!(
                "/{SHIB_LDAP_PROPERTIES}: {}",
                if c { "ldapURL rewritten" } else { "already so" }
            ));
        }
    }

    // oxIDPAuthentication is in the directory, inside Gluu: its machine must run.
    layout.ensure_running(&ctx.host, log).await?;
    let mut ldap = connect(ctx, &req.host, req.port, &req.admin_password, log).await?;
    let result = set_idp_servers(&mut ldap, &req.servers, log).await;
    let _ = ldap.unbind().await;
    changed |= result?;
    Ok(SetLdapServersOutput { changed })
}

/// oxIDPAuthentication's servers in the directory set to `servers`: whether they changed.
async fn set_idp_servers(
    ldap: &mut Ldap,
    servers: &[String],
    log: &mut Log,
) -> Result<bool, OpError> {
    let r = ldap
        .search(
            CONFIGURATION_DN,
            Scope::Base,
            "(objectClass=*)",
            vec!["oxIDPAuthentication"],
        )
        .await
        .map_err(|e| OpError(format!("{CONFIGURATION_DN}: {e}")))?;
    if r.1.rc != 0 {
        return Err(OpError(format!(
            "reading {CONFIGURATION_DN} failed (LDAP result code {})",
            r.1.rc
        )));
    }
    let entry =
        r.0.into_iter()
            .next()
            .map(SearchEntry::construct)
            .ok_or_else(|| OpError(format!("{CONFIGURATION_DN} does not exist")))?;
    let values = entry
        .attrs
        .get("oxIDPAuthentication")
        .cloned()
        .unwrap_or_default();
    if values.is_empty() {
        log.line(format!("{CONFIGURATION_DN}: no oxIDPAuthentication"));
        return Ok(false);
    }
    let Some(new) = idp_values(&values, servers)? else {
        log.line("oxIDPAuthentication: already so");
        return Ok(false);
    };
    crate::ops::ldap::replace(
        ldap,
        CONFIGURATION_DN,
        "oxIDPAuthentication",
        new.into_iter().collect(),
    )
    .await?;
    log.line("oxIDPAuthentication: servers rewritten");
    Ok(true)
}
