//! EndpointSlice generation against what the Kubernetes controller would write.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::*;
use crate::kube::{Object, parse_documents, pods};

const HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);

fn service(yaml_spec: &str) -> Service {
    let text = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: echo, namespace: demo}}\nspec: {yaml_spec}\n"
    );
    match parse_documents(&text).unwrap().remove(0) {
        Object::Service(service) => service,
        other => panic!("not a service: {other:?}"),
    }
}

/// A running pod `name` in `namespace` with `labels`, container `ports`
/// (YAML flow list) and IP 10.244.1.`last`.
fn pod(namespace: &str, name: &str, labels: &str, ports: &str, last: u8) -> Pod {
    let text = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}, labels: {labels}}}\n\
         spec: {{nodeName: node-1, containers: [{{name: c, ports: {ports}}}]}}\n"
    );
    let Object::Pod(pod) = parse_documents(&text).unwrap().remove(0) else {
        panic!("not a pod")
    };
    pods::observed(&pod, HOST, Ipv4Addr::new(10, 244, 1, last))
}

/// `(ports as name/protocol/port, endpoint addresses)` per slice.
fn summary(slices: &[EndpointSlice]) -> Vec<(Vec<String>, Vec<String>)> {
    slices
        .iter()
        .map(|slice| {
            let ports = slice
                .ports
                .iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{}/{}/{}",
                        p.name.as_deref().unwrap_or(""),
                        p.protocol.as_deref().unwrap_or(""),
                        p.port.unwrap_or(0)
                    )
                })
                .collect();
            let addresses = endpoints(slice).iter().map(|e| e.addresses[0].clone()).collect();
            (ports, addresses)
        })
        .collect()
}

fn endpoints(slice: &EndpointSlice) -> &[k8s_openapi::api::discovery::v1::Endpoint] {
    slice.endpoints.as_deref().unwrap_or_default()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn numeric_target_ports_select_by_labels_and_namespace() {
    let svc = service("{selector: {app: echo}, ports: [{name: http, port: 80, targetPort: 8080}]}");
    let mut not_running = pod("demo", "pending", "{app: echo}", "[]", 9);
    not_running.status = None;
    let pods = [
        pod("demo", "b", "{app: echo, extra: x}", "[]", 3),
        pod("demo", "a", "{app: echo}", "[]", 2),
        pod("demo", "other", "{app: other}", "[]", 4),
        pod("elsewhere", "c", "{app: echo}", "[]", 5),
        not_running,
    ];
    let slices = endpoint_slices(&svc, &pods);
    assert_eq!(
        summary(&slices),
        [(
            strings(&["http/TCP/8080"]),
            strings(&["10.244.1.2", "10.244.1.3"])
        )]
    );
    let slice = &slices[0];
    let labels = slice.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[SERVICE_NAME_LABEL], "echo");
    assert_eq!(labels[MANAGED_BY_LABEL], CONTROLLER_NAME);
    assert_eq!(slice.metadata.namespace.as_deref(), Some("demo"));
    assert_eq!(slice.address_type, "IPv4");
    let endpoint = &endpoints(slice)[0];
    assert_eq!(endpoint.node_name.as_deref(), Some("node-1"));
    let target = endpoint.target_ref.as_ref().unwrap();
    assert_eq!(
        (
            target.kind.as_deref(),
            target.namespace.as_deref(),
            target.name.as_deref()
        ),
        (Some("Pod"), Some("demo"), Some("a"))
    );
    let conditions = endpoint.conditions.as_ref().unwrap();
    assert_eq!(
        (conditions.ready, conditions.serving, conditions.terminating),
        (Some(true), Some(true), Some(false))
    );
}

