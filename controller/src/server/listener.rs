//! The controller's listener. It accepts TCP itself so that it can bound what an anonymous
//! client costs: a cap on open connections (handshakes included; beyond it a connection is
//! closed at once), TCP keep-alive on every accepted socket, and a deadline for the TLS
//! handshake. Handshakes run concurrently in their own tasks and never hold up `accept`;
//! finished TLS streams go to tonic through `serve_with_incoming`.
//!
//! Connections without a client certificate (enrollment, or anyone reaching the port), TLS
//! handshakes in progress included, have a budget of their own, in all and per source (an IPv4
//! address, an IPv6 /64). A source at its cap gets no more (the connection is closed at once,
//! before any TLS work). When the whole budget is full, a source holding fewer than the source
//! holding the most gets in by closing one of that source's (an idle one before one still in
//! its handshake), and the others are closed at once: a client with no connection, such as a
//! joining agent or an operator, always gets in, and a flood costs the controller a TLS
//! handshake only when it displaces a bigger source. The rest of `max_connections` is left to
//! client-certificate peers. Such a connection, once handshaken, is closed when it sends nothing
//! for `unauthenticated_idle_timeout` and in any case after `unauthenticated_lifetime`. A client
//! certificate moves a connection out of that
//! budget at the end of its handshake.
//!
//! The rustls server config sits behind [`TlsSwitch`]: a new server certificate or a new set of
//! trusted CAs (CA rotation) applies to every connection accepted after [`TlsSwitch::set`],
//! without a restart; open connections keep what they negotiated.

pub use crate::https::TlsSwitch;
use crate::limits::Source;
pub use crate::limits::listener::{Limits, ListenerSettings};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo};

/// An accepted, handshaken connection. It holds its slot under the connection cap until it is
/// dropped. tonic sees the TLS stream's connect info, so `Request::peer_certs` and
/// `Request::remote_addr` work as with tonic's own TLS.
pub struct Conn {
    inner: TlsStream<TcpStream>,
    _slot: OwnedSemaphorePermit,
    /// Without a client certificate: its place in the unauthenticated budget and its timers.
    unauth: Option<Watch>,
}

/// What ends a connection without a client certificate: another taking its place in the
/// budget, silence for the idle timeout, or the end of its lifetime. Each ends the connection
/// with a read error, which makes the HTTP/2 server close it.
struct Watch {
    _ticket: Ticket,
    evicted: oneshot::Receiver<()>,
    idle: Pin<Box<Sleep>>,
    idle_for: Duration,
    end: Pin<Box<Sleep>>,
}

