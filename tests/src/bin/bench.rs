//! Scale benchmark: a real controller process on loopback and N simulated agents in this process
//! (each with its own key, certificate, loopback source address and TLS connection), for each N
//! given (`--agents 1000,5000,10000`, a fresh controller per N).
//!
//! Prints, for each N, the enrollment rate, the controller's resident memory once every agent is
//! connected and at its peak, the latency of a ping fan-out to every agent through the operator
//! API, failures, and the store file's size after the run; then the idle resident memory of one
//! real `clustermgr-agent`. It exits non-zero only on errors; missed targets are reported, not
//! failed.
#![forbid(unsafe_code)]

#[path = "bench/day2.rs"]
mod day2;
#[path = "bench/fsrep_flood.rs"]
mod fsrep_flood;
#[path = "bench/idle_flood.rs"]
mod idle_flood;
#[path = "bench/metrics_flood.rs"]
mod metrics_flood;
#[path = "bench/packaging.rs"]
mod packaging;

use anyhow::{Context, Result, anyhow, bail, ensure};
use clap::Parser;
use clustermgr_proto::operator_client::OperatorClient;
use clustermgr_proto::{
    Inventory, ListNodesRequest, NodeRef, Operation, Ping, SubmitJobRequest, operation,
};
use clustermgr_shared::config::ClientBundle;
use clustermgr_shared::dial::{self, DialOptions};
use clustermgr_shared::{MAX_MESSAGE_BYTES, Secret, pki, tls};
use clustermgr_tests::fake_peer::{Enrollment, PeerStats};
use clustermgr_tests::{Agent, Controller, eventually, procfs};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tonic::transport::Channel;

/// Targets from the scale requirement: 10,000 agents on one controller (2-core machine).
const TARGET_AGENTS: usize = 10_000;
const RSS_TARGET_MB: f64 = 1536.0;
const P99_TARGET_MS: f64 = 1000.0;
/// Heartbeat interval given to the controller (`serve --heartbeat-interval`).
const HEARTBEAT: &str = "10s";
/// One join token allows at most this many uses.
const MAX_AGENTS: usize = 10_000;

#[derive(Parser, Debug)]
#[command(
    name = "clustermgr-bench",
    about = "Connect N simulated agents to one controller on loopback (for each N given) and print \
             enrollment rate, controller RSS, ping fan-out latency and store size, then the idle \
             RSS of one real agent"
)]
struct Args {
    /// Numbers of simulated agents, comma-separated; each gets a fresh controller (at most
    /// 10000 each, the most uses one join token allows).
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    agents: Vec<usize>,
    /// Ping fan-out rounds (one ping job to every agent per round).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Enrollments / session connects in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// HTTP/2 connections the fan-out's operator calls are spread over (default: enough that
    /// none carries more than 48 calls at once, at least 8; the controller caps concurrent
    /// streams per connection).
    #[arg(long)]
    channels: Option<usize>,
    /// Also send the "pong" log line the real agent sends before each ping result.
    #[arg(long)]
    log_lines: bool,
    /// Seconds one real clustermgr-agent idles, connected, before its RSS is read (0: skip).
    #[arg(long, default_value_t = 5)]
    agent_idle_secs: u64,
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(clap::Subcommand, Debug)]
enum Mode {
    /// Package push throughput: a controller and N real agents on loopback, one package pushed
    /// to all of them at once; then the same file copied with scp to one sshd on loopback.
    Push {
        /// Package size in MB (random, uncompressed payload).
        #[arg(long, default_value_t = 200)]
        size_mb: usize,
        /// Agents pushed to at once.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
    },
    /// Wall time of `clustermgr sandbox up` with the full Gluu install (the stand-in package,
    /// pushed and installed offline on every node), then of `sandbox down`.
    Sandbox {
        #[arg(long, default_value_t = 3)]
        nodes: u8,
        /// Runs (the figures of each, then the median).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// LDAP replication latency: a 3-node sandbox (install and replication deploy timed), N
    /// writes on node 1 each timed until visible on nodes 2 and 3; then the floor, two plain
    /// slapd wired by hand with the same syncrepl settings, the same N writes; then the ratio.
    Replication {
        #[arg(long, default_value_t = 200)]
        writes: usize,
    },
    /// Load balancer throughput: a sandbox (Gluu on N nodes, replication, nginx on lb.sandbox),
    /// then GET /.well-known/openid-configuration for S seconds over C keep-alive connections
    /// through the balancer, and the same directly to one node; requests/s of each and the
    /// ratio (printed, not asserted).
    Lb {
        #[arg(long, default_value_t = 2)]
        nodes: u8,
        /// Seconds each target is measured.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Connections (each sends its next request when the last one was answered).
        #[arg(long, default_value_t = 16)]
        connections: usize,
    },
    /// File replication latency: one origin and N receivers (real agents on sandbox roots);
    /// single small-file changes timed until on every receiver (p50/p99), a burst of files, and
    /// the agent's idle CPU and RSS while watching the default paths.
    Fsrep {
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        #[arg(long, default_value_t = 200)]
        changes: usize,
        #[arg(long, default_value_t = 1000)]
        burst: usize,
        /// Seconds the origin agent idles before its CPU and RSS are read (0: skip).
        #[arg(long, default_value_t = 10)]
        idle_secs: u64,
    },
    /// oxAuth key rotation: a sandbox (Gluu on N nodes, replicated), `keys rotate` timed while
    /// a client requests a token from a random node and verifies it against a random node's
    /// JWKS every 50 ms; the verification failures counted (target: 0).
    Keys {
        #[arg(long, default_value_t = 3)]
        nodes: u8,
        /// How long the old keys stay published after the switch.
        #[arg(long, default_value = "10s")]
        overlap: String,
    },
    /// Idle connections without a client certificate held against a real controller (each
    /// closed one opened again), and the time a real agent takes to join and be online, and an
    /// operator call, without and during the flood.
    IdleFlood {
        #[arg(long, default_value_t = 20_000)]
        idle: usize,
        /// Loopback source addresses the connections come from (127.4.x.y).
        #[arg(long, default_value_t = 1000)]
        sources: usize,
        /// Real agents timed without, and then during, the flood.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Milliseconds before a connection the controller closed is opened again.
        #[arg(long, default_value_t = 1000)]
        reopen_ms: u64,
    },
    /// A process of the idle flood (started by `idle-flood`).
    #[command(hide = true)]
    IdleFloodHold {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        first: usize,
        #[arg(long)]
        sources: usize,
        #[arg(long)]
        reopen_ms: u64,
    },
    /// One node's credential sending metrics at full speed (new series, old series) while a
    /// well-behaved node sends its own: the store's growth and the controller's RSS against the
    /// documented bound, what was stored and refused, an operator call's latency before and
    /// during.
    MetricsFlood {
        #[arg(long, default_value_t = 60)]
        secs: u64,
    },
    /// Day-2 operations through a sandbox's load balancer: a client (a round every
    /// --period-ms from 8 source addresses) through cert install, cache password set,
    /// replication deploy --all, schema add and server remove; failed/total rounds per
    /// operation, its wall time and its draining's; then one node's oxAuth frozen and killed
    /// without draining.
    Day2 {
        #[arg(long, default_value_t = 3)]
        nodes: u8,
        #[arg(long, default_value_t = 50)]
        period_ms: u64,
    },
    /// One node's credential floods file replication: `--files` new small files (inline), then
    /// `--uploads` streamed ones of `--upload-mb`, at the default limits, while a real agent
    /// receives. Printed: the controller's RSS before, at its peak and after, what it kept
    /// (paths, bytes, its blob directory and store on disk), how long the rate limit made the
    /// flood take, and the limits' status entries.
    FsrepFlood {
        #[arg(long, default_value_t = 3000)]
        files: usize,
        #[arg(long, default_value_t = 60)]
        size_kb: usize,
        #[arg(long, default_value_t = 40)]
        uploads: usize,
        #[arg(long, default_value_t = 8)]
        upload_mb: usize,
        /// Lower the bytes the controller keeps for the run (`fsrep limits --max-total-bytes`).
        #[arg(long)]
        max_total_bytes: Option<String>,
    },
    /// Metrics ingest: N simulated agents each sending a 40-point metrics batch every
    /// `--every` (15 s on a real agent; compressed here), the controller's CPU and RSS sampled
    /// every second over `--secs`; the load printed with its real-time equivalent.
    MetricsIngest {
        #[arg(long, default_value_t = 1000)]
        agents: usize,
        /// Seconds between two batches of one agent (1.5 = 10x a real agent's 15 s).
        #[arg(long, default_value_t = 1.5)]
        every_secs: f64,
        /// Seconds the controller is measured once every agent is online.
        #[arg(long, default_value_t = 60)]
        secs: u64,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// Log search: 3 real agents on sandbox roots, each with `--size-mb` of oxAuth-style logs;
    /// wall time of `clustermgr logs --grep P --type oxauth` over all three against
    /// `grep -c P` over one node's files, in the same run.
    LogSearch {
        /// Log volume per node, in MB.
        #[arg(long, default_value_t = 1024)]
        size_mb: usize,
        /// A literal (the same meaning to the Rust regex and to grep).
        #[arg(long, default_value = "invalid_grant")]
        pattern: String,
        /// Runs of each (the median is printed).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Agent footprint: one idle agent (metrics every 15 s, no health checks) beside
    /// prometheus-node-exporter (scraped every 15 s, as Prometheus would), RSS and CPU of each
    /// sampled every second over `--secs`.
    AgentFootprint {
        #[arg(long, default_value_t = 30)]
        secs: u64,
        #[arg(long, default_value = "/usr/bin/prometheus-node-exporter")]
        node_exporter: PathBuf,
    },
    /// The packages in booted systemd machines (as root): package sizes, `apt-get install` of
    /// the agent to the node online, and a rolling `agent upgrade` of every node.
    Packaging {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
    },
}

/// Figures for one N.
struct Level {
    agents: usize,
    enroll: Duration,
    connect: Duration,
    rss_idle: f64,
    rss_connected: f64,
    rss_after: f64,
    rss_peak: f64,
    cpu_enroll: f64,
    cpu_connect: f64,
    cpu_fanout: f64,
    /// CPU time this process (the simulated agents and the operator calls) used in the fan-out.
    bench_cpu_fanout: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    jobs_per_sec: f64,
    round_walls: Vec<Duration>,
    failures: usize,
    first_error: Option<String>,
    answered: usize,
    lost: usize,
    still_online: usize,
    store_bytes: u64,
}

/// Concurrent calls per operator connection the fan-out aims for, under the controller's
/// per-connection stream cap.
const CALLS_PER_CHANNEL: usize = 48;

fn channel_count(args: &Args, agents: usize) -> usize {
    args.channels
        .unwrap_or_else(|| agents.div_ceil(CALLS_PER_CHANNEL).max(8))
        .max(1)
}

/// 127.2.x.y: a loopback source address of its own for agent `i` (avoids running out of
/// ephemeral ports towards the one controller address).
fn agent_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        2 + (i / (250 * 250)) as u8,
        ((i / 250) % 250) as u8,
        (i % 250 + 1) as u8,
    ))
}

