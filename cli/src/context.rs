//! What every command gets besides its own arguments (the global flags, resolved) and how a
//! command ends.

use crate::args::{Global, Output};
use crate::client::{Client, Cluster, Target, cluster, connect};
use anyhow::Result;
use clustermgr_shared::datadir::DataDir;

/// How a command that did not fail ends: the process exit code. Errors exit with 2 (bad input,
/// refused, unreachable), see the binary's `main.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done.
    Ok,
    /// 1: the job ran and failed (or timed out); the workflow failed or was cancelled.
    JobFailed,
    /// 3: `sandbox status` found a process stopped or a node not online.
    SandboxDown,
}

impl Exit {
    pub fn code(self) -> i32 {
        match self {
            Exit::Ok => 0,
            Exit::JobFailed => 1,
            Exit::SandboxDown => 3,
        }
    }
}

/// The global flags, resolved.
pub struct Ctx {
    pub data: DataDir,
    pub target: Target,
    pub output: Output,
}

impl Ctx {
    pub fn new(global: &Global) -> Self {
        let data = DataDir::new(&global.data_dir);
        Self {
            target: Target {
                bundle_path: global.config.clone().unwrap_or_else(|| data.admin_bundle()),
                controller: global.controller.clone(),
            },
            data,
            output: global.output,
        }
    }

    /// A connection to the controller with the operator credential.
    pub async fn client(&self) -> Result<Client> {
        connect(&self.target).await
    }

    /// The controller's cluster service (servers, Gluu, workflows).
    pub async fn cluster(&self) -> Result<Cluster> {
        cluster(&self.target).await
    }
}
