//! `vxswitch demo`: the switch's main job end to end, with an embedded
//! default and nothing to prepare.
//!
//! It starts a daemon (this same binary, as a child process on a private
//! socket), creates a network and three containers (network namespaces),
//! gives each a TAP port, pings every pair, runs a TCP transfer (iperf3 when
//! installed, a built-in one otherwise), prints the port list, the FDB and the
//! counters, removes one port to show its entries flushed, and then removes
//! everything it created — also when interrupted with Ctrl-C or when a step
//! fails. Pings and the built-in transfer use sockets opened inside the
//! containers' namespaces, so the demo needs no `ping` binary.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vxswitch::ctl::client;
use vxswitch::ctl::proto::{
    FdbRow, FdbSelect, NetworkCreate, NoArgs, PortAdd, PortInfo, PortRm, Request, StatsArgs,
    StatsReply,
};
use vxswitch::ports::{netns, Netns};
use vxswitch::wire::{Icmpv4Packet, Icmpv4Repr, Ipv4Packet};

use super::render;

/// What the demo builds.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Number of containers, [`MIN_CONTAINERS`] to [`MAX_CONTAINERS`];
    /// [`run`] refuses others.
    pub containers: usize,
    /// Seconds of TCP transfer.
    pub seconds: u64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            containers: 3,
            seconds: 3,
        }
    }
}

/// Fewest containers the demo runs: a pair to ping between.
pub const MIN_CONTAINERS: usize = 2;
/// Most containers the demo runs (every pair pings: n*(n-1) pings).
pub const MAX_CONTAINERS: usize = 8;

const SUBNET: &str = "10.99.0.0/24";
const GATEWAY: &str = "10.99.0.1";
const NETWORK: &str = "demo";

fn container_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, 0, 11 + i as u8)
}

