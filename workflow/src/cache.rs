//! The cluster's cache: Redis on the cache hosts behind a stunnel server, a stunnel client on
//! every Gluu node (and twemproxy in front of them when there are several Redis servers), and
//! Gluu's `oxCacheConfiguration` pointing at the node's local end.
//!
//! Three kinds, one definition:
//! - `cache-install`: cache hosts `redis`, `stunnel-server`, `check` (Redis answers with the
//!   password); Gluu nodes `stunnel-client` (each at once), `nutcracker` (several servers only),
//!   `ping` (a PING through the node's own stunnel once every cache host is checked), then —
//!   rolling, one node at a time, the next one only once the previous one is back — `configure`
//!   (REDIS with the local end and the password, oxRevision moved on), `restart`, `web-ready`.
//! - `cache-remove`: Gluu nodes rolling `configure` (NATIVE_PERSISTENCE), `restart`,
//!   `web-ready`, then — once every node is back — `nutcracker` and `stunnel-client` removed;
//!   the cache hosts then remove `stunnel-server` and `redis`.
//! - `cache-password`: cache hosts `redis` (Redis accepts the new password beside the ones it
//!   accepts now, taken by the running Redis without a restart); Gluu nodes rolling, each
//!   drained first, `nutcracker` (its `redis_auth`), `configure` (the new password),
//!   `restart`, `web-ready`; then the cache hosts `retire-password` (Redis accepts the new
//!   password alone) once every Gluu node is back. With Redis 6 or later (ACLs) no node meets
//!   a password Redis refuses, and a roll stopped midway (a crash, a failed step) leaves Redis
//!   accepting both: its retry, or another `cache password set`, finishes it (the agent gives
//!   the running Redis its passwords at every `redis` step, before writing redis.conf and also
//!   when the file already holds them, so a step stopped between the two and run again does
//!   not leave the running Redis on the old password). Redis before 6 holds one password: its
//!   `redis` step moves it to the new one at once, and the Gluu nodes not yet rolled have their
//!   cache requests refused until their turn.
//! - `cache-detach`: a Gluu server the cluster removed loses its `nutcracker` and
//!   `stunnel-client` (and their keys); the replicated `oxCacheConfiguration` is not touched.
//!
//! A Gluu node without Gluu installed yet gets its stunnel client and skips the Gluu steps.
//!
//! Around `restart` and `web-ready` a Gluu node leaves the load balancer's rotation (`drain`)
//! and comes back once ready (`rejoin`): [`crate::drain`].
//!
//! **Packages** (install only; [`packages`]): every node first looks for the programs it needs
//! (`programs`: Redis and stunnel on a cache host, stunnel and — several Redis servers —
//! twemproxy on a Gluu node); then, per component, `push-<component>` and `install-<component>`
//! run only for a program the node lacks: online from the node's own repositories (no push),
//! offline pushed from the controller's repository (a package missing there fails the node,
//! naming it). Programs and packages are the node's distribution's: `redis-server` and `stunnel4`
//! on Debian and Ubuntu; `redis` and `stunnel` on CentOS and RHEL.
//!
//! `oxCacheConfiguration` lives in the replicated `o=gluu` tree, so it holds one value for the
//! whole cluster: the first Gluu node's local end (127.0.0.1:6379 on every real host).

use crate::engine::{Definition, JobSpec, StepCtx, StepPlan};
use crate::inputs::KindInputs;
use clustermgr_proto::{ReceivePackage, operation};
use std::collections::BTreeMap;

mod client;
mod packages;
mod server;

pub use packages::{Component, PACKAGE_NAMES};

pub const INSTALL: &str = "cache-install";
pub const REMOVE: &str = "cache-remove";
pub const PASSWORD: &str = "cache-password";
pub const DETACH: &str = "cache-detach";

/// A password change's last step on a cache host: Redis accepts the new password alone.
pub const RETIRE_PASSWORD: &str = "retire-password";

/// Redis on the cache host's local address; the stunnel client's local port on a Gluu node
/// when there is one Redis server.
pub const REDIS_PORT: u32 = 6379;
/// The stunnel server on the cache host's address.
pub const STUNNEL_PORT: u32 = 16379;
/// twemproxy on a Gluu node's local address (several Redis servers).
pub const NUTCRACKER_PORT: u32 = 2222;
/// With several Redis servers, the stunnel clients' local ports: this one, then up.
pub const SHARD_BASE_PORT: u32 = 7001;

/// Debian's packages (and the programs they bring, of the same name); CentOS and RHEL name
/// theirs `redis` and `stunnel` ([`Component::package`], [`PACKAGE_NAMES`]).
pub const REDIS_PACKAGE: &str = "redis-server";
pub const STUNNEL_PACKAGE: &str = "stunnel4";
pub const NUTCRACKER_PACKAGE: &str = "nutcracker";

