use super::*;

/// Figures for one N.
pub(crate) struct Level {
    pub(crate) agents: usize,
    pub(crate) enroll: Duration,
    pub(crate) connect: Duration,
    pub(crate) rss_idle: f64,
    pub(crate) rss_connected: f64,
    pub(crate) rss_after: f64,
    pub(crate) rss_peak: f64,
    pub(crate) cpu_enroll: f64,
    pub(crate) cpu_connect: f64,
    pub(crate) cpu_fanout: f64,
    /// CPU time this process (the simulated agents and the operator calls) used in the fan-out.
    pub(crate) bench_cpu_fanout: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) max: Duration,
    pub(crate) jobs_per_sec: f64,
    pub(crate) round_walls: Vec<Duration>,
    pub(crate) failures: usize,
    pub(crate) first_error: Option<String>,
    pub(crate) answered: usize,
    pub(crate) lost: usize,
    pub(crate) still_online: usize,
    pub(crate) store_bytes: u64,
}

pub(crate) fn print_level(l: &Level, args: &Args) {
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

pub(crate) fn print_summary(levels: &[Level], agent_rss: Option<f64>) {
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
