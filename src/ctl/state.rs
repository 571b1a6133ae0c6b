//! The daemon's desired state under its former path: [`Daemon`] and what
//! its methods return, now split by resource into the sibling modules
//! (`daemon.rs` has the overview). Kept so that `ctl::state::…` still
//! names them.

pub use super::daemon::{Daemon, VERSION};
pub use super::ports::{GonePort, GoneReason};
pub use super::restore::{DropReason, Dropped, RestoreReport, SavedItem};
pub use super::validate::{
    parse_vtep_addr, DEFAULT_MTU, MAX_LABEL, MAX_MTU, MAX_PORT_MTU, MIN_MTU,
};
