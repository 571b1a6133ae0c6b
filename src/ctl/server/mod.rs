//! The control socket server: one thread, one `mio::Poll`, many clients.
//!
//! Why it looks like this (a control server done otherwise — boringtun's
//! reads client lines while holding the device lock — lets one slow client
//! stall every worker):
//!
//! - Nothing here blocks. Clients are non-blocking, edge-triggered, and
//!   served from a per-client input buffer and output buffer. The dataplane
//!   runs on its own thread and never waits for this one.
//! - Memory per client is bounded: a request line may be at most
//!   [`MAX_LINE`] bytes, and a client's next request is not read until the
//!   reply to the previous one has been written out, so a client that sends
//!   without reading holds one reply, not an unbounded queue. A longer line
//!   gets an error reply, and the rest of it is read and thrown away up to
//!   its newline, never buffered; the connection then serves the next line.
//!   Closing instead would leave the line's bytes unread, and a Unix socket
//!   closed with unread input resets the peer, which could then fail its
//!   write with ECONNRESET before it ever reads the reply.
//! - Time per client is bounded too: a partial line must be completed
//!   within `request_timeout` (slowloris), a reply must be taken within the
//!   same time, idle connections are closed after `idle_timeout`, and at
//!   most [`REQUESTS_PER_TURN`] pipelined requests are answered per client
//!   before the others get their turn.
//! - Engine events (a port whose fd died) and in-process calls
//!   ([`ServerHandle::with_daemon`]) arrive through the poll's one `Waker`
//!   (mio allows only one per poll).
//! - SIGINT/SIGTERM arrive through a socket pair written by the signal
//!   handler (`signal_hook::low_level::pipe`), so shutdown happens on this
//!   thread, in order: clients closed, dataplane stopped (which closes TAP
//!   fds, so TAPs vxswitch created vanish, unless a state directory made
//!   them persistent), socket file removed. A second
//!   signal during a stuck shutdown exits at once.
//!
//! The socket file: its directory is created (0755) if missing; a file
//! already there is replaced only if it is a socket nobody answers on (a
//! crashed daemon's leftover). If a daemon answers, start-up fails instead
//! of stealing its path. Between that probe and `bind` another daemon could
//! start; the loser of that race fails to bind, which is the right outcome.
//! The socket is chmod 0660 right after bind (set the group to the one
//! allowed to control the switch); on exit it is removed only if it is
//! still the same file (same device and inode).

mod conn;
mod socket;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::net::UnixListener;
use mio::{Events, Interest, Poll, Token, Waker};

use super::daemon::Daemon;
use super::proto::{encode_reply, strip_os_error, CtlError};
use super::validate;
use crate::switch::EngineConfig;
use crate::time::{Clock, MonotonicClock};

use conn::{encode_event, Conn, Limits, Pump};
use socket::{claim_socket, socket_file, Signals, SocketFile};

/// Where the daemon listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/vxswitch/vxswitch.sock";
/// Pipelined requests answered for one client before serving others.
pub const REQUESTS_PER_TURN: usize = 16;

const LISTENER: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);
const SIGNAL: Token = Token(usize::MAX - 2);
/// Bytes read from a client per `read` call.
const READ_CHUNK: usize = 16 * 1024;
/// Longest the loop sleeps when nothing is due.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// Reply bytes all clients together may hold unread. A reply that would
/// take the total past it, while others hold some, is answered `busy`
/// instead (`replies_refused`): clients that ask for a large `fdb show` and
/// never read cannot hold 128 × its size, nor keep every slot busy. A
/// reply alone is never refused, however large, nor one of at most 64 KiB;
/// an `fdb.show` is refused before its table is collected once others hold
/// a quarter of this.
pub const MAX_QUEUED_REPLIES: usize = 16 << 20;
/// How often the FDB's change feed is drained while anyone monitors.
const MONITOR_EVERY: Duration = Duration::from_millis(100);

