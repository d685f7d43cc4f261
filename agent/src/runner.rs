//! The process-wide job runner: it owns the jobs this node runs, independently of sessions.
//!
//! A job's events (log lines, result) go into the runner; the session that is up drains them
//! onto its stream (`outgoing`), and when none is up they are kept: the last
//! [`Limits::max_lines`] log lines per job (the count of dropped ones is sent before them), and
//! every result until it is sent, then for [`Limits::keep_delivered`] more (at most
//! [`Limits::max_delivered`]) so that a result sent on a stream that broke right after is sent
//! again with the next `Hello` (`hello`). A request for a job id the runner already knows is
//! never run twice.
//!
//! Operations that must not overlap on a node (the catalogue's exclusive kinds,
//! [`OpName::exclusive`]: package installation, Gluu setup and services, certificates, oxAuth
//! and directory configuration, host rename, nginx, keys, restore) take one exclusive lock; a
//! job that has to wait says for which job first. Waiting counts against the job's timeout,
//! and a job can be cancelled while it waits.

use crate::ops::{self, Ctx, Log};
use clustermgr_proto::{
    AgentMessage, JobEvent, JobLogLine, JobRequest, JobResult, OpName, job_event,
};
use clustermgr_shared::util::now_ms;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OwnedMutexGuard, mpsc};
use tokio::task::AbortHandle;

/// What the runner keeps for a controller it cannot reach.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Log lines kept per job while they cannot be sent (the oldest go first).
    pub max_lines: usize,
    /// How long a result is kept after it was sent (to send it again after a broken stream).
    pub keep_delivered: Duration,
    /// At most this many sent results are kept.
    pub max_delivered: usize,
    /// Results put into one `Hello` (encoded bytes); the others follow it as job events.
    pub hello_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_lines: 1000,
            keep_delivered: Duration::from_secs(600),
            max_delivered: 256,
            hello_bytes: 4 * 1024 * 1024,
        }
    }
}

#[derive(Clone, Default)]
pub struct Runner {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    wake: Notify,
    exclusive: Arc<tokio::sync::Mutex<()>>,
    /// The job holding the exclusive lock and its kind.
    holder: Mutex<Option<(String, OpName)>>,
    limits: Limits,
}

#[derive(Default)]
struct State {
    jobs: HashMap<String, Entry>,
    /// When a job last started or ended.
    last_activity: Option<Instant>,
}

struct Entry {
    /// Log lines not yet handed to a session.
    lines: VecDeque<JobLogLine>,
    /// Lines dropped from `lines` since the last hand-over.
    dropped: u64,
    seq: u64,
    status: Status,
}

enum Status {
    Running(AbortHandle),
    Ended {
        result: Box<JobResult>,
        /// When the result was handed to a session (None: still to send).
        delivered: Option<Instant>,
    },
}

// Every change under these locks is a field update or a single map operation: a poisoned guard
// still holds consistent state, so it is recovered.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn log_event(id: &str, line: JobLogLine) -> AgentMessage {
    AgentMessage::job_event(id, job_event::Event::Log(line))
}

fn result_event(id: &str, r: JobResult) -> AgentMessage {
    AgentMessage::job_event(id, job_event::Event::Result(r))
}

impl Runner {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_limits(limits: Limits) -> Self {
        Self {
            inner: Arc::new(Inner {
                limits,
                ..Default::default()
            }),
        }
    }

    /// Starts a job from the controller, unless the runner knows its id already: then a running
    /// job goes on as it is, and the result of an ended one is sent again.
    pub fn submit(&self, ctx: Ctx, job: JobRequest) {
        let op = job.operation.unwrap_or_default();
        let exclusive = op.kind.as_ref().map(|k| k.name()).filter(|n| n.exclusive());
        let timeout = Duration::from_millis(u64::from(job.timeout_ms.max(1)));
        self.start(job.job_id, timeout, exclusive, move |mut log| async move {
            ops::run(&ctx, op, &mut log).await
        });
    }

    /// Runs `work` as job `id` (see [`Runner::submit`]). `exclusive` names the kind of an
    /// operation that takes the node's exclusive lock.
    pub fn start<F, Fut>(&self, id: String, timeout: Duration, exclusive: Option<OpName>, work: F)
    where
        F: FnOnce(Log) -> Fut + Send + 'static,
        Fut: Future<Output = JobResult> + Send + 'static,
    {
        let mut st = lock(&self.inner.state);
        if let Some(e) = st.jobs.get_mut(&id) {
            match &mut e.status {
                Status::Running(_) => {
                    tracing::info!(job = %id, "job requested again while it runs; not started twice");
                }
                Status::Ended { delivered, .. } => {
                    tracing::info!(job = %id, "job requested again after it ended; sending its result again");
                    *delivered = None;
                    self.inner.wake.notify_one();
                }
            }
            return;
        }
        let inner = self.inner.clone();
        let task_id = id.clone();
        let handle = tokio::spawn(async move {
            let result = run_job(&inner, &task_id, timeout, exclusive, work).await;
            inner.finish(&task_id, result);
        })
        .abort_handle();
        st.jobs.insert(
            id,
            Entry {
                lines: VecDeque::new(),
                dropped: 0,
                seq: 0,
                status: Status::Running(handle),
            },
        );
        st.last_activity = Some(Instant::now());
    }

