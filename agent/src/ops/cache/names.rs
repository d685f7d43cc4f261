//! The distribution's names for the cache's services on a real host. Debian and Ubuntu: the
//! `redis-server` unit reading `/etc/redis/redis.conf`, and `stunnel4` (one unit running every
//! `/etc/stunnel/*.conf`). CentOS and RHEL: the `redis` unit reading `/etc/redis.conf` (EL 7 and 8;
//! `/etc/redis/redis.conf` from EL 9), and stunnel's per-configuration `stunnel@NAME` units
//! (`/usr/bin/stunnel /etc/stunnel/NAME.conf`), none of which their packages enable.

use crate::host::{Host, PackageFormat};

/// The cache's names on one family of distributions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Names {
    pub format: PackageFormat,
    /// Redis' systemd unit.
    pub redis_unit: &'static str,
    /// `pidfile` in redis.conf (the unit's runtime directory), where the distribution has one.
    pub redis_pid: Option<&'static str>,
    pub redis_log: &'static str,
    /// stunnel's program.
    pub stunnel_program: &'static str,
}

pub const DEBIAN: Names = Names {
    format: PackageFormat::Deb,
    redis_unit: "redis-server",
    redis_pid: Some("/run/redis/redis-server.pid"),
    redis_log: "/var/log/redis/redis-server.log",
    stunnel_program: "stunnel4",
};

pub const RHEL: Names = Names {
    format: PackageFormat::Rpm,
    redis_unit: "redis",
    // redis runs as `redis` under Type=notify: no pid file is needed, and /run is not its.
    redis_pid: None,
    redis_log: "/var/log/redis/redis.log",
    stunnel_program: "stunnel",
};

/// EL 7 and 8's redis configuration (EL 9 moved it to Debian's place).
const RHEL_REDIS_CONF: &str = "/etc/redis.conf";

impl Names {
    /// The host's names: by its package format (a host with neither dpkg nor rpm, like a
    /// sandbox host, uses Debian's).
    pub fn of(host: &Host) -> Names {
        match host.format {
            Some(PackageFormat::Rpm) => RHEL,
            Some(PackageFormat::Deb) | None => DEBIAN,
        }
    }

    /// The redis.conf redis' unit starts redis-server with.
    pub fn redis_conf(&self, host: &Host) -> &'static str {
        if self.format == PackageFormat::Rpm && host.path(RHEL_REDIS_CONF).is_file() {
            RHEL_REDIS_CONF
        } else {
            super::REDIS_CONF
        }
    }

    /// The systemd unit that runs the stunnel configuration `name`.
    pub fn stunnel_unit(&self, name: &str) -> String {
        match self.format {
            PackageFormat::Deb => "stunnel4".into(),
            PackageFormat::Rpm => format!("stunnel@{name}"),
        }
    }

    /// Whether one unit runs every stunnel configuration (Debian's `stunnel4`): removing one
    /// configuration then restarts it, and it is never disabled.
    pub fn stunnel_shared(&self) -> bool {
        self.format == PackageFormat::Deb
    }

    /// `pid` in a stunnel configuration on a real host.
    pub fn stunnel_pid(&self, name: &str) -> String {
        match self.format {
            PackageFormat::Deb => format!("/run/stunnel4/{name}.pid"),
            PackageFormat::Rpm => format!("/run/stunnel-{name}.pid"),
        }
    }

    /// `output` in a stunnel configuration on a real host; None: syslog (the journal), as
    /// stunnel logs when it has no output file.
    pub fn stunnel_output(&self, name: &str) -> Option<String> {
        match self.format {
            PackageFormat::Deb => Some(format!("/var/log/stunnel4/{name}.log")),
            PackageFormat::Rpm => None,
        }
    }
}
