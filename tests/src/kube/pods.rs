//! How the lab runs a Pod object: which node, which servers, and what the
//! kubelet would report back (IP, host IP, Ready condition).
//!
//! The lab has no containers: a pod is a netns attached by `weir-cni`, and
//! every declared container port (TCP or UDP) gets a `weir-probe` server
//! answering with the pod's name. Readiness is what the object says in
//! `status.conditions` (type Ready), ready when it says nothing — so a test
//! or a user can declare a pod not ready without a failing probe.

use std::net::Ipv4Addr;

use anyhow::{Result, bail, ensure};
use k8s_openapi::api::core::v1::{HostIP, Pod, PodCondition, PodIP, PodStatus};

use crate::pod::split_key;
use crate::probe::Protocol;

/// A port a pod serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedPort {
    /// The container port's name, if it has one (named targetPorts use it).
    pub name: Option<String>,
    /// The port number.
    pub port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

/// How the lab runs one Pod object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodPlan {
    /// `namespace/name`.
    pub key: String,
    /// Pod name (what its servers answer with).
    pub name: String,
    /// The node it runs on.
    pub node: String,
    /// Its servers, in declaration order.
    pub ports: Vec<ServedPort>,
}

/// The API server's defaults for a Pod: container ports are TCP unless stated.
pub(crate) fn default_pod(pod: &mut Pod) {
    let Some(spec) = pod.spec.as_mut() else { return };
    for container in &mut spec.containers {
        for port in container.ports.iter_mut().flatten() {
            port.protocol.get_or_insert_with(|| "TCP".to_owned());
        }
    }
}

/// Binds `pod` to a node the way the lab's "scheduler" does: `spec.nodeName`
/// if given (it must be one of `nodes`), else the first node.
pub fn schedule(pod: &mut Pod, nodes: &[String]) -> Result<()> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let Some(spec) = pod.spec.as_mut() else {
        bail!("pod {name} has no spec");
    };
    match &spec.node_name {
        Some(node) if !nodes.contains(node) => {
            bail!(
                "pod {name}: spec.nodeName {node:?} is not a lab node ({})",
                nodes.join(", ")
            )
        }
        Some(_) => {}
        None => spec.node_name = nodes.first().cloned(),
    }
    Ok(())
}

/// What the lab does for a (scheduled) Pod object.
pub fn plan(pod: &Pod) -> Result<PodPlan> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let key = format!("{namespace}/{name}");
    split_key(&key)?;
    let spec = pod.spec.as_ref();
    let Some(node) = spec.and_then(|spec| spec.node_name.clone()) else {
        bail!("pod {key} is not scheduled to a node");
    };
    let mut ports: Vec<ServedPort> = Vec::new();
    for container in spec.map(|spec| spec.containers.as_slice()).unwrap_or_default() {
        for port in container.ports.iter().flatten() {
            let number = u16::try_from(port.container_port).ok().filter(|p| *p > 0);
            let Some(number) = number else {
                bail!("pod {key}: containerPort {} is out of range", port.container_port);
            };
            let protocol: Protocol = port.protocol.as_deref().unwrap_or("TCP").parse()?;
            ensure!(
                !ports.iter().any(|p| p.port == number && p.protocol == protocol),
                "pod {key}: port {number}/{protocol} is declared twice"
            );
            ports.push(ServedPort {
                name: port.name.clone(),
                port: number,
                protocol,
            });
        }
    }
    Ok(PodPlan {
        key,
        name: name.to_owned(),
        node,
        ports,
    })
}

/// Whether a change from `old` to `new` needs a new pod: its spec (node,
/// containers, ports) changed. Labels, annotations and status do not.
#[must_use]
pub fn needs_recreate(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec
}

/// Whether the object declares the pod ready (no Ready condition: ready).
#[must_use]
pub fn declared_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"))
        .is_none_or(|condition| condition.status == "True")
}

/// The Pod as the kubelet reports it once running on `host_ip` with `pod_ip`.
#[must_use]
pub fn observed(pod: &Pod, host_ip: Ipv4Addr, pod_ip: Ipv4Addr) -> Pod {
    let ready = if declared_ready(pod) { "True" } else { "False" };
    let mut observed = pod.clone();
    observed.status = Some(PodStatus {
        phase: Some("Running".to_owned()),
        host_ip: Some(host_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: host_ip.to_string(),
        }]),
        pod_ip: Some(pod_ip.to_string()),
        pod_ips: Some(vec![PodIP {
            ip: pod_ip.to_string(),
        }]),
        conditions: Some(vec![PodCondition {
            type_: "Ready".to_owned(),
            status: ready.to_owned(),
            ..PodCondition::default()
        }]),
        ..PodStatus::default()
    });
    observed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::{Object, parse_documents};

    fn pod(yaml: &str) -> Pod {
        match parse_documents(yaml).unwrap().remove(0) {
            Object::Pod(pod) => pod,
            other => panic!("not a pod: {other:?}"),
        }
    }

    fn nodes() -> Vec<String> {
        vec!["node-1".to_owned(), "node-2".to_owned()]
    }

    #[test]
    fn pods_default_to_the_first_node_and_serve_their_ports() {
        let mut p = pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [\
             {name: c, ports: [{name: http, containerPort: 8080}, {containerPort: 53, protocol: UDP}]}, \
             {name: d, ports: [{containerPort: 53}]}]}\n",
        );
        schedule(&mut p, &nodes()).unwrap();
        let plan = plan(&p).unwrap();
        assert_eq!(plan.key, "default/a");
        assert_eq!(plan.node, "node-1");
        let served: Vec<String> = plan
            .ports
            .iter()
            .map(|p| format!("{}/{}/{}", p.name.as_deref().unwrap_or("-"), p.port, p.protocol))
            .collect();
        assert_eq!(served, ["http/8080/tcp", "-/53/udp", "-/53/tcp"]);
        assert!(declared_ready(&p));
    }

    #[test]
    fn bad_nodes_ports_and_protocols_are_refused() {
        let mut elsewhere = pod("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n\
             spec: {nodeName: node-9, containers: []}\n");
        assert!(schedule(&mut elsewhere, &nodes()).is_err());
        for ports in [
            "[{containerPort: 0}]",
            "[{containerPort: 80, protocol: SCTP}]",
            "[{containerPort: 80}, {containerPort: 80}]",
        ] {
            let mut p = pod(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: a}}\n\
                 spec: {{containers: [{{name: c, ports: {ports}}}]}}\n"
            ));
            schedule(&mut p, &nodes()).unwrap();
            assert!(plan(&p).is_err(), "{ports}");
        }
    }

    #[test]
    fn readiness_and_what_needs_a_new_pod() {
        let base = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, labels: {v: '1'}}\n\
                    spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}\n";
        let p = pod(base);
        let relabelled = pod(&base.replace("v: '1'", "v: '2'"));
        let moved = pod(&base.replace("spec: {", "spec: {nodeName: node-2, "));
        let unready = pod(&format!(
            "{base}status: {{conditions: [{{type: Ready, status: 'False'}}]}}\n"
        ));
        assert!(!needs_recreate(&p, &relabelled));
        assert!(!needs_recreate(&p, &unready));
        assert!(needs_recreate(&p, &moved));
        assert!(!declared_ready(&unready));
        let seen = observed(
            &unready,
            Ipv4Addr::new(198, 18, 0, 11),
            Ipv4Addr::new(10, 244, 1, 2),
        );
        let status = seen.status.unwrap();
        assert_eq!(status.pod_ip.as_deref(), Some("10.244.1.2"));
        assert_eq!(status.conditions.unwrap()[0].status, "False");
    }
}
