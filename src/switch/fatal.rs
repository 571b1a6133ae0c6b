//! The worker set fails as a whole. A worker that panics (a bug) or loses
//! its event loop would leave a daemon whose control socket still answers
//! `ping` while that worker's queues are never read again and every
//! command waiting on its reply fails: half a switch, which no one
//! notices. Instead the process ends, with one line on stderr that says
//! which worker, why and what to do, and exit status [`EXIT_STATUS`]; with
//! `--state-dir` the next start restores every network and port (the
//! persistent TAPs stay, since nothing is torn down on the way out), and a
//! supervisor (`Restart=on-failure` in the systemd unit) starts it again.
//!
//! The panic's own message is kept out of stderr for worker threads (a
//! hook remembers it instead) so that the line is the only one; with
//! `RUST_BACKTRACE` set, the standard report is printed as well.

use std::any::Any;
use std::cell::RefCell;
use std::sync::Once;

/// `EX_SOFTWARE` (sysexits.h): an internal software error.
pub const EXIT_STATUS: i32 = 70;

/// Worker threads' names start so; the hook recognises them by it.
pub(super) const THREAD_PREFIX: &str = "vxswitch-dp";

thread_local! {
    /// The last panic of this worker thread: message and location.
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs, once per process, the panic hook that records a worker
/// thread's panic instead of printing it; other threads' panics go to the
/// hook that was there before.
pub(super) fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let worker = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with(THREAD_PREFIX));
            if !worker {
                return previous(info);
            }
            let what = message(info.payload());
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            PANIC.with(|p| *p.borrow_mut() = Some(format!("{what}{at}")));
            if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
                previous(info);
            }
        }));
    });
}

/// Ends the process because worker `index` failed: `how` is "panicked" or
/// "stopped", `why` the panic or error.
pub(super) fn worker_failed(index: usize, how: &str, why: &str) -> ! {
    eprintln!(
        "vxswitch: dataplane worker {index} {how} ({why}); exiting with status {EXIT_STATUS} \
         rather than run with part of the dataplane gone: start the daemon again (with \
         --state-dir it restores every network and port), and please report it"
    );
    std::process::exit(EXIT_STATUS)
}

/// What a worker thread's panic said, as the hook recorded it (or as the
/// payload says, if another hook replaced ours).
pub(super) fn panic_report(payload: &(dyn Any + Send)) -> String {
    PANIC
        .with(|p| p.borrow_mut().take())
        .unwrap_or_else(|| message(payload))
}

fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}
