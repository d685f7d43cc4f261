//! `[listener]` settings of controller.toml and their parsed form, used by the listener.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[listener]` in controller.toml. Every field has a default.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ListenerSettings {
    /// Open connections at most (TLS handshakes in progress included); more are closed at once.
    pub max_connections: usize,
    /// A client that has not finished the TLS handshake within this is disconnected.
    pub handshake_timeout: String,
    /// TCP keep-alive idle time on accepted sockets (probes follow every third of it).
    pub tcp_keepalive: String,
    /// HTTP/2 streams (calls) open at once per connection.
    pub max_concurrent_streams: u32,
    /// HTTP/2 flow-control windows in bytes: what one stream, and one connection, may have
    /// in flight. Small windows keep memory per agent low.
    pub stream_window_bytes: u32,
    pub connection_window_bytes: u32,
    /// Connections without a client certificate (handshakes in progress included) at once;
    /// when full, a new connection from a source holding fewer than the biggest source closes
    /// one of the biggest source's (its oldest idle one first); others are closed at once. The rest of `max_connections`
    /// is left to agents and operators.
    pub max_unauthenticated: usize,
    /// The same, per source address (an IPv6 source is its /64); more are closed at once.
    pub max_unauthenticated_per_source: usize,
    /// A handshaken connection without a client certificate that sends nothing for this long
    /// is closed.
    pub unauthenticated_idle_timeout: String,
    /// ... and it is closed after this in any case (enrollment takes one call).
    pub unauthenticated_lifetime: String,
}

impl Default for ListenerSettings {
    fn default() -> Self {
        Self {
            max_connections: 20_000,
            handshake_timeout: "10s".into(),
            tcp_keepalive: "60s".into(),
            max_concurrent_streams: 64,
            stream_window_bytes: 256 * 1024,
            connection_window_bytes: 1024 * 1024,
            max_unauthenticated: 2_000,
            max_unauthenticated_per_source: 32,
            unauthenticated_idle_timeout: "10s".into(),
            unauthenticated_lifetime: "60s".into(),
        }
    }
}

/// [`ListenerSettings`] parsed.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub tcp_keepalive: Duration,
    pub max_concurrent_streams: u32,
    pub stream_window_bytes: u32,
    pub connection_window_bytes: u32,
    /// At most `max_connections`.
    pub max_unauthenticated: usize,
    pub max_unauthenticated_per_source: usize,
    pub unauthenticated_idle_timeout: Duration,
    pub unauthenticated_lifetime: Duration,
}

impl ListenerSettings {
    pub fn limits(&self) -> anyhow::Result<Limits> {
        use anyhow::{Context, ensure};
        let dur = |name: &str, s: &str| {
            clustermgr_shared::duration::parse_duration(s)
                .with_context(|| format!("invalid [listener] {name} {s:?} (e.g. 10s)"))
        };
        ensure!(
            self.max_connections > 0,
            "[listener] max_connections must be at least 1"
        );
        ensure!(
            self.max_concurrent_streams > 0,
            "[listener] max_concurrent_streams must be at least 1"
        );
        // HTTP/2 bounds: at least the default 64 KiB - 1, at most 2^31 - 1.
        for (name, v) in [
            ("stream_window_bytes", self.stream_window_bytes),
            ("connection_window_bytes", self.connection_window_bytes),
        ] {
            ensure!(
                (65_535..=i32::MAX as u32).contains(&v),
                "[listener] {name} must be between 65535 and 2147483647"
            );
        }
        let handshake_timeout = dur("handshake_timeout", &self.handshake_timeout)?;
        let tcp_keepalive = dur("tcp_keepalive", &self.tcp_keepalive)?;
        ensure!(
            !handshake_timeout.is_zero() && tcp_keepalive >= Duration::from_secs(1),
            "[listener] handshake_timeout must be positive and tcp_keepalive at least 1s"
        );
        ensure!(
            self.max_unauthenticated > 0 && self.max_unauthenticated_per_source > 0,
            "[listener] max_unauthenticated and max_unauthenticated_per_source must be at least 1"
        );
        let unauthenticated_idle_timeout = dur(
            "unauthenticated_idle_timeout",
            &self.unauthenticated_idle_timeout,
        )?;
        let unauthenticated_lifetime =
            dur("unauthenticated_lifetime", &self.unauthenticated_lifetime)?;
        ensure!(
            !unauthenticated_idle_timeout.is_zero() && !unauthenticated_lifetime.is_zero(),
            "[listener] unauthenticated_idle_timeout and unauthenticated_lifetime must be positive"
        );
        Ok(Limits {
            max_connections: self.max_connections,
            handshake_timeout,
            tcp_keepalive,
            max_concurrent_streams: self.max_concurrent_streams,
            stream_window_bytes: self.stream_window_bytes,
            connection_window_bytes: self.connection_window_bytes,
            max_unauthenticated: self.max_unauthenticated.min(self.max_connections),
            max_unauthenticated_per_source: self.max_unauthenticated_per_source,
            unauthenticated_idle_timeout,
            unauthenticated_lifetime,
        })
    }
}
