//! What the controller takes from a node's metrics: the limits (`serve --metrics-limits`) and
//! the screening of each batch against them, before anything reaches the store. A node's
//! credential is enough to send metrics, so everything here assumes a hostile sender: it can
//! store at most `burst + rate × seconds` points in any period, in at most `series` series, dated
//! within [now − the longest retention, now + skew], with names and labels the exposition format
//! accepts; the rest is counted per reason and dropped.

use clustermgr_proto::{MetricsBatch, MetricsRefusal, MetricsRefused, MetricsSample};
use clustermgr_shared::exposition;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The limits on one node's metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Samples in one batch (an agent buffers 240 while disconnected).
    pub batch: usize,
    /// Points in one sample.
    pub points: usize,
    /// Points per second a node may store, sustained.
    pub rate: f64,
    /// Points a node may store at once above the rate (a reconnecting agent's backlog).
    pub burst: f64,
    /// Series one node may have.
    pub series: u64,
    /// How far ahead of the controller's clock a sample may be dated.
    pub skew: Duration,
}

impl Default for Limits {
    /// Batches of 240 samples of 512 points; 100 points/s with a burst of 30,000; 1,024 series
    /// per node; 5 minutes of clock skew. An agent on a Gluu node sends about 50 points every
    /// 15 s (3 points/s) in about 60 series.
    fn default() -> Self {
        Self {
            batch: 240,
            points: 512,
            rate: 100.0,
            burst: 30_000.0,
            series: 1024,
            skew: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("bad --metrics-limits {0:?}: {1}")]
pub struct BadLimits(pub String, pub String);

impl Limits {
    /// `rate=100,burst=30000,series=1024,skew=5m,batch=240,points=512`; keys left out keep
    /// their defaults.
    pub fn parse(s: &str) -> Result<Self, BadLimits> {
        let bad = |m: String| BadLimits(s.to_string(), m);
        let mut l = Self::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| bad("each part is KEY=VALUE".into()))?;
            let (k, v) = (k.trim(), v.trim());
            let num = |v: &str| -> Result<u64, BadLimits> {
                v.parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad(format!("{k} must be a whole number above 0")))
            };
            match k {
                "batch" => l.batch = num(v)? as usize,
                "points" => l.points = num(v)? as usize,
                "rate" => l.rate = num(v)? as f64,
                "burst" => l.burst = num(v)? as f64,
                "series" => l.series = num(v)?,
                "skew" => {
                    l.skew = clustermgr_shared::duration::parse_duration(v)
                        .map_err(|e| bad(e.to_string()))?
                }
                other => {
                    return Err(bad(format!(
                        "unknown key {other:?} (batch, points, rate, burst, series, skew)"
                    )));
                }
            }
        }
        Ok(l)
    }

    /// The most points a node can store in `secs` seconds (the bound the limits guarantee).
    pub fn bound(&self, secs: f64) -> f64 {
        self.burst + self.rate * secs
    }
}

/// A token bucket of points, refilled at the rate up to the burst.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, n: f64, l: &Limits, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * l.rate).min(l.burst);
        self.at = now;
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

/// Points refused by reason, for `top --output json` and the Prometheus endpoint.
#[derive(Debug, Clone, Default)]
pub struct Refusals(HashMap<i32, (u64, u64)>);

impl Refusals {
    pub fn add(&mut self, reason: MetricsRefusal, points: u64, now_ms: u64) {
        if points == 0 {
            return;
        }
        let e = self.0.entry(reason as i32).or_default();
        e.0 += points;
        e.1 = now_ms;
    }

    pub fn total(&self) -> u64 {
        self.0.values().map(|(n, _)| n).sum()
    }

    pub fn to_proto(&self) -> Vec<MetricsRefused> {
        let mut out: Vec<MetricsRefused> = self
            .0
            .iter()
            .map(|(r, (points, at))| MetricsRefused {
                reason: *r,
                points: *points,
                last_unix_ms: *at,
            })
            .collect();
        out.sort_by_key(|r| r.reason);
        out
    }
}

/// One node's intake state.
#[derive(Debug, Clone)]
pub struct NodeIntake {
    bucket: Bucket,
    pub refused: Refusals,
}

