//! Jobs: one typed operation on one node. The controller records every job (id, node, kind,
//! state, timing, exit status, log lines) and fans out log lines and completion to waiting
//! callers. File contents (and their digests) are never persisted.
//!
//! A job is dispatched before anything is written: its record (with the submit's audit row) is
//! queued for the store at dispatch and committed in the background, grouped with others, so the
//! dispatch never waits for an fsync; the caller's answer does wait for that commit. A
//! controller that dies while a job runs marks it interrupted at the next start.
//!
//! Jobs outlive sessions: a session that drops leaves its node's jobs running (the job timeout
//! still applies), because the agent keeps running them. Every session starts with a `Hello`
//! that says which jobs the agent still runs and which ended recently, with their results;
//! [`Jobs::reconcile`] applies those results, keeps the jobs it still runs, and marks the
//! node's other running jobs interrupted. After a controller restart, a job `recover` marked
//! interrupted is taken up again when its own node reports it (running again, or its result).
//!
//! Log lines from a node are numbered by the controller (the agent's numbers are ignored),
//! capped per job (lines and bytes, then one "log truncated" marker), buffered per job and
//! written in batches by a flusher and at the job's end.

use crate::audit::Audit;
use crate::error::{Classify, Kind};
use crate::records;
use crate::registry::Registry;
use crate::store::{Store, StoreError};
use clustermgr_proto::{
    CancelJob, ControllerMessage, Job, JobEvent, JobLogLine, JobProgress, JobRecord, JobRequest,
    JobResult, JobState, NodeRecord, Operation, OperationOutput, controller_message, job_event,
    operation,
};
use clustermgr_shared::util::now_ms;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

mod reads;
mod recovery;
pub mod roles;

/// The words the API uses for job states (kept for callers that compare strings).
pub const RUNNING: &str = JobState::Running.label();
pub const SUCCEEDED: &str = JobState::Succeeded.label();
pub const FAILED: &str = JobState::Failed.label();
pub const TIMED_OUT: &str = JobState::TimedOut.label();
pub const INTERRUPTED: &str = JobState::Interrupted.label();

/// How a finished job ends up for a waiting caller.
#[derive(Clone, Debug)]
pub struct Finished {
    pub job: Job,
    /// read-file content, for the caller only.
    pub content: Option<Vec<u8>>,
}

/// Per-job caps on what a node may log.
#[derive(Debug, Clone, Copy)]
pub struct LogLimits {
    pub max_lines: u64,
    pub max_bytes: u64,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            max_lines: 10_000,
            max_bytes: 1024 * 1024,
        }
    }
}

/// Longest single log line kept (longer ones are cut).
const MAX_LINE: usize = 8 * 1024;
/// Log lines a follower may fall behind by before it re-reads the stored ones.
const LOG_FOLLOW_SLOTS: usize = 64;
/// How often buffered log lines are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(250);
/// How long a dispatch may wait for room in a node's outbound queue.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long past its timeout the controller waits for a job's result.
const TIMEOUT_GRACE: Duration = Duration::from_secs(2);
/// The error of a job `recover` marked interrupted.
const RECOVERED_ERROR: &str = "the controller stopped while the job was running";
/// The error of a running job its node's `Hello` does not mention.
pub const UNKNOWN_TO_AGENT: &str = "the agent no longer knows this job (did it restart?)";
/// Appended to the error of a failed job whose result came after a controller restart (ended
/// meanwhile, or taken up again and ended later).
const REOBSERVED_NOTE: &str = "(result re-observed after a controller restart)";

struct Live {
    job: JobRecord,
    /// The session generation the job was sent on (or taken up again on).
    sent_on: u64,
    /// Taken up again after a controller restart (a failure's error says so).
    resumed: bool,
    done: watch::Sender<Option<Finished>>,
    /// Made when the first follower subscribes: most jobs (pings, probes) have none, and the
    /// channel's slots cost memory per job in a fan-out.
    logs: Option<broadcast::Sender<JobLogLine>>,
    /// Lines not yet known to be committed (removed once the store has them).
    pending: Vec<(u64, String)>,
    /// The job ended and its final record is being committed: it stays here (readers see the
    /// final state) until the store has it, and nothing may end it again.
    finishing: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("node {0} is not connected; the job was not started")]
    NodeOffline(String),
    #[error("node {0} is pending approval; approve it first (clustermgr node approve)")]
    Pending(String),
    #[error("node {0} is not reading its session; the job was not started")]
    NodeBusy(String),
    #[error("no job {0:?}")]
    NotFound(String),
    #[error("{0:?} is the start of several job ids ({1}); give more of the id")]
    Ambiguous(String, String),
    #[error("job {0} is already running")]
    Duplicate(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for JobError {
    fn kind(&self) -> Kind {
        match self {
            Self::NodeOffline(_) | Self::Pending(_) => Kind::FailedPrecondition,
            Self::NodeBusy(_) => Kind::Unavailable,
            Self::NotFound(_) => Kind::NotFound,
            Self::Ambiguous(..) => Kind::InvalidArgument,
            Self::Duplicate(_) => Kind::AlreadyExists,
            Self::Store(_) => Kind::Internal,
        }
    }
}

pub struct Jobs {
    store: Store,
    registry: Arc<Registry>,
    live: Mutex<HashMap<String, Live>>,
    limits: LogLimits,
    send_timeout: Duration,
    ended: broadcast::Sender<JobEnded>,
    /// Jobs `recover` marked interrupted (id -> node id) that their node may still report.
    recovered: Mutex<HashMap<String, String>>,
}

/// What `reconcile` did (for logs and tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// Results applied to running jobs, and to jobs taken up again after a restart.
    pub results: usize,
    /// Jobs interrupted after a controller restart that run again.
    pub resumed: usize,
    /// Running jobs the agent no longer knows, now interrupted.
    pub interrupted: usize,
}

