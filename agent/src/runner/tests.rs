use super::*;

fn ok() -> JobResult {
    JobResult {
        success: true,
        ..Default::default()
    }
}

fn lines_of(msgs: &[AgentMessage], id: &str) -> Vec<String> {
    msgs.iter()
        .filter_map(|m| match &m.msg {
            Some(clustermgr_proto::agent_message::Msg::JobEvent(e)) if e.job_id == id => {
                match &e.event {
                    Some(job_event::Event::Log(l)) => Some(l.line.clone()),
                    Some(job_event::Event::Result(r)) => {
                        Some(format!("RESULT {} {}", r.success, r.error))
                    }
                    _ => None,
                }
            }
            _ => None,
        })
        .collect()
}

async fn until_idle(r: &Runner) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while r.idle_for().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
}

/// A job that logs `n` lines, then ends.
fn chatty(r: &Runner, id: &str, n: usize) {
    r.start(
        id.into(),
        Duration::from_secs(10),
        None,
        move |mut log| async move {
            for i in 0..n {
                log.line(format!("line {i}"));
            }
            ok()
        },
    );
}

#[tokio::test]
async fn events_wait_for_a_session_lines_capped_result_kept_then_forgotten() {
    let r = Runner::with_limits(Limits {
        max_lines: 10,
        // Long enough that the checks right after delivery run within it on a loaded host.
        keep_delivered: Duration::from_secs(3),
        ..Default::default()
    });
    chatty(&r, "a", 25);
    until_idle(&r).await;
    // Ended, lines still to send: reported as running, its events follow the Hello.
    let (running, finished) = r.hello();
    assert_eq!(running, ["a"]);
    assert!(finished.is_empty());
    let out = r.outgoing();
    let got = lines_of(&out, "a");
    assert_eq!(got.len(), 12, "{got:?}");
    assert!(got[0].contains("15 log lines dropped"), "{got:?}");
    assert_eq!(got[1], "line 15");
    assert_eq!(got[10], "line 24");
    assert_eq!(got[11], "RESULT true ");
    assert!(r.outgoing().is_empty());
    // Sent, but a next Hello reports the result again for a while.
    let (running, finished) = r.hello();
    assert!(running.is_empty());
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].job_id, "a");
    r.sent_in_hello(&["a".to_string()]);
    assert!(r.outgoing().is_empty());
    // Then forgotten, once kept for that long (waited for, with a ceiling).
    let delivered = std::time::Instant::now();
    loop {
        let (running, finished) = r.hello();
        assert!(running.is_empty());
        if finished.is_empty() {
            break;
        }
        assert!(
            delivered.elapsed() < Duration::from_secs(30),
            "never forgotten"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_known_job_is_not_run_twice() {
    let r = Runner::new();
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..2 {
        let runs = runs.clone();
        r.start(
            "a".into(),
            Duration::from_secs(10),
            None,
            move |_| async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
                ok()
            },
        );
    }
    until_idle(&r).await;
    assert_eq!(lines_of(&r.outgoing(), "a"), ["RESULT true "]);
    let runs2 = runs.clone();
    r.start(
        "a".into(),
        Duration::from_secs(10),
        None,
        move |_| async move {
            runs2.fetch_add(1, Ordering::SeqCst);
            ok()
        },
    );
    // Answered with the result it has.
    assert_eq!(lines_of(&r.outgoing(), "a"), ["RESULT true "]);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

type Spans = Arc<Mutex<Vec<(String, Instant, Instant)>>>;

fn timed(r: &Runner, id: &str, exclusive: Option<OpName>, spans: &Spans, ms: u64) {
    let spans = spans.clone();
    let name = id.to_string();
    r.start(
        id.into(),
        Duration::from_secs(10),
        exclusive,
        move |mut log| async move {
            let start = Instant::now();
            log.line("started");
            tokio::time::sleep(Duration::from_millis(ms)).await;
            lock(&spans).push((name, start, Instant::now()));
            ok()
        },
    );
}

#[tokio::test]
async fn exclusive_jobs_run_one_after_the_other_others_run_freely() {
    let r = Runner::new();
    let spans: Spans = Arc::default();
    timed(&r, "a", Some(OpName::InstallPackage), &spans, 300);
    tokio::time::sleep(Duration::from_millis(50)).await;
    timed(&r, "b", Some(OpName::GluuServices), &spans, 300);
    timed(&r, "ping", None, &spans, 10);
    until_idle(&r).await;
    let s = lock(&spans).clone();
    let get = |n: &str| s.iter().find(|(id, ..)| id == n).cloned().unwrap();
    let (a, b, p) = (get("a"), get("b"), get("ping"));
    assert!(b.1 >= a.2, "b started before a ended: {s:?}");
    assert!(p.2 < a.2, "the ping waited for the exclusive job: {s:?}");
    let out = r.outgoing();
    let b_lines = lines_of(&out, "b");
    assert_eq!(
        b_lines[0], "waiting for job a (install-package) to finish",
        "{b_lines:?}"
    );
    assert_eq!(b_lines[1], "started");
    assert!(!lines_of(&out, "ping").iter().any(|l| l.contains("waiting")));
}

#[tokio::test]
async fn waiting_counts_against_the_timeout_and_can_be_cancelled() {
    let r = Runner::new();
    let spans: Spans = Arc::default();
    timed(&r, "a", Some(OpName::RunGluuSetup), &spans, 800);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Times out while waiting.
    r.start(
        "b".into(),
        Duration::from_millis(150),
        Some(OpName::GluuServices),
        |_| async { ok() },
    );
    timed(&r, "c", Some(OpName::RenameGluuHost), &spans, 10);
    tokio::time::sleep(Duration::from_millis(50)).await;
    r.cancel("c", "operator asked");
    timed(&r, "d", Some(OpName::InstallPackage), &spans, 10);
    until_idle(&r).await;
    let out = r.outgoing();
    let b = lines_of(&out, "b");
    assert!(
        b.last()
            .unwrap()
            .starts_with("RESULT false timed out after 150 ms (still waiting"),
        "{b:?}"
    );
    let c = lines_of(&out, "c");
    assert_eq!(
        c.last().unwrap(),
        "RESULT false cancelled by the controller: operator asked"
    );
    assert!(!c.iter().any(|l| l == "started"), "{c:?}");
    // The cancelled and timed-out waiters left the lock to the next one.
    let s = lock(&spans).clone();
    let names: Vec<&str> = s.iter().map(|(n, ..)| n.as_str()).collect();
    assert_eq!(names, ["a", "d"]);
    assert!(s[1].1 >= s[0].2);
    assert_eq!(lines_of(&out, "d").last().unwrap(), "RESULT true ");
}

#[tokio::test]
async fn a_running_job_is_reported_running_and_its_result_follows() {
    let r = Runner::new();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    r.start("a".into(), Duration::from_secs(10), None, |_| async move {
        let _ = go_rx.await;
        ok()
    });
    assert!(r.idle_for().is_none());
    let (running, finished) = r.hello();
    assert_eq!(running, ["a"]);
    assert!(finished.is_empty());
    go_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), r.notified())
        .await
        .unwrap();
    until_idle(&r).await;
    assert_eq!(lines_of(&r.outgoing(), "a"), ["RESULT true "]);
}
