//! Sans-IO decoding of HTTP/1.1 responses: the head (status line and the
//! headers this client acts on), `Transfer-Encoding: chunked`, the body
//! framing, and the `Date:` header. Fed any split of the input; never
//! panics, every size is capped (see the parent module's contracts).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Chunk extensions (`;name=value` after a size) we skip, at most this long.
const MAX_CHUNK_EXT: usize = 1024;
/// Trailer section (after the last chunk), at most this long.
const MAX_TRAILERS: usize = 8 * 1024;
/// Hex digits of a chunk size: 15 digits stay below 2^60.
const MAX_SIZE_DIGITS: usize = 15;
/// A decode error before it knows which endpoint it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Malformed(String),
    TooLarge { what: &'static str, limit: usize },
}

fn malformed(what: impl Into<String>) -> DecodeError {
    DecodeError::Malformed(what.into())
}

/// A parsed status line and the headers this client acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub content_length: Option<u64>,
    pub chunked: bool,
    /// `Connection: close`: do not reuse the connection.
    pub close: bool,
    /// The server's `Date:`, when present and well-formed.
    pub date: Option<SystemTime>,
}

/// Parses a response head at the start of `buf`. `Ok(None)`: incomplete,
/// read more. `Ok(Some((head, n)))`: the head took `n` bytes.
pub fn parse_head(buf: &[u8], max_head: usize) -> Result<Option<(Head, usize)>, DecodeError> {
    let window = &buf[..buf.len().min(max_head)];
    let Some(end) = find(window, b"\r\n\r\n") else {
        if buf.len() >= max_head {
            return Err(DecodeError::TooLarge {
                what: "response head",
                limit: max_head,
            });
        }
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| malformed("head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(malformed(format!(
            "status line {:?}",
            truncate(status_line)
        )));
    }
    let code = parts.next().unwrap_or("");
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(format!(
            "status line {:?}",
            truncate(status_line)
        )));
    }
    let status: u16 = code.parse().map_err(|_| malformed("status code"))?;
    let mut head = Head {
        status,
        content_length: None,
        chunked: false,
        close: version == "HTTP/1.0",
        date: None,
    };
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| malformed(format!("header line {:?}", truncate(line))))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = parse_decimal(value).ok_or_else(|| malformed("Content-Length"))?;
            if head.content_length.is_some_and(|old| old != n) {
                return Err(malformed("conflicting Content-Length headers"));
            }
            head.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let last = value.rsplit(',').next().unwrap_or("").trim();
            if last.eq_ignore_ascii_case("chunked") {
                head.chunked = true;
            } else if !last.eq_ignore_ascii_case("identity") {
                return Err(malformed(format!(
                    "unsupported Transfer-Encoding {value:?}"
                )));
            }
        } else if name.eq_ignore_ascii_case("connection") {
            if value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"))
            {
                head.close = true;
            }
        } else if name.eq_ignore_ascii_case("date") {
            head.date = parse_http_date(value);
        }
    }
    if head.chunked {
        // RFC 9112 6.3: chunked wins over Content-Length; never use both.
        head.content_length = None;
    }
    Ok(Some((head, end + 4)))
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A decimal of at most 19 digits (fits in u64), nothing else.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the only form
/// RFC 9110 lets servers send. Anything else is `None`.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 29 || &b[3..5] != b", " || &b[25..] != b" GMT" {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let day = num(5..7)?;
    let month = match s.get(8..11)? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year = num(12..16)?;
    let (h, m, sec) = (num(17..19)?, num(20..22)?, num(23..25)?);
    if s.get(16..17)? != " "
        || s.get(19..20)? != ":"
        || s.get(22..23)? != ":"
        || s.get(7..8)? != " "
    {
        return None;
    }
    if !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 || year < 1970 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + h * 3600 + m * 60 + sec;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm); inputs are range-checked by the caller.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Decodes `Transfer-Encoding: chunked`, fed any split of the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkedDecoder {
    state: ChunkState,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ChunkState {
    /// Reading hex digits of a size.
    Size {
        value: u64,
        digits: usize,
    },
    /// After `;` of a chunk extension, until CR.
    Ext {
        value: u64,
        len: usize,
    },
    /// Saw CR after the size line; expect LF.
    SizeLf {
        value: u64,
    },
    Data {
        remaining: u64,
    },
    DataCr,
    DataLf,
    /// In the trailer section: `line` bytes into the current line.
    Trailer {
        line: usize,
        total: usize,
        cr: bool,
    },
    Done,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: ChunkState::Size {
                value: 0,
                digits: 0,
            },
        }
    }

    /// True once the last chunk and the trailers are consumed.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes bytes of `input`, appending body bytes to `out`. Returns how
    /// many input bytes were consumed: all of them, or fewer when the body
    /// ended (the rest belongs to the next response).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, DecodeError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match &mut self.state {
                ChunkState::Done => return Ok(i),
                ChunkState::Data { remaining } => {
                    let avail = input.len() - i;
                    let take = usize::try_from(*remaining).map_or(avail, |r| r.min(avail));
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    *remaining -= take as u64;
                    if *remaining == 0 {
                        self.state = ChunkState::DataCr;
                    }
                    continue;
                }
                ChunkState::Size { value, digits } => {
                    if let Some(d) = (b as char).to_digit(16) {
                        if *digits >= MAX_SIZE_DIGITS {
                            return Err(DecodeError::TooLarge {
                                what: "chunk size",
                                limit: MAX_SIZE_DIGITS,
                            });
                        }
                        *value = value
                            .checked_mul(16)
                            .and_then(|v| v.checked_add(u64::from(d)))
                            .ok_or_else(|| malformed("chunk size overflows"))?;
                        *digits += 1;
                    } else if *digits == 0 {
                        return Err(malformed("chunk size expected"));
                    } else if b == b';' {
                        let v = *value;
                        self.state = ChunkState::Ext { value: v, len: 0 };
                    } else if b == b'\r' {
                        let v = *value;
                        self.state = ChunkState::SizeLf { value: v };
                    } else {
                        return Err(malformed("bad byte in chunk size"));
                    }
                }
                ChunkState::Ext { value, len } => {
                    if b == b'\r' {
                        let v = *value;
                        self.state = ChunkState::SizeLf { value: v };
                    } else {
                        *len += 1;
                        if *len > MAX_CHUNK_EXT {
                            return Err(DecodeError::TooLarge {
                                what: "chunk extension",
                                limit: MAX_CHUNK_EXT,
                            });
                        }
                    }
                }
                ChunkState::SizeLf { value } => {
                    if b != b'\n' {
                        return Err(malformed("LF expected after chunk size"));
                    }
                    self.state = if *value == 0 {
                        ChunkState::Trailer {
                            line: 0,
                            total: 0,
                            cr: false,
                        }
                    } else {
                        ChunkState::Data { remaining: *value }
                    };
                }
                ChunkState::DataCr => {
                    if b != b'\r' {
                        return Err(malformed("CRLF expected after chunk data"));
                    }
                    self.state = ChunkState::DataLf;
                }
                ChunkState::DataLf => {
                    if b != b'\n' {
                        return Err(malformed("CRLF expected after chunk data"));
                    }
                    self.state = ChunkState::Size {
                        value: 0,
                        digits: 0,
                    };
                }
                ChunkState::Trailer { line, total, cr } => {
                    *total += 1;
                    if *total > MAX_TRAILERS {
                        return Err(DecodeError::TooLarge {
                            what: "trailers",
                            limit: MAX_TRAILERS,
                        });
                    }
                    if *cr {
                        if b != b'\n' {
                            return Err(malformed("CRLF expected in trailers"));
                        }
                        if *line == 0 {
                            self.state = ChunkState::Done;
                        } else {
                            *line = 0;
                            *cr = false;
                        }
                    } else if b == b'\r' {
                        *cr = true;
                    } else {
                        *line += 1;
                    }
                }
            }
            i += 1;
        }
        Ok(i)
    }
}

