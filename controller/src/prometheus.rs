//! The Prometheus text exposition of every node's latest metrics and service states (for
//! Grafana users). Served by `server/prometheus.rs` over HTTPS with a client certificate.

use crate::ctl::Ctl;
use clustermgr_proto::{MetricPoint, MetricsSample};
use std::collections::BTreeMap;
use std::fmt::Write;

/// How a sampled metric is exposed: its name, type and help.
fn describe(name: &str) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match name {
        "cpu_usage_percent" => (
            "clustermgr_node_cpu_usage_ratio",
            "gauge",
            "CPU in use over the last sampling interval (0 to 1).",
        ),
        "cpu_seconds_total" => (
            "clustermgr_node_cpu_seconds_total",
            "counter",
            "CPU time spent in each mode since boot.",
        ),
        "load1" => (
            "clustermgr_node_load1",
            "gauge",
            "Load average over 1 minute.",
        ),
        "load5" => (
            "clustermgr_node_load5",
            "gauge",
            "Load average over 5 minutes.",
        ),
        "load15" => (
            "clustermgr_node_load15",
            "gauge",
            "Load average over 15 minutes.",
        ),
        "memory_total_bytes" => (
            "clustermgr_node_memory_total_bytes",
            "gauge",
            "Memory installed.",
        ),
        "memory_used_bytes" => (
            "clustermgr_node_memory_used_bytes",
            "gauge",
            "Memory in use.",
        ),
        "memory_available_bytes" => (
            "clustermgr_node_memory_available_bytes",
            "gauge",
            "Memory available for new work.",
        ),
        "swap_used_bytes" => ("clustermgr_node_swap_used_bytes", "gauge", "Swap in use."),
        "disk_total_bytes" => (
            "clustermgr_node_disk_size_bytes",
            "gauge",
            "Size of each mounted file system.",
        ),
        "disk_used_bytes" => (
            "clustermgr_node_disk_used_bytes",
            "gauge",
            "Space used on each mounted file system.",
        ),
        "network_receive_bytes_total" => (
            "clustermgr_node_network_receive_bytes_total",
            "counter",
            "Bytes received by each network interface.",
        ),
        "network_transmit_bytes_total" => (
            "clustermgr_node_network_transmit_bytes_total",
            "counter",
            "Bytes sent by each network interface.",
        ),
        "process_up" => (
            "clustermgr_node_process_up",
            "gauge",
            "Whether a process of the service runs (1) on the node.",
        ),
        "process_resident_bytes" => (
            "clustermgr_node_process_resident_memory_bytes",
            "gauge",
            "Resident memory of the service's processes.",
        ),
        "ldap_operations_total" => (
            "clustermgr_node_ldap_operations_total",
            "counter",
            "LDAP operations the node's directory completed, by type (OpenLDAP cn=monitor, OpenDJ LDAPS handler statistics).",
        ),
        _ => return None,
    })
}

use clustermgr_shared::exposition::{canonical_labels, escape_value as escape};

/// One sample's value as exposed (percent becomes a ratio).
fn value(p: &MetricPoint) -> f64 {
    if p.name == "cpu_usage_percent" {
        p.value / 100.0
    } else {
        p.value
    }
}

/// metric -> (type, help, lines), so each metric's HELP/TYPE comes once, before all its samples.
type Families = BTreeMap<&'static str, (&'static str, &'static str, Vec<String>)>;

/// The lines of one metric family.
fn family<'f>(
    families: &'f mut Families,
    name: &'static str,
    kind: &'static str,
    help: &'static str,
) -> &'f mut Vec<String> {
    &mut families.entry(name).or_insert((kind, help, Vec::new())).2
}

/// The exposition: every node's latest sample (timestamped), node sessions and services.
pub fn render(
    ctl: &Ctl,
    metrics: &crate::metrics::Metrics,
    health: &crate::health::Health,
) -> String {
    let latest = crate::metrics::latest(ctl, metrics)
        .map(|l| l.nodes)
        .unwrap_or_default();
    let mut families = Families::new();
    for n in &latest {
        node_lines(&mut families, n);
    }
    if let Ok(status) = crate::health::status(ctl, health, 0) {
        for n in status.nodes {
            let up = family(
                &mut families,
                "clustermgr_service_up",
                "gauge",
                "Whether the service answered its last health check (1); stale checks are absent.",
            );
            for s in n.services.iter().filter(|s| s.state != "stale") {
                up.push(format!(
                    "clustermgr_service_up{{node=\"{}\",node_id=\"{}\",service=\"{}\"}} {}",
                    escape(&n.hostname),
                    escape(&n.node_id),
                    escape(&s.service),
                    u8::from(s.state == "up")
                ));
            }
        }
    }
    let mut out = String::new();
    for (name, (kind, help, lines)) in families {
        if lines.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
    }
    out
}

/// One node's lines: its session, the points refused from it, its latest sample.
fn node_lines(families: &mut Families, n: &clustermgr_proto::NodeSample) {
    let node = format!(
        "node=\"{}\",node_id=\"{}\"",
        escape(&n.hostname),
        escape(&n.node_id)
    );
    family(
        families,
        "clustermgr_node_online",
        "gauge",
        "Whether the node's agent is connected (1).",
    )
    .push(format!(
        "clustermgr_node_online{{{node}}} {}",
        u8::from(n.status == "online")
    ));
    for r in &n.refused {
        let reason = r.reason().label();
        family(
            families,
            "clustermgr_metrics_refused_points_total",
            "counter",
            "Metric points this controller refused from the node since it started, by reason.",
        )
        .push(format!(
            "clustermgr_metrics_refused_points_total{{{node},reason=\"{reason}\"}} {}",
            r.points
        ));
    }
    let Some(MetricsSample { unix_ms, points }) = &n.sample else {
        return;
    };
    for p in points {
        // Stored labels were checked at intake; checked again here (rows stored before).
        let (Some((name, kind, help)), Ok(labels)) =
            (describe(&p.name), canonical_labels(&p.labels))
        else {
            continue;
        };
        let labels = if labels.is_empty() {
            node.clone()
        } else {
            format!("{node},{labels}")
        };
        let v = value(p);
        if !v.is_finite() {
            continue;
        }
        family(families, name, kind, help).push(format!("{name}{{{labels}}} {v} {unix_ms}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_described() {
        let (name, kind, _) = describe("cpu_seconds_total").unwrap();
        assert_eq!(
            (name, kind),
            ("clustermgr_node_cpu_seconds_total", "counter")
        );
        let (name, kind, _) = describe("ldap_operations_total").unwrap();
        assert_eq!(
            (name, kind),
            ("clustermgr_node_ldap_operations_total", "counter")
        );
        assert!(describe("unknown_metric").is_none());
    }
}