#[test]
fn named_target_ports_resolve_per_pod_and_split_slices() {
    let svc = service(
        "{selector: {app: echo}, ports: [{name: web, port: 80, targetPort: http}, \
         {name: dns, port: 53, protocol: UDP, targetPort: dns}]}",
    );
    let pods = [
        pod(
            "demo",
            "a",
            "{app: echo}",
            "[{name: http, containerPort: 8080}]",
            2,
        ),
        pod(
            "demo",
            "b",
            "{app: echo}",
            "[{name: http, containerPort: 8080}]",
            3,
        ),
        pod(
            "demo",
            "c",
            "{app: echo}",
            "[{name: http, containerPort: 9090}]",
            4,
        ),
        // `dns` only over TCP: the UDP Service port finds no match on it.
        pod(
            "demo",
            "d",
            "{app: echo}",
            "[{name: http, containerPort: 8080}, {name: dns, containerPort: 5353}, \
             {name: dns, containerPort: 5353, protocol: UDP}]",
            5,
        ),
        pod("demo", "e", "{app: echo}", "[{name: dns, containerPort: 53}]", 6),
    ];
    let mut got = summary(&endpoint_slices(&svc, &pods));
    got.sort();
    let mut want = vec![
        (strings(&["web/TCP/8080"]), strings(&["10.244.1.2", "10.244.1.3"])),
        (strings(&["web/TCP/9090"]), strings(&["10.244.1.4"])),
        (
            strings(&["web/TCP/8080", "dns/UDP/5353"]),
            strings(&["10.244.1.5"]),
        ),
        // Neither port resolves on e: it is still an endpoint, without ports.
        (strings(&[]), strings(&["10.244.1.6"])),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn target_port_defaults_to_the_port() {
    let svc = service("{selector: {app: echo}, ports: [{port: 8080}]}");
    let slices = endpoint_slices(&svc, &[pod("demo", "a", "{app: echo}", "[]", 2)]);
    assert_eq!(
        summary(&slices),
        [(strings(&["/TCP/8080"]), strings(&["10.244.1.2"]))]
    );
}

#[test]
fn conditions_follow_readiness_termination_and_publish_not_ready() {
    let mut unready = pod("demo", "unready", "{app: echo}", "[]", 2);
    let status = unready.status.as_mut().unwrap();
    status.conditions.as_mut().unwrap()[0].status = "False".to_owned();
    let mut terminating = pod("demo", "terminating", "{app: echo}", "[]", 3);
    terminating.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    ));
    let pods = [unready, terminating];
    let conditions = |spec: &str| -> Vec<(bool, bool, bool)> {
        endpoints(&endpoint_slices(&service(spec), &pods)[0])
            .iter()
            .map(|e| {
                let c = e.conditions.as_ref().unwrap();
                (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
            })
            .collect()
    };
    assert_eq!(
        conditions("{selector: {app: echo}, ports: [{port: 80}]}"),
        // In name order: terminating (still serving), unready.
        [(false, true, true), (false, false, false)]
    );
    assert_eq!(
        conditions("{selector: {app: echo}, publishNotReadyAddresses: true, ports: [{port: 80}]}"),
        [(true, true, true), (true, true, false)]
    );
}

#[test]
fn services_without_selector_get_none_and_empty_selections_a_placeholder() {
    let pods = [pod("demo", "a", "{app: echo}", "[]", 2)];
    assert_eq!(endpoint_slices(&service("{ports: [{port: 80}]}"), &pods).len(), 0);
    let external_name = service("{type: ExternalName, externalName: x.example, selector: {app: echo}}");
    assert_eq!(endpoint_slices(&external_name, &pods).len(), 0);
    let placeholder = endpoint_slices(&service("{selector: {app: nobody}, ports: [{port: 80}]}"), &pods);
    assert_eq!(placeholder.len(), 1);
    assert_eq!(endpoints(&placeholder[0]).len(), 0);
}

#[test]
fn large_selections_are_chunked_with_stable_names() {
    let svc = service("{selector: {app: echo}, ports: [{port: 80}]}");
    let pods: Vec<Pod> = (0..150_u8)
        .map(|i| pod("demo", &format!("p{i:03}"), "{app: echo}", "[]", i))
        .collect();
    let slices = endpoint_slices(&svc, &pods);
    let sizes: Vec<usize> = slices.iter().map(|s| endpoints(s).len()).collect();
    assert_eq!(sizes, [MAX_ENDPOINTS_PER_SLICE, 50]);
    let names: Vec<_> = slices.iter().map(|s| s.metadata.name.clone().unwrap()).collect();
    assert_ne!(names[0], names[1]);
    assert!(names[0].starts_with("echo-"), "{names:?}");
    let again: Vec<_> = endpoint_slices(&svc, &pods)
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, again);
}

#[test]
fn examples_lab_gets_one_slice_with_the_named_port_resolved() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/lab");
    let objects = crate::kube::read_paths(&[dir]).unwrap();
    let mut pods = Vec::new();
    let mut services = Vec::new();
    for object in objects {
        match object {
            Object::Pod(pod) => {
                let last = u8::try_from(pods.len() + 2).unwrap();
                pods.push(pods::observed(&pod, HOST, Ipv4Addr::new(10, 244, 1, last)));
            }
            Object::Service(service) => services.push(service),
            Object::Namespace(_) => {}
            other => panic!("examples/lab has an unexpected {}", other.describe()),
        }
    }
    assert_eq!((pods.len(), services.len()), (4, 1), "examples/lab changed");
    let slices = endpoint_slices(&services[0], &pods);
    let names: Vec<String> = endpoints(&slices[0])
        .iter()
        .map(|e| e.target_ref.as_ref().unwrap().name.clone().unwrap())
        .collect();
    assert_eq!(names, ["echo-a", "echo-b", "echo-c"]);
    assert_eq!(summary(&slices)[0].0, strings(&["http/TCP/8080"]));
}
