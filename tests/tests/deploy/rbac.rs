//! The RBAC objects: the rules equal what the code uses; the names line up.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use weir_agent::source::access;

use crate::manifests::{documents, find};

#[test]
fn the_cluster_role_grants_exactly_what_the_agent_uses() {
    let documents = documents();
    let role: ClusterRole = find(&documents, "ClusterRole", "weir-agent").parse();
    let mut granted = BTreeSet::new();
    for rule in role.rules.clone().unwrap_or_default() {
        assert!(
            rule.resource_names.is_none() && rule.non_resource_urls.is_none(),
            "unexpected rule shape: {rule:?}"
        );
        for group in rule.api_groups.unwrap_or_default() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    assert!(
                        verb != "*" && resource != "*" && group != "*",
                        "wildcard in {role:?}"
                    );
                    granted.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    let required: BTreeSet<(String, String, String)> = access::required()
        .into_iter()
        .flat_map(|a| {
            a.verbs
                .into_iter()
                .map(move |v| (a.group.to_owned(), a.resource.to_owned(), v.to_owned()))
        })
        .collect();
    let missing: Vec<_> = required.difference(&granted).collect();
    let extra: Vec<_> = granted.difference(&required).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "ClusterRole weir-agent differs from what the agent uses (agent/src/source/access.rs):\n  missing: {missing:?}\n  not used: {extra:?}"
    );
}

#[test]
fn the_service_account_binding_and_daemon_set_name_each_other() {
    let documents = documents();
    let account: ServiceAccount = find(&documents, "ServiceAccount", "weir-agent").parse();
    let namespace = account.metadata.namespace.clone().expect("a namespace");
    find(&documents, "Namespace", &namespace);
    let binding: ClusterRoleBinding = find(&documents, "ClusterRoleBinding", "weir-agent").parse();
    assert_eq!(
        (binding.role_ref.kind.as_str(), binding.role_ref.name.as_str()),
        ("ClusterRole", "weir-agent")
    );
    let subjects = binding.subjects.unwrap_or_default();
    assert_eq!(subjects.len(), 1);
    assert_eq!(
        (
            subjects[0].kind.as_str(),
            subjects[0].name.as_str(),
            subjects[0].namespace.as_deref()
        ),
        ("ServiceAccount", "weir-agent", Some(namespace.as_str()))
    );
    let daemon_set: DaemonSet = find(&documents, "DaemonSet", "weir-agent").parse();
    assert_eq!(daemon_set.metadata.namespace.as_deref(), Some(namespace.as_str()));
    let spec = daemon_set.spec;
    let pod = spec.template.spec.expect("a pod spec");
    assert_eq!(pod.service_account_name.as_deref(), Some("weir-agent"));
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.priority_class_name.as_deref(), Some("system-node-critical"));
    let tolerations = pod.tolerations.unwrap_or_default();
    assert!(
        tolerations
            .iter()
            .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none() && t.effect.is_none()),
        "the agent must tolerate every taint: {tolerations:?}"
    );
    let update = spec.update_strategy.expect("an update strategy");
    let max_unavailable = update.rolling_update.and_then(|r| r.max_unavailable);
    assert_eq!(
        max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    for container in &pod.containers {
        let security = container.security_context.clone().unwrap_or_default();
        assert_ne!(
            security.privileged,
            Some(true),
            "{} runs privileged",
            container.name
        );
    }
}
