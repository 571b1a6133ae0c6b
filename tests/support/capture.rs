//! A tshark capture of one interface inside a namespace, for tests that
//! check what went over a wire: the VXLAN underlay, a container's eth0.

use std::time::Duration;

use super::{cmd, run, run_raw, signal, wait_until, Netns, Proc, TempDir};

/// A tshark capture of one interface inside a namespace, bounded to two
/// minutes, killed on drop if the test fails before stopping it.
/// Runs: ip, tshark, ping (marker pings), kill (to stop it).
pub struct Capture {
    tshark: Proc,
    dir: TempDir,
    /// Host namespace name and underlay peer, for marker pings.
    host: String,
    peer: String,
}

impl Capture {
    /// Starts capturing `dev` in host namespace `host`, and returns once the
    /// capture is live: tshark's "Capturing on" comes before it really is,
    /// so underlay pings to `peer_ip` go out until tshark shows one (they
    /// are not VXLAN, so no decoding below sees them).
    pub fn start(host: &Netns, dev: &str, peer_ip: &str) -> Capture {
        let dir = TempDir::new("vxsw-cap-");
        let file = dir.0.join("capture.pcapng");
        let out = std::fs::File::create(dir.0.join("tshark.out")).unwrap();
        let log = std::fs::File::create(dir.0.join("tshark.log")).unwrap();
        // -P -l: also print each packet's summary line, flushed at once.
        let argv = ["netns", "exec", &host.name, "tshark", "-i", dev, "-l", "-P"];
        let child = cmd("ip", &argv)
            .args(["-a", "duration:120", "-w"])
            .arg(&file)
            .stdout(out)
            .stderr(log)
            .spawn()
            .expect("spawn tshark");
        let cap = Capture {
            tshark: Proc(child),
            dir,
            host: host.name.clone(),
            peer: peer_ip.to_string(),
        };
        cap.sync();
        cap
    }

    /// Pings the underlay peer until tshark shows a new marker ping: every
    /// packet sent before this call is then in the capture.
    pub fn sync(&self) {
        let markers = || {
            std::fs::read_to_string(self.dir.0.join("tshark.out"))
                .unwrap_or_default()
                .lines()
                .filter(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    cols.iter().any(|c| c.starts_with("ICMP")) && cols.contains(&self.peer.as_str())
                })
                .count()
        };
        let before = markers();
        let seen = wait_until(Duration::from_secs(15), || {
            run_raw(
                "ip",
                &[
                    "netns", "exec", &self.host, "ping", "-c1", "-W1", &self.peer,
                ],
            );
            markers() > before
        });
        assert!(seen, "tshark shows no marker ping: {}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("tshark.log")).unwrap_or_default()
    }

    /// Stops the capture once it holds everything sent so far (SIGINT, so
    /// that the file is complete).
    pub fn stop(&mut self) {
        self.sync();
        signal(self.tshark.0.id(), "INT");
        assert!(
            wait_until(Duration::from_secs(10), || {
                self.tshark.0.try_wait().ok().flatten().is_some()
            }),
            "tshark did not stop: {}",
            self.log()
        );
    }

    /// Decodes the capture (UDP 4789 as VXLAN): one row per packet matching
    /// the display `filter`, one string per field; a field found at several
    /// layers (outer and inner `eth.src`) reads "outer,inner".
    pub fn rows(&self, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
        self.rows_with(&[], filter, fields)
    }

    /// [`Capture::rows`] with extra tshark arguments (preferences such as
    /// `-o tcp.check_checksum:TRUE`) before the filter.
    pub fn rows_with(&self, extra: &[&str], filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
        let file = self.dir.0.join("capture.pcapng");
        let mut args = vec!["-r", file.to_str().unwrap(), "-d", "udp.port==4789,vxlan"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-Y", filter, "-T", "fields", "-E", "separator=/t"]);
        for f in fields {
            args.extend_from_slice(&["-e", f]);
        }
        // tshark as root warns on stderr: only stdout matters.
        run("tshark", &args)
            .lines()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect()
    }
}

impl Capture {
    /// tshark's own verdict on the IPv4 header and TCP checksums of every
    /// TCP segment matching `filter` (inner and outer headers alike):
    /// how many were checked, and the rows of those not all good
    /// (frame number, TCP and IP verdicts: 1 good, 0 bad, 2 unverified).
    pub fn tcp_checksum_verdicts(&self, filter: &str) -> (usize, Vec<Vec<String>>) {
        let rows = self.rows_with(
            &[
                "-o",
                "tcp.check_checksum:TRUE",
                "-o",
                "ip.check_checksum:TRUE",
            ],
            filter,
            &["frame.number", "tcp.checksum.status", "ip.checksum.status"],
        );
        let good = |v: &str, empty_ok: bool| {
            (empty_ok && v.is_empty()) || (!v.is_empty() && v.split(',').all(|s| s == "1"))
        };
        let bad = rows
            .iter()
            .filter(|r| {
                !good(r.get(1).map_or("", String::as_str), false)
                    || !good(r.get(2).map_or("", String::as_str), true)
            })
            .cloned()
            .collect();
        (rows.len(), bad)
    }

    /// Asserts that tshark checked more than `at_least` TCP segments
    /// matching `filter` and found every checksum good; `what` names them
    /// in the failure message.
    pub fn assert_tcp_checksums_good(&self, filter: &str, at_least: usize, what: &str) {
        let (checked, bad) = self.tcp_checksum_verdicts(filter);
        assert!(
            checked > at_least,
            "tshark saw only {checked} {what} ({filter})"
        );
        assert!(
            bad.is_empty(),
            "tshark found bad checksums in {} of {checked} {what} \
             (frame, tcp, ip verdicts): {:?}",
            bad.len(),
            &bad[..bad.len().min(10)]
        );
    }
}
