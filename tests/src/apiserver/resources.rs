//! The resources the stand-in serves, with the per-resource behaviour of the
//! real registry that clients can observe (scope, status subresource, what
//! create does to `status`, whether PUT may create).

use serde_json::{Value, json};

/// What create does to a status the client sent, as each real registry
/// strategy's `PrepareForCreate` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateStatus {
    /// No status subresource: the object is stored as sent.
    Keep,
    /// Status comes from the status subresource only: replaced by this value.
    Reset(&'static str),
}

/// One resource type: `group/version`, plural, kind, scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// API group (`""` for core).
    pub group: &'static str,
    /// Version (`v1`).
    pub version: &'static str,
    /// Plural, as in paths (`services`).
    pub plural: &'static str,
    /// Singular name (`service`).
    pub singular: &'static str,
    /// Kind (`Service`).
    pub kind: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Whether `status` is a subresource (writes to the main resource then
    /// leave status alone, and `…/status` writes change only status).
    pub status_subresource: bool,
    /// What create does to status.
    pub create_status: CreateStatus,
    /// Whether PUT of a missing object creates it (`AllowCreateOnUpdate`).
    pub create_on_update: bool,
    /// Short names in discovery (`svc`).
    pub short_names: &'static [&'static str],
}

const fn core(plural: &'static str, singular: &'static str, kind: &'static str) -> ResourceType {
    ResourceType {
        group: "",
        version: "v1",
        plural,
        singular,
        kind,
        namespaced: true,
        status_subresource: false,
        create_status: CreateStatus::Keep,
        create_on_update: false,
        short_names: &[],
    }
}

/// Every resource served.
pub const RESOURCES: &[ResourceType] = &[
    ResourceType {
        status_subresource: true,
        create_status: CreateStatus::Reset(r#"{"loadBalancer":{}}"#),
        short_names: &["svc"],
        ..core("services", "service", "Service")
    },
    ResourceType {
        status_subresource: true,
        create_status: CreateStatus::Reset(r#"{"phase":"Pending"}"#),
        short_names: &["po"],
        ..core("pods", "pod", "Pod")
    },
    ResourceType {
        namespaced: false,
        status_subresource: true,
        // Kubelets create their Node with its status.
        short_names: &["no"],
        ..core("nodes", "node", "Node")
    },
    ResourceType {
        namespaced: false,
        status_subresource: true,
        create_status: CreateStatus::Reset(r#"{"phase":"Active"}"#),
        short_names: &["ns"],
        ..core("namespaces", "namespace", "Namespace")
    },
    ResourceType {
        create_on_update: true,
        short_names: &["ev"],
        ..core("events", "event", "Event")
    },
    ResourceType {
        group: "discovery.k8s.io",
        create_on_update: true,
        ..core("endpointslices", "endpointslice", "EndpointSlice")
    },
    ResourceType {
        group: "networking.k8s.io",
        short_names: &["netpol"],
        ..core("networkpolicies", "networkpolicy", "NetworkPolicy")
    },
    ResourceType {
        group: "events.k8s.io",
        create_on_update: true,
        short_names: &["ev"],
        ..core("events", "event", "Event")
    },
];

impl ResourceType {
    /// `v1` or `group/v1`, as in `apiVersion`.
    #[must_use]
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `services` or `endpointslices.discovery.k8s.io`, as in messages.
    #[must_use]
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The base path of the group/version (`/api/v1`, `/apis/g/v1`).
    #[must_use]
    pub fn base_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// The path of the collection in `namespace` (all namespaces, or
    /// cluster-scoped, with `None`).
    #[must_use]
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(namespace) if self.namespaced => {
                format!("{}/namespaces/{namespace}/{}", self.base_path(), self.plural)
            }
            _ => format!("{}/{}", self.base_path(), self.plural),
        }
    }

    /// The status a create leaves, if it replaces the one sent.
    #[must_use]
    pub fn status_on_create(&self) -> Option<Value> {
        match self.create_status {
            CreateStatus::Keep => None,
            CreateStatus::Reset(json) => serde_json::from_str(json).ok(),
        }
    }

    /// The `APIResource` entry in discovery.
    #[must_use]
    pub fn discovery_entries(&self) -> Vec<Value> {
        let mut entries = vec![json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            "shortNames": self.short_names,
        })];
        if self.status_subresource {
            entries.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        entries
    }
}

/// The resource at `group`/`version`/`plural`.
#[must_use]
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|resource| resource.group == group && resource.version == version && resource.plural == plural)
}

/// The resource of objects with `apiVersion` and `kind`.
#[must_use]
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|resource| resource.api_version() == api_version && resource.kind == kind)
}

/// The resource a person names as kubectl would: kind, plural, singular or
/// short name, case-insensitive, optionally `.group` qualified
/// (`Service`, `svc`, `endpointslices.discovery.k8s.io`). Core wins ties.
#[must_use]
pub fn by_name(name: &str) -> Option<&'static ResourceType> {
    let lower = name.to_ascii_lowercase();
    let (bare, group) = lower.split_once('.').unwrap_or((&lower, ""));
    RESOURCES.iter().find(|resource| {
        (group.is_empty() || resource.group == group)
            && (resource.plural == bare
                || resource.singular == bare
                || resource.kind.eq_ignore_ascii_case(bare)
                || resource.short_names.contains(&bare))
    })
}

/// The groups other than core, each once, in table order.
#[must_use]
pub fn groups() -> Vec<&'static str> {
    let mut groups: Vec<&'static str> = Vec::new();
    for resource in RESOURCES {
        if !resource.group.is_empty() && !groups.contains(&resource.group) {
            groups.push(resource.group);
        }
    }
    groups
}
