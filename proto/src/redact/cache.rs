//! Redacted Debug for the cache messages: they carry the Redis and directory passwords.

use super::{Redacted, enum_field};
use crate::v1;

impl std::fmt::Debug for v1::set_cache_configuration::Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "Unspecified",
            Self::NativePersistence => "NativePersistence",
            Self::Redis => "Redis",
        })
    }
}

impl std::fmt::Debug for v1::ConfigureRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigureRedis")
            .field("port", &self.port)
            .field("password", &Redacted(self.password.len()))
            .field("remove", &self.remove)
            .field("keep_accepting", &self.keep_accepting)
            .finish()
    }
}

impl std::fmt::Debug for v1::ConfigureNutcracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigureNutcracker")
            .field("listen_port", &self.listen_port)
            .field("server_ports", &self.server_ports)
            .field("password", &Redacted(self.password.len()))
            .field("remove", &self.remove)
            .finish()
    }
}

impl std::fmt::Debug for v1::CacheStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheStatus")
            .field("server", &self.server)
            .field("client", &self.client)
            .field("nutcracker", &self.nutcracker)
            .field("ping_port", &self.ping_port)
            .field("password", &Redacted(self.password.len()))
            .field("require_healthy", &self.require_healthy)
            .field("programs", &self.programs)
            .finish()
    }
}

impl std::fmt::Debug for v1::SetCacheConfiguration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetCacheConfiguration")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("admin_password", &Redacted(self.admin_password.len()))
            .field(
                "provider",
                &enum_field::<v1::set_cache_configuration::Provider>(self.provider),
            )
            .field("servers", &self.servers)
            .field("redis_password", &Redacted(self.redis_password.len()))
            .field("sharded", &self.sharded)
            .finish()
    }
}

impl std::fmt::Debug for v1::SetCachePasswordRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetCachePasswordRequest")
            .field("password", &Redacted(self.password.len()))
            .field("clear", &self.clear)
            .field("dry_run", &self.dry_run)
            .field("no_wait", &self.no_wait)
            .finish()
    }
}

impl std::fmt::Debug for v1::RedisPing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPing")
            .field("port", &self.port)
            .field("password", &Redacted(self.password.len()))
            .finish()
    }
}
