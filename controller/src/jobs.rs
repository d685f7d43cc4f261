//! Jobs: one typed operation on one node. The controller records every job (id, node, kind,
//! state, timing, exit status, log lines) and fans out log lines and completion to waiting
//! callers. File contents (and their digests) are never persisted.
//!
//! A job is dispatched before anything is written: its record (with the submit's audit row) is
//! queued for the store at dispatch and committed in the background, grouped with others, so the
//! dispatch never waits for an fsync; the caller's answer does wait for that commit. A
//! controller that dies while a job runs marks it interrupted at the next start.
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
    CancelJob, ControllerMessage, Job, JobLogLine, JobProgress, JobRecord, JobRequest, JobResult,
    JobState, NodeRecord, Operation, OperationOutput, controller_message, install_package,
    operation, operation_output, probe,
};
use clustermgr_shared::util::now_ms;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

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
/// How often buffered log lines are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(250);
/// How long a dispatch may wait for room in a node's outbound queue.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

struct Live {
    job: JobRecord,
    done: watch::Sender<Option<Finished>>,
    logs: broadcast::Sender<JobLogLine>,
    /// Lines not yet known to be committed (removed once the store has them).
    pending: Vec<(u64, String)>,
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

pub fn kind_of(op: &Operation) -> (&'static str, String) {
    match &op.kind {
        Some(operation::Kind::Ping(_)) => ("ping", "ping".into()),
        Some(operation::Kind::CollectFacts(_)) => ("collect-facts", "collect facts".into()),
        Some(operation::Kind::ReadFile(r)) => ("read-file", format!("read {}", r.path)),
        Some(operation::Kind::WriteFile(w)) => (
            "write-file",
            format!(
                "write {} ({} bytes{})",
                w.path,
                w.content.len(),
                if w.mode == 0 {
                    String::new()
                } else {
                    format!(", mode {:o}", w.mode)
                }
            ),
        ),
        Some(operation::Kind::InstallPackage(r)) => (
            "install-package",
            match &r.source {
                Some(install_package::Source::CachedSha256(s)) => {
                    format!("install pushed package {s}")
                }
                Some(install_package::Source::Name(n)) => format!("install package {n}"),
                None => "install package (no source)".into(),
            },
        ),
        Some(operation::Kind::RunGluuSetup(r)) => (
            "gluu-setup",
            format!(
                "run Gluu setup{}",
                if r.no_data { " --no-data" } else { "" }
            ),
        ),
        Some(operation::Kind::GluuServices(r)) => (
            "gluu-services",
            format!(
                "gluu-serverd {}",
                r.action()
                    .as_str_name()
                    .trim_start_matches("ACTION_")
                    .to_ascii_lowercase()
            ),
        ),
        Some(operation::Kind::ReadSetupProperties(_)) => {
            ("read-setup-properties", "read setup.properties.last".into())
        }
        Some(operation::Kind::Probe(p)) => (
            "probe",
            match &p.target {
                Some(probe::Target::Ldaps(b)) => format!("probe LDAPS {}:{}", b.host, b.port),
                Some(probe::Target::Https(h)) => format!("probe {}", h.url),
                None => "probe (no target)".into(),
            },
        ),
        Some(operation::Kind::ReceivePackage(r)) => (
            "receive-package",
            format!("receive {} ({} bytes)", r.display_name, r.size),
        ),
        Some(operation::Kind::Preflight(p)) => (
            "preflight",
            format!("preflight: ports {:?} on {}", p.ports, p.address),
        ),
        Some(operation::Kind::ReadGluuCertificates(_)) => (
            "read-gluu-certificates",
            "read the Gluu certificate set".into(),
        ),
        Some(operation::Kind::InstallGluuCertificates(c)) => (
            "install-gluu-certificates",
            format!(
                "install {} certificate files (aliases {}_*)",
                c.files.len(),
                c.alias_prefix
            ),
        ),
        Some(operation::Kind::SetOxAuthConfig(c)) => (
            "set-oxauth-config",
            format!(
                "set oxAuth configuration {}",
                c.values.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ),
        Some(operation::Kind::RenameGluuHost(r)) => (
            "rename-gluu-host",
            format!("rename Gluu host {} to {}", r.from, r.to),
        ),
        None => ("unknown", "unknown".into()),
    }
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

    /// Marks jobs left running by a previous controller process as interrupted.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        self.store
            .interrupt_running_jobs(|job| {
                job.state = JobState::Interrupted as i32;
                job.error = "the controller stopped while the job was running".into();
                job.finished_unix_ms = now_ms();
                job.duration_ms = job.finished_unix_ms.saturating_sub(job.created_unix_ms);
            })
            .await
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
        let (kind, summary) = kind_of(&op);
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
            ..Default::default()
        };
        let (done_tx, done_rx) = watch::channel(None);
        // Small on purpose: a follower that falls behind re-reads the stored lines.
        let (logs, _) = broadcast::channel(64);
        self.live().insert(
            id.clone(),
            Live {
                job: rec.clone(),
                done: done_tx,
                logs,
                pending: Vec::new(),
            },
        );
        // Queued before the dispatch, so it commits before the job's end is written.
        let row = audit.on(node.id.clone()).ok(format!("job={id} {summary}"));
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
        let me = self.clone();
        let node_id = node.id.clone();
        let job_id = id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(timeout + Duration::from_secs(2)).await;
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
        persisted.await?;
        Ok((records::job(rec), done_rx))
    }