fn hostname(i: usize) -> String {
    format!("bench-{i:05}")
}

/// Raises RLIMIT_NOFILE (soft and, when allowed, hard) to at least `want`; returns the soft
/// limit in force. Child processes (the controller) inherit it.
fn raise_nofile(want: u64) -> Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit(RLIMIT_NOFILE)")?;
    if soft >= want {
        return Ok(soft);
    }
    // Raising the hard limit needs CAP_SYS_RESOURCE; without it, go as far as the hard limit.
    if hard < want && setrlimit(Resource::RLIMIT_NOFILE, want, want).is_ok() {
        return Ok(want);
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("setrlimit(RLIMIT_NOFILE)")?;
    Ok(hard)
}

fn memory_mb(pid: u32) -> Result<(f64, f64)> {
    let m = procfs::memory(pid as i32)
        .with_context(|| format!("cannot read the memory of process {pid}"))?;
    Ok((m.rss_mib(), m.peak_mib()))
}

fn cpu_secs(pid: u32) -> Result<f64> {
    procfs::cpu_seconds(pid as i32)
        .with_context(|| format!("cannot read the CPU time of process {pid}"))
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn verdict(met: bool) -> &'static str {
    if met { "target met" } else { "target missed" }
}

async fn operator_channel(bundle: &ClientBundle, addr: &str) -> Result<Channel> {
    let tls = tls::client_config(&bundle.ca_pem, Some((&bundle.cert_pem, &bundle.key_pem)))
        .context("operator TLS config")?;
    dial::connect(addr, tls, DialOptions::default())
        .await
        .with_context(|| format!("cannot connect to the controller at {addr}"))
}

/// Number of nodes the controller reports online.
async fn online_count(op: &mut OperatorClient<Channel>) -> Result<usize> {
    let nodes = op
        .list_nodes(ListNodesRequest {})
        .await
        .map_err(|s| anyhow!("list nodes: {}", s.message()))?
        .into_inner()
        .nodes;
    Ok(nodes.iter().filter(|n| n.status == "online").count())
}

struct Round {
    latencies: Vec<Duration>,
    failures: usize,
    first_error: Option<String>,
    wall: Duration,
}

