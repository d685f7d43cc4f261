//! A hostile node's metrics: an enrolled fake agent sends what a real agent never does (metrics
//! before approval, oversized batches, samples dated in 2100, labels that would forge lines of
//! the exposition, thousands of series, a flood at full speed). The controller stores at most
//! what its limits allow, says what it refused, keeps serving a real agent, and the Prometheus
//! exposition stays valid.

use clustermgr_proto::{AgentMessage, MetricPoint, MetricsBatch, MetricsSample, agent_message};
use clustermgr_shared::util::now_ms;
use clustermgr_tests::fake_peer::{Enrollment, FakePeer};
use clustermgr_tests::{Agent, Controller, eventually, text};
use serde_json::Value;
use std::time::{Duration, Instant};

const RATE: f64 = 500.0;
const BURST: f64 = 2_000.0;
const SERIES: usize = 40;

fn batch(samples: Vec<MetricsSample>) -> AgentMessage {
    AgentMessage {
        msg: Some(agent_message::Msg::Metrics(MetricsBatch { samples })),
    }
}

fn sample(unix_ms: u64, points: impl IntoIterator<Item = (String, String, f64)>) -> MetricsSample {
    MetricsSample {
        unix_ms,
        points: points
            .into_iter()
            .map(|(name, labels, value)| MetricPoint {
                name,
                labels,
                value,
            })
            .collect(),
    }
}

/// `n` points of series `s000`.. (all within the series cap when n <= SERIES).
fn known(n: usize) -> Vec<(String, String, f64)> {
    (0..n)
        .map(|i| (format!("s{i:03}"), String::new(), 1.0))
        .collect()
}

/// Every point the controller stored for the node (raw samples of the last hour).
fn stored(ctl: &Controller, node: &str) -> u64 {
    let r = ctl.json(&["metrics", node, "--since", "1h"]);
    r["series"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|x| x["points"].as_array().map_or(0, |p| p.len() as u64))
                .sum()
        })
        .unwrap_or(0)
}

fn refused(top: &Value, host: &str, reason: &str) -> u64 {
    top.as_array()
        .and_then(|n| n.iter().find(|n| n["hostname"] == host))
        .and_then(|n| n["refused"].as_array())
        .and_then(|r| r.iter().find(|r| r["reason"] == reason))
        .map_or(0, |r| r["points"].as_u64().unwrap_or(0))
}

