//! `clustermgr-bench day2`: a sandbox (`sandbox up --nodes N`) and the day-2 client (a round
//! every `--period-ms` from 8 source addresses, through the load balancer only) through cert
//! install, cache password set, replication deploy --all, schema add, gluu restart of one node
//! and server remove.
//! Printed per operation: failed/total rounds, its wall time and the wall time of its drain and
//! rejoin steps (what draining added). Then the undrained cases, which must show failures: a
//! node's oxAuth frozen (SIGSTOP, a hung JVM) for 12 s, and killed (SIGKILL).

use anyhow::{Context, Result, ensure};
use clustermgr_tests::day2::sequence::{self, Outcome};
use clustermgr_tests::day2::{Day2Client, Tally, report, sources};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::Path;
use std::time::{Duration, Instant};

/// The oxAuth stand-in processes of `host`'s Gluu machine (seen from here).
fn oxauth_pids(dir: &Path, host: &str) -> Vec<i32> {
    clustermgr_tests::machine::processes(&dir.join(format!("hosts/{host}/root")))
        .into_iter()
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmd.split(|b| *b == 0).any(|a| a == b"oxauth")
        })
        .map(|pid| pid as i32)
        .collect()
}

/// Runs `what` as the client's phase `name` and waits `rounds` more rounds. The phase starts
/// with [`SETTLE`] rounds of its own before `what`, so the rounds still in flight from the phase
/// before have ended and a failure `what` causes is counted here, not there.
fn undrained(
    client: &Day2Client,
    name: &str,
    rounds: u64,
    what: impl FnOnce() -> Result<()>,
) -> Result<Tally> {
    client.phase(name);
    client.wait_rounds(name, SETTLE, Duration::from_secs(180));
    what()?;
    Ok(client.wait_rounds(name, SETTLE + rounds, Duration::from_secs(180)))
}

/// Rounds a phase runs before the undrained event (a round takes well under their 1 s).
const SETTLE: u64 = 20;

pub fn run(nodes: u8, period_ms: u64) -> Result<()> {
    ensure!(
        nodes >= 3,
        "--nodes: at least 3 (the sequence removes the third)"
    );
    let deb = clustermgr_tests::standin_deb();
    // The tests' sandbox lock: a sandbox's loopback addresses are fixed.
    let sbx = clustermgr_tests::Sandbox::new(nodes);
    let dir = sbx.dir.clone();
    let files = tempfile::tempdir()?;
    let start = Instant::now();
    let up = super::sandbox_up(&dir, nodes, &deb)?;
    let result = (|| {
        ensure!(
            up.status.success(),
            "sandbox up failed: {}",
            String::from_utf8_lossy(&up.stderr)
        );
        println!(
            "sandbox up (Gluu on {nodes} nodes, replication, cache, load balancer): {:.1} s",
            start.elapsed().as_secs_f64()
        );
        let data = dir.join("controller");
        let ops = sequence::operations(files.path()).map_err(anyhow::Error::msg)?;
        let client = Day2Client::start(
            sequence::sandbox_target(),
            sources(8),
            &[sequence::sandbox_certificate(&dir).map_err(anyhow::Error::msg)?],
            Duration::from_millis(period_ms),
        );
        client.phase("baseline");
        client.wait_rounds("baseline", 100, Duration::from_secs(120));
        let mut outcomes: Vec<Outcome> = Vec::new();
        for op in &ops {
            let o = sequence::run(&data, &client, op, 20);
            if !o.ok {
                eprintln!("{}: the command failed: {}", o.name, o.detail);
            }
            outcomes.push(o);
        }
        client.phase("after");
        client.wait_rounds("after", 100, Duration::from_secs(120));
        println!(
            "\nday-2 operations, a round every {period_ms} ms from 8 addresses through the load \
             balancer (discovery, token, introspection from another address, /identity/):\n{}",
            sequence::table(&outcomes)
        );
        let drained: Duration = outcomes.iter().map(|o| o.draining).sum();
        let wall: Duration = outcomes.iter().map(|o| o.wall).sum();
        println!(
            "draining and rejoining: {:.1} s of the operations' {:.1} s",
            drained.as_secs_f64(),
            wall.as_secs_f64()
        );

        // Undrained: gluu2's oxAuth frozen, then killed, with nothing taken out of rotation.
        let pids = oxauth_pids(&dir, "gluu2.sandbox");
        ensure!(!pids.is_empty(), "gluu2's oxAuth process not found");
        let frozen = undrained(&client, "undrained: oxAuth frozen 12 s", 40, || {
            for p in &pids {
                kill(Pid::from_raw(*p), Signal::SIGSTOP).context("SIGSTOP")?;
            }
            std::thread::sleep(Duration::from_secs(12));
            for p in &pids {
                kill(Pid::from_raw(*p), Signal::SIGCONT).context("SIGCONT")?;
            }
            Ok(())
        })?;
        let killed = undrained(&client, "undrained: oxAuth killed", 100, || {
            for p in &pids {
                kill(Pid::from_raw(*p), Signal::SIGKILL).context("SIGKILL")?;
            }
            Ok(())
        })?;
        let phases = client.stop();
        println!(
            "undrained, gluu2's oxAuth frozen (SIGSTOP) 12 s: {} / {} rounds failed",
            frozen.failed, frozen.rounds
        );
        println!(
            "undrained, gluu2's oxAuth killed (SIGKILL): {} / {} rounds failed",
            killed.failed, killed.rounds
        );
        println!("\nevery phase:\n{}", report(&phases));
        Ok(())
    })();
    let _ = sbx.run(&["down"]);
    result
}
