//! `vxswitch daemon --detach`: the daemon in the background, and a command
//! that returns only once it answers, so the next line of a script (or of
//! a pasted walk-through) finds it listening.
//!
//! The process that parsed the command line does not fork itself (the
//! daemon is multi-threaded, and forking one is asking for deadlocks).
//! It starts this same binary again, `current_exe()` with the same
//! arguments minus `--detach` and `--log-file`, in a process group of its
//! own (so a Ctrl-C meant for the shell does not reach it), with stdin on
//! /dev/null, stdout and stderr appended to the log file, and without
//! `NOTIFY_SOCKET` (under systemd the unit runs the daemon in the
//! foreground instead). Then it waits
//! until both hold: the pidfile names that child (the daemon writes it
//! once it has claimed the socket, restored its state and applied its
//! config), and the socket answers `ping`. The pidfile check makes sure
//! the answer comes from the new daemon and not from one that already held
//! the socket. If the child exits first, its last `vxswitch: error: ...`
//! line becomes this command's error, exactly as the foreground daemon
//! would have printed it.

use std::ffi::{OsStr, OsString};
use std::fs::{DirBuilder, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vxswitch::ctl::client;
use vxswitch::ctl::proto::{NoArgs, Pong};
use vxswitch::ctl::Request;

use super::args::DaemonArgs;

/// How long a detached start may take (restoring many ports included)
/// before the daemon is given up on and killed.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the child is checked while it starts.
const POLL: Duration = Duration::from_millis(20);

/// The pidfile `--detach` uses unless `--pidfile` names one: the socket's
/// path with `.pid` (`/run/vxswitch/vxswitch.pid`).
pub fn default_pidfile(socket: &Path) -> PathBuf {
    socket.with_extension("pid")
}

/// The log `--detach` appends to unless `--log-file` names one: the
/// socket's path with `.log` (`/run/vxswitch/vxswitch.log`).
pub fn default_log(socket: &Path) -> PathBuf {
    socket.with_extension("log")
}

/// Starts the daemon in the background and waits until it answers.
pub fn run(socket: &Path, a: &DaemonArgs) -> Result<(), String> {
    let pidfile = a.pidfile.clone().unwrap_or_else(|| default_pidfile(socket));
    let log_path = a.log_file.clone().unwrap_or_else(|| default_log(socket));
    if let Some(dir) = log_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Next to the socket by default, whose directory may not exist yet.
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| format!("cannot create the log directory {}: {e}", dir.display()))?;
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(&log_path)
        .map_err(|e| format!("cannot open the log file {}: {e}", log_path.display()))?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find the vxswitch binary to start: {e}"))?;
    let args = child_args(
        std::env::args_os().skip(1),
        a.pidfile.is_none().then_some(pidfile.as_path()),
    );
    let stdout = log
        .try_clone()
        .map_err(|e| format!("cannot open the log file {}: {e}", log_path.display()))?;
    let mut child = Command::new(&exe)
        .args(&args)
        // A service manager waits for its own main process: a detached
        // daemon is not that process and must not claim readiness for it.
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Err(failed(&log_path, log_start, &status.to_string()));
            }
            Ok(None) => {}
            Err(e) => return Err(format!("cannot watch the daemon: {e}")),
        }
        if read_pid(&pidfile) == Some(child.id())
            && client::request::<Pong>(socket, &Request::Ping(NoArgs {})).is_ok()
        {
            break;
        }
        if Instant::now() >= deadline {
            give_up(&mut child);
            return Err(format!(
                "the daemon did not answer on {} within {} s; stopped it (its log: {})",
                socket.display(),
                READY_TIMEOUT.as_secs(),
                log_path.display()
            ));
        }
        std::thread::sleep(POLL);
    }
    eprintln!(
        "vxswitch: daemon {} (pid {}) listening on {}; log {}, pidfile {}",
        env!("CARGO_PKG_VERSION"),
        child.id(),
        socket.display(),
        log_path.display(),
        pidfile.display()
    );
    Ok(())
}

