use super::*;

/// Concurrent calls per operator connection the fan-out aims for, under the controller's
/// per-connection stream cap.
pub(crate) const CALLS_PER_CHANNEL: usize = 48;

pub(crate) fn channel_count(args: &Args, agents: usize) -> usize {
    args.channels
        .unwrap_or_else(|| agents.div_ceil(CALLS_PER_CHANNEL).max(8))
        .max(1)
}

/// 127.2.x.y: a loopback source address of its own for agent `i` (avoids running out of
/// ephemeral ports towards the one controller address).
pub(crate) fn agent_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        2 + (i / (250 * 250)) as u8,
        ((i / 250) % 250) as u8,
        (i % 250 + 1) as u8,
    ))
}

pub(crate) fn hostname(i: usize) -> String {
    format!("bench-{i:05}")
}

/// Number of nodes the controller reports online.
pub(crate) async fn online_count(op: &mut OperatorClient<Channel>) -> Result<usize> {
    let nodes = op
        .list_nodes(ListNodesRequest {})
        .await
        .map_err(|s| anyhow!("list nodes: {}", s.message()))?
        .into_inner()
        .nodes;
    Ok(nodes.iter().filter(|n| n.status == "online").count())
}

pub(crate) struct Round {
    latencies: Vec<Duration>,
    failures: usize,
    first_error: Option<String>,
    wall: Duration,
}

pub(crate) async fn fan_out(
    channels: &[Channel],
    node_ids: &[String],
    round: usize,
) -> Result<Round> {
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
pub(crate) async fn run_level(
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
    // A marker for profilers attached to the controller for the fan-out alone.
    eprintln!(
        "fan-out: {} rounds to {n} agents (controller pid {pid})",
        args.rounds
    );
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

/// Starts one controller and one real agent joined to it, lets the agent idle, and returns its
/// VmRSS in MB.
pub(crate) fn real_agent_idle_rss(idle: Duration) -> Result<f64> {
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

pub(crate) fn run_one(
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

pub(crate) fn run(args: &Args) -> Result<()> {
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
    let want = (most + 2 * args.concurrency + channel_count(args, most) + 1024) as u64;
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
        match run_one(&runtime, args, &keys[..n]) {
            Ok(l) => {
                print_level(&l, args);
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
