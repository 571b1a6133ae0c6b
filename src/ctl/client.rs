//! A blocking client of the control socket: connect, send one request
//! line, read one reply line.
//!
//! Blocking is right here: the CLI does one thing and exits. The reply is
//! awaited with a deadline (not a per-`read` timeout, which a daemon
//! trickling bytes could extend forever) and read up to a size cap, so a
//! wedged or confused peer costs the CLI a bounded wait and bounded memory.
//!
//! A connection kept between requests may be closed by the daemon while
//! idle (to make room for another client, or after its idle timeout; see
//! docs/protocol.md, "Limits"). The daemon closes only connections with no
//! request in progress, so a request that meets such a closed connection
//! before any byte of its reply was never seen: [`Client::call`] then
//! connects again and sends it once more.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::proto::{strip_os_error, CtlError, Request, Response};

/// How long the client waits for a reply by default. `port.add` does
/// netlink work in the daemon; everything else answers in microseconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest reply the client accepts (a full 64k-entry `fdb show` is ~10 MB).
pub const MAX_REPLY: usize = 256 * 1024 * 1024;

/// Why a request did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot connect to vxswitch daemon at {}: {}{}",
        path.display(),
        os_message(source),
        connect_hint(path, source)
    )]
    Connect { path: PathBuf, source: io::Error },
    #[error("talking to the vxswitch daemon at {}: {}", path.display(), os_message(source))]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "the vxswitch daemon at {} did not answer within {timeout:?}; it may be overloaded \
         or stuck",
        path.display()
    )]
    Timeout { path: PathBuf, timeout: Duration },
    #[error(
        "the vxswitch daemon at {} closed the connection without replying; see its log",
        path.display()
    )]
    Closed { path: PathBuf },
    #[error(
        "unexpected reply from the vxswitch daemon at {}: {message} (is it the same version \
         as this CLI?)",
        path.display()
    )]
    Protocol { path: PathBuf, message: String },
    /// The daemon refused the request; the message says why.
    #[error("{0}")]
    Remote(CtlError),
}

/// `io::Error`'s text without the " (os error N)" suffix, which says
/// nothing to a person.
fn os_message(e: &io::Error) -> String {
    strip_os_error(&e.to_string())
}

/// What to do about a failed connect, in parentheses, by cause: nobody
/// listening (no file, or a dead daemon's leftover) is not the same
/// problem as a socket this user may not open (mode 0660).
fn connect_hint(path: &Path, e: &io::Error) -> String {
    use std::os::unix::fs::MetadataExt;
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            " (is 'vxswitch daemon' running?)".into()
        }
        io::ErrorKind::PermissionDenied => match std::fs::metadata(path) {
            Ok(m) => {
                let group = account_name("/etc/group", m.gid());
                format!(
                    " (the socket belongs to {}:{group} with mode {:04o}: run as root, or as a \
                     member of group {group})",
                    account_name("/etc/passwd", m.uid()),
                    m.mode() & 0o7777
                )
            }
            Err(_) => " (run as root, or as a member of the socket's group)".into(),
        },
        io::ErrorKind::WouldBlock => {
            " (the daemon has too many connections waiting to be accepted; try again)".into()
        }
        _ => String::new(),
    }
}

/// The name of user or group `id` from `/etc/passwd` or `/etc/group`
/// (`name:x:id:...`), else the number.
fn account_name(file: &str, id: u32) -> String {
    let id_text = id.to_string();
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut f = line.split(':');
                let name = f.next()?;
                (f.nth(1)? == id_text).then(|| name.to_string())
            })
        })
        .unwrap_or(id_text)
}

/// A connection to the daemon.
#[derive(Debug)]
pub struct Client {
    path: PathBuf,
    stream: UnixStream,
    timeout: Duration,
    /// Bytes read past the last reply line.
    pending: Vec<u8>,
    /// A reply came on this connection already: a close before the next
    /// reply may be the daemon closing it while idle.
    used: bool,
}

