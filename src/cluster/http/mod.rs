//! A small blocking HTTP/1.1 client: just enough to speak etcd's JSON gateway.
//!
//! Why not a crate: the cluster thread needs POST with a JSON body, keep-alive,
//! chunked responses that stream for minutes (watches) and hard limits on
//! everything the network sends. The usual clients bring an async runtime
//! (hyper, reqwest) or read whole bodies without a cap (ureq's defaults), and
//! none of that is hard: this file is the status line, the headers and the
//! chunked coding.
//!
//! Contracts, because every byte here comes from the network:
//! - nothing panics on any input: parsing is slice-checked, sizes are parsed
//!   with checked arithmetic (a chunk size of 17 hex digits is refused, not
//!   wrapped);
//! - nothing blocks forever: connect, read and write carry deadlines
//!   (`Conn::request`), and a streaming read (`BodyStream::read_some`) returns
//!   "nothing yet" when its timeout passes;
//! - nothing grows without bound: the head is capped (`Limits::max_head`),
//!   a whole body is capped (`Limits::max_body`), chunk extensions and
//!   trailers are capped.
//!
//! `https://` endpoints speak TLS (rustls, see `tls`): the stream is a
//! `Stream::Plain` or `Stream::Tls`, chosen and set up once per connection.
//!
//! The decoding is sans-IO (`parse_head`, `ChunkedDecoder`) so it is tested
//! with byte fixtures, including every split of a response into two reads.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

mod decode;
mod tls;

use decode::BodyDecoder;
pub use decode::{parse_head, parse_http_date, ChunkedDecoder, DecodeError, Head};
pub use tls::{TlsConfig, TlsFiles};

/// Size caps for what a server may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Status line and headers together.
    pub max_head: usize,
    /// A whole (non-streaming) body, after chunked decoding.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 * 1024,
            max_body: 64 * 1024 * 1024,
        }
    }
}

/// Bytes read from the socket per `read` call.
const READ_CHUNK: usize = 64 * 1024;

/// Why an HTTP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: io::Error,
    },
    #[error("I/O error with {endpoint}: {source}")]
    Io {
        endpoint: String,
        #[source]
        source: io::Error,
    },
    #[error("timed out waiting for {endpoint}")]
    Timeout { endpoint: String },
    #[error("{endpoint} closed the connection before the response was complete")]
    Closed { endpoint: String },
    #[error("malformed HTTP response from {endpoint}: {what}")]
    Malformed { endpoint: String, what: String },
    #[error("HTTP response from {endpoint} too large: {what} over {limit} bytes")]
    TooLarge {
        endpoint: String,
        what: &'static str,
        limit: usize,
    },
    #[error("invalid endpoint {0:?}: expected http://HOST:PORT or https://HOST:PORT")]
    BadEndpoint(String),
    #[error("TLS with {endpoint} failed: {what}")]
    Tls { endpoint: String, what: String },
    #[error(
        "{endpoint} is https: give the CA certificate that signed etcd's certificate with \
         --cluster-cacert FILE ([cluster] cacert)"
    )]
    NoTlsConfig { endpoint: String },
}

impl DecodeError {
    fn at(self, endpoint: &str) -> HttpError {
        match self {
            DecodeError::Malformed(what) => HttpError::Malformed {
                endpoint: endpoint.to_string(),
                what,
            },
            DecodeError::TooLarge { what, limit } => HttpError::TooLarge {
                endpoint: endpoint.to_string(),
                what,
                limit,
            },
        }
    }
}

/// An etcd client URL: `http://HOST:PORT` or `https://HOST:PORT`
/// (`HOST:PORT` alone means http).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// `https://`: TLS, verifying the server's certificate for `host`.
    pub tls: bool,
}

impl Endpoint {
    /// The `Host:` header value and the text in error messages.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.authority())
    }
}

impl FromStr for Endpoint {
    type Err = HttpError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || HttpError::BadEndpoint(s.to_string());
        let (rest, tls) = if let Some(r) = s.strip_prefix("http://") {
            (r, false)
        } else if let Some(r) = s.strip_prefix("https://") {
            (r, true)
        } else if s.contains("://") {
            return Err(bad());
        } else {
            (s, false)
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains('/') || rest.contains('@') {
            return Err(bad());
        }
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, after) = r.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if after.is_empty() => 2379,
                None => return Err(bad()),
            };
            (h.to_string(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h.to_string(), p.parse().map_err(|_| bad())?),
                Some(_) => return Err(bad()),
                None => (rest.to_string(), 2379),
            }
        };
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(Endpoint { host, port, tls })
    }
}

/// A whole response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    pub date: Option<SystemTime>,
}

/// A connection's byte stream: TCP, or TLS over TCP.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            // A peer that closes without close_notify: the same end of
            // stream as on plain TCP (the HTTP framing tells truncation).
            Stream::Tls(s) => match s.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// One keep-alive connection to one endpoint.
