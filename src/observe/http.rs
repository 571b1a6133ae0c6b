//! The metrics endpoint: a tiny HTTP/1.1 server that answers `GET /metrics`
//! with the text exposition, on its own thread.
//!
//! Bounded on purpose, since anyone who can reach the address can talk to
//! it: one connection at a time (a scrape takes a millisecond; others wait
//! in the listen backlog), a request head of at most [`MAX_HEAD`] bytes
//! that must arrive within [`HEAD_TIMEOUT`], a reply that must be taken
//! within [`WRITE_TIMEOUT`], and every connection closed after its one
//! reply (`Connection: close`). Only `GET` (and `HEAD`) of `/metrics` is
//! served; anything else gets its status (400, 404, 405, 408, 431) and is
//! counted in `vxswitch_metrics_http_requests_total{code}`, which every page
//! ends with. The head parser never panics and never grows beyond
//! [`MAX_HEAD`]; the body of a request is never read.
//!
//! The page itself comes from the `render` function the server is given
//! (the daemon's snapshot of its counters); if that fails (the control
//! thread did not answer in time), the scraper gets 503 and the next scrape
//! tries again.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::expo::{Exposition, Kind};

/// Longest request head (request line and headers) read.
pub const MAX_HEAD: usize = 8 * 1024;
/// A request head must be complete within this of the connection.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// A reply must be taken within this.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the page could not be rendered: the scraper gets 503 with this text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError(pub String);

/// What a request head asks for, or the status that refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// `GET /metrics`; `head_only` for `HEAD`.
    Metrics {
        head_only: bool,
    },
    Refused(Status),
}

/// The statuses the server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    Timeout,
    HeadTooLarge,
    Unavailable,
}

impl Status {
    const ALL: [Status; 7] = [
        Status::Ok,
        Status::BadRequest,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::Timeout,
        Status::HeadTooLarge,
        Status::Unavailable,
    ];

    fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::Timeout => 408,
            Status::HeadTooLarge => 431,
            Status::Unavailable => 503,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::Timeout => "Request Timeout",
            Status::HeadTooLarge => "Request Header Fields Too Large",
            Status::Unavailable => "Service Unavailable",
        }
    }

    fn index(self) -> usize {
        Status::ALL.iter().position(|&s| s == self).unwrap_or(0)
    }
}

/// Reads the request line of a complete head: what it asks for.
pub fn parse_head(head: &[u8]) -> Ask {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = head[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&head[..line_end]);
    let Ok(line) = std::str::from_utf8(line) else {
        return Ask::Refused(Status::BadRequest);
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Ask::Refused(Status::BadRequest);
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Ask::Refused(Status::BadRequest);
    }
    let path = target.split('?').next().unwrap_or(target);
    if path != "/metrics" {
        return Ask::Refused(Status::NotFound);
    }
    match method {
        "GET" => Ask::Metrics { head_only: false },
        "HEAD" => Ask::Metrics { head_only: true },
        _ => Ask::Refused(Status::MethodNotAllowed),
    }
}

/// The end of the head in `buf` (past its blank line), if it is there.
fn head_end(buf: &[u8]) -> Option<usize> {
    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
        return Some(p + 4);
    }
    buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2)
}

/// The metrics endpoint, serving until dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// Listens on `addr` (port 0 picks a free one: see
    /// [`MetricsServer::local_addr`]) and serves `render`'s page.
    pub fn start(
        addr: SocketAddr,
        render: impl FnMut() -> Result<String, RenderError> + Send + 'static,
    ) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("vxswitch-metrics".into())
                .spawn(move || serve(listener, render, &stop))?
        };
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept; an unspecified address is reached on
        // loopback.
        let mut to = self.addr;
        if to.ip().is_unspecified() {
            to.set_ip(match to {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&to, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    listener: TcpListener,
    mut render: impl FnMut() -> Result<String, RenderError>,
    stop: &AtomicBool,
) {
    let mut answered = [0u64; Status::ALL.len()];
    let mut buf = vec![0u8; MAX_HEAD];
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut conn) = conn else {
            // Out of fds or a connection reset before accept: wait a
            // moment rather than spin.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let ask = read_head(&mut conn, &mut buf);
        let (status, body, head_only) = match ask {
            Ask::Metrics { head_only } => match render() {
                Ok(mut page) => {
                    answered[Status::Ok.index()] += 1;
                    append_http_counters(&mut page, &answered);
                    (Status::Ok, page, head_only)
                }
                Err(RenderError(why)) => (Status::Unavailable, format!("{why}\n"), false),
            },
            Ask::Refused(s) => (s, format!("{}\n", refusal_text(s)), false),
        };
        if status != Status::Ok {
            answered[status.index()] += 1;
        }
        let _ = respond(&mut conn, status, &body, head_only);
    }
}

fn refusal_text(s: Status) -> &'static str {
    match s {
        Status::NotFound | Status::MethodNotAllowed => {
            "vxswitch serves only GET /metrics (the Prometheus text format)"
        }
        Status::Timeout => "the request head did not arrive in time",
        Status::HeadTooLarge => "the request head is too large",
        _ => "malformed request; send GET /metrics HTTP/1.1",
    }
}

