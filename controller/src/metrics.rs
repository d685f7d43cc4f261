//! Metrics the agents push: screened against the intake limits ([`intake`]), stored raw and
//! folded into downsampling intervals as they arrive, swept by retention in bounded steps,
//! queried at the finest resolution still kept for the period asked.

use crate::ctl::Ctl;
use crate::error::{Classify, Kind};
use crate::nodes::NodeError;
use crate::store::{MetricsCut, StoreError};
use clustermgr_proto::{
    LatestResult, MetricSeries, MetricsBatch, MetricsQuery, MetricsRefusal, MetricsResult,
    MetricsSample, NodeSample, SeriesPoint,
};
use clustermgr_shared::util::now_ms;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub mod intake;
use intake::NodeIntake;
pub use intake::{Limits, series_key};

/// How long each resolution is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub raw: Duration,
    /// (interval, kept for), finest first.
    pub levels: Vec<(Duration, Duration)>,
}

impl Default for Retention {
    /// Raw 48 h, 5-minute points 30 days, hourly points a year.
    fn default() -> Self {
        Self {
            raw: Duration::from_secs(48 * 3600),
            levels: vec![
                (Duration::from_secs(300), Duration::from_secs(30 * 86400)),
                (Duration::from_secs(3600), Duration::from_secs(365 * 86400)),
            ],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("bad --metrics-retention {0:?}: {1}")]
    BadRetention(String, String),
    #[error("no samples from {0} yet")]
    NoSamples(String),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for MetricsError {
    fn kind(&self) -> Kind {
        match self {
            Self::BadRetention(..) => Kind::InvalidArgument,
            Self::NoSamples(_) => Kind::NotFound,
            Self::Node(e) => e.kind(),
            Self::Store(_) => Kind::Internal,
        }
    }
}

impl Retention {
    /// `raw=48h,5m=30d,1h=365d`: how long raw samples are kept, then each interval and how
    /// long its points are kept.
    pub fn parse(s: &str) -> Result<Self, MetricsError> {
        let bad = |m: &str| MetricsError::BadRetention(s.to_string(), m.to_string());
        let dur = |v: &str| {
            clustermgr_shared::duration::parse_duration(v).map_err(|e| bad(&e.to_string()))
        };
        let mut raw = None;
        let mut levels = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| bad("each part is KEY=DURATION"))?;
            if k.trim() == "raw" {
                raw = Some(dur(v.trim())?);
            } else {
                let every = dur(k.trim())?;
                if every.is_zero() {
                    return Err(bad("an interval must be longer than zero"));
                }
                levels.push((every, dur(v.trim())?));
            }
        }
        levels.sort();
        Ok(Self {
            raw: raw.ok_or_else(|| bad("raw=DURATION is required"))?,
            levels,
        })
    }

    /// How long anything is kept (raw samples or the longest-kept interval).
    pub fn longest(&self) -> Duration {
        self.levels
            .iter()
            .map(|(_, keep)| *keep)
            .fold(self.raw, Duration::max)
    }

    fn levels_ms(&self) -> Vec<u64> {
        self.levels
            .iter()
            .map(|(e, _)| e.as_millis() as u64)
            .collect()
    }

    /// The resolution to answer a query over the last `since`: raw while raw samples cover it,
    /// else the finest interval kept that long (else the coarsest).
    pub fn resolution_for(&self, since: Duration) -> Option<Duration> {
        if since <= self.raw || self.levels.is_empty() {
            return None;
        }
        self.levels
            .iter()
            .find(|(_, keep)| since <= *keep)
            .or(self.levels.last())
            .map(|(e, _)| *e)
    }
}

/// What the controller holds in memory per node: its latest sample (for `top`), whether it is
/// approved (metrics are taken from approved nodes only), its intake state.
struct NodeEntry {
    approved: bool,
    latest: Option<MetricsSample>,
    intake: NodeIntake,
    warned: Option<Instant>,
}

/// The metrics state: retention, intake limits, and each node's entry.
#[derive(Default)]
pub struct Metrics {
    pub retention: Retention,
    pub limits: Limits,
    nodes: Mutex<HashMap<String, NodeEntry>>,
    /// Changes once a batch of samples was stored (the console's live charts).
    stored: tokio::sync::watch::Sender<u64>,
}

