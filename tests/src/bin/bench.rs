//! Scale benchmark: one real controller process on loopback and N simulated agents in this
//! process (each with its own key, certificate, loopback source address and TLS connection).
//!
//! Prints the enrollment rate, the controller's resident memory, and the latency of a ping
//! fan-out to every agent through the operator API. It exits non-zero only on errors; missed
//! targets are reported, not failed.
#![forbid(unsafe_code)]

use anyhow::{Context, Result, anyhow, bail, ensure};
use clap::Parser;
use clustermgr_proto::agent_session_client::AgentSessionClient;
use clustermgr_proto::enrollment_client::EnrollmentClient;
use clustermgr_proto::operator_client::OperatorClient;
use clustermgr_proto::{
    AgentMessage, ControllerMessage, EnrollRequest, Heartbeat, Hello, Inventory, JobLogLine,
    JobResult, ListNodesRequest, NodeRef, Operation, OperationOutput, Ping, PingOutput,
    SubmitJobRequest, agent_message, controller_message, job_event, operation, operation_output,
};
use clustermgr_shared::config::ClientBundle;
use clustermgr_shared::dial::{self, DialOptions};
use clustermgr_shared::util::now_ms;
use clustermgr_shared::{MAX_MESSAGE_BYTES, Secret, pki, tls};
use clustermgr_tests::Controller;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// Targets from the scale requirement (for 1000 agents on a 2-core machine).
const RSS_TARGET_MB: f64 = 300.0;
const P99_TARGET_MS: f64 = 500.0;
/// Heartbeat interval given to the controller (`serve --heartbeat-interval`).
const HEARTBEAT: &str = "10s";

#[derive(Parser, Debug)]
#[command(
    name = "clustermgr-bench",
    about = "Connect N simulated agents to one controller on loopback and print enrollment \
             rate, controller RSS and ping fan-out latency"
)]
struct Args {
    /// Number of simulated agents (at most 10000, the most uses one join token allows).
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Ping fan-out rounds (one ping job to every agent per round).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Enrollments / session connects in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// HTTP/2 connections the fan-out's operator calls are spread over.
    #[arg(long, default_value_t = 8)]
    channels: usize,
    /// Also send the "pong" log line the real agent sends before each ping result.
    #[arg(long)]
    log_lines: bool,
}

/// What one agent learned from enrolling.
struct Enrolled {
    index: usize,
    node_id: String,
    cert_pem: String,
    key_pem: Secret<String>,
    ca_pem: String,
}

/// Counters shared by every simulated agent.
#[derive(Default)]
struct AgentStats {
    pings: AtomicUsize,
    lost: AtomicUsize,
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

fn raise_nofile() -> Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit(RLIMIT_NOFILE)")?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("setrlimit(RLIMIT_NOFILE)")?;
    }
    Ok(hard)
}

/// (VmRSS, VmHWM) of a process, in MB.
fn rss_mb(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or_else(|| anyhow!("{name} missing from /proc/{pid}/status"))?;
        let kb: f64 = line
            .split_whitespace()
            .nth(1)
            .ok_or_else(|| anyhow!("malformed {name} line"))?
            .parse()
            .with_context(|| format!("malformed {name} line"))?;
        Ok(kb / 1024.0)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time (user + system) a process has used, in seconds.
fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("malformed /proc/{pid}/stat"))?;
    // Fields after the command: state(3) ... utime(14) stime(15); `rest` starts at field 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        f.get(i)
            .ok_or_else(|| anyhow!("malformed /proc/{pid}/stat"))?
            .parse::<f64>()
            .context("malformed /proc/<pid>/stat")
    };
    // /proc reports clock ticks in USER_HZ, which is 100 on Linux.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
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

