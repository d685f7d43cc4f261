use super::*;

/// `clustermgr sandbox up --nodes N --dir DIR --gluu-package DEB`.
pub(crate) fn sandbox_up(
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
pub(crate) fn sandbox_bench(nodes: u8, runs: usize) -> Result<()> {
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