/// How a response body is delimited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum BodyDecoder {
    Length(u64),
    Chunked(ChunkedDecoder),
    /// No length and not chunked: the body ends when the server closes.
    UntilClose,
}

impl BodyDecoder {
    pub(super) fn for_head(head: &Head) -> Self {
        if head.chunked {
            BodyDecoder::Chunked(ChunkedDecoder::new())
        } else if let Some(n) = head.content_length {
            BodyDecoder::Length(n)
        } else if head.status == 204 || head.status == 304 {
            BodyDecoder::Length(0)
        } else {
            BodyDecoder::UntilClose
        }
    }

    pub(super) fn is_done(&self) -> bool {
        match self {
            BodyDecoder::Length(n) => *n == 0,
            BodyDecoder::Chunked(c) => c.is_done(),
            BodyDecoder::UntilClose => false,
        }
    }

    /// Moves body bytes from `input` to `out`; returns the bytes consumed.
    pub(super) fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, DecodeError> {
        match self {
            BodyDecoder::Length(n) => {
                let take = usize::try_from(*n).map_or(input.len(), |n| n.min(input.len()));
                out.extend_from_slice(&input[..take]);
                *n -= take as u64;
                Ok(take)
            }
            BodyDecoder::Chunked(c) => c.feed(input, out),
            BodyDecoder::UntilClose => {
                out.extend_from_slice(input);
                Ok(input.len())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK_CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
Date: Sun, 06 Dec 2026 10:17:31 GMT\r\nTransfer-Encoding: chunked\r\n\r\n\
5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nGrpc-Trailer: x\r\n\r\nNEXT";

    #[test]
    fn head_and_chunked_body() {
        let (head, n) = parse_head(OK_CHUNKED, 1024).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert!(head.chunked && !head.close);
        let date = head
            .date
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(date, 1_796_552_251);
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let used = d.feed(&OK_CHUNKED[n..], &mut out).unwrap();
        assert!(d.is_done());
        assert_eq!(out, b"hello, world");
        assert_eq!(&OK_CHUNKED[n + used..], b"NEXT");
    }

    #[test]
    fn chunked_every_split() {
        let (_, n) = parse_head(OK_CHUNKED, 1024).unwrap().unwrap();
        let body = &OK_CHUNKED[n..OK_CHUNKED.len() - 4];
        for split in 0..=body.len() {
            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            assert_eq!(d.feed(&body[..split], &mut out).unwrap(), split);
            assert_eq!(
                d.feed(&body[split..], &mut out).unwrap(),
                body.len() - split
            );
            assert!(d.is_done(), "split {split}");
            assert_eq!(out, b"hello, world");
        }
        // byte by byte
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        for b in body {
            d.feed(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert!(d.is_done());
    }

    #[test]
    fn chunked_refuses_bad_sizes() {
        let cases: &[&[u8]] = &[
            b"fffffffffffffffff\r\n", // 17 digits
            b"1000000000000000\r\n",  // 16 digits
            b"\r\n",                  // no digits
            b"5x\r\n",
            b"5\rX",
            b"2\r\nabXY", // missing CRLF after data
        ];
        for c in cases {
            let mut d = ChunkedDecoder::new();
            assert!(
                d.feed(c, &mut Vec::new()).is_err(),
                "{:?}",
                String::from_utf8_lossy(c)
            );
        }
        // 15 digits is accepted as a size (then it is the body cap's job)
        let mut d = ChunkedDecoder::new();
        d.feed(b"fffffffffffffff\r\nab", &mut Vec::new()).unwrap();
        let mut long_ext = b"1;".to_vec();
        long_ext.extend(std::iter::repeat_n(b'a', 2000));
        assert!(matches!(
            ChunkedDecoder::new().feed(&long_ext, &mut Vec::new()),
            Err(DecodeError::TooLarge { .. })
        ));
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..2000 {
            trailers.extend_from_slice(b"a: b\r\n");
        }
        assert!(ChunkedDecoder::new()
            .feed(&trailers, &mut Vec::new())
            .is_err());
    }

    #[test]
    fn head_limits_and_errors() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n", 1024).unwrap(), None);
        let big = [b'a'; 2000];
        assert!(matches!(
            parse_head(&big, 1024),
            Err(DecodeError::TooLarge { .. })
        ));
        for bad in [
            &b"HTTP/2 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 \xff\r\n\r\n",
        ] {
            assert!(
                parse_head(bad, 1024).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let (h, _) = parse_head(b"HTTP/1.0 404 Not Found\r\nContent-Length: 3\r\n\r\n", 1024)
            .unwrap()
            .unwrap();
        assert_eq!((h.status, h.content_length, h.close), (404, Some(3), true));
    }

    #[test]
    fn http_dates() {
        let t = parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT").unwrap();
        assert_eq!(t, UNIX_EPOCH);
        let t = parse_http_date("Tue, 29 Feb 2000 23:59:59 GMT").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 951_868_799);
        for bad in [
            "",
            "Thu, 01 Jan 1970 00:00:00 UTC",
            "Thu, 01 Foo 1970 00:00:00 GMT",
            "Thu, 0x Jan 1970 00:00:00 GMT",
            "Thu, 01 Jan 1969 00:00:00 GMT",
            "Thu, 01 Jan 1970 24:00:00 GMT",
            "Thu, 01 Jan 1970 00:00:00 GMTX",
            "Thu, 01 Jän 970 00:00:00 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300), split in 0usize..300) {
            let _ = parse_head(&data, 128);
            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            let split = split.min(data.len());
            if d.feed(&data[..split], &mut out).is_ok() {
                let _ = d.feed(&data[split..], &mut out);
            }
            let _ = parse_http_date(&String::from_utf8_lossy(&data));
        }
    }
}
