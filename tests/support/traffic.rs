//! Traffic between two containers: an exact TCP transfer of known bytes
//! and an iperf3 run.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use super::Netns;

/// Sends `len` bytes of a known pattern over TCP from `client` to a listener
/// in `server` at `ip` (sockets opened inside the namespaces) and asserts
/// that exactly those bytes arrived.
pub fn exact_transfer(client: &Netns, server: &Netns, ip: &str, len: u64) {
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use vxswitch::ports::{netns::run_in, Netns as Ns};
    let addr: SocketAddr = format!("{ip}:5301").parse().unwrap();
    let listener = run_in(&Ns::named(&server.name), || TcpListener::bind(addr))
        .unwrap()
        .unwrap();
    let rx = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let (mut total, mut digest, mut buf) = (0u64, 0u64, vec![0u8; 1 << 16]);
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                return (total, digest);
            }
            for &b in &buf[..n] {
                digest = digest.wrapping_mul(31).wrapping_add(u64::from(b));
            }
            total += n as u64;
        }
    });
    let mut s = run_in(&Ns::named(&client.name), || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
    })
    .unwrap()
    .unwrap_or_else(|e| panic!("connect {} -> {addr}: {e}", client.name));
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let (mut sent, mut digest) = (0u64, 0u64);
    let mut chunk = vec![0u8; 1 << 16];
    while sent < len {
        for (i, b) in chunk.iter_mut().enumerate() {
            *b = ((sent + i as u64) % 251) as u8;
        }
        s.write_all(&chunk).unwrap();
        for &b in &chunk {
            digest = digest.wrapping_mul(31).wrapping_add(u64::from(b));
        }
        sent += chunk.len() as u64;
    }
    drop(s);
    let got = rx.join().unwrap();
    assert_eq!(
        got,
        (sent, digest),
        "{} -> {ip}: the bytes that arrived (count, digest) differ from those sent",
        client.name
    );
}

/// A TCP transfer of `bytes` from `client` to an iperf3 server in `server`
/// at `server_ip` (the other way with `reverse`); returns iperf3's
/// (sent, received) byte counts after checking that it completed.
/// Runs: ip, iperf3, timeout.
pub fn iperf3(
    client: &Netns,
    server: &Netns,
    server_ip: &str,
    bytes: u64,
    reverse: bool,
) -> (u64, u64) {
    let _srv = server.spawn(&["iperf3", "-s", "-B", server_ip]);
    let n = bytes.to_string();
    let mut args = vec![
        "60",
        "iperf3",
        "-c",
        server_ip,
        "-n",
        &n,
        "-J",
        "--connect-timeout",
        "2000",
    ];
    if reverse {
        args.push("-R");
    }
    // The server needs a moment to listen: retry the client for up to 5 s;
    // `timeout` bounds a transfer that stalls.
    let deadline = Instant::now() + Duration::from_secs(5);
    let j: serde_json::Value = loop {
        let out = client.exec("timeout", &args);
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if (out.status.success() && j.get("error").is_none()) || Instant::now() > deadline {
            break j;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        j.get("error").is_none() && j["end"].is_object(),
        "iperf3 {} -> {server_ip} (reverse {reverse}) failed: {j}",
        client.name
    );
    // cJSON may print large integers as floats: read as f64.
    let field = |k: &str| {
        j["end"][k]["bytes"]
            .as_f64()
            .unwrap_or_else(|| panic!("no end.{k}.bytes in {j}")) as u64
    };
    let (sent, received) = (field("sum_sent"), field("sum_received"));
    assert!(sent >= bytes, "iperf3 sent {sent} < requested {bytes}");
    // iperf3 3.12 in -n mode stops the receiver's count when the sender says
    // it is done, so bytes still in flight are missing from sum_received;
    // `exact_transfer` is the exact comparison.
    assert!(
        received > 0 && received <= sent,
        "iperf3 sent {sent}, received {received}"
    );
    (sent, received)
}
