use super::*;
use std::sync::Mutex;

#[test]
fn a_tombstone_is_forgotten_only_when_old_and_held_everywhere() {
    let day = 24 * 3600 * 1000u64;
    let now = 30 * day;
    let at = |ms: u64, node: &str| ver(ms << 16, node);
    let mut files = BTreeMap::new();
    let mut tomb = |path: &str, v: FsrepVersion| {
        let mut f = file(0, Some(v), true);
        f.path = path.into();
        files.insert(path.to_string(), f);
    };
    tomb("/old", at(now - 8 * day, "a"));
    tomb("/young", at(now - day, "a"));
    tomb("/lagging", at(now - 8 * day, "a"));
    let mut live = file(1, Some(at(now - 9 * day, "a")), false);
    live.path = "/live".into();
    files.insert("/live".into(), live);
    let servers = vec!["a".to_string(), "b".to_string()];
    let mut known: HashMap<String, HashMap<String, FsrepVersion>> = HashMap::new();
    known.insert(
        "a".into(),
        HashMap::from([
            ("/old".to_string(), at(now - 8 * day, "a")),
            ("/lagging".to_string(), at(now - 8 * day, "a")),
        ]),
    );
    let ttl = 7 * day;
    // b has not reported since the start: nothing is forgotten.
    assert!(collectable(&files, &known, &servers, now, ttl).is_empty());
    // b never had /old; it still holds an older version of /lagging.
    known.insert(
        "b".into(),
        HashMap::from([("/lagging".to_string(), at(now - 20 * day, "b"))]),
    );
    assert_eq!(collectable(&files, &known, &servers, now, ttl), ["/old"]);
    // Once b holds the delete, /lagging goes too; /young waits for its week; /live stays.
    known
        .get_mut("b")
        .unwrap()
        .insert("/lagging".into(), at(now - 8 * day, "a"));
    assert_eq!(
        collectable(&files, &known, &servers, now, ttl),
        ["/lagging", "/old"]
    );
    assert!(collectable(&files, &known, &[], now, ttl).is_empty());

    // Forgetting drops the path from the state and from what each node is known to hold.
    let d = tempfile::tempdir().unwrap();
    let f = Fsrep {
        state: Mutex::new(State {
            files,
            known,
            ..Default::default()
        }),
        blobs: super::super::blobs::Blobs::open(d.path().to_path_buf()).unwrap(),
    };
    let gone = f.forget_tombstones(&servers, now);
    assert_eq!(gone, ["/lagging", "/old"]);
    let st = f.lock();
    assert!(st.files.contains_key("/young") && st.files.contains_key("/live"));
    assert!(!st.files.contains_key("/old"));
    assert!(st.known.values().all(|k| !k.contains_key("/lagging")));
}

fn ver(hlc: u64, node: &str) -> FsrepVersion {
    FsrepVersion {
        hlc,
        node_id: node.into(),
    }
}

fn file(sha: u8, v: Option<FsrepVersion>, deleted: bool) -> FsrepFile {
    FsrepFile {
        path: "/etc/gluu/conf/x".into(),
        version: v,
        deleted,
        sha256: if deleted { vec![] } else { vec![sha] },
        mode: 0o644,
        ..Default::default()
    }
}

/// (current state, change, base, change version, decision)
type Case<'a> = (
    Option<&'a FsrepFile>,
    FsrepFile,
    Option<FsrepVersion>,
    FsrepVersion,
    Decision,
);

#[test]
fn changes_are_ordered_and_conflicts_have_one_winner() {
    use Decision::*;
    let cur = file(1, Some(ver(10, "a")), false);
    let tomb = file(0, Some(ver(10, "a")), true);
    // (current, change content, base, change version) -> decision
    let cases: Vec<Case> = vec![
        // A new path.
        (
            None,
            file(2, None, false),
            None,
            ver(5, "b"),
            Accept {
                version: ver(5, "b"),
                conflict: None,
            },
        ),
        // Based on the current version.
        (
            Some(&cur),
            file(2, None, false),
            Some(ver(10, "a")),
            ver(20, "b"),
            Accept {
                version: ver(20, "b"),
                conflict: None,
            },
        ),
        // Based on it, but with a clock behind: the version still grows.
        (
            Some(&cur),
            file(2, None, false),
            Some(ver(10, "a")),
            ver(3, "b"),
            Accept {
                version: ver(11, "b"),
                conflict: None,
            },
        ),
        // Same content: adopt, whatever the base.
        (
            Some(&cur),
            file(1, None, false),
            None,
            ver(30, "b"),
            Adopt(ver(10, "a")),
        ),
        (
            Some(&tomb),
            file(0, None, true),
            Some(ver(2, "c")),
            ver(30, "b"),
            Adopt(ver(10, "a")),
        ),
        // Concurrent, newer: wins, the current state is the loser.
        (
            Some(&cur),
            file(2, None, false),
            Some(ver(7, "a")),
            ver(12, "b"),
            Accept {
                version: ver(12, "b"),
                conflict: Some((ver(12, "b"), ver(10, "a"))),
            },
        ),
        // Concurrent, older: loses.
        (
            Some(&cur),
            file(2, None, false),
            None,
            ver(9, "b"),
            Lose {
                winner: ver(10, "a"),
                loser: ver(9, "b"),
            },
        ),
        // Same clock: the node id decides, the same way everywhere.
        (
            Some(&cur),
            file(2, None, false),
            None,
            ver(10, "0"),
            Lose {
                winner: ver(10, "a"),
                loser: ver(10, "0"),
            },
        ),
        (
            Some(&cur),
            file(2, None, false),
            None,
            ver(10, "b"),
            Accept {
                version: ver(10, "b"),
                conflict: Some((ver(10, "b"), ver(10, "a"))),
            },
        ),
        // A delete made while away from a file changed since: a conflict like any other.
        (
            Some(&cur),
            file(0, None, true),
            Some(ver(4, "a")),
            ver(8, "b"),
            Lose {
                winner: ver(10, "a"),
                loser: ver(8, "b"),
            },
        ),
        // A copy of a deleted file coming back with an older clock stays deleted.
        (
            Some(&tomb),
            file(3, None, false),
            None,
            ver(6, "c"),
            Lose {
                winner: ver(10, "a"),
                loser: ver(6, "c"),
            },
        ),
    ];
    for (i, (cur, f, base, v, want)) in cases.into_iter().enumerate() {
        assert_eq!(decide(cur, &f, base.as_ref(), v), want, "case {i}");
    }
}

