use super::*;

/// Raises RLIMIT_NOFILE (soft and, when allowed, hard) to at least `want`; returns the soft
/// limit in force. Child processes (the controller) inherit it.
pub(crate) fn raise_nofile(want: u64) -> Result<u64> {
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

pub(crate) fn memory_mb(pid: u32) -> Result<(f64, f64)> {
    let m = procfs::memory(pid as i32)
        .with_context(|| format!("cannot read the memory of process {pid}"))?;
    Ok((m.rss_mib(), m.peak_mib()))
}

pub(crate) fn cpu_secs(pid: u32) -> Result<f64> {
    procfs::cpu_seconds(pid as i32)
        .with_context(|| format!("cannot read the CPU time of process {pid}"))
}

/// Nearest-rank percentile of sorted values.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) fn verdict(met: bool) -> &'static str {
    if met { "target met" } else { "target missed" }
}

pub(crate) async fn operator_channel(bundle: &ClientBundle, addr: &str) -> Result<Channel> {
    let tls = tls::client_config(&bundle.ca_pem, Some((&bundle.cert_pem, &bundle.key_pem)))
        .context("operator TLS config")?;
    dial::connect(addr, tls, DialOptions::default())
        .await
        .with_context(|| format!("cannot connect to the controller at {addr}"))
}

pub(crate) fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub(crate) fn mb_per_sec(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64().max(1e-9)
}

pub(crate) fn which(prog: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
}

pub(crate) fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Simulated agent `i`'s enrollment at `ctl` with `token`, from its own loopback address.
pub(crate) fn enrollment(ctl: &Controller, token: &str, i: usize) -> Enrollment {
    Enrollment {
        controller: ctl.addr.clone(),
        pin: ctl.pin.clone(),
        token: token.to_string(),
        hostname: hostname(i),
        bind: Some(agent_ip(i)),
    }
}

/// A gluu-node join token for `uses` simulated agents, valid an hour.
pub(crate) fn join_token(ctl: &Controller, uses: usize) -> String {
    ctl.cli_ok(&[
        "token",
        "create",
        "--role",
        "gluu-node",
        "--uses",
        &uses.to_string(),
        "--ttl",
        "1h",
    ])
    .trim()
    .to_string()
}
