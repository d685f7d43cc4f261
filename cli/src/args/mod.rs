//! Argument types of the commands that talk to the controller (clap derive), one file per
//! command group; each group's enum is carried out by the module of the same name (`node.rs`
//! for [`NodeCmd`], ...). The `clustermgr` binary puts [`RemoteCmd`] and [`Global`] into one
//! command line with the controller's local commands (`init`, `serve`, ...), keeping each
//! command's place in `--help` with `display_order`.

mod ca;
mod day2;
mod fsrep;
mod gluu;
mod nodes;
mod services;

pub use ca::CaCmd;
pub use day2::{AgentCmd, BackupArgs, BackupCmd, KeysCmd, SchemaCmd};
pub use fsrep::{ActionCmd, FsrepCmd, ListCmd, PathCmd};
pub use gluu::{
    ClusterCmd, ConfigureArgs, GluuCmd, HostsCmd, ReplicationCmd, ServerCmd, WorkflowCmd,
};
pub use nodes::{JobCmd, NodeCmd, OperatorCmd, PackageCmd, RunOp, TokenCmd, parse_mode};
pub use services::{
    CacheCmd, CachePasswordCmd, CertCmd, LbCmd, LogKind, LogsArgs, OxauthBalancingArg, SandboxCmd,
};

use clap::{Args, Subcommand, ValueEnum};
use clustermgr_shared::datadir::default_data_dir;
use std::path::PathBuf;

/// The flags every command takes.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Controller data directory (CA, store, admin credential).
    #[arg(long, global = true, env = "CLUSTERMGR_DATA_DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// Operator credential file (default: DATA_DIR/admin.toml).
    #[arg(long, global = true, env = "CLUSTERMGR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Controller address HOST:PORT (default: the one in the credential).
    #[arg(long, global = true, env = "CLUSTERMGR_CONTROLLER")]
    pub controller: Option<String>,
    /// Output format for commands that print records.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Copy, Clone, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// The commands that talk to the controller (and the local sandbox, which starts one).
