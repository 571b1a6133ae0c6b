//! One client connection of the control server: its buffers, the line
//! reader, the reply writer and the monitor stream (see the module above
//! for the limits they keep).

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::net::UnixStream;

use crate::ctl::daemon::Daemon;
use crate::ctl::proto::{encode_reply, parse_request, CtlError, FdbRow, Reply, Request, MAX_LINE};

use super::{MAX_QUEUED_REPLIES, MAX_SLEEP, REQUESTS_PER_TURN};

/// Output buffers larger than this are freed after being written, so one
/// big `fdb show` does not pin its memory for the connection's lifetime.
const KEEP_OUT_CAPACITY: usize = 64 * 1024;
/// Bytes of an over-long line thrown away for one client before serving
/// others.
const DISCARD_PER_TURN: usize = 1024 * 1024;
/// An `fdb.show` reply of more rows is encoded this many rows at a time,
/// each chunk once the client has taken the one before: a large table
/// never stalls the other clients (`ping`) for the whole of its encoding,
/// and a client that does not read costs one chunk of encoding.
const STREAM_ROWS: usize = 256;
/// Chunks encoded for one client before the others get a turn.
const STREAM_CHUNKS_PER_TURN: usize = 4;
/// What one row not yet encoded counts against [`MAX_QUEUED_REPLIES`].
const ROW_BYTES: usize = 160;
/// Event bytes a monitoring client may be behind; more events are lost
/// (counted) for it.
const MONITOR_BUFFER: usize = 1024 * 1024;

/// One line of `monitor`'s stream.
pub(super) fn encode_event(event: crate::ctl::proto::MonitorEvent) -> Vec<u8> {
    let mut line = serde_json::to_vec(&crate::ctl::proto::EventLine { event }).unwrap_or_default();
    line.push(b'\n');
    line
}

/// One client connection.
pub(super) struct Conn {
    pub(super) stream: UnixStream,
    /// Received bytes not yet consumed: at most `MAX_LINE + 1`.
    pub(super) inbuf: Vec<u8>,
    /// Prefix of `inbuf` already searched for a newline.
    pub(super) scanned: usize,
    /// The reply being written, and how much of it is out.
    pub(super) out: Vec<u8>,
    pub(super) out_pos: usize,
    /// The rest of a large `fdb.show` reply, encoded into `out` a chunk at
    /// a time as the client takes it; `out` holds its start.
    pub(super) rows: Option<std::vec::IntoIter<FdbRow>>,
    /// When the pending partial line started arriving: it must be a whole
    /// request within the request timeout.
    pub(super) partial_since: Option<Instant>,
    /// When the reply in `out` was queued: it must be taken whole within
    /// the reply timeout, however it is read (a byte at a time too).
    pub(super) reply_since: Option<Instant>,
    /// When the connection last had nothing in progress after a request
    /// (or was accepted). Blank lines and partial input do not move it:
    /// only a request answered does.
    pub(super) idle_since: Instant,
    pub(super) eof: bool,
    /// Close once `out` is written.
    pub(super) closing: bool,
    /// Throwing away the rest of an over-long line, up to its newline.
    pub(super) discarding: bool,
    /// On the ready list.
    pub(super) queued: bool,
    /// Asked `monitor`: carries events from now on (see [`Server::fan_out`]).
    pub(super) monitor: bool,
    /// Events this monitoring client lost since it last got one.
    pub(super) monitor_lost: u64,
    /// Asked `capture.start`: handed to the capture's writer once the
    /// reply is out (see [`Server::hand_off`]).
    pub(super) capture: bool,
}

pub(super) enum Pump {
    /// Waiting for readiness.
    Wait,
    /// Budget spent with requests left: serve again after the others.
    More,
    Close,
}

pub(super) struct Limits {
    pub(super) request_timeout: Duration,
    pub(super) reply_timeout: Duration,
    pub(super) idle_timeout: Duration,
}

impl Conn {
    pub(super) fn new(stream: UnixStream, now: Instant) -> Conn {
        Conn {
            stream,
            inbuf: Vec::new(),
            scanned: 0,
            out: Vec::new(),
            out_pos: 0,
            rows: None,
            partial_since: None,
            reply_since: None,
            idle_since: now,
            eof: false,
            closing: false,
            discarding: false,
            queued: false,
            monitor: false,
            monitor_lost: 0,
            capture: false,
        }
    }

    /// Takes the next complete line out of `inbuf`, without its newline.
    pub(super) fn take_line(&mut self, now: Instant) -> Option<Vec<u8>> {
        let pos = self.inbuf[self.scanned..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| p + self.scanned);
        let Some(pos) = pos else {
            self.scanned = self.inbuf.len();
            return None;
        };
        let mut line: Vec<u8> = self.inbuf.drain(..=pos).collect();
        line.pop();
        self.scanned = 0;
        self.partial_since = if self.inbuf.is_empty() {
            None
        } else {
            Some(now)
        };
        Some(line)
    }

