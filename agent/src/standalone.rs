//! Standalone mode: the manifest directory is the source of truth. The loop
//! polls it, recomputes the desired state when it changes and reconciles;
//! a failed reconcile is retried on the next tick.

use std::future::Future;
use std::path::PathBuf;

use ipnetwork::Ipv4Network;
use std::time::Duration;

use tracing::{info, warn};

use crate::cni_config::CniConfig;
use crate::desired::{self, NodeState};
use crate::maps::{LbMaps, MasqMaps};
use crate::reconcile::{Reconciler, masq};
use crate::routes::{self, NetlinkRoutes};
use crate::source::{Objects, dir};
use crate::status::{self, Status};

/// Settings of the standalone loop.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory of Service / EndpointSlice / Node YAML.
    pub manifests: PathBuf,
    /// How often the directory is checked for changes.
    pub poll_interval: Duration,
    /// Where to write the status after each reconcile, if anywhere.
    pub status_file: Option<PathBuf>,
    /// Node-level plumbing (routes, CNI config); `None`: load balancing only.
    pub node: Option<NodeOptions>,
}

/// Which node this agent runs on and where its CNI config goes.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// `metadata.name` of this node's Node object.
    pub name: String,
    /// The CNI conflist to write once the podCIDR is known.
    pub cni: CniConfig,
    /// Masquerade pods of this cluster CIDR leaving the cluster to the node
    /// address; `None`: never masquerade.
    pub masquerade: Option<Ipv4Network>,
}

/// Runs until `shutdown` completes. Never gives up on errors: bad manifests
/// are reported and skipped, failed writes are retried.
pub async fn run<M: LbMaps>(
    options: &Options,
    reconciler: &mut Reconciler<M>,
    masq_maps: &mut impl MasqMaps,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut routes = match &options.node {
        Some(_) => match NetlinkRoutes::new() {
            Ok(table) => Some(table),
            Err(e) => {
                warn!(error = %e, "cannot manage node routes; pods on other nodes stay unreachable");
                None
            }
        },
        None => None,
    };
    let mut seen = None;
    let mut dirty = true;
    let mut status = Status::default();
    loop {
        match dir::fingerprint(&options.manifests) {
            Ok(now) if seen.as_ref() != Some(&now) => {
                seen = Some(now);
                dirty = true;
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "manifest directory unreadable; keeping the programmed state"),
        }
        if dirty && let Some(objects) = read(options) {
            let lb = apply_lb(options, &objects, reconciler, &mut status);
            let node = match (&options.node, routes.as_mut()) {
                (Some(node), Some(table)) => apply_node(&objects, node, table, masq_maps, &mut status).await,
                _ => true,
            };
            if lb && node {
                dirty = false;
                status.generation += 1;
                info!(generation = status.generation, "in sync with the manifests");
                if let Some(path) = &options.status_file
                    && let Err(e) = status::write(path, &status)
                {
                    warn!(error = %e, path = %path.display(), "cannot write status file");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(options.poll_interval) => {}
            () = &mut shutdown => return,
        }
    }
}

/// Reads the manifests, reporting documents that cannot be used.
fn read(options: &Options) -> Option<Objects> {
    match dir::read(&options.manifests) {
        Ok((objects, document_errors)) => {
            for e in &document_errors {
                warn!(error = %e, "skipping manifest document");
            }
            Some(objects)
        }
        Err(e) => {
            warn!(error = %e, "cannot read manifests; keeping the programmed state");
            None
        }
    }
}

/// Load balancing: Services + EndpointSlices → maps. Returns whether the maps
/// now match.
fn apply_lb<M: LbMaps>(
    options: &Options,
    objects: &Objects,
    reconciler: &mut Reconciler<M>,
    status: &mut Status,
) -> bool {
    let node_name = options.node.as_ref().map(|n| n.name.as_str());
    let (desired, object_errors) = desired::compute(&objects.services, &objects.slices, node_name);
    for e in &object_errors {
        warn!(error = %e, "skipping object");
    }
    match reconciler.reconcile(&desired) {
        Ok(summary) => {
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

/// Node plumbing: Nodes → routes to the other nodes' pods and this node's CNI
/// config. Returns whether both are in place.
async fn apply_node(
    objects: &Objects,
    node: &NodeOptions,
    table: &mut NetlinkRoutes,
    masq_maps: &mut impl MasqMaps,
    status: &mut Status,
) -> bool {
    let (state, object_errors) = desired::compute_nodes(&objects.nodes, &node.name);
    for e in &object_errors {
        warn!(error = %e, "skipping object");
    }
    let routes_ok = match routes::reconcile(table, &state.routes).await {
        Ok(summary) => {
            status.node_routes = summary.routes;
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
    };
    routes_ok && apply_masquerade(&state, node, masq_maps) && write_cni_config(&state, node, status)
}

fn apply_masquerade(state: &NodeState, node: &NodeOptions, maps: &mut impl MasqMaps) -> bool {
    let node_ip = state.local.as_ref().and_then(|local| local.internal_ip);
    let want = match node.masquerade {
        Some(cluster_cidr) => masq::desired(cluster_cidr, node_ip, &state.node_ips),
        None => masq::DesiredMasq::default(),
    };
    match masq::reconcile(maps, &want) {
        Ok(()) => true,
        Err(e) => {
            warn!(error = %e, "masquerade reconcile failed; retrying");
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
