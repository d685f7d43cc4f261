//! The commands that need the controller's data directory, store or domain on its own host:
//! `init`, `serve`, `ca renew-server` (which falls back to the data directory when the
//! controller is down), `operator recover`, `console oidc`, and the documentation generated from
//! the whole command line (`completions`, `man`). The operator commands that talk gRPC are the
//! CLI crate's (`clustermgr_cli`); [`Cli`] puts both into one command line, each command in its
//! place in `--help` (`display_order`).

pub mod ca;
pub mod console;
pub mod daemon;
pub mod docs;
pub mod init;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use clustermgr_cli::{Ctx, Global, RemoteCmd};
use std::path::PathBuf;

pub use ca::{CaCmd, OperatorCmd};
pub use console::ConsoleCmd;

#[derive(Parser)]
#[command(
    name = "clustermgr",
    version,
    about = "Cluster manager for Gluu Server: controller daemon and operator CLI",
    long_about = "clustermgr turns a handful of machines into a highly available Gluu Server cluster. \
                  The controller holds cluster state and is the certificate authority; an agent on \
                  every node dials it over mutual TLS and carries out typed operations."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Every command: the local ones and the CLI crate's.
#[derive(Subcommand)]
pub enum Cmd {
    #[command(flatten)]
    Local(LocalCmd),
    #[command(flatten)]
    Remote(RemoteCmd),
}

#[derive(Subcommand)]
pub enum LocalCmd {
    /// Create the data directory, the cluster CA, the server certificate and the admin credential.
    /// Prints the CA pin on stdout.
    #[command(display_order = 0)]
    Init(InitCmd),
    /// Run the controller daemon.
    #[command(display_order = 1)]
    Serve(ServeCmd),
    /// The cluster CA.
    #[command(display_order = 2, subcommand)]
    Ca(CaCmd),
    /// Operator credentials.
    #[command(display_order = 6, subcommand)]
    Operator(OperatorCmd),
    /// The web console's settings kept in the data directory (OpenID Connect sign-in).
    #[command(display_order = 22, subcommand)]
    Console(ConsoleCmd),
    /// Print shell completions.
    #[command(display_order = 29)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (one per command) into a directory, or the main page to stdout.
    #[command(display_order = 30)]
    Man {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct InitCmd {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:7443")]
    pub listen: String,
    /// Address clients and agents dial (default: the listen address, or 127.0.0.1 when listening on all).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Extra DNS name or IP address for the server certificate (repeatable).
    #[arg(long = "san")]
    pub sans: Vec<String>,
    /// Start over in an initialised directory (discards the CA and all identities).
    #[arg(long)]
    pub force: bool,
}

#[derive(Args)]
pub struct ServeCmd {
    /// Listen address (default: from controller.toml).
    #[arg(long)]
    pub listen: Option<String>,
    /// New nodes wait as pending until `clustermgr node approve`.
    #[arg(long)]
    pub require_approval: bool,
    /// Lifetime of node certificates (default 30d).
    #[arg(long)]
    pub node_cert_ttl: Option<String>,
    /// Agent heartbeat interval (default 5s); a node is offline after three missed.
    #[arg(long)]
    pub heartbeat_interval: Option<String>,
    /// How long metrics are kept: raw samples, then each downsampling interval
    /// (default raw=48h,5m=30d,1h=365d).
    #[arg(long)]
    pub metrics_retention: Option<String>,
    /// What one node's metrics may take (default
    /// rate=100,burst=30000,series=1024,skew=5m,batch=240,points=512): points stored per second
    /// and at once, series, how far ahead of this clock a sample may be dated, samples per
    /// batch, points per sample. The rest is refused and counted (`top --output json`).
    #[arg(long)]
    pub metrics_limits: Option<String>,
    /// Serve every node's metrics in Prometheus' text format at https://ADDR/metrics (off by
    /// default): HTTPS only, for clients with an operator credential of this cluster.
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// Serve the web console at https://ADDR/ (off by default): the listener's certificate, no
    /// client certificate; local users with the API's roles. Before the first user exists the
    /// first admin is created at /setup with the code in DATA/web-setup-code.
    #[arg(long)]
    pub web_listen: Option<String>,
    /// Refuse agents older than this version at session start (MAJOR.MINOR.PATCH; default:
    /// min_agent_version in controller.toml, else any). Refused nodes show as `refused` in
    /// `node list`, with a `session.refused` audit row; their agents log why and keep trying.
    #[arg(long)]
    pub min_agent_version: Option<String>,
}

/// Carries out a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    let ctx = Ctx::new(&cli.global);
    let exit = match cli.cmd {
        Cmd::Remote(cmd) => clustermgr_cli::run(cmd, &ctx).await?,
        Cmd::Local(LocalCmd::Init(cmd)) => daemon::init(cmd, &ctx).await?,
        Cmd::Local(LocalCmd::Serve(cmd)) => daemon::serve(cmd, &ctx).await?,
        Cmd::Local(LocalCmd::Ca(cmd)) => ca::run(cmd, &ctx).await?,
        Cmd::Local(LocalCmd::Operator(cmd)) => ca::run_operator(cmd, &ctx).await?,
        Cmd::Local(LocalCmd::Console(cmd)) => console::run(cmd, &ctx).await?,
        Cmd::Local(LocalCmd::Completions { shell }) => docs::completions(shell)?,
        Cmd::Local(LocalCmd::Man { dir }) => docs::man(dir)?,
    };
    Ok(exit.code())
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    fn names(cmd: &clap::Command) -> Vec<String> {
        let mut subs: Vec<&clap::Command> = cmd.get_subcommands().collect();
        subs.sort_by_key(|c| (c.get_display_order(), c.get_name().to_string()));
        subs.iter().map(|c| c.get_name().to_string()).collect()
    }

    /// The local commands and the CLI crate's make one valid command line, listed in `--help`
    /// in the order it always had: the local commands in their places among the remote ones
    /// (whose own order the CLI crate's test holds).
    #[test]
    fn one_command_line_in_its_order() {
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let all = names(&cmd);
        let at = |name: &str| {
            all.iter()
                .position(|n| n == name)
                .unwrap_or_else(|| panic!("no {name} in {all:?}"))
        };
        assert_eq!(all[..4], ["init", "serve", "ca", "token"]);
        assert_eq!(at("operator"), at("job") + 1, "{all:?}");
        assert_eq!(at("console"), at("sandbox") + 1, "{all:?}");
        assert_eq!(all[all.len() - 2..], ["completions", "man"]);
        let sub = |name: &str| {
            cmd.find_subcommand(name)
                .map(names)
                .unwrap_or_else(|| panic!("no {name}"))
        };
        assert_eq!(sub("ca"), ["pin", "status", "renew-server", "rotate"]);
        assert_eq!(
            sub("operator"),
            ["create", "list", "remove", "renew", "recover"]
        );
    }
}
