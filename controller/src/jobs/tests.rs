use super::*;
use clustermgr_proto::{Ping, ReadFile, ReadFileOutput, operation_output};
use tokio::sync::mpsc;

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    registry: Arc<Registry>,
    jobs: Arc<Jobs>,
}

fn env(limits: LogLimits) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let registry = Arc::new(Registry::default());
    let jobs = Arc::new(Jobs::with_limits(store.clone(), registry.clone(), limits));
    Env {
        _dir: dir,
        store,
        registry,
        jobs,
    }
}

fn node(id: &str, approved: bool) -> NodeRecord {
    NodeRecord {
        id: id.into(),
        hostname: format!("host-{id}"),
        approved,
        ..Default::default()
    }
}

fn ping() -> Operation {
    Operation {
        kind: Some(operation::Kind::Ping(Ping::default())),
    }
}

fn audit() -> Audit {
    Audit::new("operator:t", "job.submit", "n")
}

type Inbox = mpsc::Receiver<Result<ControllerMessage, tonic::Status>>;

fn connect(e: &Env, id: &str) -> Inbox {
    let (tx, rx) = mpsc::channel(8);
    let _ = e.registry.register(id, tx, "peer".into());
    rx
}

async fn dispatched(rx: &mut Inbox) -> String {
    match rx.recv().await.unwrap().unwrap().msg {
        Some(controller_message::Msg::Job(j)) => j.job_id,
        other => panic!("expected a job, got {other:?}"),
    }
}

#[tokio::test]
async fn refuses_pending_and_offline_nodes() {
    let e = env(LogLimits::default());
    let r = e
        .jobs
        .submit(
            &node("a", false),
            JobSpec::new(ping(), Duration::from_secs(5), "t".into()),
            &audit(),
        )
        .await;
    assert!(matches!(r, Err(JobError::Pending(_))));
    let r = e
        .jobs
        .submit(
            &node("a", true),
            JobSpec::new(ping(), Duration::from_secs(5), "t".into()),
            &audit(),
        )
        .await;
    assert!(matches!(r, Err(JobError::NodeOffline(_))));
    assert!(e.store.recent_jobs(None, 10).unwrap().is_empty());
}

#[tokio::test]
async fn a_result_finishes_the_job_only_from_its_own_node_and_secrets_are_not_stored() {
    let e = env(LogLimits::default());
    let mut inbox = connect(&e, "a");
    let op = Operation {
        kind: Some(operation::Kind::ReadFile(ReadFile {
            path: "/etc/x".into(),
        })),
    };
    let (job, mut done) = e
        .jobs
        .submit(
            &node("a", true),
            JobSpec::new(op, Duration::from_secs(30), "t".into()),
            &audit(),
        )
        .await
        .unwrap();
    assert_eq!(job.state, RUNNING);
    assert_eq!(dispatched(&mut inbox).await, job.id);
    // Recorded (with its audit row) by the time submit returned.
    assert_eq!(
        e.store.job(&job.id).unwrap().unwrap().state(),
        JobState::Running
    );
    assert!(
        e.store
            .audit_tail(5)
            .unwrap()
            .iter()
            .any(|r| r.action == "job.submit" && r.detail.contains(&job.id))
    );
    let result = JobResult {
        success: true,
        output: Some(OperationOutput {
            kind: Some(operation_output::Kind::ReadFile(ReadFileOutput {
                content: b"SECRET".to_vec(),
                sha256: "abc123".into(),
                size: 6,
                mode: 0o600,
            })),
        }),
        ..Default::default()
    };
    e.jobs.result("b", &job.id, result.clone()).await;
    assert!(e.jobs.is_live(&job.id), "another node finished the job");
    e.jobs.result("a", &job.id, result).await;
    done.changed().await.unwrap();
    let f = done.borrow().clone().unwrap();
    assert_eq!(f.job.state, SUCCEEDED);
    assert_eq!(f.content.as_deref(), Some(&b"SECRET"[..]));
    let stored = e.store.job(&job.id).unwrap().unwrap();
    assert_eq!(stored.state(), JobState::Succeeded);
    let Some(operation_output::Kind::ReadFile(r)) = stored.output.unwrap().kind else {
        panic!("no read-file output");
    };
    assert!(r.content.is_empty() && r.sha256.is_empty());
    assert_eq!(r.size, 6);
}

