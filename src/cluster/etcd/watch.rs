//! A watch stream: newline-delimited JSON messages in a chunked body, read
//! with timeouts and a cap on one message.

use std::time::{Duration, Instant};

use super::wire::{KeyValue, StreamFrame, WatchResp};
use super::{parse_json, stream_error, EtcdError};
use crate::cluster::http::{BodyStream, HttpError, ReadOutcome};

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    Put(KeyValue),
    Delete { key: Vec<u8>, mod_revision: i64 },
}

impl WatchEvent {
    pub fn key(&self) -> &[u8] {
        match self {
            WatchEvent::Put(kv) => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }

    pub fn mod_revision(&self) -> i64 {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { mod_revision, .. } => *mod_revision,
        }
    }
}

/// One message of a watch stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchMessage {
    /// The watch is established; `revision` is the store's current one.
    Created { revision: i64 },
    /// Changes, in revision order.
    Events { events: Vec<WatchEvent> },
    /// No changes; everything up to `revision` was delivered.
    Progress { revision: i64 },
}

/// An open watch (see `Client::watch`).
pub struct Watch {
    pub(super) body: BodyStream,
    /// Decoded body bytes not yet returned as messages.
    pub(super) pending: Vec<u8>,
    /// `pending[..scanned]` holds no newline.
    pub(super) scanned: usize,
    pub(super) max_line: usize,
    /// The revision to resume from after everything seen so far.
    pub(super) next_revision: i64,
}

impl Watch {
    /// The revision a new watch should start from to continue this one.
    pub fn next_revision(&self) -> i64 {
        self.next_revision
    }

    /// Waits up to `timeout` for the next message. `Ok(None)`: nothing yet.
    /// Errors end the watch: `Compacted` (resync from a fresh list),
    /// `WatchCanceled`, `WatchClosed`, transport errors.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<WatchMessage>, EtcdError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(nl) = self.pending[self.scanned..]
                .iter()
                .position(|&b| b == b'\n')
            {
                let end = self.scanned + nl;
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                self.scanned = 0;
                let line = &line[..line.len() - 1];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return self.message(line).map(Some);
            }
            self.scanned = self.pending.len();
            if self.pending.len() > self.max_line {
                return Err(HttpError::TooLarge {
                    endpoint: self.body.label().to_string(),
                    what: "watch message",
                    limit: self.max_line,
                }
                .into());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match self.body.read_some(&mut self.pending, left)? {
                ReadOutcome::Data => {}
                ReadOutcome::Idle => return Ok(None),
                ReadOutcome::End => {
                    return Err(EtcdError::WatchClosed {
                        endpoint: self.body.label().to_string(),
                    })
                }
            }
        }
    }

    fn message(&mut self, line: &[u8]) -> Result<WatchMessage, EtcdError> {
        let label = self.body.label().to_string();
        let frame: StreamFrame<WatchResp> = parse_json(&label, line)?;
        if let Some(err) = frame.error {
            return Err(stream_error(&label, &err));
        }
        let Some(r) = frame.result else {
            return Err(EtcdError::BadResponse {
                endpoint: label,
                what: "watch message without result".into(),
            });
        };
        if r.canceled {
            if r.compact_revision > 0 {
                return Err(EtcdError::Compacted {
                    compact_revision: r.compact_revision,
                });
            }
            return Err(EtcdError::WatchCanceled {
                reason: if r.cancel_reason.is_empty() {
                    "no reason given".into()
                } else {
                    r.cancel_reason
                },
            });
        }
        if r.fragment {
            return Err(EtcdError::BadResponse {
                endpoint: label,
                what: "a fragmented watch response (not requested)".into(),
            });
        }
        if r.created {
            return Ok(WatchMessage::Created {
                revision: r.header.revision,
            });
        }
        if r.events.is_empty() {
            self.next_revision = self.next_revision.max(r.header.revision.saturating_add(1));
            return Ok(WatchMessage::Progress {
                revision: r.header.revision,
            });
        }
        let mut events = Vec::with_capacity(r.events.len());
        for e in r.events {
            let ev = match e.kind.as_str() {
                "" | "PUT" => WatchEvent::Put(e.kv),
                "DELETE" => WatchEvent::Delete {
                    key: e.kv.key,
                    mod_revision: e.kv.mod_revision,
                },
                other => {
                    return Err(EtcdError::BadResponse {
                        endpoint: label,
                        what: format!("unknown event type {other:?}"),
                    })
                }
            };
            self.next_revision = self.next_revision.max(ev.mod_revision().saturating_add(1));
            events.push(ev);
        }
        Ok(WatchMessage::Events { events })
    }
}
