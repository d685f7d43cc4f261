//! A compromised node speaks file replication with its own enrolled credential (the fake agent)
//! and tries what a real agent never does: root-owned, world-writable, sticky files; a clock at
//! u64::MAX; replicating before it is approved; a flood of files. The real agents and the
//! controller hold: the files land with the receiving node's owner and a safe mode, the clock is
//! refused and the path goes on replicating, an unapproved node neither sends nor receives, and
//! the flood stops at the limits with a status entry, the controller's memory bounded.

use super::{CONF, CONTAINER, Cluster, WAIT, gluu_installed, read, wait_content};
use clustermgr_tests::fake_peer::fsrep::{FsrepPeer, file, gluu_node, hlc_now};
use clustermgr_tests::fake_peer::{Enrolled, Enrollment};
use clustermgr_tests::{Agent, Controller, eventually};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;
use tokio::sync::watch;

/// A fake node enrolled as a Gluu node, its session answering pings.
async fn fake_node(ctl: &Controller, hostname: &str) -> (Enrolled, watch::Sender<bool>) {
    gluu_node(Enrollment {
        controller: ctl.addr.clone(),
        pin: ctl.pin.clone(),
        token: ctl.token("gluu-node"),
        hostname: hostname.into(),
        bind: None,
    })
    .await
    .unwrap()
}

