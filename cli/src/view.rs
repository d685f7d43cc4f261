//! The JSON forms of the API's status records, below both frontends: the CLI prints them
//! (`--output json`, `output::Render`) and the controller's web console lays them out as HTML
//! (`web::status`, through `clustermgr::view`, which re-exports this module). One form per
//! record, so the two never disagree.

use clustermgr_proto::{
    CacheNodeState, CacheStatusReport, CertificateFacts, CertificatesShown, ClusterStatus,
    CustomSchema, FsrepAction, FsrepLimits, FsrepStatus, FsrepVersion, KeyInfo, KeysSettings,
    KeysStatus, LoadBalancerConfig, LoadBalancerStatus, NginxStatusOutput, OxauthBalancing,
    SchemaElementKind, SchemaList,
};
use clustermgr_shared::util::{fmt_ms, fmt_unix};
use serde_json::{Value, json};

/// How nginx balances /oxauth, by name.
pub fn balancing_name(b: i32) -> &'static str {
    match OxauthBalancing::try_from(b) {
        Ok(OxauthBalancing::RoundRobin) => "round-robin",
        Ok(OxauthBalancing::Sticky) => "sticky",
        _ => "-",
    }
}

/// nginx's state on the lb node (also `job show` of an nginx-status job).
pub fn nginx_json(n: &NginxStatusOutput) -> Value {
    json!({
        "installed": n.installed,
        "configured": n.configured,
        "running": n.running,
        "server_name": n.server_name,
        "oxauth_balancing": balancing_name(n.oxauth_balancing),
        "listen": format!("{}:{}", n.listen_address, n.https_port),
        "http_port": n.http_port,
        "backends": n.backends.iter().map(|b| {
            let h = n.health.iter().find(|h| h.address == b.address && h.port == b.port);
            json!({
                "name": b.name,
                "address": b.address,
                "port": b.port,
                "healthy": h.map(|h| h.ok),
                "detail": h.map(|h| h.detail.clone()),
                "in_rotation": !n.drained.contains(&b.name),
            })
        }).collect::<Vec<_>>(),
        "through_lb_ok": n.through_lb_ok,
        "through_lb_detail": n.through_lb_detail,
    })
}

/// `lb status`.
pub fn lb_status(s: &LoadBalancerStatus) -> Value {
    json!({
        "state": s.state,
        "healthy": s.healthy,
        "url": s.url,
        "node_id": s.node_id,
        "hostname": s.hostname,
        "oxauth_balancing": balancing_name(s.oxauth_balancing),
        "workflow_id": if s.workflow_id.is_empty() { Value::Null } else { json!(s.workflow_id) },
        "error": if s.error.is_empty() { Value::Null } else { json!(s.error) },
        "nginx": s.nginx.as_ref().map(nginx_json),
    })
}

/// `lb config`: what an external load balancer must route.
pub fn lb_config(c: &LoadBalancerConfig) -> Value {
    json!({
        "lb_hostname": c.lb_hostname,
        "external_lb": c.external_lb,
        "https_port": c.https_port,
        "http_port": c.http_port,
        "http": "redirect every request to https",
        "routes": c.routes.iter().map(|r| json!({
            "path": r.path, "sticky": r.sticky, "action": r.action,
        })).collect::<Vec<_>>(),
        "backends": c.backends.iter().map(|b| json!({
            "name": b.name, "address": b.address, "port": b.port,
        })).collect::<Vec<_>>(),
        "health_check": c.health_check_path,
        "backend_tls_name": c.backend_tls_name,
    })
}

/// One node's cache services.
pub fn cache_node(n: &CacheNodeState) -> Value {
    json!({
        "node_id": n.node_id,
        "hostname": n.hostname,
        "role": n.role,
        "online": n.online,
        "redis_running": n.redis_running,
        "stunnel_running": n.stunnel_running,
        "nutcracker_running": n.nutcracker_running,
        "ping_ok": n.ping_ok,
        "ping_address": n.ping_address,
        "healthy": n.healthy,
        "error": if n.error.is_empty() { Value::Null } else { json!(n.error) },
    })
}

