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
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

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
        match self {
            Kind::Service => "services",
            Kind::EndpointSlice => "endpointslices",
            Kind::Pod => "pods",
            Kind::Node => "nodes",
            Kind::Namespace => "namespaces",
            Kind::NetworkPolicy => "networkpolicies",
        }
    }
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
            services: sorted(&self.services),
            slices: sorted(&self.slices),
            nodes: sorted(&self.nodes),
            pods: sorted(&self.pods),
            namespaces: sorted(&self.namespaces),
            network_policies: sorted(&self.network_policies),
        }
    }
}

fn sorted<K: kube::Resource<DynamicType = ()> + Clone>(store: &Store<K>) -> Vec<K> {
    let mut objects: Vec<K> = store.state().iter().map(|o| K::clone(o)).collect();
    objects.sort_by(|a, b| {
        let key = |o: &K| (o.meta().namespace.clone(), o.meta().name.clone());
        key(a).cmp(&key(b))
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
    let all = watcher::Config::default();
    let backoff = Backoff::new(Duration::from_millis(200), options.max_backoff);
    let follow = |kind| Follow {
        kind,
        updates: updates.clone(),
        backoff: backoff.clone(),
    };

    let (services, w) = reflector::store();
    tasks.push(tokio::spawn(follow(Kind::Service).run(
        Api::all(client.clone()),
        all.clone(),
        w,
    )));
    let (slices, w) = reflector::store();
    tasks.push(tokio::spawn(follow(Kind::EndpointSlice).run(
        Api::all(client.clone()),
        all.clone(),
        w,
    )));
    let (nodes, w) = reflector::store();
    tasks.push(tokio::spawn(follow(Kind::Node).run(
        Api::all(client.clone()),
        all.clone(),
        w,
    )));
    let (namespaces, w) = reflector::store();
    tasks.push(tokio::spawn(follow(Kind::Namespace).run(
        Api::all(client.clone()),
        all.clone(),
        w,
    )));
    let (network_policies, w) = reflector::store();
    tasks.push(tokio::spawn(follow(Kind::NetworkPolicy).run(
        Api::all(client.clone()),
        all.clone(),
        w,
    )));
    // Every node's pods: a NetworkPolicy peer is a pod anywhere, known by
    // its labels and IP (they are trimmed to that, see `Trim for Pod`).
    let (pods, w) = reflector::store();
    tasks.push(tokio::spawn(follow(Kind::Pod).run(
        Api::all(client.clone()),
        all.clone(),
        w,
    )));
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

/// One kind's watch loop.
struct Follow {
    kind: Kind,
    updates: mpsc::UnboundedSender<Update>,
    backoff: Backoff,
}

impl Follow {
    async fn run<K>(mut self, api: Api<K>, config: watcher::Config, mut writer: reflector::store::Writer<K>)
    where
        K: kube::Resource<DynamicType = ()> + Trim + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    {
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
