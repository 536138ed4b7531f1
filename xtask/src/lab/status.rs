//! `cargo xtask lab status`: the nodes and their agents, the pods, the
//! Services and how many endpoints back them.

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::{Value, json};
use weir_tests::kube::k8s_openapi::api::core::v1::Service;
use weir_tests::kube::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weir_tests::{Access, Cluster, EXTERNAL_ADDRESS, kube};

use super::Output;

/// Prints the lab's status.
pub fn run(output: Output) -> Result<()> {
    let cluster = Cluster::attach_persistent_lab(Access::Read)?;
    match output {
        Output::Text => print_text(&cluster),
        Output::Json => println!("{}", to_json(&cluster)),
    }
    Ok(())
}

/// `http 80/TCP → http`, per Service port.
fn ports(service: &Service) -> Vec<String> {
    let ports = service
        .spec
        .as_ref()
        .and_then(|spec| spec.ports.clone())
        .unwrap_or_default();
    ports
        .iter()
        .map(|port| {
            let target = port
                .target_port
                .as_ref()
                .map_or_else(String::new, |target| match target {
                    IntOrString::Int(number) => number.to_string(),
                    IntOrString::String(name) => name.clone(),
                });
            format!(
                "{} {}/{} → {target}",
                port.name.as_deref().unwrap_or("-"),
                port.port,
                port.protocol.as_deref().unwrap_or("TCP")
            )
        })
        .collect()
}

/// Ready endpoints per Service key, over every slice the agents read.
fn ready_endpoints(cluster: &Cluster) -> BTreeMap<String, (usize, usize)> {
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for slice in cluster.endpoint_slices() {
        let Some(service) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(kube::slices::SERVICE_NAME_LABEL))
        else {
            continue;
        };
        let namespace = slice.metadata.namespace.clone().unwrap_or_default();
        let entry = counts.entry(format!("{namespace}/{service}")).or_default();
        for endpoint in slice.endpoints.iter().flatten() {
            entry.1 += 1;
            if endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(true) {
                entry.0 += 1;
            }
        }
    }
    counts
}

fn print_text(cluster: &Cluster) {
    println!("\nweir lab: {} node(s)\n", cluster.nodes().len());
    println!("  node      address        podCIDR          agent  gen  frontends  backends  routes");
    for node in cluster.nodes() {
        let status = node.agent_status();
        let number = |f: fn(&weir_tests::AgentStatus) -> u64| {
            status
                .as_ref()
                .map_or_else(|| "-".to_owned(), |s| f(s).to_string())
        };
        println!(
            "  {:<8}  {:<13}  {:<15}  {:<5}  {:>3}  {:>9}  {:>8}  {:>6}",
            node.name(),
            node.address().map(|ip| ip.to_string()).unwrap_or_default(),
            status
                .as_ref()
                .and_then(|s| s.pod_cidr.clone())
                .unwrap_or_default(),
            if node.agent_running() { "up" } else { "DOWN" },
            number(|s| s.generation),
            number(|s| s.frontends),
            number(|s| s.backends),
            number(|s| s.node_routes),
        );
    }
    println!("  external  {EXTERNAL_ADDRESS:<13}  (not a node)");

    let objects = cluster.objects();
    println!("\n  pod                       node      ip            ready  ports");
    for (key, pod) in &objects.pods {
        let (node, ip) = cluster
            .find_pod(key)
            .map_or(("-".to_owned(), "-".to_owned()), |(node, running)| {
                (node.name().to_owned(), running.ip.to_string())
            });
        let ports = kube::pods::plan(pod).map(|plan| plan.ports).unwrap_or_default();
        let ports: Vec<String> = ports
            .iter()
            .map(|p| {
                format!(
                    "{}{}/{}",
                    p.name.as_ref().map(|n| format!("{n} ")).unwrap_or_default(),
                    p.port,
                    p.protocol
                )
            })
            .collect();
        let ready = if kube::pods::declared_ready(pod) {
            "yes"
        } else {
            "no"
        };
        let ports = if ports.is_empty() {
            "-".to_owned()
        } else {
            ports.join(", ")
        };
        println!("  {key:<24}  {node:<8}  {ip:<12}  {ready:<5}  {ports}");
    }

    let endpoints = ready_endpoints(cluster);
    println!("\n  service                   clusterIP      endpoints  ports");
    for (key, service) in &objects.services {
        let cluster_ip = service
            .spec
            .as_ref()
            .and_then(|spec| spec.cluster_ip.clone())
            .unwrap_or_default();
        let (ready, all) = endpoints.get(key).copied().unwrap_or_default();
        println!(
            "  {key:<24}  {cluster_ip:<13}  {:<9}  {}",
            format!("{ready}/{all} ready"),
            ports(service).join(", ")
        );
    }
    println!();
}

fn to_json(cluster: &Cluster) -> Value {
    let nodes: Vec<Value> = cluster
        .nodes()
        .iter()
        .map(|node| {
            let status = node.agent_status();
            json!({
                "name": node.name(),
                "address": node.address().map(|ip| ip.to_string()),
                "pod_cidr": status.as_ref().and_then(|s| s.pod_cidr.clone()),
                "agent_running": node.agent_running(),
                "generation": status.as_ref().map(|s| s.generation),
                "frontends": status.as_ref().map(|s| s.frontends),
                "backends": status.as_ref().map(|s| s.backends),
                "node_routes": status.as_ref().map(|s| s.node_routes),
            })
        })
        .collect();
    let pods: Vec<Value> = cluster
        .pods()
        .map(|(node, pod)| json!({"pod": pod.key(), "node": node.name(), "ip": pod.ip.to_string()}))
        .collect();
    let endpoints = ready_endpoints(cluster);
    let services: Vec<Value> = cluster
        .objects()
        .services
        .iter()
        .map(|(key, service)| {
            let (ready, all) = endpoints.get(key).copied().unwrap_or_default();
            json!({
                "service": key,
                "cluster_ip": service.spec.as_ref().and_then(|spec| spec.cluster_ip.clone()),
                "ports": ports(service),
                "endpoints": all,
                "ready": ready,
            })
        })
        .collect();
    json!({"nodes": nodes, "external": EXTERNAL_ADDRESS.to_string(), "pods": pods, "services": services})
}
