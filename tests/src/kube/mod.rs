//! The Kubernetes objects the lab understands, read from ordinary YAML.
//!
//! `cargo xtask lab apply` takes what a user would `kubectl apply`:
//! Namespaces, Pods, Services, EndpointSlices and NetworkPolicy objects, in
//! multi-document files (and `kind: List`). [`Store`] is the lab's stand-in for
//! the API server: the objects as applied, with the defaults the API server
//! would fill in. What the controllers would add — pod IPs and conditions,
//! generated EndpointSlices ([`slices`]) — is derived from it when the
//! manifest directory is written.

pub mod pods;
pub mod slices;

/// The Kubernetes types the lab's objects are made of (the version weir builds
/// against), for users of this crate.
pub use k8s_openapi;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::pod::DEFAULT_NAMESPACE;

/// Label the API server puts on every Namespace (a NetworkPolicy selects
/// namespaces by it).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// One object of a kind the lab understands.
#[derive(Clone, Debug, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "a handful of objects per apply, moved once into the store"
)]
pub enum Object {
    /// A Namespace (cluster-scoped).
    Namespace(Namespace),
    /// A Pod: the lab creates it on its node with `weir-cni`.
    Pod(Pod),
    /// A Service.
    Service(Service),
    /// An EndpointSlice given explicitly (for Services without a selector).
    EndpointSlice(EndpointSlice),
    /// A NetworkPolicy (stored for the agent; not enforced yet).
    NetworkPolicy(NetworkPolicy),
}

/// The objects of the lab, keyed `namespace/name` (Namespaces: `name`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Store {
    /// Namespaces (`default` exists without being applied).
    pub namespaces: BTreeMap<String, Namespace>,
    /// Pods.
    pub pods: BTreeMap<String, Pod>,
    /// Services.
    pub services: BTreeMap<String, Service>,
    /// EndpointSlices applied as such (the generated ones are not stored).
    pub endpoint_slices: BTreeMap<String, EndpointSlice>,
    /// NetworkPolicy objects.
    pub network_policies: BTreeMap<String, NetworkPolicy>,
}

impl Object {
    /// `kind/namespace/name` for messages (`pod/demo/echo-a`).
    #[must_use]
    pub fn describe(&self) -> String {
        let (kind, meta) = self.kind_and_meta();
        match &meta.namespace {
            Some(namespace) => format!("{kind}/{namespace}/{}", meta.name.as_deref().unwrap_or("")),
            None => format!("{kind}/{}", meta.name.as_deref().unwrap_or("")),
        }
    }

    /// Namespaces, Pods, Services, EndpointSlices, NetworkPolicy objects: the
    /// order in which to apply them.
    #[must_use]
    pub fn rank(&self) -> u8 {
        match self {
            Object::Namespace(_) => 0,
            Object::Pod(_) => 1,
            Object::Service(_) => 2,
            Object::EndpointSlice(_) => 3,
            Object::NetworkPolicy(_) => 4,
        }
    }

    fn kind_and_meta(&self) -> (&'static str, &ObjectMeta) {
        match self {
            Object::Namespace(o) => ("namespace", &o.metadata),
            Object::Pod(o) => ("pod", &o.metadata),
            Object::Service(o) => ("service", &o.metadata),
            Object::EndpointSlice(o) => ("endpointslice", &o.metadata),
            Object::NetworkPolicy(o) => ("networkpolicy", &o.metadata),
        }
    }
}

impl Store {
    /// Whether Namespace `name` exists (`default` always does).
    #[must_use]
    pub fn has_namespace(&self, name: &str) -> bool {
        name == DEFAULT_NAMESPACE || self.namespaces.contains_key(name)
    }

