//! systemd's readiness protocol (`sd_notify`): a datagram such as `READY=1` sent to the
//! socket named by `$NOTIFY_SOCKET` (a path, or an abstract name written `@name`).
//!
//! The services send it (their units are `Type=notify`, so `systemctl start X` returns once X
//! answers); `gluu-serverd` receives it from `systemd-nspawn` when it manages the machine
//! itself, as systemd does for the package's `Type=notify` unit.

use std::ffi::OsStr;
use std::io::ErrorKind;
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use anyhow::{Context, Result};

/// Send `state` (e.g. `READY=1`) to `$NOTIFY_SOCKET`; `false` when the variable is unset
/// (not started by a service manager).
pub fn notify(state: &str) -> Result<bool> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let sock = UnixDatagram::unbound().context("creating a notification socket")?;
    let bytes = target.as_bytes();
    let sent = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr)),
        None => sock.send_to(state.as_bytes(), OsStr::from_bytes(bytes)),
    };
    sent.with_context(|| format!("notifying {}", target.to_string_lossy()))?;
    Ok(true)
}

/// A socket receiving notifications, under an abstract name private to this process.
pub struct Listener {
    sock: UnixDatagram,
    name: String,
}

impl Listener {
    pub fn bind() -> Result<Listener> {
        let name = format!(
            "gluu-serverd/{}/{:016x}",
            std::process::id(),
            rand::random::<u64>()
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes())
            .context("naming the notification socket")?;
        let sock = UnixDatagram::bind_addr(&addr).context("binding the notification socket")?;
        Ok(Listener { sock, name })
    }

    /// The value of `NOTIFY_SOCKET` for the process that reports to this listener.
    pub fn env_value(&self) -> String {
        format!("@{}", self.name)
    }

    /// The next message, or `None` when none came within `wait`.
    pub fn recv(&self, wait: Duration) -> Result<Option<String>> {
        self.sock
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .context("setting the notification socket's timeout")?;
        let mut buf = [0u8; 4096];
        match self.sock.recv(&mut buf) {
            Ok(n) => Ok(Some(String::from_utf8_lossy(&buf[..n]).into_owned())),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(None),
            Err(e) => Err(e).context("receiving a notification"),
        }
    }
}

/// The value of `KEY=` in a notification message.
pub fn field<'a>(message: &'a str, key: &str) -> Option<&'a str> {
    message
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_receives_what_notify_sends() {
        let listener = Listener::bind().expect("bind");
        let sock = UnixDatagram::unbound().expect("socket");
        let addr =
            SocketAddr::from_abstract_name(&listener.env_value().as_bytes()[1..]).expect("addr");
        sock.send_to_addr(b"READY=1\nX_NSPAWN_LEADER_PID=42\n", &addr)
            .expect("send");
        let msg = listener
            .recv(Duration::from_secs(5))
            .expect("recv")
            .expect("a message");
        assert_eq!(field(&msg, "READY"), Some("1"));
        assert_eq!(field(&msg, "X_NSPAWN_LEADER_PID"), Some("42"));
        assert_eq!(field(&msg, "STATUS"), None);
        assert!(
            listener
                .recv(Duration::from_millis(20))
                .expect("recv")
                .is_none()
        );
    }
}
