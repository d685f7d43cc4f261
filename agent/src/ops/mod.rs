//! Typed operations. Each operation kind is one function; the commands an operation runs (none
//! yet) are fixed here, with argv built in code and exit codes checked.

pub mod files;
pub mod ids;

use crate::facts::{self, HostView};
use clustermgr_proto::{
    JobResult, Operation, OperationOutput, PingOutput, operation, operation_output,
};
use clustermgr_shared::util::now_ms;
use std::path::PathBuf;
use tokio::sync::mpsc;

/// What operations may touch on this host.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub view: HostView,
    pub managed: Vec<String>,
}

impl Ctx {
    pub fn root(&self) -> &PathBuf {
        &self.view.root
    }
}

/// Sends numbered log lines for one job.
pub struct Log {
    seq: u64,
    tx: mpsc::UnboundedSender<(u64, String)>,
}

impl Log {
    pub fn new(tx: mpsc::UnboundedSender<(u64, String)>) -> Self {
        Self { seq: 0, tx }
    }
    pub fn line(&mut self, s: impl Into<String>) {
        self.seq += 1;
        let _ = self.tx.send((self.seq, s.into()));
    }
}

/// Operation failure: a message for the job record (never holds file contents or secrets).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OpError(pub String);

impl From<clustermgr_shared::paths::PathError> for OpError {
    fn from(e: clustermgr_shared::paths::PathError) -> Self {
        OpError(e.to_string())
    }
}

pub async fn run(ctx: &Ctx, op: Operation, log: &mut Log) -> JobResult {
    let out = match op.kind {
        Some(operation::Kind::Ping(p)) => {
            log.line("pong");
            Ok(operation_output::Kind::Ping(PingOutput {
                payload: p.payload,
                agent_unix_ms: now_ms(),
            }))
        }
        Some(operation::Kind::CollectFacts(_)) => {
            let inv = facts::inventory(&ctx.view);
            log.line(format!(
                "collected facts: {} {} {}",
                inv.hostname, inv.os_id, inv.os_version
            ));
            Ok(operation_output::Kind::Facts(inv))
        }
        Some(operation::Kind::ReadFile(r)) => files::read(ctx, &r.path, log)
            .await
            .map(operation_output::Kind::ReadFile),
        Some(operation::Kind::WriteFile(w)) => files::write(ctx, w, log)
            .await
            .map(operation_output::Kind::WriteFile),
        None => Err(OpError(
            "this agent does not know the requested operation kind (upgrade the agent?)".into(),
        )),
    };
    match out {
        Ok(kind) => JobResult {
            success: true,
            exit_code: 0,
            error: String::new(),
            output: Some(OperationOutput { kind: Some(kind) }),
        },
        Err(e) => {
            log.line(format!("error: {e}"));
            JobResult {
                success: false,
                exit_code: 0,
                error: e.0,
                output: None,
            }
        }
    }
}
