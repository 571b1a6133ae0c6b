//! Container names for Docker endpoints.
//!
//! libnetwork's remote driver API never tells a driver which container an
//! endpoint belongs to, so after each Join the plugin asks dockerd itself,
//! over its Engine API socket: `GET /networks/NETWORK_ID` lists the
//! network's endpoints on this host under `Containers`, keyed by container
//! ID, each with its `EndpointID` and `Name` (the container's name). The
//! name becomes the port's `container` label (`port.set`), which
//! `vxswitch port ls` shows as CONTAINER.
//!
//! Docker records the endpoint's container only after Join returns (it
//! waits for the reply), so the lookup runs in a thread of its own, retried
//! with a short backoff until [`LOOKUP_DEADLINE`]; Join never waits for it
//! and never fails because of it. When dockerd cannot be asked at all (no
//! socket, no permission), the label stays empty and one line is logged,
//! not one per endpoint.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use std::collections::BTreeMap;

use super::driver::Backend;
use super::http::{self, GetError};
use crate::ctl::proto::{strip_os_error, PortSet, Request};
use crate::ctl::{ClientError, ErrorKind};

/// dockerd's API socket when neither `--docker-socket` nor `DOCKER_HOST`
/// names one.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// How long after Join the plugin keeps looking for the endpoint's container.
pub const LOOKUP_DEADLINE: Duration = Duration::from_secs(5);
/// How long one request to dockerd may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Most lookups running at once; a Join beyond that gets no label.
pub const MAX_LOOKUPS: usize = 64;

/// The dockerd socket to ask: `--docker-socket`, else `DOCKER_HOST` if it is
/// `unix://PATH`, else [`DEFAULT_DOCKER_SOCKET`]. A `DOCKER_HOST` of
/// another kind (`tcp://`, `ssh://`) cannot be used and is an error.
pub fn docker_socket(flag: Option<PathBuf>, docker_host: Option<&str>) -> Result<PathBuf, String> {
    if let Some(p) = flag {
        return Ok(p);
    }
    match docker_host.map(str::trim).filter(|h| !h.is_empty()) {
        None => Ok(PathBuf::from(DEFAULT_DOCKER_SOCKET)),
        Some(h) => match h.strip_prefix("unix://") {
            Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
            _ => Err(format!(
                "DOCKER_HOST={h} is not a unix socket (unix:///PATH); the plugin asks dockerd \
                 for container names only over its unix socket; give --docker-socket PATH"
            )),
        },
    }
}

#[derive(Debug, Deserialize)]
struct NetworkResource {
    #[serde(rename = "Containers", default)]
    containers: Option<BTreeMap<String, EndpointResource>>,
}

#[derive(Debug, Deserialize)]
struct EndpointResource {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "EndpointID", default)]
    endpoint_id: String,
}

/// The name of the container whose endpoint is `endpoint_id`, from the
/// body of `GET /networks/ID`; `None` if Docker does not list it (yet).
/// The name is given without Docker's leading `/`.
pub fn endpoint_container(body: &[u8], endpoint_id: &str) -> Result<Option<String>, String> {
    let net: NetworkResource = serde_json::from_slice(body)
        .map_err(|e| format!("unexpected network inspect reply from dockerd: {e}"))?;
    Ok(net
        .containers
        .unwrap_or_default()
        .into_values()
        .find(|c| c.endpoint_id.eq_ignore_ascii_case(endpoint_id))
        .map(|c| c.name.trim_start_matches('/').to_string())
        .filter(|n| !n.is_empty()))
}

/// Why one lookup found no name.
enum Miss {
    /// dockerd does not list the endpoint (yet); try again.
    NotYet,
    /// dockerd cannot be asked at all; give up.
    Unreachable(String),
    /// dockerd answered something unexpected; try again, it may pass.
    Failed(String),
}

/// Looks up container names after Join and labels the ports with them.
pub struct Labeler {
    socket: PathBuf,
    daemon: Arc<dyn Backend>,
    deadline: Duration,
    debug: bool,
    /// dockerd could not be reached at the last try: the next failure is
    /// not logged again (one line per outage, not per endpoint).
    unreachable: AtomicBool,
    running: Arc<AtomicUsize>,
}

