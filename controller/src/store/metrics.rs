//! The metrics tables: raw samples, their downsampled intervals, every series a node has and
//! how many. A node's series are capped here, in the transaction that would add one; the sweep
//! runs in bounded steps so that a large deletion never holds the writer for long.

use super::{NODES, Result, Store};
use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

/// Raw metric samples: (node id, series, unix ms) -> value.
const METRIC_RAW: TableDefinition<(&str, &str, u64), f64> = TableDefinition::new("metric_raw");
/// Downsampled metrics: (node id, series, interval ms, interval start) -> sum, count, min, max
/// (four little-endian f64).
const METRIC_AGG: TableDefinition<(&str, &str, u64, u64), &[u8]> =
    TableDefinition::new("metric_agg");
/// Every series a node has: (node id, series) -> time of its last sample.
const METRIC_SERIES: TableDefinition<(&str, &str), u64> = TableDefinition::new("metric_series");
/// How many series each node has (rebuilt at every open).
const METRIC_NODES: TableDefinition<&str, u64> = TableDefinition::new("metric_nodes");

/// Opens the tables and recounts each node's series.
pub(super) fn open_tables(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(METRIC_RAW)?;
    txn.open_table(METRIC_AGG)?;
    let series = txn.open_table(METRIC_SERIES)?;
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    for row in series.iter()? {
        let (k, _) = row?;
        *counts.entry(k.value().0.to_string()).or_default() += 1;
    }
    let mut nodes = txn.open_table(METRIC_NODES)?;
    nodes.retain(|_, _| false)?;
    for (n, c) in &counts {
        nodes.insert(n.as_str(), *c)?;
    }
    Ok(())
}

/// What a sweep removes: raw samples before `raw_before`, each interval's points before its
/// cut-off (`(interval ms, cut-off)`), and anything dated after `future_after`.
#[derive(Debug, Clone)]
pub struct MetricsCut {
    pub raw_before: u64,
    pub levels: Vec<(u64, u64)>,
    pub future_after: u64,
}

/// One sweep step's work, and the series the next one starts at (None: the sweep is complete).
#[derive(Debug, Default)]
pub struct SweepStep {
    pub rows: u64,
    pub series_dropped: u64,
    pub next: Option<(String, String)>,
}

/// Series a step looks at, at most.
const STEP_SERIES: usize = 2_000;

impl Store {
    /// Stores samples of one node (raw, and folded into every downsampling interval in
    /// `levels_ms`), in one transaction. A point of a series the node does not have yet is
    /// dropped when the node has `max_series` already; returns how many points were dropped so.
    pub async fn add_metrics(
        &self,
        node_id: &str,
        samples: Vec<(u64, Vec<(String, f64)>)>,
        levels_ms: Vec<u64>,
        max_series: u64,
    ) -> Result<u64> {
        let node = node_id.to_string();
        self.submit(move |txn| {
            let mut raw = txn.open_table(METRIC_RAW)?;
            let mut agg = txn.open_table(METRIC_AGG)?;
            let mut series = txn.open_table(METRIC_SERIES)?;
            let mut counts = txn.open_table(METRIC_NODES)?;
            let n = node.as_str();
            let mut count = counts.get(n)?.map_or(0, |g| g.value());
            let mut refused = 0u64;
            for (ts, points) in &samples {
                for (name, v) in points {
                    let last = series.get((n, name.as_str()))?.map(|g| g.value());
                    match last {
                        None if count >= max_series => {
                            refused += 1;
                            continue;
                        }
                        None => count += 1,
                        Some(_) => {}
                    }
                    raw.insert((n, name.as_str(), *ts), *v)?;
                    if last.is_none_or(|l| *ts > l) {
                        series.insert((n, name.as_str()), *ts)?;
                    }
                    for res in &levels_ms {
                        let start = ts - ts % res.max(&1);
                        let key = (n, name.as_str(), *res, start);
                        let cur = agg.get(key)?.map(|g| unpack(g.value()));
                        let next = match cur {
                            Some([sum, count, min, max]) => {
                                [sum + v, count + 1.0, min.min(*v), max.max(*v)]
                            }
                            None => [*v, 1.0, *v, *v],
                        };
                        agg.insert(key, pack(next).as_slice())?;
                    }
                }
            }
            counts.insert(n, count)?;
            Ok(refused)
        })
        .await
    }