pub struct Conn {
    label: String,
    authority: String,
    stream: Stream,
    /// The TLS configuration of an https connection (names the CA file in
    /// a verification error).
    tls: Option<TlsConfig>,
    /// Received bytes not yet consumed are `buf[pos..]`.
    buf: Vec<u8>,
    pos: usize,
    limits: Limits,
    reusable: bool,
    /// Completed at least one exchange: a failure before the first response
    /// byte then means the server closed an idle connection (retry once).
    used: bool,
}

/// What `BodyStream::read_some` got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Body bytes were appended.
    Data,
    /// Nothing arrived within the timeout.
    Idle,
    /// The body is complete.
    End,
}

fn io_err(label: &str, e: io::Error) -> HttpError {
    io_err_tls(label, "", None, e)
}

fn io_err_tls(label: &str, host: &str, tls: Option<&TlsConfig>, e: io::Error) -> HttpError {
    if let Some(t) = tls::tls_cause(&e) {
        return HttpError::Tls {
            endpoint: label.to_string(),
            what: tls::describe(t, host, tls),
        };
    }
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => HttpError::Timeout {
            endpoint: label.to_string(),
        },
        _ => HttpError::Io {
            endpoint: label.to_string(),
            source: e,
        },
    }
}

fn remaining(deadline: Instant, label: &str) -> Result<Duration, HttpError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(HttpError::Timeout {
            endpoint: label.to_string(),
        });
    }
    Ok(left)
}

