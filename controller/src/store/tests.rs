use super::*;
use clustermgr_proto::OperatorRecord;

fn op_rec(name: &str) -> OperatorRecord {
    OperatorRecord {
        name: name.into(),
        role: OperatorRole::Viewer as i32,
        ..Default::default()
    }
}

fn pr(name: &str) -> PrincipalRecord {
    PrincipalRecord {
        kind: PrincipalKind::Operator as i32,
        id: name.into(),
        not_after_unix: 1,
        ca_key_id: String::new(),
    }
}

fn wf(id: &str, kind: &str, status: clustermgr_proto::WorkflowStatus) -> Workflow {
    let mut w = Workflow {
        id: id.into(),
        kind: kind.into(),
        ..Default::default()
    };
    w.set_status(status);
    w
}

fn ids(v: Vec<Workflow>) -> Vec<String> {
    v.into_iter().map(|w| w.id).collect()
}

#[tokio::test]
async fn forgotten_fsrep_paths_leave_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    for p in ["/a", "/b", "/c"] {
        store
            .put_fsrep_file(p.into(), vec![1], None, None)
            .await
            .unwrap();
    }
    store
        .delete_fsrep_files(vec!["/a".into(), "/c".into(), "/never".into()])
        .await
        .unwrap();
    let left: Vec<String> = store
        .fsrep_files()
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(left, ["/b"]);
}

#[tokio::test]
async fn workflow_indexes_follow_every_write_and_are_built_by_the_migration() {
    use clustermgr_proto::WorkflowStatus as S;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    {
        let store = Store::open(&path).unwrap();
        for w in [
            wf("01-a", "lb-install", S::Succeeded),
            wf("02-b", "lb-remove", S::Running),
            wf("03-c", "lb-install", S::Pending),
            wf("04-d", "schema-add", S::Failed),
        ] {
            store.put_workflow(w, Vec::new(), None).await.unwrap();
        }
        assert_eq!(ids(store.active_workflows().unwrap()), ["02-b", "03-c"]);
        // An older record written again does not become the latest of its kind.
        store
            .put_workflow(wf("01-a", "lb-install", S::Succeeded), Vec::new(), None)
            .await
            .unwrap();
        assert_eq!(
            store.latest_workflow("lb-install").unwrap().unwrap().id,
            "03-c"
        );
        // Ending leaves the active index.
        store
            .put_workflow(wf("02-b", "lb-remove", S::Cancelled), Vec::new(), None)
            .await
            .unwrap();
        assert_eq!(ids(store.active_workflows().unwrap()), ["03-c"]);
        assert!(store.latest_workflow("hosts").unwrap().is_none());
    }
    // A schema-2 store whose indexes are missing or stale (written by an older build): the
    // migration builds them.
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap().insert("schema", 2).unwrap();
        txn.delete_table(ACTIVE_WORKFLOWS).unwrap();
        {
            let mut l = txn.open_table(LATEST_WORKFLOWS).unwrap();
            l.insert("schema-add", "00-stale").unwrap();
        }
        txn.commit().unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(ids(store.active_workflows().unwrap()), ["03-c"]);
    assert_eq!(
        store.latest_workflow("schema-add").unwrap().unwrap().id,
        "04-d"
    );
    assert_eq!(store.workflows().unwrap().len(), 4);
}

#[tokio::test]
async fn grouped_writes_commit_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    {
        let store = Store::open(&path).unwrap();
        let mut handles = Vec::new();
        for i in 0..50 {
            let s = store.clone();
            handles.push(tokio::spawn(async move {
                s.create_operator(
                    op_rec(&format!("op{i:02}")),
                    format!("fp{i}"),
                    pr(&format!("op{i:02}")),
                    None,
                )
                .await
            }));
        }
        for h in handles {
            assert!(h.await.unwrap().unwrap());
        }
    }
    let store = Store::open(&path).unwrap();
    let all = store.operators().unwrap();
    assert_eq!(all.len(), 50);
    assert_eq!(all[7].name, "op07");
    assert_eq!(store.principals().unwrap().len(), 50);
}

#[test]
fn a_failing_write_is_rolled_back_alone_and_its_group_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Block the writer so that everything below lands in one group.
    let (gate_tx, gate_rx) = std_mpsc::channel::<()>();
    let gate = std::sync::Mutex::new(Some(gate_rx));
    let blocker = store.submit(move |_| {
        if let Some(rx) = gate.lock().unwrap().take() {
            let _ = rx.recv();
        }
        Ok(())
    });
    let good1 = store.append_audit(AuditEntry {
        action: "good1".into(),
        ..Default::default()
    });
    // Writes a row, then fails: its row must not be committed.
    let bad = store.submit(|txn| {
        append_audit_in(
            txn,
            &AuditEntry {
                action: "bad".into(),
                ..Default::default()
            },
        )?;
        Err::<(), _>(StoreError::Closed)
    });
    let good2 = store.append_audit(AuditEntry {
        action: "good2".into(),
        ..Default::default()
    });
    gate_tx.send(()).unwrap();
    rt.block_on(async {
        blocker.await.unwrap();
        good1.await.unwrap();
        assert!(matches!(bad.await, Err(StoreError::Closed)));
        good2.await.unwrap();
    });
    let rows: Vec<String> = store
        .audit_tail(10)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(rows, ["good1", "good2"]);
}

