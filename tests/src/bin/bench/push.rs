use super::*;

/// Builds a .deb of about `size_mb` MB of random bytes (uncompressed) in `dir`.
pub(crate) fn build_bench_deb(dir: &std::path::Path, size_mb: usize) -> Result<std::path::PathBuf> {
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

pub(crate) fn push_bench(size_mb: usize, nodes: usize) -> Result<()> {
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
pub(crate) fn scp_throughput(dir: &std::path::Path, file: &std::path::Path) -> Result<Option<f64>> {
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
