//! Addresses and routes.

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_route::route::RouteScope;
use rtnetlink::{Handle, RouteMessageBuilder};

use super::{Error, Link, Result};

/// Puts `ip/32` on `link`.
///
/// A /32 and no connected route: the pod reaches everything, even its
/// neighbours on the same node, through the gateway, so all traffic crosses
/// the node's routing (and weir's datapath).
pub async fn add_host_address(handle: &Handle, link: &Link, ip: Ipv4Addr) -> Result<()> {
    handle
        .address()
        .add(link.index, IpAddr::V4(ip), 32)
        .execute()
        .await
        .map_err(Error::request(format!("add address {ip}/32 to {}", link.name)))
}

/// Adds `dst/32 dev <link> scope link`.
///
/// With `replace`, an existing route to `dst` is taken over: on the node, a
/// stale route to a pod address (left by a pod whose teardown failed) must not
/// block the new owner of that address.
pub async fn add_link_route(handle: &Handle, link: &Link, dst: Ipv4Addr, replace: bool) -> Result<()> {
    let message = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(dst, 32)
        .output_interface(link.index)
        .scope(RouteScope::Link)
        .build();
    let request = handle.route().add(message);
    let request = if replace { request.replace() } else { request };
    request.execute().await.map_err(Error::request(format!(
        "add route {dst}/32 dev {} scope link",
        link.name
    )))
}

/// Adds `default via <gateway> dev <link>`; the gateway must already be
/// reachable on the link (see [`add_link_route`]).
pub async fn add_default_route(handle: &Handle, link: &Link, gateway: Ipv4Addr) -> Result<()> {
    let message = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .output_interface(link.index)
        .build();
    handle
        .route()
        .add(message)
        .execute()
        .await
        .map_err(Error::request(format!(
            "add route default via {gateway} dev {}",
            link.name
        )))
}

/// Adds a permanent neighbour entry `ip lladdr <mac> dev <link>`.
///
/// The pod's gateway lives on the other end of its veth. Pinning its MAC
/// means the pod never ARPs for it, so the pod works whether or not the
/// node's proxy ARP would answer (proxy ARP only answers for addresses the
/// node routes out another interface, which a node without a default route
/// does not do for 169.254.1.1).
pub async fn add_permanent_neighbour(handle: &Handle, link: &Link, ip: Ipv4Addr, mac: &[u8]) -> Result<()> {
    handle
        .neighbours()
        .add(link.index, IpAddr::V4(ip))
        .link_layer_address(mac)
        .state(netlink_packet_route::neighbour::NeighbourState::Permanent)
        .replace()
        .execute()
        .await
        .map_err(Error::request(format!(
            "add neighbour {ip} dev {} permanent",
            link.name
        )))
}