/// How to run the server.
#[derive(Clone)]
pub struct ServerOptions {
    pub socket: PathBuf,
    pub engine: EngineConfig,
    pub clock: Arc<dyn Clock>,
    /// A request line must be complete within this of its first byte.
    pub request_timeout: Duration,
    /// A reply must be taken whole within this of being queued, however
    /// slowly the client reads.
    pub reply_timeout: Duration,
    /// A connection with nothing in progress is closed after this long
    /// since its last request (blank lines do not count).
    pub idle_timeout: Duration,
    /// Most connections at once. A newcomer beyond it takes the place of
    /// the connection idle the longest; only when every connection has a
    /// request in progress does it get a `busy` error.
    pub max_clients: usize,
    /// Stop cleanly on SIGINT/SIGTERM (for the `vxswitch daemon` process;
    /// leave off when embedding, the handlers are process-wide).
    pub handle_signals: bool,
    /// Log ports that go away to stderr.
    pub log_events: bool,
    /// Called once, on the server's thread, when it stops serving (a
    /// signal or a shutdown request), before clients are closed and the
    /// dataplane stops: e.g. to tell a service manager `STOPPING=1`.
    pub on_stop: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl ServerOptions {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        ServerOptions {
            socket: socket.into(),
            engine: EngineConfig::default(),
            clock: Arc::new(MonotonicClock::new()),
            request_timeout: Duration::from_secs(10),
            reply_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_clients: 128,
            handle_signals: false,
            log_events: true,
            on_stop: None,
        }
    }
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("socket", &self.socket)
            .field("engine", &self.engine)
            .field("request_timeout", &self.request_timeout)
            .field("reply_timeout", &self.reply_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_clients", &self.max_clients)
            .field("handle_signals", &self.handle_signals)
            .finish_non_exhaustive()
    }
}

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "another vxswitch daemon is already listening on {}; stop it first, or start this one \
         with --socket PATH",
        .0.display()
    )]
    AlreadyRunning(PathBuf),
    #[error(
        "{} exists and is not a socket; remove it or choose another path with --socket",
        .0.display()
    )]
    NotASocket(PathBuf),
    #[error(
        "cannot check whether a daemon is listening on {}: {source}; if none is, remove the \
         file and retry",
        path.display()
    )]
    Probe { path: PathBuf, source: io::Error },
    #[error(
        "cannot create the socket directory {}: {source} (run as root, or choose a writable \
         place with --socket)",
        path.display()
    )]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot listen on {}: {source}{}", path.display(), bind_hint(source))]
    Bind { path: PathBuf, source: io::Error },
    #[error("cannot set up the control event loop: {0}")]
    Poll(#[source] io::Error),
    #[error("cannot start the dataplane: {0}")]
    Engine(#[source] io::Error),
    #[error("cannot install the SIGINT/SIGTERM handlers: {0}")]
    Signals(#[source] io::Error),
    #[error("the control server thread panicked; see the message above")]
    Panicked,
}

/// A daemon that may not write where the socket goes (the default under
/// `/run` is for root) needs another place: say so.
fn bind_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => {
            " (run as root, or choose a writable place with --socket, e.g. \
             --socket $XDG_RUNTIME_DIR/vxswitch.sock)"
        }
        _ => "",
    }
}

/// The server is gone (stopped, or it failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the vxswitch control server has stopped")]
pub struct ServerStopped;

type Call = Box<dyn FnOnce(&mut Daemon) + Send>;

