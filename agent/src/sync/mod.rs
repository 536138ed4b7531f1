//! One synchronisation pass: Kubernetes objects → desired state → every
//! reconciler (load-balancer maps, node routes, masquerade, CNI config,
//! health-check servers). The source that produced the objects does not
//! matter: this is the single code path after it.

mod policy;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use ipnetwork::Ipv4Network;
use tracing::{debug, info, warn};
use weir_common::IPPROTO_UDP;

use crate::cni_config::CniConfig;
use crate::desired::{self, Changes, NodeState, Scope, ServiceCache};
use crate::healthcheck::HealthServers;
use crate::maps::{self, LbMaps, MasqMaps};
use crate::ops::Ops;
use crate::reconcile::{Reconciler, masq};
use crate::routes::{self, NetlinkRoutes, Target};
use crate::sockterm::SocketTerminator;
use crate::source::Objects;
use crate::status::Status;
pub use policy::PolicyEnforcement;

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
    /// NetworkPolicy enforcement; `None`: policies are not enforced.
    policy: Option<PolicyEnforcement>,
    /// Health and metrics.
    ops: Ops,
    /// What failed in the current pass (the not-ready reason).
    failures: Vec<String>,
    /// This node's address and podCIDR as last logged.
    node_seen: Option<(Option<Ipv4Addr>, Option<Ipv4Network>)>,
    /// Objects the last pass left out, and why.
    skipped: Vec<desired::ObjectError>,
    /// The load-balancer desired state, recomputed per changed Service.
    services: ServiceCache,
    /// What the node's routes, masquerade, policies and CNI config were
    /// last brought fully in place for; `None`: they are not.
    node_done: Option<NodeInputs>,
    /// What the node part of that pass left out (policies that do not
    /// compile), reported again while it stands.
    node_skipped: Vec<desired::ObjectError>,
}

/// The objects the node part of a pass depends on, by identity: the
/// sources hand out the same `Arc` for an object that did not change.
struct NodeInputs {
    nodes: Vec<Arc<k8s_openapi::api::core::v1::Node>>,
    pods: Vec<Arc<k8s_openapi::api::core::v1::Pod>>,
    namespaces: Vec<Arc<k8s_openapi::api::core::v1::Namespace>>,
    network_policies: Vec<Arc<k8s_openapi::api::networking::v1::NetworkPolicy>>,
}

impl NodeInputs {
    fn of(objects: &Objects) -> Self {
        Self {
            nodes: objects.nodes.clone(),
            pods: objects.pods.clone(),
            namespaces: objects.namespaces.clone(),
            network_policies: objects.network_policies.clone(),
        }
    }