#[test]
fn a_hostile_node_cannot_grow_the_store_beyond_its_limits() {
    let port = clustermgr_tests::free_port();
    let listen = format!("127.0.0.1:{port}");
    let limits = format!("rate={RATE},burst={BURST},series={SERIES},skew=1m");
    let mut ctl = Controller::init();
    ctl.start(&[
        "--require-approval",
        "--metrics-limits",
        &limits,
        "--metrics-listen",
        &listen,
    ]);
    // A real agent beside it, approved, sampling every second.
    let mut good = Agent::new("good.flood.test");
    good.join(&ctl, "gluu-node");
    good.start_with(&["--metrics-interval", "1s"]);
    ctl.cli_ok(&["node", "approve", &good.node_id]);
    ctl.wait_status(&good.node_id, "online");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let peer = rt
        .block_on(FakePeer::join(Enrollment {
            controller: ctl.addr.clone(),
            pin: ctl.pin.clone(),
            token: ctl.token("gluu-node"),
            hostname: "hostile.flood.test".into(),
            bind: None,
        }))
        .unwrap();
    let host = peer.hostname.clone();
    let send = |m: AgentMessage| rt.block_on(peer.send(m)).unwrap();
    // A node awaiting approval: nothing is taken.
    let start = Instant::now();
    send(batch(vec![sample(now_ms(), known(5))]));
    eventually(Duration::from_secs(10), "refused before approval", || {
        let top = ctl.json(&["top", "--once"]);
        match refused(&top, &host, "not_approved") {
            5 => Ok(()),
            n => Err(format!("{n}: {top}")),
        }
    });
    assert_eq!(stored(&ctl, &host), 0);
    ctl.cli_ok(&["node", "approve", &peer.node_id]);

    // Hostile batches, each refused for its own reason.
    let year_2100 = 4_102_444_800_000;
    send(batch(
        (0..241).map(|_| sample(now_ms(), known(1))).collect(),
    ));
    send(batch(vec![sample(year_2100, known(3))]));
    send(batch(vec![sample(
        now_ms(),
        vec![
            (
                "disk_used_bytes".into(),
                "mount=\"/\"} 1\nclustermgr_node_online{node=\"forged\"".into(),
                1.0,
            ),
            ("bad name".into(), String::new(), 1.0),
            ("load1".into(), String::new(), f64::INFINITY),
        ],
    )]));
    // The flood's series, first (they count in the series cap).
    let t0 = now_ms();
    send(batch(vec![sample(t0, known(20))]));
    // A well-formed label whose value holds a quote, a backslash and a line feed: stored, and
    // escaped in the exposition.
    send(batch(vec![sample(
        now_ms(),
        vec![(
            "disk_used_bytes".into(),
            "mount=\"/x\\\"} 1\\nclustermgr_node_online{node=\\\"forged\\\"\"".into(),
            7.0,
        )],
    )]));
    // Random series names: the node gets SERIES series in all (20 + 1 + 19).
    send(batch(vec![sample(
        now_ms(),
        (0..500).map(|i| (format!("random_{i}"), String::new(), 1.0)),
    )]));
    // The flood: batches of 200 samples of the 20 known series as fast as the session takes
    // them, each sample at its own time (before t0, so that no row overwrites another).
    let flood_from = Instant::now();
    let mut sent = 0u64;
    let mut k = 0u64;
    while flood_from.elapsed() < Duration::from_secs(4) {
        let samples = (0..200)
            .map(|_| {
                k += 1;
                sample(t0 - k, known(20))
            })
            .collect();
        send(batch(samples));
        sent += 200 * 20;
        // The controller still answers operators meanwhile.
        if sent.is_multiple_of(400_000) {
            ctl.cli_ok(&["node", "list"]);
        }
    }
    let sent_all = Instant::now();
    // Everything sent is screened before the refusals are read.
    let top = eventually(Duration::from_secs(60), "every batch screened", || {
        let top = ctl.json(&["top", "--once"]);
        let n: u64 = top
            .as_array()
            .and_then(|n| n.iter().find(|n| n["hostname"] == host.as_str()))
            .and_then(|n| n["refused"].as_array())
            .map(|r| r.iter().map(|r| r["points"].as_u64().unwrap_or(0)).sum())
            .unwrap_or(0);
        let got = stored(&ctl, &host);
        // Before approval 5, oversized 241, dated 2100 3, invalid 3, known 20, escaped 1,
        // random 500, and the flood.
        let total = 5 + 241 + 3 + 3 + 20 + 1 + 500 + sent;
        if n + got == total {
            Ok(top)
        } else {
            Err(format!("{n} refused + {got} stored of {total}"))
        }
    });
    // The controller screens the flood after the last send too (it reads a flooding node
    // slowly): the bound runs until every batch was screened.
    let elapsed = start.elapsed().as_secs_f64();
    let got = stored(&ctl, &host);
    let bound = BURST + RATE * elapsed;
    println!(
        "hostile node: {sent} points flooded in {:.1} s, {got} stored (bound {bound:.0})",
        sent_all.duration_since(flood_from).as_secs_f64()
    );
    assert!((got as f64) <= bound, "{got} stored, more than {bound:.0}");
    assert!(
        sent as f64 > 3.0 * bound,
        "the flood was too small to test the bound: {sent}"
    );
    for (reason, want) in [
        ("not_approved", 5),
        ("batch_too_large", 241),
        ("out_of_window", 3),
        ("invalid", 3),
        ("series_cap", 500 - (SERIES as u64 - 21)),
    ] {
        assert_eq!(refused(&top, &host, reason), want, "{reason}: {top}");
    }
    assert!(refused(&top, &host, "rate") > 0, "{top}");
    let series = ctl.json(&["metrics", &host, "--since", "1h"])["series"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(series, SERIES, "the series cap");
    let human = ctl.cli_ok(&["top", "--once"]);
    assert!(
        human.contains("metrics refused from hostile.flood.test"),
        "{human}"
    );

    // The real agent's samples kept arriving: one taken after the flood is stored.
    eventually(Duration::from_secs(20), "the good node's metrics", || {
        let r = ctl.json(&[
            "metrics",
            &good.hostname,
            "--since",
            "1m",
            "--metric",
            "load1",
        ]);
        let newest = r["series"][0]["points"]
            .as_array()
            .and_then(|p| p.last())
            .and_then(|p| p["unix_ms"].as_u64())
            .unwrap_or(0);
        if newest > now_ms() - 1_000 - sent_all.elapsed().as_millis() as u64 {
            Ok(())
        } else {
            Err(r.to_string())
        }
    });

    // The exposition: valid for promtool, the hostile value escaped, no forged line.
    let body = scrape(&ctl, &listen);
    assert!(
        body.contains("clustermgr_metrics_refused_points_total{node=\"hostile.flood.test\""),
        "{body}"
    );
    assert!(
        !body.lines().any(|l| l.contains("node=\"forged\"")),
        "a forged line: {body}"
    );
    crate::metrics::promtool(&body);
}

/// GET /metrics with a viewer credential (created for the scrape).
fn scrape(ctl: &Controller, listen: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (_, [ca, cert, key]) = crate::metrics::viewer(ctl, "scraper", dir.path());
    let o = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
        ])
        .arg(format!("https://{listen}/metrics"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    text(&o.stdout)
}
