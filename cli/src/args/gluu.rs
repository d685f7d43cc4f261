//! Arguments of the Gluu cluster commands: settings, servers, Gluu, workflows, replication, hosts.

use super::StartArgs;
use clap::{Args, Subcommand};
use std::path::PathBuf;

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
pub enum HostsCmd {
    /// Write the cluster's hostnames into a marked block of every node's /etc/hosts (and the
    /// Gluu chroot's); lines outside the block are kept. Also done after server add/remove.
    Apply {
        #[command(flatten)]
        start: StartArgs,
    },
}
