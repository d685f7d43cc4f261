//! Service health: checks the services the controller names (HealthConfig) on its period and
//! reports each round up the session (HealthReport). One task per session; it ends with it.

use crate::ops::{Ctx, probe};
use clustermgr_proto::{
    AgentMessage, HealthConfig, HealthReport, ServiceCheck, agent_message, health_probe,
    probe as probe_target,
};
use clustermgr_shared::util::now_ms;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Shortest period accepted (a misconfigured controller cannot make the agent spin).
const MIN_PERIOD: Duration = Duration::from_secs(1);
const TCP_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs until `tx` closes; `config` carries the controller's latest HealthConfig.
pub async fn run(
    ctx: Ctx,
    mut config: watch::Receiver<HealthConfig>,
    tx: mpsc::Sender<AgentMessage>,
) {
    loop {
        let cfg = config.borrow_and_update().clone();
        if cfg.probes.is_empty() {
            tokio::select! {
                changed = config.changed() => if changed.is_err() { return },
                _ = tx.closed() => return,
            }
            continue;
        }
        let checks = futures::future::join_all(cfg.probes.iter().map(|p| check(&ctx, p))).await;
        let report = AgentMessage {
            msg: Some(agent_message::Msg::Health(HealthReport {
                unix_ms: now_ms(),
                checks,
            })),
        };
        if tx.send(report).await.is_err() {
            return;
        }
        let period = Duration::from_millis(u64::from(cfg.period_ms)).max(MIN_PERIOD);
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            // A new configuration is checked at once.
            changed = config.changed() => if changed.is_err() { return },
            _ = tx.closed() => return,
        }
    }
}

async fn check(ctx: &Ctx, p: &clustermgr_proto::HealthProbe) -> ServiceCheck {
    let start = Instant::now();
    let r = match &p.check {
        Some(health_probe::Check::Ldaps(b)) => {
            probe::check_once(ctx, &probe_target::Target::Ldaps(b.clone())).await
        }
        Some(health_probe::Check::Https(g)) => {
            probe::check_once(ctx, &probe_target::Target::Https(g.clone())).await
        }
        Some(health_probe::Check::Tcp(addr)) => {
            match tokio::time::timeout(TCP_TIMEOUT, tokio::net::TcpStream::connect(addr.as_str()))
                .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("cannot connect to {addr}: {e}")),
                Err(_) => Err(format!("no answer from {addr} within 5 s")),
            }
        }
        Some(health_probe::Check::Redis(r)) => {
            let addr = crate::ops::cache::local_address(ctx);
            let addr = if addr.contains(':') {
                format!("[{addr}]:{}", r.port)
            } else {
                format!("{addr}:{}", r.port)
            };
            crate::ops::cache::ping(&addr, &String::from_utf8_lossy(&r.password)).await
        }
        None => Err("nothing to check".into()),
    };
    ServiceCheck {
        service: p.service.clone(),
        up: r.is_ok(),
        detail: r.err().unwrap_or_default(),
        latency_ms: start.elapsed().as_millis().min(u32::MAX as u128) as u32,
    }
}
