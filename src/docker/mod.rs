//! `vxswitch docker-plugin`: Docker's libnetwork remote network driver,
//! as a client of the vxswitch daemon's control socket.
//!
//! Docker finds the plugin by its socket, `/run/docker/plugins/NAME.sock`
//! (NAME is the driver name of `docker network create -d NAME`), and sends
//! it HTTP POSTs with JSON bodies ([`http`]); each call maps to daemon
//! requests ([`driver`]). See `docs/docker.md`.
//!
//! One thread per connection, at most [`MAX_CONNECTIONS`] at once: Docker
//! keeps a couple of keep-alive connections and may call for several
//! networks at the same time; the daemon serializes the requests anyway.
//! Each connection's time is bounded ([`ConnLimits`]): between requests it
//! may idle [`IDLE_TIMEOUT`]; from a request's first byte, the whole
//! request must arrive within [`REQUEST_TIMEOUT`] (a 408 otherwise) and the
//! reply be taken within [`DAEMON_TIMEOUT`], however the bytes trickle.
//! The socket is made mode 0660 (owner root, Docker's group decides who
//! else), whatever the umask.

pub mod driver;
pub mod http;
pub mod names;

use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::ctl::{Client, ClientError, Request};
use driver::{Backend, Driver};
use http::{DeadlineStream, HttpError};

/// Where Docker looks for the plugin named `vxswitch`.
pub const DEFAULT_PLUGIN_SOCKET: &str = "/run/docker/plugins/vxswitch.sock";
/// Most connections served at once; more get a 503 and are closed.
pub const MAX_CONNECTIONS: usize = 32;
/// How long a keep-alive connection may stay idle between requests.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a request may take to arrive whole, from its first byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the daemon may take for one request (port.add does netlink work).
pub const DAEMON_TIMEOUT: Duration = Duration::from_secs(30);

/// The plugin's settings.
#[derive(Clone, Debug)]
pub struct PluginOptions {
    /// The socket Docker connects to.
    pub plugin_socket: PathBuf,
    /// The vxswitch daemon's control socket.
    pub daemon_socket: PathBuf,
    /// Where each Docker network's creation request is kept (see
    /// [`Driver`]), so a network the daemon lost when it restarted is made
    /// again when Docker next attaches a container to it.
    pub state_dir: PathBuf,
    /// dockerd's API socket, asked for the container name of each joined
    /// endpoint (see [`names`]); `None`: names are not looked up.
    pub docker_socket: Option<PathBuf>,
    /// Log every call and its reply to stderr.
    pub debug: bool,
}

/// The default of [`PluginOptions::state_dir`].
pub const DEFAULT_STATE_DIR: &str = "/var/lib/vxswitch/docker";

/// Reaches the daemon with one connection per request: the plugin holds no
/// connection open between Docker's calls, so a daemon restart costs only
/// the calls made while it is down.
pub struct SocketBackend {
    pub socket: PathBuf,
}

impl Backend for SocketBackend {
    fn call(&self, req: &Request) -> Result<Value, ClientError> {
        Client::connect(&self.socket)?
            .with_timeout(DAEMON_TIMEOUT)
            .call(req)
    }
}

/// Binds the plugin socket. A leftover socket nobody listens on is replaced;
/// one with a live listener is an error (another plugin runs).
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(format!(
                "{} exists and is not a socket; remove it or choose another --plugin-socket",
                path.display()
            ));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(format!(
                "another plugin is listening on {}; stop it first or choose another \
                 --plugin-socket",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove the stale socket {}: {e}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    // Not whatever the umask left: root and the socket's group, as the
    // daemon's control socket.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE)).map_err(|e| {
        let _ = std::fs::remove_file(path);
        format!("cannot set the mode of {}: {e}", path.display())
    })?;
    Ok(listener)
}

/// The plugin socket's mode.
pub const SOCKET_MODE: u32 = 0o660;

/// How long a connection may take, at most (see the module's doc).
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// Between requests.
    pub idle: Duration,
    /// From a request's first byte to its last.
    pub request: Duration,
    /// For the reply to be taken.
    pub reply: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            idle: IDLE_TIMEOUT,
            request: REQUEST_TIMEOUT,
            reply: DAEMON_TIMEOUT,
        }
    }
}