/// Everything the demo created, removed on drop in reverse order.
struct Cleanup {
    daemon: Option<Child>,
    namespaces: Vec<String>,
    dir: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            // The daemon's TAPs are non-persistent: they go with its fds.
            let _ = d.kill();
            let _ = d.wait();
        }
        for ns in self.namespaces.drain(..).rev() {
            if let Err(e) = netns::delete_named(&ns) {
                eprintln!("vxswitch demo: could not delete namespace {ns}: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the demo; returns a one-line error for the CLI on failure.
pub fn run(opts: &DemoOptions) -> Result<(), String> {
    if !(MIN_CONTAINERS..=MAX_CONTAINERS).contains(&opts.containers) {
        return Err(format!(
            "the demo runs {MIN_CONTAINERS} to {MAX_CONTAINERS} containers, not {}",
            opts.containers
        ));
    }
    let n = opts.containers;
    if std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
        != 0
    {
        return Err(
            "the demo creates network namespaces and TAP devices: run it as root (e.g. sudo)"
                .into(),
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| format!("cannot handle signals: {e}"))?;
    }
    let check = || {
        if stop.load(Ordering::Relaxed) {
            Err("interrupted; cleaned up".to_string())
        } else {
            Ok(())
        }
    };

    let tag = std::process::id();
    let dir = std::env::temp_dir().join(format!("vxswitch-demo-{tag}"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut cleanup = Cleanup {
        daemon: None,
        namespaces: Vec::new(),
        dir: dir.clone(),
    };
    let sock = dir.join("vxswitch.sock");

    println!("vxswitch demo: one switch, {n} containers on network \"{NETWORK}\" ({SUBNET})\n");
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the vxswitch binary: {e}"))?;
    let log = std::fs::File::create(dir.join("daemon.log")).map_err(|e| e.to_string())?;
    let child = Command::new(&exe)
        .arg("--socket")
        .arg(&sock)
        .arg("daemon")
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start the daemon: {e}"))?;
    let pid = child.id();
    cleanup.daemon = Some(child);
    wait_for_daemon(&sock, &mut cleanup)?;
    println!("  daemon     pid {pid}, socket {}", sock.display());

    call::<serde_json::Value>(
        &sock,
        &Request::NetworkCreate(NetworkCreate {
            name: NETWORK.into(),
            subnet: Some(SUBNET.into()),
            gateway: Some(GATEWAY.into()),
            mtu: None,
            ..NetworkCreate::default()
        }),
    )?;
    println!("  network    {NETWORK} {SUBNET} gateway {GATEWAY}");

    for i in 0..n {
        check()?;
        let ns = format!("vxdemo-{tag}-c{}", i + 1);
        let path = netns::create_named(&ns).map_err(|e| e.to_string())?;
        cleanup.namespaces.push(ns.clone());
        let p: PortInfo = call(
            &sock,
            &Request::PortAdd(PortAdd {
                name: format!("c{}", i + 1),
                network: NETWORK.into(),
                netns: Some(path.display().to_string()),
                ip: Some(format!("{}/24", container_ip(i))),
                ..PortAdd::default()
            }),
        )?;
        println!(
            "  container  c{}  netns {}  {} {}  {}",
            i + 1,
            path.display(),
            p.ifname.as_deref().unwrap_or("-"),
            p.mac.map(|m| m.to_string()).unwrap_or_default(),
            container_ip(i)
        );
    }
    let ns_of = |i: usize| Netns::named(&cleanup.namespaces[i]);

    println!("\nping (ICMP echo from inside each container)");
    let mut failures = 0;
    for i in 0..n {
        for j in 0..n {
            if i == j {
                continue;
            }
            check()?;
            match ping(&ns_of(i), container_ip(j), Duration::from_secs(2)) {
                Ok(rtt) => println!(
                    "  c{} -> c{}  {}  ok  {:.3} ms",
                    i + 1,
                    j + 1,
                    container_ip(j),
                    rtt.as_secs_f64() * 1e3
                ),
                Err(e) => {
                    failures += 1;
                    println!(
                        "  c{} -> c{}  {}  FAILED: {e}",
                        i + 1,
                        j + 1,
                        container_ip(j)
                    );
                }
            }
        }
    }

    check()?;
    println!("\nTCP transfer c1 -> c2 ({} s)", opts.seconds);
    match transfer(
        &ns_of(0),
        &ns_of(1),
        &cleanup.namespaces,
        container_ip(1),
        opts.seconds,
    ) {
        Ok(line) => println!("  {line}"),
        Err(e) => {
            failures += 1;
            println!("  FAILED: {e}");
        }
    }

    check()?;
    let ports: Vec<PortInfo> = call(&sock, &Request::PortLs(NoArgs {}))?;
    println!("\n$ vxswitch port ls\n{}", render::ports(&ports));
    let fdb: Vec<FdbRow> = call(&sock, &Request::FdbShow(FdbSelect::default()))?;
    println!("$ vxswitch fdb show\n{}", render::fdb(&fdb));
    let stats: StatsReply = call(&sock, &Request::Stats(StatsArgs::default()))?;
    println!("$ vxswitch stats\n{}", render::stats(&stats));

    let last = format!("c{n}");
    call::<serde_json::Value>(&sock, &Request::PortRm(PortRm { name: last.clone() }))?;
    let fdb: Vec<FdbRow> = call(&sock, &Request::FdbShow(FdbSelect::default()))?;
    println!(
        "$ vxswitch port rm {last}   (its TAP is deleted; FDB now has {} entries, none on {last})",
        fdb.len()
    );

    drop(cleanup);
    println!("\ncleaned up: daemon stopped, {n} namespaces and their TAPs removed");
    if failures > 0 {
        return Err(format!("{failures} demo step(s) failed; see above"));
    }
    Ok(())
}

fn call<T: serde::de::DeserializeOwned>(sock: &Path, req: &Request) -> Result<T, String> {
    client::request(sock, req).map_err(|e| format!("{}: {e}", req.name()))
}

fn wait_for_daemon(sock: &Path, cleanup: &mut Cleanup) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if client::request::<serde_json::Value>(sock, &Request::Ping(NoArgs {})).is_ok() {
            return Ok(());
        }
        if let Some(d) = cleanup.daemon.as_mut() {
            if let Ok(Some(st)) = d.try_wait() {
                let log =
                    std::fs::read_to_string(cleanup.dir.join("daemon.log")).unwrap_or_default();
                return Err(format!("the daemon exited ({st}): {}", log.trim()));
            }
        }
        if Instant::now() > deadline {
            return Err("the daemon did not answer within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One ICMP echo from inside `ns` to `dst`; returns the round-trip time.
fn ping(ns: &Netns, dst: Ipv4Addr, timeout: Duration) -> Result<Duration, String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = netns::run_in(ns, || {
        Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
    })
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("raw ICMP socket: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let id = (std::process::id() & 0xffff) as u16;
    let addr = SocketAddr::new(IpAddr::V4(dst), 0);
    let deadline = Instant::now() + timeout;
    // Resend every 200 ms: the first echo may be spent on ARP.
    for seq in 1u16.. {
        let request = Icmpv4Repr::EchoRequest {
            ident: id,
            seq_no: seq,
            data: b"vxswitch",
        };
        let mut echo = [0u8; 16];
        request.emit(&mut Icmpv4Packet::new_unchecked(&mut echo[..]));
        let sent = Instant::now();
        sock.send_to(&echo, &addr.into())
            .map_err(|e| format!("send: {e}"))?;
        let mut buf = [0u8; 1500];
        while sent.elapsed() < Duration::from_millis(200) {
            let Ok(len) = (&sock).read(&mut buf) else {
                break;
            };
            // Raw IPv4 sockets deliver the IP header with the message.
            if is_echo_reply(&buf[..len], dst, id, seq) {
                return Ok(sent.elapsed());
            }
        }
        if Instant::now() > deadline {
            break;
        }
    }
    Err(format!("no reply within {} s", timeout.as_secs()))
}

/// Whether `packet` (an IPv4 packet as a raw socket delivers it) is `dst`'s
/// reply to our echo `id`/`seq`, with a checksum that verifies.
fn is_echo_reply(packet: &[u8], dst: Ipv4Addr, id: u16, seq: u16) -> bool {
    let Ok(ip) = Ipv4Packet::new_checked(packet) else {
        return false;
    };
    let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) else {
        return false;
    };
    ip.src_addr() == dst
        && matches!(
            Icmpv4Repr::parse(&icmp),
            Ok(Icmpv4Repr::EchoReply { ident, seq_no, .. }) if ident == id && seq_no == seq
        )
}

/// A TCP transfer from `client` to `server`: iperf3 when installed, else
/// a built-in sender/receiver pair whose byte counts are compared.
fn transfer(
    client: &Netns,
    server: &Netns,
    names: &[String],
    dst: Ipv4Addr,
    seconds: u64,
) -> Result<String, String> {
    if let Some(line) = iperf3(&names[0], &names[1], dst, seconds)? {
        return Ok(line);
    }
    let addr = SocketAddr::new(IpAddr::V4(dst), 5201);
    let listener = netns::run_in(server, || TcpListener::bind(addr))
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("listen on {addr}: {e}"))?;
    let receiver = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    });
    let mut stream = netns::run_in(client, || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(3))
    })
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("connect to {addr}: {e}"))?;
    let chunk = vec![0x5au8; 256 * 1024];
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        stream.write_all(&chunk).map_err(|e| format!("send: {e}"))?;
        sent += chunk.len() as u64;
    }
    drop(stream);
    let received = receiver
        .join()
        .map_err(|_| "receiver panicked".to_string())?
        .map_err(|e| format!("receive: {e}"))?;
    let secs = started.elapsed().as_secs_f64();
    if received != sent {
        return Err(format!("sent {sent} bytes but {received} arrived"));
    }
    Ok(format!(
        "built-in TCP transfer (iperf3 not installed): {:.1} MB in {secs:.1} s = {:.2} Gbit/s, byte counts match",
        sent as f64 / 1e6,
        sent as f64 * 8.0 / secs / 1e9
    ))
}

