//! The fabric: the one L2 segment the nodes share, and the external client.
//!
//! ```text
//!   weir-<tag>-fabric      br0 ─┬─ node-1 ══ eth0  weir-<tag>-node-1   198.18.0.11/24
//!   (no address at all)         ├─ node-2 ══ eth0  weir-<tag>-node-2   198.18.0.12/24
//!                               ├─ …
//!                               └─ external ══ eth0  weir-<tag>-external  198.18.0.100/24
//! ```
//!
//! The bridge lives in a netns of its own, so the root netns never sees a
//! link, an address or a frame of the lab. Addresses come from 198.18.0.0/15,
//! the range RFC 2544 sets aside for benchmarking — never routed on the
//! Internet, and here not routed anywhere: no netns has a default route, so a
//! packet for anything outside the topology fails at once instead of leaving.

use std::net::Ipv4Addr;

use anyhow::{Context as _, Result, ensure};

use crate::netns::Netns;
use crate::tag::Naming;

/// Prefix length of the node network (198.18.0.0/24).
pub const NODE_PREFIX_LEN: u8 = 24;

/// The external client's address: on the fabric, but not a node.
pub const EXTERNAL_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);

/// Most nodes a cluster may have (addresses .11–.26, podCIDRs 10.244.1–16.0/24).
pub const MAX_NODES: usize = 16;

/// Name of the bridge in the fabric netns.
const BRIDGE: &str = "br0";

/// Name of every uplink inside a node or the external netns.
pub const UPLINK: &str = "eth0";

/// The InternalIP of node `index` (1-based): 198.18.0.(10 + index).
#[must_use]
pub fn node_address(index: usize) -> Ipv4Addr {
    let last = u8::try_from(10 + index.min(MAX_NODES)).unwrap_or(u8::MAX);
    Ipv4Addr::new(198, 18, 0, last)
}

/// The podCIDR of node `index` (1-based): 10.244.`index`.0/24.
#[must_use]
pub fn node_pod_cidr(index: usize) -> String {
    format!("10.244.{}.0/24", index.min(MAX_NODES))
}

/// The fabric netns (with its bridge) and the external client's netns.
#[derive(Clone, Debug)]
pub(crate) struct Fabric {
    pub netns: Netns,
    pub external: Netns,
    /// The API server stand-in's netns, created only when one is started
    /// (`Cluster::start_api_server`).
    pub api: Netns,
}

impl Fabric {
    /// The fabric of topology `naming`; nothing is created.
    pub fn named(naming: &Naming) -> Self {
        Fabric {
            netns: Netns::existing(&naming.netns_name("fabric")),
            external: Netns::existing(&naming.netns_name("external")),
            api: Netns::existing(&naming.netns_name("api")),
        }
    }

    /// Creates the fabric netns with its bridge, and the external client
    /// wired to it.
    pub fn create(&mut self) -> Result<()> {
        self.netns = Netns::create(self.netns.name())?;
        self.netns.ip(&["link", "add", BRIDGE, "type", "bridge"])?;
        self.netns.ip(&["link", "set", BRIDGE, "up"])?;
        self.external = Netns::create(self.external.name())?;
        self.wire(&self.external, "external", EXTERNAL_ADDRESS)
    }

    /// Connects `netns` to the bridge: a veth pair, `port` on the bridge and
    /// `eth0` with `address/24` inside `netns`. The pair is created inside the
    /// fabric netns and its peer moved straight into `netns`, so it never
    /// exists in the root netns, not even for a moment.
    pub fn wire(&self, netns: &Netns, port: &str, address: Ipv4Addr) -> Result<()> {
        ensure!(port.len() <= 15, "interface name {port:?} is too long");
        self.netns
            .ip(&[
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                UPLINK,
                "netns",
                netns.name(),
            ])
            .with_context(|| format!("wiring {} to the fabric", netns.name()))?;
        self.netns.ip(&["link", "set", port, "master", BRIDGE, "up"])?;
        netns.ip(&[
            "addr",
            "add",
            &format!("{address}/{NODE_PREFIX_LEN}"),
            "dev",
            UPLINK,
        ])?;
        netns.ip(&["link", "set", UPLINK, "up"])?;
        Ok(())
    }

    /// Deletes every netns (the veths die with them); missing is success.
    pub fn delete(&self) -> Result<()> {
        let api = self.api.delete();
        let external = self.external.delete();
        let fabric = self.netns.delete();
        api.and(external).and(fabric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_get_addresses_and_cidrs_by_index() {
        assert_eq!(node_address(1), Ipv4Addr::new(198, 18, 0, 11));
        assert_eq!(node_address(2), Ipv4Addr::new(198, 18, 0, 12));
        assert_eq!(node_pod_cidr(2), "10.244.2.0/24");
        assert!(node_address(MAX_NODES) < EXTERNAL_ADDRESS);
    }
}