impl Labeler {
    /// Asks dockerd at `socket`, labels through `daemon`.
    pub fn new(socket: PathBuf, daemon: Arc<dyn Backend>, debug: bool) -> Labeler {
        Labeler {
            socket,
            daemon,
            deadline: LOOKUP_DEADLINE,
            debug,
            unreachable: AtomicBool::new(false),
            running: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The dockerd socket asked.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Looks for the container of `endpoint_id` on `network_id` in a thread
    /// of its own and labels `port` with its name when found.
    pub fn start(self: &Arc<Self>, network_id: &str, endpoint_id: &str, port: String) {
        if self.running.fetch_add(1, Ordering::SeqCst) >= MAX_LOOKUPS {
            self.running.fetch_sub(1, Ordering::SeqCst);
            if self.debug {
                eprintln!(
                    "vxswitch: docker plugin: {MAX_LOOKUPS} container name lookups running; \
                     port {port} gets no container label"
                );
            }
            return;
        }
        let me = self.clone();
        let (network_id, endpoint_id) = (network_id.to_string(), endpoint_id.to_string());
        let spawned = std::thread::Builder::new()
            .name("docker-name".into())
            .spawn(move || {
                me.label(&network_id, &endpoint_id, &port);
                me.running.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            self.running.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Retries the lookup until it finds the name or the deadline passes.
    fn label(&self, network_id: &str, endpoint_id: &str, port: &str) {
        let start = Instant::now();
        let end = start + self.deadline;
        let mut wait = Duration::from_millis(50);
        for attempt in 1.. {
            match self.lookup(network_id, endpoint_id) {
                Ok(name) => {
                    if self.debug {
                        eprintln!(
                            "vxswitch: docker plugin: port {port} is container {name} \
                             (asked dockerd {attempt} time(s) in {} ms)",
                            start.elapsed().as_millis()
                        );
                    }
                    self.set(port, name);
                    return;
                }
                Err(Miss::Unreachable(why)) => {
                    let why = strip_os_error(&why);
                    if !self.unreachable.swap(true, Ordering::SeqCst) {
                        eprintln!(
                            "vxswitch: docker plugin: cannot ask dockerd for container names \
                             ({why}); 'vxswitch port ls' shows no CONTAINER for Docker \
                             endpoints until it can (see --docker-socket)"
                        );
                    }
                    return;
                }
                Err(Miss::NotYet) => {}
                Err(Miss::Failed(why)) => {
                    if self.debug {
                        eprintln!("vxswitch: docker plugin: port {port}: {why}");
                    }
                }
            }
            if Instant::now() + wait > end {
                if self.debug {
                    eprintln!(
                        "vxswitch: docker plugin: dockerd lists no container for endpoint \
                         {endpoint_id} within {:?}; port {port} has no container label",
                        self.deadline
                    );
                }
                return;
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_millis(500));
        }
    }

    fn lookup(&self, network_id: &str, endpoint_id: &str) -> Result<String, Miss> {
        let path = format!("/networks/{network_id}");
        let (status, body) = match http::get(&self.socket, &path, REQUEST_TIMEOUT) {
            Ok(r) => r,
            Err(e @ GetError::Connect { .. }) => return Err(Miss::Unreachable(e.to_string())),
            Err(GetError::Exchange(e)) => return Err(Miss::Failed(format!("dockerd: {e}"))),
        };
        if self.unreachable.swap(false, Ordering::SeqCst) {
            eprintln!(
                "vxswitch: docker plugin: dockerd answers at {} again; container names are \
                 looked up",
                self.socket.display()
            );
        }
        match status {
            200 => match endpoint_container(&body, endpoint_id) {
                Ok(Some(name)) => Ok(name),
                Ok(None) => Err(Miss::NotYet),
                Err(e) => Err(Miss::Failed(e)),
            },
            // The network is not in dockerd's store yet (or any more).
            404 => Err(Miss::NotYet),
            other => Err(Miss::Failed(format!(
                "dockerd answered GET {path} with {other}: {}",
                String::from_utf8_lossy(&body).trim()
            ))),
        }
    }

    fn set(&self, port: &str, name: String) {
        let req = Request::PortSet(PortSet {
            name: port.to_string(),
            container: Some(name.clone()),
        });
        match self.daemon.call(&req) {
            Ok(_) => {}
            // The endpoint went away meanwhile.
            Err(ClientError::Remote(e)) if e.kind == ErrorKind::NotFound => {}
            Err(e) => eprintln!(
                "vxswitch: docker plugin: cannot label port {port} with container {name}: {e}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixListener;
    use std::sync::Mutex;

    const NID: &str = "3f1c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a";
    const EID: &str = "ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12";

    #[test]
    fn the_socket_comes_from_the_flag_then_docker_host() {
        let flag = Some(PathBuf::from("/tmp/d.sock"));
        assert_eq!(
            docker_socket(flag, Some("unix:///x.sock")).unwrap(),
            PathBuf::from("/tmp/d.sock")
        );
        assert_eq!(
            docker_socket(None, Some("unix:///run/user/1000/docker.sock")).unwrap(),
            PathBuf::from("/run/user/1000/docker.sock")
        );
        assert_eq!(
            docker_socket(None, None).unwrap(),
            PathBuf::from(DEFAULT_DOCKER_SOCKET)
        );
        assert_eq!(
            docker_socket(None, Some("")).unwrap(),
            PathBuf::from(DEFAULT_DOCKER_SOCKET)
        );
        let e = docker_socket(None, Some("tcp://10.0.0.1:2375")).unwrap_err();
        assert!(
            e.starts_with("DOCKER_HOST=tcp://10.0.0.1:2375 is not a unix socket"),
            "{e}"
        );
    }

    #[test]
    fn the_endpoint_is_found_in_network_inspect() {
        // As dockerd 20.10 answers GET /networks/ID (abridged).
        let body = json!({
            "Name": "app", "Id": NID, "Driver": "vxswitch",
            "Containers": {
                "9d2c": {"Name": "db", "EndpointID": "ffff", "MacAddress": "02:42:0a:58:00:03",
                         "IPv4Address": "10.88.0.3/24", "IPv6Address": ""},
                "5e1a": {"Name": "web", "EndpointID": EID, "MacAddress": "02:42:0a:58:00:02",
                         "IPv4Address": "10.88.0.2/24", "IPv6Address": ""}
            },
            "Options": {}, "Labels": {}
        })
        .to_string();
        assert_eq!(
            endpoint_container(body.as_bytes(), EID).unwrap(),
            Some("web".to_string())
        );
        assert_eq!(endpoint_container(body.as_bytes(), "abcd").unwrap(), None);
        let slash = json!({"Containers": {"1": {"Name": "/web", "EndpointID": EID}}}).to_string();
        assert_eq!(
            endpoint_container(slash.as_bytes(), EID)
                .unwrap()
                .as_deref(),
            Some("web")
        );
        let none = json!({"Name": "app", "Containers": null}).to_string();
        assert_eq!(endpoint_container(none.as_bytes(), EID).unwrap(), None);
        let e = endpoint_container(b"\"no such network\"", EID).unwrap_err();
        assert!(e.starts_with("unexpected network inspect reply"), "{e}");
    }

    #[derive(Default)]
    struct Daemon {
        sent: Mutex<Vec<Request>>,
    }

    impl Backend for Daemon {
        fn call(&self, req: &Request) -> Result<Value, ClientError> {
            self.sent.lock().unwrap().push(req.clone());
            Ok(json!({}))
        }
    }

    fn socket_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("vxsw-dockerd-{tag}-{}.sock", std::process::id()))
    }

    /// A dockerd that answers 404, then a network without the endpoint,
    /// then one with it (Docker records the endpoint after Join).
    fn fake_dockerd(path: &Path) -> std::thread::JoinHandle<Vec<String>> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let mut asked = Vec::new();
            let replies = [
                (404, json!({"message": "network not found"})),
                (200, json!({"Name": "app", "Containers": {}})),
                (
                    200,
                    json!({"Name": "app", "Containers": {"5e1a": {"Name": "web", "EndpointID": EID}}}),
                ),
            ];
            for (status, body) in replies {
                let (s, _) = listener.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                asked.push(line.trim_end().to_string());
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                        break;
                    }
                }
                let body = body.to_string();
                let mut w = s;
                write!(
                    w,
                    "HTTP/1.0 {status} X\r\nContent-Type: application/json\r\n\r\n{body}"
                )
                .unwrap();
            }
            asked
        })
    }

    #[test]
    fn the_port_is_labelled_once_docker_lists_the_endpoint() {
        let path = socket_path("ok");
        let dockerd = fake_dockerd(&path);
        let daemon = Arc::new(Daemon::default());
        let labeler = Labeler::new(path.clone(), daemon.clone(), false);
        labeler.label(NID, EID, "vxab12cd34ef56");
        assert_eq!(
            *daemon.sent.lock().unwrap(),
            vec![Request::PortSet(PortSet {
                name: "vxab12cd34ef56".into(),
                container: Some("web".into())
            })]
        );
        let asked = dockerd.join().unwrap();
        assert_eq!(asked, vec![format!("GET /networks/{NID} HTTP/1.0"); 3]);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn without_dockerd_nothing_is_labelled_and_one_line_is_logged() {
        let daemon = Arc::new(Daemon::default());
        let labeler = Arc::new(Labeler::new(
            socket_path("none-such"),
            daemon.clone(),
            false,
        ));
        let started = Instant::now();
        labeler.label(NID, EID, "vxab12cd34ef56");
        assert!(labeler.unreachable.load(Ordering::SeqCst));
        // No retries against a socket that is not there.
        assert!(started.elapsed() < Duration::from_secs(1));
        // The thread-per-Join path returns at once as well.
        labeler.start(NID, EID, "vxab12cd34ef56".into());
        let deadline = Instant::now() + Duration::from_secs(5);
        while labeler.running.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(labeler.running.load(Ordering::SeqCst), 0);
        assert!(daemon.sent.lock().unwrap().is_empty());
    }
}