/// A bound, not yet running server. Configure the daemon through
/// [`Server::daemon_mut`] (apply a config file), then [`Server::run`] it
/// on this thread or [`Server::spawn`] it on its own.
pub struct Server {
    // Fields drop in declaration order: clients first, then the dataplane
    // (closing TAP fds), then the socket file, and the signal handlers
    // last, so a second signal during a stuck shutdown still exits.
    conns: Vec<Option<Conn>>,
    ready: Vec<usize>,
    daemon: Daemon,
    poll: Poll,
    waker: Arc<Waker>,
    listener: UnixListener,
    socket: SocketFile,
    calls_tx: Sender<Call>,
    calls: Receiver<Call>,
    stop: Arc<AtomicBool>,
    limits: Limits,
    max_clients: usize,
    scratch: Box<[u8]>,
    signals: Option<Signals>,
    /// When to next look for ports whose sandbox is gone.
    next_reap: Instant,
    /// `accept` failed (out of fds): the client waits in the backlog, and
    /// accepting is tried again at each wake-up until it works (the
    /// listener is edge-triggered: no new event comes for it).
    accept_failing: bool,
    /// When to next retry what the state file records but could not be
    /// restored yet, and the interval after that.
    next_retry: Option<Instant>,
    retry_every: Duration,
    on_stop: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// How often the server looks for ports whose sandbox is gone.
const REAP_EVERY: Duration = Duration::from_secs(1);
/// The first interval between retries of pending restores; it doubles
/// while nothing comes back, up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("socket", &self.socket.path)
            .field("clients", &self.conns.iter().flatten().count())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Claims the socket path, starts the dataplane and, if asked, installs
    /// the signal handlers. Clients may connect from here on; they are
    /// answered once the server runs.
    pub fn bind(opts: ServerOptions) -> Result<Server, ServerError> {
        let listener = claim_socket(&opts.socket)?;
        let socket = socket_file(&opts.socket)?;
        let mut listener = listener;
        let poll = Poll::new().map_err(ServerError::Poll)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(ServerError::Poll)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(ServerError::Poll)?);
        let mut daemon = Daemon::new(opts.engine, opts.clock.clone(), Some(waker.clone()))
            .map_err(ServerError::Engine)?;
        daemon.set_log_events(opts.log_events);
        let signals = if opts.handle_signals {
            Some(Signals::install(poll.registry()).map_err(ServerError::Signals)?)
        } else {
            None
        };
        let (calls_tx, calls) = crossbeam_channel::unbounded();
        Ok(Server {
            next_reap: Instant::now() + REAP_EVERY,
            next_retry: None,
            retry_every: RETRY_FIRST,
            accept_failing: false,
            on_stop: opts.on_stop.clone(),
            signals,
            conns: Vec::new(),
            ready: Vec::new(),
            daemon,
            poll,
            waker,
            listener,
            socket,
            calls_tx,
            calls,
            stop: Arc::new(AtomicBool::new(false)),
            limits: Limits {
                request_timeout: opts.request_timeout,
                reply_timeout: opts.reply_timeout,
                idle_timeout: opts.idle_timeout,
            },
            max_clients: opts.max_clients.max(1),
            scratch: vec![0u8; READ_CHUNK].into_boxed_slice(),
        })
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket.path
    }

    /// The daemon, for configuring it before the server runs.
    pub fn daemon_mut(&mut self) -> &mut Daemon {
        &mut self.daemon
    }

    /// A handle that posts calls to the server's thread (run between
    /// requests, as [`ServerHandle::with_daemon`] runs them): for threads of
    /// the daemon's own, such as the cluster agent's.
    pub fn caller(&self) -> DaemonCaller {
        DaemonCaller {
            calls: self.calls_tx.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Serves until [`ServerHandle::shutdown`] or a signal; then closes
    /// every client, stops the dataplane and removes the socket file.
    pub fn run(mut self) -> Result<(), ServerError> {
        let res = self.serve();
        if let Some(stopping) = self.on_stop.take() {
            stopping();
        }
        if let Some(note) = self.daemon.leaving_note() {
            self.daemon.save_state();
            eprintln!("vxswitch: {note}");
        }
        if let Some(s) = &self.signals {
            s.terminating.store(true, Ordering::SeqCst);
        }
        drop(self);
        res
    }

    /// Runs the server on its own thread.
    pub fn spawn(self) -> io::Result<ServerHandle> {
        let socket = self.socket.path.clone();
        let stop = self.stop.clone();
        let waker = self.waker.clone();
        let calls = self.calls_tx.clone();
        let thread = std::thread::Builder::new()
            .name("vxswitch-ctl".into())
            .spawn(move || self.run())?;
        Ok(ServerHandle {
            socket,
            stop,
            waker,
            calls,
            thread: Some(thread),
        })
    }

    fn serve(&mut self) -> Result<(), ServerError> {
        let mut events = Events::with_capacity(128);
        loop {
            let timeout = self.next_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(ServerError::Poll(e));
            }
            let mut woken = false;
            let mut signalled = false;
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => woken = true,
                    SIGNAL => signalled = true,
                    Token(i) => self.mark_ready(i),
                }
            }
            if woken {
                self.daemon.process_events();
                while let Ok(call) = self.calls.try_recv() {
                    call(&mut self.daemon);
                }
                if self.stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
            }
            if signalled && self.signals.as_mut().is_some_and(Signals::take) {
                eprintln!("vxswitch: signal received, shutting down");
                return Ok(());
            }
            if self.accept_failing {
                self.accept();
            }
            let now = Instant::now();
            self.serve_ready(now);
            self.expire(now);
            if self.fan_out() {
                self.serve_ready(now);
            }
            if now >= self.next_reap {
                self.daemon.reap_orphans();
                self.daemon.fastpath_sync();
                self.next_reap = now + REAP_EVERY;
            }
            self.retry_pending(now);
        }
    }

    fn next_timeout(&self, now: Instant) -> Duration {
        if !self.ready.is_empty() {
            return Duration::ZERO;
        }
        if self.conns.iter().flatten().any(|c| c.monitor) {
            return MONITOR_EVERY;
        }
        let retry = self
            .next_retry
            .map_or(MAX_SLEEP, |t| t.saturating_duration_since(now));
        self.conns
            .iter()
            .flatten()
            .map(|c| c.deadline(&self.limits))
            .min()
            .map_or(MAX_SLEEP, |due| due.saturating_duration_since(now))
            .min(MAX_SLEEP)
            .min(self.next_reap.saturating_duration_since(now))
            .min(retry)
    }

    /// Retries pending restores when due: every second at first, then
    /// backing off to every [`RETRY_MAX`] while nothing comes back.
    fn retry_pending(&mut self, now: Instant) {
        if !self.daemon.has_pending() {
            self.next_retry = None;
            self.retry_every = RETRY_FIRST;
            return;
        }
        let due = *self.next_retry.get_or_insert(now + self.retry_every);
        if now < due {
            return;
        }
        let back = self.daemon.retry_pending();
        self.retry_every = if back > 0 {
            RETRY_FIRST
        } else {
            (self.retry_every * 2).min(RETRY_MAX)
        };
        self.next_retry = Some(now + self.retry_every);
    }

    fn mark_ready(&mut self, i: usize) {
        if let Some(Some(c)) = self.conns.get_mut(i) {
            if !c.queued {
                c.queued = true;
                self.ready.push(i);
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if !self.make_room() {
                        let busy = CtlError::busy(format!(
                            "all {} client connections of the daemon have a request in \
                             progress; try again",
                            self.max_clients
                        ));
                        // Best effort: a fresh socket's buffer takes one short line.
                        let _ = stream.write(&encode_reply(&Err(busy)));
                        continue;
                    }
                    let idx = match self.conns.iter().position(Option::is_none) {
                        Some(i) => i,
                        None => {
                            self.conns.push(None);
                            self.conns.len() - 1
                        }
                    };
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        Token(idx),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        eprintln!(
                            "vxswitch: cannot watch a new control client, dropping it: {}",
                            strip_os_error(&e.to_string())
                        );
                        continue;
                    }
                    self.conns[idx] = Some(Conn::new(stream, Instant::now()));
                    self.count_clients();
                    self.mark_ready(idx);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_failing = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // E.g. out of fds: the waiting client stays in the
                    // backlog and is accepted at a later wake-up. Said once.
                    if !self.accept_failing {
                        let msg = strip_os_error(&e.to_string());
                        eprintln!(
                            "vxswitch: cannot accept a control client: {}",
                            validate::with_fd_advice(msg, e.raw_os_error())
                        );
                    }
                    self.accept_failing = true;
                    return;
                }
            }
        }
    }

    /// Whether a new connection can be taken: a free slot, or one made by
    /// closing the connection idle the longest (no request in progress).
    /// Connections not looked at yet (on the ready list) are served first,
    /// so one whose request is already waiting is answered, not evicted.
    fn make_room(&mut self) -> bool {
        if self.conns.iter().flatten().count() < self.max_clients {
            return true;
        }
        if !self.ready.is_empty() {
            self.serve_ready(Instant::now());
            if self.conns.iter().flatten().count() < self.max_clients {
                return true;
            }
        }
        let oldest = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Some((i, c.as_ref()?)))
            .filter(|(_, c)| !c.busy())
            .min_by_key(|(_, c)| c.idle_since)
            .map(|(i, _)| i);
        match oldest {
            Some(i) => {
                // Nothing was asked on it: closing loses no request, and a
                // client that sends one later sees the connection closed
                // without a reply (the CLI's client then reconnects).
                self.close(i);
                self.daemon.control_stats_mut().evicted += 1;
                true
            }
            None => {
                self.daemon.control_stats_mut().refused_busy += 1;
                false
            }
        }
    }

    fn serve_ready(&mut self, now: Instant) {
        let ready = std::mem::take(&mut self.ready);
        for i in ready {
            let others: usize = (self.conns.iter().enumerate())
                .filter(|&(j, _)| j != i)
                .filter_map(|(_, c)| c.as_ref().map(Conn::pending_out))
                .sum();
            let Some(Some(conn)) = self.conns.get_mut(i) else {
                continue;
            };
            match conn.pump(&mut self.daemon, &mut self.scratch, now, others) {
                Pump::Wait => conn.queued = false,
                Pump::More => self.ready.push(i),
                Pump::Close => self.close(i),
            }
            self.hand_off(i);
        }
    }

    /// Hands the daemon's events to the monitoring connections; tells the
    /// daemon whether anyone still watches. Returns whether any connection
    /// got something to write (it is on the ready list then).
    fn fan_out(&mut self) -> bool {
        let watchers: Vec<usize> = (0..self.conns.len())
            .filter(|&i| matches!(&self.conns[i], Some(c) if c.monitor))
            .collect();
        self.daemon.set_watching(!watchers.is_empty());
        let events = self.daemon.take_monitor_events();
        if events.is_empty() {
            return false;
        }
        let lines: Vec<Vec<u8>> = events.into_iter().map(encode_event).collect();
        for &i in &watchers {
            if let Some(Some(c)) = self.conns.get_mut(i) {
                let mut lost = 0;
                for line in &lines {
                    lost += u64::from(c.queue_event(line));
                }
                self.daemon.count_monitor_lost(lost);
            }
            self.mark_ready(i);
        }
        true
    }

    /// A connection whose `capture.start` reply is out goes to a writer
    /// thread of its capture, off this thread's poll.
    fn hand_off(&mut self, i: usize) {
        let Some(Some(c)) = self.conns.get(i) else {
            return;
        };
        if !c.capture || c.out_pos < c.out.len() {
            return;
        }
        let Some(mut conn) = self.conns[i].take() else {
            return;
        };
        self.ready.retain(|&r| r != i);
        self.count_clients();
        let _ = self.poll.registry().deregister(&mut conn.stream);
        let Some(pending) = self.daemon.take_capture() else {
            return;
        };
        let stream = std::os::unix::net::UnixStream::from(conn.stream);
        let spawned = std::thread::Builder::new()
            .name("vxswitch-capture".into())
            .spawn(move || {
                pending
                    .capture
                    .write_to(stream, pending.count, super::capture::WRITE_TIMEOUT)
            });
        if let Err(e) = spawned {
            eprintln!("vxswitch: cannot start a capture's writer thread: {e}");
        }
    }

    fn close(&mut self, i: usize) {
        if let Some(slot) = self.conns.get_mut(i) {
            if let Some(mut c) = slot.take() {
                if c.capture {
                    // Gone before its hand-off: the capture stops.
                    drop(self.daemon.take_capture());
                }
                let _ = self.poll.registry().deregister(&mut c.stream);
            }
        }
        self.ready.retain(|&r| r != i);
        self.count_clients();
    }

    fn count_clients(&mut self) {
        let n = self.conns.iter().flatten().count();
        self.daemon.control_stats_mut().clients = u64::try_from(n).unwrap_or(u64::MAX);
    }

    fn expire(&mut self, now: Instant) {
        let lim = &self.limits;
        let (rt, reply, idle) = (lim.request_timeout, lim.reply_timeout, lim.idle_timeout);
        for i in 0..self.conns.len() {
            let Some(Some(c)) = self.conns.get_mut(i) else {
                continue;
            };
            if c.monitor {
                continue;
            }
            if c.reply_since
                .is_some_and(|t| now.duration_since(t) >= reply)
            {
                // The client does not take its reply: it would not read an
                // error either.
                self.daemon.control_stats_mut().reply_timeouts += 1;
                self.close(i);
                continue;
            }
            if c.closing {
                continue;
            }
            if c.partial_since.is_some_and(|t| now.duration_since(t) >= rt) {
                self.daemon.control_stats_mut().request_timeouts += 1;
                c.fail(
                    CtlError::bad_request(format!(
                        "no complete request line within {rt:?}; send one JSON request per \
                         line, ending in a newline (closing the connection)"
                    )),
                    now,
                );
                if !c.queued {
                    c.queued = true;
                    self.ready.push(i);
                }
                continue;
            }
            if !c.busy() && now.duration_since(c.idle_since) >= idle {
                self.daemon.control_stats_mut().idle_closed += 1;
                self.close(i);
            }
        }
        if !self.ready.is_empty() {
            self.serve_ready(now);
        }
    }
}

