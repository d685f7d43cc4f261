//! `clustermgr-bench packaging`: the packages in booted systemd machines, as an operator uses
//! them. Builds the .deb files of the binaries next to this one (`packaging/build-deb
//! --no-build --fast`), prints their sizes; boots `nodes` Debian machines
//! (`clustermgr_tests::booted`), and in each times `apt-get install ./clustermgr-agent.deb`,
//! `join` and `systemctl enable --now` until the controller (on the host) lists the node online;
//! then times `clustermgr agent upgrade --all` to the same package repacked as `VERSION+bench1`
//! until the workflow has ended. Figures only: nothing is asserted on them.

use anyhow::{Context, Result, bail, ensure};
use clustermgr_tests::booted::{Machine, base_root, repack};
use clustermgr_tests::{Controller, bin_dir, text};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `packaging/build-deb` of the binaries in `bin_dir()`; returns the agent's and the
/// controller's .deb.
fn build_debs(out: &std::path::Path) -> Result<(PathBuf, PathBuf)> {
    let bins = bin_dir();
    let target = bins.parent().context("target dir")?;
    let profile = match bins.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(p) => p,
    };
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace")?
        .to_path_buf();
    let o = Command::new(workspace.join("packaging/build-deb"))
        .args(["--no-build", "--fast", "--profile", profile, "--target-dir"])
        .arg(target)
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .context("packaging/build-deb")?;
    ensure!(o.status.success(), "build-deb: {}", text(&o.stderr));
    let listed = text(&o.stdout);
    let find = |prefix: &str| {
        listed
            .lines()
            .map(PathBuf::from)
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix))
            })
            .with_context(|| format!("build-deb made no {prefix}*: {listed:?}"))
    };
    Ok((find("clustermgr-agent_")?, find("clustermgr_")?))
}

pub fn run(nodes: usize) -> Result<()> {
    clustermgr_tests::machine::require_prerequisites();
    let dir = tempfile::tempdir()?;
    let (agent, controller) = build_debs(dir.path())?;
    for p in [&agent, &controller] {
        let bytes = std::fs::metadata(p)?.len();
        println!(
            "package {}: {bytes} bytes ({:.1} MiB; dev binaries, stripped, fast compression)",
            p.file_name().and_then(|n| n.to_str()).unwrap_or_default(),
            bytes as f64 / 1048576.0
        );
    }
    let base = base_root();
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut machines = Vec::new();
    for i in 0..nodes {
        let mut m = Machine::new(&base, &format!("cmbench{}n{i}", std::process::id()));
        m.boot();
        std::fs::copy(&agent, m.path("/root/clustermgr-agent.deb"))?;
        let started = Instant::now();
        m.ok(&[
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "/root/clustermgr-agent.deb",
        ]);
        let id = m.join(&ctl);
        m.ok(&["systemctl", "enable", "--now", "clustermgr-agent"]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while ctl.node_status(&id).as_deref() != Some("online") {
            if Instant::now() > deadline {
                bail!("node {id} not online within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        println!(
            "node {i}: apt-get install to online (join and enable --now included) in {:.2} s",
            started.elapsed().as_secs_f64()
        );
        machines.push(m);
    }
    let up = format!("{VERSION}+bench1");
    let up_deb = dir.path().join(format!("clustermgr-agent_{up}.deb"));
    repack(&agent, &up_deb, &up, false);
    let started = Instant::now();
    let o = ctl.cli(&[
        "agent",
        "upgrade",
        "--package",
        &up_deb.display().to_string(),
        "--all",
        "--timeout",
        "60s",
    ]);
    let took = started.elapsed();
    ensure!(
        o.status.success(),
        "agent upgrade: {}{}",
        text(&o.stderr),
        text(&o.stdout)
    );
    println!(
        "{nodes}-node rolling agent upgrade ({VERSION} -> {up}, package added and pushed \
         included) in {:.1} s",
        took.as_secs_f64()
    );
    drop(machines);
    Ok(())
}