#[test]
fn content_equality_ignores_versions() {
    let a = FsrepFile {
        path: "/x".into(),
        sha256: vec![1],
        mode: 0o644,
        version: Some(FsrepVersion {
            hlc: 1,
            node_id: "a".into(),
        }),
        ..Default::default()
    };
    let mut b = a.clone();
    b.version = None;
    assert!(same_content(&a, &b));
    b.mode = 0o600;
    assert!(!same_content(&a, &b));
}

#[test]
fn a_streamed_change_must_match_its_upload() {
    let d = tempfile::tempdir().unwrap();
    let mut st = State::default();
    let up = |node: &str, size: u64| {
        let p = d.path().join(format!("u-{node}-{size}"));
        std::fs::write(&p, "x").unwrap();
        Upload {
            node: node.into(),
            path: "/etc/gluu/conf/x".into(),
            sha256: vec![7; 32],
            size,
            file: p,
            at: Instant::now(),
        }
    };
    let mut f = FsrepFile {
        path: "/etc/gluu/conf/x".into(),
        sha256: vec![7; 32],
        size: 100_000,
        mode: 0o4755,
        ..Default::default()
    };
    let ch = |id: &str| FsrepChange {
        upload: id.into(),
        ..Default::default()
    };
    st.uploads.insert("u1".into(), up("n1", 100_000));
    let got = check_content(&mut st, "n1", &ch("u1"), &mut f, 1 << 20).unwrap();
    assert!(got.is_some());
    assert_eq!(f.mode, 0o755, "setuid is never replicated");
    // Another node's upload, another size, an unknown id: refused; a refused upload goes.
    st.uploads.insert("u2".into(), up("n2", 100_000));
    let e = check_content(&mut st, "n1", &ch("u2"), &mut f, 1 << 20).unwrap_err();
    assert!(e.contains("does not match its upload"), "{e}");
    assert!(!d.path().join("u-n2-100000").exists());
    st.uploads.insert("u3".into(), up("n1", 5));
    assert!(check_content(&mut st, "n1", &ch("u3"), &mut f, 1 << 20).is_err());
    let e = check_content(&mut st, "n1", &ch("nope"), &mut f, 1 << 20).unwrap_err();
    assert!(e.contains("no upload"), "{e}");
    // Inline: over the limit, or a wrong hash.
    let mut inline = FsrepFile {
        path: "/etc/gluu/conf/y".into(),
        content: vec![1; 10],
        ..Default::default()
    };
    let e = check_content(&mut st, "n1", &ch(""), &mut inline, 5).unwrap_err();
    assert!(e.contains("over the limit of 5 bytes"), "{e}");
    let e = check_content(&mut st, "n1", &ch(""), &mut inline, 50).unwrap_err();
    assert!(e.contains("hash"), "{e}");
    inline.sha256 = Sha256::digest(&inline.content).to_vec();
    check_content(&mut st, "n1", &ch(""), &mut inline, 50).unwrap();
    assert_eq!(inline.size, 10);
    // A large content inline (it would stay in memory): refused.
    inline.content = vec![0; rules::INLINE_MAX_BYTES as usize + 1];
    inline.sha256 = Sha256::digest(&inline.content).to_vec();
    let e = check_content(&mut st, "n1", &ch(""), &mut inline, 1 << 30).unwrap_err();
    assert!(e.contains("is uploaded"), "{e}");
}

#[test]
fn a_clock_at_its_maximum_does_not_overflow() {
    // A current version at u64::MAX (recorded before clocks were bounded): a change based on it
    // is still ordered, without wrapping or panicking.
    let cur = file(1, Some(ver(u64::MAX, "a")), false);
    let got = decide(
        Some(&cur),
        &file(2, None, false),
        Some(&ver(u64::MAX, "a")),
        ver(5, "b"),
    );
    assert_eq!(
        got,
        Decision::Accept {
            version: ver(u64::MAX, "b"),
            conflict: None,
        }
    );
}
