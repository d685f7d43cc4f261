//! The minimum agent version (`serve --min-agent-version`, `min_agent_version` in
//! controller.toml): an agent older than it is refused at session start. Its inventory is
//! recorded with the refusal, so `node list` shows the node `refused` with its version, the
//! audit log has a `session.refused` row, and the agent logs the controller's reason each time
//! it tries again (it keeps trying: an upgraded agent, or a lowered minimum, gets in).

use crate::audit::Audit;
use crate::ctl::Ctl;
use clustermgr_proto::Inventory;

pub use clustermgr_shared::version::{AgentVersion, BadVersion};

/// Why an agent reporting `reported` is refused under `min`, if it is.
pub fn refusal(min: Option<&AgentVersion>, reported: &str) -> Option<String> {
    let min = min?;
    match reported.parse::<AgentVersion>() {
        Ok(v) if v >= *min => None,
        Ok(v) => Some(format!(
            "this agent ({v}) is older than the controller's minimum agent version {min}: \
             upgrade it to an agent of version {min} or later (clustermgr agent upgrade); the \
             agent's version is what `clustermgr-agent --version` prints, not its package's \
             (a repack such as {v}+up1 is still agent {v})"
        )),
        Err(_) => Some(format!(
            "this agent reports no readable version ({:?}); the controller requires {min} or \
             later",
            reported.chars().take(64).collect::<String>()
        )),
    }
}

/// Records a refused session: the node's inventory, the reason on its record (shown by
/// `node list`) and a `session.refused` audit row, in one write.
pub async fn refuse(ctl: &Ctl, id: &str, inv: Inventory, why: &str) {
    let row = Audit::new(format!("node:{id}"), "session.refused", id).failed(why);
    let inv = crate::nodes::sanitize_inventory(inv);
    let why = why.to_string();
    let r = ctl
        .store
        .update_node(
            id,
            move |n| {
                n.inventory = Some(inv.clone());
                n.refused = why.clone();
            },
            Some(row),
        )
        .await;
    if let Err(e) = r {
        tracing::error!(node = %id, error = %e, "cannot record a refused session");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> AgentVersion {
        s.parse().expect("version")
    }

    #[test]
    fn versions_order_as_releases_do() {
        assert!(v("0.2.0") > v("0.1.9"));
        assert!(v("0.10.0") > v("0.9.0"));
        assert!(v("1.0.0-rc1") < v("1.0.0"));
        // Semantic versioning's precedence: numeric identifiers as numbers, before text ones;
        // more identifiers after an equal start is newer.
        assert!(v("1.0.0-rc.2") < v("1.0.0-rc.10"));
        assert!(v("1.0.0-alpha") < v("1.0.0-alpha.1"));
        assert!(v("1.0.0-alpha.1") < v("1.0.0-alpha.beta"));
        assert!(v("1.0.0-beta.11") < v("1.0.0-rc.1"));
        assert!(v("1.0.0-1") < v("1.0.0-a"));
        assert!(v("1.0.0-rc.10") < v("1.0.0"));
        assert_eq!(v("1.0.0-rc.10+up1").to_string(), "1.0.0-rc.10");
        assert_eq!(
            v("1.0.0+build7").cmp(&v("1.0.0")),
            std::cmp::Ordering::Equal
        );
        for bad in [
            "",
            "1.0",
            "1.0.0.0",
            "a.b.c",
            "1.0.0-",
            "1.0.0-rc..1",
            "1.0.0-rc_1",
        ] {
            assert!(bad.parse::<AgentVersion>().is_err(), "{bad}");
        }
    }

    #[test]
    fn older_agents_are_refused_with_their_version_and_the_minimum() {
        let min = v("0.2.0");
        assert_eq!(refusal(None, "0.0.1"), None);
        assert_eq!(refusal(Some(&min), "0.2.0"), None);
        assert_eq!(refusal(Some(&min), "0.3.1"), None);
        let why = refusal(Some(&min), "0.1.0").expect("refused");
        assert!(
            why.starts_with(
                "this agent (0.1.0) is older than the controller's minimum agent version 0.2.0"
            ),
            "{why}"
        );
        // The minimum is an agent version: a repacked package of an older agent is refused
        // as that agent, and the message says so.
        let why = refusal(Some(&min), "0.1.0+up1").expect("refused");
        assert!(
            why.contains("minimum agent version 0.2.0")
                && why.contains("agent of version 0.2.0 or later")
                && why.contains("not its package's")
                && why.contains("0.1.0+up1 is still agent 0.1.0"),
            "{why}"
        );
        assert!(refusal(Some(&min), "garbage").is_some());
    }
}
