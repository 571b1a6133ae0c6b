//! Seeing inside the switch without slowing it: the Prometheus exposition
//! of its counters (`daemon --metrics`) and live capture to pcapng
//! (`vxswitch capture`).
//!
//! Everything here runs beside the dataplane, never in it: the metrics
//! server has its own thread and reads counters the workers already keep
//! (relaxed atomics), through a snapshot the control plane hands it. A
//! scraper that is slow or hostile costs that thread, bounded in bytes and
//! time per request, and nothing else.
//!
//! This layer may import `wire`, `time`, `metrics`, `sys` and `fdb`; the
//! control plane and the engine call into it, never the reverse (see
//! `tests/layers.rs`).

pub mod capture;
pub mod expo;
pub mod http;
pub mod mirror;
pub mod pcapng;

pub use expo::{Exposition, Kind};
pub use http::{MetricsServer, RenderError};