    /// The record of a job while it runs (None once it has ended).
    pub fn running(&self, id: &str) -> Option<JobRecord> {
        self.live().get(id).map(|l| l.job.clone())
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
        self.live()
            .get(id)
            .map(|l| (l.logs.subscribe(), l.done.subscribe()))
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
        let _ = l.logs.send(JobLogLine {
            seq,
            line: text,
            unix_ms: now_ms(),
        });
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

    /// The final result from the node that runs the job.
    pub async fn result(&self, node_id: &str, id: &str, r: JobResult) {
        let owned = self
            .live()
            .get(id)
            .is_some_and(|l| l.job.node_id == node_id);
        if !owned {
            return;
        }
        let state = if r.success {
            JobState::Succeeded
        } else {
            JobState::Failed
        };
        let mut output = r.output;
        let content = strip_secrets(&mut output);
        let error: String = r.error.chars().take(4096).collect();
        self.finish_with(id, state, &error, r.exit_code, output, content)
            .await;
    }

    /// Ends every running job of a node whose session went away.
    pub async fn node_disconnected(&self, node_id: &str) {
        let ids: Vec<String> = self
            .live()
            .iter()
            .filter(|(_, j)| j.job.node_id == node_id)
            .map(|(k, _)| k.clone())
            .collect();
        for id in ids {
            self.finish(
                &id,
                JobState::Interrupted,
                "the agent disconnected before the job finished",
                None,
            )
            .await;
        }
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
    ) {
        let Some(live) = self.live().remove(id) else {
            return;
        };
        let mut job = live.job;
        job.state = state as i32;
        job.error = error.into();
        job.exit_code = exit_code;
        job.output = output;
        job.finished_unix_ms = now_ms();
        job.duration_ms = job.finished_unix_ms.saturating_sub(job.created_unix_ms);
        if let Err(e) = self.store.put_job(job.clone(), live.pending, None).await {
            tracing::error!(job = id, error = %e, "cannot persist job result");
        }
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
    }

    /// A job record: the live view while running, else the stored one.
    pub fn get(&self, id: &str) -> Result<Option<Job>, JobError> {
        if let Some(j) = self.live().get(id).map(|l| l.job.clone()) {
            return Ok(Some(records::job(j)));
        }
        Ok(self.store.job(id)?.map(records::job))
    }

    /// Most recent jobs first.
    pub fn list(&self, node_id: Option<&str>, limit: usize) -> Result<Vec<Job>, JobError> {
        let mut jobs = self.store.recent_jobs(node_id, limit)?;
        {
            let live = self.live();
            for j in &mut jobs {
                if let Some(l) = live.get(&j.id) {
                    *j = l.job.clone();
                }
            }
        }
        Ok(jobs.into_iter().map(records::job).collect())
    }

    /// Log lines with seq > after, at most `limit`, in order (committed and buffered ones).
    pub fn logs_after(
        &self,
        id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<JobLogLine>, JobError> {
        // Buffered lines first: a line leaves the buffer only once the store has it, so every
        // line is in one of the two reads.
        let buffered: Vec<(u64, String)> = self
            .live()
            .get(id)
            .map(|l| {
                l.pending
                    .iter()
                    .filter(|(s, _)| *s > after)
                    .take(limit)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let mut lines = self.store.job_logs_after(id, after, limit)?;
        lines.extend(buffered);
        lines.sort_by_key(|(s, _)| *s);
        lines.dedup_by_key(|(s, _)| *s);
        lines.truncate(limit);
        Ok(lines
            .into_iter()
            .map(|(seq, line)| JobLogLine {
                seq,
                line,
                unix_ms: 0,
            })
            .collect())
    }
}

/// Takes read-file content out of an output so it is never persisted (returned for the caller),
/// and drops its digest: a hash of a low-entropy secret file allows offline guessing.
fn strip_secrets(output: &mut Option<OperationOutput>) -> Option<Vec<u8>> {
    match output.as_mut().and_then(|o| o.kind.as_mut()) {
        Some(operation_output::Kind::ReadFile(r)) => {
            r.sha256.clear();
            Some(std::mem::take(&mut r.content))
        }
        // setup.properties.last holds the cluster's passwords.
        Some(operation_output::Kind::ReadSetupProperties(r)) => {
            Some(std::mem::take(&mut r.content))
        }
        // Private keys and keystores: the caller gets them re-encoded, the record keeps names.
        Some(operation_output::Kind::ReadGluuCertificates(c)) => {
            let whole = prost::Message::encode_to_vec(&*c);
            for f in &mut c.files {
                f.content.clear();
                f.sha256.clear();
            }
            Some(whole)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clustermgr_proto::{Ping, ReadFile, ReadFileOutput};
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

    #[tokio::test]
    async fn disconnect_interrupts_and_recover_marks_stale_jobs() {
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
        // A second controller over the same store sees the job as running, then recovers it.
        let other = Jobs::new(e.store.clone(), Arc::new(Registry::default()));
        assert_eq!(other.recover().await.unwrap(), 1);
        assert_eq!(
            e.store.job(&job.id).unwrap().unwrap().state(),
            JobState::Interrupted
        );
        e.jobs.node_disconnected("a").await;
        assert_eq!(e.jobs.get(&job.id).unwrap().unwrap().state, INTERRUPTED);
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
}
