//! CHECK and GC on the node side: what ADD left, found again by name and by
//! the alias ADD recorded on the host veth.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use super::{Error, GATEWAY, Result, host_name, parse_alias};
use crate::ipam::Owner;
use crate::netlink::{Session, dump, link};
use crate::netns::NetNs;

/// Verifies that the attachment of `container_id`/`ifname` is as ADD left
/// it: the host veth up, carrying its alias, with the node's route to `ip`;
/// in the pod, `ifname` up with `ip`, a route to the gateway and a default
/// route through it.
pub fn check(netns: &NetNs, network: &str, container_id: &str, ifname: &str, ip: Ipv4Addr) -> Result<()> {
    let session = Session::open()?;
    let host_name = host_name(container_id);
    let host = session
        .block_on(link::by_name(session.handle(), &host_name))?
        .ok_or_else(|| Error::Check(format!("host veth {host_name} is missing")))?;
    if !host.up {
        return Err(Error::Check(format!("host veth {host_name} is down")));
    }
    if host.alias.as_deref().and_then(parse_alias) != Some((network, container_id, ifname)) {
        return Err(Error::Check(format!(
            "host veth {host_name} belongs to another attachment"
        )));
    }
    let routes = session.block_on(dump::ipv4_routes(session.handle()))?;
    if !routes
        .iter()
        .any(|r| r.destination == Some((ip, 32)) && r.output == Some(host.index))
    {
        return Err(Error::Check(format!(
            "the node has no route to {ip} via {host_name}"
        )));
    }
    let ifname = ifname.to_owned();
    netns.run(move || check_pod(&ifname, ip))??;
    Ok(())
}

fn check_pod(ifname: &str, ip: Ipv4Addr) -> Result<()> {
    let session = Session::open()?;
    let pod = session
        .block_on(link::by_name(session.handle(), ifname))?
        .ok_or_else(|| Error::Check(format!("{ifname} is missing in the pod")))?;
    if !pod.up {
        return Err(Error::Check(format!("{ifname} is down in the pod")));
    }
    let addresses = session.block_on(dump::ipv4_addresses(session.handle(), pod.index))?;
    if !addresses.contains(&(ip, 32)) {
        return Err(Error::Check(format!("{ifname} does not have {ip}/32")));
    }
    let routes = session.block_on(dump::ipv4_routes(session.handle()))?;
    let via_link = routes
        .iter()
        .any(|r| r.destination == Some((GATEWAY, 32)) && r.output == Some(pod.index));
    let default = routes
        .iter()
        .any(|r| r.destination.is_none() && r.gateway == Some(GATEWAY));
    if !via_link || !default {
        return Err(Error::Check(format!(
            "the pod's routes through {GATEWAY} are missing"
        )));
    }
    Ok(())
}

/// Deletes every host veth of `network` whose attachment is not in `valid`:
/// what a plugin killed in the middle of ADD, or a DEL that never came, left.
/// `stale` are the owners of the allocations being released: their links are
/// deleted by name too, since a plugin killed between creating the pair and
/// setting the alias leaves links without one (the host end, or the peer
/// still under its temporary name). Returns the names deleted.
pub fn collect_garbage<S: std::hash::BuildHasher>(
    network: &str,
    valid: &HashSet<Owner, S>,
    stale: &[Owner],
) -> Result<Vec<String>> {
    let session = Session::open()?;
    let mut deleted = Vec::new();
    for owner in stale.iter().filter(|o| !valid.contains(*o)) {
        for name in [
            host_name(&owner.container_id),
            super::temp_name(&owner.container_id),
        ] {
            if session.block_on(link::delete_by_name(session.handle(), &name))? {
                deleted.push(name);
            }
        }
    }
    for found in session.block_on(dump::links(session.handle()))? {
        let Some((net, container_id, ifname)) = found.alias.as_deref().and_then(parse_alias) else {
            continue;
        };
        if net != network || valid.contains(&Owner::new(container_id, ifname)) {
            continue;
        }
        if session.block_on(link::delete_by_name(session.handle(), &found.name))? {
            deleted.push(found.name);
        }
    }
    Ok(deleted)
}