    /// A node's series whose name starts with `prefix`.
    pub fn metric_series(&self, node_id: &str, prefix: &str) -> Result<Vec<String>> {
        self.read(|txn| {
            let t = txn.open_table(METRIC_SERIES)?;
            let mut out = Vec::new();
            for row in t.range((node_id, prefix)..)? {
                let (k, _) = row?;
                let (n, name) = k.value();
                if n != node_id || !name.starts_with(prefix) {
                    break;
                }
                out.push(name.to_string());
            }
            Ok(out)
        })
    }

    /// How many series a node has.
    pub fn metric_series_count(&self, node_id: &str) -> Result<u64> {
        self.read(|txn| {
            let t = txn.open_table(METRIC_NODES)?;
            Ok(t.get(node_id)?.map_or(0, |g| g.value()))
        })
    }

    /// Raw samples of one series from `since` (unix ms), oldest first.
    pub fn metric_raw(&self, node_id: &str, series: &str, since: u64) -> Result<Vec<(u64, f64)>> {
        self.read(|txn| {
            let t = txn.open_table(METRIC_RAW)?;
            let mut out = Vec::new();
            for row in t.range((node_id, series, since)..=(node_id, series, u64::MAX))? {
                let (k, v) = row?;
                out.push((k.value().2, v.value()));
            }
            Ok(out)
        })
    }

    /// Downsampled points of one series at interval `res_ms` from `since`: (start, avg, min, max).
    pub fn metric_agg(
        &self,
        node_id: &str,
        series: &str,
        res_ms: u64,
        since: u64,
    ) -> Result<Vec<(u64, f64, f64, f64)>> {
        self.read(|txn| {
            let t = txn.open_table(METRIC_AGG)?;
            let mut out = Vec::new();
            let from = since - since % res_ms.max(1);
            for row in
                t.range((node_id, series, res_ms, from)..=(node_id, series, res_ms, u64::MAX))?
            {
                let (k, v) = row?;
                let [sum, count, min, max] = unpack(v.value());
                out.push((k.value().3, sum / count.max(1.0), min, max));
            }
            Ok(out)
        })
    }

