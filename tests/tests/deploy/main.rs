//! The deployment in `deploy/` checked against the code, without a cluster
//! (plain `cargo test`, no root):
//!
//! - every manifest parses as its Kubernetes type (k8s-openapi) and says
//!   nothing that type does not know (a misspelt field would be dropped
//!   silently by the API server's decoder);
//! - the `ClusterRole` grants exactly what the agent's watchers and Event
//!   recorder use — the set derived from their types in
//!   `weir_agent::source::access`, not a second list;
//! - the ConfigMap's configuration, with the DaemonSet's flags and
//!   environment, passes the agent's own loader, and its ports and paths
//!   match the probes, annotations and mounts;
//! - the image build file copies binaries the workspace builds, and the
//!   manifests run only binaries the image has.

mod config;
mod image;
mod manifests;
mod rbac;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};

use crate::manifests::{deploy_dir, documents};

#[test]
fn every_manifest_parses_as_its_kubernetes_type() {
    let documents = documents();
    let mut kinds = BTreeMap::<&str, usize>::new();
    for document in &documents {
        match document.kind() {
            "Namespace" => drop(document.parse::<Namespace>()),
            "ServiceAccount" => drop(document.parse::<ServiceAccount>()),
            "ClusterRole" => drop(document.parse::<ClusterRole>()),
            "ClusterRoleBinding" => drop(document.parse::<ClusterRoleBinding>()),
            "ConfigMap" => drop(document.parse::<ConfigMap>()),
            "DaemonSet" => drop(document.parse::<DaemonSet>()),
            other => panic!("{}: unexpected kind {other:?}", document.file.display()),
        }
        *kinds.entry(document.kind()).or_default() += 1;
    }
    let expected = BTreeMap::from([
        ("ClusterRole", 1),
        ("ClusterRoleBinding", 1),
        ("ConfigMap", 1),
        // The agent, and the uninstall step's cleanup.
        ("DaemonSet", 2),
        ("Namespace", 1),
        ("ServiceAccount", 1),
    ]);
    assert_eq!(kinds, expected);
}

#[test]
fn the_kustomization_lists_every_manifest_but_the_uninstall_step() {
    let text = std::fs::read_to_string(deploy_dir().join("kustomization.yaml")).expect("kustomization.yaml");
    let kustomization: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    let files: BTreeSet<String> = std::fs::read_dir(deploy_dir())
        .expect("deploy/")
        .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
        .filter(|n| Path::new(n).extension().is_some_and(|e| e == "yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, files);
}
