//! The `clustermgr` command line: the daemon (`init`, `serve`), the operator commands (talking
//! to the operator API like any integration would) and the local sandbox.
//!
//! Layout: `args.rs` holds the argument types; each command group has a module with a `run`
//! function taking its argument enum and the [`Ctx`]; records are printed through
//! `output::render`, so `--output table|json` is handled in one place. To add a command group:
//! a variant in `args::Cmd` with its enum, a module here with `run`, and one arm in [`run`].

pub mod agent;
pub mod args;
pub mod audit;
pub mod ca;
pub mod cache;
pub mod certs;
pub mod client;
pub mod cluster;
pub mod console;
pub mod daemon;
pub mod fsrep;
pub mod init;
pub mod job;
pub mod keys;
pub mod lb;
pub mod logs;
pub mod metrics;
pub mod misc;
pub mod node;
pub mod operator;
pub mod output;
pub mod package;
pub mod sandbox;
pub mod schema;
pub mod status;
pub mod table;
pub mod token;
pub mod workflow;

pub use args::*;

use crate::config::DataDir;
use anyhow::Result;
use client::{Client, Target, connect};

/// How a command that did not fail ends: the process exit code. Errors exit with 2 (bad input,
/// refused, unreachable), see `main.rs`.
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

/// What every command gets besides its own arguments: the global flags, resolved.
pub struct Ctx {
    pub data: DataDir,
    pub target: Target,
    pub output: Output,
}

impl Ctx {
    pub fn new(cli: &Cli) -> Self {
        Self {
            data: DataDir::new(&cli.data_dir),
            target: cli.target(),
            output: cli.output,
        }
    }

    /// A connection to the controller with the operator credential.
    pub async fn client(&self) -> Result<Client> {
        connect(&self.target).await
    }
}

impl Cli {
    pub fn target(&self) -> Target {
        Target {
            bundle_path: self
                .config
                .clone()
                .unwrap_or_else(|| DataDir::new(&self.data_dir).admin_bundle()),
            controller: self.controller.clone(),
        }
    }
}

/// Carries out a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    let ctx = Ctx::new(&cli);
    let exit = match cli.cmd {
        Cmd::Init(cmd) => daemon::init(cmd, &ctx).await?,
        Cmd::Serve(cmd) => daemon::serve(cmd, &ctx).await?,
        Cmd::Ca(cmd) => {
            ca::run(cmd, &ctx.data, &ctx.target, ctx.output).await?;
            Exit::Ok
        }
        Cmd::Token(cmd) => token::run(cmd, &ctx).await?,
        Cmd::Node(cmd) => node::run(cmd, &ctx).await?,
        Cmd::Job(cmd) => job::run(cmd, &ctx).await?,
        Cmd::Operator(cmd) => operator::run(cmd, &ctx).await?,
        Cmd::Cluster(cmd) => cluster::run_cluster(cmd, &ctx).await?,
        Cmd::Server(cmd) => cluster::run_server(cmd, &ctx).await?,
        Cmd::Gluu(cmd) => workflow::run_gluu(cmd, &ctx).await?,
        Cmd::Workflow(cmd) => workflow::run_workflow(cmd, &ctx).await?,
        Cmd::Replication(cmd) => workflow::run_replication(cmd, &ctx).await?,
        Cmd::Hosts(HostsCmd::Apply { start }) => workflow::run_hosts(start, &ctx).await?,
        Cmd::Cache(cmd) => cache::run(cmd, &ctx).await?,
        Cmd::Lb(cmd) => lb::run(cmd, &ctx).await?,
        Cmd::Cert(cmd) => certs::run(cmd, &ctx).await?,
        Cmd::Fsrep(cmd) => fsrep::run(cmd, &ctx).await?,
        Cmd::Keys(cmd) => keys::run(cmd, &ctx).await?,
        Cmd::Schema(cmd) => schema::run(cmd, &ctx).await?,
        Cmd::Audit { limit } => audit::run(limit, &ctx).await?,
        Cmd::Whoami => misc::whoami(&ctx).await?,
        Cmd::Sandbox(cmd) => sandbox::run(cmd, &ctx).await?,
        Cmd::Console(cmd) => console::run(cmd, &ctx).await?,
        Cmd::Package(cmd) => package::run(cmd, &ctx).await?,
        Cmd::Agent(cmd) => agent::run(cmd, &ctx).await?,
        Cmd::Logs(args) => logs::run(args, &ctx).await?,
        Cmd::Status { events } => status::run(events, &ctx).await?,
        Cmd::Metrics {
            node,
            since,
            metric,
        } => metrics::query(node, since, metric, &ctx).await?,
        Cmd::Top { once, interval } => metrics::top(once, &interval, &ctx).await?,
        Cmd::Completions { shell } => misc::completions(shell)?,
        Cmd::Man { dir } => misc::man(dir)?,
    };
    Ok(exit.code())
}
