//! `apply` and `delete` of Kubernetes objects on a cluster: the lab's API
//! server, scheduler, kubelet and EndpointSlice controller in one pass.
//!
//! The stored objects ([`Store`]) are the desired state. Pods are made real
//! first — a new pod is created with its node's conflist and gets a server per
//! declared port, a pod whose spec changed is deleted (CNI DEL) and created
//! again, a pod that went away is deleted — and then the manifest directory
//! is rewritten from the store: every object with what the controllers would
//! add (pod IPs and conditions, generated EndpointSlices). Only files whose
//! content changed are written, so an unchanged apply leaves the agents idle.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail, ensure};
use serde::Serialize;

use super::Cluster;
use crate::kube::pods::{self, ServedPort};
use crate::kube::{Object, Store, key_of, slices};

/// What happened to one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// `kind/namespace/name`.
    pub object: String,
    /// `created`, `configured`, `recreated`, `unchanged`, `deleted`,
    /// `not found` or, for EndpointSlices the lab derives, `generated`.
    pub action: &'static str,
    /// Where a pod runs and its IP, a generated slice's endpoints, ….
    pub detail: String,
}

/// The outcome of an apply or delete.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    /// One entry per object named, then one per generated EndpointSlice
    /// written or removed.
    pub changes: Vec<Change>,
    /// Whether any file of the manifest directory changed (the agents
    /// reconcile then).
    pub manifests_changed: bool,
}

impl Cluster {
    /// Creates or updates `objects`, like `kubectl apply`. Checks everything
    /// first (namespaces exist, pods fit a node, ports are TCP/UDP); an
    /// invalid set changes nothing.
    pub fn apply(&mut self, mut objects: Vec<Object>) -> Result<Applied> {
        // Namespaces first, then what runs in them, then what points at that
        // (the order `kubectl` users expect to read; the result is the same).
        objects.sort_by_key(Object::rank);
        let nodes = self.node_names();
        let mut desired = self.objects.clone();
        let mut changes = Vec::new();
        for mut object in objects {
            if let Object::Pod(pod) = &mut object {
                pods::schedule(pod, &nodes)?;
            }
            let before = lookup(&desired, &object);
            let action = match (&before, &object) {
                (None, _) => "created",
                (Some(Object::Pod(old)), Object::Pod(new)) if pods::needs_recreate(old, new) => "recreated",
                (Some(old), new) if old == new => "unchanged",
                (Some(_), _) => "configured",
            };
            changes.push(Change {
                object: object.describe(),
                action,
                detail: String::new(),
            });
            desired.apply(object);
        }
        self.converge(desired, changes)
    }

    /// Deletes `objects` (by kind, namespace and name), like `kubectl delete`.
    /// Deleting a Namespace deletes what is in it.
    pub fn delete(&mut self, objects: &[Object]) -> Result<Applied> {
        let mut desired = self.objects.clone();
        let mut changes = Vec::new();
        for object in objects {
            let action = if desired.delete(object) {
                "deleted"
            } else {
                "not found"
            };
            changes.push(Change {
                object: object.describe(),
                action,
                detail: String::new(),
            });
        }
        // Namespaces that remain: what is in the others goes with them.
        let namespaces: BTreeSet<String> = desired.namespaces.keys().cloned().collect();
        let kept = |key: &String| {
            let namespace = key.split('/').next().unwrap_or_default();
            namespace == crate::pod::DEFAULT_NAMESPACE || namespaces.contains(namespace)
        };
        let orphans: Vec<String> = desired.pods.keys().filter(|key| !kept(key)).cloned().collect();
        for key in orphans {
            desired.pods.remove(&key);
            changes.push(Change {
                object: format!("pod/{key}"),
                action: "deleted",
                detail: "with its namespace".to_owned(),
            });
        }
        desired.services.retain(|key, _| kept(key));
        desired.endpoint_slices.retain(|key, _| kept(key));
        desired.network_policies.retain(|key, _| kept(key));
        self.converge(desired, changes)
    }

