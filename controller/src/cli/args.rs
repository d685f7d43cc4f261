//! Argument types of the `clustermgr` command line (clap derive). Each command group's
//! enum is carried out by the module of the same name (`node.rs` for [`NodeCmd`], ...).

use crate::config::{default_data_dir, default_sandbox_dir};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

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
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Copy, Clone, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Create the data directory, the cluster CA, the server certificate and the admin credential.
    /// Prints the CA pin on stdout.
    Init(InitCmd),
    /// Run the controller daemon.
    Serve(ServeCmd),
    /// The cluster CA.
    #[command(subcommand)]
    Ca(CaCmd),
    /// Join tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Nodes.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Jobs: typed operations on nodes.
    #[command(subcommand)]
    Job(JobCmd),
    /// Operator credentials.
    #[command(subcommand)]
    Operator(OperatorCmd),
    /// The Gluu cluster's settings.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// The nodes that make up the Gluu cluster.
    #[command(subcommand)]
    Server(ServerCmd),
    /// Gluu Server on the cluster's nodes.
    #[command(subcommand)]
    Gluu(GluuCmd),
    /// The cluster's hostnames in every node's /etc/hosts (with --manage-hosts).
    #[command(subcommand)]
    Hosts(HostsCmd),
    /// The cluster's cache: Redis on the cache node(s) behind stunnel, stunnel clients on the
    /// Gluu nodes.
    #[command(subcommand)]
    Cache(CacheCmd),
    /// The load balancer: nginx on the node of role lb (or what an external one must route).
    #[command(subcommand)]
    Lb(LbCmd),
    /// The cluster's web certificate (Gluu's httpd certificate, served by every node and the
    /// load balancer).
    #[command(subcommand)]
    Cert(CertCmd),
    /// LDAP multi-master replication between the Gluu nodes.
    #[command(subcommand)]
    Replication(ReplicationCmd),
    /// File system replication between the Gluu servers (replaces csync2).
    #[command(subcommand)]
    Fsrep(super::fsrep::FsrepCmd),
    /// oxAuth's keys: rotation with an overlap window, now or on a schedule.
    #[command(subcommand)]
    Keys(super::keys::KeysCmd),
    /// Custom LDAP schema (attribute types, object classes) on every Gluu node's directory.
    #[command(subcommand)]
    Schema(super::schema::SchemaCmd),
    /// Cluster-wide workflows (install, replication, ...): follow, cancel, retry.
    #[command(subcommand)]
    Workflow(WorkflowCmd),
    /// Show the audit log.
    Audit {
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show who the current credential is.
    Whoami,
    /// A local sandbox cluster: a controller plus agents, each "host" on its own loopback address.
    #[command(subcommand)]
    Sandbox(SandboxCmd),
    /// The web console's settings kept in the data directory (OpenID Connect sign-in).
    #[command(subcommand)]
    Console(ConsoleCmd),
    /// The package repository (.deb/.rpm files) and the offline push to nodes.
    #[command(subcommand)]
    Package(PackageCmd),
    /// The nodes' agents: rolling upgrades to a new clustermgr-agent package.
    // Its man pages are clustermgr-agents*.1: clustermgr-agent(1) is the agent's own, in the
    // agent's package.
    #[command(subcommand, display_name = "clustermgr-agents")]
    Agent(super::agent::AgentCmd),
    /// Search the nodes' logs (each node reads and filters its own files; matches are merged by
    /// time). Needs the operator role: logs may hold personal data.
    Logs(LogsArgs),
    /// The cluster overview: every node, its session, its services (checked by the agents on
    /// the cluster's LDAP check period) and the last change of each; then the latest events.
    Status {
        /// Latest service events shown (at most 1000).
        #[arg(long, default_value_t = 20)]
        events: u32,
    },
    /// One node's metrics over a period (raw samples, or averages once the period is longer
    /// than raw samples are kept).
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
    Top {
        /// Print once and exit.
        #[arg(long)]
        once: bool,
        /// How often the view is redrawn.
        #[arg(long, default_value = "2s")]
        interval: String,
    },
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (one per command) into a directory, or the main page to stdout.
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

pub use super::ca::CaCmd;
pub use super::console::ConsoleCmd;

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create a join token; prints the token alone on stdout.
    Create {
        #[arg(long, value_parser = ["gluu-node", "cache", "lb"])]
        role: String,
        #[arg(long, default_value = "30m")]
        ttl: String,
        #[arg(long, default_value_t = 1)]
        uses: u32,
    },
    /// List join tokens (ids, roles, expiry, uses left; never the secret).
    List,
    /// Revoke a join token by id, so that it can no longer be used.
    Revoke { id: String },
}

