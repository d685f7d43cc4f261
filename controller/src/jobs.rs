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
    JobResult, JobState, NodeRecord, Operation, OperationOutput, controller_message,
    install_package, job_event, operation, operation_output, probe,
};
use clustermgr_shared::util::now_ms;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

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
    logs: broadcast::Sender<JobLogLine>,
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
        Some(operation::Kind::DirectoryInfo(_)) => (
            "directory-info",
            "read the directory's kind and certificate".into(),
        ),
        Some(operation::Kind::ConfigureReplication(c)) => (
            "configure-replication",
            format!(
                "replicate {} as server {} with {}",
                c.bases.join(", "),
                c.server_id,
                if c.peers.is_empty() {
                    "no peer".to_string()
                } else {
                    c.peers
                        .iter()
                        .map(|p| format!("{}:{}", p.host, p.port))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        ),
        Some(operation::Kind::ReplicationStatus(r)) => (
            "replication-status",
            format!("replication status of {}", r.bases.join(", ")),
        ),
        Some(operation::Kind::ReplicationProbe(p)) => (
            "replication-probe",
            format!(
                "{} marker {} in {}",
                match p.action() {
                    clustermgr_proto::replication_probe::Action::Write => "write",
                    clustermgr_proto::replication_probe::Action::Read => "wait for",
                    clustermgr_proto::replication_probe::Action::Remove => "remove",
                    clustermgr_proto::replication_probe::Action::Unspecified => "probe",
                },
                p.marker,
                p.base
            ),
        ),
        Some(operation::Kind::SetHosts(h)) => (
            "set-hosts",
            format!(
                "write {} cluster host lines into /etc/hosts",
                h.entries.len()
            ),
        ),
        Some(operation::Kind::SetLdapServers(s)) => (
            "set-ldap-servers",
            format!("set the LDAP servers to {}", s.servers.join(",")),
        ),
        Some(operation::Kind::SearchLogs(s)) => (
            "search-logs",
            // The pattern is left out: an operator may search for a secret.
            crate::logs::summary(s),
        ),
        Some(
            operation::Kind::ConfigureRedis(_)
            | operation::Kind::ConfigureStunnel(_)
            | operation::Kind::ConfigureNutcracker(_)
            | operation::Kind::CacheStatus(_)
            | operation::Kind::SetCacheConfiguration(_),
        ) => crate::cache::kind_of(op),
        Some(operation::Kind::ConfigureNginx(c)) => (
            "configure-nginx",
            format!(
                "configure nginx for {} with {} backend(s)",
                c.server_name,
                c.backends.len()
            ),
        ),
        Some(operation::Kind::NginxStatus(_)) => ("nginx-status", "nginx status".into()),
        Some(operation::Kind::ProbeNginx(p)) => (
            "probe-nginx",
            format!("GET {} through the load balancer", p.path),
        ),
        Some(operation::Kind::RemoveNginx(_)) => (
            "remove-nginx",
            "stop nginx and remove the load balancer's configuration".into(),
        ),
        Some(operation::Kind::InstallHttpdCertificate(c)) => (
            "install-httpd-certificate",
            format!(
                "install the web certificate (alias {}_httpd), restart, probe {}",
                c.alias_prefix, c.probe_url
            ),
        ),
        Some(operation::Kind::ReadServedCertificate(r)) => (
            "read-served-certificate",
            format!("read the certificate {} serves", r.address),
        ),
        Some(operation::Kind::ApplyLdapSchema(a)) => (
            "apply-ldap-schema",
            format!(
                "{} schema {} in the directory",
                if a.check_only { "check" } else { "install" },
                a.schemas
                    .iter()
                    .map(|s| format!("{:?} ({} elements)", s.name, s.elements.len()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Some(operation::Kind::VerifyLdapSchema(v)) => (
            "verify-ldap-schema",
            format!(
                "verify schema {:?} in the directory",
                v.schema.as_ref().map(|s| s.name.as_str()).unwrap_or("")
            ),
        ),
        Some(operation::Kind::UpdateOxauthKeystore(u)) => (
            "update-oxauth-keystore",
            format!(
                "oxAuth keystore: add {}{}",
                u.add
                    .iter()
                    .map(|k| k.kid.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if u.keep_kids.is_empty() {
                    String::new()
                } else {
                    format!("; keep only {}", u.keep_kids.join(", "))
                }
            ),
        ),
        Some(operation::Kind::SetWebKeys(w)) => (
            "set-web-keys",
            format!(
                "oxAuthConfWebKeys: add {} keys, keep {}, first {}",
                w.add_jwks.len(),
                w.keep_kids.join(", "),
                w.first_kids.join(", ")
            ),
        ),
        Some(operation::Kind::ProbeJwks(p)) => (
            "probe-jwks",
            format!("wait until {} serves {}", p.url, p.expect_kids.join(", ")),
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

    /// Marks jobs left running by a previous controller process as interrupted. Each stays
    /// eligible to be taken up again when its own node reconnects and reports it (see
    /// [`Jobs::reconcile`]).
    pub async fn recover(&self) -> Result<usize, StoreError> {
        let seen: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let collect = seen.clone();
        let n = self
            .store
            .interrupt_running_jobs(move |job| {
                job.state = JobState::Interrupted as i32;
                job.error = RECOVERED_ERROR.into();
                job.finished_unix_ms = now_ms();
                job.duration_ms = job.finished_unix_ms.saturating_sub(job.created_unix_ms);
                collect
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(job.id.clone(), job.node_id.clone());
            })
            .await?;
        let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(|p| p.into_inner()));
        self.recovered().extend(seen);
        Ok(n)
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
            fetch_sha256: match &op.kind {
                Some(operation::Kind::ReceivePackage(r)) => r.sha256.clone(),
                _ => String::new(),
            },
            ..Default::default()
        };
        let (done_tx, done_rx) = watch::channel(None);
        // Small on purpose: a follower that falls behind re-reads the stored lines.
        let (logs, _) = broadcast::channel(64);
        self.live().insert(
            id.clone(),
            Live {
                finishing: false,
                job: rec.clone(),
                sent_on: session.generation,
                resumed: false,
                done: done_tx,
                logs,
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
        let content = strip_secrets(&mut output);
        let mut error: String = r.error.chars().take(4096).collect();
        if resumed && !r.success {
            error = format!("{error} {REOBSERVED_NOTE}");
        }
        self.finish_with(id, state, &error, r.exit_code, output, content)
            .await
    }

    /// Ends every running job of a node that was removed (it will never report them). A node
    /// whose session merely dropped keeps its jobs: see [`Jobs::reconcile`].
    pub async fn node_removed(&self, node_id: &str) {
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
                "the node was removed before the job finished",
                None,
            )
            .await;
        }
        self.recovered().retain(|_, n| n != node_id);
    }

    /// What a node's `Hello` says about its jobs (`node_id` from its certificate): results in
    /// `finished` are applied like live results; jobs in `running` stay running (or, if a
    /// controller restart marked them interrupted, run again with their timeout restarted for
    /// the time left); the node's other running jobs are marked interrupted, except those sent
    /// on the session that is current now (the agent said hello before it got them).
    pub async fn reconcile(
        self: &Arc<Self>,
        node_id: &str,
        running: Vec<String>,
        finished: Vec<JobEvent>,
    ) -> Reconciled {
        let mut done = Reconciled::default();
        let mut reported: HashSet<String> = running.iter().cloned().collect();
        for ev in finished {
            reported.insert(ev.job_id.clone());
            if let Some(job_event::Event::Result(r)) = ev.event
                && self.result(node_id, &ev.job_id, r).await
            {
                done.results += 1;
            }
        }
        let current = self.registry.get(node_id).map(|s| s.generation);
        for id in &running {
            if !self.is_live(id) && self.resume(node_id, id, current.unwrap_or(0)).await {
                done.resumed += 1;
            }
        }
        let unknown: Vec<String> = self
            .live()
            .iter()
            .filter(|(id, l)| {
                l.job.node_id == node_id && !reported.contains(*id) && Some(l.sent_on) != current
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in unknown {
            self.finish(&id, JobState::Interrupted, UNKNOWN_TO_AGENT, None)
                .await;
            done.interrupted += 1;
        }
        // What the node did not report is not running there: it stays interrupted.
        self.recovered().retain(|_, n| n != node_id);
        if done != Reconciled::default() {
            tracing::info!(node = %node_id, results = done.results, resumed = done.resumed,
                interrupted = done.interrupted, "jobs reconciled with the agent's report");
        }
        done
    }

    /// Takes a job `recover` marked interrupted out of the eligible set if it belongs to
    /// `node_id`, and returns its stored record if it is still interrupted.
    /// A job a controller restart marked interrupted whose node has not reported since: its
    /// outcome is not known yet (a workflow waits for the node rather than run it again).
    pub fn awaiting_node(&self, id: &str) -> bool {
        self.recovered().contains_key(id)
    }

    fn claim_recovered(&self, node_id: &str, id: &str) -> Option<JobRecord> {
        {
            let mut r = self.recovered();
            match r.get(id) {
                Some(n) if n == node_id => {
                    r.remove(id);
                }
                _ => return None,
            }
        }
        match self.store.job(id) {
            Ok(Some(mut j)) if j.node_id == node_id && j.state() == JobState::Interrupted => {
                self.count_stored_log(&mut j);
                Some(j)
            }
            Ok(_) => None,
            Err(e) => {
                tracing::error!(job = id, error = %e, "cannot read the job to take it up again");
                None
            }
        }
    }

    /// Sets a job's log counters from its stored lines (the record is written with them only
    /// at the job's end, so a crash leaves them behind): new lines number on from the last.
    fn count_stored_log(&self, job: &mut JobRecord) {
        const PAGE: usize = 1000;
        let (mut lines, mut bytes, mut last) = (0u64, 0u64, String::new());
        loop {
            let page = match self.store.job_logs_after(&job.id, lines, PAGE) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(job = %job.id, error = %e, "cannot read the job's log lines");
                    break;
                }
            };
            let n = page.len();
            for (seq, text) in page {
                lines = lines.max(seq);
                bytes += text.len() as u64;
                last = text;
            }
            if n < PAGE || lines >= self.limits.max_lines {
                break;
            }
        }
        job.log_lines = job.log_lines.max(lines);
        job.log_bytes = job.log_bytes.max(bytes);
        job.log_truncated |= last.starts_with("[log truncated");
    }

    /// A job a controller restart marked interrupted that its node still runs: live again.
    async fn resume(self: &Arc<Self>, node_id: &str, id: &str, generation: u64) -> bool {
        let Some(mut job) = self.claim_recovered(node_id, id) else {
            return false;
        };
        job.state = JobState::Running as i32;
        job.error.clear();
        job.finished_unix_ms = 0;
        job.duration_ms = 0;
        let persisted = self.store.put_job(job.clone(), Vec::new(), None);
        let timeout = Duration::from_millis(u64::from(job.timeout_ms));
        let deadline = job.created_unix_ms + (timeout + TIMEOUT_GRACE).as_millis() as u64;
        let left = Duration::from_millis(deadline.saturating_sub(now_ms())).max(TIMEOUT_GRACE);
        let (done, _) = watch::channel(None);
        let (logs, _) = broadcast::channel(64);
        self.live().insert(
            id.to_string(),
            Live {
                finishing: false,
                job,
                sent_on: generation,
                resumed: true,
                done,
                logs,
                pending: Vec::new(),
            },
        );
        self.arm_timeout(node_id, id, timeout, left);
        if let Err(e) = persisted.await {
            tracing::error!(job = id, error = %e, "cannot record the job as running again");
        }
        tracing::info!(
            job = id,
            node = node_id,
            "job still running on its node after a controller restart"
        );
        true
    }

    /// The result of a job a controller restart marked interrupted, from its own node.
    async fn reobserve(&self, node_id: &str, id: &str, r: JobResult) -> bool {
        let Some(mut job) = self.claim_recovered(node_id, id) else {
            return false;
        };
        let state = if r.success {
            JobState::Succeeded
        } else {
            JobState::Failed
        };
        let mut output = r.output;
        // No caller waits for it any more: the content is dropped.
        let _ = strip_secrets(&mut output);
        job.state = state as i32;
        job.error = if r.success {
            String::new()
        } else {
            let e: String = r.error.chars().take(4096).collect();
            format!("{e} {REOBSERVED_NOTE}")
        };
        job.exit_code = r.exit_code;
        job.output = output;
        job.finished_unix_ms = now_ms();
        job.duration_ms = job.finished_unix_ms.saturating_sub(job.created_unix_ms);
        if let Err(e) = self.store.put_job(job.clone(), Vec::new(), None).await {
            tracing::error!(job = id, error = %e, "cannot persist job result");
            return false;
        }
        tracing::info!(
            job = id,
            node = node_id,
            state = state.label(),
            "job result re-observed after a controller restart"
        );
        let _ = self.ended.send(JobEnded {
            job_id: job.id,
            node_id: job.node_id,
            workflow_id: job.workflow_id,
            state,
        });
        true
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

    /// A job record: the live view while running, else the stored one.
    pub fn get(&self, id: &str) -> Result<Option<Job>, JobError> {
        if let Some(j) = self.live().get(id).map(|l| l.job.clone()) {
            return Ok(Some(records::job(j)));
        }
        Ok(self.store.job(id)?.map(records::job))
    }

    /// A job by id or by a prefix of its id that no other job's id starts with.
    pub fn find(&self, r: &str) -> Result<Job, JobError> {
        let r = r.trim();
        if let Some(j) = self.get(r)? {
            return Ok(j);
        }
        // A few are enough to say a prefix is ambiguous; with a suffix (`01a2507b…47b5`), the
        // jobs of the prefix's minute are looked through.
        let (head, tail) = crate::ids::parts(r);
        let max = if tail.is_empty() { 5 } else { 100_000 };
        let mut ids = self.store.job_ids_with_prefix(head, max)?;
        ids.extend(self.live().keys().filter(|k| k.starts_with(head)).cloned());
        match crate::ids::unique_prefix(ids.iter().map(String::as_str), r) {
            Ok(Some(id)) => self.get(&id)?.ok_or(JobError::NotFound(id)),
            Ok(None) => Err(JobError::NotFound(r.chars().take(64).collect())),
            Err(ids) => Err(JobError::Ambiguous(r.into(), ids.join(", "))),
        }
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
}
