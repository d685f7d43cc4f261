//! Dials the controller: TCP (optionally from a given source address), rustls with our own
//! config, HTTP/2 via tonic. One code path for the agent, the CLI and the tests.

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("invalid controller address {0:?}: expected HOST:PORT")]
    BadAddress(String),
    #[error("cannot reach the controller at {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
}

/// Splits `HOST:PORT` (IPv6 as `[::1]:7443`) into host and port.
pub fn split_host_port(addr: &str) -> Result<(String, u16), DialError> {
    let bad = || DialError::BadAddress(addr.to_string());
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// Options for one connection.
#[derive(Clone, Debug, Default)]
pub struct DialOptions {
    /// Local address to connect from (the sandbox gives every host its own loopback address).
    pub bind: Option<IpAddr>,
    pub connect_timeout: Option<Duration>,
    /// HTTP/2 keep-alive ping interval (and timeout): how fast a dead connection is noticed.
    /// Default 10 s.
    pub keepalive: Option<Duration>,
}

async fn tcp_connect(host: &str, port: u16, bind: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address resolved");
    for addr in addrs {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = bind.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        match socket.connect(addr).await {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Connects to `addr` with the given TLS client config and returns a ready channel.
pub async fn connect(
    addr: &str,
    tls: Arc<ClientConfig>,
    opts: DialOptions,
) -> Result<Channel, DialError> {
    let (host, port) = split_host_port(addr)?;
    let server_name =
        ServerName::try_from(host.clone()).map_err(|_| DialError::BadAddress(addr.to_string()))?;
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|_| DialError::BadAddress(addr.to_string()))?
        .connect_timeout(opts.connect_timeout.unwrap_or(Duration::from_secs(10)))
        .http2_keep_alive_interval(opts.keepalive.unwrap_or(Duration::from_secs(10)))
        .keep_alive_timeout(opts.keepalive.unwrap_or(Duration::from_secs(10)))
        .keep_alive_while_idle(true);
    let connector = TlsConnector::from(tls);
    let bind = opts.bind;
    let timeout = opts.connect_timeout.unwrap_or(Duration::from_secs(10));
    endpoint
        .connect_with_connector(tower::service_fn(move |_uri: http::Uri| {
            let connector = connector.clone();
            let server_name = server_name.clone();
            let host = host.clone();
            async move {
                let fut = async {
                    let tcp = tcp_connect(&host, port, bind).await?;
                    let tls = connector.connect(server_name, tcp).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(tls))
                };
                tokio::time::timeout(timeout, fut).await.map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS connect timed out")
                })?
            }
        }))
        .await
        .map_err(|source| DialError::Connect {
            addr: addr.to_string(),
            source,
        })
}

/// The innermost cause of an error chain, for messages a person reads.
pub fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_parsing() {
        assert_eq!(split_host_port("a.b:7443").unwrap(), ("a.b".into(), 7443));
        assert_eq!(split_host_port("[::1]:1").unwrap(), ("::1".into(), 1));
        assert!(split_host_port("nohost").is_err());
        assert!(split_host_port(":1").is_err());
        assert!(split_host_port("h:99999").is_err());
    }
}
