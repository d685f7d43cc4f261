//! The controller's listener. It accepts TCP itself so that it can bound what an anonymous
//! client costs: a cap on open connections (handshakes included; beyond it a connection is
//! closed at once), TCP keep-alive on every accepted socket, and a deadline for the TLS
//! handshake. Handshakes run concurrently in their own tasks and never hold up `accept`;
//! finished TLS streams go to tonic through `serve_with_incoming`.
//!
//! The rustls server config sits behind [`TlsSwitch`]: a new server certificate or a new set of
//! trusted CAs (CA rotation) applies to every connection accepted after [`TlsSwitch::set`],
//! without a restart; open connections keep what they negotiated.

use serde::{Deserialize, Serialize};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo};

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
        Ok(Limits {
            max_connections: self.max_connections,
            handshake_timeout,
            tcp_keepalive,
            max_concurrent_streams: self.max_concurrent_streams,
            stream_window_bytes: self.stream_window_bytes,
            connection_window_bytes: self.connection_window_bytes,
        })
    }
}

/// The server TLS config in force; replaced as a whole (new server certificate, new trusted
/// CAs).
pub struct TlsSwitch {
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsSwitch {
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self {
            current: RwLock::new(config),
        }
    }

    /// The config new connections get.
    pub fn get(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Connections accepted from now on use `config`.
    pub fn set(&self, config: Arc<ServerConfig>) {
        match self.current.write() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
    }
}

/// An accepted, handshaken connection. It holds its slot under the connection cap until it is
/// dropped. tonic sees the TLS stream's connect info, so `Request::peer_certs` and
/// `Request::remote_addr` work as with tonic's own TLS.
pub struct Conn {
    inner: TlsStream<TcpStream>,
    _slot: OwnedSemaphorePermit,
}

impl Connected for Conn {
    type ConnectInfo = TlsConnectInfo<TcpConnectInfo>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Binds `addr` (HOST:PORT) with a long accept queue, so that a burst of connections (agents
/// coming back after a controller restart) is not turned away by the kernel before `accept`.
pub async fn bind(addr: &str) -> io::Result<TcpListener> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the address resolved to nothing");
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(a) {
            Ok(()) => return socket.listen(4096),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Accepts on `listener` until the returned stream is dropped; yields handshaken connections.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<TlsSwitch>,
    limits: Limits,
) -> ReceiverStream<Result<Conn, io::Error>> {
    let (tx, rx) = mpsc::channel::<Result<Conn, io::Error>>(256);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::spawn(async move {
        let mut refused = 0u64;
        let mut last_report: Option<Instant> = None;
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => break,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                drop(tcp);
                refused += 1;
                if last_report.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    tracing::warn!(
                        refused,
                        max = limits.max_connections,
                        "connection limit reached; new connections are closed"
                    );
                    refused = 0;
                    last_report = Some(Instant::now());
                }
                continue;
            };
            if let Err(e) = tune(&tcp, limits.tcp_keepalive) {
                tracing::debug!(%peer, error = %e, "cannot set socket options");
            }
            let acceptor = TlsAcceptor::from(tls.get());
            let tx = tx.clone();
            let deadline = limits.handshake_timeout;
            tokio::spawn(async move {
                match tokio::time::timeout(deadline, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx
                            .send(Ok(Conn {
                                inner: stream,
                                _slot: slot,
                            }))
                            .await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

fn tune(tcp: &TcpStream, keepalive: Duration) -> io::Result<()> {
    tcp.set_nodelay(true)?;
    let ka = socket2::TcpKeepalive::new()
        .with_time(keepalive)
        .with_interval((keepalive / 3).max(Duration::from_secs(1)))
        .with_retries(3);
    socket2::SockRef::from(tcp).set_tcp_keepalive(&ka)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_bad_values_are_refused() {
        let l = ListenerSettings::default().limits().unwrap();
        assert_eq!(l.max_connections, 20_000);
        assert_eq!(l.handshake_timeout, Duration::from_secs(10));
        let bad = ListenerSettings {
            max_connections: 0,
            ..Default::default()
        };
        assert!(bad.limits().is_err());
        let bad = ListenerSettings {
            stream_window_bytes: 10,
            ..Default::default()
        };
        assert!(bad.limits().is_err());
        let partial: ListenerSettings = toml::from_str("max_connections = 5").unwrap();
        assert_eq!(partial.max_connections, 5);
        assert_eq!(partial.handshake_timeout, "10s");
    }
}
