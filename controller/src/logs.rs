//! Log search across the nodes: one `search-logs` job per node, whose matches come back over
//! the node's own connection (`AgentSession/SendLogMatches`) straight to the operator's call.
//! Nothing of the logs is stored: the jobs' records hold counts only, and the pattern is kept out
//! of summaries and audit rows (an operator may search for a secret).

use crate::audit::Audit;
use crate::ctl::Ctl;
use crate::error::{Classify, Kind};
use crate::jobs::{JobError, JobSpec};
use crate::nodes::NodeError;
use clustermgr_proto::{
    LogEntry, LogMatch, LogNodeDone, LogSearchEvent, LogType, NodeRecord, Operation,
    OperationOutput, SearchLogs, SearchLogsRequest, log_search_event, operation, operation_output,
};
use clustermgr_shared::util::now_ms;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;

/// Lines per node when the caller does not say.
pub const DEFAULT_LIMIT: u32 = 1000;
/// Most lines per node.
pub const MAX_LIMIT: u32 = 10_000;
/// A search without follow must finish within this.
const SEARCH_TIMEOUT: Duration = Duration::from_secs(300);
/// A follow ends by itself after this (the operator can start another).
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Same bounds as the agent's: a pattern that needs more is refused before any node is asked.
/// Longest pattern accepted.
const MAX_PATTERN: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("invalid --grep pattern: {0}")]
    BadPattern(String),
    #[error("unknown log type {0}")]
    BadType(i32),
    #[error("no node to search: {0}")]
    NoNodes(&'static str),
    #[error("job {0} is not a running log search of this node")]
    NotYourJob(String),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Job(#[from] JobError),
}

impl Classify for LogError {
    fn kind(&self) -> Kind {
        match self {
            Self::BadPattern(_) | Self::BadType(_) => Kind::InvalidArgument,
            Self::NoNodes(_) => Kind::FailedPrecondition,
            Self::NotYourJob(_) => Kind::PermissionDenied,
            Self::Node(e) => e.kind(),
            Self::Job(e) => e.kind(),
        }
    }
}

/// The searches waiting for their nodes' matches, by job id.
#[derive(Default)]
pub struct Broker {
    waiting: Mutex<HashMap<String, mpsc::Sender<Vec<LogMatch>>>>,
}

impl Broker {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, mpsc::Sender<Vec<LogMatch>>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, job_id: &str) -> mpsc::Receiver<Vec<LogMatch>> {
        let (tx, rx) = mpsc::channel(8);
        self.lock().insert(job_id.to_string(), tx);
        rx
    }

    fn unregister(&self, job_id: &str) {
        self.lock().remove(job_id);
    }

    /// Where the matches of `job_id` go, for the node `node_id` only, while its search-logs job
    /// runs and someone waits for them.
    pub fn accept(
        &self,
        ctl: &Ctl,
        node_id: &str,
        job_id: &str,
    ) -> Result<mpsc::Sender<Vec<LogMatch>>, LogError> {
        let not_yours = || LogError::NotYourJob(crate::audit::clean(job_id, 64));
        match ctl.jobs.running(job_id) {
            Some(j) if j.node_id == node_id && j.kind == "search-logs" => {}
            _ => return Err(not_yours()),
        }
        self.lock().get(job_id).cloned().ok_or_else(not_yours)
    }
}

/// A log type's name, as the API and the console write it.
pub fn type_name(t: LogType) -> &'static str {
    t.label()
}

/// Checks a pattern the way the agents will compile it.
pub fn check_pattern(grep: &str) -> Result<(), LogError> {
    if grep.len() > MAX_PATTERN {
        return Err(LogError::BadPattern(format!(
            "longer than {MAX_PATTERN} characters"
        )));
    }
    clustermgr_shared::logpattern::compile(grep)
        .map(|_| ())
        .map_err(|e| LogError::BadPattern(e.to_string()))
}

struct Target {
    node: NodeRecord,
    job_id: String,
}