    /// One step of a sweep, in its own transaction: from series `from` on (the first when
    /// None), deletes at most `max_rows` rows past `cut` (every row of a removed node's
    /// series) and forgets series left with no rows. The next step starts where this one
    /// stopped.
    pub async fn sweep_metrics_step(
        &self,
        cut: MetricsCut,
        from: Option<(String, String)>,
        max_rows: usize,
    ) -> Result<SweepStep> {
        self.submit(move |txn| {
            let mut raw = txn.open_table(METRIC_RAW)?;
            let mut agg = txn.open_table(METRIC_AGG)?;
            let mut series = txn.open_table(METRIC_SERIES)?;
            let mut counts = txn.open_table(METRIC_NODES)?;
            let nodes = txn.open_table(NODES)?;
            let batch: Vec<(String, String)> = {
                let range = match &from {
                    Some((n, s)) => series.range((n.as_str(), s.as_str())..)?,
                    None => series.range::<(&str, &str)>(..)?,
                };
                let mut out = Vec::new();
                for row in range.take(STEP_SERIES + 1) {
                    let (k, _) = row?;
                    let (n, s) = k.value();
                    out.push((n.to_string(), s.to_string()));
                }
                out
            };
            let mut step = SweepStep::default();
            let max_rows = max_rows.max(1);
            let mut left = max_rows;
            let after = batch.get(STEP_SERIES).cloned();
            for (n, s) in batch.iter().take(STEP_SERIES) {
                let (n, s) = (n.as_str(), s.as_str());
                let gone = nodes.get(n)?.is_none();
                let (raw_before, future_after) = if gone {
                    (u64::MAX, 0)
                } else {
                    (cut.raw_before, cut.future_after)
                };
                let mut done = drop_raw(&mut raw, (n, s), 0, raw_before, &mut left)?;
                done &= drop_raw(&mut raw, (n, s), future_after + 1, u64::MAX, &mut left)?;
                let levels: Vec<(u64, u64)> = if gone {
                    all_levels(&agg, (n, s))?
                        .into_iter()
                        .map(|r| (r, u64::MAX))
                        .collect()
                } else {
                    cut.levels.clone()
                };
                for (res, before) in levels {
                    done &= drop_agg(&mut agg, (n, s, res), 0, before, &mut left)?;
                    done &= drop_agg(&mut agg, (n, s, res), future_after + 1, u64::MAX, &mut left)?;
                }
                if !done {
                    // Out of rows for this step: the next one goes on with this series.
                    step.next = Some((n.to_string(), s.to_string()));
                    step.rows = (max_rows - left) as u64;
                    return Ok(step);
                }
                let empty = raw.range((n, s, 0)..=(n, s, u64::MAX))?.next().is_none()
                    && !has_agg(&agg, (n, s))?;
                if empty {
                    series.remove((n, s))?;
                    let c = counts.get(n)?.map_or(0, |g| g.value()).saturating_sub(1);
                    if c == 0 {
                        counts.remove(n)?;
                    } else {
                        counts.insert(n, c)?;
                    }
                    step.series_dropped += 1;
                } else if !gone
                    && series
                        .get((n, s))?
                        .is_some_and(|g| g.value() > cut.future_after)
                {
                    series.insert((n, s), cut.future_after)?;
                }
            }
            step.rows = (max_rows - left) as u64;
            step.next = after;
            Ok(step)
        })
        .await
    }

    /// A whole sweep, step after step (each its own transaction). Returns the rows deleted.
    pub async fn sweep_metrics(&self, cut: MetricsCut, step_rows: usize) -> Result<u64> {
        let mut from = None;
        let mut rows = 0;
        loop {
            let step = self
                .sweep_metrics_step(cut.clone(), from, step_rows)
                .await?;
            rows += step.rows;
            match step.next {
                Some(next) => from = Some(next),
                None => return Ok(rows),
            }
            tokio::task::yield_now().await;
        }
    }
}

type RawTable<'t> = Table<'t, (&'static str, &'static str, u64), f64>;
type AggTable<'t> = Table<'t, (&'static str, &'static str, u64, u64), &'static [u8]>;

/// Removes the first `left` of `keys` (read up to `left + 1`) with `remove`; true when all went.
fn drop_keys(
    keys: Vec<u64>,
    left: &mut usize,
    mut remove: impl FnMut(u64) -> Result<()>,
) -> Result<bool> {
    let complete = keys.len() <= *left;
    for k in keys.iter().take(*left) {
        remove(*k)?;
    }
    *left -= keys.len().min(*left);
    Ok(complete)
}

/// Deletes raw rows of series `k` dated `from..to` (at most `left`; true when none is left).
fn drop_raw(
    t: &mut RawTable<'_>,
    k: (&str, &str),
    from: u64,
    to: u64,
    left: &mut usize,
) -> Result<bool> {
    if from >= to {
        return Ok(true);
    }
    let keys: Vec<u64> = t
        .range((k.0, k.1, from)..(k.0, k.1, to))?
        .take(*left + 1)
        .map(|r| r.map(|(key, _)| key.value().2))
        .collect::<std::result::Result<_, _>>()?;
    drop_keys(keys, left, |ts| Ok(t.remove((k.0, k.1, ts)).map(drop)?))
}