    pub(super) fn has_line(&self) -> bool {
        self.inbuf[self.scanned..].contains(&b'\n')
    }

    /// A request is under way: part of one received, a line not yet
    /// answered, an over-long line being skipped, or a reply not yet taken.
    /// Such a connection is never evicted for a newcomer.
    pub(super) fn busy(&self) -> bool {
        !self.inbuf.is_empty()
            || self.discarding
            || self.out_pos < self.out.len()
            || self.rows.is_some()
            || self.closing
            || self.queued
            || self.monitor
    }

    /// Queues an error reply and closes the connection after it.
    pub(super) fn fail(&mut self, err: CtlError, now: Instant) {
        self.queue_reply(&encode_reply(&Err(err)), now);
        self.rows = None;
        self.closing = true;
        self.discarding = false;
        self.inbuf = Vec::new();
        self.scanned = 0;
        self.partial_since = None;
    }

    pub(super) fn queue_reply(&mut self, reply: &[u8], now: Instant) {
        if self.out_pos >= self.out.len() {
            self.reply_since = Some(now);
        }
        self.out.extend_from_slice(reply);
    }

    /// Reply bytes queued and not yet written, rows not yet encoded
    /// counted at [`ROW_BYTES`].
    pub(super) fn pending_out(&self) -> usize {
        self.out.len() - self.out_pos + self.rows.as_ref().map_or(0, |r| r.len() * ROW_BYTES)
    }

    /// Answers one line; `others` reply bytes are waiting in other clients.
    pub(super) fn answer(&mut self, line: &[u8], daemon: &mut Daemon, now: Instant, others: usize) {
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() {
            // Not a request, and not activity: the idle clock runs on.
            return;
        }
        let busy = |daemon: &mut Daemon, size: usize| {
            daemon.control_stats_mut().replies_refused += 1;
            encode_reply(&Err(CtlError::busy(format!(
                "the reply ({size} bytes) does not fit: other clients have {others} bytes of \
                 replies not yet read (at most {MAX_QUEUED_REPLIES} in all); retry in a moment"
            ))))
        };
        let req = parse_request(trimmed);
        if req.is_err() {
            daemon.count_bad_request();
        }
        if others >= MAX_QUEUED_REPLIES / 4 && matches!(req, Ok(Request::FdbShow(_))) {
            // Refused before the table is even collected: collecting a
            // large one takes milliseconds of this thread.
            let b = busy(daemon, 0);
            self.queue_reply(&b, now);
            return;
        }
        let reply = match req.and_then(|req| daemon.handle(req)) {
            Ok(Reply::Fdb(rows)) if rows.len() > STREAM_ROWS => {
                let size = rows.len() * ROW_BYTES;
                if others > 0 && others + size > MAX_QUEUED_REPLIES {
                    let b = busy(daemon, size);
                    self.queue_reply(&b, now);
                } else {
                    // What `encode_reply` would write, a chunk at a time.
                    self.queue_reply(b"{\"ok\":true,\"result\":[", now);
                    self.rows = Some(rows.into_iter());
                }
                return;
            }
            r => r,
        };
        self.monitor |= matches!(reply, Ok(Reply::Monitoring(_)));
        self.capture |= matches!(reply, Ok(Reply::Capturing(_)));
        let mut bytes = encode_reply(&reply);
        // A small reply (`ping`, an error) is always answered: it costs at
        // most 128 × 64 KiB in all, and the socket's buffer usually takes
        // it whole.
        if others > 0
            && bytes.len() > KEEP_OUT_CAPACITY
            && others + bytes.len() > MAX_QUEUED_REPLIES
        {
            bytes = busy(daemon, bytes.len());
        }
        self.queue_reply(&bytes, now);
    }

    /// Replaces `out`, all written, with the next chunk of the rows, and
    /// the reply's end after the last.
    pub(super) fn encode_rows(&mut self) {
        let Some(rows) = self.rows.as_mut() else {
            return;
        };
        let first = self.out.ends_with(b"[");
        self.out.clear();
        self.out_pos = 0;
        for (i, row) in rows.by_ref().take(STREAM_ROWS).enumerate() {
            if i > 0 || !first {
                self.out.push(b',');
            }
            if serde_json::to_writer(&mut self.out, &row).is_err() {
                // Plain data: cannot happen; a null keeps the line JSON.
                self.out.extend_from_slice(b"null");
            }
        }
        if rows.len() == 0 {
            self.out.extend_from_slice(b"]}\n");
            self.rows = None;
        }
    }