    /// Makes pods and manifests match `desired`.
    fn converge(&mut self, desired: Store, mut changes: Vec<Change>) -> Result<Applied> {
        validate(&desired)?;
        // Pods that go, or go and come back: deleted first, so a recreated pod
        // may land on the same name (and its old IP is free again).
        let old_pods = self.objects.pods.clone();
        for (key, old) in &old_pods {
            let keep = desired
                .pods
                .get(key)
                .is_some_and(|new| !pods::needs_recreate(old, new));
            if !keep {
                let removed = self.remove_pod(key);
                self.objects.pods.remove(key);
                self.save()?;
                removed?;
            }
        }
        for (key, pod) in &desired.pods {
            if self.objects.pods.contains_key(key) {
                continue;
            }
            let plan = pods::plan(pod)?;
            if self.find_pod(key).is_some() {
                bail!("pod {key} runs already, but was not created by apply");
            }
            let ip = self.add_pod(&plan.node, key)?.ip;
            self.objects.pods.insert(key.clone(), pod.clone());
            self.save()?;
            for port in &plan.ports {
                self.serve(key, port.port, port.protocol)?;
            }
            if let Some(change) = changes
                .iter_mut()
                .rev()
                .find(|c| c.object == format!("pod/{key}"))
            {
                change.detail = format!("on {} as {ip}{}", plan.node, serving(&plan.ports));
            }
        }
        self.objects = desired;
        let manifests_changed = self.write_manifests(&mut changes)?;
        self.save()?;
        Ok(Applied {
            changes,
            manifests_changed,
        })
    }

    /// The applied pods that run, as their kubelet reports them (IP, host IP,
    /// Ready condition).
    #[must_use]
    pub fn observed_pods(&self) -> Vec<k8s_openapi::api::core::v1::Pod> {
        let mut observed = Vec::new();
        for (key, pod) in &self.objects.pods {
            let Some((node, running)) = self.find_pod(key) else {
                continue;
            };
            let Some(host_ip) = node.address else { continue };
            observed.push(pods::observed(pod, host_ip, running.ip));
        }
        observed
    }

    /// Every EndpointSlice the agents read: the applied ones, then those
    /// generated for Services with a selector.
    #[must_use]
    pub fn endpoint_slices(&self) -> Vec<k8s_openapi::api::discovery::v1::EndpointSlice> {
        let observed = self.observed_pods();
        let mut all: Vec<_> = self.objects.endpoint_slices.values().cloned().collect();
        for service in self.objects.services.values() {
            all.extend(slices::endpoint_slices(service, &observed));
        }
        all
    }

    /// Writes the manifest directory from the store; returns whether a file
    /// changed. Generated EndpointSlices are reported in `changes`.
    fn write_manifests(&self, changes: &mut Vec<Change>) -> Result<bool> {
        let mut files: BTreeMap<String, String> = BTreeMap::new();
        let mut generated: BTreeMap<String, String> = BTreeMap::new();
        let default_namespace = default_namespace();
        let namespaces = std::iter::once(&default_namespace).chain(self.objects.namespaces.values());
        for namespace in namespaces {
            add_file(&mut files, "namespace", &key_of(&namespace.metadata), namespace)?;
        }
        let observed = self.observed_pods();
        for pod in &observed {
            add_file(&mut files, "pod", &key_of(&pod.metadata), pod)?;
        }
        for (key, slice) in &self.objects.endpoint_slices {
            add_file(&mut files, "endpointslice", key, slice)?;
        }
        for service in self.objects.services.values() {
            for slice in slices::endpoint_slices(service, &observed) {
                let key = key_of(&slice.metadata);
                generated.insert(format!("endpointslice/{key}"), describe_slice(&slice));
                add_file(&mut files, "endpointslice", &key, &slice)?;
            }
        }
        for (key, service) in &self.objects.services {
            add_file(&mut files, "service", key, service)?;
        }
        for (key, policy) in &self.objects.network_policies {
            add_file(&mut files, "networkpolicy", key, policy)?;
        }

        let existing: BTreeSet<String> = self.manifests.list()?.into_iter().collect();
        let mut rewritten = false;
        // New and changed files first, so a Service never lacks its slices
        // longer than needed; then what went away.
        for (name, text) in &files {
            if self.manifests.read(name).as_deref() == Some(text.as_str()) {
                continue;
            }
            self.manifests.write(name, text)?;
            rewritten = true;
            if let Some((object, detail)) = generated.iter().find(|(object, _)| file_name_of(object) == *name)
            {
                changes.push(Change {
                    object: object.clone(),
                    action: "generated",
                    detail: detail.clone(),
                });
            }
        }
        for name in existing {
            // Node objects are the cluster's, not the store's.
            if files.contains_key(&name) || name.starts_with("node_") {
                continue;
            }
            self.manifests.remove(&name)?;
            rewritten = true;
            if let Some(object) = name.strip_prefix("endpointslice_") {
                let object = object.trim_end_matches(".yaml").replacen('_', "/", 1);
                if !self.objects.endpoint_slices.contains_key(&object) {
                    changes.push(Change {
                        object: format!("endpointslice/{object}"),
                        action: "deleted",
                        detail: "(it was generated; nothing needs it now)".to_owned(),
                    });
                }
            }
        }
        Ok(rewritten)
    }
}