    fn same(&self, objects: &Objects) -> bool {
        fn same<T>(a: &[Arc<T>], b: &[Arc<T>]) -> bool {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| Arc::ptr_eq(a, b))
        }
        same(&self.nodes, &objects.nodes)
            && same(&self.pods, &objects.pods)
            && same(&self.namespaces, &objects.namespaces)
            && same(&self.network_policies, &objects.network_policies)
    }
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
            policy: None,
            ops: Ops::default(),
            failures: Vec::new(),
            node_seen: None,
            skipped: Vec::new(),
            services: ServiceCache::default(),
            node_done: None,
            node_skipped: Vec::new(),
        }
    }

    /// The objects the last pass left out, and why (e.g. to publish
    /// Kubernetes Events for them).
    #[must_use]
    pub fn skipped(&self) -> &[desired::ObjectError] {
        &self.skipped
    }

    /// Records health and metrics into `ops` (otherwise into a private
    /// handle nobody reads).
    #[must_use]
    pub fn with_ops(mut self, ops: Ops) -> Self {
        self.ops = ops;
        self
    }

    /// The health and metrics handle the syncer records into.
    #[must_use]
    pub fn ops(&self) -> &Ops {
        &self.ops
    }

    /// A reconciler failed: counted, and named in the not-ready reason.
    fn failed(&mut self, reconciler: &str, reason: &str, message: String) {
        self.ops.reconcile_error(reconciler, reason);
        self.failures.push(message);
    }

    /// Also enforces `NetworkPolicies` for this node's pods (see
    /// [`policy`]). Needs [`NodeOptions`]: the endpoints are the node's pods.
    #[must_use]
    pub fn with_policy(mut self, policy: PolicyEnforcement) -> Self {
        self.policy = Some(policy);
        self
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
    ///
    /// Readiness follows the result: ready after a complete pass, not ready
    /// (with what failed) after one that was not.
    pub async fn sync(&mut self, objects: &Objects, status: &mut Status) -> bool {
        let started = Instant::now();
        self.failures.clear();
        let ok = self.sync_all(objects, status).await;
        self.ops.observe_sync(started.elapsed(), ok);
        let reason = if self.failures.is_empty() {
            "sync pass incomplete".to_owned()
        } else {
            self.failures.join("; ")
        };
        self.ops.set_ready(ok, &reason);
        self.ops
            .publish_pass(ok, self.skipped.iter().map(ToString::to_string).collect());
        ok
    }

    async fn sync_all(&mut self, objects: &Objects, status: &mut Status) -> bool {
        self.skipped.clear();
        for (resource, count) in objects.counts() {
            self.ops.source_objects(resource, count);
        }
        let node_state = self.node.as_ref().map(|node| {
            let (state, errors) = desired::compute_nodes(&objects.nodes, &node.name);
            state_errors(&self.ops, &errors);
            self.skipped.extend(errors);
            state
        });
        if let Some(state) = &node_state {
            self.log_node(state);
        }
        let local = node_state.as_ref().and_then(|s| s.local.as_ref());
        let scope = Scope {
            node_name: self.node.as_ref().map(|n| n.name.clone()),
            node_addresses: local.and_then(|l| l.internal_ip).into_iter().collect(),
            pod_cidr: local.and_then(|l| l.pod_cidr),
            ..self.settings.clone()
        };
        let changes = self.services.update(&objects.services, &objects.slices, &scope);
        let errors = self.services.errors();
        state_errors(&self.ops, &errors);
        self.skipped.extend(errors);
        let mut ok = self.apply_lb(&changes, status);
        // After the maps were written: the API never shows a Service the
        // datapath does not have yet.
        // Whether the node part is in place for these very objects: asked
        // once, for the pods view and for the node part.
        let node_settled = self.node_done.as_ref().is_some_and(|done| done.same(objects));
        self.publish_view(objects, &changes, &scope, status, node_settled);
        ok &= self.forget_removed_udp_flows();
        self.health.update(&self.services.state().health_checks).await;
        let Some((state, node)) = node_state.zip(self.node.clone()) else {
            return ok;
        };
        // Routes, masquerade, policies and the CNI config depend on Nodes,
        // Pods, Namespaces and NetworkPolicies only: a pass for a Service
        // or endpoint change leaves them be (it took the node's netlink
        // dumps and policy maps milliseconds, and at times far more).
        if node_settled {
            for e in &self.node_skipped {
                self.ops.object_skipped(e.object.kind);
            }
            self.skipped.extend(self.node_skipped.iter().cloned());
            return ok;
        }
        let node_ok = self.sync_node(objects, &state, &node, status).await;
        self.node_done = node_ok.then(|| NodeInputs::of(objects));
        ok && node_ok
    }

    /// The node part of a pass: forwarding, routes, masquerade, policies,
    /// the CNI config.
    async fn sync_node(
        &mut self,
        objects: &Objects,
        state: &NodeState,
        node: &NodeOptions,
        status: &mut Status,
    ) -> bool {
        let mut ok = true;
        let skipped_before = self.skipped.len();
        {
            if !ensure_forwarding() {
                self.failed("forwarding", "sysctl", "IPv4 forwarding is off".to_owned());
                ok = false;
            }
            ok &= self.apply_routes(state, node, status).await;
            ok &= self.apply_masquerade(state, node);
            if let Some(policy) = &mut self.policy {
                let addresses = policy::node_addresses(Some(state));
                let failures = policy
                    .apply(objects, &node.name, &addresses, &self.ops, &mut self.skipped)
                    .await;
                for (reconciler, reason, message) in failures {
                    self.failed(reconciler, reason, message);
                    ok = false;
                }
            }
            if let Err(e) = write_cni_config(state, node, status) {
                self.failed("cni_config", "io", format!("CNI config: {e}"));
                ok = false;
            }
        }
        self.node_skipped = self.skipped[skipped_before..].to_vec();
        ok
    }

    /// What the CLI's API shows of this pass: the node, pods and Services.
    fn publish_view(
        &self,
        objects: &Objects,
        changes: &Changes,
        scope: &Scope,
        status: &Status,
        pods_unchanged: bool,
    ) {
        self.ops.publish_node(crate::ops::api::NodeInfo {
            name: scope.node_name.clone(),
            addresses: scope.node_addresses.clone(),
            pod_cidr: scope.pod_cidr.map(|c| c.to_string()),
        });
        if !pods_unchanged {
            self.ops.publish_pods(crate::ops::view::pods(&objects.pods));
        }
        let names: Vec<&desired::ServiceName> = if changes.full {
            self.services.names().collect()
        } else {
            changes.services.iter().collect()
        };
        let docs = names
            .into_iter()
            .map(|name| (name.clone(), crate::ops::view::service(&self.services, name)))
            .collect();
        self.ops
            .publish_services(changes.full, docs, scope, status.frontends, status.backends);
    }

    /// Logs this node's address and podCIDR when first known and when they
    /// change: they come from the Node object, not from the settings.
    fn log_node(&mut self, state: &NodeState) {
        let local = state.local.as_ref();
        let now = (local.and_then(|l| l.internal_ip), local.and_then(|l| l.pod_cidr));
        if self.node_seen == Some(now) {
            return;
        }
        self.node_seen = Some(now);
        let name = self.node.as_ref().map_or("", |n| n.name.as_str());
        info!(
            node = name,
            node_ip = %now.0.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
            pod_cidr = %now.1.map_or_else(|| "unknown".to_owned(), |cidr| cidr.to_string()),
            ip_family = "ipv4",
            "this node's addresses"
        );
    }

    fn apply_lb(&mut self, changes: &Changes, status: &mut Status) -> bool {
        match self.lb.reconcile_changes(self.services.state(), changes) {
            Ok(summary) => {
                self.removed_backends
                    .extend(summary.removed_backends.iter().copied());
                status.frontends = summary.frontends;
                status.backends = summary.backends;
                self.ops.programmed(
                    self.services.programmed_services(),
                    summary.frontends,
                    summary.backends,
                );
                self.ops
                    .lb_entries(summary.service_entries, summary.backends, summary.maglev_tables);
                debug!(
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
                self.failed("lb", map_reason(&e), format!("load balancer: {e}"));
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
        // Only UDP: a TCP flow ends by itself, and walking the whole NAT
        // table for each removed TCP backend made every endpoint change
        // cost milliseconds.
        self.removed_backends.retain(|b| b.proto == IPPROTO_UDP);
        if self.removed_backends.is_empty() {
            return true;
        }
        match self.masq.forget_udp_flows(&self.removed_backends) {
            Ok(0) => {}
            Ok(n) => info!(entries = n, "forgot UDP flows of removed backends"),
            Err(e) => {
                warn!(error = %e, "cannot clear UDP flows of removed backends; retrying");
                self.failed("udp_flows", map_reason(&e), format!("UDP flows: {e}"));
                return false;
            }
        }
        for backend in std::mem::take(&mut self.removed_backends) {
            if let Some(sockets) = &self.sockets {
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
            self.failed("routes", "unavailable", "node routes: no route table".to_owned());
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
                self.failed("routes", "netlink", format!("node routes: {e}"));
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
                self.failed("masquerade", map_reason(&e), format!("masquerade: {e}"));
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

/// Counts and logs the objects the desired state leaves out.
fn state_errors(ops: &Ops, errors: &[desired::ObjectError]) {
    for e in errors {
        warn!(error = %e, "skipping object");
        ops.object_skipped(e.object.kind);
    }
}

/// The `reason` label of a map error: `map_full` tells the operator which
/// setting to raise.
fn map_reason(e: &maps::Error) -> &'static str {
    match e {
        maps::Error::Full { .. } => "map_full",
        maps::Error::Map { .. } => "map_error",
        maps::Error::Missing(_) => "map_missing",
        maps::Error::Injected(_) => "injected",
    }
}

fn write_cni_config(state: &NodeState, node: &NodeOptions, status: &mut Status) -> std::io::Result<()> {
    let pod_cidr = state.local.as_ref().and_then(|local| local.pod_cidr);
    status.pod_cidr = pod_cidr.map(|c| c.to_string());
    let Some(pod_cidr) = pod_cidr else {
        // No podCIDR yet: no conflist, so the runtime creates no pods here.
        warn!(node = %node.name, "this node has no Node object with an IPv4 podCIDR yet");
        return Ok(());
    };
    match node.cni.write(pod_cidr) {
        Ok(true) => {
            info!(path = %node.cni.path().display(), %pod_cidr, "CNI config written");
            Ok(())
        }
        Ok(false) => Ok(()),
        Err(e) => {
            warn!(error = %e, path = %node.cni.path().display(), "cannot write CNI config; retrying");
            Err(e)
        }
    }
}