    /// Cancels a running (or waiting) job: it ends at once with a "cancelled" result.
    pub fn cancel(&self, id: &str, reason: &str) {
        let msg = format!("cancelled by the controller: {reason}");
        let mut st = lock(&self.inner.state);
        let Some(e) = st.jobs.get_mut(id) else { return };
        let Status::Running(handle) = &e.status else {
            return;
        };
        handle.abort();
        tracing::info!(job = %id, reason, "job cancelled");
        self.inner.push_line(e, msg.clone());
        e.status = Status::Ended {
            result: Box::new(JobResult {
                success: false,
                error: msg,
                ..Default::default()
            }),
            delivered: None,
        };
        st.last_activity = Some(Instant::now());
        drop(st);
        self.inner.wake.notify_one();
    }

    /// Resolves when there may be something to send (call [`Runner::outgoing`]).
    pub async fn notified(&self) {
        self.inner.wake.notified().await;
    }

    /// Makes the next [`Runner::notified`] resolve at once (a new session sends what is kept).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Takes every event not yet handed to a session: per job its log lines, then its result.
    pub fn outgoing(&self) -> Vec<AgentMessage> {
        let mut out = Vec::new();
        let now = Instant::now();
        let mut st = lock(&self.inner.state);
        for (id, e) in st.jobs.iter_mut() {
            if e.dropped > 0 {
                out.push(log_event(
                    id,
                    JobLogLine {
                        seq: 0,
                        line: format!(
                            "[{} log lines dropped while the controller was unreachable]",
                            e.dropped
                        ),
                        unix_ms: now_ms(),
                    },
                ));
                e.dropped = 0;
            }
            out.extend(e.lines.drain(..).map(|l| log_event(id, l)));
            if let Status::Ended { result, delivered } = &mut e.status
                && delivered.is_none()
            {
                out.push(result_event(id, (**result).clone()));
                *delivered = Some(now);
            }
        }
        self.inner.gc(&mut st);
        out
    }

    /// What the `Hello` of a new session reports: the ids of the jobs still running (or ended
    /// with events still to send, which follow the Hello), and the results of jobs that ended
    /// recently. Once the session is up, [`Runner::sent_in_hello`] counts those results as sent.
    pub fn hello(&self) -> (Vec<String>, Vec<JobEvent>) {
        let now = Instant::now();
        let mut st = lock(&self.inner.state);
        self.inner.gc(&mut st);
        let mut running = Vec::new();
        let mut ended: Vec<(&String, &mut Entry)> = Vec::new();
        for (id, e) in st.jobs.iter_mut() {
            match e.status {
                Status::Running(_) => running.push(id.clone()),
                Status::Ended { .. } => ended.push((id, e)),
            }
        }
        // Results still to send first, then the most recently sent.
        ended.sort_by_key(|(_, e)| match e.status {
            Status::Ended { delivered, .. } => delivered.map(|d| now.duration_since(d)),
            Status::Running(_) => None,
        });
        let mut budget = self.inner.limits.hello_bytes;
        let mut finished = Vec::new();
        for (id, e) in ended {
            let pending_lines = !e.lines.is_empty() || e.dropped > 0;
            let Status::Ended { result, delivered } = &mut e.status else {
                continue;
            };
            let size = prost::Message::encoded_len(&**result) + id.len() + 16;
            if pending_lines || size > budget {
                // Its lines (and result) follow the Hello, in order.
                running.push(id.clone());
                *delivered = None;
                continue;
            }
            budget -= size;
            finished.push(JobEvent {
                job_id: id.clone(),
                event: Some(job_event::Event::Result((**result).clone())),
            });
        }
        (running, finished)
    }

    /// The session whose Hello carried these results is up: they count as sent.
    pub fn sent_in_hello(&self, finished: &[String]) {
        let now = Instant::now();
        let mut st = lock(&self.inner.state);
        for id in finished {
            if let Some(Entry {
                status: Status::Ended { delivered, .. },
                ..
            }) = st.jobs.get_mut(id)
            {
                delivered.get_or_insert(now);
            }
        }
    }

    /// How long no job has run (None while one runs).
    pub fn idle_for(&self) -> Option<Duration> {
        let st = lock(&self.inner.state);
        if st
            .jobs
            .values()
            .any(|e| matches!(e.status, Status::Running(_)))
        {
            return None;
        }
        Some(st.last_activity.map_or(Duration::MAX, |t| t.elapsed()))
    }
}

