//! One synchronisation pass: Kubernetes objects → desired state → every
//! reconciler (load-balancer maps, node routes, masquerade, CNI config,
//! health-check servers). The source that produced the objects does not
//! matter: this is the single code path after it.

use std::collections::BTreeMap;

use ipnetwork::Ipv4Network;
use tracing::{info, warn};
use weir_common::IPPROTO_UDP;

use crate::cni_config::CniConfig;
use crate::desired::{self, NodeState, Scope};
use crate::healthcheck::HealthServers;
use crate::maps::{LbMaps, MasqMaps};
use crate::reconcile::{Reconciler, masq};
use crate::routes::{self, NetlinkRoutes, Target};
use crate::sockterm::SocketTerminator;
use crate::source::Objects;
use crate::status::Status;

/// Which node this agent runs on and what it does for it.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// `metadata.name` of this node's Node object.
    pub name: String,
    /// The CNI conflist to write once the podCIDR is known.
    pub cni: CniConfig,
    /// Masquerade pods of this cluster CIDR leaving the cluster to the node
    /// address; `None`: never masquerade.
    pub masquerade: Option<Ipv4Network>,
    /// The Service CIDR: traffic to it that no socket hook translated is
    /// answered unreachable by the node instead of following its default
    /// route; `None`: no such route.
    pub service_cidr: Option<Ipv4Network>,
}

/// Everything the agent writes, and how.
pub struct Syncer<M, Q> {
    /// Load-balancer maps.
    pub lb: Reconciler<M>,
    /// Masquerade / node configuration maps.
    pub masq: Q,
    /// Node plumbing; `None`: load balancing only.
    pub node: Option<NodeOptions>,
    /// Cluster-wide load-balancing settings; the node fields are filled in
    /// from the Node objects on every pass.
    pub settings: Scope,
    routes: Option<NetlinkRoutes>,
    health: HealthServers,
    /// Backends removed whose UDP flows are still to be forgotten.
    removed_backends: Vec<weir_common::Backend4>,
    /// Aborts connected UDP sockets of removed backends; `None`: leave them.
    sockets: Option<SocketTerminator>,
}

impl<M: LbMaps, Q: MasqMaps> Syncer<M, Q> {
    /// A syncer; opens the route table when there is a node to plumb. Must
    /// be called inside a tokio runtime.
    pub fn new(lb: Reconciler<M>, masq: Q, node: Option<NodeOptions>, settings: Scope) -> Self {
        let routes = node.as_ref().and_then(|_| {
            NetlinkRoutes::new()
                .inspect_err(
                    |e| warn!(error = %e, "cannot manage node routes; other nodes' pods stay unreachable"),
                )
                .ok()
        });
        Self {
            lb,
            masq,
            node,
            settings,
            routes,
            health: HealthServers::default(),
            removed_backends: Vec::new(),
            sockets: None,
        }
    }

    /// Also aborts the connected UDP sockets socket-LB pointed at a backend
    /// that left (see [`crate::sockterm`]).
    #[must_use]
    pub fn with_socket_termination(mut self, sockets: SocketTerminator) -> Self {
        self.sockets = Some(sockets);
        self
    }

    /// Brings everything to what `objects` say. Returns whether all of it is
    /// now in place (otherwise call again: every step is idempotent).
    pub async fn sync(&mut self, objects: &Objects, status: &mut Status) -> bool {
        let node_state = self.node.as_ref().map(|node| {
            let (state, errors) = desired::compute_nodes(&objects.nodes, &node.name);
            for e in &errors {
                warn!(error = %e, "skipping object");
            }
            state
        });
        let local = node_state.as_ref().and_then(|s| s.local.as_ref());
        let scope = Scope {
            node_name: self.node.as_ref().map(|n| n.name.clone()),
            node_addresses: local.and_then(|l| l.internal_ip).into_iter().collect(),
            pod_cidr: local.and_then(|l| l.pod_cidr),
            ..self.settings.clone()
        };
        let (desired, errors) = desired::compute(&objects.services, &objects.slices, &scope);
        for e in &errors {
            warn!(error = %e, "skipping object");
        }
        let mut ok = self.apply_lb(&desired, status);
        ok &= self.forget_removed_udp_flows();
        self.health.update(&desired.health_checks).await;
        if let (Some(state), Some(node)) = (&node_state, self.node.clone()) {
            ok &= ensure_forwarding();
            ok &= self.apply_routes(state, &node, status).await;
            ok &= self.apply_masquerade(state, &node);
            ok &= write_cni_config(state, &node, status);
        }
        ok
    }

