//! The backends out of rotation: the balancer's own list of them (kept across
//! reconfigurations), the lock that orders a rotation change with a configuration, and the
//! check that a template marks a drained backend `down` in every upstream.

use super::{Layout, host_port, ours, read_applied};
use crate::ops::{Log, OpError};
use clustermgr_proto::ConfigureNginx;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Adds to `req.drained` the backends the running configuration has out of rotation and `req`
/// still balances.
pub(super) fn keep_drained(layout: &Layout, req: &mut ConfigureNginx, log: &mut Log) {
    let Some(a) = read_applied(layout).filter(|_| ours(&layout.conf)) else {
        return;
    };
    for n in a.drained {
        if req.backends.iter().any(|b| b.name == n) && !req.drained.contains(&n) {
            log.line(format!(
                "{n} stays out of rotation (drained here; only its rejoin puts it back)"
            ));
            req.drained.push(n);
        }
    }
    req.drained.sort();
}

/// The lock of this host's load balancer configuration: a configuration and a rotation change
/// never interleave (a rotation's waits, for readiness and for old workers, run outside it).
pub(crate) fn lock(layout: &Layout) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: std::sync::Mutex<
        std::collections::BTreeMap<PathBuf, Arc<tokio::sync::Mutex<()>>>,
    > = std::sync::Mutex::new(std::collections::BTreeMap::new());
    let mut m = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
    m.entry(layout.state.clone()).or_default().clone()
}

/// Every `server` line of a drained backend is marked `down`, and at least one names it; no
/// line of a backend in rotation is (an operator's template must mark `server ... down` when
/// b.down is true, in every upstream).
pub(super) fn check_down_marks(text: &str, req: &ConfigureNginx) -> Result<(), OpError> {
    for b in &req.backends {
        // An address that is not an IP (render refuses one; a request checked on its own may
        // hold one) is looked for as written.
        let hp = match b.address.parse::<IpAddr>() {
            Ok(a) => host_port(&a, b.port),
            Err(_) => format!("{}:{}", b.address, b.port),
        };
        let lines: Vec<&str> = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or_default().trim())
            .filter(|l| {
                // By its address and port, or by its name (a template may name the host).
                l.strip_prefix("server ").is_some_and(|r| {
                    let first = r.split_whitespace().next().unwrap_or_default();
                    let first = first.trim_end_matches(';');
                    first == hp || first.split(':').next() == Some(b.name.as_str())
                })
            })
            .collect();
        let down = |l: &&str| {
            l.trim_end_matches(';')
                .split_whitespace()
                .any(|w| w == "down")
        };
        let drained = req.drained.contains(&b.name);
        if drained && (lines.is_empty() || !lines.iter().all(down)) {
            return Err(OpError(format!(
                "the nginx template marks {} ({hp}) down in {} of its {} server line(s): it \
                 cannot take a node out of rotation (mark `server ... down` when b.down is true)",
                b.name,
                lines.iter().filter(|l| down(l)).count(),
                lines.len()
            )));
        }
        if !drained && lines.iter().any(down) {
            return Err(OpError(format!(
                "the nginx template marks {} ({hp}) down though it is in rotation",
                b.name
            )));
        }
    }
    Ok(())
}
