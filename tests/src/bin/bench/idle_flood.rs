//! `clustermgr-bench idle-flood`: a real controller while N idle TLS connections without a
//! client certificate are held from S loopback sources (each one the controller closes is
//! opened again after `--reopen-ms`, as an attacker would); the time a real agent takes to join
//! and to be online, and an operator call, before and during the flood.

use anyhow::{Context, Result};
use clustermgr_shared::tls;
use clustermgr_tests::{Agent, Controller, text};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

/// 127.4.x.y: the flood's own source addresses.
fn source(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 4, ((i / 250) % 250) as u8, (i % 250 + 1) as u8)
}

#[derive(Default)]
struct Counters {
    /// Handshaken and not yet closed.
    open: AtomicUsize,
    handshaken: AtomicU64,
    /// Closed by the controller (during or after the handshake).
    closed: AtomicU64,
}

/// Holds one idle connection from `src`, reopening it whenever the controller closes it, until
/// `stop`.
async fn hold(
    addr: SocketAddr,
    src: Ipv4Addr,
    connector: TlsConnector,
    c: Arc<Counters>,
    stop: Arc<AtomicBool>,
    reopen: Duration,
) {
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        if !first {
            tokio::time::sleep(reopen).await;
        }
        first = false;
        let tcp = async {
            let s = tokio::net::TcpSocket::new_v4()?;
            s.bind(SocketAddr::new(src.into(), 0))?;
            s.connect(addr).await
        };
        let Ok(tcp) = tcp.await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let name = ServerName::try_from("127.0.0.1").expect("an IP server name");
        match connector.connect(name, tcp).await {
            Ok(mut tls) => {
                c.handshaken.fetch_add(1, Ordering::Relaxed);
                c.open.fetch_add(1, Ordering::Relaxed);
                // Idle: read (and drop) until the controller closes it.
                let mut buf = [0u8; 512];
                loop {
                    tokio::select! {
                        r = tls.read(&mut buf) => if !matches!(r, Ok(n) if n > 0) { break },
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {
                            if stop.load(Ordering::Relaxed) { break }
                        }
                    }
                }
                c.open.fetch_sub(1, Ordering::Relaxed);
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
        c.closed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Join, then run until online: both times.
fn real_agent(ctl: &Controller, i: usize) -> Result<(Duration, Duration, Duration)> {
    let mut a = Agent::new(&format!("flood-probe-{i}"));
    let token = ctl.token("gluu-node");
    let t = Instant::now();
    let o = a.join_output(&ctl.addr, &token, &ctl.pin, &[]);
    anyhow::ensure!(o.status.success(), "join failed: {}", text(&o.stderr));
    let join = t.elapsed();
    a.node_id = text(&o.stdout).trim().to_string();
    let t = Instant::now();
    a.start();
    loop {
        if ctl.node_status(&a.node_id).as_deref() == Some("online") {
            break;
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(120),
            "not online in 120 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let online = t.elapsed();
    let t = Instant::now();
    let w = ctl.cli(&["whoami"]);
    anyhow::ensure!(w.status.success(), "whoami failed: {}", text(&w.stderr));
    let whoami = t.elapsed();
    a.stop();
    Ok((join, online, whoami))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(label: &str, runs: &[(Duration, Duration, Duration)]) {
    let med = |f: fn(&(Duration, Duration, Duration)) -> Duration| {
        let mut v: Vec<Duration> = runs.iter().map(f).collect();
        v.sort();
        (v[v.len() / 2], v[v.len() - 1])
    };
    let (j, jm) = med(|r| r.0);
    let (o, om) = med(|r| r.1);
    let (w, wm) = med(|r| r.2);
    println!(
        "{label:<28} join {:>7.0} ms (max {:>6.0})  online {:>7.0} ms (max {:>6.0})  \
         operator whoami {:>6.0} ms (max {:>6.0})",
        ms(j),
        ms(jm),
        ms(o),
        ms(om),
        ms(w),
        ms(wm)
    );
}

/// Connections one process holds (the open-files limit is per process).
const PER_WORKER: usize = 10_000;

/// A child process holding `count` connections: `idle-flood-hold`.
pub fn hold_worker(
    addr: &str,
    ca: &std::path::Path,
    count: usize,
    first: usize,
    sources: usize,
    reopen_ms: u64,
) -> Result<()> {
    super::raise_nofile((count + 1024) as u64)?;
    tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let addr: SocketAddr = addr.parse().context("controller address")?;
    let ca = std::fs::read_to_string(ca).context("CA certificate")?;
    let connector = TlsConnector::from(tls::client_config(&ca, None)?);
    let c = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    {
        let _guard = rt.enter();
        for i in first..first + count {
            let src = source(i % sources.max(1));
            let reopen = Duration::from_millis(reopen_ms);
            rt.spawn(hold(
                addr,
                src,
                connector.clone(),
                c.clone(),
                stop.clone(),
                reopen,
            ));
        }
    }
    // Until stdin closes: print the counters every 200 ms.
    let eof = Arc::new(AtomicBool::new(false));
    {
        let eof = eof.clone();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            eof.store(true, Ordering::Relaxed);
        });
    }
    loop {
        println!(
            "{} {} {}",
            c.open.load(Ordering::Relaxed),
            c.handshaken.load(Ordering::Relaxed),
            c.closed.load(Ordering::Relaxed)
        );
        if eof.load(Ordering::Relaxed) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    rt.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}

/// The flood's workers: their latest counters (open, handshaken, closed), summed.
struct Workers {
    children: Vec<std::process::Child>,
    latest: Arc<std::sync::Mutex<Vec<[u64; 3]>>>,
}

impl Workers {
    fn start(ctl: &Controller, idle: usize, sources: usize, reopen_ms: u64) -> Result<Self> {
        let ca = ctl.dir.path().join("flood-ca.crt");
        std::fs::write(&ca, ctl.ca_cert_pem())?;
        let n = idle.div_ceil(PER_WORKER);
        let latest = Arc::new(std::sync::Mutex::new(vec![[0u64; 3]; n]));
        let mut children = Vec::new();
        for w in 0..n {
            let first = w * PER_WORKER;
            let count = PER_WORKER.min(idle - first);
            let mut child = std::process::Command::new(std::env::current_exe()?)
                .args(["idle-flood-hold", "--addr", &ctl.addr, "--ca"])
                .arg(&ca)
                .args(["--count", &count.to_string(), "--first", &first.to_string()])
                .args(["--sources", &sources.to_string()])
                .args(["--reopen-ms", &reopen_ms.to_string()])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .context("cannot start a flood worker")?;
            let out = child.stdout.take().context("worker stdout")?;
            let latest = latest.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(out).lines().map_while(|l| l.ok()) {
                    let v: Vec<u64> = line.split(' ').filter_map(|x| x.parse().ok()).collect();
                    if let [a, b, c] = v[..] {
                        latest.lock().unwrap_or_else(|p| p.into_inner())[w] = [a, b, c];
                    }
                }
            });
            children.push(child);
        }
        Ok(Self { children, latest })
    }

    fn totals(&self) -> [u64; 3] {
        let l = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        l.iter()
            .fold([0; 3], |t, x| [t[0] + x[0], t[1] + x[1], t[2] + x[2]])
    }

    fn stop(mut self) {
        for c in &mut self.children {
            drop(c.stdin.take());
        }
        for c in &mut self.children {
            let _ = c.wait();
        }
    }
}

pub fn idle_flood_bench(idle: usize, sources: usize, runs: usize, reopen_ms: u64) -> Result<()> {
    tls::install_crypto_provider();
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let runs = runs.max(1);
    eprintln!("real agents without a flood ({runs} runs)");
    let quiet: Vec<_> = (0..runs)
        .map(|i| real_agent(&ctl, i))
        .collect::<Result<_>>()?;
    eprintln!(
        "holding {idle} idle connections without a client certificate from {sources} sources \
         ({} processes)",
        idle.div_ceil(PER_WORKER)
    );
    let started = Instant::now();
    let workers = Workers::start(&ctl, idle, sources, reopen_ms)?;
    // Steady state: every holder has tried at least once.
    while {
        let [_, h, c] = workers.totals();
        h + c < idle as u64 && started.elapsed() < Duration::from_secs(120)
    } {
        std::thread::sleep(Duration::from_millis(200));
    }
    let [open, handshaken, closed] = workers.totals();
    eprintln!(
        "flood running ({:.1} s): {handshaken} handshaken, {open} open, {closed} closed by the \
         controller",
        started.elapsed().as_secs_f64()
    );
    // Spread over two reopen periods, so that the flood's reconnections are met.
    let gap = Duration::from_millis(2 * reopen_ms.max(1000) / runs as u64);
    let flooded: Vec<_> = (runs..2 * runs)
        .map(|i| {
            std::thread::sleep(gap);
            real_agent(&ctl, i)
        })
        .collect::<Result<_>>()?;
    let [open, handshaken, closed] = workers.totals();
    let secs = started.elapsed().as_secs_f64();
    workers.stop();
    println!(
        "idle flood: {idle} connections without a client certificate held from {sources} \
         sources for {secs:.0} s, each reopened {reopen_ms} ms after the controller closed it \
         ({handshaken} handshakes, {closed} closed by the controller, {open} open at the end; \
         [listener] defaults)"
    );
    report("real agent, no flood:", &quiet);
    report("real agent, during flood:", &flooded);
    ctl.stop();
    Ok(())
}
