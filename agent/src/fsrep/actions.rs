//! When actions are asked for: a service whose files replication wrote is asked of the
//! controller (which restarts it drained, `FsrepRestart`) after a quiet time ([`QUIET`]: a burst
//! asks once), and at most once per interval (the configured `action_interval_ms`): writes
//! meanwhile coalesce into the one request at the end of the interval. Files touched every
//! second ask for a service's restart once per interval, not in a loop.

use clustermgr_proto::FsrepActionRun;
use clustermgr_shared::util::now_ms;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::time::Instant;

/// Quiet time after a relayed write before its actions run.
pub(super) const QUIET: Duration = Duration::from_secs(1);

pub(super) struct Plan {
    interval: Duration,
    /// Services to restart, and when.
    due: BTreeMap<String, Instant>,
    /// When each service last ran.
    last: HashMap<String, Instant>,
}

impl Plan {
    /// `runs`: the runs since the agent started (their times carry over across streams).
    pub fn new(interval: Duration, runs: &[FsrepActionRun], now: Instant) -> Self {
        let wall = now_ms();
        let last = runs
            .iter()
            .map(|r| {
                let ago = Duration::from_millis(wall.saturating_sub(r.unix_ms));
                (r.service.clone(), now.checked_sub(ago).unwrap_or(now))
            })
            .collect();
        Self {
            interval,
            due: BTreeMap::new(),
            last,
        }
    }

    /// A write matched `service`'s action at `now`.
    pub fn touch(&mut self, service: &str, now: Instant) {
        let quiet = now + QUIET;
        let allowed = self.last.get(service).map(|t| *t + self.interval);
        let at = allowed.map_or(quiet, |a| a.max(quiet));
        self.due.insert(service.to_string(), at);
    }

    /// When the next service is due.
    pub fn next(&self) -> Option<Instant> {
        self.due.values().min().copied()
    }

    pub fn pending(&self) -> bool {
        !self.due.is_empty()
    }

    /// The services due at `now` (each recorded as run now).
    pub fn take_due(&mut self, now: Instant) -> Vec<String> {
        let ready: Vec<String> = self
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(s, _)| s.clone())
            .collect();
        for s in &ready {
            self.due.remove(s);
            self.last.insert(s.clone(), now);
        }
        ready
    }

    /// What waits for its interval: "<service>: restart deferred ..." notes (the same while it
    /// waits, so that a report goes up once).
    pub fn deferred(&self, now: Instant) -> Vec<String> {
        self.due
            .iter()
            .filter(|(_, at)| **at > now + QUIET)
            .map(|(s, _)| {
                format!(
                    "{s}: restart deferred (at most one per {} s; writes meanwhile coalesce into it)",
                    self.interval.as_secs()
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_touched_every_1_5_s_restarts_its_service_once_per_interval() {
        let t0 = Instant::now();
        let mut p = Plan::new(Duration::from_secs(60), &[], t0);
        let mut runs = Vec::new();
        // Ten minutes of a write every 1.5 s; the plan is consulted at each write and when due.
        let mut now = t0;
        let end = t0 + Duration::from_secs(600);
        while now < end {
            p.touch("idp", now);
            let next_write = now + Duration::from_millis(1500);
            while let Some(at) = p.next().filter(|at| *at <= next_write) {
                runs.extend(p.take_due(at).into_iter().map(|s| (s, at)));
            }
            now = next_write;
        }
        // The first after the quiet time, then one per minute.
        assert_eq!(runs.len(), 10, "{runs:?}");
        assert_eq!(runs[0].1, t0 + QUIET);
        for w in runs.windows(2) {
            assert!(w[1].1.duration_since(w[0].1) >= Duration::from_secs(60));
        }
        assert!(p.pending());
        assert!(p.deferred(t0 + Duration::from_secs(590))[0].starts_with("idp: restart deferred"));
    }

    #[test]
    fn a_burst_restarts_once_after_the_quiet_time_and_services_are_apart() {
        let t0 = Instant::now();
        let last = FsrepActionRun {
            service: "identity".into(),
            unix_ms: now_ms(),
            error: String::new(),
        };
        let mut p = Plan::new(Duration::from_secs(60), &[last], t0);
        for i in 0..5 {
            p.touch("idp", t0 + Duration::from_millis(100 * i));
        }
        p.touch("identity", t0);
        assert_eq!(p.next(), Some(t0 + Duration::from_millis(400) + QUIET));
        assert!(p.take_due(t0 + Duration::from_millis(500)).is_empty());
        assert_eq!(p.take_due(t0 + Duration::from_secs(2)), ["idp"]);
        // identity ran just before this stream: it waits for its interval.
        assert_eq!(p.deferred(t0 + Duration::from_secs(2)).len(), 1);
        assert!(p.take_due(t0 + Duration::from_secs(30)).is_empty());
        assert_eq!(p.take_due(t0 + Duration::from_secs(61)), ["identity"]);
        assert!(!p.pending());
    }
}