impl Conn {
    /// Connects within `timeout` (each resolved address in turn), with
    /// `TCP_NODELAY` and TCP keepalive probes so a peer host that vanished
    /// is noticed on an idle watch within about 11 s. An `https` endpoint
    /// needs `tls` and completes the TLS handshake within the same timeout.
    pub fn connect(
        ep: &Endpoint,
        timeout: Duration,
        limits: Limits,
        tls: Option<&TlsConfig>,
    ) -> Result<Conn, HttpError> {
        let label = ep.to_string();
        let tls = match (ep.tls, tls) {
            (false, _) => None,
            (true, Some(t)) => Some(t.clone()),
            (true, None) => return Err(HttpError::NoTlsConfig { endpoint: label }),
        };
        let deadline = Instant::now() + timeout;
        let addrs = (ep.host.as_str(), ep.port)
            .to_socket_addrs()
            .map_err(|source| HttpError::Connect {
                endpoint: label.clone(),
                source,
            })?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "host has no address");
        for addr in addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                last = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                break;
            }
            match TcpStream::connect_timeout(&addr, left) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let ka = socket2::TcpKeepalive::new()
                        .with_time(Duration::from_secs(5))
                        .with_interval(Duration::from_secs(2))
                        .with_retries(3);
                    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&ka);
                    let stream = match &tls {
                        None => Stream::Plain(stream),
                        Some(t) => handshake(ep, &label, t, stream, deadline)?,
                    };
                    return Ok(Conn {
                        label,
                        authority: ep.authority(),
                        stream,
                        tls,
                        buf: Vec::new(),
                        pos: 0,
                        limits,
                        reusable: true,
                        used: false,
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(HttpError::Connect {
            endpoint: label,
            source: last,
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    fn io_err(&self, e: io::Error) -> HttpError {
        let host = self.authority.as_str();
        io_err_tls(&self.label, host, self.tls.as_ref(), e)
    }

    /// Caps the kernel's receive buffer (for a long-lived stream: a reader
    /// that stops reading then pushes back on the server soon).
    pub fn set_recv_buffer(&self, bytes: usize) {
        let _ = socket2::SockRef::from(self.stream.tcp()).set_recv_buffer_size(bytes);
    }

    /// Whether another request may be sent on this connection.
    pub fn is_reusable(&self) -> bool {
        self.reusable
    }

    /// Whether this connection already completed an exchange.
    pub fn was_used(&self) -> bool {
        self.used
    }

    fn send(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        deadline: Instant,
    ) -> Result<(), HttpError> {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.authority,
            body.len()
        )
        .into_bytes();
        for (k, v) in headers {
            req.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(body);
        let left = remaining(deadline, &self.label)?;
        self.stream
            .tcp()
            .set_write_timeout(Some(left))
            .map_err(|e| self.io_err(e))?;
        self.reusable = false; // until the response is read completely
        self.stream
            .write_all(&req)
            .and_then(|()| self.stream.flush())
            .map_err(|e| self.io_err(e))
    }

    /// Reads more bytes into the buffer. `Ok(0)`: the peer closed.
    fn fill(&mut self, deadline: Instant) -> Result<usize, HttpError> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > READ_CHUNK {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let left = remaining(deadline, &self.label)?;
        self.stream
            .tcp()
            .set_read_timeout(Some(left))
            .map_err(|e| self.io_err(e))?;
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        let r = loop {
            match self.stream.read(&mut self.buf[old..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        let n = match r {
            Ok(n) => n,
            Err(e) => {
                self.buf.truncate(old);
                return Err(self.io_err(e));
            }
        };
        self.buf.truncate(old + n);
        Ok(n)
    }

    fn read_head(&mut self, deadline: Instant) -> Result<Head, HttpError> {
        loop {
            match parse_head(&self.buf[self.pos..], self.limits.max_head) {
                Err(e) => return Err(e.at(&self.label)),
                Ok(Some((head, n))) => {
                    self.pos += n;
                    if (100..200).contains(&head.status) {
                        continue; // interim response (100 Continue): skip
                    }
                    return Ok(head);
                }
                Ok(None) => {}
            }
            if self.fill(deadline)? == 0 {
                return Err(HttpError::Closed {
                    endpoint: self.label.clone(),
                });
            }
        }
    }

    /// Sends one POST and reads the whole response (body capped at
    /// `Limits::max_body`), all before `deadline`.
    pub fn request(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        deadline: Instant,
    ) -> Result<Response, HttpError> {
        self.send(path, headers, body, deadline)?;
        let head = self.read_head(deadline)?;
        let mut dec = BodyDecoder::for_head(&head);
        let mut out = Vec::new();
        loop {
            let n = dec
                .decode(&self.buf[self.pos..], &mut out)
                .map_err(|e| e.at(&self.label))?;
            self.pos += n;
            if out.len() > self.limits.max_body {
                return Err(HttpError::TooLarge {
                    endpoint: self.label.clone(),
                    what: "response body",
                    limit: self.limits.max_body,
                });
            }
            if dec.is_done() {
                break;
            }
            if self.fill(deadline)? == 0 {
                if dec == BodyDecoder::UntilClose {
                    break;
                }
                return Err(HttpError::Closed {
                    endpoint: self.label.clone(),
                });
            }
        }
        self.reusable = !head.close && dec != BodyDecoder::UntilClose;
        self.used = true;
        Ok(Response {
            status: head.status,
            body: out,
            date: head.date,
        })
    }

    /// Sends one POST whose response streams (a watch): returns its head and
    /// the body as a stream to read from with timeouts.
    pub fn stream(
        mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        deadline: Instant,
    ) -> Result<(Head, BodyStream), HttpError> {
        self.send(path, headers, body, deadline)?;
        let head = self.read_head(deadline)?;
        let decoder = BodyDecoder::for_head(&head);
        Ok((
            head,
            BodyStream {
                conn: self,
                decoder,
            },
        ))
    }
}

/// Completes the TLS handshake on a connected socket before `deadline`:
/// a certificate that does not verify fails here, naming the host.
fn handshake(
    ep: &Endpoint,
    label: &str,
    tls: &TlsConfig,
    mut tcp: TcpStream,
    deadline: Instant,
) -> Result<Stream, HttpError> {
    let host = ep.host.clone();
    let bad = |what: String| HttpError::Tls {
        endpoint: label.to_string(),
        what,
    };
    let name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|e| bad(format!("{host:?} is not a name TLS can verify: {e}")))?;
    let mut conn = rustls::ClientConnection::new(tls.config.clone(), name)
        .map_err(|e| bad(tls::describe(&e, &host, Some(tls))))?;
    while conn.is_handshaking() {
        let left = remaining(deadline, label)?;
        tcp.set_read_timeout(Some(left))
            .and_then(|()| tcp.set_write_timeout(Some(left)))
            .map_err(|e| io_err(label, e))?;
        match conn.complete_io(&mut tcp) {
            Ok((0, 0)) if conn.is_handshaking() => {
                return Err(bad(format!(
                    "the server closed the connection during the TLS handshake (is {label} \
                     serving TLS?)"
                )))
            }
            Ok(_) => {}
            Err(e) => return Err(io_err_tls(label, &host, Some(tls), e)),
        }
    }
    Ok(Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))))
}

/// A response body read piece by piece (see `Conn::stream`).
pub struct BodyStream {
    conn: Conn,
    decoder: BodyDecoder,
}

impl BodyStream {
    /// Appends whatever body bytes are available to `out`, waiting at most
    /// `timeout` for some to arrive. The caller bounds `out`.
    pub fn read_some(
        &mut self,
        out: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<ReadOutcome, HttpError> {
        let deadline = Instant::now() + timeout;
        loop {
            let before = out.len();
            let c = &mut self.conn;
            let n = self
                .decoder
                .decode(&c.buf[c.pos..], out)
                .map_err(|e| e.at(&c.label))?;
            c.pos += n;
            if out.len() > before {
                return Ok(ReadOutcome::Data);
            }
            if self.decoder.is_done() {
                return Ok(ReadOutcome::End);
            }
            match self.conn.fill(deadline) {
                Ok(0) if self.decoder == BodyDecoder::UntilClose => return Ok(ReadOutcome::End),
                Ok(0) => {
                    return Err(HttpError::Closed {
                        endpoint: self.conn.label.clone(),
                    })
                }
                Ok(_) => {}
                Err(HttpError::Timeout { .. }) => return Ok(ReadOutcome::Idle),
                Err(e) => return Err(e),
            }
        }
    }

    pub fn label(&self) -> &str {
        self.conn.label()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK_CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
Date: Sun, 06 Dec 2026 10:17:31 GMT\r\nTransfer-Encoding: chunked\r\n\r\n\
5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nGrpc-Trailer: x\r\n\r\nNEXT";

    #[test]
    fn endpoints_parse() {
        let e: Endpoint = "http://127.0.0.1:2379".parse().unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 2379));
        let e: Endpoint = "etcd1".parse().unwrap();
        assert_eq!((e.host.as_str(), e.port), ("etcd1", 2379));
        let e: Endpoint = "http://[fd00::1]:23790/".parse().unwrap();
        assert_eq!((e.host.as_str(), e.port), ("fd00::1", 23790));
        assert_eq!(e.to_string(), "http://[fd00::1]:23790");
        let e: Endpoint = "https://etcd1:2379".parse().unwrap();
        assert!(e.tls);
        assert_eq!(e.to_string(), "https://etcd1:2379");
        assert!(!"http://etcd1".parse::<Endpoint>().unwrap().tls);
        for bad in [
            "ftp://a:1",
            "https://",
            "http://",
            "http://a:0",
            "http://a:x",
            "fd00::1",
            "http://a/b",
            "http://u@a",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }

    /// A one-shot server on loopback that answers with `reply` in pieces.
    fn serve(pieces: Vec<Vec<u8>>, pause: Duration) -> Endpoint {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = [0u8; 4096];
            let _ = s.read(&mut req);
            for p in pieces {
                if s.write_all(&p).is_err() {
                    return;
                }
                std::thread::sleep(pause);
            }
        });
        Endpoint {
            host: "127.0.0.1".into(),
            port,
            tls: false,
        }
    }

    #[test]
    fn request_over_loopback_in_pieces() {
        let pieces = OK_CHUNKED[..OK_CHUNKED.len() - 4]
            .chunks(7)
            .map(|c| c.to_vec())
            .collect();
        let ep = serve(pieces, Duration::from_millis(1));
        let mut c = Conn::connect(&ep, Duration::from_secs(2), Limits::default(), None).unwrap();
        let r = c
            .request("/x", &[], b"{}", Instant::now() + Duration::from_secs(5))
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello, world"[..]));
        assert!(c.is_reusable());
    }

    #[test]
    fn body_cap_and_timeout() {
        let mut big = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'x', 100_000));
        let ep = serve(vec![big], Duration::ZERO);
        let limits = Limits {
            max_head: 1024,
            max_body: 1000,
        };
        let mut c = Conn::connect(&ep, Duration::from_secs(2), limits, None).unwrap();
        let e = c
            .request("/x", &[], b"{}", Instant::now() + Duration::from_secs(5))
            .unwrap_err();
        assert!(matches!(e, HttpError::TooLarge { .. }), "{e}");

        // A server that sends half a head and then nothing: the deadline wins.
        let ep = serve(vec![b"HTTP/1.1 200".to_vec()], Duration::from_secs(3));
        let mut c = Conn::connect(&ep, Duration::from_secs(2), Limits::default(), None).unwrap();
        let t0 = Instant::now();
        let e = c
            .request("/x", &[], b"{}", t0 + Duration::from_millis(300))
            .unwrap_err();
        assert!(matches!(e, HttpError::Timeout { .. }), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn stream_reads_with_idle_timeouts() {
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let ep = serve(
            vec![head, b"3\r\nab\n\r\n".to_vec(), b"0\r\n\r\n".to_vec()],
            Duration::from_millis(400),
        );
        let c = Conn::connect(&ep, Duration::from_secs(2), Limits::default(), None).unwrap();
        let (h, mut s) = c
            .stream("/w", &[], b"{}", Instant::now() + Duration::from_secs(2))
            .unwrap();
        assert_eq!(h.status, 200);
        let mut out = Vec::new();
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < deadline);
            let r = s.read_some(&mut out, Duration::from_millis(100)).unwrap();
            seen.push(r);
            if r == ReadOutcome::End {
                break;
            }
        }
        assert_eq!(out, b"ab\n");
        assert!(seen.contains(&ReadOutcome::Idle));
        assert!(seen.contains(&ReadOutcome::Data));
    }
}
