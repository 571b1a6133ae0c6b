//! The forwarding engine: the pure forwarding decision ([`decide()`]), the
//! per-port counters ([`stats`]) and the poll-loop worker ([`engine`]).

pub mod decide;
pub mod engine;
pub mod stats;

pub use decide::{decide, Decision, Ingress, Verdict};
pub use engine::{Engine, EngineConfig, EngineError, Event, NetworkSpec, PortAttach, VtepInfo};
pub use stats::{DropReason, PortStats, PortStatsSnapshot};
