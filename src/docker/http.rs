//! Just enough HTTP/1.1 for Docker's plugin client: POST requests with a
//! `Content-Length` body, keep-alive, JSON replies. And the other way round,
//! just enough of a client to ask dockerd's Engine API one GET ([`get`]).
//!
//! Docker's plugin client (Go's `net/http` over the unix socket) always
//! sends a `Content-Length` (its bodies are in-memory buffers), so a chunked
//! body is refused with a clear error rather than decoded. Heads and bodies
//! have size caps, so a confused peer costs bounded memory; and time is
//! bounded per request, not per `read`: a [`DeadlineStream`] gives each
//! read only what is left of the request's deadline, so a peer trickling a
//! byte now and then cannot hold a connection (and its thread) forever.

use std::io::{self, BufRead, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A socket whose reads and writes share one deadline: each call waits at
/// most the time left until it, and fails with `TimedOut` once it passed.
#[derive(Debug)]
pub struct DeadlineStream {
    stream: UnixStream,
    deadline: Instant,
}

impl DeadlineStream {
    pub fn new(stream: UnixStream, deadline: Instant) -> DeadlineStream {
        DeadlineStream { stream, deadline }
    }

    /// Sets the deadline of what is read or written next.
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }

    pub fn get_ref(&self) -> &UnixStream {
        &self.stream
    }

    fn left(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the deadline of the request passed",
            ));
        }
        Ok(left)
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.left()?;
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf).map_err(timed_out)
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.left()?;
        self.stream.set_write_timeout(Some(left))?;
        self.stream.write(buf).map_err(timed_out)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// A socket timeout reads as `WouldBlock`; say what it is.
fn timed_out(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "the deadline of the request passed",
        )
    } else {
        e
    }
}

/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body accepted. Docker's biggest calls (CreateNetwork with
/// its IPAM data and options) are a few KiB.
pub const MAX_BODY: usize = 1024 * 1024;

/// The content type of plugin API replies.
pub const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

/// One parsed request.
#[derive(Debug, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
    /// The client asked to close the connection after the reply (or spoke
    /// HTTP/1.0).
    pub close: bool,
}

/// Why no request could be read.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The peer closed the connection between requests: not an error.
    #[error("connection closed")]
    Closed,
    /// A malformed or unsupported request; it gets this message with the
    /// status, then the connection is closed.
    #[error("{message}")]
    Bad { status: u16, message: String },
    #[error("{0}")]
    Io(#[from] io::Error),
}

fn bad(status: u16, message: impl Into<String>) -> HttpError {
    HttpError::Bad {
        status,
        message: message.into(),
    }
}

/// Reads one request from `r`.
pub fn read_request<R: BufRead>(r: &mut R) -> Result<HttpRequest, HttpError> {
    let mut head = Vec::new();
    // Read header lines until the empty line, within MAX_HEAD.
    loop {
        let before = head.len();
        let n =
            io::Read::take(&mut *r, (MAX_HEAD + 1 - before) as u64).read_until(b'\n', &mut head)?;
        if n == 0 {
            if head.is_empty() {
                return Err(HttpError::Closed);
            }
            return Err(bad(400, "the connection closed in the middle of a request"));
        }
        if head.len() > MAX_HEAD {
            return Err(bad(
                431,
                format!("request head longer than {MAX_HEAD} bytes"),
            ));
        }
        if !head.ends_with(b"\n") {
            return Err(bad(400, "the connection closed in the middle of a request"));
        }
        let line = &head[before..];
        if line == b"\r\n" || line == b"\n" {
            if before == 0 {
                // Tolerate blank lines before a request (RFC 9112 2.2).
                head.clear();
                continue;
            }
            break;
        }
    }
    let text = std::str::from_utf8(&head).map_err(|_| bad(400, "request head is not UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(400, format!("malformed request line {request_line:?}")));
    };
    let mut close = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => {
            return Err(bad(
                505,
                format!("unsupported protocol {version:?}; use HTTP/1.1"),
            ))
        }
    };
    let mut length: Option<usize> = None;
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad(400, format!("malformed header line {line:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| bad(400, format!("bad Content-Length {value:?}")))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad(400, "conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.eq_ignore_ascii_case("identity") {
                return Err(bad(
                    411,
                    format!(
                        "Transfer-Encoding {value:?} is not supported by the vxswitch plugin; \
                         send the body with a Content-Length"
                    ),
                ));
            }
        } else if name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.split(',').any(|t| t.trim() == "close") {
                close = true;
            } else if v.split(',').any(|t| t.trim() == "keep-alive") {
                close = false;
            }
        }
    }
    let length = length.unwrap_or(0);
    if length > MAX_BODY {
        return Err(bad(
            413,
            format!("request body of {length} bytes is larger than {MAX_BODY}"),
        ));
    }
    let mut body = vec![0u8; length];
    r.read_exact(&mut body).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            bad(
                400,
                "the connection closed before the whole body (Content-Length) arrived",
            )
        } else {
            HttpError::Io(e)
        }
    })?;
    Ok(HttpRequest {
        method: method.to_string(),
        path: path.to_string(),
        body,
        close,
    })
}

