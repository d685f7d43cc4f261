//! Directory operation counters for the metrics (`ldap_operations_total{op=...}`), read over
//! LDAPS as the directory manager that the controller's health configuration names (the same
//! target and password as the `ldap` health check; nothing else holds that secret):
//!
//! - OpenLDAP: the `cn=Operations,cn=Monitor` children (`cn=Bind`, `cn=Search`...), each
//!   `monitorOpCompleted`;
//! - OpenDJ: the LDAPS connection handler's statistics entry
//!   (`cn=LDAPS Connection Handler <addr> port <port> Statistics,cn=monitor`), its
//!   `bindRequests`, `searchRequests`... attributes.
//!
//! The node's certificates that verify the connection are read by their host path under the Gluu
//! container root; when the node's Gluu Server machine is stopped nothing is asked and the
//! reading says so.

use crate::ops::{Ctx, probe};
use clustermgr_proto::LdapsBind;
use ldap3::{Scope, SearchEntry};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Longest a reading may take (the sampler waits for it).
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Why there is no reading while the node's Gluu machine is stopped.
pub const STOPPED: &str = "the Gluu Server machine is stopped: no directory to read";

/// OpenLDAP's operation entries: `cn` value to `op` label.
const OPENLDAP_OPS: &[(&str, &str)] = &[
    ("bind", "bind"),
    ("unbind", "unbind"),
    ("search", "search"),
    ("compare", "compare"),
    ("modify", "modify"),
    ("modrdn", "modrdn"),
    ("add", "add"),
    ("delete", "delete"),
    ("abandon", "abandon"),
    ("extended", "extended"),
];

/// OpenDJ's connection handler statistics attributes and their `op` label.
const OPENDJ_ATTRS: &[(&str, &str)] = &[
    ("bindRequests", "bind"),
    ("unbindRequests", "unbind"),
    ("searchRequests", "search"),
    ("compareRequests", "compare"),
    ("modifyRequests", "modify"),
    ("modifyDNRequests", "modrdn"),
    ("addRequests", "add"),
    ("deleteRequests", "delete"),
    ("abandonRequests", "abandon"),
    ("extendedRequests", "extended"),
];

/// Counters from OpenLDAP's `cn=Operations,cn=Monitor` children (cn, attributes).
pub fn from_openldap<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a HashMap<String, Vec<String>>)>,
) -> BTreeMap<&'static str, u64> {
    let mut out = BTreeMap::new();
    for (cn, attrs) in entries {
        let Some((_, op)) = OPENLDAP_OPS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(cn))
        else {
            continue;
        };
        if let Some(n) = first_number(attrs, "monitorOpCompleted") {
            out.insert(*op, n);
        }
    }
    out
}

/// Counters from OpenDJ statistics entries (summed when several LDAPS handlers match).
pub fn from_opendj<'a>(
    entries: impl IntoIterator<Item = &'a HashMap<String, Vec<String>>>,
) -> BTreeMap<&'static str, u64> {
    let mut out = BTreeMap::new();
    for attrs in entries {
        for (attr, op) in OPENDJ_ATTRS {
            if let Some(n) = first_number(attrs, attr) {
                *out.entry(*op).or_insert(0) += n;
            }
        }
    }
    out
}

fn first_number(attrs: &HashMap<String, Vec<String>>, name: &str) -> Option<u64> {
    attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first())
        .and_then(|v| v.trim().parse().ok())
}

/// The directory's operation counters, OpenLDAP's monitor first, else OpenDJ's. A stopped Gluu
/// machine is reported as such (nothing is asked).
pub async fn read(ctx: &Ctx, target: &LdapsBind) -> Result<BTreeMap<&'static str, u64>, String> {
    if crate::health::gluu_stopped(&ctx.host) {
        return Err(STOPPED.to_string());
    }
    let mut ldap = probe::ldaps_session(ctx, target).await?;
    let r = read_bound(&mut ldap).await;
    let _ = ldap.unbind().await;
    r
}

