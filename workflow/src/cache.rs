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
use crate::gluu_install::LDAPS_PORT;
use crate::readiness;
use clustermgr_proto::{
    CacheStatus, ConfigureNutcracker, ConfigureStunnel, GluuServices, Operation, ReceivePackage,
    SetCacheConfiguration, StunnelService, configure_stunnel, gluu_services, operation,
    operation_output, set_cache_configuration,
};
use std::collections::BTreeMap;

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
    StepPlan::Run(JobSpec {
        operation: Operation { kind: Some(kind) },
        timeout_ms,
        summary,
        rerunnable: true,
        keep_output_as: None,
    })
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

    /// The local end a Gluu node's oxAuth uses (from its own earlier steps).
    fn local_end(&self, ctx: &StepCtx<'_>, me: &str) -> Option<String> {
        let out = |step: &str| {
            ctx.job_of(me, step)
                .and_then(|j| j.output.as_ref())
                .and_then(|o| o.kind.clone())
        };
        if self.sharded() {
            match out("nutcracker")? {
                operation_output::Kind::ConfigureNutcracker(n) => Some(n.listen),
                _ => None,
            }
        } else {
            match out("stunnel-client")? {
                operation_output::Kind::ConfigureStunnel(s) => s.accepts.into_iter().next(),
                _ => None,
            }
        }
    }

    fn client_step(&self, ctx: &StepCtx<'_>, me: &str, ip: &str) -> StepPlan {
        let gluu = gluu_installed(ctx, me);
        let step = ctx.step().name.as_str();
        if matches!(step, "configure" | "restart" | "web-ready") && !gluu {
            return StepPlan::Skip("Gluu Server is not installed on the node".into());
        }
        let nutcracker_ports = || {
            (0..self.servers.len() as u32)
                .map(|i| SHARD_BASE_PORT + i)
                .collect::<Vec<_>>()
        };
        match (self.action, step) {
            (Action::Install, "stunnel-client") => {
                let mut services = Vec::new();
                for (i, s) in self.servers.iter().enumerate() {
                    let Some(addr) = ctx.address(s) else {
                        return StepPlan::Wait("waiting for a cache host's inventory".into());
                    };
                    services.push(StunnelService {
                        name: format!("redis{}", i + 1),
                        accept_host: String::new(),
                        accept_port: if self.sharded() {
                            SHARD_BASE_PORT + i as u32
                        } else {
                            REDIS_PORT
                        },
                        connect_host: addr,
                        connect_port: STUNNEL_PORT,
                    });
                }
                let summary = format!(
                    "stunnel client: {} (key made on the node, the server's certificate verified against the cache CA)",
                    services
                        .iter()
                        .map(|s| format!(
                            "local {} -> {}:{}",
                            s.accept_port, s.connect_host, s.connect_port
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                run(
                    operation::Kind::ConfigureStunnel(ConfigureStunnel {
                        mode: configure_stunnel::Mode::Client as i32,
                        job_id: String::new(),
                        services,
                        remove: false,
                    }),
                    summary,
                    5 * 60_000,
                )
            }
            (Action::Install | Action::Password, "nutcracker") => {
                if !self.sharded() {
                    return StepPlan::Skip("one Redis server: no twemproxy".into());
                }
                if self.action == Action::Password
                    && let Some(w) = Self::all_done(ctx, &self.servers, "redis", "the new password")
                {
                    return w;
                }
                run(
                    operation::Kind::ConfigureNutcracker(ConfigureNutcracker {
                        listen_port: NUTCRACKER_PORT,
                        server_ports: nutcracker_ports(),
                        password: self.password.clone().into_bytes(),
                        remove: false,
                    }),
                    format!(
                        "twemproxy on the local address, port {NUTCRACKER_PORT}, sharding over {} Redis servers with {}",
                        self.servers.len(),
                        self.password_words()
                    ),
                    5 * 60_000,
                )
            }
            (Action::Install, "ping") => {
                if let Some(w) = Self::all_done(ctx, &self.servers, "check", "Redis") {
                    return w;
                }
                let port = if self.sharded() {
                    NUTCRACKER_PORT
                } else {
                    REDIS_PORT
                };
                run(
                    operation::Kind::CacheStatus(CacheStatus {
                        server: false,
                        client: true,
                        nutcracker: self.sharded(),
                        ping_port: port,
                        password: self.password.clone().into_bytes(),
                        require_healthy: true,
                        programs: Vec::new(),
                    }),
                    format!("PING Redis through the local port {port}"),
                    60_000,
                )
            }
            (Action::Install | Action::Password | Action::Remove, "configure") => {
                let waits: Vec<Option<StepPlan>> = match self.action {
                    Action::Install => vec![Self::all_done(
                        ctx,
                        &self.clients,
                        "ping",
                        "a PING through stunnel",
                    )],
                    Action::Password => {
                        vec![Self::all_done(
                            ctx,
                            &self.servers,
                            "redis",
                            "the new password",
                        )]
                    }
                    Action::Remove | Action::Detach => Vec::new(),
                };
                if let Some(w) = waits.into_iter().flatten().next() {
                    return w;
                }
                if let Some(w) = self.previous_back(ctx, me) {
                    return w;
                }
                let (provider, servers, summary) = match self.action {
                    Action::Detach => {
                        return StepPlan::Fail("a detached node keeps Gluu's configuration".into());
                    }
                    Action::Remove => (
                        set_cache_configuration::Provider::NativePersistence,
                        String::new(),
                        "oxCacheConfiguration: NATIVE_PERSISTENCE (the directory); oxRevision + 1"
                            .to_string(),
                    ),
                    Action::Password => (
                        set_cache_configuration::Provider::Redis,
                        String::new(),
                        format!(
                            "oxCacheConfiguration: Redis with {}; oxRevision + 1",
                            self.password_words()
                        ),
                    ),
                    Action::Install => {
                        // oxCacheConfiguration is in the replicated tree: every node gets the
                        // same value, the first node's local end. On a real host every node's
                        // is 127.0.0.1:6379; sandbox hosts share one machine, each with its own
                        // loopback address, so there the nodes use the first one's client.
                        let first = self.clients.first().map_or(me, String::as_str);
                        let Some(end) = self.local_end(ctx, first) else {
                            return StepPlan::Fail(
                                "the node's local Redis end is unknown (its stunnel step reported none)"
                                    .into(),
                            );
                        };
                        let summary = format!(
                            "oxCacheConfiguration: REDIS at {end} with {}; oxRevision + 1",
                            self.password_words()
                        );
                        (set_cache_configuration::Provider::Redis, end, summary)
                    }
                };
                run(
                    operation::Kind::SetCacheConfiguration(SetCacheConfiguration {
                        host: ip.to_string(),
                        port: LDAPS_PORT,
                        admin_password: self.admin_password.clone().into_bytes(),
                        provider: provider as i32,
                        servers,
                        redis_password: self.password.clone().into_bytes(),
                        sharded: false,
                    }),
                    summary,
                    5 * 60_000,
                )
            }
            (_, "restart") => run(
                operation::Kind::GluuServices(GluuServices {
                    action: gluu_services::Action::Restart as i32,
                    ..Default::default()
                }),
                "restart Gluu Server (it reads the cache configuration)".into(),
                15 * 60_000,
            ),
            (_, "web-ready") => readiness::web(
                ip,
                self.https_port,
                me == self.primary,
                self.probe_within_ms,
            ),
            (Action::Remove | Action::Detach, "nutcracker") => {
                if self.action == Action::Remove
                    && let Some(w) = Self::all_done(ctx, &self.clients, "web-ready", "Gluu back")
                {
                    return w;
                }
                run(
                    operation::Kind::ConfigureNutcracker(ConfigureNutcracker {
                        remove: true,
                        ..Default::default()
                    }),
                    "stop and remove twemproxy (when present)".into(),
                    5 * 60_000,
                )
            }
            (Action::Remove | Action::Detach, "stunnel-client") => run(
                operation::Kind::ConfigureStunnel(ConfigureStunnel {
                    mode: configure_stunnel::Mode::Client as i32,
                    remove: true,
                    ..Default::default()
                }),
                "stop and remove the stunnel client".into(),
                5 * 60_000,
            ),
            (_, other) => StepPlan::Fail(format!("no step {other:?} on a Gluu node")),
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
    let ids = |l: &[(String, String)]| {
        l.iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    wf.nodes = crate::engine::new_workflow(&wf.id, &wf.kind, &wf.started_by, 0, nodes).nodes;
    wf.inputs.insert("servers".into(), ids(servers));
    wf.inputs.insert("clients".into(), ids(clients));
    true
}

impl Definition for Cache {
    fn observed_nodes(&self, wf: &clustermgr_proto::Workflow) -> Vec<String> {
        // A cache client's workflow (`server add`'s) reads its cache hosts' addresses, though
        // they are not among its nodes.
        let hosts = wf
            .inputs
            .get("servers")
            .into_iter()
            .flat_map(|s| s.split(','));
        hosts
            .filter(|x| !x.is_empty())
            .map(str::to_string)
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