async fn fan_out(channels: &[Channel], node_ids: &[String], round: usize) -> Result<Round> {
    let start = Instant::now();
    let mut set = JoinSet::new();
    for (i, id) in node_ids.iter().enumerate() {
        let mut client = OperatorClient::new(channels[i % channels.len()].clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let req = SubmitJobRequest {
            node: Some(NodeRef { node: id.clone() }),
            operation: Some(Operation {
                kind: Some(operation::Kind::Ping(Ping {
                    payload: format!("round-{round}"),
                })),
            }),
            timeout_ms: 30_000,
            wait: true,
        };
        set.spawn(async move {
            let call = tokio::time::timeout(Duration::from_secs(60), client.submit_job(req)).await;
            let outcome = match call {
                Err(_) => Err("no answer within 60 s".to_string()),
                Ok(Err(s)) => Err(format!("{:?}: {}", s.code(), s.message())),
                Ok(Ok(r)) => match r.into_inner().job {
                    Some(j) if j.state == "succeeded" => Ok(()),
                    Some(j) => Err(format!("job {} {}: {}", j.id, j.state, j.error)),
                    None => Err("no job in the response".to_string()),
                },
            };
            (start.elapsed(), outcome)
        });
    }
    let mut out = Round {
        latencies: Vec::with_capacity(node_ids.len()),
        failures: 0,
        first_error: None,
        wall: Duration::ZERO,
    };
    while let Some(r) = set.join_next().await {
        let (latency, outcome) = r.context("fan-out task panicked")?;
        match outcome {
            Ok(()) => out.latencies.push(latency),
            Err(e) => {
                out.failures += 1;
                out.first_error.get_or_insert(e);
            }
        }
    }
    out.wall = start.elapsed();
    Ok(out)
}

/// One N against a fresh controller: enroll, connect, fan out, measure.
async fn run_level(
    args: &Args,
    ctl: &Controller,
    token: &str,
    pid: u32,
    keys: &[(Secret<String>, Vec<u8>)],
) -> Result<Level> {
    let n = keys.len();
    let bundle = ClientBundle::load(&ctl.data.join("admin.toml"))
        .context("cannot load the admin credential")?;
    let mut op = OperatorClient::new(operator_channel(&bundle, &ctl.addr).await?)
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let cpu_start = cpu_secs(pid)?;
    let (rss_idle, _) = memory_mb(pid)?;

    // Enrollment: one TLS connection and one Enroll call per agent, `concurrency` in flight.
    let sem = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let started = Instant::now();
    let mut set = JoinSet::new();
    for (i, (key, csr)) in keys.iter().enumerate() {
        let permit = sem.clone().acquire_owned().await.context("semaphore")?;
        let e = Enrollment {
            controller: ctl.addr.clone(),
            pin: ctl.pin.clone(),
            token: token.to_string(),
            hostname: hostname(i),
            bind: Some(agent_ip(i)),
        };
        let (key, csr) = (key.clone(), csr.clone());
        set.spawn(async move {
            let r = e.enroll_with(key, csr).await;
            drop(permit);
            r.map(|r| (i, r))
        });
    }
    let mut enrolled = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        enrolled.push(r.context("enrollment task panicked")??);
    }
    let enroll = started.elapsed();
    let cpu_enrolled = cpu_secs(pid)?;
    enrolled.sort_by_key(|(i, _)| *i);
    let node_ids: Vec<String> = enrolled.iter().map(|(_, e)| e.node_id.clone()).collect();

    // Sessions: every agent opens its stream, then wait until the controller lists all online.
    let stats = Arc::new(PeerStats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let mut set = JoinSet::new();
    for (i, agent) in enrolled {
        let permit = sem.clone().acquire_owned().await.context("semaphore")?;
        let (stats, stop) = (stats.clone(), stop_rx.clone());
        let log_lines = args.log_lines;
        set.spawn(async move {
            let inventory = Inventory {
                os_id: "bench".into(),
                os_version: "1".into(),
                os_pretty_name: "simulated agent".into(),
                agent_version: clustermgr_shared::VERSION.into(),
                arch: std::env::consts::ARCH.into(),
                ..agent.inventory()
            };
            let r = agent.connect(inventory).await;
            drop(permit);
            r.map(|peer| peer.answer_pings(log_lines, stats, stop))
                .with_context(|| format!("agent {i}"))
        });
    }
    let mut agents = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        agents.push(r.context("session task panicked")??);
    }
    let deadline = Instant::now() + Duration::from_secs(60) + Duration::from_millis(20 * n as u64);
    loop {
        let online = online_count(&mut op).await?;
        if online >= n {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "only {online} of {n} agents online after {:?}",
                started.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connect = started.elapsed();
    let cpu_connected = cpu_secs(pid)?;
    // Let the Hello inventory writes settle before sampling memory.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_connected, _) = memory_mb(pid)?;

    // Fan-out rounds over a few multiplexed operator connections.
    let channel_n = channel_count(args, n);
    let mut channels = Vec::with_capacity(channel_n);
    for _ in 0..channel_n {
        channels.push(operator_channel(&bundle, &ctl.addr).await?);
    }
    let bench_cpu_start = cpu_secs(std::process::id())?;
    let mut all = Vec::with_capacity(n * args.rounds);
    let mut failures = 0usize;
    let mut first_error = None;
    let mut round_walls = Vec::with_capacity(args.rounds);
    for round in 0..args.rounds {
        let r = fan_out(&channels, &node_ids, round).await?;
        all.extend(r.latencies);
        failures += r.failures;
        if first_error.is_none() {
            first_error = r.first_error;
        }
        round_walls.push(r.wall);
    }
    let cpu_fanout = cpu_secs(pid)?;
    let bench_cpu_fanout = cpu_secs(std::process::id())? - bench_cpu_start;
    let (rss_after, rss_peak) = memory_mb(pid)?;
    all.sort();
    let still_online = online_count(&mut op).await?;

    let _ = stop_tx.send(true);
    for a in agents {
        let _ = a.await;
    }
    let store_bytes = std::fs::metadata(ctl.data.join("state.redb"))
        .map(|m| m.len())
        .context("cannot stat the store file")?;
    let total_wall: f64 = round_walls.iter().map(Duration::as_secs_f64).sum();
    Ok(Level {
        agents: n,
        enroll,
        connect,
        rss_idle,
        rss_connected,
        rss_after,
        rss_peak,
        cpu_enroll: cpu_enrolled - cpu_start,
        cpu_connect: cpu_connected - cpu_enrolled,
        cpu_fanout: cpu_fanout - cpu_connected,
        bench_cpu_fanout,
        p50: percentile(&all, 50.0),
        p99: percentile(&all, 99.0),
        max: all.last().copied().unwrap_or_default(),
        jobs_per_sec: all.len() as f64 / total_wall.max(1e-9),
        round_walls,
        failures,
        first_error,
        answered: stats.pings.load(Ordering::Relaxed),
        lost: stats.lost.load(Ordering::Relaxed),
        still_online,
        store_bytes,
    })
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn print_level(l: &Level, args: &Args) {
    let n = l.agents;
    let rounds_ms: Vec<String> = l
        .round_walls
        .iter()
        .map(|w| format!("{:.0}", ms(*w)))
        .collect();
    println!();
    println!(
        "agents: {n}  enrollment: {:.1}/s ({:.2} s)  connect-all: {:.2} s",
        n as f64 / l.enroll.as_secs_f64(),
        l.enroll.as_secs_f64(),
        l.connect.as_secs_f64()
    );
    println!(
        "controller RSS: {:.1} MB idle, {:.1} MB connected, {:.1} MB after fan-out (peak {:.1} MB)",
        l.rss_idle, l.rss_connected, l.rss_after, l.rss_peak
    );
    println!(
        "controller CPU: {:.2} s enrollment, {:.2} s connect, {:.2} s fan-out \
         (this process, simulating the agents and the operator: {:.2} s in the fan-out)",
        l.cpu_enroll, l.cpu_connect, l.cpu_fanout, l.bench_cpu_fanout
    );
    println!(
        "ping fan-out ({} rounds x {n}, {} channels): p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms  \
         failures {}",
        args.rounds,
        channel_count(args, n),
        ms(l.p50),
        ms(l.p99),
        ms(l.max),
        l.failures
    );
    println!(
        "per-round completion: [{}] ms  ({:.0} jobs/s overall)",
        rounds_ms.join(", "),
        l.jobs_per_sec
    );
    println!(
        "agents answered {} pings; online after fan-out: {}/{n}; sessions lost: {}",
        l.answered, l.still_online, l.lost
    );
    println!("store file after the run: {:.1} MB", mb(l.store_bytes));
    if let Some(e) = &l.first_error {
        println!("first fan-out failure: {e}");
    }
}

fn print_summary(levels: &[Level], agent_rss: Option<f64>) {
    println!();
    println!(
        "{:>7} {:>10} {:>10} {:>13} {:>10} {:>8} {:>8} {:>9} {:>9}",
        "agents",
        "enroll/s",
        "connect s",
        "RSS conn MB",
        "RSS peak",
        "p50 ms",
        "p99 ms",
        "failures",
        "store MB"
    );
    for l in levels {
        println!(
            "{:>7} {:>10.1} {:>10.2} {:>13.1} {:>10.1} {:>8.0} {:>8.0} {:>9} {:>9.1}",
            l.agents,
            l.agents as f64 / l.enroll.as_secs_f64(),
            l.connect.as_secs_f64(),
            l.rss_connected,
            l.rss_peak,
            ms(l.p50),
            ms(l.p99),
            l.failures + l.lost + (l.agents - l.still_online.min(l.agents)),
            mb(l.store_bytes)
        );
    }
    match agent_rss {
        Some(rss) => println!("real clustermgr-agent idle RSS: {rss:.1} MB"),
        None => println!("real clustermgr-agent idle RSS: not measured (--agent-idle-secs 0)"),
    }
    match levels.iter().find(|l| l.agents == TARGET_AGENTS) {
        Some(l) => {
            println!(
                "{TARGET_AGENTS} agents, RSS < {RSS_TARGET_MB:.0} MB: {} ({:.1} MB peak)",
                verdict(l.rss_peak < RSS_TARGET_MB),
                l.rss_peak
            );
            println!(
                "{TARGET_AGENTS} agents, fan-out p99 < {P99_TARGET_MS:.0} ms: {} ({:.0} ms)",
                verdict(ms(l.p99) < P99_TARGET_MS),
                ms(l.p99)
            );
        }
        None => println!(
            "(targets, RSS < {RSS_TARGET_MB:.0} MB and p99 < {P99_TARGET_MS:.0} ms, are stated \
             for {TARGET_AGENTS} agents)"
        ),
    }
}

/// Starts one controller and one real agent joined to it, lets the agent idle, and returns its
/// VmRSS in MB.
fn real_agent_idle_rss(idle: Duration) -> Result<f64> {
    let mut ctl = Controller::init();
    ctl.start(&["--heartbeat-interval", HEARTBEAT]);
    let mut agent = Agent::new("bench-real-agent");
    agent.join(&ctl, "gluu-node");
    agent.start();
    ctl.wait_status(&agent.node_id, "online");
    // A measurement interval, not a wait for readiness: the agent is online already.
    std::thread::sleep(idle);
    let pid = agent.pid().context("the agent is not running")?;
    let (rss, _) = memory_mb(pid).with_context(|| format!("agent log:\n{}", agent.log()))?;
    // Still connected at the end of the interval.
    eventually(
        Duration::from_secs(5),
        "the agent still online",
        || match ctl.node_status(&agent.node_id) {
            Some(s) if s == "online" => Ok(()),
            other => Err(format!("status {other:?}")),
        },
    );
    agent.stop();
    ctl.stop();
    Ok(rss)
}

fn run_one(
    runtime: &tokio::runtime::Runtime,
    args: &Args,
    keys: &[(Secret<String>, Vec<u8>)],
) -> Result<Level> {
    let n = keys.len();
    let mut ctl = Controller::init();
    ctl.start(&["--heartbeat-interval", HEARTBEAT]);
    let pid = ctl.pid().context("the controller is not running")?;
    let token = ctl
        .cli_ok(&[
            "token",
            "create",
            "--role",
            "gluu-node",
            "--uses",
            &n.to_string(),
            "--ttl",
            "1h",
        ])
        .trim()
        .to_string();
    let result = runtime.block_on(run_level(args, &ctl, &token, pid, keys));
    if result.is_err() {
        let log = std::fs::read_to_string(ctl.log_path()).unwrap_or_default();
        let errors: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("WARN"))
            .collect();
        if !errors.is_empty() {
            eprintln!("controller warnings/errors ({}), last ones:", errors.len());
            for l in errors.iter().rev().take(10).rev() {
                eprintln!("  {l}");
            }
        }
    }
    ctl.stop();
    result
}

fn main() -> Result<()> {
    let args = Args::parse();
    match args.mode {
        Some(Mode::Push { size_mb, nodes }) => return push_bench(size_mb, nodes),
        Some(Mode::Sandbox { nodes, runs }) => return sandbox_bench(nodes, runs),
        Some(Mode::Replication { writes }) => return replication_bench(writes),
        Some(Mode::Lb {
            nodes,
            secs,
            connections,
        }) => return lb_bench(nodes, secs, connections),
        Some(Mode::Fsrep {
            nodes,
            changes,
            burst,
            idle_secs,
        }) => return fsrep_bench(nodes, changes, burst, idle_secs),
        Some(Mode::Keys { nodes, overlap }) => return keys_bench(nodes, &overlap),
        Some(Mode::IdleFlood {
            idle,
            sources,
            runs,
            reopen_ms,
        }) => return idle_flood::idle_flood_bench(idle, sources, runs, reopen_ms),
        Some(Mode::IdleFloodHold {
            ref addr,
            ref ca,
            count,
            first,
            sources,
            reopen_ms,
        }) => return idle_flood::hold_worker(addr, ca, count, first, sources, reopen_ms),
        Some(Mode::MetricsFlood { secs }) => return metrics_flood::run(secs),
        Some(Mode::Day2 { nodes, period_ms }) => return day2::run(nodes, period_ms),
        Some(Mode::FsrepFlood {
            files,
            size_kb,
            uploads,
            upload_mb,
            max_total_bytes,
        }) => return fsrep_flood::run(files, size_kb, uploads, upload_mb, max_total_bytes),
        Some(Mode::MetricsIngest {
            agents,
            every_secs,
            secs,
            concurrency,
        }) => return metrics_ingest_bench(agents, every_secs, secs, concurrency),
        Some(Mode::LogSearch {
            size_mb,
            ref pattern,
            runs,
        }) => return log_search_bench(size_mb, pattern, runs),
        Some(Mode::AgentFootprint {
            secs,
            ref node_exporter,
        }) => return agent_footprint_bench(secs, node_exporter),
        Some(Mode::Packaging { nodes }) => return packaging::run(nodes),
        None => {}
    }
    ensure!(
        !args.agents.is_empty(),
        "--agents needs at least one number"
    );
    for &n in &args.agents {
        ensure!(n >= 1, "--agents: each number must be at least 1");
        ensure!(
            n <= MAX_AGENTS,
            "--agents: each number is at most {MAX_AGENTS} (one join token allows at most \
             {MAX_AGENTS} uses)"
        );
    }
    let most = args.agents.iter().copied().max().unwrap_or(1);
    // One socket per agent in this process and one in the controller, plus enrollments in
    // flight, operator channels and the store.
    let want = (most + 2 * args.concurrency + channel_count(&args, most) + 1024) as u64;
    let nofile = raise_nofile(want)?;
    if nofile < want {
        eprintln!(
            "warning: RLIMIT_NOFILE {nofile} is low for {most} agents (one socket each); \
             run as root or raise the hard limit"
        );
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    eprintln!(
        "agents {:?}, {} rounds ({cpus} CPUs, RLIMIT_NOFILE {nofile})",
        args.agents, args.rounds
    );
    tls::install_crypto_provider();

    // Keys and CSRs first, once for the largest N: agent-side work, not part of any rate.
    let mut keys = Vec::with_capacity(most);
    for i in 0..most {
        keys.push(pki::new_key_and_csr(&hostname(i)).context("key and CSR")?);
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut levels = Vec::with_capacity(args.agents.len());
    let mut error = None;
    for &n in &args.agents {
        eprintln!("starting a controller and {n} simulated agents");
        match run_one(&runtime, &args, &keys[..n]) {
            Ok(l) => {
                print_level(&l, &args);
                levels.push(l);
            }
            Err(e) => {
                error = Some(e.context(format!("with {n} agents")));
                break;
            }
        }
    }
    // Close every simulated agent's connection before anything else.
    runtime.shutdown_timeout(Duration::from_secs(5));

    let agent_rss = if args.agent_idle_secs > 0 && error.is_none() {
        eprintln!(
            "starting one real clustermgr-agent, idling {} s",
            args.agent_idle_secs
        );
        Some(real_agent_idle_rss(Duration::from_secs(
            args.agent_idle_secs,
        ))?)
    } else {
        None
    };
    print_summary(&levels, agent_rss);
    if let Some(e) = error {
        return Err(e);
    }
    let bad: Vec<String> = levels
        .iter()
        .filter(|l| l.failures > 0 || l.lost > 0 || l.still_online != l.agents)
        .map(|l| {
            format!(
                "{} agents: {} fan-out failures, {} sessions lost, {}/{} online",
                l.agents, l.failures, l.lost, l.still_online, l.agents
            )
        })
        .collect();
    ensure!(bad.is_empty(), "{}", bad.join("; "));
    Ok(())
}

// ----- push mode -----

/// Builds a .deb of about `size_mb` MB of random bytes (uncompressed) in `dir`.
fn build_bench_deb(dir: &std::path::Path, size_mb: usize) -> Result<std::path::PathBuf> {
    use std::io::{Read, Write};
    let tree = dir.join("benchpkg-tree");
    std::fs::create_dir_all(tree.join("DEBIAN"))?;
    std::fs::write(
        tree.join("DEBIAN/control"),
        "Package: benchpkg\nVersion: 1.0\nArchitecture: all\nMaintainer: bench <b@example.com>\n\
         Description: push benchmark payload\n",
    )?;
    std::fs::create_dir_all(tree.join("opt/benchpkg"))?;
    let mut blob = std::fs::File::create(tree.join("opt/benchpkg/blob"))?;
    let mut rnd = std::fs::File::open("/dev/urandom")?;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..size_mb {
        rnd.read_exact(&mut buf)?;
        blob.write_all(&buf)?;
    }
    drop(blob);
    let out = dir.join("benchpkg_1.0_all.deb");
    let o = std::process::Command::new("dpkg-deb")
        .args(["-Znone", "--root-owner-group", "--build"])
        .arg(&tree)
        .arg(&out)
        .output()
        .context("run dpkg-deb (is dpkg installed?)")?;
    ensure!(
        o.status.success(),
        "dpkg-deb failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::remove_dir_all(&tree)?;
    Ok(out)
}

fn mb_per_sec(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64().max(1e-9)
}

fn push_bench(size_mb: usize, nodes: usize) -> Result<()> {
    ensure!(
        size_mb >= 1 && nodes >= 1,
        "--size-mb and --nodes are at least 1"
    );
    let mut ctl = Controller::init();
    ctl.start(&[]);
    eprintln!("starting {nodes} agents");
    let mut agents = Vec::new();
    for i in 0..nodes {
        let mut a = Agent::new(&format!("push-{i}"));
        a.join(&ctl, "gluu-node");
        a.start();
        agents.push(a);
    }
    for a in &agents {
        ctl.wait_status(&a.node_id, "online");
    }
    eprintln!("building a {size_mb} MB package");
    let deb = build_bench_deb(ctl.dir.path(), size_mb)?;
    let size = std::fs::metadata(&deb)?.len();
    let deb_s = deb.to_string_lossy().to_string();

    let t = Instant::now();
    ctl.cli_ok(&["package", "add", &deb_s]);
    let add = t.elapsed();

    let mut args = vec!["--output", "json", "package", "push", "benchpkg"];
    let names: Vec<String> = agents.iter().map(|a| a.hostname.clone()).collect();
    args.extend(names.iter().map(String::as_str));
    let t = Instant::now();
    let out = ctl.cli(&args);
    let push = t.elapsed();
    ensure!(
        out.status.success(),
        "push failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let results: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let delivered: u64 = results
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["received_bytes"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    ensure!(
        delivered == size * nodes as u64,
        "delivered {delivered} bytes, expected {}",
        size * nodes as u64
    );
    let aggregate = mb_per_sec(delivered, push);
    println!("package: {:.1} MB ({size} bytes)", size as f64 / 1048576.0);
    println!(
        "add (CLI -> controller): {:.2} s, {:.1} MB/s",
        add.as_secs_f64(),
        mb_per_sec(size, add)
    );
    println!(
        "push to {nodes} nodes at once: {:.2} s, {aggregate:.1} MB/s delivered together \
         ({:.1} MB/s per node)",
        push.as_secs_f64(),
        aggregate / nodes as f64
    );
    for a in &mut agents {
        a.stop();
    }
    match scp_throughput(ctl.dir.path(), &deb)? {
        Some(scp) => {
            println!("scp to 1 host (loopback sshd): {scp:.1} MB/s");
            println!(
                "ratio: push aggregate / scp = {:.2}; push per node / scp = {:.2}",
                aggregate / scp,
                aggregate / nodes as f64 / scp
            );
        }
        None => println!("scp comparison skipped"),
    }
    ctl.stop();
    Ok(())
}

/// Starts a throwaway sshd on a loopback port (generated host key, an authorized key for the
/// current user) and times an scp of `file` to it; None (with a note) when sshd or scp is
/// missing.
fn scp_throughput(dir: &std::path::Path, file: &std::path::Path) -> Result<Option<f64>> {
    use std::process::{Command, Stdio};
    let sshd = std::path::Path::new("/usr/sbin/sshd");
    let have = |p: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(p).is_file()))
    };
    if !sshd.exists() || !have("scp") || !have("ssh-keygen") {
        println!(
            "sshd, scp or ssh-keygen is not installed (apt-get install -y openssh-server \
             openssh-client); skipping the scp comparison"
        );
        return Ok(None);
    }
    let d = dir.join("sshd");
    std::fs::create_dir_all(&d)?;
    for k in ["host_key", "user_key"] {
        let o = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(d.join(k))
            .output()?;
        ensure!(o.status.success(), "ssh-keygen failed");
    }
    std::fs::copy(d.join("user_key.pub"), d.join("authorized_keys"))?;
    let port = clustermgr_tests::free_port();
    let config = d.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {auth}\n\
             PidFile {pid}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             Subsystem sftp internal-sftp\n",
            host = d.join("host_key").display(),
            auth = d.join("authorized_keys").display(),
            pid = d.join("sshd.pid").display(),
        ),
    )?;
    // As root, sshd wants its privilege separation directory.
    if nix::unistd::geteuid().is_root() && !std::path::Path::new("/run/sshd").exists() {
        std::fs::create_dir_all("/run/sshd")?;
    }
    let mut child = Command::new(sshd)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("sshd.log"))?)
        .spawn()
        .context("start sshd")?;
    let ready = (0..200).any(|_| {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
        false
    });
    let user = String::from_utf8_lossy(&Command::new("id").arg("-un").output()?.stdout)
        .trim()
        .to_string();
    let result = if ready {
        let dest = d.join("copy.deb");
        let t = Instant::now();
        let o = Command::new("scp")
            .args(["-q", "-P", &port.to_string(), "-i"])
            .arg(d.join("user_key"))
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
            ])
            .arg(file)
            .arg(format!("{user}@127.0.0.1:{}", dest.display()))
            .output()?;
        let took = t.elapsed();
        if o.status.success() {
            Ok(Some(mb_per_sec(std::fs::metadata(file)?.len(), took)))
        } else {
            Err(anyhow!(
                "scp failed: {}\nsshd log:\n{}",
                String::from_utf8_lossy(&o.stderr),
                std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
            ))
        }
    } else {
        Err(anyhow!(
            "sshd did not listen on port {port}:\n{}",
            std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
        ))
    };
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    result
}

