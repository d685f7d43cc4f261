//! Service health: what each node must check (from the cluster's state), the states the agents
//! report, the events when a service goes down or comes back, and the overview.
//!
//! The agents check on the cluster's LDAP status check period and report every round; a state
//! that changes (or is seen for the first time) becomes an event, persisted. Current states are
//! kept in memory: after a controller restart they come back with the next reports.

use crate::ctl::Ctl;
use crate::error::{Classify, Kind};
use crate::settings;
use crate::store::StoreError;
use clustermgr_proto::{
    ClusterStatus, ControllerMessage, HealthConfig, HealthEvent, HealthProbe, HealthReport,
    HttpsGet, LdapsBind, NodeHealth, ServiceHealth, controller_message, health_probe,
};
use clustermgr_shared::util::now_ms;
use clustermgr_workflow::gluu_install::{DIRECTORY_ADMIN_DN, LDAPS_PORT};
use clustermgr_workflow::readiness::web_url;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Checks when the cluster names no period.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(30);
/// How often the controller re-derives what each node must check.
const CONFIG_EVERY: Duration = Duration::from_secs(2);
/// Events kept (the oldest are dropped).
pub const MAX_EVENTS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cluster(#[from] settings::ClusterError),
}

impl Classify for HealthError {
    fn kind(&self) -> Kind {
        match self {
            Self::Store(_) => Kind::Internal,
            Self::Cluster(e) => e.kind(),
        }
    }
}

#[derive(Debug, Clone)]
struct Current {
    up: bool,
    detail: String,
    since_ms: u64,
    checked_ms: u64,
    latency_ms: u32,
}

/// In-memory health state.
#[derive(Default)]
pub struct Health {
    /// node id -> service -> state.
    states: Mutex<HashMap<String, BTreeMap<String, Current>>>,
    /// node id -> (session generation, configuration sent on it).
    sent: Mutex<HashMap<String, (u64, HealthConfig)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The period in force.
pub fn period(ctl: &Ctl) -> Duration {
    match settings::settings_record(ctl).map(|s| s.ldap_check_period_ms) {
        Ok(ms) if ms > 0 => Duration::from_millis(ms),
        _ => DEFAULT_PERIOD,
    }
}

/// What every node must check now, by node id.
pub fn configs(ctl: &Ctl) -> Result<HashMap<String, HealthConfig>, HealthError> {
    let settings = settings::settings_record(ctl)?;
    let period_ms = period(ctl).as_millis().min(u32::MAX as u128) as u32;
    let https_port = u16::try_from(settings.https_port).ok().filter(|p| *p != 0);
    let password = settings::ldap_admin_password(ctl, &settings).ok();
    let installed: HashMap<String, bool> = ctl
        .store
        .servers()?
        .into_iter()
        .map(|s| (s.node_id, s.install_complete))
        .collect();
    // A broken lb or cache record must not stop the other checks.
    let lb = crate::lb::installed(ctl).ok().flatten();
    let cache = crate::cache::health_probes(ctl).unwrap_or_default();
    let mut out = HashMap::new();
    for n in ctl.store.nodes()? {
        let addr = crate::nodes::address(&n).unwrap_or_default();
        let mut probes = Vec::new();
        if installed.get(&n.id).copied().unwrap_or(false) && !addr.is_empty() {
            if let Some(pw) = &password {
                probes.push(HealthProbe {
                    service: "ldap".into(),
                    check: Some(health_probe::Check::Ldaps(LdapsBind {
                        host: addr.clone(),
                        port: LDAPS_PORT,
                        bind_dn: DIRECTORY_ADMIN_DN.into(),
                        password: pw.as_bytes().to_vec(),
                        ca_pem: String::new(),
                    })),
                });
            }
            for (service, path) in [
                ("oxauth", "/oxauth/restv1/health-check"),
                ("identity", "/identity/restv1/health-check"),
            ] {
                probes.push(HealthProbe {
                    service: service.into(),
                    check: Some(health_probe::Check::Https(HttpsGet {
                        url: web_url(&addr, https_port, path),
                        ca_pem: String::new(),
                    })),
                });
            }
        }
        if let Some((lb_node, port)) = &lb
            && *lb_node == n.id
            && !addr.is_empty()
        {
            let host = if addr.contains(':') {
                format!("[{addr}]")
            } else {
                addr.clone()
            };
            probes.push(HealthProbe {
                service: "nginx".into(),
                check: Some(health_probe::Check::Tcp(format!("{host}:{port}"))),
            });
        }
        probes.extend(
            cache
                .iter()
                .filter(|(id, _)| *id == n.id)
                .map(|(_, p)| p.clone()),
        );
        out.insert(n.id.clone(), HealthConfig { period_ms, probes });
    }
    Ok(out)
}

/// Sends each connected node its configuration when it changed or its session is new.
pub fn push_configs(ctl: &Ctl, health: &Health) -> Result<(), HealthError> {
    let configs = configs(ctl)?;
    let mut sent = lock(&health.sent);
    for (node_id, cfg) in configs {
        let Some(session) = ctl.registry.get(&node_id) else {
            sent.remove(&node_id);
            continue;
        };
        if sent
            .get(&node_id)
            .is_some_and(|(g, c)| *g == session.generation && *c == cfg)
        {
            continue;
        }
        let msg = ControllerMessage {
            msg: Some(controller_message::Msg::HealthConfig(cfg.clone())),
        };
        if session.tx.try_send(Ok(msg)).is_ok() {
            sent.insert(node_id, (session.generation, cfg));
        }
    }
    Ok(())
}

/// Keeps every node's configuration current.
pub fn start(ctl: Arc<Ctl>, health: Arc<Health>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CONFIG_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = push_configs(&ctl, &health) {
                tracing::warn!(error = %e, "cannot derive the health checks");
            }
        }
    });
}

