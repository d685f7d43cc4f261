//! `clustermgr-bench console`: the web console's dashboard with many nodes (server time per
//! page and page weight, with a small cluster's as the comparison, and a check that the page
//! lists every node), then the live workflow page's server-sent events during a replication
//! deploy on a 3-node sandbox (Gluu stand-in nodes): events per second to one browser, and to
//! `--watchers` browsers at once, over the whole workflow.

use super::*;
use clustermgr_tests::free_port;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Nodes of the comparison's small cluster.
const SMALL: usize = 10;

/// A curl "browser" with its own cookie jar.
struct Curl {
    base: String,
    ca: PathBuf,
    jar: PathBuf,
}

/// One response: status, body, and the server's time (request sent to the last byte; the
/// transfer on loopback is a small part of it).
struct Got {
    code: u16,
    body: String,
    server: Duration,
}

impl Curl {
    /// curl with the jar's cookies (kept when `keep`: a browser that follows a page only reads
    /// them, so that many at once never write the jar).
    fn cmd(&self, keep: bool) -> Command {
        let mut c = Command::new("curl");
        c.args(["-sS", "--max-time", "120", "--cacert"])
            .arg(&self.ca)
            .arg("-b")
            .arg(&self.jar);
        if keep {
            c.arg("-c").arg(&self.jar);
        }
        c
    }

    fn request(&self, path: &str, form: &[(&str, &str)]) -> Result<Got> {
        let body = self.jar.with_extension("body");
        let mut c = self.cmd(true);
        c.arg("-o").arg(&body).args([
            "-w",
            "%{http_code} %{time_pretransfer} %{time_starttransfer}",
        ]);
        for (k, v) in form {
            c.arg("--data-urlencode").arg(format!("{k}={v}"));
        }
        let o = c.arg(format!("{}{path}", self.base)).output()?;
        ensure!(o.status.success(), "curl {path}: {}", text(&o.stderr));
        let w = text(&o.stdout);
        let f: Vec<&str> = w.split_whitespace().collect();
        ensure!(f.len() == 3, "curl's figures: {w}");
        let secs = |s: &str| s.parse::<f64>().context("curl's time");
        Ok(Got {
            code: f[0].parse().context("status")?,
            body: std::fs::read_to_string(&body).unwrap_or_default(),
            server: Duration::from_secs_f64((secs(f[2])? - secs(f[1])?).max(0.0)),
        })
    }

