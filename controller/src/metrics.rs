//! Metrics the agents push: stored raw and folded into downsampling intervals as they arrive,
//! swept by retention, queried at the finest resolution still kept for the period asked.

use crate::error::{Classify, Kind};
use crate::nodes::NodeError;
use crate::server::Ctl;
use crate::store::StoreError;
use clustermgr_proto::{
    LatestResult, MetricSeries, MetricsBatch, MetricsQuery, MetricsResult, MetricsSample,
    NodeSample, SeriesPoint,
};
use clustermgr_shared::util::now_ms;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

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

/// The latest sample of each node, in memory (for `top`).
#[derive(Default)]
pub struct Metrics {
    pub retention: Retention,
    latest: Mutex<HashMap<String, MetricsSample>>,
}

impl Metrics {
    pub fn new(retention: Retention) -> Self {
        Self {
            retention,
            latest: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, MetricsSample>> {
        self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `name{labels}` (the labels as sent, already sorted).
fn series_key(name: &str, labels: &str) -> String {
    if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{labels}}}")
    }
}

fn split_key(key: &str) -> (String, String) {
    match key.split_once('{') {
        Some((n, rest)) => (n.to_string(), rest.trim_end_matches('}').to_string()),
        None => (key.to_string(), String::new()),
    }
}

/// A node's batch: stored, and its newest sample kept for `top`.
pub async fn ingest(ctl: &Ctl, node_id: &str, batch: MetricsBatch) -> Result<(), MetricsError> {
    let Some(newest) = batch.samples.iter().max_by_key(|s| s.unix_ms).cloned() else {
        return Ok(());
    };
    // Names and labels are the agent's, capped so that a misbehaving node cannot grow keys.
    let rows: Vec<(u64, Vec<(String, f64)>)> = batch
        .samples
        .into_iter()
        .map(|s| {
            let points = s
                .points
                .into_iter()
                .take(512)
                .filter(|p| p.name.len() + p.labels.len() <= 200 && p.value.is_finite())
                .map(|p| (series_key(&p.name, &p.labels), p.value))
                .collect();
            (s.unix_ms, points)
        })
        .collect();
    ctl.store
        .add_metrics(node_id, rows, ctl.metrics.retention.levels_ms())
        .await?;
    let mut latest = ctl.metrics.lock();
    if latest
        .get(node_id)
        .is_none_or(|cur| cur.unix_ms <= newest.unix_ms)
    {
        latest.insert(node_id.to_string(), newest);
    }
    Ok(())
}

pub fn query(ctl: &Ctl, q: &MetricsQuery) -> Result<MetricsResult, MetricsError> {
    let node = crate::nodes::find(ctl, &q.node)?;
    let since = Duration::from_millis(if q.since_ms == 0 {
        3_600_000
    } else {
        q.since_ms
    });
    let from = now_ms().saturating_sub(since.as_millis() as u64);
    let res = ctl.metrics.retention.resolution_for(since);
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

pub fn latest(ctl: &Ctl) -> Result<LatestResult, MetricsError> {
    let latest = ctl.metrics.lock().clone();
    let mut nodes: Vec<NodeSample> = ctl
        .store
        .nodes()
        .map_err(NodeError::from)?
        .into_iter()
        .map(|n| NodeSample {
            status: crate::nodes::status_of(n.approved, ctl.registry.get(&n.id).is_some())
                .as_str()
                .into(),
            sample: latest.get(&n.id).cloned(),
            node_id: n.id,
            hostname: n.hostname,
        })
        .collect();
    nodes.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    Ok(LatestResult { nodes })
}

/// Sweeps by retention, every `every`.
pub fn start_sweeper(ctl: Arc<Ctl>, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = now_ms();
            let r = &ctl.metrics.retention;
            let raw_before = now.saturating_sub(r.raw.as_millis() as u64);
            let levels = r
                .levels
                .iter()
                .map(|(e, keep)| {
                    (
                        e.as_millis() as u64,
                        now.saturating_sub(keep.as_millis() as u64),
                    )
                })
                .collect();
            match ctl.store.sweep_metrics(raw_before, levels).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(rows = n, "metrics past retention dropped"),
                Err(e) => tracing::warn!(error = %e, "cannot sweep metrics"),
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
