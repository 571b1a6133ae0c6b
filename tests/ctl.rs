//! The control plane end to end, without root: a daemon in-process on a
//! temporary socket, socketpair ends as ports, requests over the real
//! socket, and the `vxswitch` binary against it. VXLAN runs over loopback:
//! the daemon's tunnel socket on a free port, a plain UDP socket as the
//! remote VTEP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::UdpSocket;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vxswitch::ctl::{Server, ServerError, ServerHandle, ServerOptions};
use vxswitch::vxlan::VxlanConfig;

const WAIT: Duration = Duration::from_secs(10);

/// A unique, self-removing directory for one test's socket.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "vxswitch-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn socket(&self) -> PathBuf {
        self.0.join("ctl.sock")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct TestDaemon {
    handle: Option<ServerHandle>,
    dir: TempDir,
}

impl TestDaemon {
    fn start(tag: &str) -> TestDaemon {
        Self::start_with(tag, |_| {})
    }

    fn start_with(tag: &str, tweak: impl FnOnce(&mut ServerOptions)) -> TestDaemon {
        let dir = TempDir::new(tag);
        let mut opts = ServerOptions::new(dir.socket());
        tweak(&mut opts);
        let handle = Server::bind(opts).unwrap().spawn().unwrap();
        TestDaemon {
            handle: Some(handle),
            dir,
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.socket()
    }

    fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().unwrap()
    }

    /// Attaches a socketpair port; returns the test's end, blocking with a
    /// read timeout so a missing frame fails the test instead of hanging it.
    fn attach(&self, name: &str, network: &str) -> UnixStream {
        let (ours, theirs) = vxswitch::seqpacket_pair().unwrap();
        let (name, network) = (name.to_string(), network.to_string());
        self.handle()
            .with_daemon(move |d| d.attach_fd(&name, &network, theirs, None))
            .unwrap()
            .unwrap();
        // A SOCK_SEQPACKET fd: std's UnixStream reads and writes it fine,
        // one record per call.
        let s = UnixStream::from(ours);
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s
    }

    fn call(&self, cmd: &str, args: Value) -> Value {
        call(&self.socket(), cmd, args)
    }

    fn ok(&self, cmd: &str, args: Value) -> Value {
        let r = self.call(cmd, args);
        assert_eq!(r["ok"], true, "{cmd}: {r}");
        r["result"].clone()
    }

    fn shutdown(mut self) {
        self.handle.take().unwrap().shutdown().unwrap();
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.shutdown();
        }
    }
}

fn connect(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

/// Reads one reply line.
fn read_reply(r: &mut impl BufRead) -> Value {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.ends_with('\n'), "incomplete reply {line:?}");
    serde_json::from_str(&line).unwrap()
}

fn send_line(path: &Path, line: &[u8]) -> Value {
    let mut s = connect(path);
    s.write_all(line).unwrap();
    read_reply(&mut BufReader::new(s))
}

fn call(path: &Path, cmd: &str, args: Value) -> Value {
    let mut line = serde_json::to_vec(&json!({"cmd": cmd, "args": args})).unwrap();
    line.push(b'\n');
    send_line(path, &line)
}

fn error_message(r: &Value) -> String {
    assert_eq!(r["ok"], false, "{r}");
    r["error"]["message"].as_str().unwrap().to_string()
}

const A_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const B_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

fn frame(dst: [u8; 6], src: [u8; 6], tag: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend(std::iter::repeat_n(tag, 50));
    f
}

fn recv(port: &mut UnixStream) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    let n = port.read(&mut buf).expect("no frame within the deadline");
    buf[..n].to_vec()
}

/// Waits until `cond` holds, or fails after `WAIT`.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn two_ports(tag: &str) -> (TestDaemon, UnixStream, UnixStream) {
    let d = TestDaemon::start(tag);
    d.ok(
        "network.create",
        json!({"name": "red", "subnet": "10.77.0.0/24"}),
    );
    let a = d.attach("a", "red");
    let b = d.attach("b", "red");
    (d, a, b)
}

/// A broadcast from a reaches b; b's reply is unicast back to a.
fn exchange(a: &mut UnixStream, b: &mut UnixStream, tag: u8) {
    let bc = frame([0xff; 6], A_MAC, tag);
    a.write_all(&bc).unwrap();
    assert_eq!(recv(b), bc);
    let uc = frame(A_MAC, B_MAC, tag);
    b.write_all(&uc).unwrap();
    assert_eq!(recv(a), uc);
}

#[test]
fn frames_forward_and_show_up_in_fdb_and_stats() {
    let (d, mut a, mut b) = two_ports("fwd");
    exchange(&mut a, &mut b, 1);

    let rows = d.ok("fdb.show", json!({}));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["mac"], "02:00:00:00:00:0a");
    assert_eq!(rows[0]["port"], "a");
    assert_eq!(rows[0]["network"], "red");
    assert_eq!(rows[0]["kind"], "learned");
    assert_eq!(rows[1]["mac"], "02:00:00:00:00:0b");
    assert_eq!(rows[1]["port"], "b");
    let only_b = d.ok("fdb.show", json!({"port": "b"}));
    assert_eq!(only_b.as_array().unwrap().len(), 1);

    let st = d.ok("stats", json!({}));
    let ports = st["ports"].as_array().unwrap();
    assert_eq!(ports[0]["name"], "a");
    assert_eq!(ports[0]["stats"]["rx_frames"], 1);
    assert_eq!(ports[0]["stats"]["tx_frames"], 1);
    assert_eq!(ports[0]["stats"]["rx_bytes"], 64);
    assert_eq!(ports[1]["stats"]["tx_frames"], 1);
    assert_eq!(ports[1]["stats"]["drops"]["runt"], 0);
    assert_eq!(st["fdb"]["entries"], 2);

    // A runt is counted under its reason.
    a.write_all(&[1, 2, 3]).unwrap();
    wait_until("a runt drop to be counted", || {
        d.ok("stats", json!({"port": "a"}))["ports"][0]["stats"]["drops"]["runt"] == 1
    });

    let ls = d.ok("port.ls", json!({}));
    assert_eq!(ls[0]["kind"], "fd");
    assert_eq!(ls[0]["mtu"], 1500);
    d.shutdown();
}