#[tokio::test]
async fn create_operator_checks_existence_in_its_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let a = store.create_operator(op_rec("x"), "f1".into(), pr("x"), None);
    let b = store.create_operator(op_rec("x"), "f2".into(), pr("x"), None);
    let (a, b) = tokio::join!(a, b);
    assert_ne!(a.unwrap(), b.unwrap(), "exactly one create succeeds");
    assert_eq!(store.principals().unwrap().len(), 1);
}

#[tokio::test]
async fn sweep_deletes_old_rows_and_keeps_the_file_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = Store::open(&path).unwrap();
    let limits = SweepLimits {
        audit_before_ms: 0,
        audit_max_rows: 1000,
        jobs_before_ms: 0,
        tokens_expired_before_unix: 0,
        batch: 100_000,
    };
    let mut sizes = Vec::new();
    for round in 0..6 {
        let mut futs = Vec::new();
        for i in 0..2000 {
            // Routine rows (the ones trimmed by count), each from its own source.
            futs.push(store.append_audit(AuditEntry {
                who: crate::audit::UNAUTHENTICATED.into(),
                action: "node.enroll".into(),
                target: format!("10.{round}.{}.{}", i / 250, i % 250),
                detail: format!("{round}-{i} {}", "x".repeat(200)),
                ..Default::default()
            }));
        }
        for f in futs {
            f.await.unwrap();
        }
        store.sweep(limits).await.unwrap();
        assert_eq!(store.audit_len().unwrap(), 1000);
        sizes.push(Store::file_size(&path));
    }
    // After the first rounds the file stops growing.
    assert!(sizes[5] <= sizes[2] * 2, "{sizes:?}");
}

#[tokio::test]
async fn sweep_deletes_finished_jobs_with_their_logs_and_expired_tokens_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let job = |id: &str, state: JobState, finished: u64| JobRecord {
        id: id.into(),
        state: state as i32,
        finished_unix_ms: finished,
        ..Default::default()
    };
    let logs = vec![(1, "a".to_string()), (2, "b".to_string())];
    store
        .put_job(job("old", JobState::Succeeded, 1_000), logs.clone(), None)
        .await
        .unwrap();
    store
        .put_job(job("new", JobState::Failed, 9_000), logs.clone(), None)
        .await
        .unwrap();
    store
        .put_job(job("running", JobState::Running, 0), logs, None)
        .await
        .unwrap();
    for (id, expires) in [("t-old", 10), ("t-new", 100)] {
        let rec = TokenRecord {
            id: id.into(),
            expires_unix: expires,
            ..Default::default()
        };
        store
            .create_token(rec, AuditEntry::default())
            .await
            .unwrap();
    }
    let swept = store
        .sweep(SweepLimits {
            audit_before_ms: 0,
            audit_max_rows: u64::MAX,
            jobs_before_ms: 5_000,
            tokens_expired_before_unix: 50,
            batch: 100,
        })
        .await
        .unwrap();
    assert_eq!(
        swept,
        Swept {
            audit: 0,
            jobs: 1,
            job_logs: 2,
            tokens: 1
        }
    );
    assert!(store.job("old").unwrap().is_none());
    assert!(store.job_logs_after("old", 0, 10).unwrap().is_empty());
    assert_eq!(store.job_logs_after("new", 0, 10).unwrap().len(), 2);
    assert!(store.job("running").unwrap().is_some());
    assert!(store.token("t-old").unwrap().is_none());
    assert!(store.token("t-new").unwrap().is_some());
}

/// The storage engine is the store's concern only (this file and `store/`).
#[test]
fn redb_is_used_only_in_the_store() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    let mut dirs = vec![src];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if !p.ends_with("src/store") {
                    dirs.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("src/store.rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                if text.contains("redb::") || text.contains("use redb") {
                    offenders.push(p.display().to_string());
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "redb used outside the store: {offenders:?}"
    );
}

/// This process's resident memory, in bytes.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap()
        * 1024
}

/// redb's page cache is bounded ([`CACHE_BYTES`]): writing 160 MiB of rows leaves the process
/// far less than that larger (with redb's default, 1 GiB, every written page stayed).
#[tokio::test]
async fn the_page_cache_is_bounded_while_the_file_grows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = Store::open(&path).unwrap();
    let line = "x".repeat(8 * 1024);
    let before = rss_bytes();
    let written: u64 = 160 << 20;
    let per_job = 256u64;
    let jobs = written / (per_job * line.len() as u64);
    for j in 0..jobs {
        let job = JobRecord {
            id: format!("job{j:05}"),
            ..Default::default()
        };
        let logs = (0..per_job).map(|s| (s, line.clone())).collect();
        store.put_job(job, logs, None).await.unwrap();
    }
    let grown = rss_bytes().saturating_sub(before);
    assert!(
        Store::file_size(&path) >= written,
        "the rows were not written"
    );
    assert!(
        grown < CACHE_BYTES as u64 + (48 << 20),
        "RSS grew {} MiB for {} MiB written (cache bound {} MiB)",
        grown >> 20,
        written >> 20,
        CACHE_BYTES >> 20
    );
}
