//! Which endpoints of a Service a node sends traffic to, as kube-proxy
//! decides it (pkg/proxy/topology.go, KEP-1669 for terminating endpoints).

use super::L4Addr;

/// One endpoint of one Service port, with the conditions that decide
/// whether it gets traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Where the traffic goes.
    pub addr: L4Addr,
    /// `conditions.ready` (unset means ready).
    pub ready: bool,
    /// `conditions.serving` (unset means the value of `ready`).
    pub serving: bool,
    /// `conditions.terminating` (unset means not terminating).
    pub terminating: bool,
    /// `nodeName`: the node the endpoint runs on, if the slice says.
    pub node: Option<String>,
}

/// The backends for new connections:
///
/// - the ready endpoints;
/// - if none is ready, those that are serving and terminating, so a Service
///   whose pods are all shutting down still answers while they drain
///   (KEP-1669) instead of refusing;
/// - with `local_node`, the same rules over the endpoints on that node only
///   (internalTrafficPolicy / externalTrafficPolicy `Local`).
///
/// The result is sorted and free of duplicates.
#[must_use]
pub fn select(endpoints: &[Endpoint], local_node: Option<&str>) -> Vec<L4Addr> {
    let eligible = |e: &&Endpoint| local_node.is_none_or(|node| e.node.as_deref() == Some(node));
    let mut chosen: Vec<L4Addr> = endpoints
        .iter()
        .filter(eligible)
        .filter(|e| e.ready)
        .map(|e| e.addr)
        .collect();
    if chosen.is_empty() {
        chosen = endpoints
            .iter()
            .filter(eligible)
            .filter(|e| e.serving && e.terminating)
            .map(|e| e.addr)
            .collect();
    }
    chosen.sort_unstable();
    chosen.dedup();
    chosen
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::desired::Protocol;

    fn ep(last: u8, ready: bool, serving: bool, terminating: bool, node: &str) -> Endpoint {
        Endpoint {
            addr: L4Addr {
                ip: Ipv4Addr::new(10, 0, 0, last),
                port: 80,
                proto: Protocol::Tcp,
            },
            ready,
            serving,
            terminating,
            node: Some(node.into()),
        }
    }

    fn lasts(addrs: &[L4Addr]) -> Vec<u8> {
        addrs.iter().map(|a| a.ip.octets()[3]).collect()
    }

    #[test]
    fn ready_endpoints_win_over_terminating_ones() {
        let eps = [
            ep(1, true, true, false, "a"),
            ep(2, false, true, true, "a"),
            ep(3, false, false, false, "b"),
        ];
        assert_eq!(lasts(&select(&eps, None)), [1]);
    }

    #[test]
    fn serving_terminating_endpoints_are_used_when_none_is_ready() {
        let eps = [
            ep(2, false, true, true, "a"),
            ep(3, false, false, true, "a"),
            ep(4, false, true, true, "b"),
        ];
        assert_eq!(lasts(&select(&eps, None)), [2, 4]);
    }

    #[test]
    fn local_policy_keeps_only_this_nodes_endpoints_with_the_same_fallback() {
        let eps = [
            ep(1, true, true, false, "a"),
            ep(2, false, true, true, "b"),
            ep(3, true, true, false, "c"),
        ];
        assert_eq!(lasts(&select(&eps, Some("b"))), [2]);
        assert_eq!(lasts(&select(&eps, Some("a"))), [1]);
        assert_eq!(select(&eps, Some("z")), []);
    }
}