/// Deletes downsampled rows of series and interval `k` starting `from..to`.
fn drop_agg(
    t: &mut AggTable<'_>,
    k: (&str, &str, u64),
    from: u64,
    to: u64,
    left: &mut usize,
) -> Result<bool> {
    if from >= to {
        return Ok(true);
    }
    let keys: Vec<u64> = t
        .range((k.0, k.1, k.2, from)..(k.0, k.1, k.2, to))?
        .take(*left + 1)
        .map(|r| r.map(|(key, _)| key.value().3))
        .collect::<std::result::Result<_, _>>()?;
    drop_keys(keys, left, |start| {
        Ok(t.remove((k.0, k.1, k.2, start)).map(drop)?)
    })
}

/// The intervals a series has downsampled rows in.
fn all_levels(t: &AggTable<'_>, k: (&str, &str)) -> Result<Vec<u64>> {
    let mut out: Vec<u64> = Vec::new();
    let mut at = 0u64;
    loop {
        let next = t
            .range((k.0, k.1, at, 0)..=(k.0, k.1, u64::MAX, u64::MAX))?
            .next()
            .transpose()?
            .map(|(key, _)| key.value().2);
        match next {
            Some(res) => {
                out.push(res);
                match res.checked_add(1) {
                    Some(n) => at = n,
                    None => return Ok(out),
                }
            }
            None => return Ok(out),
        }
    }
}

fn has_agg(t: &AggTable<'_>, k: (&str, &str)) -> Result<bool> {
    Ok(t.range((k.0, k.1, 0, 0)..=(k.0, k.1, u64::MAX, u64::MAX))?
        .next()
        .is_some())
}

fn pack(v: [f64; 4]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, x) in v.iter().enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&x.to_le_bytes());
    }
    out
}

