//! `clustermgr-bench metrics-flood`: one enrolled node's credential sends metrics at full speed
//! (batches of 240 samples of 512 points, of the same series or of new random ones, dated over
//! the last hour) while a well-behaved node sends its 40 points every second. Printed:
//! the store file's growth and the controller's RSS against the documented bound, what the
//! controller stored and refused (read back through the API), and the latency of an operator call
//! before and during the flood.

use super::{memory_mb, operator_channel, percentile, verdict};
use anyhow::{Context, Result, anyhow, ensure};
use clustermgr_proto::metrics_client::MetricsClient;
use clustermgr_proto::operator_client::OperatorClient;
use clustermgr_proto::{
    AgentMessage, LatestRequest, ListNodesRequest, MetricPoint, MetricsBatch, MetricsQuery,
    MetricsSample, agent_message,
};
use clustermgr_shared::config::ClientBundle;
use clustermgr_shared::util::now_ms;
use clustermgr_tests::Controller;
use clustermgr_tests::fake_peer::{Enrollment, FakePeer, PeerStats};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tonic::transport::Channel;

/// The controller's defaults (`serve --metrics-limits`).
const RATE: f64 = 100.0;
const BURST: f64 = 30_000.0;

/// A batch of 240 samples of 512 points: every other batch of the same 512 series (so the rate
/// is what stops it), the others of new random series (so the series cap is).
fn hostile_batch(n: &mut u64, fresh: bool) -> AgentMessage {
    let now = now_ms();
    let samples = (0..240)
        .map(|i| MetricsSample {
            // Within the last hour: inside every retention.
            unix_ms: now - (*n * 7 + i) % 3_600_000,
            points: (0..512)
                .map(|j| {
                    *n += 1;
                    MetricPoint {
                        name: if fresh {
                            format!("flood_{:x}_{j}", *n)
                        } else {
                            format!("flood_{j}")
                        },
                        labels: format!("k=\"{}\"", if fresh { *n } else { 0 }),
                        value: 1.0,
                    }
                })
                .collect(),
        })
        .collect();
    AgentMessage {
        msg: Some(agent_message::Msg::Metrics(MetricsBatch { samples })),
    }
}

async fn operator_latencies(op: &mut OperatorClient<Channel>, n: usize) -> Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        op.list_nodes(ListNodesRequest {})
            .await
            .map_err(|s| anyhow!("list nodes: {}", s.message()))?;
        out.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    out.sort();
    Ok(out)
}

async fn stored_points(m: &mut MetricsClient<Channel>, node: &str) -> Result<u64> {
    let r = m
        .query(MetricsQuery {
            node: node.into(),
            since_ms: 2 * 3_600_000,
            metric: String::new(),
        })
        .await
        .map_err(|s| anyhow!("metrics query: {}", s.message()))?
        .into_inner();
    Ok(r.series.iter().map(|s| s.points.len() as u64).sum())
}

pub fn run(secs: u64) -> Result<()> {
    ensure!(secs >= 5, "--secs is at least 5");
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let pid = ctl.pid().context("the controller is not running")?;
    let store = ctl.data.join("state.redb");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let enroll = |host: &str| Enrollment {
        controller: ctl.addr.clone(),
        pin: ctl.pin.clone(),
        token: ctl.token("gluu-node"),
        hostname: host.into(),
        bind: None,
    };
    let (good, hostile) = rt.block_on(async {
        anyhow::Ok((
            FakePeer::join(enroll("good.bench")).await?,
            FakePeer::join(enroll("hostile.bench")).await?,
        ))
    })?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stats = Arc::new(PeerStats::default());
    let _guard = rt.enter();
    let good_task = good.answer_pings_and_send_metrics(
        false,
        Some(Duration::from_secs(1)),
        stats.clone(),
        stop_rx,
    );
    let bundle = ClientBundle::load(&ctl.data.join("admin.toml"))?;
    let (mut op, mut metrics) = rt.block_on(async {
        let ch = operator_channel(&bundle, &ctl.addr).await?;
        anyhow::Ok((
            OperatorClient::new(ch.clone()),
            MetricsClient::new(ch).max_decoding_message_size(64 << 20),
        ))
    })?;
    let before = rt.block_on(operator_latencies(&mut op, 40))?;
    let size0 = std::fs::metadata(&store)?.len();
    let (rss0, _) = memory_mb(pid)?;
    eprintln!("flooding from one node's credential for {secs} s");
    let start = Instant::now();
    let mut sent = 0u64;
    let mut n = 0u64;
    let during = rt.block_on(async {
        let flood = async {
            let mut fresh = true;
            while start.elapsed() < Duration::from_secs(secs) {
                fresh = !fresh;
                hostile.send(hostile_batch(&mut n, fresh)).await?;
                sent += 240 * 512;
            }
            anyhow::Ok(())
        };
        let probe = async {
            tokio::time::sleep(Duration::from_secs(secs / 2)).await;
            operator_latencies(&mut op, 40).await
        };
        let (f, p) = tokio::join!(flood, probe);
        f?;
        p
    })?;
    let flood_secs = start.elapsed().as_secs_f64();
    // What the controller took from the flood, read back once every batch is screened.
    let (stored, refused, good_points) = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let latest = metrics
                .latest(LatestRequest {})
                .await
                .map_err(|s| anyhow!("latest: {}", s.message()))?
                .into_inner();
            let refused: u64 = latest
                .nodes
                .iter()
                .filter(|x| x.hostname == "hostile.bench")
                .flat_map(|x| x.refused.iter().map(|r| r.points))
                .sum();
            let stored = stored_points(&mut metrics, "hostile.bench").await?;
            if stored + refused >= sent || Instant::now() > deadline {
                let good = stored_points(&mut metrics, "good.bench").await?;
                return anyhow::Ok((stored, refused, good));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })?;
    // Until everything sent was screened (a flooding node is read slowly).
    let ingest_secs = start.elapsed().as_secs_f64();
    let size1 = std::fs::metadata(&store)?.len();
    let (rss1, rss_peak) = memory_mb(pid)?;
    let _ = stop_tx.send(true);
    let _ = rt.block_on(good_task);
    let bound = BURST + RATE * ingest_secs;
    let mb = |b: u64| b as f64 / 1_048_576.0;
    println!(
        "metrics flood from one node ({flood_secs:.0} s sending, {ingest_secs:.0} s until all was screened; batches \
         of 240 x 512 points): {sent} points sent, {stored} stored, {refused} refused; bound burst + rate x T = \
         {bound:.0} points ({})",
        verdict(stored as f64 <= bound && stored + refused == sent)
    );
    println!(
        "  store file {:.1} MB -> {:.1} MB (+{:.1} MB); a well-behaved node stored {good_points} points in the same time",
        mb(size0),
        mb(size1),
        mb(size1.saturating_sub(size0))
    );
    println!("  controller RSS {rss0:.0} MB -> {rss1:.0} MB (peak {rss_peak:.0} MB)");
    println!(
        "  operator call (list nodes): p50 {:.1} ms / p99 {:.1} ms before, p50 {:.1} ms / p99 {:.1} ms during the flood",
        percentile(&before, 50.0).as_secs_f64() * 1e3,
        percentile(&before, 99.0).as_secs_f64() * 1e3,
        percentile(&during, 50.0).as_secs_f64() * 1e3,
        percentile(&during, 99.0).as_secs_f64() * 1e3,
    );
    ctl.stop();
    Ok(())
}
