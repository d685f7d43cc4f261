//! Jobs: one typed operation on one node. The controller persists every job (id, node, kind,
//! state, timing, exit status, log lines with sequence numbers) and fans out log lines and
//! completion to waiting callers. File contents are never persisted.

use crate::registry::Registry;
use crate::store::{JOB_LOGS, JOBS, Store, StoreError, decode};
use clustermgr_proto::{
    CancelJob, ControllerMessage, Job, JobLogLine, JobProgress, JobRequest, JobResult, Operation,
    OperationOutput, controller_message, install_package, operation, operation_output, probe,
};
use clustermgr_shared::util::now_ms;
use prost::Message;
use redb::ReadableTable;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

pub const RUNNING: &str = "running";
pub const SUCCEEDED: &str = "succeeded";
pub const FAILED: &str = "failed";
pub const TIMED_OUT: &str = "timed-out";
pub const INTERRUPTED: &str = "interrupted";

/// How a finished job ends up for a waiting caller.
#[derive(Clone, Debug)]
pub struct Finished {
    pub job: Job,
    /// read-file content, for the caller only.
    pub content: Option<Vec<u8>>,
}

struct Live {
    job: Job,
    done: watch::Sender<Option<Finished>>,
    logs: broadcast::Sender<JobLogLine>,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("node {0} is not connected; the job was not started")]
    NodeOffline(String),
    #[error("node {0} is pending approval; approve it first (clustermgr node approve)")]
    Pending(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Jobs {
    store: Store,
    registry: Arc<Registry>,
    live: Mutex<HashMap<String, Live>>,
}

pub fn kind_of(op: &Operation) -> (&'static str, String) {
    match &op.kind {
        Some(operation::Kind::Ping(_)) => ("ping", "ping".into()),
        Some(operation::Kind::CollectFacts(_)) => ("collect-facts", "collect facts".into()),
        Some(operation::Kind::ReadFile(r)) => ("read-file", format!("read {}", r.path)),
        Some(operation::Kind::WriteFile(w)) => (
            "write-file",
            format!(
                "write {} ({} bytes, mode {:o})",
                w.path,
                w.content.len(),
                if w.mode == 0 { 0o644 } else { w.mode }
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
        None => ("unknown", "unknown".into()),
    }
}

impl Jobs {
    pub fn new(store: Store, registry: Arc<Registry>) -> Self {
        Self {
            store,
            registry,
            live: Mutex::new(HashMap::new()),
        }
    }

    /// Marks jobs left running by a previous controller process as interrupted.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        self.store
            .write(|txn| {
                let mut t = txn.open_table(JOBS)?;
                let mut stale = Vec::new();
                for row in t.iter()? {
                    let (k, v) = row?;
                    let job: Job = decode("jobs", v.value())?;
                    if job.state == RUNNING {
                        stale.push((k.value().to_string(), job));
                    }
                }
                let n = stale.len();
                for (k, mut job) in stale {
                    job.state = INTERRUPTED.into();
                    job.error = "the controller restarted while the job was running".into();
                    job.finished_unix_ms = now_ms();
                    job.duration_ms = job.finished_unix_ms.saturating_sub(job.created_unix_ms);
                    t.insert(k.as_str(), job.encode_to_vec().as_slice())?;
                }
                Ok(n)
            })
            .await
    }

    /// Persists a new job and sends it to the node. Returns a receiver that yields the
    /// finished job.
    pub async fn submit(
        self: &Arc<Self>,
        node_id: &str,
        node_hostname: &str,
        approved: bool,
        op: Operation,
        timeout: Duration,
        submitted_by: String,
    ) -> Result<(Job, watch::Receiver<Option<Finished>>), JobError> {
        if !approved {
            return Err(JobError::Pending(node_id.into()));
        }
        let session = self
            .registry
            .get(node_id)
            .ok_or_else(|| JobError::NodeOffline(node_hostname.into()))?;
        let (kind, summary) = kind_of(&op);
        let id = uuid::Uuid::now_v7().to_string();
        let timeout_ms = timeout.as_millis().min(u32::MAX as u128) as u32;
        let job = Job {
            id: id.clone(),
            node_id: node_id.into(),
            node_hostname: node_hostname.into(),
            kind: kind.into(),
            summary,
            state: RUNNING.into(),
            created_unix_ms: now_ms(),
            timeout_ms,
            submitted_by,
            ..Default::default()
        };
        self.store.put_msg(JOBS, id.clone(), job.clone()).await?;
        let (done_tx, done_rx) = watch::channel(None);
        // Small on purpose: a follower that falls behind re-reads the stored lines.
        let (logs, _) = broadcast::channel(64);
        if let Ok(mut live) = self.live.lock() {
            live.insert(
                id.clone(),
                Live {
                    job: job.clone(),
                    done: done_tx,
                    logs,
                },
            );
        }
        let msg = ControllerMessage {
            msg: Some(controller_message::Msg::Job(JobRequest {
                job_id: id.clone(),
                timeout_ms,
                operation: Some(op),
            })),
        };
        if session.tx.send(Ok(msg)).await.is_err() {
            self.finish(
                &id,
                INTERRUPTED,
                "the agent's session ended before the job was sent",
                None,
            )
            .await;
            return Err(JobError::NodeOffline(node_hostname.into()));
        }
        // The controller enforces the timeout even if the agent never answers.
        let me = self.clone();
        let node = node_id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(timeout + Duration::from_secs(2)).await;
            if me.is_live(&id) {
                if let Some(s) = me.registry.get(&node) {
                    let cancel = ControllerMessage {
                        msg: Some(controller_message::Msg::Cancel(CancelJob {
                            job_id: id.clone(),
                            reason: "timed out".into(),
                        })),
                    };
                    let _ = s.tx.send(Ok(cancel)).await;
                }
                let msg = format!(
                    "no result within the job timeout ({} ms)",
                    timeout.as_millis()
                );
                me.finish(&id, TIMED_OUT, &msg, None).await;
            }
        });
        Ok((job, done_rx))
    }

    fn is_live(&self, id: &str) -> bool {
        self.live
            .lock()
            .map(|l| l.contains_key(id))
            .unwrap_or(false)
    }

    /// Subscribes to a running job: (log receiver, completion receiver). None if not running.
    pub fn subscribe(
        &self,
        id: &str,
    ) -> Option<(
        broadcast::Receiver<JobLogLine>,
        watch::Receiver<Option<Finished>>,
    )> {
        let live = self.live.lock().ok()?;
        live.get(id)
            .map(|l| (l.logs.subscribe(), l.done.subscribe()))
    }

    fn owned_by(&self, id: &str, node_id: &str) -> bool {
        self.live
            .lock()
            .map(|l| l.get(id).is_some_and(|j| j.job.node_id == node_id))
            .unwrap_or(false)
    }

    /// A log line from the node that runs the job.
    pub async fn log(&self, node_id: &str, id: &str, line: JobLogLine) -> Result<(), StoreError> {
        if !self.owned_by(id, node_id) {
            return Ok(());
        }
        let key_id = id.to_string();
        let text = line.line.clone();
        let seq = line.seq;
        self.store
            .write(move |txn| {
                txn.open_table(JOB_LOGS)?
                    .insert((key_id.as_str(), seq), text.as_str())?;
                Ok(())
            })
            .await?;
        if let Ok(mut live) = self.live.lock()
            && let Some(l) = live.get_mut(id)
        {
            l.job.log_lines = l.job.log_lines.max(seq);
            let _ = l.logs.send(line);
        }
        Ok(())
    }

    pub fn progress(&self, node_id: &str, id: &str, p: JobProgress) {
        if !self.owned_by(id, node_id) {
            return;
        }
        if let Ok(mut live) = self.live.lock()
            && let Some(l) = live.get_mut(id)
        {
            l.job.progress_percent = p.percent.min(100);
            l.job.progress_message = p.message;
        }
    }

    /// The final result from the node that runs the job.
    pub async fn result(&self, node_id: &str, id: &str, r: JobResult) {
        if !self.owned_by(id, node_id) {
            return;
        }
        let state = if r.success { SUCCEEDED } else { FAILED };
        let mut output = r.output;
        let content = strip_content(&mut output);
        self.finish_with(id, state, &r.error, r.exit_code, output, content)
            .await;
    }

    /// Ends every running job of a node whose session went away.
    pub async fn node_disconnected(&self, node_id: &str) {
        let ids: Vec<String> = self
            .live
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|(_, j)| j.job.node_id == node_id)
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        for id in ids {
            self.finish(
                &id,
                INTERRUPTED,
                "the agent disconnected before the job finished",
                None,
            )
            .await;
        }
    }

    async fn finish(&self, id: &str, state: &str, error: &str, output: Option<OperationOutput>) {
        self.finish_with(id, state, error, 0, output, None).await;
    }

    async fn finish_with(
        &self,
        id: &str,
        state: &str,
        error: &str,
        exit_code: i32,
        output: Option<OperationOutput>,
        content: Option<Vec<u8>>,
    ) {
        let Some(live) = self.live.lock().ok().and_then(|mut l| l.remove(id)) else {
            return;
        };
        let mut job = live.job;
        job.state = state.into();
        job.error = error.into();
        job.exit_code = exit_code;
        job.output = output;
        job.finished_unix_ms = now_ms();
        job.duration_ms = job.finished_unix_ms.saturating_sub(job.created_unix_ms);
        if let Err(e) = self.store.put_msg(JOBS, id.to_string(), job.clone()).await {
            tracing::error!(job = id, error = %e, "cannot persist job result");
        }
        let _ = live.done.send(Some(Finished { job, content }));
    }

    /// A job record: the live view while running, else the stored one.
    pub fn get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        if let Some(j) = self
            .live
            .lock()
            .ok()
            .and_then(|l| l.get(id).map(|l| l.job.clone()))
        {
            return Ok(Some(j));
        }
        self.store.get_msg(JOBS, id)
    }

    /// Most recent jobs first.
    pub fn list(&self, node_id: Option<&str>, limit: usize) -> Result<Vec<Job>, StoreError> {
        let mut jobs = self.store.read(|txn| {
            let t = txn.open_table(JOBS)?;
            let mut out = Vec::new();
            for row in t.iter()?.rev() {
                let (_, v) = row?;
                let job: Job = decode("jobs", v.value())?;
                if node_id.is_none_or(|n| job.node_id == n) {
                    out.push(job);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })?;
        if let Ok(live) = self.live.lock() {
            for j in &mut jobs {
                if let Some(l) = live.get(&j.id) {
                    *j = l.job.clone();
                }
            }
        }
        Ok(jobs)
    }

    /// Stored log lines with seq > after.
    pub fn logs_after(&self, id: &str, after: u64) -> Result<Vec<JobLogLine>, StoreError> {
        self.store.read(|txn| {
            let t = txn.open_table(JOB_LOGS)?;
            let mut out = Vec::new();
            for row in t.range((id, after.saturating_add(1))..=(id, u64::MAX))? {
                let (k, v) = row?;
                out.push(JobLogLine {
                    seq: k.value().1,
                    line: v.value().to_string(),
                    unix_ms: 0,
                });
            }
            Ok(out)
        })
    }
}

/// Takes read-file content out of an output so it is never persisted.
fn strip_content(output: &mut Option<OperationOutput>) -> Option<Vec<u8>> {
    match output.as_mut().and_then(|o| o.kind.as_mut()) {
        Some(operation_output::Kind::ReadFile(r)) => Some(std::mem::take(&mut r.content)),
        _ => None,
    }
}