    fn apply_lb(&mut self, desired: &desired::DesiredState, status: &mut Status) -> bool {
        match self.lb.reconcile(desired) {
            Ok(summary) => {
                self.removed_backends
                    .extend(summary.removed_backends.iter().copied());
                status.frontends = summary.frontends;
                status.backends = summary.backends;
                info!(
                    frontends = summary.frontends,
                    backends = summary.backends,
                    updated = summary.updated,
                    deleted = summary.deleted,
                    "load balancer reconciled"
                );
                true
            }
            Err(e) => {
                warn!(error = %e, "load balancer reconcile failed; retrying");
                false
            }
        }
    }

    /// UDP has no connection end for the NAT table to notice: a flow pinned
    /// to a backend that left would keep sending into the void. Forget them
    /// (kube-proxy deletes the same conntrack entries); the next datagram
    /// picks a live backend. Connected sockets socket-LB sent there are
    /// aborted, once and best effort: the application's next socket moves.
    fn forget_removed_udp_flows(&mut self) -> bool {
        while let Some(backend) = self.removed_backends.last().copied() {
            match self.masq.forget_udp_flows(&backend) {
                Ok(n) if n > 0 => info!(entries = n, "forgot UDP flows of a removed backend"),
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %e, "cannot clear UDP flows of a removed backend; retrying");
                    return false;
                }
            }
            self.removed_backends.pop();
            if let Some(sockets) = self.sockets.as_ref().filter(|_| backend.proto == IPPROTO_UDP) {
                match sockets.terminate(&backend) {
                    Ok(0) => {}
                    Ok(n) => info!(sockets = n, "aborted connected UDP sockets of a removed backend"),
                    Err(e) => warn!(error = %e, "cannot abort UDP sockets of a removed backend"),
                }
            }
        }
        true
    }

    async fn apply_routes(&mut self, state: &NodeState, node: &NodeOptions, status: &mut Status) -> bool {
        let Some(table) = self.routes.as_mut() else {
            return false;
        };
        let mut desired: BTreeMap<Ipv4Network, Target> = state
            .routes
            .iter()
            .map(|(cidr, via)| (*cidr, Target::Via(*via)))
            .collect();
        if let Some(cidr) = node.service_cidr {
            desired.insert(cidr, Target::Unreachable);
        }
        match routes::reconcile(table, &desired).await {
            Ok(summary) => {
                // Routes to other nodes only: the Service CIDR route is not one.
                status.node_routes = state.routes.len();
                if summary.updated + summary.deleted > 0 {
                    info!(
                        routes = summary.routes,
                        updated = summary.updated,
                        deleted = summary.deleted,
                        "node routes reconciled"
                    );
                }
                true
            }
            Err(e) => {
                warn!(error = %e, "node route reconcile failed; retrying");
                false
            }
        }
    }

    fn apply_masquerade(&mut self, state: &NodeState, node: &NodeOptions) -> bool {
        let node_ip = state.local.as_ref().and_then(|local| local.internal_ip);
        let want = masq::desired(node.masquerade, node_ip, &state.node_ips);
        match masq::reconcile(&mut self.masq, &want) {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, "masquerade reconcile failed; retrying");
                false
            }
        }
    }
}

/// The node routes pod traffic between its pods' veths, other nodes and the
/// uplink: without IPv4 forwarding nothing but same-node socket traffic works.
fn ensure_forwarding() -> bool {
    const PATH: &str = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(PATH).is_ok_and(|v| v.trim() == "1") {
        return true;
    }
    match std::fs::write(PATH, "1") {
        Ok(()) => {
            info!("enabled IPv4 forwarding on the node");
            true
        }
        Err(e) => {
            warn!(error = %e, "cannot enable IPv4 forwarding; pods cannot reach other nodes");
            false
        }
    }
}

fn write_cni_config(state: &NodeState, node: &NodeOptions, status: &mut Status) -> bool {
    let pod_cidr = state.local.as_ref().and_then(|local| local.pod_cidr);
    status.pod_cidr = pod_cidr.map(|c| c.to_string());
    let Some(pod_cidr) = pod_cidr else {
        // No podCIDR yet: no conflist, so the runtime creates no pods here.
        warn!(node = %node.name, "this node has no Node object with an IPv4 podCIDR yet");
        return true;
    };
    match node.cni.write(pod_cidr) {
        Ok(true) => {
            info!(path = %node.cni.path().display(), %pod_cidr, "CNI config written");
            true
        }
        Ok(false) => true,
        Err(e) => {
            warn!(error = %e, path = %node.cni.path().display(), "cannot write CNI config; retrying");
            false
        }
    }
}
