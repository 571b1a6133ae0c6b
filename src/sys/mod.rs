//! The only place with `unsafe`: thin, documented wrappers over the Linux
//! system calls that `std` and `mio` do not cover. Everything above this
//! module handles `OwnedFd`/`BorrowedFd` and `io::Result`, never raw fds
//! it has to close by hand.
#![allow(unsafe_code)]

pub mod bpf;
pub mod ethtool;
pub mod fd;
pub mod fs;
pub mod netlink;
pub mod netns;
pub mod packet;
pub mod pktport;
pub mod ring;
pub mod rlimit;
pub mod tun;
pub mod udp;
pub mod uplink;
