//! Summaries of the cache data plane's operations (never a password).

use crate::v1::{
    CacheStatus, ConfigureNutcracker, ConfigureRedis, ConfigureStunnel, SetCacheConfiguration,
    configure_stunnel, set_cache_configuration,
};

/// Whether there is a password, never which.
pub(super) fn configure_redis(r: &ConfigureRedis) -> String {
    if r.remove {
        return "stop redis-server and remove its configuration".into();
    }
    format!(
        "configure redis-server on port {} ({}{})",
        r.port,
        if r.password.is_empty() {
            "no password"
        } else {
            "with a password"
        },
        if r.keep_accepting {
            ", the current ones still accepted"
        } else {
            ""
        }
    )
}

pub(super) fn configure_stunnel(s: &ConfigureStunnel) -> String {
    format!(
        "{} stunnel {}{}",
        if s.remove { "remove" } else { "configure" },
        match s.mode() {
            configure_stunnel::Mode::Server => "server",
            configure_stunnel::Mode::Client => "client",
            configure_stunnel::Mode::Unspecified => "(no mode)",
        },
        s.services
            .iter()
            .map(|x| format!(
                " [{}] {}:{} -> {}:{}",
                x.name, x.accept_host, x.accept_port, x.connect_host, x.connect_port
            ))
            .collect::<String>()
    )
}

pub(super) fn configure_nutcracker(n: &ConfigureNutcracker) -> String {
    if n.remove {
        return "remove twemproxy".into();
    }
    format!(
        "twemproxy on port {} over ports {:?}",
        n.listen_port, n.server_ports
    )
}

pub(super) fn status(c: &CacheStatus) -> String {
    if c.programs.is_empty() {
        format!("cache status (PING port {})", c.ping_port)
    } else {
        format!("look for {}", c.programs.join(", "))
    }
}

pub(super) fn set_configuration(c: &SetCacheConfiguration) -> String {
    format!(
        "oxCacheConfiguration {} {}",
        match c.provider() {
            set_cache_configuration::Provider::Redis => "REDIS",
            set_cache_configuration::Provider::NativePersistence => "NATIVE_PERSISTENCE",
            set_cache_configuration::Provider::Unspecified => "(none)",
        },
        c.servers
    )
}