/// `clustermgr sandbox up --nodes N --dir DIR --gluu-package DEB`.
fn sandbox_up(
    dir: &std::path::Path,
    nodes: u8,
    deb: &std::path::Path,
) -> Result<std::process::Output> {
    Ok(
        std::process::Command::new(clustermgr_tests::clustermgr_bin())
            .args(["sandbox", "up", "--nodes", &nodes.to_string(), "--dir"])
            .arg(dir)
            .arg("--gluu-package")
            .arg(deb)
            .output()?,
    )
}

/// `sandbox up` (hosts, settings, package push, Gluu install on every node) and `sandbox down`,
/// timed end to end as an operator runs them.
fn sandbox_bench(nodes: u8, runs: usize) -> Result<()> {
    let deb = clustermgr_tests::standin_deb();
    let mut ups = Vec::new();
    for run in 1..=runs.max(1) {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("sandbox");
        let start = Instant::now();
        let up = sandbox_up(&dir, nodes, &deb)?;
        let up_wall = start.elapsed();
        let start = Instant::now();
        let down = std::process::Command::new(clustermgr_tests::clustermgr_bin())
            .args(["sandbox", "down", "--dir"])
            .arg(&dir)
            .output()?;
        let down_wall = start.elapsed();
        ensure!(
            up.status.success(),
            "sandbox up failed: {}",
            String::from_utf8_lossy(&up.stderr)
        );
        ensure!(down.status.success(), "sandbox down failed");
        println!(
            "sandbox run {run}: up with Gluu on {nodes} nodes {:.2} s, down {:.2} s",
            up_wall.as_secs_f64(),
            down_wall.as_secs_f64()
        );
        ups.push(up_wall.as_secs_f64());
    }
    ups.sort_by(|a, b| a.total_cmp(b));
    println!(
        "sandbox up (hosts, settings, push, install on {nodes} nodes): median {:.2} s over {} runs",
        ups[ups.len() / 2],
        ups.len()
    );
    Ok(())
}

// ----- replication mode -----

/// The LDAPS port of the sandbox's directories and their addresses (node i: 127.0.0.(10+i)).
const SANDBOX_LDAP_PORT: u16 = 1636;
const SANDBOX_ADMIN_DN: &str = "cn=directory manager";
const SANDBOX_PEOPLE: &str = "ou=people,o=gluu";
/// The floor's suffix and administrator (its rootdn, also the syncrepl identity).
const FLOOR_BASE: &str = "o=bench";
const FLOOR_ADMIN_DN: &str = "cn=admin,o=bench";
const FLOOR_IPS: [&str; 2] = ["127.0.0.21", "127.0.0.22"];
/// Pause between two visibility polls of one write.
const POLL_EVERY: Duration = Duration::from_micros(500);
/// How long one write may take to show up everywhere.
const VISIBLE_WITHIN: Duration = Duration::from_secs(30);
/// slapd's debug level: 256 (stats) is what the Gluu stand-in runs its slapd with, so both
/// sides pay the same logging cost.
const SLAPD_DEBUG: &str = "256";

/// Latencies of N writes: until visible on every other node, and of the add alone.
struct WriteFigures {
    visible: Vec<Duration>,
    add: Vec<Duration>,
    /// Until visible on the first reader alone (one hop, as the floor's pair measures).
    first_reader: Vec<Duration>,
}

impl WriteFigures {
    fn sorted(mut self) -> Self {
        self.visible.sort();
        self.add.sort();
        self.first_reader.sort();
        self
    }
    fn p50(&self) -> Duration {
        percentile(&self.visible, 50.0)
    }
    fn p99(&self) -> Duration {
        percentile(&self.visible, 99.0)
    }
    fn print(&self, label: &str) {
        println!(
            "{label}: {} writes, visible on every other node p50 {:.2} ms, p99 {:.2} ms, max \
             {:.2} ms (the add itself p50 {:.2} ms; the first reader alone p50 {:.2} ms, p99 \
             {:.2} ms)",
            self.visible.len(),
            ms(self.p50()),
            ms(self.p99()),
            ms(self.visible.last().copied().unwrap_or_default()),
            ms(percentile(&self.add, 50.0)),
            ms(percentile(&self.first_reader, 50.0)),
            ms(percentile(&self.first_reader, 99.0)),
        );
    }
}

/// One bound LDAPS connection (certificate not verified: a benchmark on loopback).
async fn ldap_bind(url: &str, dn: &str, password: &str) -> Result<ldap3::Ldap> {
    let settings = ldap3::LdapConnSettings::new()
        .set_no_tls_verify(true)
        .set_conn_timeout(Duration::from_secs(10));
    let (conn, mut ldap) = ldap3::LdapConnAsync::with_settings(settings, url)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    ldap3::drive!(conn);
    ldap.simple_bind(dn, password)
        .await
        .with_context(|| format!("bind to {url}"))?
        .success()
        .with_context(|| format!("bind to {url} as {dn}"))?;
    Ok(ldap)
}

/// Whether `dn` exists (a base-scope search; noSuchObject is "not yet").
async fn exists(ldap: &mut ldap3::Ldap, dn: &str) -> Result<bool> {
    let r = ldap
        .search(dn, ldap3::Scope::Base, "(objectClass=*)", vec!["1.1"])
        .await
        .with_context(|| format!("search {dn}"))?;
    match r.1.rc {
        0 => Ok(!r.0.is_empty()),
        32 => Ok(false),
        rc => bail!("search {dn}: result code {rc} ({})", r.1.text),
    }
}

/// Adds an inetOrgPerson `uid=<uid>,<parent>`.
async fn add_person(ldap: &mut ldap3::Ldap, parent: &str, uid: &str) -> Result<String> {
    let dn = format!("uid={uid},{parent}");
    ldap.add(
        &dn,
        vec![
            ("objectClass", ["inetOrgPerson"].into()),
            ("uid", [uid].into()),
            ("cn", [uid].into()),
            ("sn", ["bench"].into()),
        ],
    )
    .await
    .with_context(|| format!("add {dn}"))?
    .success()
    .with_context(|| format!("add {dn}"))?;
    Ok(dn)
}