#[tokio::test]
async fn log_lines_are_numbered_by_the_controller_capped_and_paged() {
    let e = env(LogLimits {
        max_lines: 5,
        max_bytes: 1 << 20,
    });
    let mut inbox = connect(&e, "a");
    let (job, _done) = e
        .jobs
        .submit(
            &node("a", true),
            JobSpec::new(ping(), Duration::from_secs(30), "t".into()),
            &audit(),
        )
        .await
        .unwrap();
    dispatched(&mut inbox).await;
    for i in 0..20 {
        // The agent claims seq 1 every time: it must not overwrite anything.
        e.jobs.log(
            "a",
            &job.id,
            JobLogLine {
                seq: 1,
                line: format!("line {i}"),
                unix_ms: 0,
            },
        );
    }
    // Another node's lines are ignored.
    e.jobs.log(
        "b",
        &job.id,
        JobLogLine {
            seq: 99,
            line: "forged".into(),
            unix_ms: 0,
        },
    );
    let all = e.jobs.logs_after(&job.id, 0, 100).unwrap();
    let seqs: Vec<u64> = all.iter().map(|l| l.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_eq!(all[0].line, "line 0");
    assert!(all[4].line.contains("log truncated"), "{all:?}");
    // Written in one batch, then paged.
    assert_eq!(e.jobs.flush_logs().await.unwrap(), 5);
    assert_eq!(e.jobs.flush_logs().await.unwrap(), 0);
    let page = e.jobs.logs_after(&job.id, 1, 2).unwrap();
    assert_eq!(page.iter().map(|l| l.seq).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(e.store.job_logs_after(&job.id, 0, 100).unwrap().len(), 5);
}

#[tokio::test]
async fn a_byte_cap_truncates_the_log() {
    let e = env(LogLimits {
        max_lines: 1000,
        max_bytes: 100,
    });
    let mut inbox = connect(&e, "a");
    let (job, _done) = e
        .jobs
        .submit(
            &node("a", true),
            JobSpec::new(ping(), Duration::from_secs(30), "t".into()),
            &audit(),
        )
        .await
        .unwrap();
    dispatched(&mut inbox).await;
    for _ in 0..10 {
        e.jobs.log(
            "a",
            &job.id,
            JobLogLine {
                seq: 0,
                line: "x".repeat(40),
                unix_ms: 0,
            },
        );
    }
    let all = e.jobs.logs_after(&job.id, 0, 100).unwrap();
    assert_eq!(all.len(), 3);
    assert!(all[2].line.contains("log truncated"));
}

async fn submit_ping(e: &Env, inbox: &mut Inbox) -> String {
    let (job, _done) = e
        .jobs
        .submit(
            &node("a", true),
            JobSpec::new(ping(), Duration::from_secs(30), "t".into()),
            &audit(),
        )
        .await
        .unwrap();
    assert_eq!(dispatched(inbox).await, job.id);
    job.id
}

fn result_of(id: &str, success: bool, error: &str) -> JobEvent {
    JobEvent {
        job_id: id.into(),
        event: Some(job_event::Event::Result(JobResult {
            success,
            error: error.into(),
            exit_code: if success { 0 } else { 3 },
            ..Default::default()
        })),
    }
}

fn stored(e: &Env, id: &str) -> JobRecord {
    e.store.job(id).unwrap().unwrap()
}

#[tokio::test]
async fn a_dropped_session_keeps_jobs_and_the_next_hello_sorts_them_out() {
    let e = env(LogLimits::default());
    let mut ended = e.jobs.ended();
    let mut inbox = connect(&e, "a");
    let still = submit_ping(&e, &mut inbox).await;
    let done = submit_ping(&e, &mut inbox).await;
    let lost = submit_ping(&e, &mut inbox).await;
    // The session drops: nothing ends.
    let generation = e.registry.get("a").unwrap().generation;
    assert!(e.registry.unregister("a", generation));
    for id in [&still, &done, &lost] {
        assert_eq!(e.jobs.get(id).unwrap().unwrap().state, RUNNING);
    }
    // The agent reconnects; a job sent on the new session before its hello is handled is
    // not one the agent could have reported.
    let mut inbox = connect(&e, "a");
    let fresh = submit_ping(&e, &mut inbox).await;
    let r = e
        .jobs
        .reconcile("a", vec![still.clone()], vec![result_of(&done, true, "")])
        .await;
    assert_eq!(
        r,
        Reconciled {
            results: 1,
            resumed: 0,
            interrupted: 1
        }
    );
    assert_eq!(e.jobs.get(&still).unwrap().unwrap().state, RUNNING);
    assert_eq!(e.jobs.get(&fresh).unwrap().unwrap().state, RUNNING);
    assert_eq!(stored(&e, &done).state(), JobState::Succeeded);
    let l = stored(&e, &lost);
    assert_eq!(l.state(), JobState::Interrupted);
    assert_eq!(l.error, UNKNOWN_TO_AGENT);
    // Both ends were announced after their commit.
    let mut ends = [ended.recv().await.unwrap(), ended.recv().await.unwrap()];
    ends.sort_by_key(|x| x.state as i32);
    assert_eq!(ends[0].job_id, done);
    assert_eq!(ends[0].state, JobState::Succeeded);
    assert_eq!(ends[1].job_id, lost);
    assert_eq!(ends[1].state, JobState::Interrupted);
    // A result reported again (or for an ended job) changes nothing.
    let r = e
        .jobs
        .reconcile(
            "a",
            vec![still.clone(), fresh.clone()],
            vec![result_of(&done, false, "late"), result_of(&lost, true, "")],
        )
        .await;
    assert_eq!(r, Reconciled::default());
    assert_eq!(stored(&e, &done).state(), JobState::Succeeded);
    assert_eq!(stored(&e, &lost).state(), JobState::Interrupted);
    assert!(ended.try_recv().is_err());
}

#[tokio::test]
async fn another_nodes_report_touches_nothing() {
    let e = env(LogLimits::default());
    let mut inbox = connect(&e, "a");
    let id = submit_ping(&e, &mut inbox).await;
    let _b = connect(&e, "b");
    let r = e
        .jobs
        .reconcile("b", vec![], vec![result_of(&id, false, "forged")])
        .await;
    assert_eq!(r, Reconciled::default());
    assert_eq!(e.jobs.get(&id).unwrap().unwrap().state, RUNNING);
}

#[tokio::test]
async fn after_a_restart_a_job_its_node_reports_is_taken_up_again() {
    let e = env(LogLimits::default());
    let mut inbox = connect(&e, "a");
    let resumed = submit_ping(&e, &mut inbox).await;
    let failed = submit_ping(&e, &mut inbox).await;
    let gone = submit_ping(&e, &mut inbox).await;
    // Lines the first controller committed before it died.
    for i in 0..3 {
        e.jobs.log(
            "a",
            &resumed,
            JobLogLine {
                seq: 0,
                line: format!("before {i}"),
                unix_ms: 0,
            },
        );
    }
    e.jobs.flush_logs().await.unwrap();
    // A second controller over the same store: the jobs are interrupted, records kept.
    let after = Arc::new(Jobs::new(e.store.clone(), Arc::new(Registry::default())));
    let mut ended = after.ended();
    assert_eq!(after.recover().await.unwrap(), 3);
    for id in [&resumed, &failed, &gone] {
        let j = stored(&e, id);
        assert_eq!(j.state(), JobState::Interrupted);
        assert_eq!(j.error, RECOVERED_ERROR);
    }
    // Another node cannot claim them.
    let r = after
        .reconcile(
            "b",
            vec![resumed.clone()],
            vec![result_of(&failed, true, "")],
        )
        .await;
    assert_eq!(r, Reconciled::default());
    assert_eq!(stored(&e, &failed).state(), JobState::Interrupted);
    // Its own node: one still runs, one ended while the controller was down.
    let r = after
        .reconcile(
            "a",
            vec![resumed.clone()],
            vec![result_of(&failed, false, "not ready within 6 s")],
        )
        .await;
    assert_eq!(
        r,
        Reconciled {
            results: 1,
            resumed: 1,
            interrupted: 0
        }
    );
    let f = stored(&e, &failed);
    assert_eq!(f.state(), JobState::Failed);
    assert_eq!(f.exit_code, 3);
    assert!(f.error.starts_with("not ready within 6 s"), "{}", f.error);
    assert!(f.error.contains(REOBSERVED_NOTE), "{}", f.error);
    let end = ended.recv().await.unwrap();
    assert_eq!(
        (end.job_id.as_str(), end.state),
        (failed.as_str(), JobState::Failed)
    );
    // Running again, in memory and in the store; its log goes on after what was kept.
    assert_eq!(after.get(&resumed).unwrap().unwrap().state, RUNNING);
    assert_eq!(stored(&e, &resumed).state(), JobState::Running);
    assert!(stored(&e, &resumed).error.is_empty());
    after.log(
        "a",
        &resumed,
        JobLogLine {
            seq: 1,
            line: "still probing".into(),
            unix_ms: 0,
        },
    );
    assert!(
        after
            .result(
                "a",
                &resumed,
                JobResult {
                    success: true,
                    ..Default::default()
                }
            )
            .await
    );
    let r = stored(&e, &resumed);
    assert_eq!(r.state(), JobState::Succeeded);
    let lines = e.store.job_logs_after(&resumed, 0, 10).unwrap();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[3], (4, "still probing".to_string()));
    assert_eq!(r.log_lines, 4);
    let end = ended.recv().await.unwrap();
    assert_eq!(
        (end.job_id.as_str(), end.state),
        (resumed.as_str(), JobState::Succeeded)
    );
    // What the node did not report stays interrupted, even if a result shows up later.
    let g = stored(&e, &gone);
    assert_eq!(g.state(), JobState::Interrupted);
    assert!(
        !after
            .result(
                "a",
                &gone,
                JobResult {
                    success: true,
                    ..Default::default()
                }
            )
            .await
    );
    assert_eq!(stored(&e, &gone).state(), JobState::Interrupted);
}

#[tokio::test]
async fn removing_a_node_interrupts_its_jobs() {
    let e = env(LogLimits::default());
    let mut inbox = connect(&e, "a");
    let id = submit_ping(&e, &mut inbox).await;
    e.jobs.node_removed("a").await;
    assert_eq!(e.jobs.get(&id).unwrap().unwrap().state, INTERRUPTED);
}

#[tokio::test]
async fn a_poisoned_lock_does_not_lose_running_jobs() {
    let e = env(LogLimits::default());
    let mut inbox = connect(&e, "a");
    let (job, mut done) = e
        .jobs
        .submit(
            &node("a", true),
            JobSpec::new(ping(), Duration::from_secs(30), "t".into()),
            &audit(),
        )
        .await
        .unwrap();
    dispatched(&mut inbox).await;
    let j = e.jobs.clone();
    let _ = std::thread::spawn(move || {
        let _g = j.live.lock().unwrap();
        panic!("poison");
    })
    .join();
    assert!(e.jobs.live.is_poisoned());
    assert!(e.jobs.subscribe(&job.id).is_some());
    e.jobs
        .result(
            "a",
            &job.id,
            JobResult {
                success: true,
                ..Default::default()
            },
        )
        .await;
    done.changed().await.unwrap();
    assert_eq!(e.jobs.get(&job.id).unwrap().unwrap().state, SUCCEEDED);
}

#[tokio::test]
async fn a_node_that_does_not_read_cannot_hold_a_submit_forever() {
    let mut e = env(LogLimits::default());
    let (tx, _rx) = mpsc::channel(1);
    let _ = e.registry.register("a", tx.clone(), "peer".into());
    tx.send(Ok(ControllerMessage::default())).await.unwrap();
    Arc::get_mut(&mut e.jobs).unwrap().send_timeout = Duration::from_millis(200);
    let r = e
        .jobs
        .submit(
            &node("a", true),
            JobSpec::new(ping(), Duration::from_secs(30), "t".into()),
            &audit(),
        )
        .await;
    assert!(matches!(r, Err(JobError::NodeBusy(_))), "{r:?}");
}

/// A job has no follow channel until someone follows it (a ping fan-out's jobs have none:
/// its slots cost memory per job); a follower gets every line from its subscription on.
#[tokio::test]
async fn the_follow_channel_is_made_for_the_first_follower() {
    let e = env(LogLimits::default());
    let mut inbox = connect(&e, "a");
    let (job, _done) = e
        .jobs
        .submit(
            &node("a", true),
            JobSpec::new(ping(), Duration::from_secs(30), "t".into()),
            &audit(),
        )
        .await
        .unwrap();
    dispatched(&mut inbox).await;
    let line = |s: &str| JobLogLine {
        seq: 0,
        line: s.into(),
        unix_ms: 0,
    };
    e.jobs.log("a", &job.id, line("before"));
    assert!(
        e.jobs.live()[&job.id].logs.is_none(),
        "a channel was made without a follower"
    );
    let (mut logs, _) = e.jobs.subscribe(&job.id).unwrap();
    let (mut second, _) = e.jobs.subscribe(&job.id).unwrap();
    e.jobs.log("a", &job.id, line("after"));
    for rx in [&mut logs, &mut second] {
        let got = rx.recv().await.unwrap();
        assert_eq!((got.seq, got.line.as_str()), (2, "after"));
    }
    // Both lines are kept for readers of the stored log.
    assert_eq!(e.jobs.logs_after(&job.id, 0, 10).unwrap().len(), 2);
}
