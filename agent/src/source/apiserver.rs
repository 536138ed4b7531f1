//! Kubernetes source: one kube-rs watcher per kind on the API server, each
//! feeding a reflector store, and a stream of [`Update`]s telling the agent
//! loop when to take a new [`Objects`] snapshot.
//!
//! A watch that fails (the API server went away, a watch error, `410 Gone`
//! for an expired resourceVersion) is reported and started over after a
//! backoff with a fresh list, as client-go's reflector relists after an
//! error. Until that list completes the store keeps what it had, so the
//! agent keeps programming the last known state. Plain ends of a watch (its
//! `timeoutSeconds` ran out) are no failure: the watcher resumes from its
//! last resourceVersion by itself.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};

use super::slim::{EndpointSlice, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::access::{Access, READ};
use super::{Objects, Trim};
use crate::backoff::Backoff;

/// The kinds the agent watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// core/v1 Services.
    Service,
    /// discovery.k8s.io/v1 EndpointSlices.
    EndpointSlice,
    /// core/v1 Pods (of every node).
    Pod,
    /// core/v1 Nodes.
    Node,
    /// core/v1 Namespaces.
    Namespace,
    /// networking.k8s.io/v1 `NetworkPolicies`.
    NetworkPolicy,
}

impl Kind {
    /// Every kind, in the order they are started.
    pub const ALL: [Kind; 6] = [
        Kind::Node,
        Kind::Namespace,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Pod,
        Kind::NetworkPolicy,
    ];

    /// The resource's plural name, as in API paths and metric labels.
    #[must_use]
    pub fn resource(self) -> &'static str {
        self.access().resource
    }

    /// The API access watching this kind needs: read access to the
    /// resource of the type its watcher follows (see [`Watched`]).
    #[must_use]
    pub fn access(self) -> Access {
        match self {
            Kind::Service => Access::of::<Service>(&READ),
            Kind::EndpointSlice => Access::of::<EndpointSlice>(&READ),
            Kind::Pod => Access::of::<Pod>(&READ),
            Kind::Node => Access::of::<Node>(&READ),
            Kind::Namespace => Access::of::<Namespace>(&READ),
            Kind::NetworkPolicy => Access::of::<NetworkPolicy>(&READ),
        }
    }
}

/// An object type the agent watches, bound to its [`Kind`]: a watcher is
/// started per type ([`start`]) and reports under `KIND`, whose
/// [`Kind::access`] names the same type — so the RBAC rules derived from
/// [`Kind::ALL`] cover exactly what is watched.
pub trait Watched:
    kube::Resource<DynamicType = ()>
    + k8s_openapi::Resource
    + Trim
    + Clone
    + Debug
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The kind this type is watched as.
    const KIND: Kind;
}

impl Watched for Service {
    const KIND: Kind = Kind::Service;
}
impl Watched for EndpointSlice {
    const KIND: Kind = Kind::EndpointSlice;
}
impl Watched for Pod {
    const KIND: Kind = Kind::Pod;
}
impl Watched for Node {
    const KIND: Kind = Kind::Node;
}
impl Watched for Namespace {
    const KIND: Kind = Kind::Namespace;
}
impl Watched for NetworkPolicy {
    const KIND: Kind = Kind::NetworkPolicy;
}

/// What a watcher tells the agent loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// An object of `kind` was added, changed or deleted at `seen`.
    Changed {
        /// The kind.
        kind: Kind,
        /// When the event arrived (programming latency starts here).
        seen: Instant,
    },
    /// A complete list of `kind` is in its store (first list, or a relist
    /// after a failure; either may have changed anything).
    Listed {
        /// The kind.
        kind: Kind,
        /// When the list completed.
        seen: Instant,
    },
    /// The watch of `kind` failed; it starts over after a backoff, and the
    /// store keeps its last state until then.
    Failed {
        /// The kind.
        kind: Kind,
        /// Why, for the log.
        error: String,
    },
}

/// How the watches are set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// This node's name (its pods are the policy endpoints).
    pub node_name: Option<String>,
    /// Longest wait before a failed watch starts over.
    pub max_backoff: Duration,
}

/// The reflector stores of every kind; reading them never blocks a watch.
#[derive(Clone)]
pub struct Stores {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    namespaces: Store<Namespace>,
    network_policies: Store<NetworkPolicy>,
}

impl Stores {
    /// A copy of every store's objects, in `namespace/name` order so a
    /// snapshot does not depend on hash order.
    #[must_use]
    pub fn snapshot(&self) -> Objects {
        Objects {
            services: shared(&self.services),
            slices: shared(&self.slices),
            nodes: shared(&self.nodes),
            pods: shared(&self.pods),
            namespaces: shared(&self.namespaces),
            network_policies: shared(&self.network_policies),
        }
    }
}