impl NodeIntake {
    pub fn new(l: &Limits, now: Instant) -> Self {
        Self {
            bucket: Bucket {
                tokens: l.burst,
                at: now,
            },
            refused: Refusals::default(),
        }
    }
}

/// What passes screening: rows for the store (time, canonical series key, value), and the
/// newest sample as stored (for `top`).
#[derive(Debug, Default)]
pub struct Admitted {
    pub rows: Vec<(u64, Vec<(String, f64)>)>,
    pub newest: Option<MetricsSample>,
    pub points: u64,
}

/// `name{labels}` (labels canonical).
pub fn series_key(name: &str, labels: &str) -> String {
    if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{labels}}}")
    }
}

/// Screens a batch of an approved node: the rules above, in order (batch size, dates, rate, names
/// and labels: the rate is taken before the points are read, so that a flood costs little).
/// Refused points are added to `node.refused`.
pub fn screen(
    l: &Limits,
    kept_for: Duration,
    node: &mut NodeIntake,
    batch: MetricsBatch,
    now_ms: u64,
    now: Instant,
) -> Admitted {
    let mut out = Admitted::default();
    let total = |b: &MetricsBatch| b.samples.iter().map(|s| s.points.len() as u64).sum();
    if batch.samples.len() > l.batch {
        node.refused
            .add(MetricsRefusal::BatchTooLarge, total(&batch), now_ms);
        return out;
    }
    let oldest = now_ms.saturating_sub(kept_for.as_millis() as u64);
    let newest = now_ms.saturating_add(l.skew.as_millis() as u64);
    for s in batch.samples {
        let n = s.points.len() as u64;
        if s.unix_ms < oldest || s.unix_ms > newest {
            node.refused.add(MetricsRefusal::OutOfWindow, n, now_ms);
            continue;
        }
        if !node.bucket.take(n.min(l.points as u64) as f64, l, now) {
            node.refused.add(MetricsRefusal::Rate, n, now_ms);
            continue;
        }
        let mut kept = Vec::with_capacity(s.points.len().min(l.points));
        let mut rows = Vec::with_capacity(kept.capacity());
        let mut invalid = n.saturating_sub(l.points as u64);
        for mut p in s.points.into_iter().take(l.points) {
            let labels = exposition::check_name(&p.name)
                .and_then(|()| exposition::canonical_labels(&p.labels));
            match labels {
                Ok(labels) if p.value.is_finite() => {
                    rows.push((series_key(&p.name, &labels), p.value));
                    p.labels = labels;
                    kept.push(p);
                }
                _ => invalid += 1,
            }
        }
        node.refused.add(MetricsRefusal::Invalid, invalid, now_ms);
        if rows.is_empty() {
            continue;
        }
        out.points += rows.len() as u64;
        if out.newest.as_ref().is_none_or(|x| x.unix_ms <= s.unix_ms) {
            out.newest = Some(MetricsSample {
                unix_ms: s.unix_ms,
                points: kept,
            });
        }
        out.rows.push((s.unix_ms, rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clustermgr_proto::MetricPoint;

    const NOW: u64 = 1_800_000_000_000;
    const RAW: Duration = Duration::from_secs(48 * 3600);

    fn sample(ts: u64, points: Vec<(&str, &str, f64)>) -> MetricsSample {
        MetricsSample {
            unix_ms: ts,
            points: points
                .into_iter()
                .map(|(n, l, v)| MetricPoint {
                    name: n.into(),
                    labels: l.into(),
                    value: v,
                })
                .collect(),
        }
    }

    fn refused(n: &NodeIntake, r: MetricsRefusal) -> u64 {
        n.refused.0.get(&(r as i32)).map_or(0, |e| e.0)
    }

    /// Case table: one batch each, what is stored and what is refused why.
    #[test]
    fn batches_are_screened_by_size_date_form_and_rate() {
        let l = Limits {
            batch: 3,
            points: 2,
            rate: 1.0,
            burst: 4.0,
            ..Limits::default()
        };
        let t0 = Instant::now();
        let ok = |ts| sample(ts, vec![("load1", "", 1.0)]);
        type Case = (&'static str, Vec<MetricsSample>, u64, MetricsRefusal, u64);
        let cases: Vec<Case> = vec![
            (
                "a good sample",
                vec![ok(NOW)],
                1,
                MetricsRefusal::Unspecified,
                0,
            ),
            (
                "too many samples",
                vec![ok(NOW), ok(NOW), ok(NOW), ok(NOW)],
                0,
                MetricsRefusal::BatchTooLarge,
                4,
            ),
            (
                "year 2100",
                vec![ok(4_102_444_800_000)],
                0,
                MetricsRefusal::OutOfWindow,
                1,
            ),
            (
                "older than any retention",
                vec![ok(NOW - 49 * 3600 * 1000)],
                0,
                MetricsRefusal::OutOfWindow,
                1,
            ),
            (
                "within the skew",
                vec![ok(NOW + 60_000)],
                1,
                MetricsRefusal::Unspecified,
                0,
            ),
            (
                "a newline in a label",
                vec![sample(
                    NOW,
                    vec![("load1", "k=\"v\"}\nclustermgr_node_online{node=\"x\"", 1.0)],
                )],
                0,
                MetricsRefusal::Invalid,
                1,
            ),
            (
                "a bad name",
                vec![sample(NOW, vec![("a b", "", 1.0)])],
                0,
                MetricsRefusal::Invalid,
                1,
            ),
            (
                "not finite",
                vec![sample(NOW, vec![("x", "", f64::NAN)])],
                0,
                MetricsRefusal::Invalid,
                1,
            ),
            (
                "points over the cap",
                vec![sample(
                    NOW,
                    vec![("a", "", 1.0), ("b", "", 1.0), ("c", "", 1.0)],
                )],
                2,
                MetricsRefusal::Invalid,
                1,
            ),
        ];
        for (what, samples, stored, reason, count) in cases {
            let mut n = NodeIntake::new(&l, t0);
            let a = screen(&l, RAW, &mut n, MetricsBatch { samples }, NOW, t0);
            assert_eq!(a.points, stored, "{what}: stored");
            if reason != MetricsRefusal::Unspecified {
                assert_eq!(refused(&n, reason), count, "{what}: refused");
            }
            assert_eq!(n.refused.total(), count, "{what}: nothing else refused");
        }
    }

    #[test]
    fn the_rate_bounds_what_a_flood_stores() {
        let l = Limits {
            rate: 10.0,
            burst: 100.0,
            ..Limits::default()
        };
        let t0 = Instant::now();
        let mut n = NodeIntake::new(&l, t0);
        let mut stored = 0;
        // 60 s of batches of 50 points every 100 ms: 30,000 points sent.
        for i in 0..600u64 {
            let now = t0 + Duration::from_millis(i * 100);
            let s = sample(NOW, (0..50).map(|_| ("x", "", 1.0)).collect());
            stored += screen(&l, RAW, &mut n, MetricsBatch { samples: vec![s] }, NOW, now).points;
        }
        assert!(stored as f64 <= l.bound(60.0), "{stored}");
        assert!(stored >= 600, "the rate is still served: {stored}");
        assert_eq!(refused(&n, MetricsRefusal::Rate) + stored, 30_000);
    }

    #[test]
    fn labels_are_stored_canonically() {
        let l = Limits::default();
        let t0 = Instant::now();
        let mut n = NodeIntake::new(&l, t0);
        let s = sample(NOW, vec![("disk_used_bytes", "b=\"2\",a=\"1\"", 5.0)]);
        let a = screen(&l, RAW, &mut n, MetricsBatch { samples: vec![s] }, NOW, t0);
        assert_eq!(a.rows[0].1[0].0, "disk_used_bytes{a=\"1\",b=\"2\"}");
        assert_eq!(a.newest.unwrap().points[0].labels, "a=\"1\",b=\"2\"");
    }

    #[test]
    fn limits_parse() {
        assert_eq!(Limits::parse("").unwrap(), Limits::default());
        let l = Limits::parse("rate=5, burst=50,series=9,skew=1m").unwrap();
        assert_eq!((l.rate, l.burst, l.series), (5.0, 50.0, 9));
        assert_eq!(l.skew, Duration::from_secs(60));
        for bad in ["rate", "rate=0", "rate=-1", "speed=3", "skew=soon"] {
            assert!(Limits::parse(bad).is_err(), "{bad}");
        }
    }
}