    /// Creates or replaces `object` (as `kubectl apply` of a full object).
    pub fn apply(&mut self, object: Object) {
        match object {
            Object::Namespace(o) => insert(&mut self.namespaces, o, |o| &o.metadata),
            Object::Pod(o) => insert(&mut self.pods, o, |o| &o.metadata),
            Object::Service(o) => insert(&mut self.services, o, |o| &o.metadata),
            Object::EndpointSlice(o) => insert(&mut self.endpoint_slices, o, |o| &o.metadata),
            Object::NetworkPolicy(o) => insert(&mut self.network_policies, o, |o| &o.metadata),
        }
    }

    /// Removes the object `object` names; returns whether it existed.
    pub fn delete(&mut self, object: &Object) -> bool {
        let (_, meta) = object.kind_and_meta();
        let key = key_of(meta);
        match object {
            Object::Namespace(_) => self.namespaces.remove(&key).is_some(),
            Object::Pod(_) => self.pods.remove(&key).is_some(),
            Object::Service(_) => self.services.remove(&key).is_some(),
            Object::EndpointSlice(_) => self.endpoint_slices.remove(&key).is_some(),
            Object::NetworkPolicy(_) => self.network_policies.remove(&key).is_some(),
        }
    }
}

fn insert<T>(map: &mut BTreeMap<String, T>, object: T, meta: impl Fn(&T) -> &ObjectMeta) {
    let key = key_of(meta(&object));
    map.insert(key, object);
}

/// `namespace/name`, or `name` for cluster-scoped objects.
#[must_use]
pub fn key_of(meta: &ObjectMeta) -> String {
    let name = meta.name.as_deref().unwrap_or("");
    match &meta.namespace {
        Some(namespace) => format!("{namespace}/{name}"),
        None => name.to_owned(),
    }
}

/// Reads every object of `paths`: files, or directories (their `*.yaml`,
/// `*.yml` and `*.json`, in name order, not recursing).
pub fn read_paths(paths: &[PathBuf]) -> Result<Vec<Object>> {
    let mut objects = Vec::new();
    for path in paths {
        for file in manifest_files(path)? {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let parsed = parse_documents(&text).with_context(|| format!("in {}", file.display()))?;
            objects.extend(parsed);
        }
    }
    Ok(objects)
}

fn manifest_files(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).with_context(|| format!("listing {}", path.display()))? {
        let file = entry?.path();
        let manifest = file
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if manifest && file.is_file() {
            files.push(file);
        }
    }
    files.sort();
    Ok(files)
}

/// Parses a multi-document YAML text into objects, with the API server's
/// defaults (namespace `default`, protocol TCP, targetPort = port).
pub fn parse_documents(text: &str) -> Result<Vec<Object>> {
    let mut objects = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value =
            serde_yaml::Value::deserialize(document).with_context(|| format!("document {}", index + 1))?;
        if value.is_null() {
            continue;
        }
        add_value(value, &mut objects).with_context(|| format!("document {}", index + 1))?;
    }
    Ok(objects)
}