impl Watch {
    fn poll_ended(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let why = if Pin::new(&mut self.evicted).poll(cx).is_ready() {
            "closed to make room for a new connection"
        } else if self.end.as_mut().poll(cx).is_ready() {
            "lifetime of a connection without a client certificate reached"
        } else if self.idle.as_mut().poll(cx).is_ready() {
            "idle connection without a client certificate"
        } else {
            return None;
        };
        tracing::debug!(why, "closing an unauthenticated connection");
        Some(io::Error::new(io::ErrorKind::TimedOut, why))
    }
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
        let this = self.get_mut();
        if let Some(e) = this.unauth.as_mut().and_then(|w| w.poll_ended(cx)) {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (Some(w), Poll::Ready(Ok(()))) = (this.unauth.as_mut(), &r)
            && buf.filled().len() > before
        {
            let at = tokio::time::Instant::now() + w.idle_for;
            w.idle.as_mut().reset(at);
        }
        r
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

/// Connections without a client certificate, handshakes in progress included: which source
/// holds which, oldest first, and which source holds the most.
struct Unauthenticated {
    ledger: Mutex<Ledger>,
    max: usize,
    per_source: usize,
}

#[derive(Default)]
struct Ledger {
    next: u64,
    len: usize,
    /// The sender that closes each connection, by id (ids grow: lower is older).
    close: HashMap<u64, (Source, oneshot::Sender<()>)>,
    by_source: HashMap<Source, Held>,
    /// Sources by how many they hold.
    by_size: BTreeSet<(usize, Source)>,
}

#[derive(Default)]
struct Held {
    handshaking: BTreeSet<u64>,
    handshaken: BTreeSet<u64>,
}

impl Held {
    fn len(&self) -> usize {
        self.handshaking.len() + self.handshaken.len()
    }

    /// Which of them to close first: the oldest handshaken one, else the oldest handshake.
    fn victim(&self) -> Option<u64> {
        self.handshaken
            .first()
            .or(self.handshaking.first())
            .copied()
    }
}

impl Ledger {
    /// Applies `f` to the source's entry, keeping the size index and the count right.
    fn with_source(&mut self, src: Source, f: impl FnOnce(&mut Held)) {
        let held = self.by_source.entry(src).or_default();
        let before = held.len();
        f(held);
        let after = held.len();
        if after == 0 {
            self.by_source.remove(&src);
        }
        self.by_size.remove(&(before, src));
        if after > 0 {
            self.by_size.insert((after, src));
        }
        self.len = self.len + after - before;
    }

    fn insert(&mut self, id: u64, src: Source, tx: oneshot::Sender<()>) {
        self.close.insert(id, (src, tx));
        self.with_source(src, |h| {
            h.handshaking.insert(id);
        });
    }

    fn handshaken(&mut self, id: u64) {
        if let Some((src, _)) = self.close.get(&id) {
            let src = *src;
            self.with_source(src, |h| {
                if h.handshaking.remove(&id) {
                    h.handshaken.insert(id);
                }
            });
        }
    }

    /// Removes `id`; `close` tells its connection to end.
    fn remove(&mut self, id: u64, close: bool) {
        let Some((src, tx)) = self.close.remove(&id) else {
            return;
        };
        self.with_source(src, |h| {
            h.handshaking.remove(&id);
            h.handshaken.remove(&id);
        });
        if close {
            let _ = tx.send(());
        }
    }

    /// Closes the first victim of `src`; whether there was one.
    fn close_one_of(&mut self, src: Source) -> bool {
        match self.by_source.get(&src).and_then(Held::victim) {
            Some(id) => {
                self.remove(id, true);
                true
            }
            None => false,
        }
    }
}

/// A place in the unauthenticated budget, given back when dropped.
struct Ticket {
    id: u64,
    owner: Arc<Unauthenticated>,
}

impl Ticket {
    /// The handshake completed (without a client certificate).
    fn handshaken(&self) {
        self.owner.lock().handshaken(self.id);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.owner.lock().remove(self.id, false);
    }
}

impl Unauthenticated {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a new connection from `src`, or None: the connection is then closed at once,
    /// before any TLS work. A source at its cap gets no more. When the whole budget is full, a
    /// source holding fewer than the biggest source gets in by closing one of the biggest
    /// source's (its oldest idle one first), and one holding as many is refused: the budget ends
    /// up shared between sources, and a client with no connection, such as a joining agent,
    /// always gets in. Returns how many were closed.
    fn admit(self: &Arc<Self>, src: Source) -> Option<(Ticket, oneshot::Receiver<()>, usize)> {
        let mut l = self.lock();
        let mine = l.by_source.get(&src).map_or(0, Held::len);
        if mine >= self.per_source {
            return None;
        }
        let mut closed = 0;
        if l.len >= self.max {
            let &(biggest_len, biggest) = l.by_size.last()?;
            if mine >= biggest_len || !l.close_one_of(biggest) {
                return None;
            }
            closed += 1;
        }
        let id = l.next;
        l.next += 1;
        let (tx, rx) = oneshot::channel();
        l.insert(id, src, tx);
        let ticket = Ticket {
            id,
            owner: self.clone(),
        };
        Some((ticket, rx, closed))
    }
}

/// Counts events and logs them at most every 10 s.
struct Throttled {
    what: &'static str,
    count: u64,
    last: Option<Instant>,
}

impl Throttled {
    fn add(&mut self, n: u64, max: usize) {
        self.count += n;
        if self.count > 0
            && self
                .last
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            tracing::warn!(count = self.count, max, "{}", self.what);
            self.count = 0;
            self.last = Some(Instant::now());
        }
    }
}

/// Accepts on `listener` until the returned stream is dropped; yields handshaken connections.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<TlsSwitch>,
    limits: Limits,
) -> ReceiverStream<Result<Conn, io::Error>> {
    let (tx, rx) = mpsc::channel::<Result<Conn, io::Error>>(256);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let unauth = Arc::new(Unauthenticated {
        ledger: Mutex::new(Ledger::default()),
        max: limits.max_unauthenticated,
        per_source: limits.max_unauthenticated_per_source,
    });
    tokio::spawn(async move {
        let mut refused = Throttled {
            what: "connection limit reached; new connections are closed",
            count: 0,
            last: None,
        };
        let mut displaced = Throttled {
            what: "unauthenticated connection budget full (in all or for one source): new \
                   connections from the sources holding the most are closed, the others take \
                   their place",
            count: 0,
            last: None,
        };
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
                refused.add(1, limits.max_connections);
                continue;
            };
            let Some((ticket, evicted, closed)) = unauth.admit(Source::of(peer.ip())) else {
                drop(tcp);
                drop(slot);
                displaced.add(1, limits.max_unauthenticated);
                continue;
            };
            displaced.add(closed as u64, limits.max_unauthenticated);
            if let Err(e) = tune(&tcp, limits.tcp_keepalive) {
                tracing::debug!(%peer, error = %e, "cannot set socket options");
            }
            let acceptor = TlsAcceptor::from(tls.get());
            tokio::spawn(handshake(
                acceptor,
                tcp,
                peer,
                Admitted {
                    slot,
                    ticket,
                    evicted,
                },
                limits.clone(),
                tx.clone(),
            ));
        }
    });
    ReceiverStream::new(rx)
}