fn node_entry(c: &Cluster, hostname: &str) -> serde_json::Value {
    let s = c.status();
    s["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["hostname"] == hostname).cloned())
        .unwrap_or_default()
}

fn wait_capped(c: &Cluster, hostname: &str, needle: &str) -> serde_json::Value {
    eventually(WAIT, &format!("a status entry with {needle:?}"), || {
        let n = node_entry(c, hostname);
        let hit = n["capped"].as_array().is_some_and(|a| {
            a.iter()
                .any(|e| e.as_str().is_some_and(|e| e.contains(needle)))
        });
        if hit { Ok(n) } else { Err(n.to_string()) }
    })
}

const JETTY: u32 = 4242;

#[test]
fn owners_modes_and_clocks_from_the_wire_are_not_trusted() {
    let c = Cluster::new(1, "fsrephost");
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Node 1's configuration directory and file belong to the service user, 0640.
    let conf = c.path(0, CONF);
    std::os::unix::fs::chown(&conf, Some(JETTY), Some(JETTY)).unwrap();
    let existing = conf.join("existing.properties");
    std::fs::write(&existing, "old").unwrap();
    std::os::unix::fs::chown(&existing, Some(JETTY), Some(JETTY)).unwrap();
    std::fs::set_permissions(
        &existing,
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    eventually(WAIT, "the file known to the controller", || {
        let s = c.status();
        if s["files"] == 1 {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });
    let (e, _stop) = rt.block_on(fake_node(&c.ctl, "mallory.fsrephost.test"));
    c.ctl.cli_ok(&["server", "add", &e.hostname]);
    let mut m = rt.block_on(FsrepPeer::open(&e)).unwrap();
    assert!(m.config.enabled, "an approved server replicates");
    rt.block_on(m.hello()).unwrap();
    let cur = rt.block_on(m.next_apply()).unwrap();
    assert_eq!(cur.path, "/etc/gluu/conf/existing.properties");
    assert_eq!(cur.content, b"old");

    // Root-owned, sticky, world-writable: over the existing file and as a new one.
    let evil = |path: &str, body: &[u8]| file(path, body, 0o1777, "root", "root", hlc_now());
    rt.block_on(m.change(evil(&cur.path, b"pwned"), cur.version.clone()))
        .unwrap();
    rt.block_on(m.change(evil("/etc/gluu/conf/new.properties", b"new"), None))
        .unwrap();
    wait_content(
        &c,
        &[0],
        &format!("{CONF}/existing.properties"),
        Some("pwned"),
    );
    wait_content(&c, &[0], &format!("{CONF}/new.properties"), Some("new"));
    for name in ["existing.properties", "new.properties"] {
        let meta = std::fs::symlink_metadata(conf.join(name)).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (JETTY, JETTY),
            "{name}: the owner the node's file (or its directory) has"
        );
        assert_eq!(
            meta.mode() & 0o7777,
            0o775,
            "{name}: neither sticky nor writable by others"
        );
    }

    // A clock at u64::MAX: refused with a status entry, on a new path and on a kept one.
    let mut frozen = evil("/etc/gluu/conf/clock.properties", b"attacker");
    frozen.mode = 0o644;
    frozen.version.as_mut().unwrap().hlc = u64::MAX;
    rt.block_on(m.change(frozen.clone(), None)).unwrap();
    frozen.path = "/etc/gluu/conf/existing.properties".into();
    rt.block_on(m.change(frozen, None)).unwrap();
    let n = wait_capped(&c, &e.hostname, "(2 times)");
    assert!(
        n["capped"]
            .to_string()
            .contains("ahead of the controller's"),
        "{n}"
    );
    // Neither path is frozen: the real node's edits replicate (here: to the fake node).
    std::fs::write(conf.join("clock.properties"), "mine").unwrap();
    std::fs::write(&existing, "after").unwrap();
    let mut got = std::collections::BTreeMap::new();
    rt.block_on(async {
        while got.len() < 2 {
            let f = tokio::time::timeout(WAIT, m.next_apply())
                .await
                .expect("relayed in time")
                .unwrap();
            if f.content == b"mine" || f.content == b"after" {
                got.insert(f.path.clone(), f.content.clone());
            }
        }
    });
    assert_eq!(got["/etc/gluu/conf/clock.properties"], b"mine");
    assert_eq!(got["/etc/gluu/conf/existing.properties"], b"after");
    assert_eq!(
        read(&conf.join("clock.properties")).as_deref(),
        Some("mine")
    );
}

#[test]
fn a_node_awaiting_approval_neither_sends_nor_receives_files() {
    let mut ctl = Controller::init();
    ctl.start(&["--require-approval"]);
    let mut a = Agent::new("gluu1.fsrepappr.test");
    gluu_installed(&a.root);
    std::fs::create_dir_all(a.root.join(CONTAINER).join(CONF)).unwrap();
    a.join(&ctl, "gluu-node");
    ctl.cli_ok(&["node", "approve", &a.hostname]);
    a.start();
    ctl.wait_status(&a.node_id, "online");
    ctl.cli_ok(&["server", "add", &a.hostname]);
    ctl.cli_ok(&["fsrep", "enable"]);
    let c = Cluster {
        ctl,
        nodes: vec![a],
    };
    c.wait_connected(1);
    std::fs::write(c.path(0, &format!("{CONF}/shared.xml")), "cluster's").unwrap();
    eventually(WAIT, "the file known to the controller", || {
        let s = c.status();
        if s["files"] == 1 {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (e, _stop) = rt.block_on(fake_node(&c.ctl, "pending.fsrepappr.test"));
    c.ctl.cli_ok(&["server", "add", &e.hostname]);
    let m = rt.block_on(FsrepPeer::open(&e)).unwrap();
    assert!(
        !m.config.enabled,
        "a node awaiting approval is told replication is off"
    );
    // It sends anyway: nothing is taken, nothing reaches node 1.
    rt.block_on(m.hello()).unwrap();
    rt.block_on(m.change(
        file("/etc/gluu/conf/planted.xml", b"x", 0o644, "", "", hlc_now()),
        None,
    ))
    .unwrap();
    let mut uploaded = rt.block_on(FsrepPeer::open(&e)).unwrap();
    let big = vec![7u8; 100_000];
    let head = file("/etc/gluu/conf/big.xml", &big, 0o644, "", "", hlc_now());
    let refused = rt.block_on(uploaded.upload(&head, &big)).unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    // Node 1's next file shows the stream's order has moved past the planted change.
    std::fs::write(c.path(0, &format!("{CONF}/marker")), "m").unwrap();
    let n = eventually(WAIT, "the marker known, the pending node shown", || {
        let s = c.status();
        let n = node_entry(&c, &e.hostname);
        if s["files"] == 2
            && n["inactive"]
                .as_str()
                .is_some_and(|i| i.contains("approval"))
        {
            Ok(n)
        } else {
            Err(s.to_string())
        }
    });
    assert_eq!(n["connected"], false, "{n}");
    assert_eq!(n["queued"], 0, "{n}");
    assert!(read(&c.path(0, &format!("{CONF}/planted.xml"))).is_none());

    // Approved: its stream starts again, on, and it gets the cluster's files.
    drop(m);
    drop(uploaded);
    c.ctl.cli_ok(&["node", "approve", &e.hostname]);
    let mut m = rt.block_on(FsrepPeer::open_enabled(&e)).unwrap();
    rt.block_on(m.hello()).unwrap();
    let mut paths = Vec::new();
    rt.block_on(async {
        while paths.len() < 2 {
            let f = tokio::time::timeout(WAIT, m.next_apply())
                .await
                .expect("relayed in time")
                .unwrap();
            paths.push(f.path);
        }
    });
    paths.sort();
    assert_eq!(
        paths,
        ["/etc/gluu/conf/marker", "/etc/gluu/conf/shared.xml"]
    );
}

#[test]
fn a_flood_of_files_stops_at_the_limits_with_the_controller_s_memory_bounded() {
    let c = Cluster::new(1, "fsrepflood");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (e, _stop) = rt.block_on(fake_node(&c.ctl, "flood.fsrepflood.test"));
    c.ctl.cli_ok(&["server", "add", &e.hostname]);
    let pid = c.ctl.pid().expect("controller running") as i32;
    let rss = || clustermgr_procfs::memory(pid).unwrap().rss_mib();

    // 2,000 files of 60 KiB (120 MB) with room for all: kept on disk, not in memory.
    c.ctl.cli_ok(&[
        "fsrep",
        "limits",
        "--max-files",
        "100000",
        "--max-total-bytes",
        "1GiB",
        "--changes-per-second",
        "100000",
    ]);
    let m = rt.block_on(FsrepPeer::open(&e)).unwrap();
    rt.block_on(m.hello()).unwrap();
    let before = rss();
    rt.block_on(m.flood("/etc/gluu/conf/a", 2000, 60 << 10))
        .unwrap();
    eventually(Duration::from_secs(120), "2,000 files kept", || {
        let s = c.status();
        if s["files"] == 2000 {
            Ok(())
        } else {
            Err(format!("{} files", s["files"]))
        }
    });
    let after = rss();
    eprintln!(
        "fsrep flood: controller RSS {before:.1} MiB before, {after:.1} MiB after 2,000 x 60 KiB \
         files ({:.1} MiB of content)",
        2000.0 * 60.0 / 1024.0
    );
    assert!(
        after - before < 60.0,
        "the contents stay on disk: {before:.1} -> {after:.1} MiB"
    );

    // Limits lowered: new paths past them are refused, an upload past the bytes too, and a fast
    // sender waits.
    c.ctl.cli_ok(&[
        "fsrep",
        "limits",
        "--max-files",
        "2050",
        "--max-total-bytes",
        "125MiB",
        "--changes-per-second",
        "20",
    ]);
    drop(m);
    let mut m = rt.block_on(FsrepPeer::open_enabled(&e)).unwrap();
    rt.block_on(m.hello()).unwrap();
    rt.block_on(m.flood("/etc/gluu/conf/b", 300, 60 << 10))
        .unwrap();
    wait_capped(&c, &e.hostname, "--changes-per-second");
    wait_capped(&c, &e.hostname, "--max-files");
    let big = vec![1u8; 8 << 20];
    // (A kept path: only the bytes can refuse it.)
    let head = file(
        "/etc/gluu/conf/a/flood-0.xml",
        &big,
        0o644,
        "",
        "",
        hlc_now(),
    );
    let refused = rt.block_on(m.upload(&head, &big)).unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    wait_capped(&c, &e.hostname, "--max-total-bytes");
    // Within the limits whatever was sent.
    let s = c.status();
    assert!(s["files"].as_u64().unwrap() <= 2050, "{s}");
    assert!(s["bytes"].as_u64().unwrap() <= 125 << 20, "{s}");
    let blobs = std::fs::read_dir(c.ctl.data.join("fsrep-blobs"))
        .unwrap()
        .count();
    assert!(blobs <= 2050, "{blobs} contents on the controller's disk");
    // The human status says it too.
    let human = c.ctl.cli_ok(&["fsrep", "status"]);
    assert!(human.contains("limit for flood.fsrepflood.test"), "{human}");
}
