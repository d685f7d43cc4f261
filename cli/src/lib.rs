//! The `clustermgr` operator command line: the commands that talk to the controller's operator
//! API over gRPC (like any integration would), their rendering, and the local sandbox. It needs
//! neither the controller's store nor its domain: the commands that do (`init`, `serve`, the
//! offline `ca` and `operator recover`, `console oidc`) are the controller crate's, whose
//! `main.rs` builds one command line from both.
//!
//! Layout: `args/` holds the argument types; each command group has a module with a `run`
//! function taking its argument enum and the [`Ctx`]; records are printed through
//! `output::render`, so `--output table|json` is handled in one place. `sandbox/` starts and
//! stops a local cluster and returns what it found; `sandbox_cmd.rs` renders it. To add a
//! command group: a variant in [`RemoteCmd`] with its enum in `args/`, a module here with
//! `run`, and one arm in [`run`]. No module imports one that imports it back.

pub mod agent;
pub mod args;
pub mod audit;
pub mod backup;
pub mod ca;
pub mod cache;
pub mod certs;
pub mod client;
pub mod cluster;
pub mod context;
pub mod fsrep;
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
pub mod records;
pub mod sandbox;
pub mod sandbox_cmd;
pub mod schema;
pub mod status;
pub mod table;
pub mod token;
pub mod view;
pub mod workflow;

pub use args::{Global, Output, RemoteCmd};
pub use context::{Ctx, Exit};

use anyhow::Result;
use args::HostsCmd;

/// Carries out one of the remote commands.
pub async fn run(cmd: RemoteCmd, ctx: &Ctx) -> Result<Exit> {
    Ok(match cmd {
        RemoteCmd::Token(cmd) => token::run(cmd, ctx).await?,
        RemoteCmd::Node(cmd) => node::run(cmd, ctx).await?,
        RemoteCmd::Job(cmd) => job::run(cmd, ctx).await?,
        RemoteCmd::Cluster(cmd) => cluster::run_cluster(cmd, ctx).await?,
        RemoteCmd::Server(cmd) => cluster::run_server(cmd, ctx).await?,
        RemoteCmd::Gluu(cmd) => workflow::run_gluu(cmd, ctx).await?,
        RemoteCmd::Workflow(cmd) => workflow::run_workflow(cmd, ctx).await?,
        RemoteCmd::Replication(cmd) => workflow::run_replication(cmd, ctx).await?,
        RemoteCmd::Hosts(HostsCmd::Apply { start }) => workflow::run_hosts(start, ctx).await?,
        RemoteCmd::Cache(cmd) => cache::run(cmd, ctx).await?,
        RemoteCmd::Lb(cmd) => lb::run(cmd, ctx).await?,
        RemoteCmd::Cert(cmd) => certs::run(cmd, ctx).await?,
        RemoteCmd::Fsrep(cmd) => fsrep::run(cmd, ctx).await?,
        RemoteCmd::Keys(cmd) => keys::run(cmd, ctx).await?,
        RemoteCmd::Schema(cmd) => schema::run(cmd, ctx).await?,
        RemoteCmd::Backup(args) => backup::run(args, ctx).await?,
        RemoteCmd::Audit { limit } => audit::run(limit, ctx).await?,
        RemoteCmd::Whoami => misc::whoami(ctx).await?,
        RemoteCmd::Sandbox(cmd) => sandbox_cmd::run(cmd, ctx).await?,
        RemoteCmd::Package(cmd) => package::run(cmd, ctx).await?,
        RemoteCmd::Agent(cmd) => agent::run(cmd, ctx).await?,
        RemoteCmd::Logs(args) => logs::run(args, ctx).await?,
        RemoteCmd::Status { events } => status::run(events, ctx).await?,
        RemoteCmd::Metrics {
            node,
            since,
            metric,
        } => metrics::query(node, since, metric, ctx).await?,
        RemoteCmd::Top { once, interval } => metrics::top(once, &interval, ctx).await?,
    })
}