#[test]
fn garbage_and_huge_lines_do_not_disturb_others() {
    let (d, mut a, mut b) = two_ports("garbage");
    let path = d.socket();

    // Garbage gets an error naming the problem, and the connection stays usable.
    let mut s = connect(&path);
    s.write_all(b"\x00\xffhello\n{\"cmd\":\"port.ad\"}\n{\"cmd\":\"ping\"}\n")
        .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let m = error_message(&read_reply(&mut r));
    assert!(m.starts_with("malformed request: "), "{m}");
    assert!(m.contains("line 1 column"), "{m}");
    let m = error_message(&read_reply(&mut r));
    assert!(
        m.starts_with("unknown command \"port.ad\"; known commands: ping,"),
        "{m}"
    );
    assert_eq!(read_reply(&mut r)["result"]["pong"], true);
    drop((s, r));

    // 10 MB without a newline: the line-limit error, the rest of the line
    // is skipped, and the connection serves the next line.
    let mut big = connect(&path);
    let writer = {
        let mut w = big.try_clone().unwrap();
        std::thread::spawn(move || {
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..10 {
                w.write_all(&chunk)
                    .expect("the daemon reads the whole line");
            }
        })
    };
    let mut r = BufReader::new(big.try_clone().unwrap());
    let reply = read_reply(&mut r);
    assert_eq!(reply["error"]["kind"], "bad_request");
    let m = error_message(&reply);
    assert!(
        m.starts_with("request line longer than 65536 bytes; send one JSON request per line"),
        "{m}"
    );
    writer.join().unwrap();
    big.write_all(b"\n{\"cmd\":\"ping\"}\n").unwrap();
    assert_eq!(read_reply(&mut r)["result"]["pong"], true);
    drop((big, r));

    // Others are still served, and frames still forward.
    assert_eq!(d.ok("ping", json!({}))["pong"], true);
    exchange(&mut a, &mut b, 2);

    // Exactly the limit is accepted (it is then just bad JSON).
    let mut line = b"{\"cmd\":\"ping\"}".to_vec();
    line.resize(65_536, b' ');
    line.push(b'\n');
    assert_eq!(send_line(&path, &line)["result"]["pong"], true);
    d.shutdown();
}

#[test]
fn the_client_that_sent_an_over_long_line_reads_the_error_and_goes_on() {
    let d = TestDaemon::start("longline");
    let path = d.socket();
    // The CLI's client writes the whole 10 MB line before it reads: the
    // daemon must read it all (no reset) and the reply must be there.
    let mut client = vxswitch::ctl::Client::connect(&path).unwrap();
    let huge = vxswitch::ctl::Request::PortRm(vxswitch::ctl::proto::PortRm {
        name: "x".repeat(10 << 20),
    });
    match client.call(&huge) {
        Err(vxswitch::ctl::ClientError::Remote(e)) => {
            assert_eq!(e.kind, vxswitch::ctl::ErrorKind::BadRequest);
            assert!(
                e.message
                    .starts_with("request line longer than 65536 bytes"),
                "{}",
                e.message
            );
        }
        other => panic!("expected the line-limit error, got {other:?}"),
    }
    // The same connection carries the next request.
    let pong = client
        .call(&vxswitch::ctl::Request::Ping(Default::default()))
        .unwrap();
    assert_eq!(pong["pong"], true);

    // By hand: the over-long line and a valid request in one write, then
    // both replies in order, and the connection still open.
    let mut s = connect(&path);
    let mut burst = vec![b'y'; 200_000];
    burst.extend_from_slice(b"\n{\"cmd\":\"version\"}\n");
    s.write_all(&burst).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let m = error_message(&read_reply(&mut r));
    assert!(m.starts_with("request line longer than 65536 bytes"), "{m}");
    assert_eq!(read_reply(&mut r)["result"]["protocol"], 2);
    s.write_all(b"{\"cmd\":\"ping\"}\n").unwrap();
    assert_eq!(read_reply(&mut r)["result"]["pong"], true);
    d.shutdown();
}

#[test]
fn a_stalled_client_does_not_block_others_and_times_out() {
    let d = TestDaemon::start_with("stall", |o| {
        o.request_timeout = Duration::from_millis(1500);
    });
    let path = d.socket();
    let mut stalled = connect(&path);
    stalled.write_all(b"{\"cmd\": \"pi").unwrap();
    let t0 = Instant::now();
    for _ in 0..5 {
        assert_eq!(d.ok("ping", json!({}))["pong"], true);
    }
    assert!(t0.elapsed() < Duration::from_secs(1), "others were delayed");
    // The stalled client gets a timeout error and is disconnected.
    let mut r = BufReader::new(stalled.try_clone().unwrap());
    let m = error_message(&read_reply(&mut r));
    assert!(m.starts_with("no complete request line within 1.5s"), "{m}");
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(rest.is_empty());
    assert!(t0.elapsed() < WAIT);
    d.shutdown();
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let d = TestDaemon::start("pipeline");
    let mut s = connect(&d.socket());
    let mut burst = Vec::new();
    for i in 0..40 {
        burst.extend_from_slice(
            format!("{{\"cmd\":\"network.create\",\"args\":{{\"name\":\"n{i}\"}}}}\n").as_bytes(),
        );
    }
    s.write_all(&burst).unwrap();
    let mut r = BufReader::new(s);
    for i in 0..40 {
        assert_eq!(read_reply(&mut r)["result"]["name"], format!("n{i}"));
    }
    assert_eq!(d.ok("network.ls", json!({})).as_array().unwrap().len(), 40);
    d.shutdown();
}