/// A package of the controller's repository, pushed to a node in offline mode (its
/// `receive.format` must be the node's).
#[derive(Debug, Clone)]
pub struct PushedPackage {
    pub sha256: String,
    /// For summaries: name_version_arch.
    pub summary: String,
    pub receive: ReceivePackage,
}

/// Where a missing program's package comes from.
#[derive(Debug, Clone, Default)]
pub enum Packages {
    /// Online: by name from the node's configured repositories.
    #[default]
    Online,
    /// Offline: pushed from the controller's repository, by package name (the node's
    /// distribution's: `redis-server` or `redis`, ...).
    Pushed(BTreeMap<String, PushedPackage>),
}

/// A cache workflow's inputs (no secrets).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Inputs {
    /// The cache hosts (node ids).
    pub servers: Vec<String>,
    /// The Gluu nodes (node ids), in rolling order (the primary first).
    pub clients: Vec<String>,
    pub primary: String,
    /// `cache-password`: what it does to the record's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<PasswordChange>,
}

impl KindInputs for Inputs {
    const KIND: &'static str = "cache";
}

/// What `cache password` does to the record's password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PasswordChange {
    /// The kept new password becomes the record's.
    Set,
    /// Redis runs without a password.
    Clear,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Install,
    Remove,
    Password,
    /// A removed Gluu server: its twemproxy and stunnel client go.
    Detach,
}

impl Action {
    pub fn kind(self) -> &'static str {
        match self {
            Action::Install => INSTALL,
            Action::Remove => REMOVE,
            Action::Password => PASSWORD,
            Action::Detach => DETACH,
        }
    }

    pub fn from_kind(kind: &str) -> Option<Action> {
        match kind {
            INSTALL => Some(Action::Install),
            REMOVE => Some(Action::Remove),
            PASSWORD => Some(Action::Password),
            DETACH => Some(Action::Detach),
            _ => None,
        }
    }

    /// The steps of a cache host (`server`) or of a Gluu node; a Gluu node's restart is
    /// drained ([`crate::drain::around`]), a password change's from its twemproxy on.
    pub fn steps(self, server: bool) -> Vec<&'static str> {
        let steps = self.plain_steps(server);
        if server {
            return steps;
        }
        let first = if self == Action::Password {
            "nutcracker"
        } else {
            "restart"
        };
        crate::drain::around(steps, first, "web-ready")
    }

    fn plain_steps(self, server: bool) -> Vec<&'static str> {
        match (self, server) {
            (Action::Install, true) => vec![
                "programs",
                "push-redis",
                "install-redis",
                "push-stunnel",
                "install-stunnel",
                "redis",
                "stunnel-server",
                "check",
            ],
            (Action::Install, false) => vec![
                "programs",
                "push-stunnel",
                "install-stunnel",
                "push-nutcracker",
                "install-nutcracker",
                "stunnel-client",
                "nutcracker",
                "ping",
                "configure",
                "restart",
                "web-ready",
            ],
            (Action::Remove, true) => vec!["stunnel-server", "redis"],
            (Action::Remove, false) => vec![
                "configure",
                "restart",
                "web-ready",
                "nutcracker",
                "stunnel-client",
            ],
            (Action::Password, true) => vec!["redis", RETIRE_PASSWORD],
            (Action::Password, false) => vec!["nutcracker", "configure", "restart", "web-ready"],
            (Action::Detach, true) => Vec::new(),
            (Action::Detach, false) => vec!["nutcracker", "stunnel-client"],
        }
    }
}

#[derive(Clone)]
pub struct Cache {
    pub action: Action,
    /// The Redis hosts (node ids), in order.
    pub servers: Vec<String>,
    /// The Gluu nodes (node ids), in rolling order (the primary first).
    pub clients: Vec<String>,
    /// The Redis password (empty: none). Secret.
    pub password: String,
    /// The directory manager's password. Secret.
    pub admin_password: String,
    pub https_port: Option<u16>,
    pub primary: String,
    pub probe_within_ms: u32,
    /// Where missing programs come from (install only).
    pub packages: Packages,
    /// The load balancer a Gluu node is drained from around its restart.
    pub balancer: crate::drain::Balancer,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("action", &self.action)
            .field("servers", &self.servers)
            .field("clients", &self.clients)
            .finish_non_exhaustive()
    }
}

fn gluu_installed(ctx: &StepCtx<'_>, node_id: &str) -> bool {
    ctx.observed
        .nodes
        .get(node_id)
        .and_then(|n| n.inventory.as_ref())
        .and_then(|i| i.gluu.as_ref())
        .is_some_and(|g| g.installed)
}

