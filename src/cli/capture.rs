//! `vxswitch capture`: asks the daemon for `capture.start`, then reads
//! the pcapng stream the connection carries from there on: copied to
//! `-w FILE` (or stdout with `-w -`), or printed one line per frame. On
//! Ctrl-C it half-closes the connection; the daemon then ends the stream
//! with its statistics (copies lost), which are reported on stderr.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use vxswitch::ctl::proto::CaptureStart;
use vxswitch::ctl::Request;
use vxswitch::observe::pcapng::{self, Block, Dir, Packet};
use vxswitch::wire::EthernetFrame;

use super::args::{CaptureArgs, DirectionArg};

pub fn run(socket: &Path, a: CaptureArgs) -> Result<(), String> {
    let req = Request::CaptureStart(CaptureStart {
        port: a.port.clone(),
        network: a.network.clone(),
        vtep: a.vtep.clone(),
        direction: Some(
            match a.direction {
                DirectionArg::In => "in",
                DirectionArg::Out => "out",
                DirectionArg::Both => "both",
            }
            .into(),
        ),
        snaplen: Some(a.snaplen),
        count: a.count,
        segment: a.segment,
    });
    let mut s = UnixStream::connect(socket)
        .map_err(|e| format!("cannot connect to {}: {e}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(&req.to_line()).map_err(|e| e.to_string())?;
    // The reply line, a byte at a time: what follows it is pcapng.
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b) {
            Ok(0) => return Err("the daemon closed the connection without a reply".into()),
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) if line.len() < 64 * 1024 => line.push(b[0]),
            Ok(_) => return Err("the daemon's reply is too long".into()),
            Err(e) => return Err(format!("no reply from the daemon: {e}")),
        }
    }
    let reply: serde_json::Value =
        serde_json::from_slice(&line).map_err(|e| format!("malformed reply: {e}"))?;
    if reply["ok"] != true {
        return Err(reply["error"]["message"]
            .as_str()
            .unwrap_or("capture refused")
            .to_string());
    }
    s.set_read_timeout(None).map_err(|e| e.to_string())?;
    // Like tcpdump's "listening on": the capture is attached from here on.
    let on: Vec<&str> = reply["result"]["interfaces"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    eprintln!("capturing on {}; Ctrl-C to stop", on.join(", "));

    // Ctrl-C: half-close, so the daemon ends the stream with its counts.
    let stop = Arc::new(AtomicBool::new(false));
    let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone());
    let _ = signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone());
    if let Ok(w) = s.try_clone() {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = w.shutdown(std::net::Shutdown::Write);
        });
    }

    let mut sink: Option<Box<dyn Write>> = match &a.write {
        None => None,
        Some(p) if p.as_os_str() == "-" => Some(Box::new(std::io::stdout().lock())),
        Some(p) => Some(Box::new(
            std::fs::File::create(p).map_err(|e| format!("cannot write {}: {e}", p.display()))?,
        )),
    };
    let mut reader = pcapng::Reader::default();
    let mut names: Vec<String> = Vec::new();
    let (mut frames, mut lost) = (0u64, 0u64);
    // The daemon ends a whole stream with its statistics (the lost count).
    let mut ended = false;
    let mut buf = vec![0u8; 256 * 1024];
    let mut stdout = std::io::stdout().lock();
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("capture stream: {e}")),
        };
        if let Some(w) = &mut sink {
            if w.write_all(&buf[..n]).and_then(|()| w.flush()).is_err() {
                break; // the reader (tshark, a full disk) went away
            }
        }
        reader.push(&buf[..n]);
        while let Some((kind, body)) = reader.next_block()? {
            let blk = Block { kind, body: &body };
            if let Some(name) = blk.interface_name() {
                names.push(name);
            } else if let Some(l) = blk.lost() {
                lost += l;
                ended = true;
            } else if let Some(p) = blk.packet() {
                frames += 1;
                if sink.is_none() {
                    let name = names.get(p.iface as usize).map_or("?", String::as_str);
                    let text = frame_line(&p, name);
                    if stdout.write_all(text.as_bytes()).is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
    eprintln!(
        "{frames} frame{} captured, {lost} lost{}",
        if frames == 1 { "" } else { "s" },
        if !ended {
            " (the stream ended without the daemon's statistics: the capture was cut short, \
             and copies it lost are not counted)"
        } else if lost > 0 {
            " (the capture's reader was too slow; the frames themselves were forwarded)"
        } else {
            ""
        }
    );
    Ok(())
}

/// `HH:MM:SS.nnnnnnnnn PORT in|out SRC > DST ETHERTYPE LEN [dropped: REASON]`.
pub fn frame_line(p: &Packet<'_>, port: &str) -> String {
    let (ts_ns, dir, data, orig_len) = (p.ts_ns, p.dir, p.data, p.orig_len);
    let secs = ts_ns / 1_000_000_000 % 86_400;
    let mut s = format!(
        "{:02}:{:02}:{:02}.{:09} {port} {}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ts_ns % 1_000_000_000,
        match dir {
            Some(Dir::In) => "in ",
            Some(Dir::Out) => "out",
            None => "?  ",
        }
    );
    match EthernetFrame::new_checked(data) {
        Ok(f) => s.push_str(&format!(
            " {} > {} {:?} {orig_len}",
            f.src_addr(),
            f.dst_addr(),
            f.ethertype()
        )),
        Err(_) => s.push_str(&format!(" (runt) {orig_len}")),
    }
    if let Some(c) = &p.comment {
        s.push_str(&format!(" [{c}]"));
    }
    s.push('\n');
    s
}