async fn read_bound(ldap: &mut ldap3::Ldap) -> Result<BTreeMap<&'static str, u64>, String> {
    // OpenLDAP; a refusal (e.g. no such object on OpenDJ) means: try OpenDJ's entries.
    let openldap = ldap
        .search(
            "cn=Operations,cn=Monitor",
            Scope::OneLevel,
            "(objectClass=*)",
            vec!["cn", "monitorOpCompleted"],
        )
        .await
        .map_err(|e| e.to_string())?
        .success()
        .map(|(rs, _)| rs)
        .unwrap_or_default();
    let entries: Vec<SearchEntry> = openldap.into_iter().map(SearchEntry::construct).collect();
    let ops = from_openldap(entries.iter().filter_map(|e| {
        let cn = e.attrs.get("cn").and_then(|v| v.first())?;
        Some((cn.as_str(), &e.attrs))
    }));
    if !ops.is_empty() {
        return Ok(ops);
    }
    let (rs, _) = ldap
        .search(
            "cn=monitor",
            Scope::Subtree,
            "(cn=LDAPS Connection Handler*Statistics)",
            OPENDJ_ATTRS.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        )
        .await
        .map_err(|e| e.to_string())?
        .success()
        .map_err(|e| match e {
            // The result code only, never the server's text.
            ldap3::LdapError::LdapResult { result } => {
                format!("monitor search refused (LDAP result code {})", result.rc)
            }
            other => other.to_string(),
        })?;
    let entries: Vec<SearchEntry> = rs.into_iter().map(SearchEntry::construct).collect();
    let ops = from_opendj(entries.iter().map(|e| &e.attrs));
    if ops.is_empty() {
        Err("no operation counters readable in cn=monitor".to_string())
    } else {
        Ok(ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(kv: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
            .collect()
    }

    #[test]
    fn openldap_operation_entries_become_counters() {
        let bind = attrs(&[("monitorOpCompleted", "12"), ("monitorOpInitiated", "13")]);
        let search = attrs(&[("monitorOpCompleted", "40")]);
        let modrdn = attrs(&[("monitorOpCompleted", "0")]);
        let unknown = attrs(&[("monitorOpCompleted", "7")]);
        let garbage = attrs(&[("monitorOpCompleted", "x")]);
        let ops = from_openldap([
            ("Bind", &bind),
            ("Search", &search),
            ("Modrdn", &modrdn),
            ("Operations", &unknown),
            ("Add", &garbage),
        ]);
        let want: BTreeMap<&str, u64> = [("bind", 12), ("search", 40), ("modrdn", 0)].into();
        assert_eq!(ops, want);
    }

    #[test]
    fn opendj_handler_statistics_become_counters_summed_over_handlers() {
        let a = attrs(&[
            ("bindRequests", "5"),
            ("searchRequests", "100"),
            ("modifyDNRequests", "1"),
            ("addRequests", "2"),
            ("bytesRead", "9999"),
        ]);
        let b = attrs(&[("bindRequests", "3"), ("deleterequests", "4")]);
        let ops = from_opendj([&a, &b]);
        let want: BTreeMap<&str, u64> = [
            ("bind", 8),
            ("search", 100),
            ("modrdn", 1),
            ("add", 2),
            ("delete", 4),
        ]
        .into();
        assert_eq!(ops, want);
    }

    #[tokio::test]
    async fn a_stopped_machine_is_not_asked() {
        use crate::host::{Host, PackageFormat, PackageMode, Runner};
        use crate::ops::gluu::Flavor;
        use crate::ops::gluu::layout::fixture::install;
        let d = tempfile::tempdir().unwrap();
        install(d.path(), Flavor::Machine);
        let ctx = crate::ops::tests::ctx_with(Host {
            root: d.path().to_path_buf(),
            packages: PackageMode::System,
            format: Some(PackageFormat::Deb),
            runner: Runner::Real,
            proc: d.path().join("proc"),
        });
        let target = LdapsBind {
            host: "127.0.0.1".into(),
            port: 9,
            bind_dn: "cn=directory manager".into(),
            password: b"secret".to_vec(),
            ca_pem: String::new(),
        };
        assert_eq!(read(&ctx, &target).await.unwrap_err(), STOPPED);
    }
}
