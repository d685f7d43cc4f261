use super::*;

/// The LDAPS port of the sandbox's directories and their addresses (node i: 127.0.0.(10+i)).
pub(crate) const SANDBOX_LDAP_PORT: u16 = 1636;
pub(crate) const SANDBOX_ADMIN_DN: &str = "cn=directory manager";
pub(crate) const SANDBOX_PEOPLE: &str = "ou=people,o=gluu";
/// The floor's suffix and administrator (its rootdn, also the syncrepl identity).
pub(crate) const FLOOR_BASE: &str = "o=bench";
pub(crate) const FLOOR_ADMIN_DN: &str = "cn=admin,o=bench";
pub(crate) const FLOOR_IPS: [&str; 2] = ["127.0.0.21", "127.0.0.22"];
/// Pause between two visibility polls of one write.
pub(crate) const POLL_EVERY: Duration = Duration::from_micros(500);
/// How long one write may take to show up everywhere.
pub(crate) const VISIBLE_WITHIN: Duration = Duration::from_secs(30);
/// slapd's debug level: 256 (stats) is what the Gluu stand-in runs its slapd with, so both
/// sides pay the same logging cost.
pub(crate) const SLAPD_DEBUG: &str = "256";

/// Latencies of N writes: until visible on every other node, and of the add alone.
pub(crate) struct WriteFigures {
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
pub(crate) async fn ldap_bind(url: &str, dn: &str, password: &str) -> Result<ldap3::Ldap> {
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
pub(crate) async fn exists(ldap: &mut ldap3::Ldap, dn: &str) -> Result<bool> {
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
pub(crate) async fn add_person(ldap: &mut ldap3::Ldap, parent: &str, uid: &str) -> Result<String> {
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
pub(crate) async fn wait_visible(
    readers: &mut [ldap3::Ldap],
    dn: &str,
    since: Instant,
) -> Result<Duration> {
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
pub(crate) async fn timed_writes(
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

pub(crate) fn replication_bench(writes: usize) -> Result<()> {
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
pub(crate) fn sandbox_writes(
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

pub(crate) fn sandbox_measure(
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
pub(crate) struct FloorSlapd {
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
pub(crate) fn floor_conf(dir: &std::path::Path, id: u32, peer_url: &str, password: &str) -> String {
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
pub(crate) fn floor_start(dir: &std::path::Path, password: &str) -> Result<Vec<FloorSlapd>> {
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
pub(crate) fn floor_writes(
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

pub(crate) fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A random number for the floor's throwaway password.
pub(crate) fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    u64::from_le_bytes(b)
}