    /// Writes what is pending, answers complete lines, reads more; until
    /// the socket would block, the budget is spent or the connection ends.
    pub(super) fn pump(
        &mut self,
        daemon: &mut Daemon,
        scratch: &mut [u8],
        now: Instant,
        others: usize,
    ) -> Pump {
        let mut handled = 0;
        let mut discarded = 0;
        let mut chunks = 0;
        loop {
            if self.out_pos < self.out.len() {
                match self.stream.write(&self.out[self.out_pos..]) {
                    Ok(0) => return Pump::Close,
                    Ok(n) => {
                        self.out_pos += n;
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Pump::Wait,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return Pump::Close,
                }
            }
            if self.rows.is_some() {
                // The next chunk of a large reply, once this one is out.
                if chunks >= STREAM_CHUNKS_PER_TURN {
                    return Pump::More;
                }
                chunks += 1;
                self.encode_rows();
                continue;
            }
            if !self.out.is_empty() {
                // A reply went out whole: the request is done.
                self.idle_since = now;
            }
            if self.out.capacity() > KEEP_OUT_CAPACITY {
                self.out = Vec::new();
            } else {
                self.out.clear();
            }
            self.out_pos = 0;
            self.reply_since = None;
            if self.closing {
                return Pump::Close;
            }
            if self.monitor {
                return self.pump_monitor(scratch);
            }
            if self.capture {
                // The reply is out: the server hands the connection over.
                return Pump::Wait;
            }
            if self.has_line() {
                if handled >= REQUESTS_PER_TURN {
                    return Pump::More;
                }
                if let Some(line) = self.take_line(now) {
                    handled += 1;
                    self.answer(&line, daemon, now, others);
                }
                continue;
            }
            if self.inbuf.len() > MAX_LINE {
                let err = CtlError::bad_request(format!(
                    "request line longer than {MAX_LINE} bytes; send one JSON request per line \
                     (the rest of this line is skipped)"
                ));
                self.queue_reply(&encode_reply(&Err(err)), now);
                self.inbuf = Vec::new();
                self.scanned = 0;
                self.discarding = true;
                // The rest of the line must arrive within the request timeout too.
                self.partial_since = Some(now);
                continue;
            }
            if self.eof {
                if self.inbuf.is_empty() {
                    return Pump::Close;
                }
                // A last request without its newline (`printf ... | nc -U`).
                let line = std::mem::take(&mut self.inbuf);
                self.answer(&line, daemon, now, others);
                self.closing = true;
                continue;
            }
            if self.discarding && discarded >= DISCARD_PER_TURN {
                return Pump::More;
            }
            let room = (MAX_LINE + 1 - self.inbuf.len()).min(scratch.len());
            match self.stream.read(&mut scratch[..room]) {
                Ok(0) => self.eof = true,
                Ok(n) if self.discarding => match scratch[..n].iter().position(|&b| b == b'\n') {
                    Some(pos) => {
                        self.discarding = false;
                        self.inbuf.extend_from_slice(&scratch[pos + 1..n]);
                        self.partial_since = (!self.inbuf.is_empty()).then_some(now);
                    }
                    None => discarded += n,
                },
                Ok(n) => {
                    self.inbuf.extend_from_slice(&scratch[..n]);
                    self.partial_since.get_or_insert(now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Pump::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Pump::Close,
            }
        }
    }

    /// A monitoring connection only writes: what it sends is read and
    /// thrown away, until it closes.
    pub(super) fn pump_monitor(&mut self, scratch: &mut [u8]) -> Pump {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => return Pump::Close,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Pump::Wait,
                Err(_) => return Pump::Close,
            }
        }
    }

    /// Queues an event line unless the client is [`MONITOR_BUFFER`]
    /// behind; then the event is lost, and counted in a `lost` line that
    /// goes first once there is room again. Returns whether it was lost.
    pub(super) fn queue_event(&mut self, line: &[u8]) -> bool {
        let behind = self.out.len() - self.out_pos;
        if behind + line.len() > MONITOR_BUFFER {
            self.monitor_lost += 1;
            return true;
        }
        if self.monitor_lost > 0 {
            let mut lost = crate::ctl::monitor::event("lost");
            lost.count = Some(std::mem::take(&mut self.monitor_lost));
            self.out.extend_from_slice(&encode_event(lost));
        }
        self.out.extend_from_slice(line);
        false
    }

    /// The next moment a timeout is due.
    pub(super) fn deadline(&self, lim: &Limits) -> Instant {
        if self.monitor {
            // No timeouts: it reads at its own pace, losing events.
            return Instant::now() + MAX_SLEEP;
        }
        let mut due = self.idle_since + lim.idle_timeout;
        if let Some(t) = self.partial_since {
            due = due.min(t + lim.request_timeout);
        }
        if let Some(t) = self.reply_since {
            due = due.min(t + lim.reply_timeout);
        }
        due
    }
}