impl Client {
    pub fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        let path = path.as_ref().to_path_buf();
        let stream = UnixStream::connect(&path).map_err(|source| ClientError::Connect {
            path: path.clone(),
            source,
        })?;
        Ok(Client {
            path,
            stream,
            timeout: DEFAULT_TIMEOUT,
            pending: Vec::new(),
            used: false,
        })
    }

    /// Sets how long to wait for each reply.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// Sends `req` and returns the result payload as JSON.
    pub fn call(&mut self, req: &Request) -> Result<Value, ClientError> {
        match self.call_once(req) {
            Err(ClientError::Closed { .. }) if self.used && self.pending.is_empty() => {
                // Closed while idle, before the request was read: again,
                // on a new connection.
                let fresh = Client::connect(&self.path)?;
                self.stream = fresh.stream;
                self.used = false;
                self.call_once(req)
            }
            other => other,
        }
    }

    fn call_once(&mut self, req: &Request) -> Result<Value, ClientError> {
        let line = req.to_line();
        self.stream
            .set_write_timeout(Some(self.timeout))
            .map_err(|e| self.io(e))?;
        let reply = match self.stream.write_all(&line) {
            Ok(()) => self.read_line()?,
            // The daemon may have refused the request with a reply (too
            // many clients) and closed the connection: show that reply if
            // any. Writing then fails with EPIPE, or with ECONNRESET when
            // the daemon closed with our bytes unread.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) =>
            {
                match self.read_line() {
                    Ok(reply) => reply,
                    Err(ClientError::Closed { path }) if self.used => {
                        return Err(ClientError::Closed { path })
                    }
                    Err(_) => return Err(self.io(e)),
                }
            }
            Err(e) => return Err(self.io(e)),
        };
        self.used = true;
        let resp: Response = serde_json::from_slice(&reply).map_err(|e| ClientError::Protocol {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        match (resp.ok, resp.result, resp.error) {
            (true, Some(v), _) => Ok(v),
            (false, _, Some(e)) => Err(ClientError::Remote(e)),
            _ => Err(ClientError::Protocol {
                path: self.path.clone(),
                message: "neither a result nor an error".into(),
            }),
        }
    }

    /// Sends `req` and decodes the result as `T`.
    pub fn call_as<T: DeserializeOwned>(&mut self, req: &Request) -> Result<T, ClientError> {
        let v = self.call(req)?;
        serde_json::from_value(v).map_err(|e| ClientError::Protocol {
            path: self.path.clone(),
            message: format!("{} result: {e}", req.name()),
        })
    }

    /// After a `monitor` request: the next event, waiting as long as it
    /// takes (the connection carries nothing else from then on).
    pub fn next_event(&mut self) -> Result<super::proto::MonitorEvent, ClientError> {
        self.timeout = Duration::from_secs(365 * 24 * 3600);
        let line = self.read_line()?;
        let ev: super::proto::EventLine =
            serde_json::from_slice(&line).map_err(|e| ClientError::Protocol {
                path: self.path.clone(),
                message: format!("monitor event: {e}"),
            })?;
        Ok(ev.event)
    }

    fn io(&self, source: io::Error) -> ClientError {
        if matches!(
            source.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            return ClientError::Timeout {
                path: self.path.clone(),
                timeout: self.timeout,
            };
        }
        ClientError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn read_line(&mut self) -> Result<Vec<u8>, ClientError> {
        let deadline = Instant::now() + self.timeout;
        let mut buf = [0u8; 64 * 1024];
        loop {
            if let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=pos).collect();
                line.pop();
                return Ok(line);
            }
            if self.pending.len() > MAX_REPLY {
                return Err(ClientError::Protocol {
                    path: self.path.clone(),
                    message: format!("reply longer than {MAX_REPLY} bytes"),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.io(io::ErrorKind::TimedOut.into()));
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| self.io(e))?;
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    return Err(ClientError::Closed {
                        path: self.path.clone(),
                    })
                }
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A daemon that closed after replying may reset the
                // connection; the reply, if any, was read above.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(ClientError::Closed {
                        path: self.path.clone(),
                    })
                }
                Err(e) => return Err(self.io(e)),
            }
        }
    }
}

/// Connects, sends one request and decodes its result.
pub fn request<T: DeserializeOwned>(path: &Path, req: &Request) -> Result<T, ClientError> {
    Client::connect(path)?.call_as(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_error_says_what_to_do() {
        let path =
            std::env::temp_dir().join(format!("vxswitch-nonexistent-{}.sock", std::process::id()));
        let e = Client::connect(&path).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "cannot connect to vxswitch daemon at {}: No such file or directory (is \
                 'vxswitch daemon' running?)",
                path.display()
            )
        );
    }

    #[test]
    fn permission_denied_says_who_may_connect() {
        let dir = std::env::temp_dir();
        let e = io::Error::from_raw_os_error(libc::EACCES);
        let hint = connect_hint(&dir, &e);
        assert!(
            hint.starts_with(" (the socket belongs to ")
                && hint.contains(": run as root, or as a member of group "),
            "{hint}"
        );
        let gone = dir.join(format!("vxswitch-nonexistent-{}.sock", std::process::id()));
        assert_eq!(
            connect_hint(&gone, &e),
            " (run as root, or as a member of the socket's group)"
        );
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(
            connect_hint(&gone, &refused),
            " (is 'vxswitch daemon' running?)"
        );
        assert_eq!(account_name("/etc/passwd", 0), "root");
        assert_eq!(account_name("/nonexistent", 4242), "4242");
    }

    #[test]
    fn os_message_strips_the_errno() {
        let e = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(os_message(&e), "Connection refused");
        assert_eq!(os_message(&io::Error::other("plain")), "plain");
    }
}
