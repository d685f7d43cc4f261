use super::*;

/// The controller's CPU (% of one core) and RSS sampled every second over `secs`.
pub(crate) struct Usage {
    cpu_percent: f64,
    rss_start: f64,
    rss_mean: f64,
    rss_max: f64,
    rss_end: f64,
}

pub(crate) fn sample_usage(pid: u32, secs: u64, mut each_second: impl FnMut()) -> Result<Usage> {
    let cpu0 = cpu_secs(pid)?;
    let start = Instant::now();
    let (rss_start, _) = memory_mb(pid)?;
    let mut rss = Vec::with_capacity(secs as usize);
    for i in 1..=secs {
        // A measurement interval, not a wait for something to happen.
        let next = start + Duration::from_secs(i);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        each_second();
        rss.push(memory_mb(pid)?.0);
    }
    let cpu = cpu_secs(pid)? - cpu0;
    let wall = start.elapsed().as_secs_f64();
    Ok(Usage {
        cpu_percent: cpu / wall * 100.0,
        rss_start,
        rss_mean: rss.iter().sum::<f64>() / rss.len().max(1) as f64,
        rss_max: rss.iter().copied().fold(rss_start, f64::max),
        rss_end: rss.last().copied().unwrap_or(rss_start),
    })
}

pub(crate) fn metrics_ingest_bench(
    agents: usize,
    every_secs: f64,
    secs: u64,
    concurrency: usize,
) -> Result<()> {
    ensure!(
        (1..=MAX_AGENTS).contains(&agents),
        "--agents is between 1 and {MAX_AGENTS}"
    );
    ensure!(every_secs >= 0.1, "--every-secs is at least 0.1");
    ensure!(secs >= 1, "--secs is at least 1");
    let every = Duration::from_secs_f64(every_secs);
    raise_nofile((agents + 2 * concurrency + 1024) as u64)?;
    tls::install_crypto_provider();
    let mut keys = Vec::with_capacity(agents);
    for i in 0..agents {
        keys.push(pki::new_key_and_csr(&hostname(i)).context("key and CSR")?);
    }
    let mut ctl = Controller::init();
    ctl.start(&["--heartbeat-interval", HEARTBEAT]);
    let pid = ctl.pid().context("the controller is not running")?;
    let token = join_token(&ctl, agents);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let stats = Arc::new(PeerStats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    eprintln!("enrolling and connecting {agents} simulated agents");
    let peers = runtime.block_on(async {
        let sem = Arc::new(Semaphore::new(concurrency.max(1)));
        let mut set = JoinSet::new();
        for (i, (key, csr)) in keys.into_iter().enumerate() {
            let permit = sem.clone().acquire_owned().await.context("semaphore")?;
            let e = enrollment(&ctl, &token, i);
            let (stats, stop) = (stats.clone(), stop_rx.clone());
            set.spawn(async move {
                let r = async {
                    let enrolled = e.enroll_with(key, csr).await?;
                    enrolled.connect(enrolled.inventory()).await
                }
                .await;
                drop(permit);
                r.map(|peer| peer.answer_pings_and_send_metrics(false, Some(every), stats, stop))
                    .with_context(|| format!("agent {i}"))
            });
        }
        let mut peers = Vec::with_capacity(agents);
        while let Some(r) = set.join_next().await {
            peers.push(r.context("agent task panicked")??);
        }
        anyhow::Ok(peers)
    })?;
    let bundle = ClientBundle::load(&ctl.data.join("admin.toml"))
        .context("cannot load the admin credential")?;
    runtime.block_on(async {
        let mut op = OperatorClient::new(operator_channel(&bundle, &ctl.addr).await?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let online = online_count(&mut op).await?;
            if online >= agents {
                return anyhow::Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "only {online} of {agents} agents online"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })?;
    // One interval for every peer to have sent its first batch before measuring.
    std::thread::sleep(every);
    let sent0 = stats.metrics.load(Ordering::Relaxed);
    eprintln!("measuring the controller for {secs} s");
    let usage = sample_usage(pid, secs, || {})?;
    let sent = stats.metrics.load(Ordering::Relaxed) - sent0;
    let lost = stats.lost.load(Ordering::Relaxed);
    // What the controller kept: one node's series.
    let m = ctl.json(&[
        "metrics",
        &hostname(0),
        "--metric",
        "cpu_usage",
        "--since",
        "10m",
    ]);
    let _ = stop_tx.send(true);
    for p in peers {
        runtime.block_on(async {
            let _ = p.await;
        });
    }
    // What the controller stored: one cpu_usage_percent point per batch sent, on every node,
    // and nothing refused (read back once the queued batches are in).
    let total_sent = stats.metrics.load(Ordering::Relaxed) as u64;
    let (stored, refused) = runtime.block_on(async {
        let mut mc = clustermgr_proto::metrics_client::MetricsClient::new(
            operator_channel(&bundle, &ctl.addr).await?,
        )
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut stored = 0u64;
            for i in 0..agents {
                let r = mc
                    .query(clustermgr_proto::MetricsQuery {
                        node: hostname(i),
                        since_ms: 6 * 3_600_000,
                        metric: "cpu_usage_percent".into(),
                    })
                    .await
                    .map_err(|s| anyhow!("metrics query: {}", s.message()))?
                    .into_inner();
                stored += r.series.iter().map(|s| s.points.len() as u64).sum::<u64>();
            }
            let refused: u64 = mc
                .latest(clustermgr_proto::LatestRequest {})
                .await
                .map_err(|s| anyhow!("latest: {}", s.message()))?
                .into_inner()
                .nodes
                .iter()
                .flat_map(|n| n.refused.iter().map(|r| r.points))
                .sum();
            if stored >= total_sent || Instant::now() > deadline {
                return anyhow::Ok((stored, refused));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })?;
    runtime.shutdown_timeout(Duration::from_secs(5));
    let store_bytes = std::fs::metadata(ctl.data.join("state.redb")).map_or(0, |m| m.len());
    ctl.stop();
    let rate = sent as f64 / usage_secs(secs);
    let factor = 15.0 / every_secs;
    println!(
        "metrics ingest: {agents} agents, one 40-point batch each every {every_secs} s \
         ({factor:.1}x a real agent's 15 s)"
    );
    println!(
        "  {sent} batches in {secs} s: {rate:.0} batches/s, {:.0} points/s (real-time \
         equivalent: {:.0} agents at 15 s)",
        rate * 40.0,
        agents as f64 * factor
    );
    println!(
        "  controller CPU {:.1} % of one core (at 15 s, about {:.2} % for {agents} agents)",
        usage.cpu_percent,
        usage.cpu_percent / factor
    );
    println!(
        "  controller RSS: {:.1} MiB at the start, mean {:.1}, max {:.1}, {:.1} at the end",
        usage.rss_start, usage.rss_mean, usage.rss_max, usage.rss_end
    );
    println!(
        "  store file {:.1} MiB after the run; sessions lost: {lost}; {}'s cpu_usage series: {} points kept",
        mb(store_bytes),
        hostname(0),
        m["series"]
            .as_array()
            .and_then(|a| a.first())
            .map_or(0, |s| s["points"].as_array().map_or(0, Vec::len))
    );
    println!(
        "  stored: {stored} cpu_usage_percent points for {total_sent} batches sent in the whole run, \
         {refused} points refused ({})",
        verdict(stored == total_sent && refused == 0)
    );
    ensure!(lost == 0, "{lost} sessions lost");
    Ok(())
}

pub(crate) fn usage_secs(secs: u64) -> f64 {
    secs.max(1) as f64
}
