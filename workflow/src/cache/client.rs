//! A Gluu node's steps: its stunnel client (and twemproxy in front of several Redis servers),
//! the PING through them, Gluu's cache configuration, the restart and readiness; their removal.

use super::{
    Action, Cache, NUTCRACKER_PORT, REDIS_PORT, SHARD_BASE_PORT, STUNNEL_PORT, gluu_installed, run,
};
use crate::engine::{StepCtx, StepPlan};
use crate::gluu_install::LDAPS_PORT;
use crate::readiness;
use clustermgr_proto::{
    CacheStatus, ConfigureNutcracker, ConfigureStunnel, GluuServices, SetCacheConfiguration,
    StunnelService, configure_stunnel, gluu_services, operation, operation_output,
    set_cache_configuration,
};

impl Cache {
    pub(super) fn client_step(&self, ctx: &StepCtx<'_>, me: &str, ip: &str) -> StepPlan {
        let step = ctx.step().name.as_str();
        if matches!(step, "configure" | "restart" | "web-ready") && !gluu_installed(ctx, me) {
            return StepPlan::Skip("Gluu Server is not installed on the node".into());
        }
        match (self.action, step) {
            (Action::Install, "stunnel-client") => self.stunnel_client(ctx),
            (Action::Install | Action::Password, "nutcracker") => self.nutcracker(ctx),
            (Action::Install, "ping") => self.ping(ctx),
            (Action::Install | Action::Password | Action::Remove, "configure") => {
                self.configure(ctx, me, ip)
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
            (Action::Remove | Action::Detach, "nutcracker") => self.remove_nutcracker(ctx),
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

    /// `stunnel-client` (install): one local port per Redis server, to its stunnel server.
    fn stunnel_client(&self, ctx: &StepCtx<'_>) -> StepPlan {
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

    /// `nutcracker` (install, password): twemproxy over the stunnel clients' local ports, with
    /// the (new) password; skipped with one Redis server.
    fn nutcracker(&self, ctx: &StepCtx<'_>) -> StepPlan {
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
                server_ports: (0..self.servers.len() as u32)
                    .map(|i| SHARD_BASE_PORT + i)
                    .collect(),
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

    /// `ping` (install): Redis answers through the node's own end, once every cache host is
    /// checked.
    fn ping(&self, ctx: &StepCtx<'_>) -> StepPlan {
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

    /// `configure` (install, password, remove): Gluu's `oxCacheConfiguration`, rolling.
    fn configure(&self, ctx: &StepCtx<'_>, me: &str, ip: &str) -> StepPlan {
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
                // oxCacheConfiguration is in the replicated tree: every node gets the same
                // value, the first node's local end. On a real host every node's is
                // 127.0.0.1:6379; sandbox hosts share one machine, each with its own loopback
                // address, so there the nodes use the first one's client.
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

    /// `nutcracker` (remove, detach): twemproxy goes; on a removal once every node is back.
    fn remove_nutcracker(&self, ctx: &StepCtx<'_>) -> StepPlan {
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
}
