//! `capture.start`: which ports a capture watches, checked here; the
//! copies themselves are taken by `observe::capture` and written by a
//! thread of their own, to which the server hands the client's
//! connection once the reply is out (see `server/mod.rs`, `hand_off`).
//!
//! Why the connection itself carries the pcapng: the control protocol is
//! JSON lines, but after `capture.start`'s reply nothing else is asked on
//! that connection, so it is simply taken off the control thread's poll
//! and given to the writer thread. No second socket to find, no file
//! descriptor passing (no `unsafe`), and the control thread never writes
//! a byte of it: a client that reads slowly slows only its writer, whose
//! queue then fills and loses copies (counted), never frames.

use std::sync::Arc;
use std::time::Duration;

use super::daemon::Daemon;
use super::proto::{CaptureStart, CaptureStarted, CtlError};
use crate::metrics::PortStats;
use crate::observe::capture::{self, Capture, Direction, MAX_SNAPLEN};

/// A writer whose reader has not taken a block for this long gives up.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// A capture started, waiting for the server to hand it its connection.
#[derive(Debug)]
pub struct PendingCapture {
    pub capture: Capture,
    pub count: Option<u64>,
}

impl Daemon {
    /// `capture.start`: checks what to capture and starts taking copies.
    pub(super) fn capture_start(&mut self, a: &CaptureStart) -> Result<CaptureStarted, CtlError> {
        let dir = match a.direction.as_deref() {
            None | Some("both") => Direction::Both,
            Some("in") => Direction::In,
            Some("out") => Direction::Out,
            Some(other) => {
                return Err(CtlError::invalid(format!(
                    "direction {other:?}: use in (frames the switch received from the port), \
                     out (frames it sent to the port) or both"
                )))
            }
        };
        let snaplen = a.snaplen.unwrap_or(MAX_SNAPLEN);
        if !(64..=MAX_SNAPLEN).contains(&snaplen) {
            return Err(CtlError::invalid(format!(
                "snaplen {snaplen}: give 64 to {MAX_SNAPLEN} bytes"
            )));
        }
        let (what, targets): (String, Vec<(String, Arc<PortStats>)>) =
            match (&a.port, &a.network, &a.vtep) {
                (Some(p), None, None) => (
                    format!("port {p}"),
                    vec![(p.clone(), self.port(p)?.stats.clone())],
                ),
                (None, Some(n), None) => {
                    if !self.networks.contains_key(n) {
                        return Err(CtlError::not_found(format!(
                            "no network {n:?}; `vxswitch network ls` lists them"
                        )));
                    }
                    (
                        format!("network {n}"),
                        self.ports
                            .iter()
                            .filter(|(_, p)| &p.network == n)
                            .map(|(name, p)| (name.clone(), p.stats.clone()))
                            .collect(),
                    )
                }
                (None, None, Some(v)) => {
                    let found = self
                        .networks
                        .values()
                        .flat_map(|n| n.vteps.iter())
                        .find(|(addr, _)| addr.to_string() == *v || addr.ip().to_string() == *v);
                    let Some((addr, vt)) = found else {
                        return Err(CtlError::not_found(format!(
                            "no VTEP {v:?}; `vxswitch vtep ls` lists them (IP:PORT)"
                        )));
                    };
                    (
                        format!("vtep {addr}"),
                        vec![(format!("vtep {addr}"), vt.stats.clone())],
                    )
                }
                _ => {
                    return Err(CtlError::invalid(
                        "capture what? give exactly one of port, network and vtep",
                    ))
                }
            };
        let cap =
            capture::start(&what, &targets, dir, snaplen, a.segment).map_err(|e| match e {
                capture::CaptureError::Busy => CtlError::busy(e.to_string()),
                _ => CtlError::invalid(e.to_string()),
            })?;
        // Every frame must pass the switch while a capture runs.
        self.fastpath_pause();
        self.pending_capture = Some(PendingCapture {
            capture: cap,
            count: a.count,
        });
        Ok(CaptureStarted {
            interfaces: targets.into_iter().map(|(n, _)| n).collect(),
            snaplen,
        })
    }

    /// The capture `capture.start` just started, for the server to hand
    /// the connection to.
    pub fn take_capture(&mut self) -> Option<PendingCapture> {
        self.pending_capture.take()
    }
}
