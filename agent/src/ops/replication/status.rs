//! The replication state of the node's directory (`ReplicationStatus`) and the marker probes
//! that show a write on one node reaching the others (`ReplicationProbe`), both over LDAPS as the
//! directory manager. A stopped Gluu machine is reported as such, never started by them.

use super::{
    ALREADY_EXISTS, BASES, Directory, GLOBAL_HOOK, MACHINE_STOPPED, NO_SUCH_OBJECT, OPENLDAP_ETC,
    PROBE_OU, base_hook, detect, join, machine_stopped, open_in_base, partners, read_opt,
    server_id,
};
use crate::ops::gluu::Layout;
use crate::ops::ldap::connect;
use crate::ops::{Ctx, Log, OpError};
use clustermgr_proto::{
    BaseReplication, ReplicationProbe, ReplicationProbeOutput, ReplicationStatus,
    ReplicationStatusOutput, replication_probe,
};
use ldap3::{Ldap, Scope, SearchEntry};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// How often a read probe looks for the markers.
const POLL: Duration = Duration::from_millis(200);

pub async fn status(
    ctx: &Ctx,
    req: ReplicationStatus,
    log: &mut Log,
) -> Result<ReplicationStatusOutput, OpError> {
    let layout = Layout::detect(&ctx.host)?;
    let kind = detect(&layout)?;
    let bases: Vec<String> = if req.bases.is_empty() {
        BASES.iter().map(|b| b.to_string()).collect()
    } else {
        req.bases.clone()
    };
    // The configured partners (OpenLDAP: from the hook files).
    let (global, hooks) = if kind == Directory::OpenLdap {
        read_hooks(ctx, &layout, &bases).await?
    } else {
        (String::new(), Vec::new())
    };
    let mut out = ReplicationStatusOutput {
        bases: Vec::new(),
        server_id: server_id(&global),
    };
    let base_of = |base: &String| {
        let mut b = BaseReplication {
            base: base.clone(),
            ..Default::default()
        };
        if let Ok(name) = base_hook(base) {
            b.partners = hooks
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| partners(t))
                .unwrap_or_default();
        }
        b
    };
    if machine_stopped(&layout) {
        // Nothing answers: the configured state, every base unreachable.
        log.line(MACHINE_STOPPED);
        for base in &bases {
            let mut b = base_of(base);
            b.error = MACHINE_STOPPED.into();
            out.bases.push(b);
        }
        return Ok(out);
    }
    let mut ldap = connect(ctx, &req.host, req.port, &req.admin_password, log).await?;
    for base in &bases {
        let mut b = base_of(base);
        read_csn(&mut ldap, &mut b).await;
        log.line(format!(
            "{base}: {} contextCSN value(s), partners [{}]{}",
            b.context_csn.len(),
            b.partners.join(", "),
            if b.error.is_empty() {
                String::new()
            } else {
                format!(", error: {}", b.error)
            }
        ));
        out.bases.push(b);
    }
    let _ = ldap.unbind().await;
    Ok(out)
}

/// OpenLDAP's hook files, read by their host path (a stopped machine still has them): the
/// global one's text, and each base's (hook name, text).
async fn read_hooks(
    ctx: &Ctx,
    layout: &Layout,
    bases: &[String],
) -> Result<(String, Vec<(String, String)>), OpError> {
    let root = ctx.root().clone();
    let l = layout.clone();
    let names: Vec<String> = bases.iter().filter_map(|b| base_hook(b).ok()).collect();
    join(
        tokio::task::spawn_blocking(move || {
            let etc = open_in_base(&root, &l, OPENLDAP_ETC)?;
            let text = |n: &str| -> Result<String, OpError> {
                Ok(read_opt(&etc, n)?
                    .map(|(c, _)| String::from_utf8_lossy(&c).into_owned())
                    .unwrap_or_default())
            };
            let g = text(GLOBAL_HOOK)?;
            let mut h = Vec::new();
            for n in names {
                let t = text(&n)?;
                h.push((n, t));
            }
            Ok((g, h))
        })
        .await,
    )
}

/// The base's contextCSN (OpenLDAP) or ds-sync-state (OpenDJ) values, sorted, into `b`; what
/// went wrong in `b.error`.
async fn read_csn(ldap: &mut Ldap, b: &mut BaseReplication) {
    match ldap
        .search(
            &b.base,
            Scope::Base,
            "(objectClass=*)",
            vec!["contextCSN", "ds-sync-state"],
        )
        .await
    {
        Ok(r) if r.1.rc == 0 => {
            b.reachable = true;
            if let Some(e) = r.0.into_iter().next().map(SearchEntry::construct) {
                let mut csn: Vec<String> = e
                    .attrs
                    .iter()
                    .filter(|(k, _)| {
                        k.eq_ignore_ascii_case("contextCSN")
                            || k.eq_ignore_ascii_case("ds-sync-state")
                    })
                    .flat_map(|(_, v)| v.clone())
                    .collect();
                csn.sort();
                b.context_csn = csn;
            }
        }
        Ok(r) => {
            b.error = format!("LDAP result code {}", r.1.rc);
        }
        Err(e) => b.error = e.to_string(),
    }
}

