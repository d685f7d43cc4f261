//! Arguments of the service commands: cache, web certificate, load balancer, logs, sandbox.

use super::StartArgs;
use clap::{Subcommand, ValueEnum};
use clustermgr_shared::datadir::default_sandbox_dir;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum CacheCmd {
    /// Install redis-server (random password) and a stunnel server on the given nodes of role
    /// cache (added to those installed already), a stunnel client on every Gluu server
    /// (twemproxy in front when there are several Redis servers), then point Gluu at it and
    /// restart the nodes one at a time. A missing program is installed first (offline: pushed
    /// from the controller's repository).
    Install {
        #[arg(required = true)]
        nodes: Vec<String>,
        #[command(flatten)]
        start: StartArgs,
    },
    /// Per node: redis and stunnel up, and a Redis PING through each Gluu node's stunnel.
    /// Exits 1 unless every node is healthy.
    Status,
    /// Gluu back to the LDAP cache (NATIVE_PERSISTENCE), rolling; then stunnel and Redis removed.
    Remove {
        #[command(flatten)]
        start: StartArgs,
    },
    /// Change the Redis password (Redis first, then Gluu, rolling).
    #[command(subcommand)]
    Password(CachePasswordCmd),
}

#[derive(Subcommand)]
pub enum CachePasswordCmd {
    /// A new password: random, or read from a file (never a command-line value).
    Set {
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        #[command(flatten)]
        start: StartArgs,
    },
    /// No password.
    Clear {
        #[command(flatten)]
        start: StartArgs,
    },
}

#[derive(Subcommand)]
pub enum CertCmd {
    /// The certificate every Gluu node (and the load balancer) serves now: subject, names,
    /// issuer, expiry, fingerprint (exit 1 when a node could not be asked).
    Show,
    /// Validate a certificate (its key matches, the chain verifies, the load balancer's hostname
    /// is in it, it is valid now) and install it on every Gluu node, one at a time with a health
    /// gate; a failure puts the previous certificate back on the nodes already changed.
    Install {
        /// The certificate, PEM (may be followed by its chain).
        #[arg(long = "cert", value_name = "FILE")]
        cert: std::path::PathBuf,
        /// Its private key, PEM.
        #[arg(long = "key", value_name = "FILE")]
        key: std::path::PathBuf,
        /// The chain, PEM: intermediates, then the root.
        #[arg(long = "chain", value_name = "FILE")]
        chain: Option<std::path::PathBuf>,
        #[command(flatten)]
        start: StartArgs,
    },
}

#[derive(Subcommand)]
pub enum LbCmd {
    /// Install nginx on the lb node (or reconfigure it) with the cluster's web certificate, the
    /// installed Gluu servers as backends; the configuration is checked with nginx -t first.
    Install {
        /// The lb node (id or hostname); default: the only node enrolled with role lb.
        node: Option<String>,
        /// /oxauth and /.well-known: sticky or round robin (/identity, /idp, /passport and
        /// /casa are always sticky). Default: the choice of the last install, else sticky.
        #[arg(long, value_enum)]
        oxauth_balancing: Option<OxauthBalancingArg>,
        #[command(flatten)]
        start: StartArgs,
    },
    /// The load balancer now: nginx, its backends' health, a request through it (exit 1 when
    /// not healthy).
    Status,
    /// Stop nginx on the lb node and remove the cluster's configuration (the package stays).
    Remove {
        #[command(flatten)]
        start: StartArgs,
    },
    /// What a load balancer in front of the cluster must route (for an external one).
    Config,
}

/// How the load balancer spreads /oxauth and /.well-known.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OxauthBalancingArg {
    /// The same client address to the same server (SCIM needs it).
    Sticky,
    /// Round robin (oxAuth is stateless without SCIM).
    RoundRobin,
}

/// The log types a node keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogKind {
    Oxauth,
    Oxtrust,
    Httpd,
    Ldap,
    Redis,
    Agent,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Log type (repeat for several; default: every type).
    #[arg(long = "type", value_enum)]
    pub types: Vec<LogKind>,
    /// A node id or hostname (repeat for several; default: every node).
    #[arg(long = "node")]
    pub nodes: Vec<String>,
    /// Keep only lines matching this regular expression (Rust regex syntax, linear time).
    #[arg(long)]
    pub grep: Option<String>,
    /// Only lines of this last period (e.g. 15m, 1h, 2d).
    #[arg(long)]
    pub since: Option<String>,
    /// Keep printing new matching lines until interrupted.
    #[arg(long, short)]
    pub follow: bool,
    /// Most lines per node (the newest are kept; at most 10000).
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
}

#[derive(Subcommand)]
pub enum SandboxCmd {
    /// Start a controller, N Gluu-node agents, a cache host and a load-balancer host, and
    /// install the cluster. Gluu Server runs as a systemd-nspawn machine on each node: root.
    Up {
        #[arg(long, default_value_t = 3)]
        nodes: u8,
        #[arg(long, default_value_os_t = default_sandbox_dir())]
        dir: PathBuf,
        /// The Gluu Server package to install offline on the nodes (default:
        /// $CLUSTERMGR_GLUU_PACKAGE, else a gluu-server_*.deb in gluu-standin-cache/ beside
        /// this binary, where scripts/sandbox builds the stand-in).
        #[arg(long, value_name = "FILE", env = "CLUSTERMGR_GLUU_PACKAGE")]
        gluu_package: Option<PathBuf>,
        /// Only start the hosts: no cluster settings, no Gluu install.
        #[arg(long, conflicts_with = "gluu_package")]
        no_gluu: bool,
    },
    /// Show the sandbox's processes and nodes.
    Status {
        #[arg(long, default_value_os_t = default_sandbox_dir())]
        dir: PathBuf,
    },
    /// Stop every process the sandbox started, the nodes' Gluu machines included.
    Down {
        #[arg(long, default_value_os_t = default_sandbox_dir())]
        dir: PathBuf,
        /// Also delete the sandbox directory.
        #[arg(long)]
        purge: bool,
    },
}
