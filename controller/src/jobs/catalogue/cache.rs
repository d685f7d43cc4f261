//! What the cache data plane's operations are called and say they do.

use clustermgr_proto::{Operation, configure_stunnel, operation, set_cache_configuration};

/// A job's kind and summary (never the password).
pub fn kind_of(op: &Operation) -> (&'static str, String) {
    match &op.kind {
        Some(operation::Kind::ConfigureRedis(r)) => (
            "configure-redis",
            if r.remove {
                "stop redis-server and remove its configuration".into()
            } else {
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
            },
        ),
        Some(operation::Kind::ConfigureStunnel(s)) => (
            "configure-stunnel",
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
            ),
        ),
        Some(operation::Kind::ConfigureNutcracker(n)) => (
            "configure-nutcracker",
            if n.remove {
                "remove twemproxy".into()
            } else {
                format!(
                    "twemproxy on port {} over ports {:?}",
                    n.listen_port, n.server_ports
                )
            },
        ),
        Some(operation::Kind::CacheStatus(c)) => (
            "cache-status",
            if c.programs.is_empty() {
                format!("cache status (PING port {})", c.ping_port)
            } else {
                format!("look for {}", c.programs.join(", "))
            },
        ),
        Some(operation::Kind::SetCacheConfiguration(c)) => (
            "set-cache-configuration",
            format!(
                "oxCacheConfiguration {} {}",
                match c.provider() {
                    set_cache_configuration::Provider::Redis => "REDIS",
                    set_cache_configuration::Provider::NativePersistence => "NATIVE_PERSISTENCE",
                    set_cache_configuration::Provider::Unspecified => "(none)",
                },
                c.servers
            ),
        ),
        _ => ("unknown", "unknown".into()),
    }
}