async fn enroll_one(
    addr: &str,
    pin: &str,
    token: &str,
    index: usize,
    key_pem: Secret<String>,
    csr_der: Vec<u8>,
) -> Result<Enrolled> {
    let (tls, _seen) = tls::pinned_client_config(pin).context("pinned TLS config")?;
    let channel = dial::connect(
        addr,
        tls,
        DialOptions {
            bind: Some(agent_ip(index)),
            ..Default::default()
        },
    )
    .await
    .with_context(|| format!("agent {index}: enrollment connection"))?;
    let resp = EnrollmentClient::new(channel)
        .enroll(EnrollRequest {
            token: token.to_string(),
            csr_der,
            hostname: hostname(index),
        })
        .await
        .map_err(|s| anyhow!("agent {index}: enrollment refused: {}", s.message()))?
        .into_inner();
    Ok(Enrolled {
        index,
        node_id: resp.node_id,
        cert_pem: resp.certificate_pem,
        key_pem,
        ca_pem: resp.ca_pem,
    })
}

/// Opens the agent's session stream; returns once the controller has accepted it, leaving a
/// task that answers pings and heartbeats until `stop` fires.
async fn start_session(
    addr: &str,
    agent: Enrolled,
    stats: Arc<AgentStats>,
    log_lines: bool,
    mut stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    let index = agent.index;
    let tls = tls::client_config(&agent.ca_pem, Some((&agent.cert_pem, &agent.key_pem)))
        .with_context(|| format!("agent {index}: TLS config"))?;
    let channel = dial::connect(
        addr,
        tls,
        DialOptions {
            bind: Some(agent_ip(index)),
            ..Default::default()
        },
    )
    .await
    .with_context(|| format!("agent {index}: session connection"))?;
    let mut client = AgentSessionClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let (tx, rx) = mpsc::channel::<AgentMessage>(16);
    let hello = AgentMessage {
        msg: Some(agent_message::Msg::Hello(Hello {
            inventory: Some(Inventory {
                hostname: hostname(index),
                addresses: vec![agent_ip(index).to_string()],
                os_id: "bench".into(),
                os_version: "1".into(),
                os_pretty_name: "simulated agent".into(),
                agent_version: clustermgr_shared::VERSION.into(),
                arch: std::env::consts::ARCH.into(),
                ..Default::default()
            }),
        })),
    };
    tx.send(hello)
        .await
        .map_err(|_| anyhow!("agent {index}: session stream closed"))?;
    let mut inbound = client
        .session(ReceiverStream::new(rx))
        .await
        .map_err(|s| anyhow!("agent {index}: session refused: {}", s.message()))?
        .into_inner();
    let node_id = agent.node_id;
    Ok(tokio::spawn(async move {
        let mut heartbeat = tokio::time::interval(Duration::from_secs(10));
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seq = 0u64;
        loop {
            let to_send: Vec<AgentMessage> = tokio::select! {
                _ = stop.changed() => return,
                _ = heartbeat.tick() => {
                    seq += 1;
                    vec![AgentMessage {
                        msg: Some(agent_message::Msg::Heartbeat(Heartbeat { seq })),
                    }]
                }
                msg = inbound.message() => match msg {
                    Ok(Some(ControllerMessage { msg: Some(m) })) => match m {
                        controller_message::Msg::Welcome(w) => {
                            if w.heartbeat_interval_ms > 0 {
                                let every = Duration::from_millis(w.heartbeat_interval_ms.into());
                                heartbeat = tokio::time::interval_at(
                                    tokio::time::Instant::now() + every,
                                    every,
                                );
                                heartbeat.set_missed_tick_behavior(
                                    tokio::time::MissedTickBehavior::Delay,
                                );
                            }
                            Vec::new()
                        }
                        controller_message::Msg::Job(job) => {
                            let output = match job.operation.and_then(|o| o.kind) {
                                Some(operation::Kind::Ping(p)) => Some(OperationOutput {
                                    kind: Some(operation_output::Kind::Ping(PingOutput {
                                        payload: p.payload,
                                        agent_unix_ms: now_ms(),
                                    })),
                                }),
                                _ => None,
                            };
                            let mut out = Vec::with_capacity(2);
                            if log_lines && output.is_some() {
                                out.push(AgentMessage::job_event(
                                    &job.job_id,
                                    job_event::Event::Log(JobLogLine {
                                        seq: 1,
                                        line: "pong".into(),
                                        unix_ms: now_ms(),
                                    }),
                                ));
                            }
                            let result = match output {
                                Some(o) => {
                                    stats.pings.fetch_add(1, Ordering::Relaxed);
                                    JobResult {
                                        success: true,
                                        output: Some(o),
                                        ..Default::default()
                                    }
                                }
                                None => JobResult {
                                    success: false,
                                    error: "the bench agent only answers ping".into(),
                                    ..Default::default()
                                },
                            };
                            out.push(AgentMessage::job_event(&job.job_id, job_event::Event::Result(result)));
                            out
                        }
                        controller_message::Msg::Cancel(_) | controller_message::Msg::CaUpdate(_) => Vec::new(),
                    },
                    Ok(Some(ControllerMessage { msg: None })) => Vec::new(),
                    Ok(None) | Err(_) => {
                        if !*stop.borrow() {
                            stats.lost.fetch_add(1, Ordering::Relaxed);
                            eprintln!("agent {index} ({node_id}): session ended by the controller");
                        }
                        return;
                    }
                },
            };
            for m in to_send {
                if tx.send(m).await.is_err() {
                    stats.lost.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }))
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

async fn run(args: &Args, ctl: &Controller, token: &str, pid: u32) -> Result<()> {
    clustermgr_shared::tls::install_crypto_provider();
    let n = args.agents;
    let bundle = ClientBundle::load(&ctl.data.join("admin.toml"))
        .context("cannot load the admin credential")?;
    let mut op = OperatorClient::new(operator_channel(&bundle, &ctl.addr).await?)
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let cpu_start = cpu_secs(pid)?;
    let (rss_idle, _) = rss_mb(pid)?;

    // Keys and CSRs first: agent-side work, not part of the controller's enrollment rate.
    let mut keys = Vec::with_capacity(n);
    for i in 0..n {
        keys.push(pki::new_key_and_csr(&hostname(i)).context("key and CSR")?);
    }

    // Enrollment: one TLS connection and one Enroll call per agent, `concurrency` in flight.
    let sem = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let started = Instant::now();
    let mut set = JoinSet::new();
    for (i, (key, csr)) in keys.into_iter().enumerate() {
        let permit = sem.clone().acquire_owned().await.context("semaphore")?;
        let (addr, pin, token) = (ctl.addr.clone(), ctl.pin.clone(), token.to_string());
        set.spawn(async move {
            let r = enroll_one(&addr, &pin, &token, i, key, csr).await;
            drop(permit);
            r
        });
    }
    let mut enrolled = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        enrolled.push(r.context("enrollment task panicked")??);
    }
    let enroll_time = started.elapsed();
    let cpu_enrolled = cpu_secs(pid)?;
    enrolled.sort_by_key(|e| e.index);
    let node_ids: Vec<String> = enrolled.iter().map(|e| e.node_id.clone()).collect();

    // Sessions: every agent opens its stream, then wait until the controller lists all online.
    let stats = Arc::new(AgentStats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let mut set = JoinSet::new();
    for agent in enrolled {
        let permit = sem.clone().acquire_owned().await.context("semaphore")?;
        let (addr, stats, stop) = (ctl.addr.clone(), stats.clone(), stop_rx.clone());
        let log_lines = args.log_lines;
        set.spawn(async move {
            let r = start_session(&addr, agent, stats, log_lines, stop).await;
            drop(permit);
            r
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
    let connect_time = started.elapsed();
    let cpu_connected = cpu_secs(pid)?;
    // Let the Hello inventory writes settle before sampling memory.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_connected, _) = rss_mb(pid)?;

    // Fan-out rounds over a few multiplexed operator connections.
    let mut channels = Vec::with_capacity(args.channels.max(1));
    for _ in 0..args.channels.max(1) {
        channels.push(operator_channel(&bundle, &ctl.addr).await?);
    }
    let mut all = Vec::with_capacity(n * args.rounds);
    let mut failures = 0usize;
    let mut first_error = None;
    let mut walls = Vec::with_capacity(args.rounds);
    for round in 0..args.rounds {
        let r = fan_out(&channels, &node_ids, round).await?;
        all.extend(r.latencies);
        failures += r.failures;
        if first_error.is_none() {
            first_error = r.first_error;
        }
        walls.push(r.wall);
    }
    let cpu_fanout = cpu_secs(pid)?;
    let (rss_after, rss_peak) = rss_mb(pid)?;
    all.sort();
    let still_online = online_count(&mut op).await?;

    let _ = stop_tx.send(true);
    for a in agents {
        let _ = a.await;
    }
    let lost = stats.lost.load(Ordering::Relaxed);
    let answered = stats.pings.load(Ordering::Relaxed);

    let (p50, p99, max) = (
        percentile(&all, 50.0),
        percentile(&all, 99.0),
        all.last().copied().unwrap_or_default(),
    );
    let rounds_ms: Vec<String> = walls.iter().map(|w| format!("{:.0}", ms(*w))).collect();
    println!();
    println!(
        "agents: {n}  enrollment: {:.1}/s ({:.2} s)  connect-all: {:.2} s",
        n as f64 / enroll_time.as_secs_f64(),
        enroll_time.as_secs_f64(),
        connect_time.as_secs_f64()
    );
    println!(
        "controller RSS: {rss_idle:.1} MB idle, {rss_connected:.1} MB after connect, \
         {rss_after:.1} MB after fan-out (peak {rss_peak:.1} MB)"
    );
    println!(
        "controller CPU: {:.2} s enrollment, {:.2} s connect, {:.2} s fan-out",
        cpu_enrolled - cpu_start,
        cpu_connected - cpu_enrolled,
        cpu_fanout - cpu_connected
    );
    println!(
        "ping fan-out ({} rounds x {n}, {} channels): p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms  \
         failures {failures}",
        args.rounds,
        channels.len(),
        ms(p50),
        ms(p99),
        ms(max)
    );
    println!(
        "per-round completion: [{}] ms  ({:.0} jobs/s overall)",
        rounds_ms.join(", "),
        all.len() as f64
            / walls
                .iter()
                .map(Duration::as_secs_f64)
                .sum::<f64>()
                .max(1e-9)
    );
    println!(
        "agents answered {answered} pings; online after fan-out: {still_online}/{n}; sessions lost: {lost}"
    );
    if let Some(e) = &first_error {
        println!("first fan-out failure: {e}");
    }
    println!(
        "RSS < {RSS_TARGET_MB:.0} MB: {} ({rss_peak:.1} MB peak)",
        verdict(rss_peak < RSS_TARGET_MB)
    );
    println!(
        "fan-out p99 < {P99_TARGET_MS:.0} ms: {} ({:.0} ms)",
        verdict(ms(p99) < P99_TARGET_MS),
        ms(p99)
    );
    if n != 1000 {
        println!("(targets are stated for 1000 agents on a 2-core machine)");
    }
    ensure!(
        failures == 0 && lost == 0 && still_online == n,
        "{failures} fan-out failures, {lost} sessions lost, {still_online}/{n} online"
    );
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.agents >= 1, "--agents must be at least 1");
    ensure!(
        args.agents <= 10_000,
        "--agents is at most 10000 (one join token allows at most 10000 uses)"
    );
    let nofile = raise_nofile()?;
    if (nofile as usize) < args.agents + 256 {
        eprintln!(
            "warning: RLIMIT_NOFILE hard limit {nofile} is low for {} agents (one socket each)",
            args.agents
        );
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    eprintln!(
        "starting a controller and {} simulated agents ({cpus} CPUs, RLIMIT_NOFILE {nofile})",
        args.agents
    );

    let mut ctl = Controller::init();
    ctl.start(&["--heartbeat-interval", HEARTBEAT]);
    let pid = ctl.pid().context("the controller is not running")?;
    let uses = args.agents.to_string();
    let token = ctl
        .cli_ok(&[
            "token",
            "create",
            "--role",
            "gluu-node",
            "--uses",
            &uses,
            "--ttl",
            "1h",
        ])
        .trim()
        .to_string();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(run(&args, &ctl, &token, pid));
    // Close every agent connection before the controller goes away.
    runtime.shutdown_timeout(Duration::from_secs(5));
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