impl Inner {
    fn push_line(&self, e: &mut Entry, line: String) {
        e.seq += 1;
        e.lines.push_back(JobLogLine {
            seq: e.seq,
            line,
            unix_ms: now_ms(),
        });
        while e.lines.len() > self.limits.max_lines {
            e.lines.pop_front();
            e.dropped += 1;
        }
    }

    fn line(&self, id: &str, line: String) {
        let mut st = lock(&self.state);
        if let Some(e) = st.jobs.get_mut(id) {
            self.push_line(e, line);
            drop(st);
            self.wake.notify_one();
        }
    }

    fn finish(&self, id: &str, result: JobResult) {
        let mut st = lock(&self.state);
        let Some(e) = st.jobs.get_mut(id) else { return };
        if !matches!(e.status, Status::Running(_)) {
            return;
        }
        tracing::info!(job = %id, success = result.success, "job ended");
        e.status = Status::Ended {
            result: Box::new(result),
            delivered: None,
        };
        st.last_activity = Some(Instant::now());
        self.gc(&mut st);
        drop(st);
        self.wake.notify_one();
    }

    /// Forgets results sent long enough ago, and the oldest sent ones beyond the cap.
    fn gc(&self, st: &mut State) {
        let keep = self.limits.keep_delivered;
        st.jobs.retain(|_, e| match e.status {
            Status::Ended {
                delivered: Some(d), ..
            } => d.elapsed() <= keep || !e.lines.is_empty(),
            _ => true,
        });
        let mut sent: Vec<(Instant, String)> = st
            .jobs
            .iter()
            .filter_map(|(id, e)| match e.status {
                Status::Ended {
                    delivered: Some(d), ..
                } if e.lines.is_empty() => Some((d, id.clone())),
                _ => None,
            })
            .collect();
        if sent.len() > self.limits.max_delivered {
            sent.sort();
            let over = sent.len() - self.limits.max_delivered;
            for (_, id) in sent.into_iter().take(over) {
                st.jobs.remove(&id);
            }
        }
    }
}

/// Holds the node's exclusive lock; clears the holder before releasing it.
struct Exclusive {
    inner: Arc<Inner>,
    id: String,
    _guard: OwnedMutexGuard<()>,
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        let mut h = lock(&self.inner.holder);
        if h.as_ref().is_some_and(|(id, _)| *id == self.id) {
            *h = None;
        }
    }
}

async fn take_exclusive(
    inner: &Arc<Inner>,
    id: &str,
    kind: OpName,
    log: &mpsc::UnboundedSender<(u64, String)>,
) -> Exclusive {
    let guard = match inner.exclusive.clone().try_lock_owned() {
        Ok(g) => g,
        Err(_) => {
            let holder = lock(&inner.holder).clone();
            let line = match holder {
                Some((other, other_kind)) => {
                    format!("waiting for job {other} ({other_kind}) to finish")
                }
                None => "waiting for another job to finish".to_string(),
            };
            let _ = log.send((0, line));
            inner.exclusive.clone().lock_owned().await
        }
    };
    *lock(&inner.holder) = Some((id.to_string(), kind));
    Exclusive {
        inner: inner.clone(),
        id: id.to_string(),
        _guard: guard,
    }
}

/// Runs one job to its result: takes the exclusive lock if its kind needs it, runs `work`
/// within `timeout` (waiting included), and moves its log lines into the runner as they come.
async fn run_job<F, Fut>(
    inner: &Arc<Inner>,
    id: &str,
    timeout: Duration,
    exclusive: Option<OpName>,
    work: F,
) -> JobResult
where
    F: FnOnce(Log) -> Fut + Send + 'static,
    Fut: Future<Output = JobResult> + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, String)>();
    let waiting = AtomicBool::new(exclusive.is_some());
    let mut body = Box::pin(tokio::time::timeout(timeout, async {
        let _exclusive = match exclusive {
            Some(kind) => Some(take_exclusive(inner, id, kind, &tx).await),
            None => None,
        };
        waiting.store(false, Ordering::Relaxed);
        work(Log::new(tx.clone())).await
    }));
    let outcome = loop {
        tokio::select! {
            biased;
            Some((_, line)) = rx.recv() => inner.line(id, line),
            r = &mut body => break r,
        }
    };
    // Releases the exclusive lock (and whatever the operation held) before the result is in.
    drop(body);
    drop(tx);
    while let Ok((_, line)) = rx.try_recv() {
        inner.line(id, line);
    }
    match outcome {
        Ok(r) => r,
        Err(_) => {
            let mut msg = format!("timed out after {} ms", timeout.as_millis());
            if waiting.load(Ordering::Relaxed) {
                msg.push_str(" (still waiting for another job to finish)");
            }
            inner.line(id, msg.clone());
            JobResult {
                success: false,
                error: msg,
                ..Default::default()
            }
        }
    }
}

#[cfg(test)]
mod tests;