fn done_event(node: &NodeRecord, out: Option<&OperationOutput>, error: String) -> LogSearchEvent {
    let o = match out.and_then(|o| o.kind.as_ref()) {
        Some(operation_output::Kind::SearchLogs(o)) => *o,
        _ => Default::default(),
    };
    LogSearchEvent {
        event: Some(log_search_event::Event::NodeDone(LogNodeDone {
            node_id: node.id.clone(),
            hostname: node.hostname.clone(),
            matched: o.matched,
            sent: o.sent,
            truncated: o.truncated,
            error,
        })),
    }
}

fn entry(node: &NodeRecord, m: LogMatch) -> LogSearchEvent {
    LogSearchEvent {
        event: Some(log_search_event::Event::Entry(LogEntry {
            node_id: node.id.clone(),
            hostname: node.hostname.clone(),
            r#type: m.r#type,
            file: m.file,
            unix_ms: m.unix_ms,
            line: m.line,
        })),
    }
}

/// One node's search job: where it runs, its matches as they come, its end.
type Running = (
    Target,
    mpsc::Receiver<Vec<LogMatch>>,
    tokio::sync::watch::Receiver<Option<crate::jobs::Finished>>,
);

/// Starts the search; its events arrive on the returned channel, which closes when every node
/// is done (or, with follow, when the caller drops it).
pub async fn search(
    ctl: Arc<Ctl>,
    broker: Arc<Broker>,
    who: &str,
    req: SearchLogsRequest,
) -> Result<mpsc::Receiver<LogSearchEvent>, LogError> {
    let nodes = searched_nodes(&ctl, &req)?;
    let limit = match req.limit {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    };
    let since_unix_ms = if req.since_ms > 0 {
        now_ms().saturating_sub(req.since_ms)
    } else {
        0
    };
    let (tx, rx) = mpsc::channel(256);
    let mut running: Vec<Running> = Vec::new();
    let mut early = Vec::new();
    for node in nodes {
        if ctl.registry.get(&node.id).is_none() {
            early.push(done_event(&node, None, "the node is not connected".into()));
            continue;
        }
        let job_id = uuid::Uuid::now_v7().to_string();
        let matches = broker.register(&job_id);
        let op = Operation {
            kind: Some(operation::Kind::SearchLogs(SearchLogs {
                types: req.types.clone(),
                grep: req.grep.clone(),
                since_unix_ms,
                follow: req.follow,
                limit,
                job_id: job_id.clone(),
            })),
        };
        let timeout = if req.follow {
            FOLLOW_TIMEOUT
        } else {
            SEARCH_TIMEOUT
        };
        let mut spec = JobSpec::new(op, timeout, who.to_string());
        spec.id = Some(job_id.clone());
        let audit = Audit::new(who, "logs.search", node.hostname.clone());
        match ctl.jobs.submit(&node, spec, &audit).await {
            Ok((_, done)) => running.push((Target { node, job_id }, matches, done)),
            Err(e) => {
                broker.unregister(&job_id);
                early.push(done_event(&node, None, e.to_string()));
            }
        }
    }
    tokio::spawn(forward(tx, broker, running, early, req.follow));
    Ok(rx)
}

/// The request checked, and the nodes it searches (every approved node when it names none).
fn searched_nodes(ctl: &Ctl, req: &SearchLogsRequest) -> Result<Vec<NodeRecord>, LogError> {
    check_pattern(&req.grep)?;
    for t in &req.types {
        match LogType::try_from(*t) {
            Ok(LogType::Unspecified) | Err(_) => return Err(LogError::BadType(*t)),
            Ok(_) => {}
        }
    }
    let nodes: Vec<NodeRecord> = if req.nodes.is_empty() {
        ctl.store
            .nodes()
            .map_err(NodeError::from)?
            .into_iter()
            .filter(|n| n.approved)
            .collect()
    } else {
        req.nodes
            .iter()
            .map(|r| crate::nodes::find(ctl, r))
            .collect::<Result<_, _>>()?
    };
    if nodes.is_empty() {
        return Err(LogError::NoNodes("no approved node is enrolled"));
    }
    Ok(nodes)
}