/// A node's report: states updated, changes recorded as events.
pub async fn report(ctl: &Ctl, health: &Health, node_id: &str, r: HealthReport) {
    let now = now_ms();
    let hostname = ctl
        .store
        .node(node_id)
        .ok()
        .flatten()
        .map(|n| n.hostname)
        .unwrap_or_default();
    let mut events = Vec::new();
    {
        let mut states = lock(&health.states);
        let node = states.entry(node_id.to_string()).or_default();
        // Services the node no longer checks are forgotten.
        node.retain(|s, _| r.checks.iter().any(|c| &c.service == s));
        for c in r.checks {
            let detail = crate::audit::clean(&c.detail, 256);
            let changed = node.get(&c.service).is_none_or(|cur| cur.up != c.up);
            let cur = node.entry(c.service.clone()).or_insert(Current {
                up: c.up,
                detail: String::new(),
                since_ms: now,
                checked_ms: now,
                latency_ms: 0,
            });
            if changed {
                cur.since_ms = now;
                events.push(HealthEvent {
                    unix_ms: now,
                    node_id: node_id.to_string(),
                    hostname: hostname.clone(),
                    service: c.service.clone(),
                    up: c.up,
                    detail: detail.clone(),
                });
            }
            cur.up = c.up;
            cur.detail = detail;
            cur.checked_ms = now;
            cur.latency_ms = c.latency_ms;
        }
    }
    if !events.is_empty() {
        for e in &events {
            tracing::info!(node = %e.hostname, service = %e.service, up = e.up, "service state changed");
        }
        if let Err(e) = ctl.store.append_health_events(events, MAX_EVENTS).await {
            tracing::error!(error = %e, "cannot record health events");
        }
    }
}

/// The overview.
pub fn status(ctl: &Ctl, health: &Health, events: usize) -> Result<ClusterStatus, HealthError> {
    let period = period(ctl);
    let stale_after = (period * 3).as_millis() as u64;
    let now = now_ms();
    let states = lock(&health.states).clone();
    let mut nodes: Vec<NodeHealth> = ctl
        .store
        .nodes()?
        .into_iter()
        .map(|n| {
            let connected = ctl.registry.get(&n.id).is_some();
            let services = states
                .get(&n.id)
                .map(|m| {
                    m.iter()
                        .map(|(name, c)| ServiceHealth {
                            service: name.clone(),
                            state: if now.saturating_sub(c.checked_ms) > stale_after {
                                "stale"
                            } else if c.up {
                                "up"
                            } else {
                                "down"
                            }
                            .into(),
                            detail: c.detail.clone(),
                            since_unix_ms: c.since_ms,
                            checked_unix_ms: c.checked_ms,
                            latency_ms: c.latency_ms,
                        })
                        .collect()
                })
                .unwrap_or_default();
            NodeHealth {
                node_id: n.id.clone(),
                hostname: n.hostname.clone(),
                role: n.role().label().to_string(),
                status: crate::nodes::status_of(n.approved, connected)
                    .as_str()
                    .into(),
                services,
            }
        })
        .collect();
    nodes.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    Ok(ClusterStatus {
        nodes,
        events: ctl.store.health_events_tail(events)?,
        period_ms: period.as_millis() as u64,
    })
}
