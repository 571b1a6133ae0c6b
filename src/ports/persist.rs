//! The persistent-TAP flag as an owned value.
//!
//! `TUNSETPERSIST` keeps a TAP when its last fd closes: that is what lets a
//! daemon with a state directory stop and find its containers' TAPs again
//! at the next start. Every other end of a port must still delete its TAP,
//! which takes clearing the flag before the last fd closes. A
//! [`PersistGuard`] owns one fd of such a TAP's first queue (the control
//! plane's; the dataplane has its own) and clears the flag when it is
//! dropped, so whatever removes a port — `port rm`, `network rm`, a gone
//! namespace, a dataplane that dropped the port, a failed attach — deletes
//! the device with its last fd, without anyone having to remember to.
//! Only [`PersistGuard::keep`] (a daemon stopping) leaves the TAP in place.
//!
//! A veth port's guard ([`PersistGuard::veth`]) holds the host end's name
//! and index instead and deletes the pair (`RTM_DELLINK`) when dropped:
//! the packet socket the dataplane holds does not keep a veth alive, nor
//! does closing it delete one. It is kept by [`PersistGuard::keep`] only
//! when the daemon has a state directory (`persistent`); a daemon without
//! one takes its veths with it when it stops cleanly.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::sys::tun;

/// Holds a persistent TAP's flag: clears `TUNSETPERSIST` on drop, unless
/// [`kept`](PersistGuard::keep).
#[derive(Debug)]
pub struct PersistGuard {
    held: Held,
    /// The port it belongs to, for the line logged when clearing fails.
    port: String,
    /// Whether dropping the guard still has to clear the flag.
    armed: bool,
}

/// What a guard holds.
#[derive(Debug)]
enum Held {
    /// A queue fd of the TAP, closed with the guard.
    Tap(OwnedFd),
    /// The host end of a veth pair in the daemon's namespace.
    Veth {
        index: u32,
        name: String,
        persistent: bool,
    },
}

impl PersistGuard {
    /// Takes charge of the veth pair whose host end is `name` (index
    /// `index`, in the daemon's namespace): deleted when the guard is
    /// dropped, unless it is `persistent` and [kept](PersistGuard::keep).
    pub fn veth(
        index: u32,
        name: impl Into<String>,
        persistent: bool,
        port: impl Into<String>,
    ) -> PersistGuard {
        PersistGuard {
            held: Held::Veth {
                index,
                name: name.into(),
                persistent,
            },
            port: port.into(),
            armed: true,
        }
    }

    /// Takes charge of the flag of the TAP `queue` is a queue of. `port`
    /// names it in the line logged if the flag cannot be cleared.
    pub fn new(queue: OwnedFd, port: impl Into<String>) -> PersistGuard {
        PersistGuard {
            held: Held::Tap(queue),
            port: port.into(),
            armed: true,
        }
    }

    /// Another fd on the same queue (a `dup`), for the dataplane.
    pub fn try_clone_queue(&self) -> io::Result<OwnedFd> {
        match &self.held {
            Held::Tap(fd) => fd.try_clone(),
            Held::Veth { .. } => Err(io::Error::from_raw_os_error(libc::EBADF)),
        }
    }

    /// The TAP's queue fd (`None` for a veth's guard).
    pub fn tap_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.held {
            Held::Tap(fd) => Some(fd.as_fd()),
            Held::Veth { .. } => None,
        }
    }

    /// Leaves the TAP persistent and closes the guard's fd: the daemon is
    /// stopping, and its next start attaches the TAP again. A veth is kept
    /// only if it was made `persistent`; otherwise it is deleted now.
    pub fn keep(mut self) {
        if !matches!(
            self.held,
            Held::Veth {
                persistent: false,
                ..
            }
        ) {
            self.armed = false;
        }
    }

    /// Clears the flag now, so that the TAP is deleted when its last fd
    /// closes (the guard's own, at the latest, which this closes), and
    /// returns the error instead of logging it.
    pub fn clear(mut self) -> io::Result<()> {
        self.armed = false;
        self.release()
    }

    fn release(&self) -> io::Result<()> {
        match &self.held {
            Held::Tap(fd) => tun::set_persist(fd.as_fd(), false),
            Held::Veth { index, name, .. } => super::veth::delete(*index, name),
        }
    }
}

impl Drop for PersistGuard {
    /// Clears the flag unless kept; a failure is logged (the TAP would stay
    /// behind). The fd closes after this, with the guard.
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Err(e) = self.release() {
            if let Held::Veth { name, .. } = &self.held {
                eprintln!(
                    "vxswitch: port {}: cannot delete its veth {name} ({}); delete it with \
                     'ip link del {name}'",
                    self.port,
                    system_text(&e)
                );
                return;
            }
            eprintln!(
                "vxswitch: port {}: cannot clear the TAP's persist flag ({}); it may stay \
                 behind after the port is removed: delete it with 'ip link del'",
                self.port,
                system_text(&e)
            );
        }
    }
}

/// An error's text without the " (os error N)" that `io::Error` appends:
/// every line the daemon prints leaves the number out.
fn system_text(e: &io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(n) => text
            .strip_suffix(&format!(" (os error {n})"))
            .map_or_else(|| text.clone(), str::to_string),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    /// A socket pair: the guard gets one end, the test watches the other
    /// for end-of-file, which comes once the guard's fd is closed.
    fn pair() -> (OwnedFd, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (OwnedFd::from(a), b)
    }

    fn closed(peer: &mut UnixStream) -> bool {
        peer.set_nonblocking(true).unwrap();
        matches!(peer.read(&mut [0u8; 1]), Ok(0))
    }

    #[test]
    fn clearing_goes_through_the_fd_it_holds() {
        let (fd, mut peer) = pair();
        let g = PersistGuard::new(fd, "c1");
        // Not a TAP: TUNSETPERSIST reaches the fd and the kernel refuses it.
        let e = g.clear().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY), "{e}");
        assert!(closed(&mut peer), "clear closes the guard's fd");
    }

    #[test]
    fn keep_and_drop_close_the_fd() {
        let (fd, mut peer) = pair();
        PersistGuard::new(fd, "c1").keep();
        assert!(closed(&mut peer), "keep closes the guard's fd");
        let (fd, mut peer) = pair();
        // Dropping clears the flag (here it fails, and says so on stderr).
        drop(PersistGuard::new(fd, "c1"));
        assert!(closed(&mut peer), "drop closes the guard's fd");
    }

    #[test]
    fn a_clone_for_the_dataplane_outlives_the_guard() {
        let (fd, mut peer) = pair();
        let g = PersistGuard::new(fd, "c1");
        let queue = g.try_clone_queue().unwrap();
        g.keep();
        assert!(
            !closed(&mut peer),
            "the dataplane's fd still holds the queue"
        );
        drop(queue);
        assert!(closed(&mut peer));
    }

    #[test]
    fn failure_lines_leave_the_errno_number_out() {
        let e = io::Error::from_raw_os_error(libc::EBADFD);
        assert_eq!(system_text(&e), "File descriptor in bad state");
        let e = io::Error::other("no number");
        assert_eq!(system_text(&e), "no number");
    }
}