/// What an accepted connection holds until it is closed: its slot among all connections and,
/// until it shows a client certificate, its ticket in the unauthenticated budget (with the
/// signal that it was evicted from it).
struct Admitted {
    slot: OwnedSemaphorePermit,
    ticket: Ticket,
    evicted: oneshot::Receiver<()>,
}

/// Runs one TLS handshake (within its deadline, unless evicted first) and hands the connection
/// to the server: out of the unauthenticated budget with a client certificate, else watched.
async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    held: Admitted,
    limits: Limits,
    tx: mpsc::Sender<Result<Conn, io::Error>>,
) {
    let Admitted {
        slot,
        ticket,
        mut evicted,
    } = held;
    let handshake = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp));
    let stream = tokio::select! {
        r = handshake => match r {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
        },
        _ = &mut evicted => return tracing::debug!(%peer, "TLS handshake closed to make room for a new connection"),
    };
    let certified = stream
        .get_ref()
        .1
        .peer_certificates()
        .is_some_and(|c| !c.is_empty());
    let unauth = if certified {
        // Verified against the trusted CAs during the handshake: out of the budget.
        drop(ticket);
        None
    } else {
        ticket.handshaken();
        let now = tokio::time::Instant::now();
        Some(Watch {
            _ticket: ticket,
            evicted,
            idle: Box::pin(tokio::time::sleep_until(
                now + limits.unauthenticated_idle_timeout,
            )),
            idle_for: limits.unauthenticated_idle_timeout,
            end: Box::pin(tokio::time::sleep_until(
                now + limits.unauthenticated_lifetime,
            )),
        })
    };
    let _ = tx
        .send(Ok(Conn {
            inner: stream,
            _slot: slot,
            unauth,
        }))
        .await;
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
        // The unauthenticated budget never exceeds the whole.
        assert_eq!(partial.limits().unwrap().max_unauthenticated, 5);
        assert_eq!(l.max_unauthenticated, 2_000);
        assert_eq!(l.unauthenticated_idle_timeout, Duration::from_secs(10));
    }

    #[test]
    fn a_source_at_its_cap_is_refused_and_a_full_budget_is_shared() {
        let u = Arc::new(Unauthenticated {
            ledger: Mutex::new(Ledger::default()),
            max: 4,
            per_source: 3,
        });
        let a = Source::of("10.0.0.1".parse().unwrap());
        let b = Source::of("10.0.0.2".parse().unwrap());
        let c = Source::of("10.0.0.3".parse().unwrap());
        let (a1, mut a1_closed, _) = u.admit(a).unwrap();
        let (a2, mut a2_closed, _) = u.admit(a).unwrap();
        let (_a3, mut a3_closed, _) = u.admit(a).unwrap();
        // At its cap: refused, nothing of its own closed.
        assert!(u.admit(a).is_none());
        assert!(a1_closed.try_recv().is_err());
        let (b1, mut b1_closed, n) = u.admit(b).unwrap();
        assert_eq!(n, 0);
        // Full (a: 3, b: 1). b holds fewer than a: a's oldest idle connection (a2, handshaken;
        // a1 is still in its handshake) makes room.
        a2.handshaken();
        let (_b2, _, n) = u.admit(b).unwrap();
        assert_eq!(n, 1);
        assert!(a2_closed.try_recv().is_ok());
        assert!(a1_closed.try_recv().is_err());
        // a: 2, b: 2. A third source with nothing gets in; b, as big as the biggest, does not.
        assert!(u.admit(b).is_none());
        let (_c1, _, n) = u.admit(c).unwrap();
        assert_eq!(n, 1);
        // (a and b are as big: the tie goes to the higher address, b; its oldest is b1.)
        assert!(b1_closed.try_recv().is_ok());
        assert!(a1_closed.try_recv().is_err() && a3_closed.try_recv().is_err());
        // A connection that ends gives its place back.
        drop(b1);
        drop(a1);
        let l = u.lock();
        assert_eq!(l.len, 3);
        assert_eq!(l.by_source[&b].len(), 1);
        assert_eq!(l.by_size.iter().map(|(n, _)| n).sum::<usize>(), 3);
    }
}