/// What to run, where it comes from, and for how long.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub operation: Operation,
    pub timeout: Duration,
    /// `operator:<name>` or `workflow:<id>`.
    pub submitted_by: String,
    /// A job id chosen by the caller (a workflow records it on its step before dispatching);
    /// a new UUIDv7 when None.
    pub id: Option<String>,
    /// The workflow whose step the job carries out.
    pub workflow_id: Option<String>,
}

impl JobSpec {
    pub fn new(operation: Operation, timeout: Duration, submitted_by: String) -> Self {
        Self {
            operation,
            timeout,
            submitted_by,
            id: None,
            workflow_id: None,
        }
    }
}

/// Announced once a job's end is committed to the store (subscribers re-read the store).
#[derive(Debug, Clone)]
pub struct JobEnded {
    pub job_id: String,
    pub node_id: String,
    pub workflow_id: String,
    pub state: JobState,
}

impl Jobs {
    pub fn new(store: Store, registry: Arc<Registry>) -> Self {
        Self::with_limits(store, registry, LogLimits::default())
    }

    pub fn with_limits(store: Store, registry: Arc<Registry>, limits: LogLimits) -> Self {
        Self {
            store,
            registry,
            live: Mutex::new(HashMap::new()),
            limits,
            send_timeout: SEND_TIMEOUT,
            ended: broadcast::channel(1024).0,
            recovered: Mutex::new(HashMap::new()),
        }
    }

    /// Job ends, each sent after the end is committed. A receiver that lags must re-read the
    /// store (the events are a wake-up, the store is the truth).
    pub fn ended(&self) -> broadcast::Receiver<JobEnded> {
        self.ended.subscribe()
    }

