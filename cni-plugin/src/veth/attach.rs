//! Setting up (ADD) and tearing down (DEL) a pod's veth pair.

use std::net::Ipv4Addr;

use super::{GATEWAY, Result, host_name, temp_name};
use crate::netlink::{self, Link, Session, link, route};
use crate::netns::NetNs;
use crate::result::{Attachment, Interface};
use crate::sysctl;

/// What to attach.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The network's name (recorded in the host veth's alias).
    pub network: &'a str,
    /// `CNI_CONTAINERID`; names the host veth.
    pub container_id: &'a str,
    /// `CNI_IFNAME`; the pod end's final name.
    pub ifname: &'a str,
    /// The pod's address, already reserved.
    pub ip: Ipv4Addr,
    /// MTU of both ends.
    pub mtu: u32,
}

/// Creates the pod's veth pair and configures both ends. Runs in the node
/// netns (the caller's); the pod end is configured from a thread inside
/// `netns`.
///
/// On failure nothing is left behind: the pair is deleted again, which also
/// removes everything configured on it.
pub fn attach(netns: &NetNs, request: &Request<'_>) -> Result<Attachment> {
    let session = Session::open()?;
    let host = host_name(request.container_id);
    let temp = temp_name(request.container_id);
    // Created in the node netns under a temporary name and only then moved:
    // a veth made directly with the final name in the pod netns would not need
    // the rename, but creating in the node netns keeps a half-done ADD visible
    // (and removable by name) from the node, where DEL looks.
    session.block_on(link::create_veth(session.handle(), &host, &temp, request.mtu))?;
    attach_created(&session, netns, request, &host, &temp).inspect_err(|_| {
        // Deleting the host end removes the peer too, in whichever netns it is
        // by now, with its addresses and routes, and the node's pod route.
        if let Err(e) = session.block_on(link::delete_by_name(session.handle(), &host)) {
            eprintln!("weir-cni: cannot remove veth {host} after a failed ADD: {e}");
        }
    })
}

fn attach_created(
    session: &Session,
    netns: &NetNs,
    request: &Request<'_>,
    host_name: &str,
    temp_name: &str,
) -> Result<Attachment> {
    let handle = session.handle();
    let host = session.block_on(link::expect(handle, host_name))?;
    // The alias names the attachment for CHECK and GC. A plugin killed before
    // this line leaves a link without it; GC finds that one by name from
    // the allocation, which always exists before any link does.
    let alias = super::alias(request.network, request.container_id, request.ifname);
    session.block_on(link::set_alias(handle, &host, &alias))?;
    let peer = session.block_on(link::expect(handle, temp_name))?;
    session.block_on(link::move_to_netns(handle, &peer, netns.raw_fd()))?;

    let pod = netns.run(|| configure_pod(temp_name, request, &host.hw_addr))??;

    session.block_on(link::set_up(handle, &host))?;
    // Proxy ARP before the route: once the route exists the node may send to
    // the pod, and the pod's reply needs its ARP for the gateway answered.
    sysctl::enable_proxy_arp(&host.name)?;
    session.block_on(route::add_link_route(handle, &host, request.ip, true))?;

    Ok(Attachment {
        host: Interface {
            name: host.name,
            mac: host.mac,
            sandbox: None,
        },
        pod: Interface {
            name: pod.name,
            mac: pod.mac,
            sandbox: Some(netns.path().display().to_string()),
        },
        ip: request.ip,
        gateway: GATEWAY,
    })
}

/// Configures the pod end; runs on the [`NetNs::run`] thread, with a netlink
/// socket of its own opened there (a socket talks to the netns it was made in).
fn configure_pod(temp_name: &str, request: &Request<'_>, gateway_mac: &[u8]) -> netlink::Result<Link> {
    let session = Session::open()?;
    let handle = session.handle();
    session.block_on(async {
        let peer = link::expect(handle, temp_name).await?;
        // Renamed while still down: the kernel refuses to rename a link that is up.
        link::rename(handle, &peer, request.ifname).await?;
        let pod = Link {
            name: request.ifname.to_owned(),
            ..peer
        };
        route::add_host_address(handle, &pod, request.ip).await?;
        // A new netns starts with lo down; the pod's own traffic to itself
        // (127.0.0.1 and its pod IP) needs it.
        if let Some(lo) = link::by_name(handle, "lo").await? {
            link::set_up(handle, &lo).await?;
        }
        // Up before the routes: the kernel rejects routes through a down link.
        link::set_up(handle, &pod).await?;
        route::add_permanent_neighbour(handle, &pod, GATEWAY, gateway_mac).await?;
        route::add_link_route(handle, &pod, GATEWAY, false).await?;
        route::add_default_route(handle, &pod, GATEWAY).await?;
        Ok(pod)
    })
}

/// Deletes the node-side veth of `container_id` (and with it the pod end and
/// every route through it). `Ok(false)` if there was none: DEL is idempotent,
/// and the pod netns is not needed at all.
pub fn detach(container_id: &str) -> Result<bool> {
    let session = Session::open()?;
    let deleted = session.block_on(link::delete_by_name(session.handle(), &host_name(container_id)))?;
    Ok(deleted)
}
