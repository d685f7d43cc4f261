//! `clustermgr metrics NODE` (one node's series over a period) and `clustermgr top` (every
//! node's latest sample, redrawn until interrupted).

use crate::client::{channel, explain};
use crate::context::{Ctx, Exit};
use crate::output::{Render, render, table};
use anyhow::{Context, Result};
use clustermgr_proto::metrics_client::MetricsClient;
use clustermgr_proto::{LatestRequest, LatestResult, MetricsQuery, MetricsResult, MetricsSample};
use clustermgr_shared::util::{fmt_ms, now_ms};
use serde_json::{Value, json};
use std::io::Write;
use std::time::Duration;

impl Render for MetricsResult {
    fn json(&self) -> Value {
        json!({
            "node_id": self.node_id, "hostname": self.hostname,
            "resolution_ms": self.resolution_ms,
            "series": self.series.iter().map(|s| json!({
                "name": s.name, "labels": s.labels,
                "points": s.points.iter().map(|p| json!({
                    "time": fmt_ms(p.unix_ms), "unix_ms": p.unix_ms, "value": p.value,
                    "min": p.min, "max": p.max,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }

    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{} ({}), {}",
            self.hostname,
            self.node_id,
            if self.resolution_ms == 0 {
                "raw samples".to_string()
            } else {
                format!("averages over {} s", self.resolution_ms as f64 / 1000.0)
            }
        )?;
        let mut t = table(&["SERIES", "LAST", "MIN", "AVG", "MAX", "POINTS", "SINCE"]);
        for s in &self.series {
            let n = s.points.len() as f64;
            let avg = s.points.iter().map(|p| p.value).sum::<f64>() / n.max(1.0);
            let min = s.points.iter().map(|p| p.min).fold(f64::INFINITY, f64::min);
            let max = s
                .points
                .iter()
                .map(|p| p.max)
                .fold(f64::NEG_INFINITY, f64::max);
            let name = if s.labels.is_empty() {
                s.name.clone()
            } else {
                format!("{}{{{}}}", s.name, s.labels)
            };
            t.add_row(vec![
                name,
                s.points.last().map_or("-".into(), |p| num(p.value)),
                num(min),
                num(avg),
                num(max),
                s.points.len().to_string(),
                s.points.first().map_or("-".into(), |p| fmt_ms(p.unix_ms)),
            ]);
        }
        writeln!(out, "{t}")
    }
}

fn num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn value(s: &MetricsSample, name: &str, labels: &str) -> Option<f64> {
    s.points
        .iter()
        .find(|p| p.name == name && p.labels == labels)
        .map(|p| p.value)
}

impl Render for LatestResult {
    fn json(&self) -> Value {
        Value::Array(
            self.nodes
                .iter()
                .map(|n| {
                    json!({
                        "node_id": n.node_id, "hostname": n.hostname, "status": n.status,
                        "time": n.sample.as_ref().map(|s| fmt_ms(s.unix_ms)),
                        "points": n.sample.as_ref().map(|s| s.points.iter().map(|p| json!({
                            "name": p.name, "labels": p.labels, "value": p.value,
                        })).collect::<Vec<_>>()),
                        "refused": n.refused.iter().map(|r| json!({
                            "reason": r.reason().label(), "points": r.points,
                            "last": fmt_ms(r.last_unix_ms),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        )
    }

    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut t = table(&[
            "NODE",
            "SESSION",
            "CPU %",
            "LOAD 1/5/15",
            "MEMORY",
            "DISK /",
            "SERVICES",
            "AGE",
        ]);
        for n in &self.nodes {
            let Some(s) = &n.sample else {
                t.add_row(vec![
                    n.hostname.clone(),
                    n.status.clone(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "no sample".into(),
                ]);
                continue;
            };
            let f = |name: &str| value(s, name, "");
            let load = match (f("load1"), f("load5"), f("load15")) {
                (Some(a), Some(b), Some(c)) => format!("{a:.2} {b:.2} {c:.2}"),
                _ => "-".into(),
            };
            let mem = match (f("memory_used_bytes"), f("memory_total_bytes")) {
                (Some(u), Some(t)) => format!("{} / {}", num(u), num(t)),
                _ => "-".into(),
            };
            let disk = match (
                value(s, "disk_used_bytes", "mount=\"/\""),
                value(s, "disk_total_bytes", "mount=\"/\""),
            ) {
                (Some(u), Some(t)) if t > 0.0 => format!("{:.0} %", u / t * 100.0),
                _ => "-".into(),
            };
            let services: Vec<String> = s
                .points
                .iter()
                .filter(|p| p.name == "process_up" && p.value > 0.0)
                .map(|p| {
                    p.labels
                        .trim_start_matches("service=\"")
                        .trim_end_matches('"')
                        .to_string()
                })
                .collect();
            t.add_row(vec![
                n.hostname.clone(),
                n.status.clone(),
                f("cpu_usage_percent").map_or("-".into(), |v| format!("{v:.1}")),
                load,
                mem,
                disk,
                if services.is_empty() {
                    "-".into()
                } else {
                    services.join(",")
                },
                format!("{} s", now_ms().saturating_sub(s.unix_ms) / 1000),
            ]);
        }
        writeln!(out, "{t}")?;
        // Metrics the controller refused (limits, clock, approval), one line per node.
        for n in self.nodes.iter().filter(|n| !n.refused.is_empty()) {
            let why: Vec<String> = n
                .refused
                .iter()
                .map(|r| format!("{} {}", r.reason().label(), r.points))
                .collect();
            writeln!(
                out,
                "metrics refused from {}: {} points ({})",
                n.hostname,
                n.refused.iter().map(|r| r.points).sum::<u64>(),
                why.join(", ")
            )?;
        }
        Ok(())
    }
}

pub async fn query(
    node: String,
    since: Option<String>,
    metric: Option<String>,
    ctx: &Ctx,
) -> Result<Exit> {
    let since_ms = match since {
        Some(s) => clustermgr_shared::duration::parse_duration(&s)
            .with_context(|| format!("--since {s}"))?
            .as_millis() as u64,
        None => 0,
    };
    let mut c = MetricsClient::new(channel(&ctx.target).await?)
        .max_decoding_message_size(clustermgr_shared::MAX_MESSAGE_BYTES);
    let r = c
        .query(MetricsQuery {
            node,
            since_ms,
            metric: metric.unwrap_or_default(),
        })
        .await
        .map_err(explain)?
        .into_inner();
    render(ctx.output, &r)?;
    Ok(Exit::Ok)
}

pub async fn top(once: bool, every: &str, ctx: &Ctx) -> Result<Exit> {
    let every = clustermgr_shared::duration::parse_duration(every)
        .with_context(|| format!("--interval {every}"))?
        .max(Duration::from_millis(500));
    let mut c = MetricsClient::new(channel(&ctx.target).await?)
        .max_decoding_message_size(clustermgr_shared::MAX_MESSAGE_BYTES);
    loop {
        let r = c
            .latest(LatestRequest {})
            .await
            .map_err(explain)?
            .into_inner();
        if once {
            render(ctx.output, &r)?;
            return Ok(Exit::Ok);
        }
        // Clear the screen, then draw.
        print!("\x1b[2J\x1b[H");
        render(ctx.output, &r)?;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(Exit::Ok),
        }
    }
}
