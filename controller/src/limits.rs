//! What keeps the controller bounded: per-source limits on enrollment attempts (with failures
//! audited as one row per source and window) and retention of old records.
//!
//! Settings live in `controller.toml` (all optional):
//!
//! ```toml
//! [retention]
//! audit_days = 90         # every audit row
//! audit_max_rows = 1000000  # routine audit rows only (store/audit.rs)
//! jobs_days = 30          # finished jobs and their logs
//! tokens_days = 7         # after a token's expiry
//! sweep_interval = "1h"
//!
//! [enroll]
//! max_failures_per_window = 20
//! window = "1m"
//! ```

pub mod listener;

use crate::audit::Audit;
use crate::store::{Store, SweepLimits};
use clustermgr_shared::util::{now_ms, now_unix};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const DAY_MS: u64 = 86_400_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    pub audit_days: u64,
    pub audit_max_rows: u64,
    pub jobs_days: u64,
    pub tokens_days: u64,
    pub sweep_interval: String,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            audit_days: 90,
            audit_max_rows: 1_000_000,
            jobs_days: 30,
            tokens_days: 7,
            sweep_interval: "1h".into(),
        }
    }
}

impl Retention {
    pub fn limits(&self, now_ms: u64) -> SweepLimits {
        SweepLimits {
            audit_before_ms: now_ms.saturating_sub(self.audit_days.saturating_mul(DAY_MS)),
            audit_max_rows: self.audit_max_rows,
            jobs_before_ms: now_ms.saturating_sub(self.jobs_days.saturating_mul(DAY_MS)),
            tokens_expired_before_unix: (now_ms / 1000)
                .saturating_sub(self.tokens_days.saturating_mul(86_400)),
            batch: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnrollLimits {
    /// Failed enrollments a source may make per window before it is refused until the window ends.
    pub max_failures_per_window: u32,
    pub window: String,
}

impl Default for EnrollLimits {
    fn default() -> Self {
        Self {
            max_failures_per_window: 20,
            window: "1m".into(),
        }
    }
}

/// The sections of `controller.toml` this module reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LimitSettings {
    #[serde(default)]
    pub retention: Retention,
    #[serde(default)]
    pub enroll: EnrollLimits,
}

impl LimitSettings {
    /// Reads the `[retention]` and `[enroll]` sections of a settings file (other keys are
    /// someone else's).
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            retention: Retention,
            #[serde(default)]
            enroll: EnrollLimits,
        }
        let f: File = toml::from_str(text)?;
        Ok(Self {
            retention: f.retention,
            enroll: f.enroll,
        })
    }
}

/// Where attempts come from: an IPv4 address, or the /64 of an IPv6 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source(IpAddr);

impl Source {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let mut o = v6.octets();
                    o[8..].fill(0);
                    Self(IpAddr::V6(o.into()))
                }
            },
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => write!(f, "{a}/64"),
        }
    }
}

#[derive(Debug)]
struct Window {
    start: Instant,
    failures: u64,
    refused: u64,
}

/// Per-source counts of failed enrollments in fixed windows.
pub struct EnrollGuard {
    windows: Mutex<HashMap<Source, Window>>,
    max_failures: u64,
    window: Duration,
    max_sources: usize,
}

/// A window that ended with failures in it: one audit row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureReport {
    pub source: Source,
    pub failures: u64,
    pub refused: u64,
}

impl EnrollGuard {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            windows: Mutex::new(HashMap::new()),
            max_failures: u64::from(max_failures.max(1)),
            window,
            max_sources: 100_000,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Source, Window>> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// May this source try now? Err(seconds until it may) when it failed too often.
    pub fn admit(&self, src: Source) -> Result<(), u64> {
        let mut m = self.lock();
        let full = m.len() >= self.max_sources;
        match m.get_mut(&src) {
            Some(w) if w.failures >= self.max_failures && w.start.elapsed() < self.window => {
                w.refused += 1;
                Err(self
                    .window
                    .saturating_sub(w.start.elapsed())
                    .as_secs()
                    .max(1))
            }
            // Too many sources tracked: new ones wait for the windows to close.
            None if full => Err(self.window.as_secs().max(1)),
            _ => Ok(()),
        }
    }

    /// Counts a failed attempt.
    pub fn failed(&self, src: Source) {
        let mut m = self.lock();
        if m.len() >= self.max_sources && !m.contains_key(&src) {
            return;
        }
        let w = m.entry(src).or_insert_with(|| Window {
            start: Instant::now(),
            failures: 0,
            refused: 0,
        });
        w.failures += 1;
    }

    /// Takes the windows that have ended (all of them when `all`), for auditing.
    pub fn take_ended(&self, all: bool) -> Vec<FailureReport> {
        let mut out = Vec::new();
        self.lock().retain(|src, w| {
            let ended = all || w.start.elapsed() >= self.window;
            if ended && (w.failures > 0 || w.refused > 0) {
                out.push(FailureReport {
                    source: *src,
                    failures: w.failures,
                    refused: w.refused,
                });
            }
            !ended
        });
        out
    }