fn run(kind: operation::Kind, summary: String, timeout_ms: u32) -> StepPlan {
    JobSpec::rerunnable(kind, timeout_ms, summary).into()
}

impl Cache {
    fn sharded(&self) -> bool {
        self.servers.len() > 1
    }

    fn hostname(ctx: &StepCtx<'_>, node_id: &str) -> String {
        ctx.observed
            .nodes
            .get(node_id)
            .map(|n| n.hostname.clone())
            .unwrap_or_else(|| node_id.to_string())
    }

    /// Waits until `step` is done on every node of `nodes` that is part of this workflow (a
    /// server joining later is not waited for on the cache hosts: they are set up already).
    fn all_done(ctx: &StepCtx<'_>, nodes: &[String], step: &str, what: &str) -> Option<StepPlan> {
        nodes
            .iter()
            .filter(|n| ctx.workflow.nodes.iter().any(|w| &w.node_id == *n))
            .find(|n| !ctx.done(n, step))
            .map(|n| StepPlan::Wait(format!("waiting for {what} on {}", Self::hostname(ctx, n))))
    }

    /// Rolling: the previous Gluu node must be back first.
    fn previous_back(&self, ctx: &StepCtx<'_>, me: &str) -> Option<StepPlan> {
        let pos = self.clients.iter().position(|c| c == me)?;
        let prev = self.clients.get(pos.checked_sub(1)?)?;
        (!ctx.done(prev, "web-ready")).then(|| {
            StepPlan::Wait(format!(
                "rolling: waiting for {} to be back",
                Self::hostname(ctx, prev)
            ))
        })
    }

    fn password_words(&self) -> &'static str {
        if self.password.is_empty() {
            "no password"
        } else {
            "the password"
        }
    }
}

/// A queued, not yet started `cache-password` workflow takes its nodes when it starts, not when
/// it was asked for (a cache install ahead of it may add a cache host, which must get the new
/// password too, or a Gluu server's client): its nodes and `servers`/`clients` inputs become
/// `servers` then `clients` (node id, hostname). A workflow any of whose steps has run (a
/// retry) keeps its nodes. Returns whether they changed.
pub fn retake_nodes(
    wf: &mut crate::engine::Workflow,
    servers: &[(String, String)],
    clients: &[(String, String)],
) -> bool {
    use crate::engine::StepStatus;
    if Action::from_kind(&wf.kind) != Some(Action::Password) {
        return false;
    }
    let untouched = wf.nodes.iter().flat_map(|n| n.steps.iter()).all(|s| {
        s.job_id.is_empty() && matches!(s.status(), StepStatus::Pending | StepStatus::Unspecified)
    });
    let now: Vec<&String> = servers.iter().chain(clients).map(|(id, _)| id).collect();
    let same =
        now.len() == wf.nodes.len() && now.iter().zip(&wf.nodes).all(|(a, n)| **a == n.node_id);
    if !untouched || same {
        return false;
    }
    let mut nodes = Vec::new();
    for (list, server) in [(servers, true), (clients, false)] {
        for (id, host) in list {
            nodes.push((id.clone(), host.clone(), Action::Password.steps(server)));
        }
    }
    // One whose inputs cannot be read keeps its nodes (its definition reports the inputs).
    let Ok(mut inputs) = Inputs::decode(&wf.inputs) else {
        return false;
    };
    let ids = |l: &[(String, String)]| l.iter().map(|(id, _)| id.clone()).collect();
    inputs.servers = ids(servers);
    inputs.clients = ids(clients);
    wf.nodes = crate::engine::new_workflow(&wf.id, &wf.kind, &wf.started_by, 0, nodes).nodes;
    wf.inputs.extend(inputs.encode());
    true
}

impl Definition for Cache {
    fn observed_nodes(&self, _wf: &clustermgr_proto::Workflow) -> Vec<String> {
        // A cache client's workflow (`server add`'s) reads its cache hosts' addresses, though
        // they are not among its nodes.
        self.servers
            .iter()
            .cloned()
            .chain(self.balancer.observed())
            .collect()
    }

    fn kind(&self) -> &'static str {
        self.action.kind()
    }

    fn plan_step(&self, ctx: &StepCtx<'_>) -> StepPlan {
        let me = ctx.node.node_id.as_str();
        let Some(ip) = ctx.address(me) else {
            return StepPlan::Wait("waiting for the node's inventory (its address)".into());
        };
        if let Some(plan) = crate::drain::plan(&self.balancer, ctx) {
            return plan;
        }
        let server = self.servers.iter().any(|s| s == me);
        if let Some(plan) = self.package_step(ctx, me, server) {
            return plan;
        }
        if server {
            self.server_step(ctx, &ip)
        } else {
            self.client_step(ctx, me, &ip)
        }
    }
}

#[cfg(test)]
mod tests;
