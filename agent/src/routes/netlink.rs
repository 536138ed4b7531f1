//! [`RouteTable`] over rtnetlink, in the agent's own network namespace (the
//! node's), main table, marked with [`ROUTE_PROTOCOL`].

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use futures::TryStreamExt as _;
use ipnetwork::Ipv4Network;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteProtocol};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::{Error, ROUTE_PROTOCOL, Result, RouteTable};
use crate::desired::NodeRoute;

/// ESRCH: what the kernel answers when deleting a route that is not there.
const ESRCH: i32 = 3;

/// The main route table of the current network namespace.
pub struct NetlinkRoutes {
    handle: Handle,
}

impl NetlinkRoutes {
    /// Opens a netlink connection; must be called inside a tokio runtime
    /// (the connection runs as a task on it).
    pub fn new() -> Result<Self> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }
}

fn request(action: String) -> impl FnOnce(rtnetlink::Error) -> Error {
    move |source| Error::Request { action, source }
}

fn message(pod_cidr: Ipv4Network) -> RouteMessageBuilder<Ipv4Addr> {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(pod_cidr.network(), pod_cidr.prefix())
        .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
}

impl RouteTable for NetlinkRoutes {
    async fn list(&mut self) -> Result<BTreeMap<Ipv4Network, Ipv4Addr>> {
        let dump = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        let messages: Vec<_> = dump
            .try_collect()
            .await
            .map_err(request("list IPv4 routes".into()))?;
        let mut routes = BTreeMap::new();
        for msg in messages {
            if msg.header.protocol != RouteProtocol::Other(ROUTE_PROTOCOL)
                || msg.header.table != RouteHeader::RT_TABLE_MAIN
            {
                continue;
            }
            let mut destination = Ipv4Addr::UNSPECIFIED;
            let mut gateway = None;
            for attribute in &msg.attributes {
                match attribute {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => destination = *ip,
                    RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
                    _ => {}
                }
            }
            if let (Ok(cidr), Some(via)) = (
                Ipv4Network::new(destination, msg.header.destination_prefix_length),
                gateway,
            ) {
                routes.insert(cidr, via);
            }
        }
        Ok(routes)
    }

    async fn replace(&mut self, route: &NodeRoute) -> Result<()> {
        let msg = message(route.pod_cidr).gateway(route.via).build();
        self.handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(request(format!("add route {} via {}", route.pod_cidr, route.via)))
    }

    async fn delete(&mut self, pod_cidr: Ipv4Network) -> Result<()> {
        match self.handle.route().del(message(pod_cidr).build()).execute().await {
            Err(rtnetlink::Error::NetlinkError(e)) if e.code.map(|c| -c.get()) == Some(ESRCH) => Ok(()),
            other => other.map_err(request(format!("delete route {pod_cidr}"))),
        }
    }
}
