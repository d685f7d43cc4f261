use super::*;

pub(crate) const OXAUTH_LOGS: &str = "opt/gluu-server/opt/gluu/jetty/oxauth/logs";

/// Writes about `size_mb` MB of oxAuth-style lines into `dir` as `oxauth.log` and nine rotated
/// files (older mtimes); one line in about 1,000 carries `pattern`. Returns the files and the
/// number of lines carrying it.
pub(crate) fn write_oxauth_logs(
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

pub(crate) fn log_search_bench(size_mb: usize, pattern: &str, runs: usize) -> Result<()> {
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
    // The agents' memory before any search (RSS, MiB), to see what a search keeps.
    let pids: Vec<u32> = agents
        .iter()
        .map(|a| a.pid().context("an agent is not running"))
        .collect::<Result<_>>()?;
    let rss_before: Vec<f64> = pids
        .iter()
        .map(|p| memory_mb(*p).map(|m| m.0))
        .collect::<Result<_>>()?;
    let split_before = rss_split(pids[0]);
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
    let rss_end: Vec<(f64, f64)> = pids.iter().map(|p| memory_mb(*p)).collect::<Result<_>>()?;
    // A measurement interval: the agents' idle blocking threads (the searches') exit after 2 s.
    std::thread::sleep(Duration::from_secs(4));
    let rss_after: Vec<f64> = pids
        .iter()
        .map(|p| memory_mb(*p).map(|m| m.0))
        .collect::<Result<_>>()?;
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
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|m| format!("{m:.1}"))
            .collect::<Vec<_>>()
            .join("/")
    };
    let peak: Vec<f64> = rss_end.iter().map(|m| m.1).collect();
    let end: Vec<f64> = rss_end.iter().map(|m| m.0).collect();
    println!(
        "  agents' RSS (MiB, per node): {} before the searches, {} peak, {} when the last ended, \
         {} 4 s later; after <= 12 MB: {}",
        fmt(&rss_before),
        fmt(&peak),
        fmt(&end),
        fmt(&rss_after),
        verdict(rss_after.iter().all(|m| m * 1.048_576 <= 12.0))
    );
    println!(
        "  first node's RSS: {split_before} before, {} after",
        rss_split(pids[0])
    );
    for a in &mut agents {
        a.stop();
    }
    ctl.stop();
    ensure!(checked, "the search did not return grep's matching lines");
    Ok(())
}