#[test]
fn idle_clients_make_room_and_only_busy_ones_refuse_a_newcomer() {
    let d = TestDaemon::start_with("busy", |o| o.max_clients = 2);
    let path = d.socket();
    // Two idle connections fill the table; a newcomer takes the place of
    // the one idle the longest, which finds itself closed.
    let mut first = connect(&path);
    first.write_all(b"{\"cmd\":\"ping\"}\n").unwrap();
    let mut first_r = BufReader::new(first.try_clone().unwrap());
    read_reply(&mut first_r);
    let mut second = connect(&path);
    second.write_all(b"{\"cmd\":\"ping\"}\n").unwrap();
    read_reply(&mut BufReader::new(second.try_clone().unwrap()));
    assert_eq!(d.ok("ping", json!({}))["pong"], true);
    let mut rest = Vec::new();
    assert_eq!(
        first_r.read_to_end(&mut rest).unwrap(),
        0,
        "the longest idle connection was closed for the newcomer"
    );

    // Connections with a request in progress (here: half a line) are not
    // evicted: with every slot busy, a newcomer gets `busy`.
    let mut a = connect(&path);
    a.write_all(b"{\"cmd\":").unwrap();
    let mut b = connect(&path);
    b.write_all(b"{\"cmd\":").unwrap();
    // Give the daemon the time to read both halves.
    wait_until("both half requests to be read", || {
        let r = call(&path, "stats", json!({}));
        r["ok"] == false && r["error"]["kind"] == "busy"
    });
    let s = connect(&path);
    let reply = read_reply(&mut BufReader::new(s));
    assert_eq!(reply["error"]["kind"], "busy");
    let m = error_message(&reply);
    assert!(
        m.contains("all 2 client connections of the daemon have a request in progress"),
        "{m}"
    );
    // Finishing them frees the slots for everyone again.
    a.write_all(b"\"ping\"}\n").unwrap();
    b.write_all(b"\"ping\"}\n").unwrap();
    read_reply(&mut BufReader::new(a.try_clone().unwrap()));
    read_reply(&mut BufReader::new(b.try_clone().unwrap()));
    let st = d.ok("stats", json!({}));
    assert!(st["control"]["evicted"].as_u64().unwrap() >= 1, "{st}");
    assert!(st["control"]["refused_busy"].as_u64().unwrap() >= 1, "{st}");
    drop((a, b, second));
    d.shutdown();
}

/// A cheap, deterministic stream of bytes for the garbage client.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn hostile_clients_never_lock_others_out() {
    let d = TestDaemon::start_with("hostile", |o| {
        o.request_timeout = Duration::from_secs(2);
        o.reply_timeout = Duration::from_secs(2);
        o.idle_timeout = Duration::from_secs(3);
        o.engine.fdb.max_per_dest = 50_000;
    });
    let path = d.socket();
    d.ok("network.create", json!({"name": "red"}));
    let mut a = d.attach("a", "red");
    let _b = d.attach("b", "red");
    // 16,000 learned MACs: an `fdb show` of about 1.6 MB, far more than a
    // socket buffer holds.
    for i in 0..16_000u32 {
        let [_, x, y, z] = i.to_be_bytes();
        a.write_all(&frame([0xff; 6], [0x02, 0xaa, 0, x, y, z], 0))
            .unwrap();
    }
    wait_until("16,000 entries", || {
        d.ok("stats", json!({}))["fdb"]["entries"].as_u64() >= Some(16_000)
    });

    // The whole reply, as a reader that keeps up gets it.
    let full = {
        let mut s = connect(&path);
        s.write_all(b"{\"cmd\":\"fdb.show\"}\n").unwrap();
        let mut line = Vec::new();
        BufReader::new(s).read_until(b'\n', &mut line).unwrap();
        line.len()
    };
    assert!(full > 1_000_000, "fdb show is only {full} bytes");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut threads = Vec::new();
    // 300 idle connections: more than the 128 slots.
    let idle: Vec<UnixStream> = (0..300).map(|_| connect(&path)).collect();
    // One that sends only newlines, forever.
    let newline_closed = {
        let mut s = connect(&path);
        let stop = stop.clone();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if s.write_all(b"\n").is_err() {
                    return Some(t0.elapsed());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            None
        })
    };
    // A 16 MiB line, as fast as the daemon takes it.
    {
        let mut s = connect(&path);
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..16 {
                if stop.load(Ordering::Relaxed) || s.write_all(&chunk).is_err() {
                    return;
                }
            }
        }));
    }
    // Random bytes, newlines included.
    {
        let mut s = connect(&path);
        let (stop, path) = (stop.clone(), path.clone());
        threads.push(std::thread::spawn(move || {
            let mut state = 0x9e37_79b9_7f4a_7c15u64;
            while !stop.load(Ordering::Relaxed) {
                let bytes: Vec<u8> = (0..4096).map(|_| xorshift(&mut state) as u8).collect();
                if s.write_all(&bytes).is_err() {
                    s = connect(&path);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }));
    }
    // A reader that takes a byte every 250 ms of a big `fdb show`, then,
    // well past the reply deadline, the rest at full speed.
    let slow = {
        let mut s = connect(&path);
        s.write_all(b"{\"cmd\":\"fdb.show\"}\n").unwrap();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut byte = [0u8; 1];
            for _ in 0..16 {
                std::thread::sleep(Duration::from_millis(250));
                if s.read(&mut byte).unwrap_or(0) == 1 {
                    got.push(byte[0]);
                }
            }
            let _ = s.read_to_end(&mut got);
            got
        })
    };
    // Meanwhile every other client is answered, promptly.
    let t0 = Instant::now();
    let mut worst = Duration::ZERO;
    let mut pings = 0;
    while t0.elapsed() < Duration::from_secs(5) {
        let t = Instant::now();
        let r = call(&path, "ping", json!({}));
        let took = t.elapsed();
        assert_eq!(r["result"]["pong"], true, "ping {pings}: {r}");
        assert!(took < Duration::from_secs(2), "ping {pings} took {took:?}");
        worst = worst.max(took);
        pings += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("{pings} pings under attack, slowest {worst:?}");
    // And a request that changes something still works.
    d.ok("network.create", json!({"name": "blue"}));

    // The slow reader was cut off at the reply deadline: what it got is
    // what the socket buffers held then, not the reply, and then the end.
    let got = slow.join().unwrap();
    assert!(
        got.len() < full && !got.ends_with(b"\n"),
        "the slow reader got {} of {full} bytes: the whole reply",
        got.len()
    );
    // The newline sender is no client: it is closed when idle too long
    // (or evicted before that).
    stop.store(true, Ordering::Relaxed);
    let closed = newline_closed.join().unwrap();
    assert!(
        closed.is_some_and(|t| t < Duration::from_secs(10)),
        "the newline client was never closed: {closed:?}"
    );
    for t in threads {
        t.join().unwrap();
    }
    let st = d.ok("stats", json!({}));
    let c = &st["control"];
    assert!(c["evicted"].as_u64().unwrap() >= 172, "{c}");
    assert!(c["reply_timeouts"].as_u64().unwrap() >= 1, "{c}");
    drop(idle);
    d.shutdown();
}

