//! The agent's helper threads: the watch reader (so the agent can wait on
//! commands and events at once) and the lease keeper (so a slow
//! `Dataplane::apply` can never let the lease expire).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use super::AgentConfig;
use crate::cluster::etcd::{Client, EtcdError, Watch, WatchMessage};

/// How long the watch reader blocks before checking whether to stop.
const WATCH_POLL: Duration = Duration::from_millis(200);

/// The watch, read on its own thread so the agent can wait on commands and
/// events at once.
pub(super) struct WatchReader {
    pub(super) rx: Receiver<Result<WatchMessage, EtcdError>>,
    stop: Arc<AtomicBool>,
}

impl Drop for WatchReader {
    fn drop(&mut self) {
        // The thread notices within WATCH_POLL and closes its connection.
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub(super) fn spawn_reader(mut watch: Watch) -> WatchReader {
    // Small: a slow agent must slow the stream down (etcd then counts the
    // watch as behind and, after a compaction, says so) rather than queue
    // without bound here.
    let (tx, rx) = bounded(8);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let spawned = std::thread::Builder::new()
        .name("vxswitch-watch".into())
        .spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match watch.next(WATCH_POLL) {
                    Ok(None) => {}
                    Ok(Some(m)) => {
                        if tx.send(Ok(m)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
    // A failed spawn drops `tx`: the closed channel reads as a lost watch.
    let _ = spawned;
    WatchReader { rx, stop }
}

pub(super) enum KeeperEvent {
    /// A keepalive succeeded after failures.
    Alive,
    /// A keepalive failed; the keeper retries.
    Unreachable(String),
    /// etcd no longer knows the lease.
    Lost,
}

/// The lease keeper's thread; it ends when this is dropped.
pub(super) struct Keeper {
    pub(super) rx: Receiver<KeeperEvent>,
    _stop: Sender<()>,
}

pub(super) fn spawn_keeper(cfg: &AgentConfig, lease: i64) -> Keeper {
    let (tx, rx) = unbounded();
    let (stop, stopped) = bounded::<()>(0);
    let mut client = Client::new(cfg.etcd.clone());
    let (period, retry) = (cfg.ttl / 3, cfg.retry);
    let spawned = std::thread::Builder::new()
        .name("vxswitch-lease".into())
        .spawn(move || {
            let mut wait = period;
            let mut failing = false;
            // Wakes on the period, ends when the agent drops its `Keeper`.
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = stopped.recv_timeout(wait)
            {
                let event = match client.lease_keepalive(lease) {
                    Ok(Some(_)) if failing => Some(KeeperEvent::Alive),
                    Ok(Some(_)) => None,
                    Ok(None) => Some(KeeperEvent::Lost),
                    Err(e) => Some(KeeperEvent::Unreachable(format!("lease keepalive: {e}"))),
                };
                failing = matches!(event, Some(KeeperEvent::Unreachable(_)));
                wait = if failing { retry } else { period };
                let lost = matches!(event, Some(KeeperEvent::Lost));
                if let Some(ev) = event {
                    if tx.send(ev).is_err() || lost {
                        return;
                    }
                }
            }
        });
    // A failed spawn drops `tx`: the closed channel reads as a lost lease.
    let _ = spawned;
    Keeper { rx, _stop: stop }
}
