//! A cache host's steps: Redis (and, for a password change, its roll and the old password's
//! retirement), the stunnel server, the check; their removal.

use super::{Action, Cache, REDIS_PORT, RETIRE_PASSWORD, STUNNEL_PORT, run};
use crate::engine::{StepCtx, StepPlan};
use clustermgr_proto::{
    CacheStatus, ConfigureRedis, ConfigureStunnel, StunnelService, configure_stunnel, operation,
};

impl Cache {
    // Long: one flat arm per cache host step and action, each a single job; split, they would
    // only be read side by side again.
    // Long: one arm per (action, step) of a cache host, the whole step table in one place.
    pub(super) fn server_step(&self, ctx: &StepCtx<'_>, ip: &str) -> StepPlan {
        match (self.action, ctx.step().name.as_str()) {
            (Action::Install, "redis") => run(
                operation::Kind::ConfigureRedis(ConfigureRedis {
                    port: REDIS_PORT,
                    password: self.password.clone().into_bytes(),
                    remove: false,
                    keep_accepting: false,
                }),
                format!(
                    "configure redis-server on the local address, port {REDIS_PORT}, with {}; restart it",
                    self.password_words()
                ),
                5 * 60_000,
            ),
            (Action::Password, "redis" | RETIRE_PASSWORD) => {
                let roll = ctx.step().name == "redis";
                if !roll
                    && let Some(w) =
                        Self::all_done(ctx, &self.clients, "web-ready", "Gluu back with it")
                {
                    return w;
                }
                run(
                    operation::Kind::ConfigureRedis(ConfigureRedis {
                        port: REDIS_PORT,
                        password: self.password.clone().into_bytes(),
                        remove: false,
                        keep_accepting: roll,
                    }),
                    if roll {
                        format!(
                            "Redis accepts {} beside what it accepts now (the running Redis, not restarted)",
                            self.password_words()
                        )
                    } else {
                        format!(
                            "Redis accepts {} alone: the previous password is retired (the running Redis, not restarted)",
                            self.password_words()
                        )
                    },
                    5 * 60_000,
                )
            }
            (Action::Install, "stunnel-server") => run(
                operation::Kind::ConfigureStunnel(ConfigureStunnel {
                    mode: configure_stunnel::Mode::Server as i32,
                    job_id: String::new(),
                    services: vec![StunnelService {
                        name: "redis".into(),
                        accept_host: ip.to_string(),
                        accept_port: STUNNEL_PORT,
                        connect_host: String::new(),
                        connect_port: REDIS_PORT,
                    }],
                    remove: false,
                }),
                format!(
                    "stunnel server {ip}:{STUNNEL_PORT} -> local Redis {REDIS_PORT} (key made on the node, certificate from the cache CA, client certificates required)"
                ),
                5 * 60_000,
            ),
            (Action::Install, "check") => run(
                operation::Kind::CacheStatus(CacheStatus {
                    server: true,
                    client: false,
                    nutcracker: false,
                    ping_port: REDIS_PORT,
                    password: self.password.clone().into_bytes(),
                    require_healthy: true,
                    programs: Vec::new(),
                }),
                "check redis-server and stunnel run, and Redis answers a PING".into(),
                60_000,
            ),
            (Action::Remove, "stunnel-server") => {
                if let Some(w) = Self::all_done(
                    ctx,
                    &self.clients,
                    "stunnel-client",
                    "its stunnel client gone",
                ) {
                    return w;
                }
                run(
                    operation::Kind::ConfigureStunnel(ConfigureStunnel {
                        mode: configure_stunnel::Mode::Server as i32,
                        remove: true,
                        ..Default::default()
                    }),
                    "stop and remove the stunnel server".into(),
                    5 * 60_000,
                )
            }
            (Action::Remove, "redis") => run(
                operation::Kind::ConfigureRedis(ConfigureRedis {
                    port: REDIS_PORT,
                    password: Vec::new(),
                    remove: true,
                    keep_accepting: false,
                }),
                "stop redis-server and remove its configuration".into(),
                5 * 60_000,
            ),
            (_, other) => StepPlan::Fail(format!("no step {other:?} on a cache host")),
        }
    }
}