/// The stored object `object` names, if any.
fn lookup(store: &Store, object: &Object) -> Option<Object> {
    let key = |meta| key_of(meta);
    match object {
        Object::Namespace(o) => store
            .namespaces
            .get(&key(&o.metadata))
            .cloned()
            .map(Object::Namespace),
        Object::Pod(o) => store.pods.get(&key(&o.metadata)).cloned().map(Object::Pod),
        Object::Service(o) => store
            .services
            .get(&key(&o.metadata))
            .cloned()
            .map(Object::Service),
        Object::EndpointSlice(o) => store
            .endpoint_slices
            .get(&key(&o.metadata))
            .cloned()
            .map(Object::EndpointSlice),
        Object::NetworkPolicy(o) => store
            .network_policies
            .get(&key(&o.metadata))
            .cloned()
            .map(Object::NetworkPolicy),
    }
}

/// Every namespaced object's namespace exists; every pod can be run.
fn validate(store: &Store) -> Result<()> {
    let keys = store
        .pods
        .keys()
        .chain(store.services.keys())
        .chain(store.endpoint_slices.keys())
        .chain(store.network_policies.keys());
    for key in keys {
        let namespace = key.split('/').next().unwrap_or_default();
        ensure!(
            store.has_namespace(namespace),
            "{key}: namespace {namespace:?} does not exist (apply a Namespace first)"
        );
    }
    for pod in store.pods.values() {
        pods::plan(pod)?;
    }
    Ok(())
}

/// The `default` Namespace, which every cluster has.
fn default_namespace() -> k8s_openapi::api::core::v1::Namespace {
    let mut namespace = k8s_openapi::api::core::v1::Namespace::default();
    namespace.metadata.name = Some("default".to_owned());
    namespace.metadata.labels = Some(BTreeMap::from([(
        crate::kube::NAMESPACE_NAME_LABEL.to_owned(),
        "default".to_owned(),
    )]));
    namespace
}

/// `kind_namespace_name.yaml` ('_' never occurs in Kubernetes names).
fn file_name(kind: &str, key: &str) -> String {
    format!("{kind}_{}.yaml", key.replace('/', "_"))
}

/// The file of `kind/namespace/name`.
fn file_name_of(object: &str) -> String {
    let (kind, key) = object.split_once('/').unwrap_or((object, ""));
    file_name(kind, key)
}

fn add_file(
    files: &mut BTreeMap<String, String>,
    kind: &str,
    key: &str,
    object: &impl Serialize,
) -> Result<()> {
    files.insert(file_name(kind, key), serde_yaml::to_string(object)?);
    Ok(())
}

/// ` serving http 8080/tcp, 53/udp`, or nothing.
fn serving(ports: &[ServedPort]) -> String {
    if ports.is_empty() {
        return String::new();
    }
    let list: Vec<String> = ports
        .iter()
        .map(|p| match &p.name {
            Some(name) => format!("{name} {}/{}", p.port, p.protocol),
            None => format!("{}/{}", p.port, p.protocol),
        })
        .collect();
    format!(", serving {}", list.join(", "))
}

/// `2 endpoints (2 ready) → http 8080/TCP`.
fn describe_slice(slice: &k8s_openapi::api::discovery::v1::EndpointSlice) -> String {
    let endpoints = slice.endpoints.as_deref().unwrap_or_default();
    let ready = endpoints
        .iter()
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .count();
    let ports: Vec<String> = slice
        .ports
        .iter()
        .flatten()
        .map(|p| {
            format!(
                "{} {}/{}",
                p.name.as_deref().filter(|n| !n.is_empty()).unwrap_or("(unnamed)"),
                p.port.unwrap_or(0),
                p.protocol.as_deref().unwrap_or("TCP")
            )
        })
        .collect();
    let ports = if ports.is_empty() {
        "no ports".to_owned()
    } else {
        ports.join(", ")
    };
    format!("{} endpoint(s), {ready} ready → {ports}", endpoints.len())
}