/// `cache status`.
pub fn cache_report(r: &CacheStatusReport) -> Value {
    json!({
        "installed": r.installed,
        "password": if r.password_set { "set" } else { "unset" },
        "healthy": r.healthy,
        "checked_unix_ms": r.checked_unix_ms,
        "nodes": r.nodes.iter().map(cache_node).collect::<Vec<_>>(),
    })
}

/// The key rotation settings.
pub fn keys_settings(s: &KeysSettings) -> Value {
    json!({
        "enabled": s.enabled,
        "interval_ms": s.interval_ms,
        "backup": s.backup,
        "overlap_ms": s.overlap_ms,
    })
}

/// One published key.
pub fn key_json(k: &KeyInfo) -> Value {
    json!({"kid": k.kid, "alg": k.alg, "use": k.r#use, "exp": fmt_ms(k.exp_unix_ms), "exp_unix_ms": k.exp_unix_ms})
}

/// `keys status`.
pub fn keys_status(s: &KeysStatus) -> Value {
    json!({
        "settings": s.settings.as_ref().map(keys_settings),
        "current": s.current.iter().map(key_json).collect::<Vec<_>>(),
        "upcoming": s.upcoming.iter().map(key_json).collect::<Vec<_>>(),
        "nodes": s.nodes.iter().map(|n| json!({
            "node_id": n.node_id,
            "hostname": n.hostname,
            "served_kids": n.served_kids,
            "signing_kid": n.signing_kid,
            "error": if n.error.is_empty() { Value::Null } else { json!(n.error) },
        })).collect::<Vec<_>>(),
        "last_rotation": fmt_ms(s.last_rotation_unix_ms),
        "next_rotation": if s.next_rotation_unix_ms == 0 { Value::Null } else { json!(fmt_ms(s.next_rotation_unix_ms)) },
        "running_workflow_id": if s.running_workflow_id.is_empty() { Value::Null } else { json!(s.running_workflow_id) },
        "retirement": s.retirement.as_ref().map(|p| json!({
            "due": fmt_ms(p.due_unix_ms),
            "due_unix_ms": p.due_unix_ms,
            "keep_kids": p.keep_kids,
            "retiring": p.retiring.iter().map(key_json).collect::<Vec<_>>(),
            "rotation_workflow_id": p.rotation_workflow_id,
            "workflow_id": if p.workflow_id.is_empty() { Value::Null } else { json!(p.workflow_id) },
        })),
    })
}

/// What a certificate says.
pub fn facts_json(c: &CertificateFacts) -> Value {
    json!({
        "subject": c.subject,
        "sans": c.sans,
        "issuer": c.issuer,
        "not_before": fmt_unix(c.not_before_unix),
        "not_after": fmt_unix(c.not_after_unix),
        "fingerprint_sha256": c.fingerprint,
    })
}

/// `cert show`: the certificate each node serves.
pub fn certs_shown(s: &CertificatesShown) -> Value {
    json!({
        "lb_hostname": s.lb_hostname,
        "served": s.served.iter().map(|s| json!({
            "node_id": s.node_id,
            "hostname": s.hostname,
            "role": s.role,
            "address": s.address,
            "certificate": s.certificate.as_ref().map(facts_json),
            "error": if s.error.is_empty() { Value::Null } else { json!(s.error) },
        })).collect::<Vec<_>>(),
    })
}

/// File replication's resource limits.
pub fn fsrep_limits(l: &FsrepLimits) -> Value {
    json!({
        "max_files": l.max_files,
        "max_total_bytes": l.max_total_bytes,
        "changes_per_second": l.changes_per_second,
        "action_interval_ms": l.action_interval_ms,
        "backup_bytes": l.backup_bytes,
    })
}

/// File replication's actions (pattern -> service restarted).
pub fn fsrep_actions(a: &[FsrepAction]) -> Value {
    json!(
        a.iter()
            .map(|a| json!({"pattern": a.pattern, "service": a.service}))
            .collect::<Vec<_>>()
    )
}

fn version(v: &Option<FsrepVersion>) -> Value {
    v.as_ref()
        .map_or(Value::Null, |v| json!({"hlc": v.hlc, "node_id": v.node_id}))
}

/// `fsrep status`.
pub fn fsrep_status(st: &FsrepStatus) -> Value {
    let s = st.settings.clone().unwrap_or_default();
    json!({
        "enabled": s.enabled,
        "paths": s.paths,
        "excludes": s.excludes,
        "actions": fsrep_actions(&s.actions),
        "backups": s.backups,
        "max_file_bytes": s.max_file_bytes,
        "owners": s.owners,
        "limits": fsrep_limits(&s.limits.unwrap_or_default()),
        "bytes": st.bytes,
        "files": st.files,
        "tombstones": st.tombstones,
        "changes": st.changes,
        "latency_ms": {
            "p50": st.latency_p50_ms,
            "p99": st.latency_p99_ms,
            "bounds": st.latency_bounds_ms,
            "counts": st.latency_counts,
        },
        "nodes": st.nodes.iter().map(|n| json!({
            "node_id": n.node_id,
            "hostname": n.hostname,
            "connected": n.connected,
            "queued": n.queued,
            "behind": n.behind,
            "watch_error": n.watch_error,
            "watched_dirs": n.watched_dirs,
            "action_runs": n.action_runs.iter().map(|r| json!({
                "service": r.service, "unix_ms": r.unix_ms, "error": r.error,
            })).collect::<Vec<_>>(),
            "refused": n.refused,
            "actions_pending": n.actions_pending,
            "last_error": n.last_error,
            "capped": n.capped,
            "inactive": n.inactive,
            "flavor": n.flavor,
            "base": n.base,
        })).collect::<Vec<_>>(),
        "conflicts": st.conflicts.iter().map(|c| json!({
            "path": c.path,
            "winner": c.winner_host,
            "loser": c.loser_host,
            "winner_version": version(&c.winner),
            "loser_version": version(&c.loser),
            "unix_ms": c.unix_ms,
        })).collect::<Vec<_>>(),
    })
}

/// `status`: every node's services and the latest service events.
pub fn cluster_status(st: &ClusterStatus) -> Value {
    json!({
        "period_ms": st.period_ms,
        "nodes": st.nodes.iter().map(|n| json!({
            "node_id": n.node_id, "hostname": n.hostname, "role": n.role, "status": n.status,
            "services": n.services.iter().map(|s| json!({
                "service": s.service, "state": s.state, "detail": s.detail,
                "since": fmt_ms(s.since_unix_ms), "checked": fmt_ms(s.checked_unix_ms),
                "latency_ms": s.latency_ms,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "events": st.events.iter().map(|e| json!({
            "time": fmt_ms(e.unix_ms), "node_id": e.node_id, "hostname": e.hostname,
            "service": e.service, "state": if e.up { "up" } else { "down" }, "detail": e.detail,
        })).collect::<Vec<_>>(),
    })
}

/// A schema element's kind, by name.
pub fn kind_name(k: SchemaElementKind) -> &'static str {
    match k {
        SchemaElementKind::AttributeType => "attribute type",
        SchemaElementKind::ObjectClass => "object class",
        SchemaElementKind::Unspecified => "?",
    }
}

/// One custom schema as the controller understood it.
pub fn schema_json(s: &CustomSchema) -> Value {
    json!({
        "name": s.name,
        "source_file": s.source_file,
        "source_sha256": s.source_sha256,
        "elements": s.elements.iter().map(|e| json!({
            "kind": kind_name(e.kind()),
            "oid": e.oid,
            "names": e.names,
            "description": e.description,
        })).collect::<Vec<_>>(),
    })
}

/// `schema list`.
pub fn schema_list(l: &SchemaList) -> Value {
    json!({
        "schemas": l.schemas.iter().map(|a| json!({
            "schema": a.schema.as_ref().map(schema_json),
            "workflow_id": a.workflow_id,
            "added": fmt_ms(a.added_unix_ms),
            "added_by": a.added_by,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clustermgr_proto::LbBackend;

    #[test]
    fn a_drained_backend_shows_out_of_rotation() {
        let b = |name: &str, address: &str| LbBackend {
            name: name.into(),
            address: address.into(),
            port: 8443,
        };
        let n = NginxStatusOutput {
            configured: true,
            backends: vec![b("gluu1", "10.0.0.1"), b("gluu2", "10.0.0.2")],
            drained: vec!["gluu2".into()],
            ..Default::default()
        };
        let v = nginx_json(&n);
        let rotation: Vec<bool> = v["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["in_rotation"].as_bool().unwrap())
            .collect();
        assert_eq!(rotation, [true, false]);
    }
}
