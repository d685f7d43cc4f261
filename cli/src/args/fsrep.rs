//! Arguments of `clustermgr fsrep`.

use clap::Subcommand;

#[derive(Subcommand)]
pub enum FsrepCmd {
    /// Start replicating the configured paths between every Gluu server (`server list`).
    Enable,
    /// Stop replicating (files stay as they are on every node).
    Disable,
    /// Settings, nodes (connected, queued changes, paths behind), conflicts, latency.
    Status,
    /// The replicated directories (defaults: the csync2 set-up's list). System directories
    /// (/etc, /usr, /var/lib/clustermgr*, ...) are refused unless an admin adds them with --force.
    #[command(subcommand)]
    Paths(PathCmd),
    /// File name globs (`*~`, `.*`) or absolute path globs never replicated.
    Excludes {
        #[command(subcommand)]
        cmd: Option<ListCmd>,
    },
    /// Restart a Gluu service on a node when replication wrote a file matching a pattern.
    Actions {
        #[command(subcommand)]
        cmd: Option<ActionCmd>,
    },
    /// The per-file size limit (default 256MiB): show it, or set it. A larger file is not
    /// replicated and its node lists it in `fsrep status`.
    MaxFileSize {
        /// Bytes, or with a unit: K, M, G (also KiB, MiB, GiB: powers of 1024), KB, MB, GB
        /// (powers of 1000).
        size: Option<String>,
    },
    /// Owner and group names a relayed file may be given on a node (default: none; a file
    /// keeps the owner and group it has there, a new one takes its directory's).
    Owners {
        #[command(subcommand)]
        cmd: Option<ListCmd>,
    },
    /// Resource limits: show them, or set the ones named. What a limit held back shows per node
    /// in `fsrep status`.
    Limits {
        /// Paths the controller keeps, files and remembered deletes (default 20000).
        #[arg(long)]
        max_files: Option<u64>,
        /// Bytes of content the controller keeps (default 4GiB; units as max-file-size).
        #[arg(long)]
        max_total_bytes: Option<String>,
        /// Changes a node may send per second, in bursts of up to 10 s of it (default 100).
        #[arg(long)]
        changes_per_second: Option<u32>,
        /// At most one restart of an action's service per interval on a node (default 60s;
        /// changes meanwhile coalesce into that one restart).
        #[arg(long)]
        action_interval: Option<String>,
        /// Bytes the backup generations of one file may take on a node (default 256MiB).
        #[arg(long)]
        backup_bytes: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum PathCmd {
    List,
    Add {
        value: String,
        /// Replicate a system directory anyway (needs admin; audited as forced).
        #[arg(long)]
        force: bool,
    },
    Remove {
        value: String,
    },
}

#[derive(Subcommand)]
pub enum ListCmd {
    List,
    Add { value: String },
    Remove { value: String },
}

#[derive(Subcommand)]
pub enum ActionCmd {
    List,
    /// `--pattern '/opt/gluu/jetty/identity/conf/shibboleth3/idp/**' --service idp`
    Add {
        #[arg(long)]
        pattern: String,
        #[arg(long)]
        service: String,
    },
    /// Every action of the service, or only the one with this pattern.
    Remove {
        service: String,
        #[arg(long)]
        pattern: Option<String>,
    },
}