#[derive(Subcommand)]
pub enum NodeCmd {
    /// List nodes.
    List,
    /// Show one node's inventory (by id or hostname).
    Show { node: String },
    /// Approve a pending node.
    Approve { node: String },
    /// Remove a node: drop its session, revoke its certificates, purge its identity.
    Remove { node: String },
}

#[derive(Subcommand)]
pub enum PackageCmd {
    /// Add a .deb or .rpm file (name, version and architecture are read from the file).
    Add { file: PathBuf },
    /// List the packages in the repository.
    List,
    /// Remove a package and its file: NAME or NAME=VERSION.
    Remove { package: String },
    /// Copy a package into the cache of one or more nodes, all at once (NAME or NAME=VERSION,
    /// then node ids or hostnames); exits 1 if any node failed.
    Push {
        package: String,
        #[arg(required = true)]
        nodes: Vec<String>,
        /// Per-node job timeout.
        #[arg(long, default_value = "1h")]
        timeout: String,
        /// Print the job ids and return at once.
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Subcommand)]
pub enum JobCmd {
    /// List recent jobs.
    List {
        #[arg(long)]
        node: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show a job.
    Show { id: String },
    /// Print a job's log lines.
    Logs {
        id: String,
        /// Keep printing until the job ends.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Run an operation on a node and wait for it.
    Run {
        /// Node id or hostname.
        node: String,
        #[command(subcommand)]
        op: RunOp,
        /// Job timeout.
        #[arg(long, default_value = "60s", global = true)]
        timeout: String,
        /// Print the job id and return at once.
        #[arg(long, global = true)]
        no_wait: bool,
    },
}

#[derive(Subcommand)]
pub enum RunOp {
    /// Round trip to the agent.
    Ping,
    /// Collect the node's facts (inventory).
    Facts,
    /// Read a managed file; its content goes to stdout (or --out).
    ReadFile {
        path: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write a managed file from a local file. Without --mode, --owner and --group the file
    /// keeps the existing one's mode, owner and group (0644 and the agent's user for a new file).
    WriteFile {
        path: String,
        #[arg(long)]
        from: PathBuf,
        /// Octal permission bits, e.g. 600 or 0600 (default: keep the existing file's mode).
        #[arg(long, value_parser = parse_mode)]
        mode: Option<u32>,
        /// Owner: a user name or numeric id (default: keep the existing file's owner).
        #[arg(long, value_name = "USER")]
        owner: Option<String>,
        /// Group: a group name or numeric id (default: keep the existing file's group).
        #[arg(long, value_name = "GROUP")]
        group: Option<String>,
        /// Allow setuid, setgid and sticky bits in --mode (refused otherwise).
        #[arg(long)]
        allow_setid: bool,
    },
    /// Install a package pushed into the node's cache (`package push`), chosen by its SHA-256
    /// (as `package list` shows it), with the node's package manager.
    InstallPackage {
        /// SHA-256 of the pushed file (64 lowercase hex digits).
        #[arg(long)]
        sha256: String,
        /// Install even when the same version is already installed.
        #[arg(long)]
        force: bool,
    },
}

/// `--mode`: octal permission bits (`600`, `0600`, `0o600`), at most 7777. Zero is refused: on
/// the wire it means "keep the existing mode", which is what leaving --mode out does.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.trim().trim_start_matches("0o");
    let bad = || format!("invalid mode {s:?}: octal permission bits expected, e.g. 644 or 0600");
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(bad());
    }
    let mode = u32::from_str_radix(digits, 8).map_err(|_| bad())?;
    if mode > 0o7777 {
        return Err(bad());
    }
    if mode == 0 {
        return Err(format!(
            "invalid mode {s:?}: a file with no permission bits cannot be written \
             (leave --mode out to keep the existing file's mode)"
        ));
    }
    Ok(mode)
}

#[derive(Subcommand)]
pub enum OperatorCmd {
    /// Issue a credential bundle (the key is made here and written only to --out).
    Create {
        name: String,
        #[arg(long, value_parser = ["admin", "operator", "viewer"])]
        role: String,
        /// Where to write the bundle (default: ./NAME.toml).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Credential lifetime (default 365d).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// List operators.
    List,
    /// Remove an operator: every credential issued to it is refused from now on.
    Remove { name: String },
    /// Replace this credential (--config) with a new one from the current CA: same name and
    /// role, a new key. Run it before the credential expires and during a CA rotation.
    Renew {
        /// Where to write the new credential (default: over the current one).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Credential lifetime (default: the controller's, 365d).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Offline, on the controller host with the controller stopped: issue a new admin
    /// credential from the data directory (CA key and store), e.g. after the admin credential
    /// expired or was lost. Audited.
    Recover {
        #[arg(long, default_value = "admin")]
        name: String,
        /// Where to write it (default: DATA_DIR/admin.toml for admin, else DATA_DIR/NAME.toml).
        #[arg(long)]
        out: Option<PathBuf>,
    },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write_file(extra: &[&str]) -> RunOp {
        let mut args = vec![
            "clustermgr",
            "job",
            "run",
            "n1",
            "write-file",
            "/etc/hosts",
            "--from",
            "./hosts",
        ];
        args.extend_from_slice(extra);
        match Cli::try_parse_from(args).map(|c| c.cmd) {
            Ok(Cmd::Job(JobCmd::Run { op, .. })) => op,
            Ok(_) => panic!("not a job run"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn modes_are_octal_with_or_without_a_leading_zero() {
        assert_eq!(parse_mode("600"), Ok(0o600));
        assert_eq!(parse_mode("0600"), Ok(0o600));
        assert_eq!(parse_mode("0o644"), Ok(0o644));
        assert_eq!(parse_mode("4755"), Ok(0o4755));
        for bad in [
            "",
            "0",
            "000",
            "8",
            "64a",
            "-644",
            "17777",
            "0x1ff",
            "rw-r--r--",
        ] {
            assert!(parse_mode(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn write_file_flags_are_optional() {
        match write_file(&[]) {
            RunOp::WriteFile {
                mode,
                owner,
                group,
                allow_setid,
                ..
            } => {
                assert_eq!(mode, None);
                assert_eq!(owner, None);
                assert_eq!(group, None);
                assert!(!allow_setid);
            }
            _ => panic!("not write-file"),
        }
        match write_file(&[
            "--mode",
            "0640",
            "--owner",
            "jetty",
            "--group",
            "1001",
            "--allow-setid",
        ]) {
            RunOp::WriteFile {
                mode,
                owner,
                group,
                allow_setid,
                ..
            } => {
                assert_eq!(mode, Some(0o640));
                assert_eq!(owner.as_deref(), Some("jetty"));
                assert_eq!(group.as_deref(), Some("1001"));
                assert!(allow_setid);
            }
            _ => panic!("not write-file"),
        }
    }

    #[test]
    fn a_bad_mode_is_a_usage_error() {
        let e = Cli::try_parse_from([
            "clustermgr",
            "job",
            "run",
            "n1",
            "write-file",
            "/etc/hosts",
            "--from",
            "x",
            "--mode",
            "999",
        ])
        .err()
        .map(|e| e.kind());
        assert_eq!(e, Some(clap::error::ErrorKind::ValueValidation));
    }
}

#[derive(Subcommand)]
pub enum ClusterCmd {
    /// Show the settings (passwords only as set / unset).
    Show,
    /// Change settings; only the options given change.
    Configure(Box<ConfigureArgs>),
}

#[derive(Args, Default)]
pub struct ConfigureArgs {
    /// Gluu Server version to install (4.x).
    #[arg(long)]
    pub gluu_version: Option<String>,
    /// The load balancer's hostname: the name every Gluu node is installed with.
    #[arg(long)]
    pub lb_hostname: Option<String>,
    /// The load balancer's address (not needed with --external-lb).
    #[arg(long)]
    pub lb_ip: Option<String>,
    /// The load balancer is not managed by the cluster (only its hostname is used).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub external_lb: Option<bool>,
    /// Cache in LDAP (NATIVE_PERSISTENCE) instead of Redis.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub ldap_cache: Option<bool>,
    /// Install from packages pushed by the controller (clustermgr package add).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub offline: Option<bool>,
    /// How often replication health is checked (e.g. 5m).
    #[arg(long)]
    pub ldap_check_period: Option<String>,
    /// The cluster keeps the nodes' /etc/hosts entries for each other and the load balancer.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub manage_hosts: Option<bool>,
    /// Read the LDAP admin (directory manager) password from this file (one line).
    #[arg(long, value_name = "FILE", conflicts_with = "ask_ldap_admin_password")]
    pub ldap_admin_password_file: Option<PathBuf>,
    /// Prompt for the LDAP admin password.
    #[arg(long)]
    pub ask_ldap_admin_password: bool,
    /// Read the replication password from this file (one line).
    #[arg(long, value_name = "FILE", conflicts_with = "ask_replication_password")]
    pub replication_password_file: Option<PathBuf>,
    /// Prompt for the replication password.
    #[arg(long)]
    pub ask_replication_password: bool,
    /// Organisation name (certificates).
    #[arg(long)]
    pub org: Option<String>,
    /// Two-letter country code (certificates).
    #[arg(long)]
    pub country: Option<String>,
    /// City or locality (certificates).
    #[arg(long)]
    pub city: Option<String>,
    /// State or province (certificates).
    #[arg(long)]
    pub state: Option<String>,
    /// The administrator's e-mail address (certificates).
    #[arg(long)]
    pub admin_email: Option<String>,
    /// Port of Gluu's web tier on the nodes when not 443 (hosts without root, such as the sandbox).
    #[arg(long)]
    pub https_port: Option<u32>,
    /// With --external-lb: each node's health mark (/clustermgr-health on its own web tier,
    /// which the balancer must probe) goes before the node restarts and comes back once it is
    /// ready; a drain and a rejoin then wait this long for the balancer to see it (its check
    /// interval times its unhealthy threshold, plus its longest request). 0: off.
    #[arg(long, value_name = "SECS")]
    pub external_lb_health_wait: Option<u32>,
    /// Online installs: Gluu's repository (https), configured on each node first.
    #[arg(long, value_name = "URL")]
    pub gluu_repo_url: Option<String>,
    /// The repository's suite on deb nodes. Each node uses its own distribution's codename
    /// (bionic, focal, stretch, buster); a suite given here is kept only where it starts with
    /// that codename (e.g. focal-testing).
    #[arg(long, value_name = "SUITE")]
    pub gluu_repo_suite: Option<String>,
    /// The repository's ASCII-armored signing key (unsigned repositories are refused).
    #[arg(long, value_name = "FILE")]
    pub gluu_repo_key_file: Option<PathBuf>,
    /// The Gluu components setup installs on every node, the whole list comma-separated:
    /// oxauth, oxtrust, httpd (always needed), saml (Shibboleth), oxauth-rp, passport, radius,
    /// scim, fido2, casa (with oxd), oxd. Default: oxauth,oxtrust,httpd (Gluu 4.2.3's).
    #[arg(long, value_name = "LIST")]
    pub components: Option<String>,
}

#[derive(Subcommand)]
pub enum ServerCmd {
    /// Put an enrolled gluu-node in the cluster (the first one becomes the primary).
    Add {
        node: String,
        #[arg(long)]
        primary: bool,
    },
    /// List the cluster's servers: role, OS, Gluu version, components, install state.
    List,
    /// Make a server the primary.
    MakePrimary { node: String },
    /// Take a server out of the cluster (refused while a workflow runs on it).
    Remove { node: String },
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

#[derive(Subcommand)]
pub enum GluuCmd {
    /// Install Gluu Server: the primary first, then the others in parallel.
    Install {
        /// Servers to install (the primary is always included).
        nodes: Vec<String>,
        /// Every server of the cluster.
        #[arg(long, conflicts_with = "nodes")]
        all: bool,
        /// Install the package again and re-apply what an earlier install did (never setup on
        /// an installed node).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        start: StartArgs,
    },
    /// Restart Gluu Server on the servers named, one at a time in that order, each taken out of
    /// the load balancer's rotation first and put back once it answers again.
    Restart {
        #[arg(required = true)]
        nodes: Vec<String>,
        #[command(flatten)]
        start: StartArgs,
    },
    /// Gluu's state on every server.
    Status,
    /// Make a standalone Gluu Server the cluster's primary: renamed to the load balancer's
    /// hostname and recorded as installed.
    Adopt {
        node: String,
        #[arg(long)]
        detach: bool,
    },
}

#[derive(Subcommand)]
pub enum WorkflowCmd {
    /// List workflows, newest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show a workflow: its steps per node, with status, times and errors.
    Show { id: String },
    /// Follow a workflow with a progress bar per node until it ends.
    Watch { id: String },
    /// Stop a workflow after its running steps.
    Cancel { id: String },
    /// Run a failed workflow again from its failed steps.
    Retry {
        id: String,
        #[arg(long)]
        detach: bool,
    },
}

#[derive(Subcommand)]
pub enum ReplicationCmd {
    /// Make the nodes' directories replicate o=gluu and o=site with each other (rolling).
    Deploy {
        /// Nodes to bring in (with those replicating already).
        nodes: Vec<String>,
        /// Every installed server.
        #[arg(long, conflicts_with = "nodes")]
        all: bool,
        #[command(flatten)]
        start: StartArgs,
    },
    /// Ask every replicated node now: per base, reachable, partners, change stamps, lag.
    Status,
    /// Take a node out of replication: it stops, its peers drop it and their server lists.
    Remove {
        node: String,
        #[arg(long)]
        detach: bool,
    },
}

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
pub enum HostsCmd {
    /// Write the cluster's hostnames into a marked block of every node's /etc/hosts (and the
    /// Gluu chroot's); lines outside the block are kept. Also done after server add/remove.
    Apply {
        #[command(flatten)]
        start: StartArgs,
    },
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

/// How the load balancer spreads /oxauth and /.well-known.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OxauthBalancingArg {
    /// The same client address to the same server (SCIM needs it).
    Sticky,
    /// Round robin (oxAuth is stateless without SCIM).
    RoundRobin,
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