/// The reason phrase of the statuses this server sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Writes one reply with a JSON body.
pub fn write_response(w: &mut impl Write, status: u16, body: &[u8], close: bool) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n",
        reason(status),
        body.len()
    );
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut all = head.into_bytes();
    all.extend_from_slice(body);
    w.write_all(&all)?;
    w.flush()
}

/// Largest reply [`get`] reads from dockerd. `GET /networks/ID` is about
/// 1 KiB per container on the network.
pub const MAX_REPLY: usize = 4 * 1024 * 1024;

/// Why [`get`] has no answer.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// Nobody could be asked: no socket, no permission, nobody listening.
    #[error("cannot connect to {path}: {source}")]
    Connect { path: String, source: io::Error },
    /// The server was reached but the exchange failed.
    #[error("{0}")]
    Exchange(String),
}

/// Sends `GET path` to the HTTP server on the unix socket `socket` and
/// returns the status and the body. The request is HTTP/1.0, so the server
/// sends the body whole (no chunks) and closes the connection after it;
/// chunked and `Content-Length` bodies are still understood.
pub fn get(socket: &Path, path: &str, timeout: Duration) -> Result<(u16, Vec<u8>), GetError> {
    let s = UnixStream::connect(socket).map_err(|source| GetError::Connect {
        path: socket.display().to_string(),
        source,
    })?;
    let exchange = |e: io::Error| GetError::Exchange(format!("GET {path}: {e}"));
    // One deadline for the whole exchange, not one per read.
    let mut s = DeadlineStream::new(s, Instant::now() + timeout);
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: docker\r\nAccept: application/json\r\n\r\n");
    s.write_all(request.as_bytes()).map_err(exchange)?;
    let mut raw = Vec::new();
    let n = s
        .take(MAX_REPLY as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(exchange)?;
    if n > MAX_REPLY {
        return Err(GetError::Exchange(format!(
            "GET {path}: reply longer than {MAX_REPLY} bytes"
        )));
    }
    parse_response(&raw).map_err(|e| GetError::Exchange(format!("GET {path}: {e}")))
}

/// Splits a whole HTTP/1.x response into its status and its body.
pub fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err("the reply ended before its head did".into());
    };
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "reply head is not UTF-8")?;
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = match status_line.split(' ').collect::<Vec<_>>()[..] {
        [version, code, ..] if version.starts_with("HTTP/1.") => code
            .parse::<u16>()
            .map_err(|_| format!("malformed status line {status_line:?}"))?,
        _ => return Err(format!("malformed status line {status_line:?}")),
    };
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    if chunked {
        return Ok((status, dechunk(body)?));
    }
    match length {
        Some(n) if n > body.len() => Err(format!(
            "the reply ended after {} of its {n} bytes",
            body.len()
        )),
        Some(n) => Ok((status, body[..n].to_vec())),
        None => Ok((status, body.to_vec())),
    }
}