impl Metrics {
    pub fn new(retention: Retention, limits: Limits) -> Self {
        Self {
            retention,
            limits,
            nodes: Mutex::default(),
            stored: tokio::sync::watch::channel(0).0,
        }
    }

    /// Changes once a batch of samples was stored.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.stored.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, NodeEntry>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets the nodes that are no longer in the cluster.
    fn retain(&self, keep: &HashSet<String>) {
        self.lock().retain(|id, _| keep.contains(id));
    }
}

fn split_key(key: &str) -> (String, String) {
    match key.split_once('{') {
        Some((n, rest)) => (n.to_string(), rest.trim_end_matches('}').to_string()),
        None => (key.to_string(), String::new()),
    }
}

/// How long a session waits before it reads the next message of a node whose batch had refused
/// points: 10 µs per point, at most a second. A node that floods is read more slowly (its
/// stream's flow control then holds the sender back), so it cannot take the controller's CPU
/// from others; a well-behaved node has nothing refused and never waits.
pub fn pause_for(refused_points: u64) -> Duration {
    Duration::from_micros(refused_points.saturating_mul(10)).min(Duration::from_secs(1))
}

/// A node's batch, screened ([`intake::screen`]), stored, and its newest sample kept for `top`.
/// Nothing is taken from a node that awaits approval. Refusals are counted, and logged at most
/// once a minute per node. Returns how long the session should pause ([`pause_for`]).
pub async fn ingest(
    ctl: &Ctl,
    m: &Metrics,
    node_id: &str,
    batch: MetricsBatch,
) -> Result<Duration, MetricsError> {
    let approved = m.lock().get(node_id).is_some_and(|e| e.approved)
        || ctl.store.node(node_id)?.is_some_and(|n| n.approved);
    let (now_ms, now) = (now_ms(), Instant::now());
    let sent: u64 = batch.samples.iter().map(|s| s.points.len() as u64).sum();
    let admitted = {
        let mut nodes = m.lock();
        let e = nodes
            .entry(node_id.to_string())
            .or_insert_with(|| NodeEntry {
                approved,
                latest: None,
                intake: NodeIntake::new(&m.limits, now),
                warned: None,
            });
        e.approved = approved;
        if !approved {
            e.intake
                .refused
                .add(MetricsRefusal::NotApproved, sent, now_ms);
            None
        } else {
            Some(intake::screen(
                &m.limits,
                m.retention.longest(),
                &mut e.intake,
                batch,
                now_ms,
                now,
            ))
        }
    };
    let taken = admitted.as_ref().map_or(0, |a| a.points);
    let over_cap = match admitted {
        Some(a) if !a.rows.is_empty() => {
            let over = ctl
                .store
                .add_metrics(node_id, a.rows, m.retention.levels_ms(), m.limits.series)
                .await?;
            m.stored.send_modify(|v| *v += 1);
            let mut nodes = m.lock();
            if let (Some(e), Some(newest)) = (nodes.get_mut(node_id), a.newest)
                && e.latest
                    .as_ref()
                    .is_none_or(|cur| cur.unix_ms <= newest.unix_ms)
            {
                e.latest = Some(newest);
            }
            over
        }
        _ => 0,
    };
    let mut nodes = m.lock();
    if let Some(e) = nodes.get_mut(node_id) {
        e.intake
            .refused
            .add(MetricsRefusal::SeriesCap, over_cap, now_ms);
        let total = e.intake.refused.total();
        if total > 0 && e.warned.is_none_or(|w| now.duration_since(w) >= WARN_EVERY) {
            e.warned = Some(now);
            tracing::warn!(node = %node_id, refused_points = total, "metrics refused from this node (limits, clock, approval); see `clustermgr top --output json`");
        }
    }
    Ok(pause_for(sent.saturating_sub(taken) + over_cap))
}

const WARN_EVERY: Duration = Duration::from_secs(60);