/// The store's objects themselves: the reflector replaces an object's `Arc`
/// when it changes, so an unchanged object is the same `Arc` as last time.
fn shared<K: kube::Resource<DynamicType = ()> + Clone>(store: &Store<K>) -> Vec<Arc<K>> {
    let mut objects = store.state();
    objects.sort_by(|a, b| {
        let (a, b) = (a.meta(), b.meta());
        (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name))
    });
    objects
}

/// The running watches; dropping this stops them.
pub struct Watches {
    /// The stores they fill.
    pub stores: Stores,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Watches {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts a watch of every kind. Must be called inside a tokio runtime.
#[must_use]
pub fn start(client: &Client, options: &Options, updates: &mpsc::UnboundedSender<Update>) -> Watches {
    let mut tasks = Vec::new();
    let spawner = Spawner {
        client: client.clone(),
        updates: updates.clone(),
        backoff: Backoff::new(Duration::from_millis(200), options.max_backoff),
    };
    // Each store's type picks the watch (and so its kind and RBAC rule).
    let services = spawner.spawn(&mut tasks);
    let slices = spawner.spawn(&mut tasks);
    let nodes = spawner.spawn(&mut tasks);
    let namespaces = spawner.spawn(&mut tasks);
    let network_policies = spawner.spawn(&mut tasks);
    // Every node's pods: a NetworkPolicy peer is a pod anywhere, known by
    // its labels and IP (they are trimmed to that, see `Trim for Pod`).
    let pods = spawner.spawn(&mut tasks);
    Watches {
        stores: Stores {
            services,
            slices,
            pods,
            nodes,
            namespaces,
            network_policies,
        },
        tasks,
    }
}

/// Starts watches, one type at a time.
struct Spawner {
    client: Client,
    updates: mpsc::UnboundedSender<Update>,
    backoff: Backoff,
}

impl Spawner {
    /// Starts the watch of every `K` in the cluster; returns its store.
    fn spawn<K: Watched>(&self, tasks: &mut Vec<JoinHandle<()>>) -> Store<K> {
        let (store, writer) = reflector::store();
        let follow = Follow {
            kind: <K as Watched>::KIND,
            updates: self.updates.clone(),
            backoff: self.backoff.clone(),
        };
        tasks.push(tokio::spawn(follow.run(
            Api::all(self.client.clone()),
            watcher::Config::default(),
            writer,
        )));
        store
    }
}

/// One kind's watch loop.
struct Follow {
    kind: Kind,
    updates: mpsc::UnboundedSender<Update>,
    backoff: Backoff,
}

impl Follow {
    async fn run<K: Watched>(
        mut self,
        api: Api<K>,
        config: watcher::Config,
        mut writer: reflector::store::Writer<K>,
    ) {
        loop {
            let mut stream = std::pin::pin!(watcher(api.clone(), config.clone()));
            while let Some(item) = stream.next().await {
                let update = match item {
                    Ok(event) => {
                        let event = event.modify(Trim::trim);
                        writer.apply_watcher_event(&event);
                        let seen = Instant::now();
                        match event {
                            watcher::Event::Apply(_) | watcher::Event::Delete(_) => Some(Update::Changed {
                                kind: self.kind,
                                seen,
                            }),
                            watcher::Event::InitDone => {
                                self.backoff.reset();
                                Some(Update::Listed {
                                    kind: self.kind,
                                    seen,
                                })
                            }
                            watcher::Event::Init | watcher::Event::InitApply(_) => None,
                        }
                    }
                    Err(e) => Some(Update::Failed {
                        kind: self.kind,
                        error: e.to_string(),
                    }),
                };
                let failed = matches!(update, Some(Update::Failed { .. }));
                if let Some(update) = update
                    && self.updates.send(update).is_err()
                {
                    return; // The agent loop is gone.
                }
                if failed {
                    break;
                }
            }
            tokio::time::sleep(self.backoff.next_delay()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound<K: Watched>() -> (Kind, &'static str) {
        (
            <K as Watched>::KIND,
            <K as k8s_openapi::Resource>::URL_PATH_SEGMENT,
        )
    }

    #[test]
    fn every_kind_is_bound_to_the_type_its_access_names() {
        let bound = [
            bound::<Service>(),
            bound::<EndpointSlice>(),
            bound::<Pod>(),
            bound::<Node>(),
            bound::<Namespace>(),
            bound::<NetworkPolicy>(),
        ];
        for kind in Kind::ALL {
            let (_, resource) = bound
                .iter()
                .find(|(k, _)| *k == kind)
                .unwrap_or_else(|| panic!("{kind:?} has no watched type"));
            assert_eq!(kind.resource(), *resource);
        }
        assert_eq!(bound.len(), Kind::ALL.len());
    }
}