/// Reads one request head, within [`HEAD_TIMEOUT`] and [`MAX_HEAD`].
fn read_head(conn: &mut TcpStream, buf: &mut [u8]) -> Ask {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let mut len = 0;
    loop {
        if let Some(end) = head_end(&buf[..len]) {
            return parse_head(&buf[..end]);
        }
        if len == buf.len() {
            return Ask::Refused(Status::HeadTooLarge);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || conn.set_read_timeout(Some(left)).is_err() {
            return Ask::Refused(Status::Timeout);
        }
        match conn.read(&mut buf[len..]) {
            Ok(0) => return Ask::Refused(Status::BadRequest),
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ask::Refused(Status::Timeout)
            }
            Err(_) => return Ask::Refused(Status::BadRequest),
        }
    }
}

fn respond(conn: &mut TcpStream, status: Status, body: &str, head_only: bool) -> io::Result<()> {
    conn.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let content_type = if status == Status::Ok {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: \
         close\r\n\r\n",
        status.code(),
        status.reason(),
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    if !head_only {
        conn.write_all(body.as_bytes())?;
    }
    conn.flush()?;
    // Half-close and drain briefly, so the reply is not reset by unread
    // request bytes.
    let _ = conn.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// The endpoint's own counters, at the end of every page.
fn append_http_counters(page: &mut String, answered: &[u64]) {
    let mut e = Exposition::new();
    e.family(
        "vxswitch_metrics_http_requests_total",
        Kind::Counter,
        "Requests to the metrics endpoint, by the status they were answered with.",
    );
    for s in Status::ALL {
        e.count(&[("code", &s.code().to_string())], answered[s.index()]);
    }
    page.push_str(&e.finish());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, req: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(req).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn heads_parse_without_panicking() {
        let m = Ask::Metrics { head_only: false };
        assert_eq!(parse_head(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), m);
        assert_eq!(parse_head(b"GET /metrics?x=1 HTTP/1.0\n\n"), m);
        assert_eq!(
            parse_head(b"HEAD /metrics HTTP/1.1\r\n\r\n"),
            Ask::Metrics { head_only: true }
        );
        assert_eq!(
            parse_head(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Ask::Refused(Status::MethodNotAllowed)
        );
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\n\r\n"),
            Ask::Refused(Status::NotFound)
        );
        for bad in [
            &b""[..],
            b"\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET /metrics\r\n\r\n",
            b"GET /metrics HTTP/1.1 x\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics SPDY/3\r\n\r\n",
            b"\xff\xfe /metrics HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parse_head(bad), Ask::Refused(Status::BadRequest), "{bad:?}");
        }
    }

    #[test]
    fn serves_the_page_and_refuses_the_rest_with_counts() {
        let mut n = 0;
        let srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), move || {
            n += 1;
            Ok(format!(
                "# HELP x_total X.\n# TYPE x_total counter\nx_total {n}\n"
            ))
        })
        .unwrap();
        let addr = srv.local_addr();
        let r = get(addr, b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("version=0.0.4"), "{r}");
        assert!(r.contains("\nx_total 1\n"), "{r}");
        let r = get(addr, b"GET /other HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");
        let r = get(addr, &[b'a'; MAX_HEAD + 10]);
        assert!(r.starts_with("HTTP/1.1 431"), "{r}");
        let r = get(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(r.contains("\nx_total 2\n"), "{r}");
        assert!(
            r.contains("vxswitch_metrics_http_requests_total{code=\"200\"} 2\n"),
            "{r}"
        );
        assert!(
            r.contains("vxswitch_metrics_http_requests_total{code=\"404\"} 1\n"),
            "{r}"
        );
        assert!(
            r.contains("vxswitch_metrics_http_requests_total{code=\"431\"} 1\n"),
            "{r}"
        );
        drop(srv);
    }

    #[test]
    fn a_silent_client_times_out_and_the_next_is_served() {
        let srv =
            MetricsServer::start("127.0.0.1:0".parse().unwrap(), || Ok(String::new())).unwrap();
        let addr = srv.local_addr();
        let mut silent = TcpStream::connect(addr).unwrap();
        silent.write_all(b"GET /metr").unwrap();
        let r = get(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(
            r.contains("vxswitch_metrics_http_requests_total{code=\"408\"} 1\n"),
            "{r}"
        );
        let mut out = String::new();
        silent.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    }

    #[test]
    fn a_render_failure_is_503() {
        let srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), || {
            Err(RenderError("the control thread did not answer".into()))
        })
        .unwrap();
        let r = get(srv.local_addr(), b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(r.contains("did not answer"), "{r}");
    }
}