/// Runs the plugin until SIGTERM or SIGINT, then removes its socket.
pub fn run(opts: PluginOptions) -> Result<(), String> {
    std::fs::create_dir_all(&opts.state_dir).map_err(|e| {
        format!(
            "cannot create the state directory {}: {e}; choose another with --state-dir",
            opts.state_dir.display()
        )
    })?;
    let listener = bind(&opts.plugin_socket)?;
    let socket = opts.plugin_socket.clone();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = std::fs::remove_file(&socket);
            eprintln!("vxswitch: docker plugin stopped");
            std::process::exit(0);
        }
    });
    let backend = SocketBackend {
        socket: opts.daemon_socket.clone(),
    };
    match backend.call(&Request::Ping(crate::ctl::proto::NoArgs {})) {
        Ok(_) => {}
        Err(e) => {
            eprintln!("vxswitch: warning: {e}; Docker's calls will fail until the daemon runs")
        }
    }
    let mut driver = Driver::new(backend).with_state_dir(opts.state_dir.clone());
    let names = match &opts.docker_socket {
        Some(docker) => {
            let daemon = Arc::new(SocketBackend {
                socket: opts.daemon_socket.clone(),
            });
            let labeler = names::Labeler::new(docker.clone(), daemon, opts.debug);
            driver = driver.with_labeler(Arc::new(labeler));
            format!("container names from dockerd at {}", docker.display())
        }
        None => "no container names".to_string(),
    };
    eprintln!(
        "vxswitch: docker plugin listening on {} (daemon {}, {names})",
        opts.plugin_socket.display(),
        opts.daemon_socket.display()
    );
    serve(listener, Arc::new(driver), opts.debug);
    Ok(())
}

/// Accepts connections forever, one thread each.
pub fn serve<B: Backend + 'static>(listener: UnixListener, driver: Arc<Driver<B>>, debug: bool) {
    serve_with(listener, driver, debug, ConnLimits::default());
}

/// [`serve`] with other time limits (tests).
pub fn serve_with<B: Backend + 'static>(
    listener: UnixListener,
    driver: Arc<Driver<B>>,
    debug: bool,
    limits: ConnLimits,
) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let mut stream = match conn {
            Ok(s) => s,
            Err(e) => {
                eprintln!("vxswitch: docker plugin: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let body = err_body(&format!(
                "vxswitch plugin: too many connections ({MAX_CONNECTIONS}); try again"
            ));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = http::write_response(&mut stream, 503, &body, true);
            continue;
        }
        let (driver, active) = (driver.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("docker-conn".into())
            .spawn(move || {
                if let Err(e) = connection(stream, &driver, debug, limits) {
                    eprintln!("vxswitch: docker plugin connection: {e}");
                }
                active.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            eprintln!("vxswitch: docker plugin: cannot start a thread: {e}");
        }
    }
}

fn err_body(msg: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "Err": msg })).unwrap_or_default()
}