/// 128 clients ask for a large `fdb show` and never read it. Before the
/// reply budget each held its whole reply (128 × 1.6 MB) and its slot, so
/// every newcomer got `busy`, and encoding 128 tables held up `ping` for
/// seconds. Now a few hold (part of) a reply, the rest are answered `busy`
/// (counted) and can be evicted, and the table is encoded a chunk at a
/// time as a reader takes it, byte for byte what it was.
#[test]
fn clients_that_never_read_a_large_fdb_show_lock_no_one_out() {
    let d = TestDaemon::start_with("hoarders", |o| {
        o.engine.fdb.max_per_dest = 50_000;
    });
    let path = d.socket();
    d.ok("network.create", json!({"name": "red"}));
    let mut a = d.attach("a", "red");
    let _b = d.attach("b", "red");
    for i in 0..16_000u32 {
        let [_, x, y, z] = i.to_be_bytes();
        a.write_all(&frame([0xff; 6], [0x02, 0xbb, 0, x, y, z], 0))
            .unwrap();
    }
    wait_until("16,000 entries", || {
        d.ok("stats", json!({}))["fdb"]["entries"].as_u64() >= Some(16_000)
    });
    // The streamed reply is one line of JSON with every row.
    let whole = send_line(&path, b"{\"cmd\":\"fdb.show\"}\n");
    let rows = whole["result"].as_array().expect("a list of rows");
    assert!(rows.len() >= 16_000, "{} rows", rows.len());
    assert!(rows
        .iter()
        .all(|r| r["network"] == "red" && r["mac"].is_string()));

    let hoarders: Vec<UnixStream> = (0..128)
        .map(|_| {
            let mut s = connect(&path);
            s.write_all(b"{\"cmd\":\"fdb.show\"}\n").unwrap();
            s
        })
        .collect();
    // Every ping is prompt and a change is made, from new connections.
    let t0 = Instant::now();
    let mut worst = Duration::ZERO;
    while t0.elapsed() < Duration::from_secs(3) {
        let t = Instant::now();
        let r = call(&path, "ping", json!({}));
        worst = worst.max(t.elapsed());
        assert_eq!(r["result"]["pong"], true, "{r}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Generous: a debug build collects a 16,000-row table in ~80 ms.
    assert!(worst < Duration::from_millis(500), "slowest ping {worst:?}");
    eprintln!("slowest ping with 128 hoarders: {worst:?}");
    let r = call(&path, "network.create", json!({"name": "blue"}));
    assert_eq!(r["ok"], true, "{r}");
    let c = &d.ok("stats", json!({}))["control"];
    assert!(c["replies_refused"].as_u64() >= Some(100), "{c}");
    assert_eq!(c["refused_busy"], 0, "{c}");
    drop(hoarders);
    d.shutdown();
}

#[test]
fn network_rm_is_busy_and_port_rm_flushes() {
    let (d, mut a, mut b) = two_ports("rm");
    exchange(&mut a, &mut b, 3);
    let r = d.call("network.rm", json!({"name": "red"}));
    assert_eq!(r["error"]["kind"], "busy");
    let m = error_message(&r);
    assert!(m.contains("2 port(s) attached (a, b)"), "{m}");

    let removed = d.ok("port.rm", json!({"name": "b"}));
    assert_eq!(removed["fdb_flushed"], 1);
    let rows = d.ok("fdb.show", json!({}));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["port"], "a");
    // The switch closed b's fd: the test end sees end of file.
    let mut buf = [0u8; 64];
    assert_eq!(b.read(&mut buf).unwrap(), 0);

    let r = d.call("port.rm", json!({"name": "b"}));
    assert_eq!(r["error"]["kind"], "not_found");

    let r = d.ok("network.rm", json!({"name": "red", "force": true}));
    assert_eq!(r["removed_ports"], json!(["a"]));
    assert_eq!(d.ok("fdb.show", json!({})), json!([]));
    d.shutdown();
}

#[test]
fn static_entries_and_flush() {
    let (d, mut a, mut b) = two_ports("static");
    // A third port: a frame flooded instead of forwarded would reach it.
    let mut c = d.attach("c", "red");
    exchange(&mut a, &mut b, 4);
    assert_eq!(
        recv(&mut c),
        frame([0xff; 6], A_MAC, 4),
        "c sees the broadcast"
    );
    d.ok(
        "fdb.add",
        json!({"network": "red", "mac": "02:00:00:00:00:99", "port": "b"}),
    );
    // Frames to the static MAC go to b only: c's next frame is the
    // broadcast sent after it, not the frame itself.
    let f = frame([2, 0, 0, 0, 0, 0x99], A_MAC, 5);
    a.write_all(&f).unwrap();
    let marker = frame([0xff; 6], A_MAC, 6);
    a.write_all(&marker).unwrap();
    assert_eq!(recv(&mut b), f);
    assert_eq!(recv(&mut c), marker, "the static entry's frame was flooded");
    assert_eq!(d.ok("fdb.flush", json!({"network": "red"}))["removed"], 2);
    let rows = d.ok("fdb.show", json!({}));
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["kind"], "static");
    d.ok(
        "fdb.del",
        json!({"network": "red", "mac": "02:00:00:00:00:99"}),
    );
    let r = d.call(
        "fdb.del",
        json!({"network": "red", "mac": "02:00:00:00:00:99"}),
    );
    assert_eq!(r["error"]["kind"], "not_found");
    let r = d.call(
        "fdb.add",
        json!({"network": "red", "mac": "ff:ff:ff:ff:ff:ff", "port": "a"}),
    );
    assert_eq!(r["error"]["kind"], "invalid_argument");
    d.shutdown();
}