pub fn query(ctl: &Ctl, m: &Metrics, q: &MetricsQuery) -> Result<MetricsResult, MetricsError> {
    let node = crate::nodes::find(ctl, &q.node)?;
    let since = Duration::from_millis(if q.since_ms == 0 {
        3_600_000
    } else {
        q.since_ms
    });
    let from = now_ms().saturating_sub(since.as_millis() as u64);
    let res = m.retention.resolution_for(since);
    let mut series = Vec::new();
    for key in ctl.store.metric_series(&node.id, &q.metric)? {
        let points: Vec<SeriesPoint> = match res {
            None => ctl
                .store
                .metric_raw(&node.id, &key, from)?
                .into_iter()
                .map(|(t, v)| SeriesPoint {
                    unix_ms: t,
                    value: v,
                    min: v,
                    max: v,
                })
                .collect(),
            Some(r) => ctl
                .store
                .metric_agg(&node.id, &key, r.as_millis() as u64, from)?
                .into_iter()
                .map(|(t, avg, min, max)| SeriesPoint {
                    unix_ms: t,
                    value: avg,
                    min,
                    max,
                })
                .collect(),
        };
        if points.is_empty() {
            continue;
        }
        let (name, labels) = split_key(&key);
        series.push(MetricSeries {
            name,
            labels,
            points,
        });
    }
    Ok(MetricsResult {
        node_id: node.id,
        hostname: node.hostname,
        resolution_ms: res.map_or(0, |r| r.as_millis() as u64),
        series,
    })
}

pub fn latest(ctl: &Ctl, m: &Metrics) -> Result<LatestResult, MetricsError> {
    let records = ctl.store.nodes().map_err(NodeError::from)?;
    let entries = m.lock();
    let mut nodes: Vec<NodeSample> = records
        .into_iter()
        .map(|n| {
            let e = entries.get(&n.id);
            NodeSample {
                status: crate::nodes::status_of(n.approved, ctl.registry.get(&n.id).is_some())
                    .as_str()
                    .into(),
                sample: e.and_then(|e| e.latest.clone()),
                refused: e.map(|e| e.intake.refused.to_proto()).unwrap_or_default(),
                node_id: n.id,
                hostname: n.hostname,
            }
        })
        .collect();
    drop(entries);
    nodes.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    Ok(LatestResult { nodes })
}

/// Rows one sweep step deletes at the most (each step is one transaction).
const SWEEP_STEP_ROWS: usize = 20_000;

/// Sweeps by retention every `every`, in bounded steps, and forgets the in-memory state of nodes
/// that were removed. Rows dated after now plus the allowed skew go too (from a store written
/// before the intake limits).
pub fn start_sweeper(ctl: Arc<Ctl>, m: Arc<Metrics>, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = now_ms();
            let r = &m.retention;
            let cut = MetricsCut {
                raw_before: now.saturating_sub(r.raw.as_millis() as u64),
                levels: r
                    .levels
                    .iter()
                    .map(|(e, keep)| {
                        (
                            e.as_millis() as u64,
                            now.saturating_sub(keep.as_millis() as u64),
                        )
                    })
                    .collect(),
                future_after: now.saturating_add(m.limits.skew.as_millis() as u64),
            };
            match ctl.store.sweep_metrics(cut, SWEEP_STEP_ROWS).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(rows = n, "metrics past retention dropped"),
                Err(e) => tracing::warn!(error = %e, "cannot sweep metrics"),
            }
            if let Ok(nodes) = ctl.store.nodes() {
                m.retain(&nodes.into_iter().map(|n| n.id).collect());
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_parses_and_picks_the_finest_resolution_kept() {
        let r = Retention::parse("raw=48h, 5m=30d ,1h=365d").unwrap();
        assert_eq!(r, Retention::default());
        assert_eq!(r.resolution_for(Duration::from_secs(3600)), None);
        assert_eq!(
            r.resolution_for(Duration::from_secs(7 * 86400)),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            r.resolution_for(Duration::from_secs(90 * 86400)),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            r.resolution_for(Duration::from_secs(900 * 86400)),
            Some(Duration::from_secs(3600)),
            "beyond every level: the coarsest"
        );
        for bad in ["", "5m=30d", "raw", "raw=soon", "0s=1h,raw=1h"] {
            let e = Retention::parse(bad).unwrap_err();
            assert_eq!(e.kind(), Kind::InvalidArgument, "{bad}: {e}");
        }
    }

    #[test]
    fn series_keys_round_trip() {
        assert_eq!(series_key("load1", ""), "load1");
        let k = series_key("disk_used_bytes", "mount=\"/\"");
        assert_eq!(k, "disk_used_bytes{mount=\"/\"}");
        assert_eq!(
            split_key(&k),
            ("disk_used_bytes".to_string(), "mount=\"/\"".to_string())
        );
    }
}
