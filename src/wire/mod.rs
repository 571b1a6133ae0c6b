//! Wire formats: zero-copy views and parsed representations.
//!
//! Every protocol has a view (`XxxFrame<T: AsRef<[u8]>>`, getters over the
//! buffer, setters when `T: AsMut<[u8]>`) and a `XxxRepr` with
//! `parse`/`buffer_len`/`emit`. Untrusted bytes only enter through
//! `new_checked`; after it succeeds no accessor panics.

pub mod ethernet;
pub mod mac;
pub mod vxlan;

pub use ethernet::{EtherType, EthernetFrame, EthernetRepr};
pub use mac::MacAddr;

/// Why bytes could not be read as a protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the header it claims to hold.
    #[error("truncated header")]
    Truncated,
    /// A field holds a value the protocol forbids.
    #[error("malformed header")]
    Malformed,
}

pub type Result<T> = core::result::Result<T, Error>;
