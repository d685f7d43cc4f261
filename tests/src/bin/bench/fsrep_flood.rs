//! `clustermgr-bench fsrep-flood`: one enrolled node's credential floods file replication at
//! the default limits (or a lower `--max-total-bytes`) while a real agent receives: `--files` new small files sent inline as
//! fast as the stream takes them, then `--uploads` streamed files of `--upload-mb`. Printed: the
//! controller's RSS before, at its peak (sampled every 100 ms) and after; how long the change
//! rate limit made the flood take; what the controller kept (paths, bytes, its blob directory
//! and store file on disk); the limits' status entries for the node.

use super::{GLUU_ROOT, fsrep_node, memory_mb};
use anyhow::{Context, Result, anyhow};
use clustermgr_tests::fake_peer::Enrollment;
use clustermgr_tests::fake_peer::fsrep::{FsrepPeer, file, gluu_node, hlc_now};
use clustermgr_tests::{Controller, eventually};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Bytes under `dir` (files directly in it).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Samples the controller's RSS every 100 ms until `stop`; the largest, in MiB.
fn sample_peak(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<f64> {
    std::thread::spawn(move || {
        let mut peak = 0f64;
        while !stop.load(Ordering::Relaxed) {
            if let Ok((rss, _)) = memory_mb(pid) {
                peak = peak.max(rss);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        peak
    })
}

pub fn run(
    files: usize,
    size_kb: usize,
    uploads: usize,
    upload_mb: usize,
    max_total_bytes: Option<String>,
) -> Result<()> {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let receiver = fsrep_node(&ctl, "fsrep-receiver.bench.test")?;
    ctl.wait_status(&receiver.node_id, "online");
    ctl.cli_ok(&["server", "add", &receiver.hostname]);
    let rt = tokio::runtime::Runtime::new()?;
    let (e, session) = rt.block_on(gluu_node(Enrollment {
        controller: ctl.addr.clone(),
        pin: ctl.pin.clone(),
        token: ctl.token("gluu-node"),
        hostname: "fsrep-flooder.bench.test".into(),
        bind: None,
    }))?;
    ctl.cli_ok(&["server", "add", &e.hostname]);
    ctl.cli_ok(&["fsrep", "enable"]);
    if let Some(b) = &max_total_bytes {
        ctl.cli_ok(&["fsrep", "limits", "--max-total-bytes", b]);
    }
    let pid = ctl.pid().context("the controller is not running")?;
    let mut m = rt.block_on(FsrepPeer::open_enabled(&e))?;
    rt.block_on(m.hello())?;
    let limits = ctl.json(&["fsrep", "limits"]);
    println!(
        "limits: {} paths, {} bytes, {} changes/s per node (bursts of 10 s)",
        limits["max_files"], limits["max_total_bytes"], limits["changes_per_second"]
    );
    let (before, _) = memory_mb(pid)?;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_peak(pid, stop.clone());

    // Inline files: the stream takes them at the node's allowed rate.
    let start = Instant::now();
    rt.block_on(m.flood("/etc/gluu/conf/flood", files, size_kb << 10))?;
    let want = files as u64;
    eventually(Duration::from_secs(600), "the flood decided", || {
        let s = ctl.json(&["fsrep", "status"]);
        let kept = s["files"].as_u64().unwrap_or(0);
        let refused = s.to_string().contains("--max-");
        if kept >= want || refused {
            Ok(())
        } else {
            Err(format!("{kept} files"))
        }
    });
    let took = start.elapsed();
    println!(
        "{files} files of {size_kb} KiB sent inline: decided after {:.1} s ({:.0} changes/s)",
        took.as_secs_f64(),
        files as f64 / took.as_secs_f64().max(1e-6)
    );

    // Streamed files, until the bytes cap refuses one.
    let big = vec![0x5au8; upload_mb << 20];
    let (mut sent, mut refused) = (0, None);
    for i in 0..uploads {
        let mut head = file(
            &format!("/etc/gluu/conf/flood/big-{i}.xml"),
            &big,
            0o644,
            "",
            "",
            hlc_now(),
        );
        head.content = Vec::new();
        match rt.block_on(m.upload(&head, &big)) {
            Ok(id) => {
                rt.block_on(m.change_uploaded(head, id))?;
                sent += 1;
            }
            Err(s) => {
                refused = Some(s.message().to_string());
                break;
            }
        }
    }
    println!(
        "{sent} streamed files of {upload_mb} MiB sent{}",
        refused.map_or(String::new(), |r| format!("; the next refused: {r}"))
    );
    eventually(Duration::from_secs(120), "the uploads decided", || {
        let s = ctl.json(&["fsrep", "status"]);
        let n = s["nodes"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|n| n["hostname"] == receiver.hostname)
                    .cloned()
            })
            .unwrap_or_default();
        if n["queued"] == 0 {
            Ok(())
        } else {
            Err(n.to_string())
        }
    });
    stop.store(true, Ordering::Relaxed);
    let peak = sampler
        .join()
        .map_err(|_| anyhow!("the RSS sampler panicked"))?;
    let (after, _) = memory_mb(pid)?;
    let s = ctl.json(&["fsrep", "status"]);
    let blobs = ctl.data.join("fsrep-blobs");
    let store = std::fs::metadata(ctl.data.join("state.redb")).map_or(0, |m| m.len());
    println!(
        "controller RSS: {before:.1} MiB before, {peak:.1} MiB at its peak, {after:.1} MiB after"
    );
    println!(
        "kept: {} paths, {} bytes of content; on disk: blobs {:.1} MiB, store {:.1} MiB",
        s["files"],
        s["bytes"],
        dir_bytes(&blobs) as f64 / (1 << 20) as f64,
        store as f64 / (1 << 20) as f64
    );
    let n = s["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["hostname"] == e.hostname).cloned())
        .unwrap_or_default();
    for c in n["capped"].as_array().cloned().unwrap_or_default() {
        println!(
            "status entry for the flooding node: {}",
            c.as_str().unwrap_or("")
        );
    }
    let received = std::fs::read_dir(receiver.root.join(GLUU_ROOT).join("etc/gluu/conf/flood"))
        .map_or(0, |rd| rd.count());
    println!("files on the receiving node: {received}");
    drop(m);
    let _ = session.send(true);
    ctl.stop();
    Ok(())
}