/// The daemon's command line: this one without `--detach` and
/// `--log-file`, and with `--pidfile` when the default is used, so the
/// daemon writes the file this process waits for.
fn child_args(args: impl Iterator<Item = OsString>, pidfile: Option<&Path>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        if arg == "--detach" || starts_with(&arg, "--log-file=") {
            continue;
        }
        if arg == "--log-file" {
            args.next();
            continue;
        }
        out.push(arg);
    }
    if let Some(p) = pidfile {
        out.push("--pidfile".into());
        out.push(p.into());
    }
    out
}

fn starts_with(arg: &OsStr, prefix: &str) -> bool {
    arg.as_encoded_bytes().starts_with(prefix.as_bytes())
}

/// The PID in a pidfile, if it holds one.
fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The error of a daemon that exited before it answered: its last
/// `vxswitch: error: ` line (the lines before it are printed as they
/// are), or its exit status and where its log is.
fn failed(log_path: &Path, from: u64, status: &str) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(log_path) {
        if f.seek(SeekFrom::Start(from)).is_ok() {
            let _ = f.read_to_string(&mut text);
        }
    }
    let (before, error) = split_error(&text);
    if !before.is_empty() {
        eprint!("{before}");
    }
    error.map(str::to_string).unwrap_or_else(|| {
        format!(
            "the daemon exited ({status}) before it answered; its log: {}",
            log_path.display()
        )
    })
}

/// Splits a daemon's output at its last error line: what came before (whole
/// lines), and that error's message without the `vxswitch: error: ` prefix.
fn split_error(text: &str) -> (&str, Option<&str>) {
    const PREFIX: &str = "vxswitch: error: ";
    let mut at = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.starts_with(PREFIX) {
            at = Some(offset);
        }
        offset += line.len();
    }
    match at {
        Some(i) => (&text[..i], Some(text[i + PREFIX.len()..].trim_end())),
        None => (text, None),
    }
}

/// Stops a daemon that did not become ready in time.
fn give_up(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_daemon_runs_without_detach_and_log_file_and_with_the_pidfile() {
        let got = child_args(
            args(&[
                "--socket",
                "/tmp/s.sock",
                "daemon",
                "--detach",
                "--log-file",
                "/tmp/l",
                "--state-dir",
                "/var/lib/vx",
                "--log-file=/tmp/m",
            ])
            .into_iter(),
            Some(Path::new("/tmp/s.pid")),
        );
        assert_eq!(
            got,
            args(&[
                "--socket",
                "/tmp/s.sock",
                "daemon",
                "--state-dir",
                "/var/lib/vx",
                "--pidfile",
                "/tmp/s.pid",
            ])
        );
        // A --pidfile given is passed on as it is.
        let got = child_args(
            args(&["daemon", "--pidfile", "/p", "--detach"]).into_iter(),
            None,
        );
        assert_eq!(got, args(&["daemon", "--pidfile", "/p"]));
    }

    #[test]
    fn default_paths_sit_next_to_the_socket() {
        let s = Path::new("/run/vxswitch/vxswitch.sock");
        assert_eq!(default_pidfile(s), Path::new("/run/vxswitch/vxswitch.pid"));
        assert_eq!(default_log(s), Path::new("/run/vxswitch/vxswitch.log"));
        assert_eq!(
            default_pidfile(Path::new("/tmp/vx")),
            Path::new("/tmp/vx.pid")
        );
    }

    #[test]
    fn the_last_error_line_is_the_error() {
        let log = "vxswitch: restore: port c2 dropped\nvxswitch: error: cannot read config x.toml: No such file or directory\n";
        assert_eq!(
            split_error(log),
            (
                "vxswitch: restore: port c2 dropped\n",
                Some("cannot read config x.toml: No such file or directory")
            )
        );
        // A multi-line error (a TOML parse error) stays whole.
        let log = "vxswitch: error: config b.toml: TOML parse error at line 1\n  |\n1 | x\n";
        assert_eq!(
            split_error(log),
            (
                "",
                Some("config b.toml: TOML parse error at line 1\n  |\n1 | x")
            )
        );
        assert_eq!(
            split_error("thread 'main' panicked\n"),
            ("thread 'main' panicked\n", None)
        );
    }
}
