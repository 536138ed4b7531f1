//! The node routes weir owns: host-gw routes to the other nodes' pods, and
//! an unreachable route for the Service CIDR. A route table interface, a
//! real implementation over rtnetlink and a reconciler that makes the table
//! match the desired routes.
//!
//! The Service CIDR route defines what happens to traffic for a ClusterIP
//! that no socket hook translated (ping, raw sockets, a port no Service
//! declares): the node answers ICMP unreachable at once, and the packet never
//! follows the default route out of the cluster.
//!
//! weir marks its routes with its own routing protocol number
//! ([`ROUTE_PROTOCOL`]), so it can tell them from routes others own: it only
//! ever replaces or deletes routes carrying that mark (as Calico's BIRD and
//! kube-router do with theirs).

mod netlink;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

pub use netlink::NetlinkRoutes;

/// The `rtm_protocol` weir's routes carry (`ip route` shows `proto 87`).
/// Values above RTPROT_STATIC (4) are free for routing daemons; 87 is 'W'.
pub const ROUTE_PROTOCOL: u8 = 87;

/// Errors talking to the kernel's route table.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The netlink socket could not be opened.
    #[error("cannot open a netlink socket")]
    Socket(#[source] std::io::Error),
    /// The kernel refused a request.
    #[error("cannot {action}")]
    Request {
        /// What was asked.
        action: String,
        /// What came back.
        #[source]
        source: rtnetlink::Error,
    },
}

/// Result of route operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a route sends its traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Via this next hop (another node).
    Via(Ipv4Addr),
    /// Nowhere: the kernel answers ICMP unreachable.
    Unreachable,
}

/// The routes weir owns in one route table.
#[expect(
    async_fn_in_trait,
    reason = "used with concrete types on one runtime; no Send bound needed"
)]
pub trait RouteTable {
    /// The routes carrying weir's mark.
    async fn list(&mut self) -> Result<BTreeMap<Ipv4Network, Target>>;
    /// Adds the route, replacing any route to the same destination.
    async fn replace(&mut self, destination: Ipv4Network, target: Target) -> Result<()>;
    /// Deletes weir's route to `destination`; a missing route is success.
    async fn delete(&mut self, destination: Ipv4Network, target: Target) -> Result<()>;
}

/// What one route reconcile did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Routes now in place.
    pub routes: usize,
    /// Routes added or changed.
    pub updated: usize,
    /// Routes removed.
    pub deleted: usize,
}

/// Makes weir's routes in `table` exactly `desired`. New and changed routes
/// go in before stale ones go out, so a node that moves keeps a route.
pub async fn reconcile(
    table: &mut impl RouteTable,
    desired: &BTreeMap<Ipv4Network, Target>,
) -> Result<Summary> {
    let current = table.list().await?;
    let mut summary = Summary {
        routes: desired.len(),
        ..Summary::default()
    };
    for (destination, target) in desired {
        if current.get(destination) != Some(target) {
            table.replace(*destination, *target).await?;
            summary.updated += 1;
        }
    }
    for (destination, target) in &current {
        if !desired.contains_key(destination) {
            table.delete(*destination, *target).await?;
            summary.deleted += 1;
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct FakeRoutes(BTreeMap<Ipv4Network, Target>);

    #[expect(
        clippy::unused_async_trait_impl,
        reason = "an in-memory fake of an async trait"
    )]
    impl RouteTable for FakeRoutes {
        async fn list(&mut self) -> Result<BTreeMap<Ipv4Network, Target>> {
            Ok(self.0.clone())
        }
        async fn replace(&mut self, destination: Ipv4Network, target: Target) -> Result<()> {
            self.0.insert(destination, target);
            Ok(())
        }
        async fn delete(&mut self, destination: Ipv4Network, _: Target) -> Result<()> {
            self.0.remove(&destination);
            Ok(())
        }
    }

    fn routes(list: &[(&str, &str)]) -> BTreeMap<Ipv4Network, Target> {
        let target = |v: &str| {
            if v == "unreachable" {
                Target::Unreachable
            } else {
                Target::Via(v.parse().unwrap())
            }
        };
        list.iter()
            .map(|(c, v)| (c.parse().unwrap(), target(v)))
            .collect()
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn adds_changes_and_removes_only_what_differs() {
        let mut table = FakeRoutes(routes(&[
            ("10.244.2.0/24", "198.18.0.12"),
            ("10.244.9.0/24", "198.18.0.19"),
        ]));
        let desired = routes(&[
            ("10.244.2.0/24", "198.18.0.22"),
            ("10.244.3.0/24", "198.18.0.13"),
            ("10.96.0.0/12", "unreachable"),
        ]);
        let summary = block_on(reconcile(&mut table, &desired)).unwrap();
        assert_eq!((summary.routes, summary.updated, summary.deleted), (3, 3, 1));
        assert_eq!(table.0, desired);
        let again = block_on(reconcile(&mut table, &desired)).unwrap();
        assert_eq!((again.updated, again.deleted), (0, 0));
    }
}
