//! The attacks of a compromised node and of anyone reaching the controller's port, run against
//! a whole sandbox cluster while a client talks to Gluu through the load balancer: the client
//! sees no failure, the store stays within its bound, and no node's replicated files change.
//! (Each attack is tested in detail on its own in `metrics_flood.rs`, `fsrep/hostile.rs`,
//! `listener_limits.rs`; here they meet the real cluster.)

use clustermgr_proto::{AgentMessage, MetricPoint, MetricsBatch, MetricsSample, agent_message};
use clustermgr_shared::util::now_ms;
use clustermgr_tests::fake_peer::fsrep::{FsrepPeer, file, hlc_now};
use clustermgr_tests::fake_peer::{Enrollment, FakePeer};
use clustermgr_tests::{Sandbox, clustermgr_bin, text};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The controller's default intake limits (`serve --metrics-limits`).
const RATE: f64 = 100.0;
const BURST: f64 = 30_000.0;

/// Requests discovery through the load balancer every 100 ms until `stop`; (sent, failed).
fn client(dir: &Path, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, Vec<String>)> {
    let ca = dir.join("hosts/gluu1.sandbox/root/opt/gluu-server/etc/certs/httpd.crt");
    std::thread::spawn(move || {
        let (mut sent, mut failed) = (0u64, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            sent += 1;
            let o = Command::new("curl")
                .args([
                    "-sS",
                    "--max-time",
                    "10",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                ])
                .arg("--cacert")
                .arg(&ca)
                .args(["--resolve", "idp.sandbox.test:8443:127.0.0.2"])
                .arg("https://idp.sandbox.test:8443/.well-known/openid-configuration")
                .output();
            match o {
                Ok(o) if text(&o.stdout) == "200" => {}
                Ok(o) => failed.push(format!("{} {}", text(&o.stdout), text(&o.stderr))),
                Err(e) => failed.push(e.to_string()),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (sent, failed)
    })
}

fn flood_batch(n: &mut u64) -> AgentMessage {
    let now = now_ms();
    let samples = (0..240)
        .map(|i| MetricsSample {
            unix_ms: now - (*n + i) % 3_600_000,
            points: (0..512)
                .map(|j| {
                    *n += 1;
                    MetricPoint {
                        name: format!("flood_{}", j % 600),
                        labels: format!("k=\"{}\"", *n % 7),
                        value: 1.0,
                    }
                })
                .collect(),
        })
        .collect();
    AgentMessage {
        msg: Some(agent_message::Msg::Metrics(MetricsBatch { samples })),
    }
}

fn cli(data: &Path, args: &[&str]) -> String {
    let o = Command::new(clustermgr_bin())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("clustermgr");
    assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
    text(&o.stdout)
}

#[test]
fn the_cluster_keeps_serving_through_a_hostile_node_and_a_connection_flood() {
    let sbx = Sandbox::new(2);
    sbx.up();
    let data = sbx.dir.join("controller");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sbx.dir.join("sandbox.json")).unwrap()).unwrap();
    let controller = state["controller"].as_str().unwrap().to_string();
    let pin = state["ca_pin"].as_str().unwrap().to_string();
    let store = data.join("state.redb");

    let stop = Arc::new(AtomicBool::new(false));
    let lb = client(&sbx.dir, stop.clone());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let token = cli(&data, &["token", "create", "--role", "gluu-node"]);
    let hostile = rt
        .block_on(FakePeer::join(Enrollment {
            controller: controller.clone(),
            pin: pin.clone(),
            token: token.trim().to_string(),
            hostname: "hostile.sandbox".into(),
            bind: Some("127.0.0.99".parse().unwrap()),
        }))
        .unwrap();
    let size0 = std::fs::metadata(&store).unwrap().len();

    // 1. Metrics at full speed for 10 s.
    let start = Instant::now();
    let mut sent = 0u64;
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(10) {
        rt.block_on(hostile.send(flood_batch(&mut n))).unwrap();
        sent += 240 * 512;
    }

    // 2. Connections that never finish a handshake, from 50 sources, held for 10 s.
    let addr: SocketAddr = controller.parse().unwrap();
    let held: Vec<tokio::net::TcpStream> = rt.block_on(async {
        let mut held = Vec::new();
        for i in 0..3000u32 {
            let src = Ipv4Addr::new(127, 9, 0, (i % 50 + 1) as u8);
            let Ok(sock) = tokio::net::TcpSocket::new_v4() else {
                continue;
            };
            if sock.bind(SocketAddr::new(src.into(), 0)).is_err() {
                continue;
            }
            if let Ok(Ok(s)) =
                tokio::time::timeout(Duration::from_secs(2), sock.connect(addr)).await
            {
                held.push(s);
            }
        }
        held
    });
    assert!(held.len() >= 1000, "only {} connections opened", held.len());
    // An operator still gets an answer meanwhile.
    let whoami = Instant::now();
    cli(&data, &["whoami"]);
    let whoami = whoami.elapsed();
    std::thread::sleep(Duration::from_secs(10));
    drop(held);

    // 3. File replication from a node that is not a server: nothing reaches the nodes.
    let enrolled = rt
        .block_on(
            Enrollment {
                controller: controller.clone(),
                pin,
                token: cli(&data, &["token", "create", "--role", "gluu-node"])
                    .trim()
                    .to_string(),
                hostname: "hostile2.sandbox".into(),
                bind: Some("127.0.0.98".parse().unwrap()),
            }
            .enroll(),
        )
        .unwrap();
    let m = rt.block_on(FsrepPeer::open(&enrolled)).unwrap();
    assert!(!m.config.enabled, "a node that is no server replicates");
    let planted = "/etc/gluu/conf/hostile-planted.properties";
    // The stream may take it; the controller must not pass it on.
    let _sent = rt.block_on(m.change(
        file(planted, b"x=1\n", 0o4777, "root", "root", hlc_now()),
        None,
    ));
    let ingest_done = Instant::now();

    // What the controller took of the metrics flood, once it read it all.
    let bound = |secs: f64| BURST + RATE * secs;
    let stored = clustermgr_tests::eventually(
        Duration::from_secs(120),
        "the metrics flood screened",
        || {
            let top: serde_json::Value =
                serde_json::from_str(&cli(&data, &["--output", "json", "top", "--once"])).unwrap();
            let node = top
                .as_array()
                .and_then(|a| a.iter().find(|x| x["hostname"] == "hostile.sandbox"))
                .cloned()
                .unwrap_or_default();
            let refused: u64 = node["refused"]
                .as_array()
                .map(|r| r.iter().map(|x| x["points"].as_u64().unwrap_or(0)).sum())
                .unwrap_or(0);
            let m: serde_json::Value = serde_json::from_str(&cli(
                &data,
                &[
                    "--output",
                    "json",
                    "metrics",
                    "hostile.sandbox",
                    "--since",
                    "2h",
                ],
            ))
            .unwrap();
            let stored: u64 = m["series"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .map(|x| x["points"].as_array().map_or(0, |p| p.len() as u64))
                        .sum()
                })
                .unwrap_or(0);
            if stored + refused == sent {
                Ok(stored)
            } else {
                Err(format!("{stored} stored + {refused} refused of {sent}"))
            }
        },
    );
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (requests, failed) = lb.join().unwrap();
    let growth = std::fs::metadata(&store)
        .unwrap()
        .len()
        .saturating_sub(size0);
    println!(
        "through the attacks: {requests} requests through the load balancer, {} failed; metrics: \
         {sent} points sent, {stored} stored (bound {:.0}); store +{:.1} MB; whoami during the \
         connection flood {whoami:?}; screened {:.1} s after the last send",
        failed.len(),
        bound(secs),
        growth as f64 / 1e6,
        ingest_done.elapsed().as_secs_f64()
    );
    assert!(failed.is_empty(), "the client saw failures: {failed:?}");
    assert!(requests > 100, "{requests} requests");
    assert!((stored as f64) <= bound(secs), "{stored} stored");
    // Nothing planted on any node.
    for node in ["gluu1.sandbox", "gluu2.sandbox"] {
        let p = sbx
            .dir
            .join("hosts")
            .join(node)
            .join("root/opt/gluu-server")
            .join(planted.trim_start_matches('/'));
        assert!(!p.exists(), "{} was planted", p.display());
    }
    let _ = sbx.run(&["down"]);
}