    /// The first admin through /setup (the code from the data directory), signed in.
    fn first_admin(&self, data: &std::path::Path) -> Result<()> {
        let code = std::fs::read_to_string(data.join("web-setup-code"))?;
        let form = self.request("/setup", &[])?.body;
        let token = form
            .split("name=\"form_token\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .context("no form token on /setup")?
            .to_string();
        let pw = "bench console password";
        let r = self.request(
            "/setup",
            &[
                ("form_token", &token),
                ("setup_code", code.trim()),
                ("username", "admin"),
                ("password", pw),
                ("password_again", pw),
            ],
        )?;
        ensure!(r.code == 303, "setup answered {}: {}", r.code, r.body);
        Ok(())
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The dashboard `runs` times: median and p95 server time, page bytes, agent rows listed.
fn dashboard(c: &Curl, runs: usize) -> Result<(Duration, Duration, usize, usize)> {
    let mut times = Vec::with_capacity(runs);
    let mut last = String::new();
    for _ in 0..runs {
        let g = c.request("/dashboard", &[])?;
        ensure!(g.code == 200, "dashboard answered {}", g.code);
        times.push(g.server);
        last = g.body;
    }
    let rows = last
        .split("<table id=\"nodes\">")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .map_or(0, |t| t.matches("<tr>").count().saturating_sub(1));
    times.sort();
    Ok((
        median(times.clone()),
        percentile(&times, 95.0),
        last.len(),
        rows,
    ))
}

/// Enrolls simulated gluu-node agents `range` and keeps them online until `stop`.
fn enroll(
    rt: &tokio::runtime::Runtime,
    ctl: &Controller,
    token: &str,
    range: std::ops::Range<usize>,
    stop: &watch::Receiver<bool>,
) -> Result<()> {
    let stats = Arc::new(PeerStats::default());
    rt.block_on(async {
        let sem = Arc::new(Semaphore::new(64));
        let mut set = JoinSet::new();
        for i in range {
            let permit = sem.clone().acquire_owned().await.context("semaphore")?;
            let e = enrollment(ctl, token, i);
            let (stats, stop) = (stats.clone(), stop.clone());
            set.spawn(async move {
                let r = async {
                    let enrolled = e.enroll().await?;
                    enrolled.connect(enrolled.inventory()).await
                }
                .await;
                drop(permit);
                r.map(|peer| drop(peer.answer_pings(false, stats, stop)))
                    .with_context(|| format!("agent {i}"))
            });
        }
        while let Some(r) = set.join_next().await {
            r.context("agent task panicked")??;
        }
        anyhow::Ok(())
    })
}

/// `watchers` browsers open workflow `id`'s live page; once each has its first event, `go`
/// runs; then each follows until the end event. The events each received, and the time from
/// `go` until the last browser saw the end.
fn follow(
    c: &Curl,
    id: &str,
    watchers: usize,
    go: impl FnOnce(),
) -> Result<(Vec<usize>, Duration)> {
    type Lines = std::io::Lines<std::io::BufReader<std::process::ChildStdout>>;
    // The events read from `lines` up to the end event (or, with `first`, the first event).
    fn events(lines: &mut Lines, first: bool) -> (usize, bool) {
        let (mut n, mut ended) = (0, false);
        for l in lines.map_while(Result::ok) {
            if l.is_empty() {
                n += 1;
                if ended || first {
                    break;
                }
            }
            ended |= l == "event: end";
        }
        (n, ended)
    }
    let mut open = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let mut cmd = c.cmd(false);
        cmd.arg("-N")
            .arg(format!("{}/workflows/{id}/events", c.base))
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().context("curl")?;
        let lines = std::io::BufReader::new(child.stdout.take().context("curl's output")?).lines();
        open.push((child, lines));
    }
    // Every browser has its page (the first event) before `go`.
    for (_, lines) in &mut open {
        let (n, ended) = events(lines, true);
        if n == 0 {
            // What the page answers without streaming, to say why.
            let mut cmd = c.cmd(false);
            let o = cmd
                .args(["-i", "--max-time", "2"])
                .arg(format!("{}/workflows/{id}/events", c.base))
                .output()?;
            bail!(
                "workflow {id}: no event; the page answers: {}",
                text(&o.stdout).chars().take(600).collect::<String>()
            );
        }
        ensure!(!ended, "workflow {id} ended before the page was open");
    }
    let start = Instant::now();
    go();
    let mut counts = Vec::with_capacity(watchers);
    for (mut child, mut lines) in open {
        let (n, ended) = events(&mut lines, false);
        let _ = child.kill();
        let _ = child.wait();
        ensure!(ended, "a browser did not see the workflow end");
        counts.push(n + 1);
    }
    Ok((counts, start.elapsed()))
}

pub(crate) fn run(nodes: usize, watchers: usize) -> Result<()> {
    ensure!(
        (SMALL + 1..=MAX_AGENTS).contains(&nodes),
        "--nodes is between {} and {MAX_AGENTS}",
        SMALL + 1
    );
    raise_nofile((nodes + 1024) as u64)?;
    tls::install_crypto_provider();
    let web = format!("127.0.0.1:{}", free_port());
    let mut ctl = Controller::init();
    ctl.start(&["--heartbeat-interval", HEARTBEAT, "--web-listen", &web]);
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ctl.ca_cert_pem())?;
    let c = Curl {
        base: format!("https://{web}"),
        ca,
        jar: dir.path().join("admin.cookies"),
    };
    c.first_admin(&ctl.data)?;
    let token = join_token(&ctl, nodes);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (stop_tx, stop_rx) = watch::channel(false);

    println!("console: dashboard");
    enroll(&rt, &ctl, &token, 0..SMALL, &stop_rx)?;
    let runs = 20;
    let (s_med, s_p95, s_bytes, s_rows) = dashboard(&c, runs)?;
    ensure!(
        s_rows == SMALL,
        "the dashboard lists {s_rows} of {SMALL} nodes"
    );
    enroll(&rt, &ctl, &token, SMALL..nodes, &stop_rx)?;
    let (med, p95, bytes, rows) = dashboard(&c, runs)?;
    ensure!(rows == nodes, "the dashboard lists {rows} of {nodes} nodes");
    println!(
        "  {SMALL:>5} nodes: server time median {:.1} ms, p95 {:.1} ms; page {:.1} KiB ({runs} pages)",
        ms(s_med),
        ms(s_p95),
        s_bytes as f64 / 1024.0
    );
    println!(
        "  {nodes:>5} nodes: server time median {:.1} ms, p95 {:.1} ms; page {:.1} KiB ({rows} node rows listed)",
        ms(med),
        ms(p95),
        bytes as f64 / 1024.0
    );
    println!(
        "  per node: {:.2} ms and {:.2} KiB at {nodes} (x{:.1} time, x{:.1} weight for x{} nodes)",
        ms(med) / nodes as f64,
        bytes as f64 / 1024.0 / nodes as f64,
        ms(med) / ms(s_med).max(0.001),
        bytes as f64 / s_bytes.max(1) as f64,
        nodes / SMALL
    );
    let _ = stop_tx.send(true);
    drop(rt);
    drop(ctl);

    println!("console: live workflow page, replication deploy on a 3-node sandbox");
    let deb = clustermgr_tests::standin_deb();
    // The tests' sandbox lock: a sandbox's loopback addresses are fixed.
    let sbx = clustermgr_tests::Sandbox::new(3);
    let up = super::sandbox_up(&sbx.dir, 3, &deb)?;
    let result = (|| {
        ensure!(
            up.status.success(),
            "sandbox up failed: {}",
            String::from_utf8_lossy(&up.stderr)
        );
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(sbx.dir.join("sandbox.json"))?)?;
        let data = sbx.dir.join("controller");
        let c = Curl {
            base: format!("https://{}", state["console"].as_str().unwrap_or_default()),
            ca: data.join("ca.crt"),
            jar: dir.path().join("sandbox.cookies"),
        };
        c.first_admin(&data)?;
        let cli = |args: &[&str]| -> Result<String> {
            let o = Command::new(clustermgr_tests::clustermgr_bin())
                .arg("--data-dir")
                .arg(&data)
                .args(args)
                .output()?;
            ensure!(
                o.status.success(),
                "clustermgr {args:?}: {}",
                text(&o.stderr)
            );
            Ok(text(&o.stdout))
        };
        for (label, n) in [("one browser", 1), ("browsers at once", watchers)] {
            let id = cli(&["replication", "deploy", "--all", "--detach"])?
                .trim()
                .to_string();
            eprintln!("following workflow {id}");
            let (counts, took) = follow(&c, &id, n, || {})?;
            let total: usize = counts.iter().sum();
            let shown: serde_json::Value =
                serde_json::from_str(&cli(&["--output", "json", "workflow", "show", &id])?)?;
            println!(
                "  {n:>3} {label}: {total} events in {:.1} s = {:.1} events/s delivered ({:.1} per browser; min {} max {} each); workflow {}",
                took.as_secs_f64(),
                total as f64 / took.as_secs_f64().max(0.001),
                total as f64 / n as f64 / took.as_secs_f64().max(0.001),
                counts.iter().min().copied().unwrap_or(0),
                counts.iter().max().copied().unwrap_or(0),
                shown["status"],
            );
        }
        Ok(())
    })();
    let _ = sbx.run(&["down"]);
    result
}