/// Waits until `dn` is visible on every reader (each polled every [`POLL_EVERY`]); returns
/// when the first reader saw it, counted from `since`.
async fn wait_visible(readers: &mut [ldap3::Ldap], dn: &str, since: Instant) -> Result<Duration> {
    let mut pending: Vec<usize> = (0..readers.len()).collect();
    let mut first = Duration::ZERO;
    while !pending.is_empty() {
        let mut still = Vec::with_capacity(pending.len());
        for i in pending {
            if !exists(&mut readers[i], dn).await? {
                still.push(i);
            } else if i == 0 {
                first = since.elapsed();
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        ensure!(
            since.elapsed() < VISIBLE_WITHIN,
            "{dn} not visible on {} reader(s) within {VISIBLE_WITHIN:?}",
            pending.len()
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
    Ok(first)
}

/// N writes on `writer`, each timed from the add's start until visible on every reader.
async fn timed_writes(
    writer: &mut ldap3::Ldap,
    readers: &mut [ldap3::Ldap],
    parent: &str,
    prefix: &str,
    writes: usize,
) -> Result<WriteFigures> {
    let mut f = WriteFigures {
        visible: Vec::with_capacity(writes),
        add: Vec::with_capacity(writes),
        first_reader: Vec::with_capacity(writes),
    };
    for i in 0..writes {
        let start = Instant::now();
        let dn = add_person(writer, parent, &format!("{prefix}-{i:05}")).await?;
        f.add.push(start.elapsed());
        let first = wait_visible(readers, &dn, start).await?;
        f.visible.push(start.elapsed());
        f.first_reader.push(first);
    }
    Ok(f.sorted())
}

fn replication_bench(writes: usize) -> Result<()> {
    ensure!(writes >= 1, "--writes is at least 1");
    tls::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let tmp = tempfile::tempdir()?;
    eprintln!("through clustermgr: sandbox up with 3 nodes");
    let ours = sandbox_writes(&runtime, tmp.path(), writes)?;
    eprintln!("the floor: two plain slapd with the same syncrepl settings");
    let floor = floor_writes(&runtime, tmp.path(), writes)?;
    ours.print("clustermgr sandbox (node 1 -> nodes 2 and 3; first reader: node 2)");
    floor.print("floor: plain slapd pair (A -> B)");
    let r50 = ms(ours.p50()) / ms(floor.p50()).max(1e-6);
    let r99 = ms(ours.p99()) / ms(floor.p99()).max(1e-6);
    println!(
        "ratio clustermgr / floor: p50 {r50:.2}x ({}), p99 {r99:.2}x ({}); target: within 2x of \
         the floor",
        verdict(r50 <= 2.0),
        verdict(r99 <= 2.0)
    );
    Ok(())
}

/// Through clustermgr: `sandbox up` (install and replication), the writes, `sandbox down`.
fn sandbox_writes(
    runtime: &tokio::runtime::Runtime,
    tmp: &std::path::Path,
    writes: usize,
) -> Result<WriteFigures> {
    let deb = clustermgr_tests::standin_deb();
    let dir = tmp.join("sandbox");
    let start = Instant::now();
    let up = std::process::Command::new(clustermgr_tests::clustermgr_bin())
        .args(["sandbox", "up", "--nodes", "3", "--dir"])
        .arg(&dir)
        .arg("--gluu-package")
        .arg(&deb)
        .output()
        .context("run clustermgr sandbox up")?;
    let up_wall = start.elapsed();
    let result = if up.status.success() {
        println!(
            "sandbox up (3 nodes, Gluu install, replication deploy): {:.2} s",
            up_wall.as_secs_f64()
        );
        sandbox_measure(runtime, &dir, writes)
    } else {
        Err(anyhow!(
            "sandbox up failed: {}{}",
            String::from_utf8_lossy(&up.stderr),
            String::from_utf8_lossy(&up.stdout)
        ))
    };
    let down = std::process::Command::new(clustermgr_tests::clustermgr_bin())
        .args(["sandbox", "down", "--dir"])
        .arg(&dir)
        .output()
        .context("run clustermgr sandbox down")?;
    let figures = result?;
    ensure!(
        down.status.success(),
        "sandbox down failed: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    Ok(figures)
}

fn sandbox_measure(
    runtime: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    writes: usize,
) -> Result<WriteFigures> {
    let out = std::process::Command::new(clustermgr_tests::clustermgr_bin())
        .arg("--data-dir")
        .arg(dir.join("controller"))
        .args(["--output", "json", "workflow", "list"])
        .output()
        .context("run clustermgr workflow list")?;
    ensure!(
        out.status.success(),
        "workflow list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("workflow list: not JSON")?;
    let deploy = list.as_array().and_then(|ws| {
        ws.iter()
            .find(|w| w["kind"] == "ldap-replication" && w["status"] == "succeeded")
    });
    match deploy {
        Some(w) => {
            let created = w["created_unix_ms"].as_u64().unwrap_or(0);
            let finished = w["finished_unix_ms"].as_u64().unwrap_or(0);
            println!(
                "replication deploy (ldap-replication workflow {}): {:.2} s",
                w["id"].as_str().unwrap_or("?"),
                finished.saturating_sub(created) as f64 / 1000.0
            );
        }
        None => println!("replication deploy: no succeeded ldap-replication workflow listed"),
    }
    let password = std::fs::read_to_string(dir.join("secrets/ldap-admin-password"))
        .context("read the sandbox's LDAP admin password")?;
    let password = password.trim_end_matches(['\n', '\r']);
    let url = |n: u8| format!("ldaps://127.0.0.{}:{SANDBOX_LDAP_PORT}", 10 + n);
    runtime.block_on(async {
        let mut writer = ldap_bind(&url(1), SANDBOX_ADMIN_DN, password).await?;
        let mut readers = vec![
            ldap_bind(&url(2), SANDBOX_ADMIN_DN, password).await?,
            ldap_bind(&url(3), SANDBOX_ADMIN_DN, password).await?,
        ];
        // ou=people comes with the install on every node; make sure it is there.
        ensure!(
            exists(&mut writer, SANDBOX_PEOPLE).await?,
            "{SANDBOX_PEOPLE} is missing on node 1"
        );
        let f = timed_writes(&mut writer, &mut readers, SANDBOX_PEOPLE, "bench", writes).await?;
        let _ = writer.unbind().await;
        for r in &mut readers {
            let _ = r.unbind().await;
        }
        Ok(f)
    })
}

/// One plain slapd of the floor.
struct FloorSlapd {
    child: std::process::Child,
    url: String,
    log: std::path::PathBuf,
}

impl Drop for FloorSlapd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        if self.child.wait().is_err() {
            let _ = self.child.kill();
        }
    }
}

/// slapd.conf of floor server `id` (1 or 2) replicating from its peer, with the syncrepl line
/// the agent writes (`render_hooks` in agent/src/ops/replication.rs), the rootdn as identity.
fn floor_conf(dir: &std::path::Path, id: u32, peer_url: &str, password: &str) -> String {
    use std::fmt::Write as _;
    let d = dir.display();
    let peer_id = 3 - id;
    let mut c = String::new();
    for s in ["core", "cosine", "inetorgperson"] {
        let _ = writeln!(c, "include /etc/ldap/schema/{s}.schema");
    }
    let _ = writeln!(c, "modulepath /usr/lib/ldap");
    let _ = writeln!(c, "moduleload back_mdb");
    let _ = writeln!(c, "moduleload syncprov");
    let _ = writeln!(c, "pidfile {d}/slapd.pid");
    let _ = writeln!(c, "argsfile {d}/slapd.args");
    let _ = writeln!(c, "TLSCertificateFile {d}/cert.pem");
    let _ = writeln!(c, "TLSCertificateKeyFile {d}/key.pem");
    let _ = writeln!(c, "serverID {id}");
    let _ = writeln!(c, "\ndatabase mdb");
    let _ = writeln!(c, "suffix \"{FLOOR_BASE}\"");
    let _ = writeln!(c, "rootdn \"{FLOOR_ADMIN_DN}\"");
    let _ = writeln!(c, "rootpw \"{password}\"");
    let _ = writeln!(c, "directory {d}/data");
    let _ = writeln!(c, "maxsize 268435456");
    let _ = writeln!(c, "index objectClass eq");
    let _ = writeln!(c, "index entryCSN,entryUUID eq");
    let _ = writeln!(c, "index uid,mail eq");
    let _ = writeln!(
        c,
        "syncrepl rid={peer_id:03} provider={peer_url} bindmethod=simple \
         binddn=\"{FLOOR_ADMIN_DN}\" credentials=\"{password}\" searchbase=\"{FLOOR_BASE}\" \
         type=refreshAndPersist retry=\"1 10 5 +\" timeout=3 tls_cacert=\"{d}/../ca.pem\" \
         tls_reqcert=demand"
    );
    let _ = writeln!(c, "multiprovider on");
    let _ = writeln!(c, "access to * by * none");
    let _ = writeln!(c, "overlay syncprov");
    let _ = writeln!(c, "syncprov-checkpoint 100 10");
    let _ = writeln!(c, "syncprov-sessionlog 1000");
    c
}

/// Starts the two floor slapd processes under `dir` (certificates, configurations, data).
fn floor_start(dir: &std::path::Path, password: &str) -> Result<Vec<FloorSlapd>> {
    let ports = [clustermgr_tests::free_port(), clustermgr_tests::free_port()];
    let urls: Vec<String> = FLOOR_IPS
        .iter()
        .zip(ports)
        .map(|(ip, port)| format!("ldaps://{ip}:{port}"))
        .collect();
    let mut ca = String::new();
    for (i, ip) in FLOOR_IPS.iter().enumerate() {
        let d = dir.join(format!("slapd{}", i + 1));
        std::fs::create_dir_all(d.join("data"))?;
        let key = rcgen::KeyPair::generate().context("generate a TLS key")?;
        let mut params =
            rcgen::CertificateParams::new(vec![ip.to_string()]).context("certificate names")?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, *ip);
        let cert = params.self_signed(&key).context("sign a certificate")?;
        std::fs::write(d.join("cert.pem"), cert.pem())?;
        std::fs::write(d.join("key.pem"), key.serialize_pem())?;
        ca.push_str(&cert.pem());
    }
    std::fs::write(dir.join("ca.pem"), ca)?;
    let mut servers = Vec::new();
    for i in 0..2 {
        let d = dir.join(format!("slapd{}", i + 1));
        let conf = d.join("slapd.conf");
        std::fs::write(&conf, floor_conf(&d, i as u32 + 1, &urls[1 - i], password))?;
        let log = d.join("slapd.log");
        let out = std::fs::File::create(&log)?;
        let child = std::process::Command::new("/usr/sbin/slapd")
            .args(["-d", SLAPD_DEBUG, "-h"])
            .arg(format!("{}/", urls[i]))
            .arg("-f")
            .arg(&conf)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("start /usr/sbin/slapd (is the slapd package installed?)")?;
        servers.push(FloorSlapd {
            child,
            url: urls[i].clone(),
            log,
        });
    }
    for (s, (ip, port)) in servers.iter_mut().zip(FLOOR_IPS.iter().zip(ports)) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = s.child.try_wait()? {
                bail!(
                    "slapd at {} exited ({status}):\n{}",
                    s.url,
                    std::fs::read_to_string(&s.log).unwrap_or_default()
                );
            }
            if std::net::TcpStream::connect((*ip, port)).is_ok() {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "slapd at {} did not listen within 30 s:\n{}",
                s.url,
                std::fs::read_to_string(&s.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(servers)
}

/// The floor: two plain slapd replicating to each other, N writes on A, read on B.
fn floor_writes(
    runtime: &tokio::runtime::Runtime,
    tmp: &std::path::Path,
    writes: usize,
) -> Result<WriteFigures> {
    let dir = tmp.join("floor");
    std::fs::create_dir_all(&dir)?;
    let password = format!("bench-{:016x}", rand_u64());
    let servers = floor_start(&dir, &password)?;
    let result = runtime.block_on(async {
        let mut a = ldap_bind(&servers[0].url, FLOOR_ADMIN_DN, &password).await?;
        let mut readers = vec![ldap_bind(&servers[1].url, FLOOR_ADMIN_DN, &password).await?];
        a.add(
            FLOOR_BASE,
            vec![
                ("objectClass", ["organization"].into()),
                ("o", ["bench"].into()),
            ],
        )
        .await
        .context("add o=bench")?
        .success()
        .context("add o=bench")?;
        wait_visible(&mut readers, FLOOR_BASE, Instant::now()).await?;
        let f = timed_writes(&mut a, &mut readers, FLOOR_BASE, "floor", writes).await?;
        let _ = a.unbind().await;
        let _ = readers[0].unbind().await;
        Ok(f)
    });
    if result.is_err() {
        for s in &servers {
            eprintln!(
                "slapd {} log (last lines):\n{}",
                s.url,
                tail(&std::fs::read_to_string(&s.log).unwrap_or_default(), 20)
            );
        }
    }
    drop(servers);
    result
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A random number for the floor's throwaway password.
fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    u64::from_le_bytes(b)
}

// ----- lb mode -----

/// One target's figures.
struct Rate {
    ok: u64,
    /// Answers other than 200, and connections that could not be opened.
    failed: u64,
    /// Kept-alive connections the server closed under a request (nginx's keepalive_requests
    /// limit): opened again, the request not counted.
    reopened: u64,
    secs: f64,
}

impl Rate {
    fn per_sec(&self) -> f64 {
        self.ok as f64 / self.secs.max(1e-9)
    }
}

/// GETs of `path` on `addr:port` for `secs` over `connections` keep-alive connections, TLS
/// verified as exactly `cert` (the cluster's httpd certificate, which both the balancer and the
/// nodes serve).
fn http_rate(
    addr: &str,
    port: u16,
    host: &str,
    path: &str,
    cert: &str,
    secs: u64,
    connections: usize,
) -> Result<Rate> {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use std::sync::atomic::AtomicU64;
    use tokio_rustls::rustls::{self, pki_types::ServerName};
    let der = tls::certs_from_pem(cert)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no certificate"))?;
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(tls::ExactCertVerifier::new(der))
            .with_no_client_auth(),
    );
    let ip: std::net::IpAddr = addr.parse()?;
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let reopened = Arc::new(AtomicU64::new(0));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let (config, ok, failed, reopened) =
                (config.clone(), ok.clone(), failed.clone(), reopened.clone());
            let (host, path) = (host.to_string(), path.to_string());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let conn = async {
                        let tcp = tokio::net::TcpStream::connect((ip, port)).await?;
                        let tls = tokio_rustls::TlsConnector::from(config.clone())
                            .connect(ServerName::IpAddress(ip.into()), tcp)
                            .await?;
                        let (sender, conn) = hyper::client::conn::http1::handshake(
                            hyper_util::rt::TokioIo::new(tls),
                        )
                        .await?;
                        tokio::spawn(conn);
                        anyhow::Ok(sender)
                    };
                    let Ok(mut sender) = conn.await else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    while Instant::now() < deadline {
                        let req = http::Request::get(path.as_str())
                            .header(http::header::HOST, host.as_str())
                            .body(Empty::<Bytes>::new());
                        let Ok(req) = req else { return };
                        let answered = async {
                            let resp = sender.send_request(req).await?;
                            let status = resp.status();
                            resp.into_body().collect().await?;
                            anyhow::Ok(status)
                        };
                        match answered.await {
                            Ok(s) if s == http::StatusCode::OK => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(_) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => {
                                reopened.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    Ok(Rate {
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        reopened: reopened.load(Ordering::Relaxed),
        secs: start.elapsed().as_secs_f64(),
    })
}

/// A sandbox with the load balancer, then requests/s through it and directly to one node.
fn lb_bench(nodes: u8, secs: u64, connections: usize) -> Result<()> {
    tls::install_crypto_provider();
    let deb = clustermgr_tests::standin_deb();
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("sandbox");
    let start = Instant::now();
    let up = sandbox_up(&dir, nodes.max(1), &deb)?;
    let up_wall = start.elapsed();
    let result = (|| {
        ensure!(
            up.status.success(),
            "sandbox up failed: {}",
            String::from_utf8_lossy(&up.stderr)
        );
        println!(
            "sandbox up (Gluu on {nodes} nodes, replication, load balancer): {:.2} s",
            up_wall.as_secs_f64()
        );
        let cert = std::fs::read_to_string(
            dir.join("hosts/gluu1.sandbox/root/opt/gluu-server/etc/certs/httpd.crt"),
        )?;
        let path = "/.well-known/openid-configuration";
        let host = "idp.sandbox.test:8443";
        let through = http_rate("127.0.0.2", 8443, host, path, &cert, secs, connections)?;
        let direct = http_rate("127.0.0.11", 8443, host, path, &cert, secs, connections)?;
        for (what, r) in [
            ("through the load balancer (127.0.0.2)", &through),
            ("directly to gluu1 (127.0.0.11)", &direct),
        ] {
            println!(
                "GET {path} {what}: {:.0} requests/s ({} answered 200, {} failed, {connections} \
                 connections, {} closed by the server and reopened, {:.1} s)",
                r.per_sec(),
                r.ok,
                r.failed,
                r.reopened,
                r.secs
            );
        }
        println!(
            "ratio through the balancer / direct: {:.2}",
            through.per_sec() / direct.per_sec().max(1e-9)
        );
        Ok(())
    })();
    let _ = std::process::Command::new(clustermgr_tests::clustermgr_bin())
        .args(["sandbox", "down", "--dir"])
        .arg(&dir)
        .output();
    result
}

// ----- fsrep: file replication latency -----

/// Gluu's container root under a node's root: file replication's paths are inside it.
const GLUU_ROOT: &str = "opt/gluu-server";

/// Waits until `path` holds `want`; the time it took, or None after 30 s.
fn visible(path: &std::path::Path, want: &[u8], start: Instant) -> Option<Duration> {
    loop {
        if std::fs::read(path).is_ok_and(|b| b == want) {
            return Some(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(30) {
            return None;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// A started agent on a root with Gluu 4.2.3 set up (the package's machine unit, setup's
/// record) and the default replicated paths: file replication acts only there, on the paths
/// inside its container root.
fn fsrep_node(ctl: &Controller, hostname: &str) -> Result<Agent> {
    let mut a = Agent::new(hostname);
    let units = a.root.join("lib/systemd/system");
    std::fs::create_dir_all(&units)?;
    std::fs::write(units.join("systemd-nspawn@gluu-server.service"), "")?;
    let setup = a
        .root
        .join(GLUU_ROOT)
        .join("install/community-edition-setup");
    std::fs::create_dir_all(&setup)?;
    std::fs::write(setup.join("setup.py"), "")?;
    std::fs::write(setup.join("setup.properties.last.enc"), "")?;
    for p in clustermgr_shared::fsrep::DEFAULT_PATHS {
        std::fs::create_dir_all(a.root.join(GLUU_ROOT).join(p.trim_start_matches('/')))?;
    }
    a.join(ctl, "gluu-node");
    a.start();
    Ok(a)
}

/// File replication: one origin and `nodes` receivers (real agents on sandbox roots). Single
/// small-file changes, each timed until it is on every receiver; then a burst of `burst` files;
/// then the origin agent's CPU and RSS while it watches the default paths, idle.
fn fsrep_bench(nodes: usize, changes: usize, burst: usize, idle_secs: u64) -> Result<()> {
    ensure!(
        nodes >= 1 && changes >= 1,
        "--nodes and --changes are at least 1"
    );
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut agents = Vec::new();
    for i in 0..=nodes {
        agents.push(fsrep_node(&ctl, &format!("fsrep-{i}.bench.test"))?);
    }
    for a in &agents {
        ctl.wait_status(&a.node_id, "online");
        ctl.cli_ok(&["server", "add", &a.hostname]);
    }
    ctl.cli_ok(&["fsrep", "enable"]);
    eventually(Duration::from_secs(30), "every stream up", || {
        let s = ctl.json(&["fsrep", "status"]);
        let up = s["nodes"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|n| n["connected"] == true).count());
        if up == nodes + 1 {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });
    let conf = "etc/gluu/conf";
    // Single changes, one at a time.
    let mut lat = Vec::with_capacity(changes);
    for i in 0..changes {
        let rel = format!("{conf}/single-{i}.properties");
        let body = format!("key{i}=value {i}\n").into_bytes();
        let start = Instant::now();
        std::fs::write(agents[0].root.join(GLUU_ROOT).join(&rel), &body)?;
        let mut last = Duration::ZERO;
        for r in &agents[1..] {
            let d = visible(&r.root.join(GLUU_ROOT).join(&rel), &body, start)
                .ok_or_else(|| anyhow!("{rel} did not reach {} within 30 s", r.hostname))?;
            last = last.max(d);
        }
        lat.push(last);
    }
    lat.sort();
    let (p50, p99) = (percentile(&lat, 50.0), percentile(&lat, 99.0));
    println!(
        "single small-file change to {nodes} nodes ({changes} changes): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} for p99 < 1 s)",
        ms(p50),
        ms(p99),
        ms(*lat.last().unwrap_or(&Duration::ZERO)),
        verdict(ms(p99) < P99_TARGET_MS)
    );
    // A burst.
    let dir = format!("{conf}/burst");
    std::fs::create_dir_all(agents[0].root.join(GLUU_ROOT).join(&dir))?;
    let start = Instant::now();
    for i in 0..burst {
        std::fs::write(
            agents[0]
                .root
                .join(GLUU_ROOT)
                .join(format!("{dir}/f{i}.xml")),
            format!("<file n=\"{i}\"/>\n"),
        )?;
    }
    let written = start.elapsed();
    let mut done = Duration::ZERO;
    for i in 0..burst {
        let body = format!("<file n=\"{i}\"/>\n").into_bytes();
        for r in &agents[1..] {
            let d = visible(
                &r.root.join(GLUU_ROOT).join(format!("{dir}/f{i}.xml")),
                &body,
                start,
            )
            .ok_or_else(|| anyhow!("burst file {i} did not reach {}", r.hostname))?;
            done = done.max(d);
        }
    }
    println!(
        "burst of {burst} files (written in {:.0} ms): on all {nodes} nodes after {:.0} ms ({:.0} files/s per node)",
        ms(written),
        ms(done),
        burst as f64 / done.as_secs_f64().max(1e-6)
    );
    let s = ctl.json(&["fsrep", "status"]);
    println!(
        "controller's view (receipt to acknowledgement): p50 {} ms, p99 {} ms",
        s["latency_ms"]["p50"], s["latency_ms"]["p99"]
    );
    // The origin agent idle, watching the default paths.
    if idle_secs > 0 {
        let pid = agents[0]
            .pid()
            .ok_or_else(|| anyhow!("the agent is not running"))?;
        let cpu0 = cpu_secs(pid)?;
        std::thread::sleep(Duration::from_secs(idle_secs));
        let cpu = cpu_secs(pid)? - cpu0;
        let (rss, _) = memory_mb(pid)?;
        println!(
            "agent idle-watching the {} default paths for {idle_secs} s: CPU {:.2} % of one core, RSS {rss:.1} MiB",
            clustermgr_shared::fsrep::DEFAULT_PATHS.len(),
            cpu / idle_secs as f64 * 100.0
        );
    }
    if !which("csync2") || !which("unshare") {
        println!("csync2: not installed on this machine (apt-get install csync2); no comparison");
    } else if !nix::unistd::geteuid().is_root() {
        println!("csync2: the comparison needs root (a mount namespace per host); skipped");
    } else {
        let theirs = csync2_latencies(changes.min(50))?;
        let (c50, c99) = (percentile(&theirs, 50.0), percentile(&theirs, 99.0));
        println!(
            "csync2 between two hosts, `csync2 -x` back to back ({} changes): p50 {:.1} ms, p99 {:.1} ms",
            theirs.len(),
            ms(c50),
            ms(c99)
        );
        println!(
            "ratio clustermgr (to {nodes} nodes) / csync2 back to back (to 1 node): p50 {:.2}x, p99 {:.2}x",
            ms(p50) / ms(c50).max(1e-6),
            ms(p99) / ms(c99).max(1e-6)
        );
        // The old system ran csync2 from cron every 2 minutes: a change waits for the next run.
        println!(
            "csync2 at the old 2-minute cron interval (a change waits for the next run, uniformly): \
             p50 {:.1} s, p99 {:.1} s (computed from the back-to-back figures)",
            60.0 + c50.as_secs_f64(),
            118.8 + c99.as_secs_f64()
        );
    }
    Ok(())
}

/// csync2 between two "hosts" on this machine: each in its own mount namespace with its own
/// directory bound on the replicated path; host B's daemon on loopback, host A running
/// `csync2 -x` back to back. Each change is timed from the write on A until it is on B.
fn csync2_latencies(changes: usize) -> Result<Vec<Duration>> {
    use std::process::{Command, Stdio};
    let tmp = tempfile::tempdir()?;
    let base = tmp.path();
    for d in ["a", "b", "db-a", "db-b", "mnt"] {
        std::fs::create_dir_all(base.join(d))?;
    }
    let key = base.join("key");
    let k = Command::new("csync2").arg("-k").arg(&key).output()?;
    ensure!(k.status.success(), "csync2 -k failed");
    let name = format!("clustermgrbench{}", std::process::id());
    let cfg = PathBuf::from(format!("/etc/csync2_{name}.cfg"));
    let (host_a, host_b) = ("127.0.0.61", "127.0.0.62");
    let mnt = base.join("mnt");
    std::fs::write(
        &cfg,
        format!(
            "nossl * *;\ngroup bench {{\n  host {host_a} {host_b};\n  key {};\n  include {};\n  auto younger;\n}}\n",
            key.display(),
            mnt.display()
        ),
    )?;
    struct Cleanup(PathBuf, Vec<std::process::Child>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for c in &mut self.1 {
                let _ = c.kill();
                let _ = c.wait();
            }
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let mut cleanup = Cleanup(cfg, Vec::new());
    let port = clustermgr_tests::free_port().to_string();
    let in_ns = |dir: &str, then: String| {
        let mut c = Command::new("unshare");
        c.args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount --bind '{}' '{}' && {then}",
                base.join(dir).display(),
                mnt.display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let csync = |host: &str, db: &str| {
        format!(
            "csync2 -C {name} -N {host} -p {port} -D '{}'",
            base.join(db).display()
        )
    };
    cleanup
        .1
        .push(in_ns("b", format!("exec {} -ii", csync(host_b, "db-b"))).spawn()?);
    let stop = base.join("stop");
    cleanup.1.push(
        in_ns(
            "a",
            format!(
                "while [ ! -e '{}' ]; do {} -x; done",
                stop.display(),
                csync(host_a, "db-a")
            ),
        )
        .spawn()?,
    );
    let mut out = Vec::with_capacity(changes);
    for i in 0..changes {
        let body = format!("key{i}=value {i}\n").into_bytes();
        let start = Instant::now();
        std::fs::write(base.join(format!("a/single-{i}.properties")), &body)?;
        let d = visible(&base.join(format!("b/single-{i}.properties")), &body, start)
            .ok_or_else(|| anyhow!("csync2 did not copy change {i} within 30 s"))?;
        out.push(d);
    }
    std::fs::write(&stop, "")?;
    out.sort();
    Ok(out)
}

fn which(prog: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
}

// ----- keys mode -----

fn keys_curl(args: &[&str]) -> Result<String> {
    let o = std::process::Command::new("curl")
        .args(["-sk", "--fail", "--max-time", "5"])
        .args(args)
        .output()?;
    ensure!(o.status.success(), "curl {}", o.status);
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Requests a token from node `from` and verifies it against node `with`'s JWKS.
fn keys_token_verifies(from: u8, with: u8) -> Result<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let url = |n: u8, p: &str| format!("https://127.0.0.{}:8443/oxauth/restv1/{p}", 10 + n);
    let body = keys_curl(&[
        "-u",
        "bench:bench",
        "-d",
        "grant_type=client_credentials",
        &url(from, "token"),
    ])?;
    let v: serde_json::Value = serde_json::from_str(&body)?;
    let jwt = v["access_token"].as_str().context("no access_token")?;
    let jwks: serde_json::Value = serde_json::from_str(&keys_curl(&[&url(with, "jwks")])?)?;
    let (input, sig) = jwt.rsplit_once('.').context("not a JWT")?;
    let header: serde_json::Value =
        serde_json::from_slice(&B64.decode(jwt.split('.').next().unwrap_or(""))?)?;
    let kid = header["kid"].as_str().context("no kid")?;
    let key = jwks["keys"]
        .as_array()
        .and_then(|a| a.iter().find(|k| k["kid"] == kid))
        .with_context(|| format!("kid {kid} not served by node {with}"))?;
    let n = B64.decode(key["n"].as_str().context("no n")?)?;
    let e = B64.decode(key["e"].as_str().context("no e")?)?;
    ring::signature::RsaPublicKeyComponents { n: &n, e: &e }
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            input.as_bytes(),
            &B64.decode(sig)?,
        )
        .map_err(|_| anyhow!("bad signature (kid {kid})"))?;
    Ok(kid.to_string())
}

fn keys_bench(nodes: u8, overlap: &str) -> Result<()> {
    ensure!(nodes >= 2, "--nodes is at least 2");
    let deb = clustermgr_tests::standin_deb();
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("sandbox");
    let up = std::process::Command::new(clustermgr_tests::clustermgr_bin())
        .args(["sandbox", "up", "--nodes", &nodes.to_string(), "--dir"])
        .arg(&dir)
        .arg("--gluu-package")
        .arg(&deb)
        .output()
        .context("run clustermgr sandbox up")?;
    let cli = |args: &[&str]| {
        std::process::Command::new(clustermgr_tests::clustermgr_bin())
            .arg("--data-dir")
            .arg(dir.join("controller"))
            .args(args)
            .output()
    };
    let result = (|| -> Result<()> {
        ensure!(
            up.status.success(),
            "sandbox up failed: {}",
            String::from_utf8_lossy(&up.stderr)
        );
        let c = cli(&["keys", "configure", "--overlap", overlap])?;
        ensure!(
            c.status.success(),
            "keys configure: {}",
            String::from_utf8_lossy(&c.stderr)
        );
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let client = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut ok, mut failed, mut kids) =
                    (0u64, Vec::new(), std::collections::BTreeSet::new());
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let r: [u8; 2] = rand_pair(i, nodes);
                    match keys_token_verifies(r[0], r[1]) {
                        Ok(k) => {
                            ok += 1;
                            kids.insert(k);
                        }
                        Err(e) => failed.push(format!("node {} -> {}: {e:#}", r[0], r[1])),
                    }
                    i += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                (ok, failed, kids)
            })
        };
        let start = Instant::now();
        let r = cli(&["keys", "rotate"])?;
        let wall = start.elapsed();
        // The command returns once every node's configuration signs with the new keys (oxAuth
        // takes it on its next reload); the client goes on until the controller has retired
        // the old ones (after the overlap).
        let retired = (|| -> Result<Duration> {
            ensure!(
                r.status.success(),
                "keys rotate: {}",
                String::from_utf8_lossy(&r.stderr)
            );
            let mut seen_pending = false;
            loop {
                ensure!(
                    start.elapsed() < Duration::from_secs(3600),
                    "the old keys were not retired within an hour"
                );
                let o = cli(&["--output", "json", "keys", "status"])?;
                let v: serde_json::Value = serde_json::from_slice(&o.stdout)?;
                if v["retirement"].is_null() {
                    if seen_pending {
                        return Ok(start.elapsed());
                    }
                } else {
                    seen_pending = true;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })();
        stop.store(true, Ordering::Relaxed);
        let (ok, failed, kids) = client.join().map_err(|_| anyhow!("the client panicked"))?;
        let retired = retired?;
        println!(
            "key rotation on {nodes} nodes (overlap {overlap}): keys rotate returned after {:.2} s, the old keys retired {:.2} s after it started",
            wall.as_secs_f64(),
            retired.as_secs_f64()
        );
        println!(
            "client (token from a random node verified against a random node's JWKS every 50 ms): \
             {ok} verified, {} failures ({}), signing kids seen: {}",
            failed.len(),
            verdict(failed.is_empty()),
            kids.len()
        );
        for f in failed.iter().take(5) {
            println!("  failure: {f}");
        }
        Ok(())
    })();
    let _ = std::process::Command::new(clustermgr_tests::clustermgr_bin())
        .args(["sandbox", "down", "--dir"])
        .arg(&dir)
        .output();
    result
}

/// Two node numbers (1..=nodes) from a counter and the clock (no extra dependency).
fn rand_pair(i: u64, nodes: u8) -> [u8; 2] {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let x = t ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let n = u64::from(nodes.max(1));
    [(x % n) as u8 + 1, ((x >> 17) % n) as u8 + 1]
}

// ----- metrics-ingest mode -----

/// The controller's CPU (% of one core) and RSS sampled every second over `secs`.
struct Usage {
    cpu_percent: f64,
    rss_start: f64,
    rss_mean: f64,
    rss_max: f64,
    rss_end: f64,
}

fn sample_usage(pid: u32, secs: u64, mut each_second: impl FnMut()) -> Result<Usage> {
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

fn metrics_ingest_bench(
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
    let token = ctl
        .cli_ok(&[
            "token",
            "create",
            "--role",
            "gluu-node",
            "--uses",
            &agents.to_string(),
            "--ttl",
            "1h",
        ])
        .trim()
        .to_string();
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
            let e = Enrollment {
                controller: ctl.addr.clone(),
                pin: ctl.pin.clone(),
                token: token.clone(),
                hostname: hostname(i),
                bind: Some(agent_ip(i)),
            };
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

fn usage_secs(secs: u64) -> f64 {
    secs.max(1) as f64
}

// ----- log-search mode -----

const OXAUTH_LOGS: &str = "opt/gluu-server/opt/gluu/jetty/oxauth/logs";

/// Writes about `size_mb` MB of oxAuth-style lines into `dir` as `oxauth.log` and nine rotated
/// files (older mtimes); one line in about 1,000 carries `pattern`. Returns the files and the
/// number of lines carrying it.
fn write_oxauth_logs(
    dir: &std::path::Path,
    size_mb: usize,
    pattern: &str,
) -> Result<(Vec<PathBuf>, u64)> {
    use std::io::Write;
    const FILES: usize = 10;
    const MSGS: [&str; 8] = [
        "[org.gluu.oxauth.auth.Authenticator] (Authenticator.java:151) - Authentication success for User: 'user{n}'",
        "[org.gluu.oxauth.service.SessionIdService] (SessionIdService.java:412) - Session {n} updated, state: authenticated",
        "[org.gluu.oxauth.token.ws.rs.TokenRestWebServiceImpl] (TokenRestWebServiceImpl.java:118) - Attempting to request access token: grant_type = authorization_code, code = {n}",
        "[org.gluu.oxauth.authorize.ws.rs.AuthorizeRestWebServiceImpl] (AuthorizeRestWebServiceImpl.java:192) - Attempting to request authorization: responseType = code, clientId = 1001.{n}",
        "[org.gluu.oxauth.service.AuthenticationService] (AuthenticationService.java:274) - Authenticating user with LDAP: username: 'user{n}'",
        "[org.gluu.persist.ldap.operation.impl.LdapOperationsServiceImpl] (LdapOperationsServiceImpl.java:533) - LDAP search took 2 ms, entries: {n}",
        "[org.gluu.oxauth.userinfo.ws.rs.UserInfoRestWebServiceImpl] (UserInfoRestWebServiceImpl.java:101) - Attempting to request User Info, Access token = {n}",
        "[org.gluu.oxauth.model.config.ConfigurationFactory] (ConfigurationFactory.java:277) - Configuration is up to date ({n})",
    ];
    std::fs::create_dir_all(dir)?;
    let per_file = (size_mb as u64 * 1024 * 1024).div_ceil(FILES as u64);
    let mut files = Vec::with_capacity(FILES);
    let mut n: u64 = 0;
    let mut hits = 0u64;
    let base_ms: u64 = 1_795_000_000_000;
    let now = std::time::SystemTime::now();
    for f in 0..FILES {
        // Oldest first: oxauth.log.9 ... oxauth.log.1, then oxauth.log.
        let name = if f + 1 == FILES {
            "oxauth.log".to_string()
        } else {
            format!("oxauth.log.{}", FILES - 1 - f)
        };
        let path = dir.join(&name);
        let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
        let mut written = 0u64;
        while written < per_file {
            n += 1;
            let ms = base_ms + n * 7;
            let t = clustermgr_shared::util::fmt_ms(ms);
            // fmt_ms gives RFC 3339; Gluu writes `YYYY-MM-DD HH:MM:SS,mmm`.
            let stamp = format!("{} {},{:03}", &t[..10], &t[11..19], ms % 1000);
            let line = if n.is_multiple_of(997) {
                hits += 1;
                format!(
                    "{stamp} ERROR [qtp1831932724-{}] [org.gluu.oxauth.token.ws.rs.TokenRestWebServiceImpl] (TokenRestWebServiceImpl.java:563) - {pattern}: The provided access grant is invalid, code {n}\n",
                    n % 200
                )
            } else {
                let level = if n.is_multiple_of(13) {
                    "DEBUG"
                } else {
                    "INFO "
                };
                format!(
                    "{stamp} {level} [qtp1831932724-{}] {}\n",
                    n % 200,
                    MSGS[(n % 8) as usize].replace("{n}", &n.to_string())
                )
            };
            w.write_all(line.as_bytes())?;
            written += line.len() as u64;
        }
        w.flush()?;
        drop(w);
        let age = Duration::from_secs(3600 * (FILES - f) as u64);
        std::fs::File::options()
            .write(true)
            .open(&path)?
            .set_modified(now - age)?;
        files.push(path);
    }
    Ok((files, hits))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn log_search_bench(size_mb: usize, pattern: &str, runs: usize) -> Result<()> {
    use std::process::Command;
    ensure!(
        size_mb >= 1 && runs >= 1,
        "--size-mb and --runs are at least 1"
    );
    ensure!(
        pattern
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        "--pattern: letters, digits, _ and - only (the same meaning to both tools)"
    );
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut agents = Vec::new();
    for i in 1..=3 {
        let mut a = Agent::new(&format!("gluu{i}.logsearch.bench"));
        a.join(&ctl, "gluu-node");
        a.start();
        agents.push(a);
    }
    for a in &agents {
        ctl.wait_status(&a.node_id, "online");
    }
    eprintln!("writing {size_mb} MB of oxAuth logs");
    let started = Instant::now();
    let first = agents[0].root.join(OXAUTH_LOGS);
    let (files, hits) = write_oxauth_logs(&first, size_mb, pattern)?;
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    // The other nodes get the same files as hard links (same content, no second GB written;
    // the mtimes are the inode's, so rotation order is kept).
    for a in &agents[1..] {
        let dir = a.root.join(OXAUTH_LOGS);
        std::fs::create_dir_all(&dir)?;
        for f in &files {
            let name = f.file_name().context("file name")?;
            std::fs::hard_link(f, dir.join(name))?;
        }
    }
    eprintln!(
        "{:.0} MB written in {:.1} s ({} lines with {pattern})",
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        hits
    );
    let grep = || -> Result<(Duration, u64)> {
        let start = Instant::now();
        let out = Command::new("grep")
            .arg("-c")
            .arg("--")
            .arg(pattern)
            .args(&files)
            .env("LC_ALL", "C")
            .output()?;
        let d = start.elapsed();
        ensure!(out.status.success(), "grep failed");
        let count = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.rsplit(':').next().and_then(|n| n.parse::<u64>().ok()))
            .sum();
        Ok((d, count))
    };
    // Warm the page cache for both (each node's files read once).
    let (_, count) = grep()?;
    ensure!(count == hits, "grep counted {count}, {hits} were written");
    // grep's matching lines on one node, to check what the search returns.
    let mut expected: Vec<String> = {
        let out = Command::new("grep")
            .args(["-h", "--", pattern])
            .args(&files)
            .env("LC_ALL", "C")
            .output()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    };
    expected.sort();
    // Every match per node when the CLI's cap allows, else the newest 10,000.
    let limit = hits.min(10_000);
    let mut ours = Vec::with_capacity(runs);
    let mut theirs = Vec::with_capacity(runs);
    let mut lines_out = 0;
    let mut checked = true;
    for _ in 0..runs {
        let start = Instant::now();
        let out = ctl.cli(&[
            "--output",
            "json",
            "logs",
            "--grep",
            pattern,
            "--type",
            "oxauth",
            "--limit",
            &limit.to_string(),
        ]);
        ours.push(start.elapsed());
        ensure!(
            out.status.success(),
            "clustermgr logs failed: {}",
            clustermgr_tests::text(&out.stderr)
        );
        let mut per_node: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for l in out.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(l)?;
            per_node
                .entry(v["hostname"].as_str().unwrap_or_default().to_string())
                .or_default()
                .push(v["line"].as_str().unwrap_or_default().to_string());
        }
        lines_out = per_node.values().map(Vec::len).sum();
        for (node, mut got) in per_node.clone() {
            got.sort();
            let same = if limit == hits {
                got == expected
            } else {
                got.len() as u64 == limit && got.iter().all(|g| expected.binary_search(g).is_ok())
            };
            if !same {
                checked = false;
                eprintln!("{node}: {} lines returned, not grep's {hits}", got.len());
            }
        }
        checked &= per_node.len() == 3;
        theirs.push(grep()?.0);
    }
    let (o, t) = (median(ours), median(theirs));
    println!(
        "log search, {:.0} MB of oxAuth logs per node (10 files), pattern {pattern:?} ({hits} matching lines per node), median of {runs} runs, page cache warm:",
        bytes as f64 / 1e6
    );
    println!(
        "  clustermgr logs --grep {pattern} --type oxauth --limit {limit} over 3 nodes: {:.0} ms ({lines_out} lines printed; \
         each node's lines {} grep's)",
        ms(o),
        if checked { "are" } else { "are NOT" }
    );
    println!(
        "  grep -c {pattern} over one node's files: {:.0} ms ({:.0} MB/s)",
        ms(t),
        bytes as f64 / 1e6 / t.as_secs_f64().max(1e-9)
    );
    println!(
        "  ratio clustermgr (3 nodes, {} CPUs) / grep (1 node): {:.2}x",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        o.as_secs_f64() / t.as_secs_f64().max(1e-9)
    );
    for a in &mut agents {
        a.stop();
    }
    ctl.stop();
    ensure!(checked, "the search did not return grep's matching lines");
    Ok(())
}

// ----- agent-footprint mode -----

/// A number field of `/proc/<pid>/status` (`Threads`, `RssAnon` in kB...).
fn status_field(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn threads(pid: u32) -> Option<u64> {
    status_field(pid, "Threads")
}

/// Resident memory split: anonymous (heap, stacks) and file-backed (mostly the program's code).
fn rss_split(pid: u32) -> String {
    let mib = |f| status_field(pid, f).map_or(0.0, |k| k as f64 / 1024.0);
    format!(
        "{:.1} MiB anonymous + {:.1} MiB file-backed",
        mib("RssAnon"),
        mib("RssFile")
    )
}

/// GET /metrics on a plain HTTP/1.0 endpoint; the body's length.
fn scrape(addr: &str) -> Result<usize> {
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

fn agent_footprint_bench(secs: u64, node_exporter: &std::path::Path) -> Result<()> {
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