    /// Writes one audit row per ended window with failures.
    pub async fn audit_ended(&self, store: &Store, all: bool) {
        for r in self.take_ended(all) {
            let row = Audit::new(
                crate::audit::UNAUTHENTICATED,
                "node.enroll",
                r.source.to_string(),
            )
            .failed(
                &format!(
                    "{} failed enrollment attempts from {} in the last {} s ({} more refused by the rate limit)",
                    r.failures,
                    r.source,
                    self.window.as_secs(),
                    r.refused
                ),
            );
            if let Err(e) = store.append_audit(row).await {
                tracing::error!(error = %e, "cannot write the audit log");
            }
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }
}

/// At most `max` calls per principal in each fixed window, for calls that cost the controller
/// real work or leave something behind whatever the caller's role: key generation on
/// `keys rotate --dry-run`, credentials minted by `operator renew`.
pub struct PerPrincipal {
    calls: Mutex<HashMap<String, (Instant, u32)>>,
    max: u32,
    window: Duration,
}

impl PerPrincipal {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            calls: Mutex::new(HashMap::new()),
            max: max.max(1),
            window,
        }
    }

    /// Counts a call by `who`; Err(seconds until the window ends) when it is one too many.
    pub fn admit(&self, who: &str) -> Result<(), u64> {
        let mut m = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let w = m.entry(who.to_string()).or_insert((Instant::now(), 0));
        if w.0.elapsed() >= self.window {
            *w = (Instant::now(), 0);
        }
        if w.1 >= self.max {
            return Err(self.window.saturating_sub(w.0.elapsed()).as_secs().max(1));
        }
        w.1 += 1;
        Ok(())
    }
}

/// Runs a retention sweep now: deletes in batches until nothing old is left.
pub async fn sweep(store: &Store, retention: &Retention) -> anyhow::Result<crate::store::Swept> {
    let mut total = crate::store::Swept::default();
    loop {
        let limits = retention.limits(now_ms());
        let s = store.sweep(limits).await?;
        total.audit += s.audit;
        total.jobs += s.jobs;
        total.job_logs += s.job_logs;
        total.tokens += s.tokens;
        let full = s.audit >= limits.batch || s.jobs >= limits.batch || s.tokens >= limits.batch;
        if !full {
            return Ok(total);
        }
    }
}

/// Sweeps at start-up and then every `interval`.
pub fn start_sweeper(store: Store, retention: Retention, interval: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval.max(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match sweep(&store, &retention).await {
                Ok(s) if s != crate::store::Swept::default() => tracing::info!(
                    audit = s.audit,
                    jobs = s.jobs,
                    job_logs = s.job_logs,
                    tokens = s.tokens,
                    at = now_unix(),
                    "retention sweep deleted old records"
                ),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "retention sweep failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_limited_and_reported_once_per_window() {
        // A window long enough for the checks inside it on a loaded host; its end waited for.
        let g = EnrollGuard::new(3, Duration::from_secs(2));
        let a = Source::of("10.0.0.1".parse().unwrap());
        let b = Source::of("10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            g.admit(a).unwrap();
            g.failed(a);
        }
        assert!(g.admit(a).is_err());
        assert!(g.admit(a).is_err());
        g.admit(b).unwrap();
        assert!(g.take_ended(false).is_empty());
        let started = std::time::Instant::now();
        let r = loop {
            let r = g.take_ended(false);
            if !r.is_empty() || started.elapsed() > Duration::from_secs(30) {
                break r;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(
            r,
            [FailureReport {
                source: a,
                failures: 3,
                refused: 2
            }]
        );
        g.admit(a).unwrap();
    }

    #[test]
    fn calls_per_principal_are_limited_per_window() {
        let l = PerPrincipal::new(2, Duration::from_millis(200));
        assert!(l.admit("operator:v").is_ok());
        assert!(l.admit("operator:v").is_ok());
        assert!(l.admit("operator:v").is_err());
        assert!(l.admit("operator:w").is_ok());
        std::thread::sleep(Duration::from_millis(250));
        assert!(l.admit("operator:v").is_ok());
    }

    #[test]
    fn ipv6_sources_are_grouped_by_64() {
        let x = Source::of("2001:db8::1".parse().unwrap());
        let y = Source::of("2001:db8::ffff:1".parse().unwrap());
        assert_eq!(x, y);
        assert_eq!(x.to_string(), "2001:db8::/64");
    }

    #[test]
    fn settings_have_defaults_and_read_their_sections() {
        let s = LimitSettings::from_toml("listen = \"x\"\n[retention]\naudit_days = 5\n").unwrap();
        assert_eq!(s.retention.audit_days, 5);
        assert_eq!(s.retention.jobs_days, 30);
        assert_eq!(s.enroll.max_failures_per_window, 20);
    }
}