/// Runs iperf3 through `ip netns exec` when both are installed.
fn iperf3(
    client_ns: &str,
    server_ns: &str,
    dst: Ipv4Addr,
    seconds: u64,
) -> Result<Option<String>, String> {
    if Command::new("iperf3")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        return Ok(None);
    }
    let mut server = Command::new("ip")
        .args([
            "netns",
            "exec",
            server_ns,
            "iperf3",
            "-s",
            "-1",
            "-B",
            &dst.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start iperf3 server: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let result = loop {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                client_ns,
                "iperf3",
                "-c",
                &dst.to_string(),
                "-t",
                &seconds.to_string(),
                "-J",
            ])
            .stderr(Stdio::null())
            .output()
            .map_err(|e| format!("run iperf3: {e}"))?;
        // iperf3 3.12 may exit 0 with {"error": "unable to connect ..."}
        // when the server is not listening yet: retry until the deadline.
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let error = j.get("error").and_then(|e| e.as_str()).map(str::to_string);
        if out.status.success() && error.is_none() && j["end"]["sum_sent"].is_object() {
            break Ok(j);
        }
        if Instant::now() > deadline {
            break Err(format!(
                "iperf3 failed: {}",
                error.unwrap_or_else(|| format!("exit status {}", out.status))
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = server.kill();
    let _ = server.wait();
    let j = result?;
    // cJSON may print large integers as floats: read numbers as f64.
    let num = |k: &str, f: &str| j["end"][k][f].as_f64().unwrap_or(0.0);
    let (bps, sent, recv) = (
        num("sum_received", "bits_per_second"),
        num("sum_sent", "bytes"),
        num("sum_received", "bytes"),
    );
    Ok(Some(format!(
        "iperf3: {:.2} Gbit/s, {:.1} MB sent, {:.1} MB received",
        bps / 1e9,
        sent / 1e6,
        recv / 1e6
    )))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use vxswitch::wire::{Icmpv4Packet, Icmpv4Repr, Ipv4Packet, Ipv4Repr};

    /// An IPv4 packet from `src` carrying `icmp`.
    fn reply_from(src: Ipv4Addr, icmp: &Icmpv4Repr<'_>) -> Vec<u8> {
        let mut p = vec![0u8; 20 + icmp.buffer_len()];
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: Ipv4Addr::new(10, 0, 0, 1),
            protocol: vxswitch::wire::IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            ttl: 64,
            dscp_ecn: 0,
            ident: 0,
            dont_frag: true,
        };
        ip.emit(&mut Ipv4Packet::new_unchecked(&mut p[..]));
        icmp.emit(&mut Icmpv4Packet::new_unchecked(&mut p[20..]));
        p
    }

    #[test]
    fn only_the_matching_echo_reply_counts() {
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let reply = |ident, seq_no| Icmpv4Repr::EchoReply {
            ident,
            seq_no,
            data: b"vxswitch",
        };
        assert!(super::is_echo_reply(
            &reply_from(dst, &reply(7, 3)),
            dst,
            7,
            3
        ));
        assert!(!super::is_echo_reply(
            &reply_from(dst, &reply(7, 4)),
            dst,
            7,
            3
        ));
        assert!(!super::is_echo_reply(
            &reply_from(dst, &reply(8, 3)),
            dst,
            7,
            3
        ));
        let other = Ipv4Addr::new(10, 0, 0, 9);
        assert!(!super::is_echo_reply(
            &reply_from(other, &reply(7, 3)),
            dst,
            7,
            3
        ));
        let mut bad = reply_from(dst, &reply(7, 3));
        bad[30] ^= 1; // the ICMP checksum no longer verifies
        assert!(!super::is_echo_reply(&bad, dst, 7, 3));
        assert!(!super::is_echo_reply(&[0x45, 0, 0], dst, 7, 3));
    }

    #[test]
    fn run_refuses_a_container_count_out_of_range() {
        // Besides clap's range check: no silent clamping by a caller.
        for n in [0, 1, 9, 20] {
            let e = super::run(&super::DemoOptions {
                containers: n,
                seconds: 1,
            })
            .unwrap_err();
            assert_eq!(e, format!("the demo runs 2 to 8 containers, not {n}"));
        }
    }
}
