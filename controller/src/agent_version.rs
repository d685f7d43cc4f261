//! The minimum agent version (`serve --min-agent-version`, `min_agent_version` in
//! controller.toml): an agent older than it is refused at session start. Its inventory is
//! recorded with the refusal, so `node list` shows the node `refused` with its version, the
//! audit log has a `session.refused` row, and the agent logs the controller's reason each time
//! it tries again (it keeps trying: an upgraded agent, or a lowered minimum, gets in).

use crate::audit::Audit;
use crate::server::Ctl;
use clustermgr_proto::Inventory;
use std::cmp::Ordering;

/// A version as agents report theirs: `MAJOR.MINOR.PATCH`, optionally `-PRE` (older than the
/// release) and `+BUILD` (ignored), as in semantic versioning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentVersion {
    numbers: [u64; 3],
    pre: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a version (MAJOR.MINOR.PATCH, e.g. 0.2.0)")]
pub struct BadVersion(String);

impl std::str::FromStr for AgentVersion {
    type Err = BadVersion;
    fn from_str(s: &str) -> Result<Self, BadVersion> {
        let bad = || BadVersion(s.chars().take(64).collect());
        let core = s.trim().split('+').next().unwrap_or_default();
        let (core, pre) = match core.split_once('-') {
            Some((c, p)) if !p.is_empty() => (c, Some(p.to_string())),
            Some(_) => return Err(bad()),
            None => (core, None),
        };
        let parts: Vec<&str> = core.split('.').collect();
        if parts.len() != 3 {
            return Err(bad());
        }
        let mut numbers = [0u64; 3];
        for (n, p) in numbers.iter_mut().zip(parts) {
            *n = p.parse().map_err(|_| bad())?;
        }
        Ok(Self { numbers, pre })
    }
}

impl std::fmt::Display for AgentVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c] = self.numbers;
        write!(f, "{a}.{b}.{c}")?;
        if let Some(p) = &self.pre {
            write!(f, "-{p}")?;
        }
        Ok(())
    }
}

impl Ord for AgentVersion {
    fn cmp(&self, o: &Self) -> Ordering {
        self.numbers
            .cmp(&o.numbers)
            .then_with(|| match (&self.pre, &o.pre) {
                (None, None) => Ordering::Equal,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(a), Some(b)) => a.cmp(b),
            })
    }
}

impl PartialOrd for AgentVersion {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// Why an agent reporting `reported` is refused under `min`, if it is.
pub fn refusal(min: Option<&AgentVersion>, reported: &str) -> Option<String> {
    let min = min?;
    match reported.parse::<AgentVersion>() {
        Ok(v) if v >= *min => None,
        Ok(v) => Some(format!(
            "this agent ({v}) is older than the controller's minimum agent version {min}: \
             upgrade it (clustermgr agent upgrade, or install clustermgr-agent {min} or later)"
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
        assert_eq!(v("1.0.0+build7").cmp(&v("1.0.0")), Ordering::Equal);
        for bad in ["", "1.0", "1.0.0.0", "a.b.c", "1.0.0-"] {
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
        assert!(refusal(Some(&min), "garbage").is_some());
    }
}
