//! Service health: checks the services the controller names (HealthConfig) on its period and
//! reports each round up the session (HealthReport). One task per session; it ends with it.
//!
//! The LDAPS and HTTPS checks verify TLS against the node's own certificates, read by their host
//! path under the Gluu container root (a stopped machine still has them). When such a check
//! fails and the node's Gluu Server machine is stopped, the report says so: the services are
//! down because the machine is, not each on its own.

use crate::host::Host;
use crate::ops::gluu::{Flavor, Layout};
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

/// This node's Gluu Server is a systemd-nspawn machine that is not running.
pub fn gluu_stopped(host: &Host) -> bool {
    Layout::detect(host).is_ok_and(|l| l.flavor == Flavor::Machine && l.leader().is_none())
}

/// What a failed check of one of Gluu's services reports.
fn gluu_detail(host: &Host, error: String) -> String {
    if gluu_stopped(host) {
        format!("the Gluu Server machine is stopped ({error})")
    } else {
        error
    }
}

async fn check(ctx: &Ctx, p: &clustermgr_proto::HealthProbe) -> ServiceCheck {
    let start = Instant::now();
    let r = match &p.check {
        Some(health_probe::Check::Ldaps(b)) => {
            probe::check_once(ctx, &probe_target::Target::Ldaps(b.clone()))
                .await
                .map_err(|e| gluu_detail(&ctx.host, e))
        }
        Some(health_probe::Check::Https(g)) => {
            probe::check_once(ctx, &probe_target::Target::Https(g.clone()))
                .await
                .map_err(|e| gluu_detail(&ctx.host, e))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{PackageFormat, PackageMode, Runner};
    use crate::ops::gluu::layout::fixture::{install, start_machine};
    use crate::ops::tests::ctx_with;
    use clustermgr_proto::{HealthProbe, LdapsBind};
    use std::path::Path;

    fn host(root: &Path) -> Host {
        let proc = root.join("proc");
        std::fs::create_dir_all(&proc).unwrap();
        Host {
            root: root.to_path_buf(),
            packages: PackageMode::System,
            format: Some(PackageFormat::Deb),
            runner: Runner::Real,
            proc,
        }
    }

    /// Checks of Gluu's directory and of another port, where nothing answers.
    fn probes() -> [HealthProbe; 2] {
        [
            HealthProbe {
                service: "ldap".into(),
                check: Some(health_probe::Check::Ldaps(LdapsBind {
                    host: "127.0.0.1".into(),
                    port: 9,
                    bind_dn: "cn=directory manager".into(),
                    password: b"secret".to_vec(),
                    ca_pem: String::new(),
                })),
            },
            HealthProbe {
                service: "stunnel".into(),
                check: Some(health_probe::Check::Tcp("127.0.0.1:9".into())),
            },
        ]
    }

    #[tokio::test]
    async fn a_stopped_machine_is_named_in_its_services_failed_checks() {
        let d = tempfile::tempdir().unwrap();
        let h = host(d.path());
        assert!(!gluu_stopped(&h), "no Gluu here");
        install(d.path(), Flavor::Machine);
        assert!(gluu_stopped(&h));
        let ctx = ctx_with(h.clone());
        let [ldap, tcp] = probes();
        let c = check(&ctx, &ldap).await;
        assert!(!c.up);
        assert!(
            c.detail.starts_with("the Gluu Server machine is stopped ("),
            "{}",
            c.detail
        );
        // Not one of Gluu's services: reported as it is.
        let c = check(&ctx, &tcp).await;
        assert!(!c.up && !c.detail.contains("machine"), "{}", c.detail);
        // Running: a failure is the service's own.
        start_machine(d.path(), &h.proc, 4242);
        assert!(!gluu_stopped(&h));
        let c = check(&ctx, &ldap).await;
        assert!(
            !c.up && !c.detail.contains("machine is stopped"),
            "{}",
            c.detail
        );

        // An init.d chroot has no machine to be stopped.
        let d2 = tempfile::tempdir().unwrap();
        install(d2.path(), Flavor::InitdChroot);
        assert!(!gluu_stopped(&host(d2.path())));
    }
}