fn unpack(b: &[u8]) -> [f64; 4] {
    let mut out = [0f64; 4];
    for (i, o) in out.iter_mut().enumerate() {
        if let Some(chunk) = b.get(i * 8..i * 8 + 8) {
            let mut a = [0u8; 8];
            a.copy_from_slice(chunk);
            *o = f64::from_le_bytes(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clustermgr_proto::NodeRecord;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    async fn add_node(store: &Store, id: &str) {
        let rec = NodeRecord {
            id: id.into(),
            hostname: format!("{id}.test"),
            ..Default::default()
        };
        store
            .submit(move |txn| crate::store::put(txn, NODES, &rec.id, &rec))
            .await
            .unwrap();
    }

    fn cut(raw_before: u64, levels: Vec<(u64, u64)>) -> MetricsCut {
        MetricsCut {
            raw_before,
            levels,
            future_after: u64::MAX - 1,
        }
    }

    #[test]
    fn metrics_are_folded_into_intervals_and_swept_by_retention() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let rt = rt();
        rt.block_on(add_node(&store, "n1"));
        // Samples every 500 ms for 10 s, value = second; intervals of 2 s and 5 s.
        let samples: Vec<(u64, Vec<(String, f64)>)> = (0..20u64)
            .map(|i| {
                let t = 100_000 + i * 500;
                (
                    t,
                    vec![
                        ("load1".to_string(), (i / 2) as f64),
                        ("cpu".to_string(), 1.0),
                    ],
                )
            })
            .collect();
        let refused = rt
            .block_on(store.add_metrics("n1", samples, vec![2000, 5000], 10))
            .unwrap();
        assert_eq!(refused, 0);
        assert_eq!(store.metric_series("n1", "").unwrap(), vec!["cpu", "load1"]);
        assert_eq!(store.metric_series("n1", "lo").unwrap(), vec!["load1"]);
        assert_eq!(store.metric_series_count("n1").unwrap(), 2);
        assert!(store.metric_series("n2", "").unwrap().is_empty());
        assert_eq!(store.metric_raw("n1", "load1", 0).unwrap().len(), 20);
        let two = store.metric_agg("n1", "load1", 2000, 0).unwrap();
        assert_eq!(two.len(), 5);
        // 100000..102000: samples of seconds 0,0,1,1 -> avg 0.5, min 0, max 1.
        assert_eq!(two[0], (100_000, 0.5, 0.0, 1.0));
        let five = store.metric_agg("n1", "load1", 5000, 0).unwrap();
        assert_eq!(five.len(), 2);
        assert_eq!(five[1].0, 105_000);
        // Retention: raw before 105000, 2-s points before 104000; 5-s points kept. Steps of
        // 3 rows at the most: the sweep goes on until everything due is gone.
        let gone = rt
            .block_on(store.sweep_metrics(cut(105_000, vec![(2000, 104_000), (5000, 0)]), 3))
            .unwrap();
        assert_eq!(gone, 2 * 10 + 2 * 2);
        let raw = store.metric_raw("n1", "load1", 0).unwrap();
        assert_eq!(raw.first().unwrap().0, 105_000);
        assert_eq!(
            store.metric_agg("n1", "load1", 2000, 0).unwrap()[0].0,
            104_000
        );
        assert_eq!(store.metric_agg("n1", "load1", 5000, 0).unwrap().len(), 2);
        // Everything expired: the series are forgotten too.
        let cut_all = cut(u64::MAX - 1, vec![(2000, u64::MAX), (5000, u64::MAX)]);
        rt.block_on(store.sweep_metrics(cut_all, 1000)).unwrap();
        assert!(store.metric_series("n1", "").unwrap().is_empty());
        assert_eq!(store.metric_series_count("n1").unwrap(), 0);
    }

    #[test]
    fn series_are_capped_per_node_and_counted_again_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let rt = rt();
        {
            let store = Store::open(&path).unwrap();
            let points = |names: std::ops::Range<u32>| {
                vec![(1_000u64, names.map(|i| (format!("s{i:03}"), 1.0)).collect())]
            };
            let refused = rt
                .block_on(store.add_metrics("n1", points(0..8), vec![], 5))
                .unwrap();
            assert_eq!(refused, 3);
            // Known series still take points; new ones are still refused.
            let refused = rt
                .block_on(store.add_metrics("n1", points(0..10), vec![], 5))
                .unwrap();
            assert_eq!(refused, 5);
            assert_eq!(store.metric_raw("n1", "s000", 0).unwrap().len(), 1);
            let other = rt
                .block_on(store.add_metrics("n2", points(0..2), vec![], 5))
                .unwrap();
            assert_eq!(other, 0, "the cap is per node");
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.metric_series_count("n1").unwrap(), 5);
        assert_eq!(store.metric_series_count("n2").unwrap(), 2);
    }

    #[test]
    fn the_sweep_drops_future_rows_and_removed_nodes_in_bounded_steps() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let rt = rt();
        rt.block_on(add_node(&store, "live"));
        let year_2100 = 4_102_444_800_000u64;
        let samples: Vec<(u64, Vec<(String, f64)>)> = (0..50u64)
            .map(|i| (1_000 + i, vec![("ok".to_string(), 1.0)]))
            .chain((0..50u64).map(|i| (year_2100 + i, vec![("future".to_string(), 1.0)])))
            .collect();
        rt.block_on(store.add_metrics("live", samples.clone(), vec![10], 10))
            .unwrap();
        // "gone" has no node record: everything it had goes.
        rt.block_on(store.add_metrics("gone", samples, vec![10], 10))
            .unwrap();
        let c = MetricsCut {
            raw_before: 0,
            levels: vec![(10, 0)],
            future_after: 10_000,
        };
        // One step deletes 7 rows at the most.
        let step = rt
            .block_on(store.sweep_metrics_step(c.clone(), None, 7))
            .unwrap();
        assert_eq!(step.rows, 7);
        assert!(step.next.is_some(), "more is due");
        rt.block_on(store.sweep_metrics(c, 7)).unwrap();
        assert!(store.metric_series("gone", "").unwrap().is_empty());
        assert_eq!(store.metric_series_count("gone").unwrap(), 0);
        assert_eq!(store.metric_series("live", "").unwrap(), vec!["ok"]);
        assert_eq!(store.metric_raw("live", "ok", 0).unwrap().len(), 50);
        assert!(store.metric_raw("live", "future", 0).unwrap().is_empty());
        assert!(
            store
                .metric_agg("live", "future", 10, 0)
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.metric_agg("live", "ok", 10, 0).unwrap().len(), 5);
    }
}
