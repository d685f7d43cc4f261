//! Monitoring: charts of the stored metrics over 1 h / 24 h / 7 d / 30 d, for the cluster (one
//! line per node) and per node, from the same query the CLI's `metrics` uses.

use super::Web;
use super::charts::{Line, Unit, rate, svg};
use super::live::{Guard, live};
use super::pages::{W, failure, gate, me, message};
use crate::auth::Role;
use crate::metrics::MetricsError;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use clustermgr_proto::{MetricSeries, MetricsQuery, Node};
use clustermgr_shared::util::now_ms;
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};

/// The least time between two sends of a node's charts: samples arriving meanwhile are drawn
/// together, at most once a second per open page.
const CHART_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);
/// The same for the cluster's charts, which read every node's series.
const CLUSTER_PAUSE: std::time::Duration = std::time::Duration::from_secs(5);

/// The time ranges the pages offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
pub(super) enum Range {
    #[default]
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Week,
    #[serde(rename = "30d")]
    Month,
}

impl Range {
    const ALL: [Range; 4] = [Range::Hour, Range::Day, Range::Week, Range::Month];
    fn ms(self) -> u64 {
        const H: u64 = 3_600_000;
        match self {
            Range::Hour => H,
            Range::Day => 24 * H,
            Range::Week => 7 * 24 * H,
            Range::Month => 30 * 24 * H,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Range::Hour => "1h",
            Range::Day => "24h",
            Range::Week => "7d",
            Range::Month => "30d",
        }
    }
}

#[derive(Deserialize, Default)]
pub(super) struct RangeQuery {
    #[serde(default)]
    range: Range,
}

fn points(s: &MetricSeries) -> Vec<(u64, f64)> {
    s.points.iter().map(|p| (p.unix_ms, p.value)).collect()
}

/// The series named `name` of one node's result, one line each (labelled by their labels).
fn named(series: &[MetricSeries], name: &str, counter: bool) -> Vec<Line> {
    series
        .iter()
        .filter(|s| s.name == name)
        .map(|s| Line {
            label: if s.labels.is_empty() {
                name.to_string()
            } else {
                s.labels.clone()
            },
            points: if counter { rate(&points(s)) } else { points(s) },
        })
        .collect()
}

fn ranges(current: Range) -> Vec<Value> {
    Range::ALL
        .iter()
        .map(|r| context! { name => r.name(), current => *r == current })
        .collect()
}

/// One chart per metric, one line per node, and the nodes' names.
fn cluster_charts(
    web: &Web,
    nodes: &[Node],
    range: Range,
) -> Result<(Vec<Value>, Vec<Value>), MetricsError> {
    let to = now_ms();
    let from = to.saturating_sub(range.ms());
    let (mut cpu, mut mem, mut load) = (Vec::new(), Vec::new(), Vec::new());
    let mut links = Vec::new();
    for n in nodes {
        links.push(context! { hostname => n.hostname.clone() });
        let r = crate::metrics::query(
            &web.ctl,
            &web.parts.metrics,
            &MetricsQuery {
                node: n.id.clone(),
                since_ms: range.ms(),
                metric: String::new(),
            },
        )?;
        for (into, name) in [
            (&mut cpu, "cpu_usage_percent"),
            (&mut mem, "memory_used_bytes"),
            (&mut load, "load1"),
        ] {
            for mut l in named(&r.series, name, false) {
                l.label = n.hostname.clone();
                into.push(l);
            }
        }
    }
    let charts = vec![
        Value::from_safe_string(svg("CPU usage", Unit::Percent, from, to, &cpu)),
        Value::from_safe_string(svg("Memory used", Unit::Bytes, from, to, &mem)),
        Value::from_safe_string(svg("Load (1 min)", Unit::Plain, from, to, &load)),
    ];
    Ok((charts, links))
}

pub(super) async fn cluster(
    State(web): W,
    headers: HeaderMap,
    Query(q): Query<RangeQuery>,
) -> Response {
    let s = match gate(&web, &headers, Role::Viewer) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let nodes = match crate::nodes::list(&web.ctl) {
        Ok(n) => n,
        Err(e) => return failure(&web, &s, "this page", e),
    };
    let (charts, links) = match cluster_charts(&web, &nodes, q.range) {
        Ok(c) => c,
        Err(e) => return failure(&web, &s, "this page", e),
    };
    web.render(
        "monitoring.html",
        context! {
            me => me(Some(&s)),
            title => "Cluster",
            base => "/monitoring",
            live => format!("/live/monitoring?range={}", q.range.name()),
            ranges => ranges(q.range),
            charts => charts,
            nodes => links,
        },
    )
}