/// Passes the nodes' matches on (without follow, merged by time once every node is done), then
/// each node's end: the early ones (nodes not searched) first.
async fn forward(
    tx: mpsc::Sender<LogSearchEvent>,
    broker: Arc<Broker>,
    running: Vec<Running>,
    early: Vec<LogSearchEvent>,
    follow: bool,
) {
    let mut per_node = Vec::new();
    for (target, matches, done) in running {
        let tx = tx.clone();
        let broker = broker.clone();
        per_node.push(tokio::spawn(async move {
            let r = collect(&tx, &target, matches, done, follow).await;
            broker.unregister(&target.job_id);
            r
        }));
    }
    let mut gathered: Vec<(Vec<(usize, LogSearchEvent)>, LogSearchEvent)> = Vec::new();
    for (i, h) in per_node.into_iter().enumerate() {
        if let Ok((lines, done)) = h.await {
            gathered.push((lines.into_iter().map(|l| (i, l)).collect(), done));
        }
    }
    if !follow {
        // Merged by time; a node's own order breaks ties.
        let mut all: Vec<(u64, usize, usize, LogSearchEvent)> = gathered
            .iter_mut()
            .flat_map(|(lines, _)| std::mem::take(lines))
            .enumerate()
            .map(|(seq, (node, ev))| {
                let t = match &ev.event {
                    Some(log_search_event::Event::Entry(e)) => e.unix_ms,
                    _ => 0,
                };
                (t, node, seq, ev)
            })
            .collect();
        all.sort_by_key(|(t, node, seq, _)| (*t, *node, *seq));
        for (_, _, _, ev) in all {
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    }
    for ev in early
        .into_iter()
        .chain(gathered.into_iter().map(|(_, d)| d))
    {
        if tx.send(ev).await.is_err() {
            return;
        }
    }
}

/// Gathers one node's matches until its job ends. With follow they are passed on as they come
/// (and nothing is returned); without, they are returned for the merge.
async fn collect(
    tx: &mpsc::Sender<LogSearchEvent>,
    target: &Target,
    mut matches: mpsc::Receiver<Vec<LogMatch>>,
    mut done: tokio::sync::watch::Receiver<Option<crate::jobs::Finished>>,
    follow: bool,
) -> (Vec<LogSearchEvent>, LogSearchEvent) {
    let mut lines = Vec::new();
    let take = |batch: Vec<LogMatch>, lines: &mut Vec<LogSearchEvent>| {
        lines.extend(batch.into_iter().map(|m| entry(&target.node, m)));
    };
    let finished = loop {
        if let Some(f) = done.borrow_and_update().clone() {
            break Some(f);
        }
        tokio::select! {
            Some(b) = matches.recv() => {
                take(b, &mut lines);
                if follow {
                    for ev in lines.drain(..) {
                        if tx.send(ev).await.is_err() {
                            // The caller went away: end the node's follow (its upload
                            // is refused from now on).
                            return (Vec::new(), done_event(&target.node, None, String::new()));
                        }
                    }
                }
            }
            changed = done.changed() => if changed.is_err() { break None },
            _ = tx.closed(), if follow => {
                return (Vec::new(), done_event(&target.node, None, String::new()));
            }
        }
    };
    // Every batch reached the broker before the node reported the job's end.
    while let Ok(b) = matches.try_recv() {
        take(b, &mut lines);
    }
    if follow {
        for ev in lines.drain(..) {
            let _ = tx.send(ev).await;
        }
    }
    let ev = match finished {
        Some(f) => {
            let error = if f.job.state == "succeeded" {
                String::new()
            } else if f.job.error.is_empty() {
                format!("the search ended {}", f.job.state)
            } else {
                f.job.error.clone()
            };
            done_event(&target.node, f.job.output.as_ref(), error)
        }
        None => done_event(&target.node, None, "the search was lost".into()),
    };
    (lines, ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_checked_before_any_node_is_asked() {
        assert!(check_pattern("ERROR|WARN").is_ok());
        assert!(check_pattern("").is_ok());
        let e = check_pattern("(unclosed").unwrap_err();
        assert_eq!(e.kind(), Kind::InvalidArgument);
        assert!(e.to_string().contains("invalid --grep pattern"), "{e}");
        assert!(check_pattern(&"a".repeat(MAX_PATTERN + 1)).is_err());
        assert!(check_pattern("\\w{1000}{1000}").is_err());
    }
}
