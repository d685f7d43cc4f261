//! Metrics: agents sample their host and push the samples up the session; the controller keeps
//! them raw, then as interval averages (time-compressed here: raw for 4 s, 1-s averages after);
//! samples taken while the controller was away arrive after the reconnect.

use clustermgr_tests::{Agent, Controller, eventually, text};
use serde_json::Value;
use std::time::Duration;

const RETENTION: &str = "raw=4s,1s=1h";

fn series<'a>(r: &'a Value, name: &str) -> Option<&'a Vec<Value>> {
    r["series"].as_array()?.iter().find(|s| s["name"] == name)?["points"].as_array()
}

#[test]
fn samples_arrive_are_downsampled_and_survive_a_controller_outage() {
    let mut ctl = Controller::init();
    ctl.start(&["--metrics-retention", RETENTION]);
    let mut a = Agent::new("gluu1.metrics.test");
    a.join(&ctl, "gluu-node");
    a.start_with(&["--metrics-interval", "1s"]);
    ctl.wait_status(&a.node_id, "online");

    // Raw samples of the host's metrics, every second.
    let r = eventually(Duration::from_secs(20), "three raw samples", || {
        let r = ctl.json(&["metrics", &a.hostname, "--since", "4s"]);
        match series(&r, "load1") {
            Some(p) if p.len() >= 3 => Ok(r),
            _ => Err(r.to_string()),
        }
    });
    assert_eq!(r["resolution_ms"], 0, "raw within the raw retention");
    for name in [
        "cpu_usage_percent",
        "cpu_seconds_total",
        "load1",
        "load5",
        "load15",
        "memory_used_bytes",
        "memory_total_bytes",
        "disk_used_bytes",
        "network_receive_bytes_total",
    ] {
        assert!(series(&r, name).is_some(), "{name} missing: {r}");
    }
    let total = series(&r, "memory_total_bytes").unwrap()[0]["value"]
        .as_f64()
        .unwrap();
    assert!(total > 1e6, "{total}");
    let only_load = ctl.json(&["metrics", &a.hostname, "--since", "4s", "--metric", "load"]);
    let names: Vec<&str> = only_load["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["load1", "load15", "load5"]);

    // Longer than raw samples are kept: 1-s averages, aligned to the interval, min <= avg <= max.
    let r = ctl.json(&[
        "metrics",
        &a.hostname,
        "--since",
        "30s",
        "--metric",
        "cpu_usage",
    ]);
    assert_eq!(r["resolution_ms"], 1000, "{r}");
    let points = series(&r, "cpu_usage_percent").unwrap();
    assert!(!points.is_empty());
    for p in points {
        let (v, lo, hi) = (
            p["value"].as_f64().unwrap(),
            p["min"].as_f64().unwrap(),
            p["max"].as_f64().unwrap(),
        );
        assert!(lo <= v && v <= hi, "{p}");
        assert_eq!(p["unix_ms"].as_u64().unwrap() % 1000, 0, "{p}");
    }

    // The controller goes away for a while: the agent keeps sampling, and sends what it kept
    // once it is back.
    ctl.stop();
    let down_from = clustermgr_shared::util::now_ms();
    std::thread::sleep(Duration::from_secs(3));
    let down_to = clustermgr_shared::util::now_ms();
    ctl.start(&["--metrics-retention", RETENTION]);
    ctl.wait_status(&a.node_id, "online");
    eventually(Duration::from_secs(20), "samples of the outage", || {
        let r = ctl.json(&["metrics", &a.hostname, "--since", "1m", "--metric", "load1"]);
        let during = series(&r, "load1")
            .map(|p| {
                p.iter()
                    .filter(|x| {
                        let t = x["unix_ms"].as_u64().unwrap();
                        t > down_from && t < down_to
                    })
                    .count()
            })
            .unwrap_or(0);
        if during >= 2 {
            Ok(())
        } else {
            Err(format!("{during} points during the outage: {r}"))
        }
    });

    // top: every node's latest sample.
    let top = ctl.json(&["top", "--once"]);
    let node = &top.as_array().unwrap()[0];
    assert_eq!(node["hostname"], a.hostname.as_str());
    assert_eq!(node["status"], "online");
    assert!(
        node["points"].as_array().is_some_and(|p| !p.is_empty()),
        "{top}"
    );
    let human = ctl.cli_ok(&["top", "--once"]);
    assert!(
        human.contains("gluu1.metrics.test") && human.contains("LOAD"),
        "{human}"
    );
    let human = ctl.cli_ok(&["metrics", &a.hostname, "--since", "4s"]);
    assert!(
        human.contains("raw samples") && human.contains("memory_total_bytes"),
        "{human}"
    );

    // A node that does not exist: a clear error.
    let o = ctl.cli(&["metrics", "nosuch.node"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("nosuch.node"),
        "{}",
        text(&o.stderr)
    );
}
