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
/// release) and `+BUILD` (ignored), ordered as semantic versioning orders them (the agent's own
/// version, not its package's: a repack `0.1.0+up1` is agent 0.1.0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentVersion {
    numbers: [u64; 3],
    /// The pre-release's dot-separated identifiers (empty: a release).
    pre: Vec<PreId>,
}

/// One identifier of a pre-release: digits compare as numbers and before any other
/// identifier (`rc.2 < rc.10 < rc.a`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum PreId {
    Number(u64),
    Text(String),
}

impl std::fmt::Display for PreId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Text(t) => f.write_str(t),
        }
    }
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
            Some((c, p)) => {
                let ids = p.split('.').map(|id| {
                    let ok = !id.is_empty()
                        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                    match id.parse() {
                        Ok(n) if id.bytes().all(|b| b.is_ascii_digit()) => Some(PreId::Number(n)),
                        _ if ok => Some(PreId::Text(id.to_string())),
                        _ => None,
                    }
                });
                (c, ids.collect::<Option<Vec<_>>>().ok_or_else(bad)?)
            }
            None => (core, Vec::new()),
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
        for (i, id) in self.pre.iter().enumerate() {
            write!(f, "{}{id}", if i == 0 { '-' } else { '.' })?;
        }
        Ok(())
    }
}

impl Ord for AgentVersion {
    fn cmp(&self, o: &Self) -> Ordering {
        self.numbers
            .cmp(&o.numbers)
            .then_with(|| match (self.pre.is_empty(), o.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (false, true) => Ordering::Less,
                (true, false) => Ordering::Greater,
                // Identifier by identifier; a longer list that starts with the shorter is newer.
                (false, false) => self.pre.cmp(&o.pre),
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
        assert_eq!(v("1.0.0+build7").cmp(&v("1.0.0")), Ordering::Equal);
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
