//! Arguments of the day-2 commands: agent upgrades, oxAuth keys, custom schema.

use super::StartArgs;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum AgentCmd {
    /// Upgrade the nodes' agents to a clustermgr-agent .deb, one node at a time: the package is
    /// added to the repository and pushed to the nodes, then each node installs it (keeping
    /// its installed package) and the next starts only once the node's new agent is online
    /// with the new version. A node whose new agent does not come online within --timeout gets
    /// its previous package back and the roll stops (the workflow fails naming the node).
    Upgrade {
        /// The clustermgr-agent .deb file.
        #[arg(long)]
        package: std::path::PathBuf,
        /// Node ids or hostnames, upgraded in this order.
        #[arg(long = "nodes", num_args = 1.., required_unless_present = "all")]
        nodes: Vec<String>,
        /// Every approved node, by hostname.
        #[arg(long, conflicts_with = "nodes")]
        all: bool,
        /// How long each node's new agent has to come online.
        #[arg(long, default_value = "2m")]
        timeout: String,
        #[command(flatten)]
        start: StartArgs,
    },
}

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Rotation settings: the schedule, the backup of the previous keys, the overlap.
    Configure {
        /// Rotate every DURATION (e.g. 48h) when enabled.
        #[arg(long, value_name = "DURATION")]
        interval: Option<String>,
        /// Rotate on the interval.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Rotate only on `keys rotate`.
        #[arg(long)]
        disable: bool,
        /// Keep the previous oxAuthConfWebKeys as JSON in the controller's data directory.
        #[arg(long, conflicts_with = "no_backup")]
        backup: bool,
        #[arg(long)]
        no_backup: bool,
        /// How long the old keys stay published after signing moved to the new ones: at least
        /// the longest token lifetime (default 24h).
        #[arg(long, value_name = "DURATION")]
        overlap: Option<String>,
    },
    /// Rotate now: publish new keys beside the current ones on every node, switch signing once
    /// every node serves them, retire the old ones after the overlap.
    Rotate {
        #[command(flatten)]
        start: StartArgs,
    },
    /// Current and upcoming keys per algorithm, what each node serves, the next rotation.
    Status,
}

#[derive(Subcommand)]
pub enum SchemaCmd {
    /// Add custom attribute types and object classes to every Gluu node's directory: the file
    /// (OpenLDAP .schema, or .ldif: OpenDJ's cn=schema or OpenLDAP's cn=config form) is
    /// validated first, checked by every node's directory, then installed one node at a time
    /// with a restart of the directory, then verified (the new attribute types are usable).
    /// Adding a schema of the same name again replaces it.
    Add {
        /// The schema file (.schema or .ldif).
        file: std::path::PathBuf,
        /// The schema's name (default: the file's name without its extension).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        start: StartArgs,
    },
    /// The custom schema added so far, with their attribute types and object classes.
    List,
}

/// `clustermgr backup`: with no subcommand, a backup now.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub cmd: Option<BackupCmd>,
    /// The server to back up (default: every installed Gluu server).
    #[arg(long)]
    pub node: Option<String>,
    /// Backups kept per node, this one included; older ones are deleted (fewer than 7 needs
    /// an admin).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub keep: u32,
    #[command(flatten)]
    pub start: StartArgs,
}

#[derive(Subcommand)]
pub enum BackupCmd {
    /// The backups the controller holds, newest first.
    List {
        /// Only this node's (an id or hostname).
        #[arg(long)]
        node: Option<String>,
    },
    /// Restore a backup onto a server (admin): the node is drained from the load balancer,
    /// its directory stopped and replaced by the backup's (with its Gluu configuration), Gluu
    /// started, the directory verified by a search, the node put back in rotation.
    Restore {
        /// The backup's id (`backup list`).
        id: String,
        /// The server restored.
        #[arg(long)]
        node: String,
        #[command(flatten)]
        start: StartArgs,
    },
}
