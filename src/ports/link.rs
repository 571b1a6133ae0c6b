//! Read-only views of interfaces in a namespace, over netlink: what the
//! control plane shows (`port ls`) and what tests check, without `ip`.

use ipnet::IpNet;

use super::netlink::{LinkInfo, Rtnl};
use super::{netns, Netns, PortError};

fn inspect(ifname: &str, step: &'static str) -> impl FnOnce(std::io::Error) -> PortError {
    let ifname = ifname.to_string();
    move |source| PortError::Inspect {
        ifname,
        step,
        source,
    }
}

/// The state of interface `ifname` in `netns`, or `None` when there is none.
pub fn link_info(netns: &Netns, ifname: &str) -> Result<Option<LinkInfo>, PortError> {
    netns::run_in(netns, || {
        let mut nl = Rtnl::open().map_err(inspect(ifname, "open a netlink socket"))?;
        nl.link_by_name(ifname).map_err(inspect(ifname, "get link"))
    })?
}

/// Whether an interface named `ifname` exists in `netns`.
pub fn link_exists(netns: &Netns, ifname: &str) -> Result<bool, PortError> {
    Ok(link_info(netns, ifname)?.is_some())
}

/// The addresses (with prefix) configured on `ifname` in `netns`, IPv6
/// link-local ones included, in the kernel's order.
pub fn addrs(netns: &Netns, ifname: &str) -> Result<Vec<IpNet>, PortError> {
    netns::run_in(netns, || {
        let mut nl = Rtnl::open().map_err(inspect(ifname, "open a netlink socket"))?;
        let link = nl
            .link_by_name(ifname)
            .map_err(inspect(ifname, "get link"))?
            .ok_or_else(|| {
                inspect(ifname, "get link")(std::io::Error::from_raw_os_error(libc::ENODEV))
            })?;
        nl.addrs_of(link.index)
            .map_err(inspect(ifname, "dump addresses"))
    })?
}
