//! The node's IPv4 routes (`/proc/net/route` of the netns `weir` runs in):
//! where an address lives. The agent routes every other node's podCIDR via
//! that node's address (host-gw) and each local pod by a `/32` over its host
//! veth, so the routing table already says which node owns a pod address —
//! the same answer the kernel will act on.

use std::net::Ipv4Addr;

use anyhow::Context as _;

/// One route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Output device.
    pub device: String,
    /// Destination network.
    pub destination: Ipv4Addr,
    /// Prefix length.
    pub prefix_len: u32,
    /// Next hop, if not on-link.
    pub gateway: Option<Ipv4Addr>,
    /// An `unreachable`, `prohibit` or `blackhole` route (`RTF_REJECT`):
    /// nothing goes there (the agent installs one for the Service range,
    /// so an untranslated ClusterIP fails at once).
    pub reject: bool,
}

/// `RTF_REJECT` in the flags column.
const RTF_REJECT: u32 = 0x0200;

/// Where an address is, as far as this node's routes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// A pod of this node (a `/32` over a `weir…` host veth).
    LocalPod,
    /// Behind another node (its address as the next hop): a pod of that node.
    Node(Ipv4Addr),
    /// On-link, or via a router that is no node: not a pod weir knows.
    Direct,
    /// No route, or a rejecting one: the connection fails at once.
    Unreachable,
}

/// Reads `/proc/net/route`.
pub fn read() -> anyhow::Result<Vec<Route>> {
    let text = std::fs::read_to_string("/proc/net/route").context("reading /proc/net/route")?;
    Ok(parse(&text))
}

/// Parses the kernel's table: addresses are the raw `u32` in host order,
/// as hex, i.e. network-order bytes read natively.
#[must_use]
pub fn parse(text: &str) -> Vec<Route> {
    let address = |hex: &str| {
        u32::from_str_radix(hex, 16)
            .ok()
            .map(|v| Ipv4Addr::from(v.to_ne_bytes()))
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (destination, gateway, mask) =
                (address(f.get(1)?)?, address(f.get(2)?)?, address(f.get(7)?)?);
            let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
            Some(Route {
                device: (*f.first()?).to_owned(),
                destination,
                prefix_len: u32::from(mask).count_ones(),
                gateway: (!gateway.is_unspecified()).then_some(gateway),
                reject: flags & RTF_REJECT != 0,
            })
        })
        .collect()
}

/// Where `address` is, by the longest matching route (the main table:
/// the node's own addresses are the caller's to recognise).
#[must_use]
pub fn locate(routes: &[Route], address: Ipv4Addr) -> Location {
    let best = routes
        .iter()
        .filter(|r| {
            let mask = if r.prefix_len == 0 {
                0
            } else {
                u32::MAX << (32 - r.prefix_len.min(32))
            };
            u32::from(r.destination) & mask == u32::from(address) & mask
        })
        .max_by_key(|r| r.prefix_len);
    match best {
        None => Location::Unreachable,
        Some(r) if r.reject => Location::Unreachable,
        Some(r) if r.prefix_len == 32 && r.device.starts_with("weir") && r.gateway.is_none() => {
            Location::LocalPod
        }
        Some(Route {
            gateway: Some(gateway),
            ..
        }) => Location::Node(*gateway),
        _ => Location::Direct,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t000012C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth0\t0002F40A\t0C0012C6\t0003\t0\t0\t0\t00FFFFFF\t0\t0\t0
weir1a2b\t0201F40A\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0
*\t0000600A\t00000000\t0201\t0\t0\t0\t0000F0FF\t0\t0\t0
";

    #[test]
    fn pods_of_this_node_other_nodes_and_the_rest_are_told_apart() {
        let routes = parse(TABLE);
        assert_eq!(routes.len(), 4);
        assert_eq!(routes[1].destination, Ipv4Addr::new(10, 244, 2, 0));
        assert_eq!(routes[1].prefix_len, 24);
        assert_eq!(locate(&routes, "10.244.1.2".parse().unwrap()), Location::LocalPod);
        assert_eq!(
            locate(&routes, "10.244.2.7".parse().unwrap()),
            Location::Node(Ipv4Addr::new(198, 18, 0, 12))
        );
        assert_eq!(locate(&routes, "198.18.0.12".parse().unwrap()), Location::Direct);
        assert_eq!(
            locate(&routes, "192.0.2.1".parse().unwrap()),
            Location::Unreachable
        );
        assert_eq!(
            locate(&routes, "10.96.0.10".parse().unwrap()),
            Location::Unreachable
        );
    }
}