fn add_value(value: serde_yaml::Value, objects: &mut Vec<Object>) -> Result<()> {
    let field = |name: &str| {
        value
            .get(name)
            .and_then(serde_yaml::Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    let object = match (api_version.as_str(), kind.as_str()) {
        ("v1", "List") => {
            let items = value
                .get("items")
                .and_then(serde_yaml::Value::as_sequence)
                .cloned();
            for item in items.unwrap_or_default() {
                add_value(item, objects)?;
            }
            return Ok(());
        }
        ("v1", "Namespace") => Object::Namespace(typed(value)?),
        ("v1", "Pod") => Object::Pod(typed(value)?),
        ("v1", "Service") => Object::Service(typed(value)?),
        ("discovery.k8s.io/v1", "EndpointSlice") => Object::EndpointSlice(typed(value)?),
        ("networking.k8s.io/v1", "NetworkPolicy") => Object::NetworkPolicy(typed(value)?),
        (_, "") => bail!("not a Kubernetes object: no kind"),
        (api_version, kind) => bail!(
            "{api_version} {kind} is not something the lab runs \
             (it takes Namespaces, Pods, Services, EndpointSlices and NetworkPolicies)"
        ),
    };
    objects.push(defaulted(object)?);
    Ok(())
}

fn typed<T: serde::de::DeserializeOwned>(value: serde_yaml::Value) -> Result<T> {
    serde_yaml::from_value(value).context("invalid object")
}

/// Fills in what the API server defaults, and checks names.
fn defaulted(mut object: Object) -> Result<Object> {
    let namespaced = !matches!(object, Object::Namespace(_));
    let meta = match &mut object {
        Object::Namespace(o) => &mut o.metadata,
        Object::Pod(o) => &mut o.metadata,
        Object::Service(o) => &mut o.metadata,
        Object::EndpointSlice(o) => &mut o.metadata,
        Object::NetworkPolicy(o) => &mut o.metadata,
    };
    let Some(name) = meta.name.clone().filter(|name| !name.is_empty()) else {
        bail!("an object without metadata.name (generateName is not supported)");
    };
    if namespaced {
        let namespace = meta.namespace.get_or_insert_with(|| DEFAULT_NAMESPACE.to_owned());
        crate::pod::split_key(&format!("{namespace}/{name}"))?;
    } else {
        meta.namespace = None;
        crate::pod::split_key(&name)?;
    }
    match &mut object {
        Object::Namespace(namespace) => {
            namespace
                .metadata
                .labels
                .get_or_insert_default()
                .insert(NAMESPACE_NAME_LABEL.to_owned(), name);
        }
        Object::Service(service) => slices::default_service(service),
        Object::Pod(pod) => pods::default_pod(pod),
        Object::EndpointSlice(_) | Object::NetworkPolicy(_) => {}
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_lists_and_defaults() {
        let objects = parse_documents(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo, labels: {team: a}}\n---\n\
             apiVersion: v1\nkind: List\nitems:\n\
             - {apiVersion: v1, kind: Service, metadata: {name: s}, spec: {ports: [{port: 80}]}}\n---\n\
             apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: demo}\n\
             spec: {containers: [{name: c, ports: [{containerPort: 8080}]}]}\n",
        )
        .unwrap();
        assert_eq!(
            objects.iter().map(Object::describe).collect::<Vec<_>>(),
            ["namespace/demo", "service/default/s", "pod/demo/p"]
        );
        let Object::Namespace(namespace) = &objects[0] else {
            unreachable!()
        };
        let labels = namespace.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[NAMESPACE_NAME_LABEL], "demo");
        assert_eq!(labels["team"], "a");
        let Object::Service(service) = &objects[1] else {
            unreachable!()
        };
        let port = &service.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
        assert_eq!(port.protocol.as_deref(), Some("TCP"));
        assert_eq!(
            port.target_port,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(80))
        );
    }

    #[test]
    fn unknown_kinds_and_nameless_objects_are_errors() {
        let err =
            parse_documents("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n").unwrap_err();
        assert!(format!("{err:#}").contains("apps/v1 Deployment"), "{err:#}");
        assert!(
            parse_documents("apiVersion: v1\nkind: Pod\nmetadata: {}\nspec: {containers: []}\n").is_err()
        );
        assert!(parse_documents("apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name}\n").is_err());
    }

    #[test]
    fn the_store_applies_replaces_and_deletes() {
        let mut store = Store::default();
        let objects = parse_documents(
            "apiVersion: v1\nkind: Service\nmetadata: {name: s, labels: {v: '1'}}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {name: s, labels: {v: '2'}}\n",
        )
        .unwrap();
        for object in objects.clone() {
            store.apply(object);
        }
        assert_eq!(store.services.len(), 1);
        assert_eq!(
            store.services["default/s"].metadata.labels.as_ref().unwrap()["v"],
            "2"
        );
        assert!(store.delete(&objects[0]));
        assert!(!store.delete(&objects[0]));
        assert!(store.has_namespace("default") && !store.has_namespace("demo"));
    }
}
