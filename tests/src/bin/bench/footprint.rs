use super::*;

/// A number field of `/proc/<pid>/status` (`Threads`, `RssAnon` in kB...).
pub(crate) fn status_field(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

pub(crate) fn threads(pid: u32) -> Option<u64> {
    status_field(pid, "Threads")
}

/// Resident memory split: anonymous (heap, stacks) and file-backed (mostly the program's code).
pub(crate) fn rss_split(pid: u32) -> String {
    let mib = |f| status_field(pid, f).map_or(0.0, |k| k as f64 / 1024.0);
    format!(
        "{:.1} MiB anonymous + {:.1} MiB file-backed",
        mib("RssAnon"),
        mib("RssFile")
    )
}

/// GET /metrics on a plain HTTP/1.0 endpoint; the body's length.
pub(crate) fn scrape(addr: &str) -> Result<usize> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    ensure!(
        body.starts_with(b"HTTP/1.0 200") || body.starts_with(b"HTTP/1.1 200"),
        "not 200"
    );
    Ok(body.len())
}

pub(crate) fn agent_footprint_bench(secs: u64, node_exporter: &std::path::Path) -> Result<()> {
    use std::process::{Command, Stdio};
    ensure!(secs >= 2, "--secs is at least 2");
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut agent = Agent::new("footprint.bench.test");
    agent.join(&ctl, "gluu-node");
    agent.start_with(&["--metrics-interval", "15s"]);
    ctl.wait_status(&agent.node_id, "online");
    let apid = agent.pid().context("the agent is not running")?;
    let addr = format!("127.0.0.1:{}", clustermgr_tests::free_port());
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let ne = Kill(
        Command::new(node_exporter)
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", node_exporter.display()))?,
    );
    let npid = ne.0.id();
    let scraped = eventually(Duration::from_secs(10), "node_exporter answering", || {
        scrape(&addr).map_err(|e| e.to_string())
    });
    // The agent has sent its first sample (it samples at start, then every 15 s).
    eventually(Duration::from_secs(20), "the agent's first sample", || {
        let m = ctl.json(&["metrics", &agent.node_id, "--metric", "load1"]);
        if m["series"].as_array().is_some_and(|a| !a.is_empty()) {
            Ok(())
        } else {
            Err(m.to_string())
        }
    });
    eprintln!("measuring the agent and node_exporter for {secs} s");
    let (a_cpu0, n_cpu0) = (cpu_secs(apid)?, cpu_secs(npid)?);
    let start = Instant::now();
    let (mut a_rss, mut n_rss) = (Vec::new(), Vec::new());
    let mut last_scrape = start;
    let mut scrapes = 0;
    for i in 1..=secs {
        let next = start + Duration::from_secs(i);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        // Prometheus's default scrape interval, like the agent's sampling.
        if last_scrape.elapsed() >= Duration::from_secs(15) {
            scrape(&addr)?;
            scrapes += 1;
            last_scrape = Instant::now();
        }
        a_rss.push(memory_mb(apid)?.0);
        n_rss.push(memory_mb(npid)?.0);
    }
    let wall = start.elapsed().as_secs_f64();
    let a_cpu = (cpu_secs(apid)? - a_cpu0) / wall * 100.0;
    let n_cpu = (cpu_secs(npid)? - n_cpu0) / wall * 100.0;
    let stats = |v: &[f64]| {
        (
            v.iter().sum::<f64>() / v.len().max(1) as f64,
            v.iter().copied().fold(0.0, f64::max),
        )
    };
    let ((am, ax), (nm, nx)) = (stats(&a_rss), stats(&n_rss));
    let (_, a_hwm) = memory_mb(apid)?;
    println!("idle footprint over {wall:.0} s (RSS sampled every second):");
    println!(
        "  clustermgr-agent (metrics every 15 s, no health checks, connected): RSS mean {am:.1} MiB, max {ax:.1} MiB (peak ever {a_hwm:.1}), CPU {a_cpu:.2} % of one core, {} threads; at the end {}",
        threads(apid).unwrap_or(0),
        rss_split(apid)
    );
    println!(
        "  prometheus-node-exporter (scraped every 15 s, {scrapes} scrapes, {scraped} bytes each): RSS mean {nm:.1} MiB, max {nx:.1} MiB, CPU {n_cpu:.2} % of one core, {} threads; at the end {}",
        threads(npid).unwrap_or(0),
        rss_split(npid)
    );
    println!(
        "  targets: agent RSS <= 15 MB: {}; below node_exporter: {}; CPU < 0.5 %: {}",
        verdict(ax * 1.048_576 <= 15.0),
        verdict(ax < nx),
        verdict(a_cpu < 0.5)
    );
    drop(ne);
    agent.stop();
    ctl.stop();
    Ok(())
}