/// Serves the requests of one connection until it closes or a limit is
/// reached.
fn connection<B: Backend>(
    stream: UnixStream,
    driver: &Driver<B>,
    debug: bool,
    limits: ConnLimits,
) -> io::Result<()> {
    let mut writer = DeadlineStream::new(stream.try_clone()?, Instant::now());
    let mut reader = BufReader::new(DeadlineStream::new(stream, Instant::now() + limits.idle));
    loop {
        // Idle until the next request's first byte...
        reader.get_mut().set_deadline(Instant::now() + limits.idle);
        match reader.fill_buf() {
            Ok([]) => return Ok(()),
            Ok(_) => {}
            // Idle keep-alive connection: Docker opens a new one.
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(()),
            Err(e) => return Err(e),
        }
        // ... then the whole request within its own deadline.
        reader
            .get_mut()
            .set_deadline(Instant::now() + limits.request);
        let req = match http::read_request(&mut reader) {
            Ok(r) => r,
            Err(HttpError::Closed) => return Ok(()),
            Err(HttpError::Io(e)) if e.kind() == io::ErrorKind::TimedOut => {
                let body = err_body(&format!(
                    "vxswitch plugin: the request did not arrive whole within {:?}",
                    limits.request
                ));
                writer.set_deadline(Instant::now() + Duration::from_secs(1));
                let _ = http::write_response(&mut writer, 408, &body, true);
                return Ok(());
            }
            Err(HttpError::Io(e)) => return Err(e),
            Err(HttpError::Bad { status, message }) => {
                let body = err_body(&format!("vxswitch plugin: {message}"));
                writer.set_deadline(Instant::now() + limits.reply);
                return http::write_response(&mut writer, status, &body, true);
            }
        };
        let (status, body) = if req.method != "POST" {
            (
                405,
                err_body(&format!(
                    "vxswitch plugin: {} {}: the plugin API takes POST requests",
                    req.method, req.path
                )),
            )
        } else {
            match driver.handle(&req.path, &req.body) {
                Ok(v) => (200, serde_json::to_vec(&v).unwrap_or_default()),
                Err(msg) => {
                    eprintln!("vxswitch: docker plugin: {}: {msg}", req.path);
                    (500, err_body(&msg))
                }
            }
        };
        if debug {
            eprintln!(
                "vxswitch: docker plugin: {} {} -> {status} {}",
                req.path,
                String::from_utf8_lossy(&req.body).trim_end(),
                String::from_utf8_lossy(&body)
            );
        }
        writer.set_deadline(Instant::now() + limits.reply);
        http::write_response(&mut writer, status, &body, req.close)?;
        if req.close {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Answers every daemon request with `{}`.
    struct Nothing;

    impl Backend for Nothing {
        fn call(&self, _: &Request) -> Result<Value, ClientError> {
            Ok(json!({}))
        }
    }

    fn socket_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("vxsw-plugin-{tag}-{}.sock", std::process::id()))
    }

    /// Sends `raw` and reads one reply (head and Content-Length body).
    fn exchange(s: &mut UnixStream, raw: &[u8]) -> (String, String) {
        s.write_all(raw).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut head = String::new();
        let mut len = 0;
        loop {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut r, &mut line).unwrap();
            if let Some(v) = line.strip_prefix("Content-Length: ") {
                len = v.trim().parse().unwrap();
            }
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        (head, String::from_utf8(body).unwrap())
    }

    #[test]
    fn serves_keep_alive_calls_and_refuses_what_it_cannot_serve() {
        let path = socket_path("serve");
        let listener = bind(&path).unwrap();
        // A second plugin on the same socket is refused.
        let e = bind(&path).unwrap_err();
        assert!(e.starts_with("another plugin is listening on"), "{e}");
        std::thread::spawn(move || serve(listener, Arc::new(Driver::new(Nothing)), false));
        let mut s = UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (head, body) = exchange(
            &mut s,
            b"POST /Plugin.Activate HTTP/1.1\r\nHost: plugin\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Type: application/vnd.docker.plugins.v1.2+json"));
        assert_eq!(body, r#"{"Implements":["NetworkDriver"]}"#);
        // The same connection carries the next call.
        let (head, body) = exchange(
            &mut s,
            b"POST /NetworkDriver.DiscoverNew HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
        );
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert_eq!(body, "{}");
        let (head, body) = exchange(&mut s, b"GET /Plugin.Activate HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 405 "), "{head}");
        assert!(
            body.contains("the plugin API takes POST requests"),
            "{body}"
        );
        let (head, body) = exchange(
            &mut s,
            b"POST /NetworkDriver.Join HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert!(head.starts_with("HTTP/1.1 411 ") && head.contains("Connection: close"));
        assert!(
            body.contains("send the body with a Content-Length"),
            "{body}"
        );
        // Then the connection is closed.
        let mut rest = Vec::new();
        assert_eq!(s.read_to_end(&mut rest).unwrap(), 0);

        // Beyond MAX_CONNECTIONS, a connection gets a 503 and is closed.
        let idle: Vec<UnixStream> = (0..MAX_CONNECTIONS)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        let mut extra = UnixStream::connect(&path).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut reply = String::new();
        extra.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 503 "), "{reply}");
        assert!(reply.contains("too many connections (32)"), "{reply}");
        drop(idle);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_slow_client_is_cut_off_at_the_request_deadline() {
        let path = socket_path("slow");
        let _ = std::fs::remove_file(&path);
        let listener = bind(&path).unwrap();
        let limits = ConnLimits {
            idle: Duration::from_secs(5),
            request: Duration::from_millis(700),
            reply: Duration::from_secs(5),
        };
        std::thread::spawn(move || {
            serve_with(listener, Arc::new(Driver::new(Nothing)), false, limits)
        });
        let mut s = UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let t0 = std::time::Instant::now();
        // A byte every 100 ms, far within any per-read timeout: the whole
        // request is what the deadline bounds.
        let mut reply = Vec::new();
        for byte in b"POST /Plugin.Activate HTTP/1.1\r\nHost: plugin\r\n"
            .iter()
            .cycle()
        {
            if s.write_all(&[*byte]).is_err() {
                break;
            }
            let mut buf = [0u8; 512];
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => reply.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "still connected after 5 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.read_to_end(&mut reply);
        let text = String::from_utf8_lossy(&reply);
        assert!(
            text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{text}"
        );
        assert!(text.contains("did not arrive whole within 700ms"), "{text}");
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_millis(650), "{waited:?}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn the_socket_is_mode_0660_whatever_the_umask() {
        let path = socket_path("mode");
        let _ = std::fs::remove_file(&path);
        let listener = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o660, "{mode:o}");
        drop(listener);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_file_is_not() {
        let path = socket_path("stale");
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        drop(bind(&path).expect("the stale socket is replaced"));
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, b"x").unwrap();
        let e = bind(&path).unwrap_err();
        assert!(e.contains("exists and is not a socket"), "{e}");
        let _ = std::fs::remove_file(&path);
    }
}