#[derive(Subcommand)]
pub enum RemoteCmd {
    /// Join tokens.
    #[command(display_order = 3, subcommand)]
    Token(TokenCmd),
    /// Nodes.
    #[command(display_order = 4, subcommand)]
    Node(NodeCmd),
    /// Jobs: typed operations on nodes.
    #[command(display_order = 5, subcommand)]
    Job(JobCmd),
    /// The Gluu cluster's settings.
    #[command(display_order = 7, subcommand)]
    Cluster(ClusterCmd),
    /// The nodes that make up the Gluu cluster.
    #[command(display_order = 8, subcommand)]
    Server(ServerCmd),
    /// Gluu Server on the cluster's nodes.
    #[command(display_order = 9, subcommand)]
    Gluu(GluuCmd),
    /// The cluster's hostnames in every node's /etc/hosts (with --manage-hosts).
    #[command(display_order = 10, subcommand)]
    Hosts(HostsCmd),
    /// The cluster's cache: Redis on the cache node(s) behind stunnel, stunnel clients on the
    /// Gluu nodes.
    #[command(display_order = 11, subcommand)]
    Cache(CacheCmd),
    /// The load balancer: nginx on the node of role lb (or what an external one must route).
    #[command(display_order = 12, subcommand)]
    Lb(LbCmd),
    /// The cluster's web certificate (Gluu's httpd certificate, served by every node and the
    /// load balancer).
    #[command(display_order = 13, subcommand)]
    Cert(CertCmd),
    /// LDAP multi-master replication between the Gluu nodes.
    #[command(display_order = 14, subcommand)]
    Replication(ReplicationCmd),
    /// File system replication between the Gluu servers (replaces csync2).
    #[command(display_order = 15, subcommand)]
    Fsrep(FsrepCmd),
    /// oxAuth's keys: rotation with an overlap window, now or on a schedule.
    #[command(display_order = 16, subcommand)]
    Keys(KeysCmd),
    /// Custom LDAP schema (attribute types, object classes) on every Gluu node's directory.
    #[command(display_order = 17, subcommand)]
    Schema(SchemaCmd),
    /// Online backups of the Gluu servers' directories and configuration, kept by the
    /// controller (sealed), and their restore.
    #[command(display_order = 17)]
    Backup(BackupArgs),
    /// Cluster-wide workflows (install, replication, ...): follow, cancel, retry.
    #[command(display_order = 18, subcommand)]
    Workflow(WorkflowCmd),
    /// Show the audit log.
    #[command(display_order = 19)]
    Audit {
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show who the current credential is.
    #[command(display_order = 20)]
    Whoami,
    /// A local sandbox cluster: a controller plus agents, each "host" on its own loopback address.
    #[command(display_order = 21, subcommand)]
    Sandbox(SandboxCmd),
    /// The package repository (.deb/.rpm files) and the offline push to nodes.
    #[command(display_order = 23, subcommand)]
    Package(PackageCmd),
    /// The nodes' agents: rolling upgrades to a new clustermgr-agent package.
    // Its man pages are clustermgr-agents*.1: clustermgr-agent(1) is the agent's own, in the
    // agent's package.
    #[command(display_order = 24, subcommand, display_name = "clustermgr-agents")]
    Agent(AgentCmd),
    /// Search the nodes' logs (each node reads and filters its own files; matches are merged by
    /// time). Needs the operator role: logs may hold personal data.
    #[command(display_order = 25)]
    Logs(LogsArgs),
    /// The cluster overview: every node, its session, its services (checked by the agents on
    /// the cluster's LDAP check period) and the last change of each; then the latest events.
    #[command(display_order = 26)]
    Status {
        /// Latest service events shown (at most 1000).
        #[arg(long, default_value_t = 20)]
        events: u32,
    },
    /// One node's metrics over a period (raw samples, or averages once the period is longer
    /// than raw samples are kept).
    #[command(display_order = 27)]
    Metrics {
        /// Node id or hostname.
        node: String,
        /// The last period (default 1h), e.g. 15m, 6h, 7d.
        #[arg(long)]
        since: Option<String>,
        /// Only series whose name starts with this (cpu, load, memory, disk, network, process).
        #[arg(long)]
        metric: Option<String>,
    },
    /// Every node's latest metrics, redrawn until interrupted.
    #[command(display_order = 28)]
    Top {
        /// Print once and exit.
        #[arg(long)]
        once: bool,
        /// How often the view is redrawn.
        #[arg(long, default_value = "2s")]
        interval: String,
    },
}

/// How a command that starts a workflow behaves.
#[derive(Args, Clone, Copy)]
pub struct StartArgs {
    /// Print the plan (steps per node, what would be pushed, written and run); change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the workflow's id alone and return at once.
    #[arg(long)]
    pub detach: bool,
    /// Refuse (exit 2) instead of queueing when another workflow holds one of the nodes (the
    /// load balancer's and the hosts workflows never wait).
    #[arg(long)]
    pub no_wait: bool,
}

#[cfg(test)]
mod tests {
    use super::RemoteCmd;
    use clap::Subcommand;

    /// The remote commands, in the order `--help` lists them (the controller's binary puts its
    /// local commands between them by the same `display_order`).
    #[test]
    fn remote_commands_in_help_order() {
        let cmd = RemoteCmd::augment_subcommands(clap::Command::new("clustermgr"));
        let mut subs: Vec<&clap::Command> = cmd.get_subcommands().collect();
        subs.sort_by_key(|c| (c.get_display_order(), c.get_name().to_string()));
        let names: Vec<&str> = subs.iter().map(|c| c.get_name()).collect();
        assert_eq!(
            names,
            [
                "token",
                "node",
                "job",
                "cluster",
                "server",
                "gluu",
                "hosts",
                "cache",
                "lb",
                "cert",
                "replication",
                "fsrep",
                "keys",
                "backup",
                "schema",
                "workflow",
                "audit",
                "whoami",
                "sandbox",
                "package",
                "agent",
                "logs",
                "status",
                "metrics",
                "top",
            ]
        );
    }
}
