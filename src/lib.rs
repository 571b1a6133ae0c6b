//! vxswitch: a userspace virtual switch dataplane for containers.
//!
//! One daemon attaches one TAP port per container, learns MAC addresses in
//! a concurrent forwarding database, bridges frames between local ports and
//! carries them between hosts in VXLAN. See `docs/architecture.md`.
//!
//! Dependencies flow one way: the control plane (`ctl`) drives the
//! `switch`, which drives `vxlan`, `offload` and `fdb`; `metrics` and `wire`
//! sit below them all. All `unsafe` lives in the private `sys` module.

pub mod cluster;
pub mod cni;
pub mod ctl;
pub mod docker;
pub mod fastpath;
pub mod fdb;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod metrics;
pub mod observe;
pub mod offload;
pub mod pktgen;
pub mod ports;
pub mod switch;
pub mod time;
pub mod vxlan;
pub mod wire;

mod sys;

pub use sys::fd::seqpacket_pair;
