//! Telling a service manager how the daemon is doing: systemd's readiness
//! protocol (`sd_notify`), for a unit with `Type=notify`
//! (contrib/systemd/vxswitch.service).
//!
//! When systemd starts a `Type=notify` service it sets `NOTIFY_SOCKET` to
//! a Unix datagram socket: a path, or an abstract name written `@name`.
//! The daemon sends `READY=1` once its socket serves (systemd then starts
//! what is ordered after it, such as dockerd) and `STOPPING=1` when its
//! shutdown starts (the server calls back on its own thread, so the message
//! leaves before the process can exit). Without `NOTIFY_SOCKET` nothing is
//! sent.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// A connection to the service manager's notification socket.
pub struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
    /// `NOTIFY_SOCKET` as given, for messages.
    name: String,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` asks for, if it is set and not empty.
    pub fn from_env() -> Result<Option<Notifier>, String> {
        match std::env::var("NOTIFY_SOCKET") {
            Ok(name) if !name.is_empty() => Notifier::new(&name).map(Some),
            _ => Ok(None),
        }
    }

    /// A notifier for the socket `name`: an absolute path, or `@` and an
    /// abstract socket name.
    pub fn new(name: &str) -> Result<Notifier, String> {
        let addr = if let Some(abstract_name) = name.strip_prefix('@') {
            SocketAddr::from_abstract_name(abstract_name.as_bytes())
        } else if name.starts_with('/') {
            SocketAddr::from_pathname(name)
        } else {
            return Err(format!(
                "NOTIFY_SOCKET={name} is neither a path nor an @abstract socket name"
            ));
        }
        .map_err(|e| format!("NOTIFY_SOCKET={name}: {e}"))?;
        let sock =
            UnixDatagram::unbound().map_err(|e| format!("cannot open a datagram socket: {e}"))?;
        Ok(Notifier {
            sock,
            addr,
            name: name.to_string(),
        })
    }

    /// Sends one state change, e.g. `READY=1`.
    pub fn send(&self, state: &str) -> io::Result<()> {
        self.sock
            .send_to_addr(state.as_bytes(), &self.addr)
            .map(drop)
    }

    /// Sends `state`; a failure costs one log line, never the daemon.
    pub fn tell(&self, state: &str) {
        if let Err(e) = self.send(state) {
            eprintln!(
                "vxswitch: warning: cannot tell the service manager {state} at NOTIFY_SOCKET={}: {e}",
                self.name
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_and_to_an_abstract_name() {
        let dir = std::env::temp_dir().join(format!("vxswitch-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let systemd = UnixDatagram::bind(&path).unwrap();
        Notifier::new(path.to_str().unwrap())
            .unwrap()
            .send("READY=1")
            .unwrap();
        let mut buf = [0u8; 64];
        let n = systemd.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        std::fs::remove_dir_all(&dir).unwrap();

        let name = format!("vxswitch-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let systemd = UnixDatagram::bind_addr(&addr).unwrap();
        Notifier::new(&format!("@{name}"))
            .unwrap()
            .send("STOPPING=1")
            .unwrap();
        let n = systemd.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn a_relative_name_is_refused() {
        let e = Notifier::new("notify.sock").err().unwrap();
        assert_eq!(
            e,
            "NOTIFY_SOCKET=notify.sock is neither a path nor an @abstract socket name"
        );
    }
}
