//! Agent versions as agents report them, ordered as semantic versioning orders them.

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
