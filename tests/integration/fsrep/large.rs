//! Streamed contents: a file of tens of MB arrives byte-identical on the other nodes (and on a
//! node that was away), never half-written; the controller keeps it on disk, sealed; a file over
//! the (lowered) limit stays on its node and is reported with the limit.

use super::{Cluster, METADATA, WAIT, wait_content};
use clustermgr_tests::eventually;
use std::time::{Duration, Instant};

#[test]
fn a_large_file_is_streamed_byte_identical_and_one_over_the_limit_is_refused() {
    let mut c = Cluster::new(3, "fsrepbig");
    let agg = format!("{METADATA}/federation-aggregate.xml");
    std::fs::create_dir_all(c.path(0, METADATA)).unwrap();
    // 40 MB of federation metadata: far over what one message carries.
    let big: Vec<u8> = (0..40_000_000u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let started = Instant::now();
    std::fs::write(c.path(0, &agg), &big).unwrap();
    let same = |i: usize| match std::fs::read(c.path(i, &agg)) {
        Ok(b) if b == big => Ok(()),
        Ok(b) => Err(format!("{} bytes", b.len())),
        Err(e) => Err(e.to_string()),
    };
    for i in [1, 2] {
        eventually(
            Duration::from_secs(120),
            "the aggregate on the others",
            || same(i),
        );
    }
    let took = started.elapsed();
    eprintln!(
        "fsrep: 40,000,000 bytes on 2 other nodes, byte-identical, in {:.2} s ({:.1} MB/s per node)",
        took.as_secs_f64(),
        40.0 / took.as_secs_f64()
    );
    // Nothing half-written was ever left beside it; the controller keeps it on disk, sealed.
    for i in 0..3 {
        let names: Vec<String> = std::fs::read_dir(c.path(i, METADATA))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["federation-aggregate.xml"], "node {}", i + 1);
    }
    // (An upload the node cancelled for a newer state of the file may be ending: `.upload-*`.)
    let blobs: Vec<std::fs::DirEntry> = std::fs::read_dir(c.ctl.data.join("fsrep-blobs"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(blobs.len(), 1);
    let sealed = std::fs::read(blobs[0].path()).unwrap();
    assert!(sealed.len() as u64 > 40_000_000);
    assert!(!sealed.windows(64).any(|w| w == &big[1_000_000..1_000_064]));

    // A node that was away gets the next version when it is back (catch-up by fetch).
    c.nodes[2].stop();
    let mut v2 = big.clone();
    v2[20_000_000] ^= 0xff;
    std::fs::write(c.path(1, &agg), &v2).unwrap();
    eventually(
        Duration::from_secs(60),
        "version 2 on node 1",
        || match std::fs::read(c.path(0, &agg)) {
            Ok(b) if b == v2 => Ok(()),
            _ => Err("not yet".into()),
        },
    );
    c.nodes[2].start();
    eventually(
        Duration::from_secs(60),
        "version 2 on node 3",
        || match std::fs::read(c.path(2, &agg)) {
            Ok(b) if b == v2 => Ok(()),
            _ => Err("not yet".into()),
        },
    );
    // The version it replaced is kept as a backup, whole.
    let backup = c.nodes[2]
        .root
        .join("var/lib/clustermgr/fsrep-backups")
        .join(format!("{agg}.1"));
    assert!(
        std::fs::read(&backup).unwrap() == big,
        "the backup is whole"
    );

    // The limit lowered to 1 MiB: a 2 MiB file stays on its node, reported with the limit.
    let out = c.ctl.cli_ok(&["fsrep", "max-file-size", "1MiB"]);
    assert!(out.contains("1 MiB (1048576 bytes)"), "{out}");
    c.wait_connected(3);
    let over = format!("{METADATA}/too-big.xml");
    std::fs::write(c.path(0, &over), vec![b'x'; 2 << 20]).unwrap();
    std::fs::write(c.path(0, &format!("{METADATA}/small.xml")), "s").unwrap();
    wait_content(&c, &[1, 2], &format!("{METADATA}/small.xml"), Some("s"));
    let refused = eventually(WAIT, "the refusal in the status", || {
        let n = c.node_status(0);
        let r = n["refused"].to_string();
        if r.contains("/opt/shibboleth-idp/metadata/too-big.xml: 2097152 bytes, over the replication limit of 1048576 bytes") {
            Ok(r)
        } else {
            Err(n.to_string())
        }
    });
    assert!(refused.contains("fsrep max-file-size"), "{refused}");
    let human = c.ctl.cli_ok(&["fsrep", "status"]);
    assert!(
        human.contains(
            "not replicated from gluu1.fsrepbig.test: /opt/shibboleth-idp/metadata/too-big.xml"
        ),
        "{human}"
    );
    for i in [1, 2] {
        let names: Vec<String> = std::fs::read_dir(c.path(i, METADATA))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n != "federation-aggregate.xml" && n != "small.xml"),
            "node {}: {names:?}",
            i + 1
        );
    }
    let audit = c.ctl.cli_ok(&["audit"]);
    assert!(audit.contains("fsrep.max_file_bytes"), "{audit}");
}