#[test]
fn a_port_whose_peer_closes_is_removed() {
    let (d, a, _b) = two_ports("gone");
    drop(a);
    wait_until("port a to disappear", || {
        d.ok("port.ls", json!({})).as_array().unwrap().len() == 1
    });
    assert_eq!(d.ok("port.ls", json!({}))[0]["name"], "b");
    // The name is free again.
    let _a2 = d.attach("a", "red");
    d.shutdown();
}

#[test]
fn socket_is_claimed_once_and_stale_files_are_replaced() {
    let d = TestDaemon::start("claim");
    match Server::bind(ServerOptions::new(d.socket())) {
        Err(ServerError::AlreadyRunning(p)) => assert_eq!(p, d.socket()),
        other => panic!("expected AlreadyRunning, got {other:?}"),
    }
    // The live daemon is unharmed.
    assert_eq!(d.ok("ping", json!({}))["pong"], true);
    let path = d.socket();
    d.shutdown();
    assert!(!path.exists(), "socket file left behind");

    // A socket file nobody listens on is a leftover: replaced.
    let dir = TempDir::new("stale");
    let stale = dir.socket();
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let h = Server::bind(ServerOptions::new(&stale))
        .unwrap()
        .spawn()
        .unwrap();
    assert_eq!(call(&stale, "ping", json!({}))["ok"], true);
    h.shutdown().unwrap();

    // A regular file is never replaced.
    std::fs::write(&stale, b"precious").unwrap();
    let e = Server::bind(ServerOptions::new(&stale)).unwrap_err();
    assert!(e.to_string().contains("is not a socket"), "{e}");
    assert_eq!(std::fs::read(&stale).unwrap(), b"precious");
}

// -- VXLAN ------------------------------------------------------------------

const VNI: u32 = 4242;
const C_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0c];

/// A UDP port free right now: a dual-stack `[::]:0` socket gets one free
/// in both families (IPv4 alone on a host without IPv6).
fn free_udp_port() -> u16 {
    UdpSocket::bind("[::]:0")
        .or_else(|_| UdpSocket::bind("0.0.0.0:0"))
        .and_then(|s| s.local_addr())
        .unwrap()
        .port()
}

/// A daemon whose VXLAN sockets listen on their own free port. The
/// source-port pool is that port alone, so the daemon binds nothing else.
fn vxlan_daemon(tag: &str) -> (TestDaemon, u16) {
    let port = free_udp_port();
    let d = TestDaemon::start_with(tag, |o| {
        o.engine.vxlan = VxlanConfig {
            port,
            src_port_min: port,
            src_port_max: port,
            ..VxlanConfig::default()
        };
    });
    (d, port)
}

/// A VXLAN datagram: the header with the I flag and `vni`, then `frame`.
fn vxlan(vni: u32, frame: &[u8]) -> Vec<u8> {
    let mut d = vec![0x08, 0, 0, 0];
    d.extend_from_slice(&(vni << 8).to_be_bytes());
    d.extend_from_slice(frame);
    d
}