    // Every change under this lock is a single map operation or a field update: a poisoned
    // guard still holds consistent jobs, so it is recovered, never taken for "no jobs".
    fn live(&self) -> MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn recovered(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.recovered.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes buffered log lines every [`FLUSH_INTERVAL`] until the process ends.
    pub fn start_flusher(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(me) = me.upgrade() else { return };
                if let Err(e) = me.flush_logs().await {
                    tracing::error!(error = %e, "cannot write job log lines");
                }
            }
        });
    }

    /// Writes the buffered log lines of every running job in one transaction.
    pub async fn flush_logs(&self) -> Result<usize, StoreError> {
        let mut batch = Vec::new();
        let mut upto: Vec<(String, u64)> = Vec::new();
        {
            let live = self.live();
            for (id, l) in live.iter() {
                if let Some((last, _)) = l.pending.last() {
                    upto.push((id.clone(), *last));
                    batch.extend(l.pending.iter().map(|(s, t)| (id.clone(), *s, t.clone())));
                }
            }
        }
        if batch.is_empty() {
            return Ok(0);
        }
        let n = batch.len();
        self.store.append_job_logs(batch).await?;
        let mut live = self.live();
        for (id, last) in upto {
            if let Some(l) = live.get_mut(&id) {
                l.pending.retain(|(s, _)| *s > last);
            }
        }
        Ok(n)
    }

    /// Sends a new job to a node at once and records it in the background. Returns the job, a
    /// receiver that yields the finished job, and the pending commit of the job's record and
    /// audit row (the caller's answer waits for it; the dispatch did not).
    /// Submits a job and waits for its end: `None` when it can no longer end (the controller
    /// is stopping). The one way a caller runs a job to its end.
    pub async fn run(
        self: &Arc<Self>,
        node: &NodeRecord,
        spec: JobSpec,
        audit: &Audit,
    ) -> Result<Option<Finished>, JobError> {
        let (_, done) = self.submit(node, spec, audit).await?;
        Ok(finished(done).await)
    }

    pub async fn submit(
        self: &Arc<Self>,
        node: &NodeRecord,
        spec: JobSpec,
        audit: &Audit,
    ) -> Result<(Job, watch::Receiver<Option<Finished>>), JobError> {
        let JobSpec {
            operation: op,
            timeout,
            submitted_by,
            id,
            workflow_id,
        } = spec;
        if !node.approved {
            return Err(JobError::Pending(node.hostname.clone()));
        }
        let session = self
            .registry
            .get(&node.id)
            .ok_or_else(|| JobError::NodeOffline(node.hostname.clone()))?;
        let (kind, summary) = (op.kind_name(), op.summary());
        let id = id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        if self.live().contains_key(&id) {
            return Err(JobError::Duplicate(id));
        }
        let timeout_ms = timeout.as_millis().min(u32::MAX as u128) as u32;
        let rec = JobRecord {
            id: id.clone(),
            node_id: node.id.clone(),
            node_hostname: node.hostname.clone(),
            kind: kind.into(),
            summary: summary.clone(),
            state: JobState::Running as i32,
            created_unix_ms: now_ms(),
            timeout_ms,
            submitted_by,
            workflow_id: workflow_id.unwrap_or_default(),
            fetch_sha256: match &op.kind {
                Some(operation::Kind::ReceivePackage(r)) => r.sha256.clone(),
                _ => String::new(),
            },
            ..Default::default()
        };
        let (done_tx, done_rx) = watch::channel(None);
        self.live().insert(
            id.clone(),
            Live {
                finishing: false,
                job: rec.clone(),
                sent_on: session.generation,
                resumed: false,
                done: done_tx,
                logs: None,
                pending: Vec::new(),
            },
        );
        // Queued before the dispatch, so it commits before the job's end is written.
        let row = audit
            .on(node.id.clone())
            .ok(format!("job={id} {summary}{}", roles::note(&op)));
        let persisted = self.store.put_job(rec.clone(), Vec::new(), Some(row));
        let msg = ControllerMessage {
            msg: Some(controller_message::Msg::Job(JobRequest {
                job_id: id.clone(),
                timeout_ms,
                operation: Some(op),
            })),
        };
        let sent = tokio::time::timeout(self.send_timeout, session.tx.send(Ok(msg))).await;
        let dispatch_error = match sent {
            Ok(Ok(())) => None,
            Ok(Err(_)) => Some((
                "the agent's session ended before the job was sent",
                JobError::NodeOffline(node.hostname.clone()),
            )),
            Err(_) => Some((
                "the agent did not read its session; the job was not sent",
                JobError::NodeBusy(node.hostname.clone()),
            )),
        };
        if let Some((why, err)) = dispatch_error {
            self.finish(&id, JobState::Interrupted, why, None).await;
            persisted.await?;
            return Err(err);
        }
        // The controller enforces the timeout even if the agent never answers.
        self.arm_timeout(&node.id, &id, timeout, timeout + TIMEOUT_GRACE);
        persisted.await?;
        Ok((records::job(rec), done_rx))
    }

    /// Ends the job as timed out after `after` unless it ended by then (and tells the agent to
    /// cancel it). `timeout` is the job's whole timeout, for the message.
    fn arm_timeout(self: &Arc<Self>, node_id: &str, id: &str, timeout: Duration, after: Duration) {
        let me = self.clone();
        let node_id = node_id.to_string();
        let job_id = id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            if me.is_live(&job_id) {
                if let Some(s) = me.registry.get(&node_id) {
                    let cancel = ControllerMessage {
                        msg: Some(controller_message::Msg::Cancel(CancelJob {
                            job_id: job_id.clone(),
                            reason: "timed out".into(),
                        })),
                    };
                    let _ = s.tx.try_send(Ok(cancel));
                }
                let msg = format!(
                    "no result within the job timeout ({} ms)",
                    timeout.as_millis()
                );
                me.finish(&job_id, JobState::TimedOut, &msg, None).await;
            }
        });
    }

    /// The record of a job while it runs (None once it has ended).
    pub fn running(&self, id: &str) -> Option<JobRecord> {
        self.live()
            .get(id)
            .filter(|l| !l.finishing)
            .map(|l| l.job.clone())
    }

    fn is_live(&self, id: &str) -> bool {
        self.live().contains_key(id)
    }

    /// Subscribes to a running job: (log receiver, completion receiver). None if not running.
    pub fn subscribe(
        &self,
        id: &str,
    ) -> Option<(
        broadcast::Receiver<JobLogLine>,
        watch::Receiver<Option<Finished>>,
    )> {
        let mut live = self.live();
        let l = live.get_mut(id)?;
        // Small on purpose: a follower that falls behind re-reads the stored lines.
        let logs = l
            .logs
            .get_or_insert_with(|| broadcast::channel(LOG_FOLLOW_SLOTS).0)
            .subscribe();
        Some((logs, l.done.subscribe()))
    }

    /// A log line from the node that runs the job (its sequence number is ignored).
    pub fn log(&self, node_id: &str, id: &str, line: JobLogLine) {
        let mut live = self.live();
        let Some(l) = live.get_mut(id) else { return };
        if l.job.node_id != node_id || l.job.log_truncated {
            return;
        }
        let mut text = line.line;
        if text.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        let over = l.job.log_lines + 1 >= self.limits.max_lines
            || l.job.log_bytes + text.len() as u64 > self.limits.max_bytes;
        if over {
            text = format!(
                "[log truncated: a job keeps at most {} lines and {} bytes of log]",
                self.limits.max_lines, self.limits.max_bytes
            );
            l.job.log_truncated = true;
        }
        l.job.log_lines += 1;
        l.job.log_bytes += text.len() as u64;
        let seq = l.job.log_lines;
        l.pending.push((seq, text.clone()));
        if let Some(logs) = &l.logs {
            let _ = logs.send(JobLogLine {
                seq,
                line: text,
                unix_ms: now_ms(),
            });
        }
    }

    pub fn progress(&self, node_id: &str, id: &str, p: JobProgress) {
        let mut live = self.live();
        if let Some(l) = live.get_mut(id)
            && l.job.node_id == node_id
        {
            l.job.progress_percent = p.percent.min(100);
            l.job.progress_message = p.message.chars().take(512).collect();
        }
    }

    /// The final result from the node that runs the job. A result for a job of another node,
    /// or for a job that has ended already, is ignored; one for a job a controller restart
    /// marked interrupted is applied to its stored record (see [`Jobs::reconcile`]).
    /// Returns whether the result was applied.
    pub async fn result(&self, node_id: &str, id: &str, r: JobResult) -> bool {
        let owned = self
            .live()
            .get(id)
            .filter(|l| l.job.node_id == node_id)
            .map(|l| l.resumed);
        let Some(resumed) = owned else {
            return self.reobserve(node_id, id, r).await;
        };
        let state = if r.success {
            JobState::Succeeded
        } else {
            JobState::Failed
        };
        let mut output = r.output;
        let content = output.as_mut().and_then(OperationOutput::take_secrets);
        let mut error: String = r.error.chars().take(4096).collect();
        if resumed && !r.success {
            error = format!("{error} {REOBSERVED_NOTE}");
        }
        self.finish_with(id, state, &error, r.exit_code, output, content)
            .await
    }

    async fn finish(
        &self,
        id: &str,
        state: JobState,
        error: &str,
        output: Option<OperationOutput>,
    ) {
        self.finish_with(id, state, error, 0, output, None).await;
    }

    async fn finish_with(
        &self,
        id: &str,
        state: JobState,
        error: &str,
        exit_code: i32,
        output: Option<OperationOutput>,
        content: Option<Vec<u8>>,
    ) -> bool {
        // The final state is visible at once (the live entry), and the entry leaves only once
        // the store has it: a reader never finds the job in neither place, nor a stale state.
        let (job, pending) = {
            let mut live = self.live();
            let Some(l) = live.get_mut(id).filter(|l| !l.finishing) else {
                return false;
            };
            l.finishing = true;
            let job = &mut l.job;
            job.state = state as i32;
            job.error = error.into();
            job.exit_code = exit_code;
            job.output = output;
            job.finished_unix_ms = now_ms();
            job.duration_ms = job.finished_unix_ms.saturating_sub(job.created_unix_ms);
            (job.clone(), std::mem::take(&mut l.pending))
        };
        if let Err(e) = self.store.put_job(job.clone(), pending, None).await {
            tracing::error!(job = id, error = %e, "cannot persist job result");
        }
        let Some(live) = self.live().remove(id) else {
            return false;
        };
        let _ = self.ended.send(JobEnded {
            job_id: job.id.clone(),
            node_id: job.node_id.clone(),
            workflow_id: job.workflow_id.clone(),
            state,
        });
        let _ = live.done.send(Some(Finished {
            job: records::job(job),
            content,
        }));
        true
    }
}

/// The end of a submitted job, once it has one (`None` if it can no longer end).
pub async fn finished(mut done: watch::Receiver<Option<Finished>>) -> Option<Finished> {
    loop {
        if let Some(f) = done.borrow_and_update().clone() {
            return Some(f);
        }
        if done.changed().await.is_err() {
            return None;
        }
    }
}

#[cfg(test)]
mod tests;