/// Every chart of one node, and its hostname.
fn node_charts(web: &Web, node: &str, range: Range) -> Result<(Vec<Value>, String), MetricsError> {
    let r = crate::metrics::query(
        &web.ctl,
        &web.parts.metrics,
        &MetricsQuery {
            node: node.to_string(),
            since_ms: range.ms(),
            metric: String::new(),
        },
    )?;
    let to = now_ms();
    let from = to.saturating_sub(range.ms());
    let mut network = named(&r.series, "network_receive_bytes_total", true);
    for l in &mut network {
        l.label = format!("in {}", l.label);
    }
    for mut l in named(&r.series, "network_transmit_bytes_total", true) {
        l.label = format!("out {}", l.label);
        network.push(l);
    }
    let mut memory = named(&r.series, "memory_used_bytes", false);
    memory.extend(named(&r.series, "memory_total_bytes", false));
    let mut load = named(&r.series, "load1", false);
    load.extend(named(&r.series, "load5", false));
    load.extend(named(&r.series, "load15", false));
    let charts = [
        (
            "CPU usage",
            Unit::Percent,
            named(&r.series, "cpu_usage_percent", false),
        ),
        ("Load", Unit::Plain, load),
        ("Memory", Unit::Bytes, memory),
        (
            "Disk used",
            Unit::Bytes,
            named(&r.series, "disk_used_bytes", false),
        ),
        ("Network", Unit::BytesPerSecond, network),
        (
            "Gluu processes (resident memory)",
            Unit::Bytes,
            named(&r.series, "process_resident_bytes", false),
        ),
    ]
    .into_iter()
    .map(|(t, u, lines)| Value::from_safe_string(svg(t, u, from, to, &lines)))
    .collect::<Vec<_>>();
    Ok((charts, r.hostname))
}

/// Every chart of one node.
pub(super) async fn node(
    State(web): W,
    headers: HeaderMap,
    Path(node): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Response {
    let s = match gate(&web, &headers, Role::Viewer) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let (charts, hostname) = match node_charts(&web, &node, q.range) {
        Ok(c) => c,
        Err(e) => return message(&web, StatusCode::NOT_FOUND, Some(&s), &e.to_string()),
    };
    web.render(
        "monitoring.html",
        context! {
            me => me(Some(&s)),
            live => format!("/live/monitoring/{hostname}?range={}", q.range.name()),
            base => format!("/monitoring/{hostname}"),
            title => hostname,
            ranges => ranges(q.range),
            charts => charts,
        },
    )
}

/// The charts of a page as one fragment (`charts.html`).
fn fragment(web: &Web, charts: Vec<Value>) -> Option<String> {
    web.fragment("charts.html", context! { charts => charts })
}

/// The cluster's charts, sent again as stored samples arrive (server-sent events).
pub(super) async fn cluster_live(
    State(web): W,
    headers: HeaderMap,
    Query(q): Query<RangeQuery>,
) -> Response {
    if let Err(r) = gate(&web, &headers, Role::Viewer) {
        return *r;
    }
    let guard = Guard::new(&web, &headers, Role::Viewer);
    let changes = web.parts.metrics.subscribe();
    live(web, guard, changes, CLUSTER_PAUSE, move |web| {
        let nodes = crate::nodes::list(&web.ctl).ok()?;
        let (charts, _) = cluster_charts(web, &nodes, q.range).ok()?;
        Some((fragment(web, charts)?, false))
    })
}

/// One node's charts, sent again as stored samples arrive (server-sent events).
pub(super) async fn node_live(
    State(web): W,
    headers: HeaderMap,
    Path(node): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Response {
    if let Err(r) = gate(&web, &headers, Role::Viewer) {
        return *r;
    }
    if let Err(e) = node_charts(&web, &node, q.range) {
        return super::plain(StatusCode::NOT_FOUND, &e.to_string());
    }
    let guard = Guard::new(&web, &headers, Role::Viewer);
    let changes = web.parts.metrics.subscribe();
    live(web, guard, changes, CHART_PAUSE, move |web| {
        let (charts, _) = node_charts(web, &node, q.range).ok()?;
        Some((fragment(web, charts)?, false))
    })
}