/// A UDP socket standing in for a remote VTEP on `ip`.
fn peer(ip: &str) -> UdpSocket {
    let s = UdpSocket::bind((ip, 0)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// Receives one datagram, checks its VXLAN header, returns the inner frame.
fn recv_vxlan(peer: &UdpSocket, daemon_port: u16) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    let (n, from) = peer
        .recv_from(&mut buf)
        .expect("no VXLAN datagram within the deadline");
    assert_eq!(from.port(), daemon_port, "sent from an unexpected port");
    assert!(n >= 8, "a {n}-byte datagram is no VXLAN");
    assert_eq!(buf[0], 0x08, "flags: I set, reserved bits clear");
    assert_eq!(&buf[1..4], &[0, 0, 0], "reserved");
    let vni = u32::from_be_bytes([0, buf[4], buf[5], buf[6]]);
    assert_eq!(vni, VNI);
    assert_eq!(buf[7], 0, "reserved");
    buf[8..n].to_vec()
}

fn vtep_stats(d: &TestDaemon, addr: &str) -> Value {
    let st = d.ok("stats", json!({}));
    st["vteps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["addr"] == addr)
        .unwrap_or_else(|| panic!("no VTEP {addr} in {st}"))["stats"]
        .clone()
}

#[test]
fn vxlan_carries_frames_to_and_from_a_vtep() {
    let (d, vx_port) = vxlan_daemon("vxlan");
    let remote = peer("127.0.0.1");
    let remote_addr = remote.local_addr().unwrap().to_string();

    let n = d.ok(
        "network.create",
        json!({"name": "blue", "vni": VNI, "subnet": "10.88.0.0/24"}),
    );
    assert_eq!(
        (n["vni"].as_u64(), n["mtu"].as_u64()),
        (Some(4242), Some(1450))
    );
    let v = d.ok("vtep.add", json!({"network": "blue", "addr": remote_addr}));
    assert_eq!(
        v,
        json!({"network": "blue", "vni": VNI, "addr": remote_addr, "dynamic": false,
               "stats": v["stats"].clone()})
    );
    assert_eq!(v["stats"]["rx_frames"], 0);
    let mut a = d.attach("a", "blue");
    let mut b = d.attach("b", "blue");

    // A broadcast from a: flooded to b and, in VXLAN, to the VTEP.
    let bc = frame([0xff; 6], A_MAC, 1);
    a.write_all(&bc).unwrap();
    assert_eq!(recv(&mut b), bc);
    assert_eq!(recv_vxlan(&remote, vx_port), bc);

    // From the VTEP: a broadcast from a new MAC reaches both local ports,
    // and the MAC is learned behind the VTEP.
    let from_c = frame([0xff; 6], C_MAC, 2);
    remote
        .send_to(&vxlan(VNI, &from_c), ("127.0.0.1", vx_port))
        .unwrap();
    assert_eq!(recv(&mut a), from_c);
    assert_eq!(recv(&mut b), from_c);
    let rows = d.ok("fdb.show", json!({}));
    assert_eq!(
        rows,
        json!([
            {"network": "blue", "mac": "02:00:00:00:00:0a", "port": "a", "vtep": null,
             "kind": "learned", "age_ms": rows[0]["age_ms"].clone()},
            {"network": "blue", "mac": "02:00:00:00:00:0c", "port": null, "vtep": remote_addr,
             "kind": "learned", "age_ms": rows[1]["age_ms"].clone()},
        ])
    );
    let behind = d.ok("fdb.show", json!({"vtep": remote_addr}));
    assert_eq!(behind.as_array().unwrap().len(), 1);
    assert_eq!(
        d.ok("fdb.show", json!({"port": "a"}))
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Unicast to the remote MAC goes to the VTEP.
    let to_c = frame(C_MAC, A_MAC, 3);
    a.write_all(&to_c).unwrap();
    assert_eq!(recv_vxlan(&remote, vx_port), to_c);
    wait_until("the VTEP's counters", || {
        let st = vtep_stats(&d, &remote_addr);
        st["tx_frames"] == 2 && st["rx_frames"] == 1
    });

    // A sender that is not a VTEP of the network is dropped and counted.
    let stranger = peer("127.0.0.2");
    let from_d = frame([0xff; 6], [0x02, 0, 0, 0, 0, 0x0d], 4);
    let before = d.ok("stats", json!({}))["vxlan"]["drops"]["unknown_vtep"]
        .as_u64()
        .unwrap();
    stranger
        .send_to(&vxlan(VNI, &from_d), ("127.0.0.1", vx_port))
        .unwrap();
    wait_until("the unknown_vtep drop", || {
        d.ok("stats", json!({}))["vxlan"]["drops"]["unknown_vtep"] == before + 1
    });
    let st = d.ok("stats", json!({}));
    assert_eq!(st["vxlan"]["port"], vx_port);
    assert_eq!(st["vxlan"]["rx_datagrams"], 2);
    assert_eq!(st["vxlan"]["tx_datagrams"], 2);
    assert_eq!(st["vteps"].as_array().unwrap().len(), 1);
    assert_eq!(d.ok("fdb.show", json!({})).as_array().unwrap().len(), 2);
    // Nothing from the stranger reached the ports: the next frame b gets is a's.
    let next = frame([0xff; 6], A_MAC, 5);
    a.write_all(&next).unwrap();
    assert_eq!(recv(&mut b), next);

    // The CLI lists the VTEP as JSON and as a table.
    let out = cli(&d.socket(), &["--json", "vtep", "ls"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ls: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ls[0]["network"], "blue");
    assert_eq!(ls[0]["vni"], VNI);
    assert_eq!(ls[0]["addr"], remote_addr.as_str());
    assert_eq!(ls[0]["dynamic"], false);
    assert_eq!(ls[0]["stats"]["rx_frames"], 1);
    assert!(ls[0]["stats"]["drops"].is_object(), "{ls}");
    let out = cli(&d.socket(), &["vtep", "ls", "blue"]);
    let shown = text(&out.stdout);
    assert!(
        shown.starts_with("NETWORK   VNI  VTEP"),
        "{shown}{}",
        text(&out.stderr)
    );
    assert!(
        shown.contains(&format!("blue     4242  {remote_addr}  static")),
        "{shown}"
    );
    let out = cli(&d.socket(), &["fdb", "show", "--vtep", &remote_addr]);
    assert!(
        text(&out.stdout).contains(&format!("02:00:00:00:00:0c  vtep {remote_addr}  learned")),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // Removing the VTEP flushes the MAC behind it.
    let r = d.ok("vtep.rm", json!({"network": "blue", "addr": "127.0.0.1"}));
    assert_eq!(r["fdb_flushed"], 1);
    assert_eq!(d.ok("fdb.show", json!({})).as_array().unwrap().len(), 1);
    assert_eq!(d.ok("vtep.ls", json!({})), json!([]));
    d.shutdown();
}

#[test]
fn vtep_and_vni_errors_say_what_to_do() {
    let (d, vx_port) = vxlan_daemon("vxerr");
    d.ok("network.create", json!({"name": "red"}));
    d.ok("network.create", json!({"name": "blue", "vni": 7}));
    let cases = [
        (
            "network.create",
            json!({"name": "big", "vni": 16_777_216}),
            "invalid_argument",
            "VNI 16777216 is out of range; a VNI has 24 bits: use 0 to 16777215",
        ),
        (
            "network.create",
            json!({"name": "again", "vni": 7}),
            "exists",
            "VNI 7 is already used by network \"blue\"",
        ),
        (
            "vtep.add",
            json!({"network": "red", "addr": "198.18.0.2"}),
            "invalid_argument",
            "network \"red\" has no VNI; create it with --vni to carry it over VXLAN",
        ),
        (
            "vtep.add",
            json!({"network": "green", "addr": "198.18.0.2"}),
            "not_found",
            "network \"green\" does not exist",
        ),
        (
            "vtep.rm",
            json!({"network": "blue", "addr": "198.18.0.2"}),
            "not_found",
            "is not a VTEP of network \"blue\"",
        ),
        (
            "fdb.add",
            json!({"network": "blue", "mac": "02:00:00:00:00:01"}),
            "invalid_argument",
            "give exactly one of port",
        ),
    ];
    for (cmd, args, kind, want) in cases {
        let r = d.call(cmd, args.clone());
        assert_eq!(r["error"]["kind"], kind, "{cmd} {args}: {r}");
        let m = error_message(&r);
        assert!(m.contains(want), "{cmd} {args}: {m}");
    }
    d.ok("vtep.add", json!({"network": "blue", "addr": "198.18.0.2"}));
    let r = d.call("vtep.add", json!({"network": "blue", "addr": "198.18.0.2"}));
    assert_eq!(r["error"]["kind"], "exists", "{r}");
    let e = d.ok(
        "fdb.add",
        json!({"network": "blue", "mac": "02:00:00:00:00:01", "vtep": "198.18.0.2"}),
    );
    assert_eq!(e["vtep"], format!("198.18.0.2:{vx_port}"));
    assert_eq!(e["port"], Value::Null);

    // The CLI: create with VTEPs, list, static entry to a VTEP, and usage errors.
    let out = cli(
        &d.socket(),
        &[
            "network",
            "create",
            "green",
            "--vni",
            "8",
            "--vtep",
            "198.18.0.3",
            "--vtep",
            "198.18.0.4:8472",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "network green created, mtu 1450, vni 8, vteps 198.18.0.3:{vx_port} \
             198.18.0.4:8472\n"
        )
    );
    let out = cli(&d.socket(), &["network", "ls"]);
    let shown = text(&out.stdout);
    assert!(
        shown.starts_with("NAME   SUBNET  GATEWAY   MTU  VNI  VTEPS  PORTS  SCOPE  UPLINK\n"),
        "{shown}"
    );
    let out = cli(
        &d.socket(),
        &[
            "fdb",
            "add",
            "02:00:00:00:00:02",
            "--network",
            "green",
            "--vtep",
            "198.18.0.4",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "static entry 02:00:00:00:00:02 -> vtep 198.18.0.4:8472 added to network green\n"
    );
    let out = cli(&d.socket(), &["vtep", "add", "red", "198.18.0.2"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "vxswitch: error: network \"red\" has no VNI; create it with --vni to carry it over \
         VXLAN\n"
    );
    let out = cli(
        &d.socket(),
        &["fdb", "add", "02:00:00:00:00:03", "--network", "green"],
    );
    assert_eq!(out.status.code(), Some(2), "neither --port nor --vtep");
    let out = cli(
        &d.socket(),
        &["network", "create", "x", "--vtep", "198.18.0.2"],
    );
    assert_eq!(out.status.code(), Some(2), "--vtep without --vni");
    let r = d.ok("network.rm", json!({"name": "green"}));
    assert_eq!(
        r["removed_vteps"],
        json!([format!("198.18.0.3:{vx_port}"), "198.18.0.4:8472"])
    );
    d.shutdown();
}

// -- the CLI binary ---------------------------------------------------------

fn cli(socket: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vxswitch"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("VXSWITCH_SOCKET")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn cli_talks_to_the_daemon() {
    let (d, mut a, mut b) = two_ports("cli");
    let path = d.socket();
    let out = cli(&path, &["network", "ls", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["name"], "red");
    assert_eq!(v[0]["subnet"], "10.77.0.0/24");
    assert_eq!(v[0]["ports"], json!(["a", "b"]));

    let out = cli(
        &path,
        &["network", "create", "blue", "--subnet", "10.9.0.0/16"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "network blue created, subnet 10.9.0.0/16, mtu 1500\n"
    );

    exchange(&mut a, &mut b, 6);
    let out = cli(&path, &["fdb", "show"]);
    let shown = text(&out.stdout);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines[0], "NETWORK  MAC                PORT  TYPE     AGE");
    assert!(
        lines[1].starts_with("red      02:00:00:00:00:0a  a     learned"),
        "{shown}"
    );
    let out = cli(&path, &["stats"]);
    let shown = text(&out.stdout);
    assert!(shown.starts_with("PORT  NETWORK  RX_FRAMES"), "{shown}");

    // Env var instead of --socket.
    let out = Command::new(env!("CARGO_BIN_EXE_vxswitch"))
        .arg("ping")
        .env("VXSWITCH_SOCKET", &path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    d.shutdown();
}

#[test]
fn cli_errors_are_one_line_and_exit_1() {
    let d = TestDaemon::start("clierr");
    let out = cli(&d.socket(), &["network", "rm", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "vxswitch: error: network \"nosuch\" does not exist; create it with 'vxswitch network \
         create nosuch' or list networks with 'vxswitch network ls'\n"
    );
    assert!(out.stdout.is_empty());
    // The TAP backend is reached only with valid arguments.
    d.ok(
        "network.create",
        json!({"name": "red", "subnet": "10.77.0.0/24"}),
    );
    let out = cli(
        &d.socket(),
        &[
            "port",
            "add",
            "c1",
            "--network",
            "red",
            "--ip",
            "10.1.0.1/24",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("ip 10.1.0.1 is outside subnet 10.77.0.0/24"),
        "{}",
        text(&out.stderr)
    );
    // The daemon's port errors leave out the errno's number, as the CLI's own do.
    let out = cli(
        &d.socket(),
        &[
            "port",
            "add",
            "c1",
            "--network",
            "red",
            "--netns",
            "/nonexistent/netns/c1",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "vxswitch: error: port \"c1\": cannot enter network namespace \
         /nonexistent/netns/c1: No such file or directory\n"
    );
    // Usage errors are clap's: exit code 2.
    let out = cli(&d.socket(), &["port", "add", "c1"]);
    assert_eq!(out.status.code(), Some(2));
    d.shutdown();
}

#[test]
fn demo_and_daemon_refuse_what_they_cannot_do() {
    let dir = TempDir::new("refuse");
    for n in ["1", "20"] {
        let out = cli(&dir.socket(), &["demo", "--containers", n]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(&format!(
                "invalid value '{n}' for '--containers <N>': {n} is not in 2..=8"
            )),
            "{}",
            text(&out.stderr)
        );
    }
    for args in [&["--json", "demo"][..], &["daemon", "--json"][..]] {
        let out = cli(&dir.socket(), args);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).starts_with("error: --json has no result to print: "),
            "{}",
            text(&out.stderr)
        );
    }
    assert!(!dir.socket().exists(), "a daemon started anyway");
}

#[test]
fn cli_says_when_the_daemon_is_not_running() {
    let dir = TempDir::new("nodaemon");
    let path = dir.socket();
    let out = cli(&path, &["network", "ls"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "vxswitch: error: cannot connect to vxswitch daemon at {}: No such file or \
             directory (is 'vxswitch daemon' running?)\n",
            path.display()
        )
    );
}

/// Kills a child process on drop so a failed assertion leaves no daemon behind.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "daemon did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn daemon_binary_applies_config_and_stops_on_sigterm() {
    let dir = TempDir::new("bin");
    let path = dir.0.join("run").join("ctl.sock");
    let cfg = dir.0.join("vxswitch.toml");
    std::fs::write(
        &cfg,
        "[fdb]\nageing_ms = 60000\n\n[[network]]\nname = \"red\"\nsubnet = \"10.77.0.0/24\"\n\
         gateway = \"10.77.0.1\"\n",
    )
    .unwrap();
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_vxswitch"))
            .arg("--socket")
            .arg(&path)
            .args(["daemon", "--config"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("the daemon to answer", || {
        UnixStream::connect(&path).is_ok()
    });
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let out = cli(&path, &["network", "ls", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["gateway"], "10.77.0.1");

    let kill = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let st = wait_for_exit(&mut child);
    assert_eq!(st.code(), Some(0));
    assert!(!path.exists(), "socket file left behind");

    // A bad config names the file and the entry, and the daemon does not start.
    std::fs::write(
        &cfg,
        "[[network]]\nname = \"red\"\n[[port]]\nname = \"c1\"\nnetwork = \"blue\"\n",
    )
    .unwrap();
    let out = cli(&path, &["daemon", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "vxswitch: error: config {}: [[port]] #1 (\"c1\"): network \"blue\" does not exist",
            cfg.display()
        )),
        "{err}"
    );
    assert!(
        !path.exists(),
        "socket file left behind after a failed start"
    );
}

#[test]
fn daemon_binary_takes_vxlan_settings() {
    let dir = TempDir::new("binvx");
    let path = dir.0.join("ctl.sock");
    let cfg = dir.0.join("vxswitch.toml");
    let port = free_udp_port();
    std::fs::write(
        &cfg,
        format!(
            "[vxlan]\nport = 1\nunderlay_mtu = 9000\nsrc_port_min = {port}\nsrc_port_max = \
             {port}\n\n[[network]]\nname = \"blue\"\nvni = 9\nvteps = [\"198.18.0.2\"]\n"
        ),
    )
    .unwrap();
    // --vxlan-port overrides the file's port.
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_vxswitch"))
            .arg("--socket")
            .arg(&path)
            .args(["daemon", "--vxlan-port", &port.to_string(), "--config"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("the daemon to answer", || {
        cli(&path, &["ping"]).status.success() || child.0.try_wait().unwrap().is_some()
    });
    let out = cli(&path, &["--json", "stats"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["vxlan"]["port"], port);
    assert_eq!(st["vteps"][0]["addr"], format!("198.18.0.2:{port}"));
    let out = cli(&path, &["--json", "network", "ls"]);
    let nets: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(nets[0]["mtu"], 8950);
    assert_eq!(nets[0]["vni"], 9);
    let out = cli(&path, &["stats"]);
    assert!(
        text(&out.stdout).contains(&format!("vxlan: udp port {port}, rx 0 datagrams")),
        "{}",
        text(&out.stdout)
    );
    drop(child);

    // Bad settings stop the start with a message naming the setting.
    let out = cli(&path, &["daemon", "--underlay-mtu", "100"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with(
            "vxswitch: error: underlay MTU 100 is out of range (--underlay-mtu, [vxlan] \
             underlay_mtu); use 138 to 65535"
        ),
        "{}",
        text(&out.stderr)
    );
}
