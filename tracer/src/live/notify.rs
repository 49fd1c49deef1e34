//! systemd's readiness protocol (sd_notify(3)), in the few lines it takes:
//! datagrams like `READY=1` to the socket `$NOTIFY_SOCKET` names.
//!
//! Written here rather than taken from a crate because of what it must never
//! do: block or fail the tracer. The socket is non-blocking and every error
//! is ignored, so a PID 1 that froze (its socket full, nobody reading) costs
//! a dropped status line, not a stuck tracer. Neither READY nor STATUS is
//! needed for tracing; only systemd's view of the service depends on them.

use std::{
    os::{linux::net::SocketAddrExt, unix::net::{SocketAddr, UnixDatagram}},
    path::Path,
};

/// Where `$NOTIFY_SOCKET` points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A socket file.
    Path(String),
    /// An abstract socket: `@name` in the variable, a leading NUL on the wire.
    Abstract(Vec<u8>),
}

/// Reads `$NOTIFY_SOCKET`'s value. `vsock:` addresses (systemd in a VM
/// telling its host) are not for a service and give None, as does anything
/// that is not an absolute path or `@name`.
pub fn parse_target(value: &str) -> Option<Target> {
    if let Some(name) = value.strip_prefix('@') {
        return (!name.is_empty()).then(|| Target::Abstract(name.as_bytes().to_vec()));
    }
    value.starts_with('/').then(|| Target::Path(value.to_string()))
}

pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// Messages that could not be sent (socket full or gone).
    pub failed: u64,
}

impl Notifier {
    /// The notifier of a service started with `Type=notify`; None when not
    /// run by systemd (or the socket cannot be addressed).
    pub fn from_env() -> Option<Notifier> {
        let value = std::env::var("NOTIFY_SOCKET").ok()?;
        Notifier::to(&parse_target(&value)?)
    }

    pub fn to(target: &Target) -> Option<Notifier> {
        let addr = match target {
            Target::Path(p) => SocketAddr::from_pathname(Path::new(p)).ok()?,
            Target::Abstract(name) => SocketAddr::from_abstract_name(name).ok()?,
        };
        let socket = UnixDatagram::unbound().ok()?;
        socket.set_nonblocking(true).ok()?;
        Some(Notifier { socket, addr, failed: 0 })
    }

    /// Sends one message (lines `KEY=value`); never blocks, never fails.
    pub fn send(&mut self, message: &str) {
        if self.socket.send_to_addr(message.as_bytes(), &self.addr).is_err() {
            self.failed += 1;
        }
    }
}

/// `MONOTONIC_USEC=` for `RELOADING=1`: systemd (253+) wants to know when
/// the reload began.
pub fn reloading_message(monotonic_ns: u64) -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_ns / 1000)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn targets_are_paths_or_abstract_names() {
        assert_eq!(parse_target("/run/systemd/notify"), Some(Target::Path("/run/systemd/notify".into())));
        assert_eq!(parse_target("@/org/freedesktop/systemd1/notify/1"), Some(Target::Abstract(b"/org/freedesktop/systemd1/notify/1".to_vec())));
        assert_eq!(parse_target("@"), None);
        assert_eq!(parse_target("relative"), None);
        assert_eq!(parse_target("vsock:2:1234"), None);
        assert_eq!(parse_target(""), None);
    }

    fn received(listener: &UnixDatagram) -> String {
        listener.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_to_a_socket_file() {
        let dir = std::env::temp_dir().join(format!("crashtrace-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        let mut n = Notifier::to(&parse_target(path.to_str().unwrap()).unwrap()).unwrap();
        n.send("READY=1\nSTATUS=tracing");
        assert_eq!(received(&listener), "READY=1\nSTATUS=tracing");
        assert_eq!(n.failed, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("crashtrace-notify-test-{}", std::process::id());
        let listener = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        let mut n = Notifier::to(&parse_target(&format!("@{name}")).unwrap()).unwrap();
        n.send("READY=1");
        assert_eq!(received(&listener), "READY=1");
    }

    #[test]
    fn a_full_socket_drops_the_message_instead_of_blocking() {
        // Nobody reads: the receiver's queue fills, as a frozen PID 1's would.
        let name = format!("crashtrace-notify-full-{}", std::process::id());
        let _listener = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        let mut n = Notifier::to(&Target::Abstract(name.into_bytes())).unwrap();
        let big = "STATUS=".to_string() + &"x".repeat(4000);
        for _ in 0..10_000 {
            n.send(&big);
            if n.failed > 0 {
                break;
            }
        }
        assert!(n.failed > 0, "10000 unread messages should have filled the queue");
    }

    #[test]
    fn a_missing_socket_is_counted_not_fatal() {
        let mut n = Notifier::to(&Target::Path("/nonexistent/crashtrace/notify".into())).unwrap();
        n.send("READY=1");
        assert_eq!(n.failed, 1);
    }
}
