//! The per-port counters, now in [`crate::metrics`] (every layer may import
//! them); re-exported here where they were.

pub use crate::metrics::{Counter, DropReason, PortStats, PortStatsSnapshot};
