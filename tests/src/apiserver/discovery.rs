//! The discovery documents (`/api`, `/apis`, `/api/v1`, `/apis/g/v`,
//! `/version`) in their unaggregated form, which is what a client gets when it
//! does not ask for `application/json;g=apidiscovery.k8s.io`.

use serde_json::{Value, json};

use super::resources::{RESOURCES, groups};

/// `/version`: a plausible Kubernetes version, flagged as the stand-in.
#[must_use]
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "35",
        "gitVersion": "v1.35.0-weir-apiserver",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "none",
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}

/// `/api`: the core group's versions.
#[must_use]
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group(name: &str) -> Value {
    let group_version = format!("{name}/v1");
    json!({
        "name": name,
        "versions": [{"groupVersion": group_version, "version": "v1"}],
        "preferredVersion": {"groupVersion": group_version, "version": "v1"},
    })
}

/// `/apis`: every named group.
#[must_use]
pub fn api_group_list() -> Value {
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": groups().into_iter().map(group).collect::<Vec<_>>(),
    })
}

/// `/apis/{group}`, if the group is served.
#[must_use]
pub fn api_group(name: &str) -> Option<Value> {
    groups().contains(&name).then(|| {
        let mut document = group(name);
        document["kind"] = json!("APIGroup");
        document["apiVersion"] = json!("v1");
        document
    })
}

/// `/api/v1` or `/apis/{group}/{version}`, if served.
#[must_use]
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|resource| resource.group == group && resource.version == version)
        .flat_map(super::resources::ResourceType::discovery_entries)
        .collect();
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}
