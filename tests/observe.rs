//! `monitor` end to end without root: a daemon in-process on a temporary
//! socket, socketpair ends as ports. A monitoring client that never reads
//! loses events (counted) and slows nobody.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vxswitch::ctl::{Server, ServerHandle, ServerOptions};

const WAIT: Duration = Duration::from_secs(20);

struct TestDaemon {
    handle: Option<ServerHandle>,
    dir: PathBuf,
}

impl TestDaemon {
    fn start(tag: &str) -> TestDaemon {
        let dir = std::env::temp_dir().join(format!("vxswitch-obs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut opts = ServerOptions::new(dir.join("ctl.sock"));
        opts.log_events = false;
        let handle = Server::bind(opts).unwrap().spawn().unwrap();
        TestDaemon {
            handle: Some(handle),
            dir,
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("ctl.sock")
    }

    fn attach(&self, name: &str, network: &str) -> UnixStream {
        let (ours, theirs) = vxswitch::seqpacket_pair().unwrap();
        let (name, network) = (name.to_string(), network.to_string());
        self.handle
            .as_ref()
            .unwrap()
            .with_daemon(move |d| d.attach_fd(&name, &network, theirs, None))
            .unwrap()
            .unwrap();
        let s = UnixStream::from(ours);
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s
    }

    fn ok(&self, cmd: &str, args: Value) -> Value {
        let mut s = self.connect();
        send(&mut s, cmd, args);
        let r = read_line(&mut BufReader::new(s));
        assert_eq!(r["ok"], true, "{cmd}: {r}");
        r["result"].clone()
    }

    fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(self.socket()).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_write_timeout(Some(WAIT)).unwrap();
        s
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.shutdown();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn send(s: &mut UnixStream, cmd: &str, args: Value) {
    let mut line = serde_json::to_vec(&json!({"cmd": cmd, "args": args})).unwrap();
    line.push(b'\n');
    s.write_all(&line).unwrap();
}

fn read_line(r: &mut impl BufRead) -> Value {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.ends_with('\n'), "incomplete line {line:?}");
    serde_json::from_str(&line).unwrap()
}

fn frame(src: u32) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0xee, 0x02, 0x01];
    f.extend_from_slice(&src.to_be_bytes());
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend(std::iter::repeat_n(0u8, 50));
    f
}

#[test]
fn a_monitor_that_never_reads_loses_events_counted_and_blocks_nobody() {
    let d = TestDaemon::start("slow");
    d.ok("network.create", json!({"name": "red"}));
    let mut a = d.attach("a", "red");

    // One client that never reads, one that does.
    let mut stalled = d.connect();
    send(&mut stalled, "monitor", json!({}));
    let mut reader = d.connect();
    send(&mut reader, "monitor", json!({}));
    let mut reader = BufReader::new(reader);
    assert_eq!(read_line(&mut reader)["result"]["monitoring"], true);

    // A MAC flood: every frame is an event (learned, then refused by the
    // port's limit of 4096).
    let n = 30_000u32;
    let started = Instant::now();
    for i in 0..n {
        a.write_all(&frame(i)).unwrap();
    }
    // The dataplane took every frame: counted on the port.
    let stats = |d: &TestDaemon| d.ok("stats", json!({}));
    let deadline = Instant::now() + WAIT;
    loop {
        let st = stats(&d);
        let rx = st["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "a")
            .unwrap()["stats"]["rx_frames"]
            .as_u64()
            .unwrap();
        if rx == u64::from(n) {
            break;
        }
        assert!(Instant::now() < deadline, "only {rx} of {n} frames read");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("flood of {n} frames taken in {:?}", started.elapsed());

    // The control thread still answers, and events keep coming to the
    // client that reads: once it has caught up, a change made now reaches
    // it. (While it is more than the buffer behind, a change's event may
    // be lost for it too, counted: so changes are made until one arrives.)
    reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let mut seen = 0u64;
    let mut lost_seen = 0u64;
    let mut tries = 0;
    let mut line = String::new();
    'caught_up: loop {
        tries += 1;
        let name = format!("n{tries}");
        d.ok("network.create", json!({"name": name}));
        loop {
            assert!(
                Instant::now() < deadline,
                "no network_created after {seen} events"
            );
            // A line cut by the timeout stays in `line` and is completed
            // by the next read.
            if reader.read_line(&mut line).is_err() || !line.ends_with('\n') {
                continue 'caught_up; // quiet: make another change
            }
            let v: Value = serde_json::from_str(&std::mem::take(&mut line)).unwrap();
            let ev = &v["event"];
            seen += 1;
            if ev["kind"] == "lost" {
                lost_seen += ev["count"].as_u64().unwrap();
            }
            if ev["kind"] == "network_created" && ev["network"] == name.as_str() {
                break 'caught_up;
            }
        }
    }
    // Lost events are counted (the stalled client's, and any the feed
    // dropped while the flood outran the control thread).
    let lost = stats(&d)["control"]["monitor_lost"].as_u64().unwrap();
    assert!(
        lost > 0,
        "nothing counted lost; the reader saw {seen} events"
    );
    assert!(
        lost >= lost_seen,
        "the reader was told of {lost_seen} lost, the daemon counted {lost}"
    );
    // The stalled connection is still open: its buffered events are there.
    stalled
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 256];
    assert!(stalled.read(&mut buf).unwrap() > 0);
}
