//! `cache status` (every cache host and Gluu node asked now) and the cache's health probes.

use super::*;

/// `cache status`: every cache host and Gluu node asked now.
/// What the nodes check for the cache's health: a Redis PING on every cache host (redis-server
/// itself) and through every Gluu node's stunnel client (or twemproxy), by node id.
pub fn health_probes(
    ctl: &Ctl,
) -> Result<Vec<(String, clustermgr_proto::HealthProbe)>, CacheError> {
    let rec = record(ctl)?;
    if !rec.installed {
        return Ok(Vec::new());
    }
    let password = password_of(ctl, &rec)?;
    let sharded = rec.server_node_ids.len() > 1;
    let probe = |port: u32| clustermgr_proto::HealthProbe {
        service: "redis".into(),
        check: Some(clustermgr_proto::health_probe::Check::Redis(
            clustermgr_proto::RedisPing {
                port,
                password: password.as_bytes().to_vec(),
            },
        )),
    };
    let mut out: Vec<(String, clustermgr_proto::HealthProbe)> = rec
        .server_node_ids
        .iter()
        .map(|id| (id.clone(), probe(REDIS_PORT)))
        .collect();
    for id in current_clients(ctl, &rec)? {
        out.push((
            id,
            probe(if sharded { NUTCRACKER_PORT } else { REDIS_PORT }),
        ));
    }
    Ok(out)
}

pub async fn status(ctl: &Arc<Ctl>) -> Result<CacheStatusReport, CacheError> {
    let rec = record(ctl)?;
    let password = password_of(ctl, &rec)?;
    let sharded = rec.server_node_ids.len() > 1;
    let clients = current_clients(ctl, &rec)?;
    let mut asks = Vec::new();
    for (id, server) in rec
        .server_node_ids
        .iter()
        .map(|s| (s, true))
        .chain(clients.iter().map(|c| (c, false)))
    {
        let op = CacheStatus {
            server,
            client: !server,
            nutcracker: !server && sharded,
            ping_port: if !server && sharded {
                NUTCRACKER_PORT
            } else {
                REDIS_PORT
            },
            password: password.as_bytes().to_vec(),
            require_healthy: false,
            programs: Vec::new(),
        };
        let ctl = ctl.clone();
        let id = id.clone();
        asks.push(async move { ask(&ctl, &id, server, op).await });
    }
    let nodes: Vec<CacheNodeState> = futures::future::join_all(asks).await;
    let healthy = rec.installed && !nodes.is_empty() && nodes.iter().all(|n| n.healthy);
    Ok(CacheStatusReport {
        installed: rec.installed,
        password_set: !rec.password_sealed.is_empty(),
        nodes,
        healthy,
        checked_unix_ms: now_ms(),
    })
}

pub(super) async fn ask(
    ctl: &Arc<Ctl>,
    node_id: &str,
    server: bool,
    op: CacheStatus,
) -> CacheNodeState {
    let mut out = CacheNodeState {
        node_id: node_id.to_string(),
        role: if server { "cache" } else { "gluu" }.into(),
        ..Default::default()
    };
    let Ok(Some(node)) = ctl.store.node(node_id) else {
        out.error = "the node was removed".into();
        return out;
    };
    out.hostname = node.hostname.clone();
    out.online = ctl.registry.get(&node.id).is_some();
    if !out.online {
        out.error = "offline".into();
        return out;
    }
    let checked = crate::nodes::check(
        ctl,
        &node,
        Operation {
            kind: Some(operation::Kind::CacheStatus(op)),
        },
        ("controller:cache-status", "cache.status"),
        |k| match k {
            operation_output::Kind::CacheStatus(s) => Some(s),
            _ => None,
        },
    )
    .await;
    match checked {
        Ok(s) => {
            out.redis_running = s.redis_running;
            out.stunnel_running = s.stunnel_running;
            out.nutcracker_running = s.nutcracker_running;
            out.ping_ok = s.ping_ok;
            out.ping_address = s.ping_address;
            out.error = s.ping_error;
            out.healthy = s.ping_ok
                && s.stunnel_running
                && (!server || s.redis_running)
                && (server || !op_sharded(&out) || s.nutcracker_running);
        }
        Err(e) => out.error = e,
    }
    out
}

pub(super) fn op_sharded(n: &CacheNodeState) -> bool {
    n.ping_address.ends_with(&format!(":{NUTCRACKER_PORT}"))
}
