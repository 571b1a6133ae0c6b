//! What a restore put back, dropped or keeps pending: the report
//! `open_state_dir` returns and the items `retry_pending` retries.

use std::path::PathBuf;

use crate::ctl::persist::{SavedNetwork, SavedPort, StateFile, STATE_VERSION};
use crate::ctl::proto::{CtlError, FdbAdd};
use crate::wire::MacAddr;

/// What `Daemon::open_state_dir` put back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// The state directory, when a state file was found and restored.
    pub restored_from: Option<PathBuf>,
    pub networks: usize,
    pub ports: usize,
    /// What could not be put back, and why; each already logged.
    pub dropped: Vec<Dropped>,
    /// What could not be put back *yet* (a transient failure): kept in the
    /// state file and retried; each already logged.
    pub pending: Vec<Dropped>,
}

/// Something the state file records that the restore could not put back.
/// `Display`: "port c1 (network red) dropped: its namespace ... is gone".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    pub item: SavedItem,
    pub reason: DropReason,
}

/// One thing a state file records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SavedItem {
    Network { name: String },
    Vtep { network: String, addr: String },
    Port { name: String, network: String },
    StaticEntry { network: String, mac: MacAddr },
}

/// Why the restore dropped a [`SavedItem`]; `Display` is the text logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The request that puts it back was refused: the daemon's message.
    Refused(String),
    /// The port's network was not restored.
    NetworkMissing { network: String },
    /// The namespace file the port's TAP was created in is gone.
    NamespaceGone { netns: String },
    /// The namespace file now names another namespace than the container's.
    NamespaceReplaced { netns: String },
    /// Its TAP could not be opened again (nor found elsewhere); `netns`
    /// is the namespace file it was looked for in, unless the daemon's own.
    Tap {
        error: String,
        netns: Option<String>,
    },
    /// No second fd could be had to hold the TAP's persist flag.
    NoHandle(String),
    /// The TAP is gone: not in its namespace, nor anywhere else.
    TapGone {
        error: String,
        netns: Option<String>,
    },
    /// The port's network (or the entry's port, network or VTEP) is itself
    /// waiting to be restored.
    Waiting { what: String },
}

impl DropReason {
    /// Whether retrying cannot help: the container or its TAP is gone for
    /// good. Everything else is taken to be transient.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            DropReason::NamespaceGone { .. }
                | DropReason::NamespaceReplaced { .. }
                | DropReason::TapGone { .. }
                | DropReason::NetworkMissing { .. }
        )
    }
}

impl std::fmt::Display for SavedItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SavedItem::Network { name } => write!(f, "network {name}"),
            SavedItem::Vtep { network, addr } => write!(f, "VTEP {addr} of network {network}"),
            SavedItem::Port { name, network } => write!(f, "port {name} (network {network})"),
            SavedItem::StaticEntry { network, mac } => {
                write!(f, "static FDB entry {mac} (network {network})")
            }
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DropReason::Refused(message) => f.write_str(message),
            DropReason::NetworkMissing { network } => {
                write!(f, "its network {network} was not restored")
            }
            DropReason::NamespaceGone { netns } => write!(f, "its namespace {netns} is gone"),
            DropReason::NamespaceReplaced { netns } => {
                write!(
                    f,
                    "{netns} now names another namespace than the container's"
                )
            }
            DropReason::Tap {
                error,
                netns: Some(netns),
            }
            | DropReason::TapGone {
                error,
                netns: Some(netns),
            } => write!(f, "{error} (in {netns})"),
            DropReason::Tap { error, netns: None } | DropReason::TapGone { error, netns: None } => {
                f.write_str(error)
            }
            DropReason::NoHandle(e) => write!(f, "cannot keep a handle on its TAP: {e}"),
            DropReason::Waiting { what } => write!(f, "{what} is not restored yet"),
        }
    }
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.reason.is_permanent() {
            write!(f, "{} dropped: {}", self.item, self.reason)
        } else {
            write!(
                f,
                "{} not restored yet: {}; kept in the state file and retried until it works \
                 or is removed{}",
                self.item,
                self.reason,
                self.item.remove_hint()
            )
        }
    }
}