// ----- ReplicationProbe -----

/// A marker's name: letters, digits, `-`, `_`, `.`.
fn check_marker(m: &str) -> Result<(), OpError> {
    let ok = !m.is_empty()
        && m.len() <= 64
        && m.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(OpError(format!(
            "marker {m:?} must be letters, digits, '-', '_', '.'"
        )))
    }
}

pub fn marker_dn(marker: &str, base: &str) -> String {
    format!("cn={marker},ou={PROBE_OU},{base}")
}

async fn exists(ldap: &mut Ldap, dn: &str) -> Result<bool, OpError> {
    let r = ldap
        .search(dn, Scope::Base, "(objectClass=*)", vec!["1.1"])
        .await
        .map_err(|e| OpError(format!("{dn}: {e}")))?;
    match r.1.rc {
        0 => Ok(!r.0.is_empty()),
        NO_SUCH_OBJECT => Ok(false),
        rc => Err(OpError(format!(
            "reading {dn} failed (LDAP result code {rc})"
        ))),
    }
}

/// Adds the entry `dn` unless it is there already.
async fn add(ldap: &mut Ldap, dn: &str, attrs: Vec<(&str, Vec<&str>)>) -> Result<(), OpError> {
    let attrs = attrs
        .into_iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                v.into_iter().map(str::to_string).collect::<HashSet<_>>(),
            )
        })
        .collect();
    let r = ldap
        .add(dn, attrs)
        .await
        .map_err(|e| OpError(format!("{dn}: {e}")))?;
    if r.rc != 0 && r.rc != ALREADY_EXISTS {
        return Err(OpError(format!(
            "adding {dn} refused (LDAP result code {})",
            r.rc
        )));
    }
    Ok(())
}

pub async fn probe(
    ctx: &Ctx,
    req: ReplicationProbe,
    log: &mut Log,
) -> Result<ReplicationProbeOutput, OpError> {
    use replication_probe::Action;
    check_marker(&req.marker)?;
    base_hook(&req.base)?;
    let action = req.action();
    if action == Action::Unspecified {
        return Err(OpError("replication-probe needs an action".into()));
    }
    if Layout::detect(&ctx.host).is_ok_and(|l| machine_stopped(&l)) {
        return Err(OpError(format!(
            "{MACHINE_STOPPED}: its directory cannot take or show a marker"
        )));
    }
    let started = Instant::now();
    let mut ldap = connect(ctx, &req.host, req.port, &req.admin_password, log).await?;
    let dn = marker_dn(&req.marker, &req.base);
    let result = match action {
        Action::Write => write_marker(&mut ldap, &req, &dn, log).await,
        Action::Read => await_markers(&mut ldap, &req, &dn, started, log).await,
        Action::Remove => remove_marker(&mut ldap, &dn, log).await,
        Action::Unspecified => Ok(()),
    };
    let _ = ldap.unbind().await;
    result?;
    Ok(ReplicationProbeOutput {
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

/// The marker written under the base (its probe OU created first when missing).
async fn write_marker(
    ldap: &mut Ldap,
    req: &ReplicationProbe,
    dn: &str,
    log: &mut Log,
) -> Result<(), OpError> {
    let ou = format!("ou={PROBE_OU},{}", req.base);
    add(
        ldap,
        &ou,
        vec![
            ("objectClass", vec!["top", "organizationalUnit"]),
            ("ou", vec![PROBE_OU]),
        ],
    )
    .await?;
    add(
        ldap,
        dn,
        vec![
            ("objectClass", vec!["top", "organizationalRole"]),
            ("cn", vec![req.marker.as_str()]),
            ("description", vec!["replication probe (clustermgr)"]),
        ],
    )
    .await?;
    log.line(format!("wrote {dn}"));
    Ok(())
}

/// Waits until the main marker, then every one in `also`, is here, up to `within_ms` from
/// `started`.
async fn await_markers(
    ldap: &mut Ldap,
    req: &ReplicationProbe,
    dn: &str,
    started: Instant,
    log: &mut Log,
) -> Result<(), OpError> {
    let limit = Duration::from_millis(u64::from(req.within_ms));
    let mut wanted = vec![dn.to_string()];
    for m in &req.also {
        check_marker(m)?;
        wanted.push(marker_dn(m, &req.base));
    }
    for want in &wanted {
        loop {
            if exists(ldap, want).await? {
                log.line(format!(
                    "{want} is here after {} ms",
                    started.elapsed().as_millis()
                ));
                break;
            }
            if started.elapsed() > limit {
                return Err(OpError(format!(
                    "{want} did not arrive within {} ms: replication does not reach this node",
                    req.within_ms
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(())
}

async fn remove_marker(ldap: &mut Ldap, dn: &str, log: &mut Log) -> Result<(), OpError> {
    let r = ldap
        .delete(dn)
        .await
        .map_err(|e| OpError(format!("{dn}: {e}")))?;
    match r.rc {
        0 => log.line(format!("removed {dn}")),
        NO_SUCH_OBJECT => log.line(format!("{dn} was not there")),
        rc => {
            return Err(OpError(format!(
                "removing {dn} refused (LDAP result code {rc})"
            )));
        }
    }
    Ok(())
}
