//! [`RouteTable`] over rtnetlink, in the agent's own network namespace (the
//! node's), main table, marked with [`ROUTE_PROTOCOL`].

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use futures::TryStreamExt as _;
use ipnetwork::Ipv4Network;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteType,
};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::{Error, ROUTE_PROTOCOL, Result, RouteTable, Target};

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

/// The route message for `destination` → `target`, with weir's mark.
fn message(destination: Ipv4Network, target: Target) -> RouteMessage {
    let builder = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(destination.network(), destination.prefix())
        .protocol(RouteProtocol::Other(ROUTE_PROTOCOL));
    match target {
        Target::Via(via) => builder.gateway(via).build(),
        Target::Unreachable => builder.kind(RouteType::Unreachable).build(),
    }
}

impl RouteTable for NetlinkRoutes {
    async fn list(&mut self) -> Result<BTreeMap<Ipv4Network, Target>> {
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
            // A gateway means a node route; anything else of ours is the
            // unreachable kind (a shape we never write would be deleted or
            // replaced by destination all the same).
            let target = match (msg.header.kind, gateway) {
                (RouteType::Unicast, Some(via)) => Target::Via(via),
                _ => Target::Unreachable,
            };
            if let Ok(cidr) = Ipv4Network::new(destination, msg.header.destination_prefix_length) {
                routes.insert(cidr, target);
            }
        }
        Ok(routes)
    }

    async fn replace(&mut self, destination: Ipv4Network, target: Target) -> Result<()> {
        self.handle
            .route()
            .add(message(destination, target))
            .replace()
            .execute()
            .await
            .map_err(request(format!("add route {destination} {target:?}")))
    }

    async fn delete(&mut self, destination: Ipv4Network, target: Target) -> Result<()> {
        match self
            .handle
            .route()
            .del(message(destination, target))
            .execute()
            .await
        {
            Err(rtnetlink::Error::NetlinkError(e)) if e.code.map(|c| -c.get()) == Some(ESRCH) => Ok(()),
            other => other.map_err(request(format!("delete route {destination}"))),
        }
    }
}