impl SavedItem {
    /// How the operator gives up on the item, in parentheses.
    pub(in crate::ctl) fn remove_hint(&self) -> String {
        match self {
            SavedItem::Network { name } => format!(" ('vxswitch network rm {name}')"),
            SavedItem::Vtep { network, addr } => {
                format!(" ('vxswitch vtep rm --network {network} {addr}')")
            }
            SavedItem::Port { name, .. } => format!(" ('vxswitch port rm {name}')"),
            SavedItem::StaticEntry { network, mac } => {
                format!(" ('vxswitch fdb del --network {network} {mac}')")
            }
        }
    }
}

/// What the state file records that a transient failure has kept from
/// being put back so far, each with the last attempt's reason. Part of
/// every state file written meanwhile, so nothing is lost.
#[derive(Debug, Default)]
pub(in crate::ctl) struct Pending {
    pub(in crate::ctl) networks: Vec<(SavedNetwork, DropReason)>,
    /// VTEPs of restored networks: (network, `ADDR:PORT`).
    pub(in crate::ctl) vteps: Vec<((String, String), DropReason)>,
    pub(in crate::ctl) ports: Vec<(SavedPort, DropReason)>,
    pub(in crate::ctl) static_fdb: Vec<(FdbAdd, DropReason)>,
}

impl Pending {
    pub(in crate::ctl) fn is_empty(&self) -> bool {
        self.networks.is_empty()
            && self.vteps.is_empty()
            && self.ports.is_empty()
            && self.static_fdb.is_empty()
    }

    /// Everything pending, as items with their reasons.
    pub(in crate::ctl) fn items(&self) -> Vec<Dropped> {
        let d = |item, reason: &DropReason| Dropped {
            item,
            reason: reason.clone(),
        };
        let mut out = Vec::new();
        for (n, r) in &self.networks {
            let name = n.create.name.clone();
            out.push(d(SavedItem::Network { name }, r));
        }
        for ((network, addr), r) in &self.vteps {
            let (network, addr) = (network.clone(), addr.clone());
            out.push(d(SavedItem::Vtep { network, addr }, r));
        }
        for (p, r) in &self.ports {
            let (name, network) = (p.name.clone(), p.network.clone());
            out.push(d(SavedItem::Port { name, network }, r));
        }
        for (f, r) in &self.static_fdb {
            let (network, mac) = (f.network.clone(), f.mac);
            out.push(d(SavedItem::StaticEntry { network, mac }, r));
        }
        out
    }

    /// The pending items as a state file, in restore order.
    pub(in crate::ctl) fn as_file(&self) -> StateFile {
        StateFile {
            version: STATE_VERSION,
            networks: self.networks.iter().map(|(n, _)| n.clone()).collect(),
            ports: self.ports.iter().map(|(p, _)| p.clone()).collect(),
            static_fdb: self.static_fdb.iter().map(|(f, _)| f.clone()).collect(),
            cluster: None,
        }
    }

    pub(in crate::ctl) fn has_network(&self, name: &str) -> bool {
        self.networks.iter().any(|(n, _)| n.create.name == name)
    }

    pub(in crate::ctl) fn has_port(&self, name: &str) -> bool {
        self.ports.iter().any(|(p, _)| p.name == name)
    }
}

/// What one pass over a state file did.
#[derive(Default)]
pub(in crate::ctl) struct PutBack {
    pub(in crate::ctl) networks: usize,
    pub(in crate::ctl) ports: usize,
    pub(in crate::ctl) dropped: Vec<Dropped>,
    pub(in crate::ctl) pending: Pending,
}

impl From<CtlError> for DropReason {
    fn from(e: CtlError) -> DropReason {
        DropReason::Refused(e.message)
    }
}