/// Posts calls to a server's thread (see [`Server::caller`]); cloneable.
/// A call posted after the server stopped is dropped unrun.
#[derive(Clone)]
pub struct DaemonCaller {
    calls: Sender<Call>,
    waker: Arc<Waker>,
}

impl std::fmt::Debug for DaemonCaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DaemonCaller")
    }
}

impl DaemonCaller {
    /// Queues `f` for the server's thread and wakes it; does not wait.
    pub fn post(&self, f: Box<dyn FnOnce(&mut Daemon) + Send>) -> Result<(), ServerStopped> {
        self.calls.send(f).map_err(|_| ServerStopped)?;
        self.waker.wake().map_err(|_| ServerStopped)
    }
}

/// Raises the process's soft open-file limit (`RLIMIT_NOFILE`) to its hard
/// limit and returns the limit now in effect. A daemon holds an fd per TAP
/// queue (ports × workers), per VXLAN socket and per client; the usual
/// soft limit of 1024 is met long before the hard one (often 524288).
pub fn raise_open_file_limit() -> io::Result<u64> {
    crate::sys::rlimit::raise_nofile()
}

/// Controls a server running on its own thread. Dropping it shuts the
/// server down.
pub struct ServerHandle {
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    calls: Sender<Call>,
    thread: Option<JoinHandle<Result<(), ServerError>>>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// Runs `f` on the server thread, between requests, and returns its
    /// result: the in-process way to do what the protocol cannot carry,
    /// such as [`Daemon::attach_fd`].
    pub fn with_daemon<R, F>(&self, f: F) -> Result<R, ServerStopped>
    where
        R: Send + 'static,
        F: FnOnce(&mut Daemon) -> R + Send + 'static,
    {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.calls
            .send(Box::new(move |d: &mut Daemon| {
                let _ = tx.send(f(d));
            }))
            .map_err(|_| ServerStopped)?;
        self.waker.wake().map_err(|_| ServerStopped)?;
        // If the server exits first, the queued call is dropped with its
        // sender and this returns an error instead of hanging.
        rx.recv().map_err(|_| ServerStopped)
    }

    /// Stops the server and waits for it: clients closed, dataplane
    /// stopped, socket file removed.
    pub fn shutdown(mut self) -> Result<(), ServerError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), ServerError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        thread.join().map_err(|_| ServerError::Panicked)?
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}