/// Decodes a chunked body (RFC 9112 7.1); trailers are ignored. A chunk
/// size is checked against what is left of the body before any arithmetic
/// on it, so no size (`ffffffffffffffff` included) can wrap or index out of
/// bounds; the output is never larger than the input.
pub fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Err("the reply ended inside a chunk header".into());
        };
        let size_text = std::str::from_utf8(&rest[..eol]).unwrap_or_default();
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        // At most 16 hex digits, no sign: what a u64 holds, nothing else.
        if size_text.is_empty()
            || size_text.len() > 16
            || !size_text.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(format!("bad chunk size {size_text:?}"));
        }
        let size = u64::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        // `rest.len() - 2` cannot wrap: checked first.
        let fits = rest.len() >= 2 && size <= (rest.len() - 2) as u64;
        if !fits {
            return Err(format!(
                "the reply ended inside a chunk of {size} bytes ({} bytes left)",
                rest.len()
            ));
        }
        let size = size as usize; // fits: at most rest.len() - 2
        if &rest[size..size + 2] != b"\r\n" {
            return Err("the reply ended inside a chunk".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    fn parse_all(bytes: &[u8]) -> Vec<Result<HttpRequest, String>> {
        let mut r = BufReader::new(bytes);
        let mut out = Vec::new();
        loop {
            match read_request(&mut r) {
                Err(HttpError::Closed) => return out,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
                Ok(req) => out.push(Ok(req)),
            }
        }
    }

    #[test]
    fn keep_alive_requests_in_a_row() {
        let raw = b"POST /Plugin.Activate HTTP/1.1\r\nHost: plugin\r\nContent-Length: 0\r\n\r\n\
                    POST /NetworkDriver.CreateNetwork HTTP/1.1\r\nHost: plugin\r\n\
                    Content-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"NetworkID\":\"a\"}";
        let reqs = parse_all(raw);
        assert_eq!(reqs.len(), 2, "{reqs:?}");
        let a = reqs[0].as_ref().unwrap();
        assert_eq!(
            (a.method.as_str(), a.path.as_str()),
            ("POST", "/Plugin.Activate")
        );
        assert!(a.body.is_empty() && !a.close);
        let b = reqs[1].as_ref().unwrap();
        assert_eq!(b.path, "/NetworkDriver.CreateNetwork");
        assert_eq!(b.body, b"{\"NetworkID\":\"a\"}");
    }

    #[test]
    fn connection_close_and_http10_close() {
        let r = parse_all(b"POST /x HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(r[0].as_ref().unwrap().close);
        let r = parse_all(b"POST /x HTTP/1.0\r\n\r\n");
        assert!(r[0].as_ref().unwrap().close);
    }

    #[test]
    fn refusals_name_the_problem() {
        let chunked = parse_all(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(
            chunked[0].as_ref().unwrap_err(),
            "Transfer-Encoding \"chunked\" is not supported by the vxswitch plugin; send the \
             body with a Content-Length"
        );
        let big = format!(
            "POST /x HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(parse_all(big.as_bytes())[0]
            .as_ref()
            .unwrap_err()
            .contains("larger than"));
        let long = format!("POST /x HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(parse_all(long.as_bytes())[0]
            .as_ref()
            .unwrap_err()
            .contains("request head longer than"));
        let short = parse_all(b"POST /x HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
        assert!(short[0]
            .as_ref()
            .unwrap_err()
            .contains("before the whole body"));
        let cut = parse_all(b"POST /x HTTP/1.1\r\nHost: a");
        assert!(cut[0].as_ref().unwrap_err().contains("in the middle"));
        let garbage = parse_all(b"hello\r\n\r\n");
        assert!(garbage[0]
            .as_ref()
            .unwrap_err()
            .contains("malformed request line"));
        let v2 = parse_all(b"POST /x HTTP/2.0\r\n\r\n");
        assert!(v2[0].as_ref().unwrap_err().contains("use HTTP/1.1"));
    }

    #[test]
    fn client_replies_with_length_chunks_or_until_close() {
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}xx",
        );
        assert_eq!(r, Ok((200, b"{}".to_vec())));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\n\r\n",
        );
        assert_eq!(r, Ok((200, b"{\"a\":1}".to_vec())));
        let r = parse_response(b"HTTP/1.0 404 Not Found\r\nServer: x\r\n\r\n{\"message\":\"no\"}");
        assert_eq!(r, Ok((404, b"{\"message\":\"no\"}".to_vec())));
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}")
                .unwrap_err()
                .contains("after 2 of its 9 bytes")
        );
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
                .unwrap_err()
                .contains("inside a chunk")
        );
        assert!(parse_response(b"SSH-2.0\r\n\r\n")
            .unwrap_err()
            .contains("malformed status line"));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n")
            .unwrap_err()
            .contains("before its head"));
    }

    #[test]
    fn chunk_sizes_that_would_wrap_are_refused() {
        for size in [
            "ffffffffffffffff",
            "fffffffffffffffe",
            "10000000000000000",
            "-1",
            "+5",
            "",
        ] {
            let raw = format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nab\r\n0\r\n\r\n"
            );
            let e = parse_response(raw.as_bytes()).unwrap_err();
            assert!(
                e.contains("bad chunk size") || e.contains("ended inside a chunk of"),
                "{size}: {e}"
            );
        }
        // A chunk that claims one byte more than there is.
        let e = dechunk(b"3\r\nab\r\n").unwrap_err();
        assert!(
            e.contains("inside a chunk of 3 bytes (4 bytes left)"),
            "{e}"
        );
        assert_eq!(dechunk(b"2\r\nab\r\n0\r\n\r\n").unwrap(), b"ab");
    }

    #[test]
    fn a_deadline_bounds_the_whole_request_not_each_read() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_millis(600);
        let writer = std::thread::spawn(move || {
            // A byte every 100 ms: each read would be well within a
            // per-read timeout of 600 ms.
            for byte in b"POST /x HTTP/1.1\r\nHost: plugin\r\n".iter() {
                if b.write_all(&[*byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let mut r = std::io::BufReader::new(DeadlineStream::new(a, deadline));
        let e = read_request(&mut r).unwrap_err();
        let waited = t0.elapsed();
        assert!(
            matches!(&e, HttpError::Io(io) if io.kind() == io::ErrorKind::TimedOut),
            "{e:?}"
        );
        assert!(waited >= Duration::from_millis(550), "{waited:?}");
        assert!(waited < Duration::from_secs(3), "{waited:?}");
        drop(r);
        writer.join().unwrap();
    }

    #[test]
    fn response_has_length_and_plugin_content_type() {
        let mut out = Vec::new();
        write_response(&mut out, 200, b"{}", false).unwrap();
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.plugins.v1.2+json\r\n\
              Content-Length: 2\r\n\r\n{}"
        );
        let mut out = Vec::new();
        write_response(&mut out, 500, b"{\"Err\":\"x\"}", true).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 500 Internal Server Error\r\n"));
        assert!(text.contains("Connection: close\r\n"));
    }
}
