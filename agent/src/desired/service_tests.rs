use super::*;

const NO_SLICES: &[EndpointSlice] = &[];

fn parse<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    serde_yaml::from_str(yaml).expect("test YAML parses")
}

fn svc(name: &str, ip: &str, ports: &str) -> Service {
    parse(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
         spec: {{clusterIP: '{ip}', ports: {ports}}}"
    ))
}

fn slice(service: &str, ports: &str, endpoints: &str) -> EndpointSlice {
    parse(&format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {service}-x, namespace: default, labels: {{kubernetes.io/service-name: {service}}}}}\n\
         addressType: IPv4\nports: {ports}\nendpoints: {endpoints}"
    ))
}

fn node(name: &str) -> Scope {
    Scope {
        node_name: Some(name.into()),
        node_addresses: vec!["198.18.0.11".parse().unwrap()],
        ..Scope::default()
    }
}

fn addr(s: &str) -> L4Addr {
    let (ip, rest) = s.split_once(':').unwrap();
    let (port, proto) = rest.split_once('/').unwrap();
    let proto = if proto == "TCP" {
        Protocol::Tcp
    } else {
        Protocol::Udp
    };
    L4Addr {
        ip: ip.parse().unwrap(),
        port: port.parse().unwrap(),
        proto,
    }
}

fn backends(state: &DesiredState, frontend: &str) -> Vec<String> {
    state.frontends[&addr(frontend)]
        .backends
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn port_differs_from_target_port_and_only_ready_endpoints_are_used() {
    let services = [svc(
        "echo",
        "10.96.0.10",
        "[{name: http, port: 80, targetPort: 8080}]",
    )];
    let slices = [slice(
        "echo",
        "[{name: http, port: 8080, protocol: TCP}]",
        "[{addresses: [10.0.0.2], conditions: {ready: true}},
          {addresses: [10.0.0.3]},
          {addresses: [10.0.0.4], conditions: {ready: false}}]",
    )];
    let (state, errors) = compute(&services, &slices, &Scope::default());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        backends(&state, "10.96.0.10:80/TCP"),
        ["10.0.0.2:8080/TCP", "10.0.0.3:8080/TCP"]
    );
}

#[test]
fn multi_port_service_matches_slice_ports_by_name() {
    let services = [svc(
        "multi",
        "10.96.0.11",
        "[{name: http, port: 80}, {name: dns, port: 53, protocol: UDP}]",
    )];
    let slices = [slice(
        "multi",
        "[{name: http, port: 8080}, {name: dns, port: 5353, protocol: UDP}]",
        "[{addresses: [10.0.0.2]}]",
    )];
    let (state, errors) = compute(&services, &slices, &Scope::default());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(backends(&state, "10.96.0.11:80/TCP"), ["10.0.0.2:8080/TCP"]);
    assert_eq!(backends(&state, "10.96.0.11:53/UDP"), ["10.0.0.2:5353/UDP"]);
}

#[test]
fn headless_and_external_name_services_program_nothing() {
    let headless = svc("headless", "None", "[{port: 80}]");
    let external: Service = parse(
        "apiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: default}\n\
         spec: {type: ExternalName, externalName: example.invalid}",
    );
    let (state, errors) = compute(&[headless, external], NO_SLICES, &Scope::default());
    assert!(errors.is_empty(), "{errors:?}");
    assert!(state.frontends.is_empty());
}

#[test]
fn service_without_endpoints_has_a_frontend_with_no_backends() {
    let (state, _) = compute(
        &[svc("lonely", "10.96.0.12", "[{port: 80}]")],
        NO_SLICES,
        &Scope::default(),
    );
    assert_eq!(
        backends(&state, "10.96.0.12:80/TCP"),
        [] as [std::string::String; 0]
    );
}

#[test]
fn bad_objects_are_reported_and_the_rest_is_kept() {
    let services = [
        svc("bad-ip", "10.96.0.300", "[{port: 80}]"),
        svc(
            "bad-port",
            "10.96.0.13",
            "[{name: a, port: 70000}, {name: b, port: 81}]",
        ),
        svc("sctp", "10.96.0.14", "[{port: 80, protocol: SCTP}]"),
        svc("good", "10.96.0.15", "[{port: 80}]"),
    ];
    let slices = [slice(
        "good",
        "[{port: 80}]",
        "[{addresses: [not-an-ip, 10.0.0.9]}]",
    )];
    let (state, errors) = compute(&services, &slices, &Scope::default());
    let reasons: Vec<&Reason> = errors.iter().map(|e| &e.reason).collect();
    assert!(reasons.contains(&&Reason::BadClusterIp("10.96.0.300".into())));
    assert!(reasons.contains(&&Reason::PortOutOfRange(70000)));
    assert!(reasons.contains(&&Reason::UnsupportedProtocol("SCTP".into())));
    assert!(reasons.contains(&&Reason::BadEndpointAddress("not-an-ip".into())));
    assert_eq!(backends(&state, "10.96.0.15:80/TCP"), ["10.0.0.9:80/TCP"]);
    assert!(state.frontends.contains_key(&addr("10.96.0.13:81/TCP")));
    assert_eq!(state.frontends.len(), 2);
}

#[test]
fn second_service_claiming_a_frontend_is_rejected() {
    let services = [
        svc("b", "10.96.0.16", "[{port: 80}]"),
        svc("a", "10.96.0.16", "[{port: 80}]"),
    ];
    let (state, errors) = compute(&services, NO_SLICES, &Scope::default());
    assert_eq!(errors.len(), 1);
    assert_eq!(state.frontends[&addr("10.96.0.16:80/TCP")].service.name, "a");
}

#[test]
fn slices_of_other_namespaces_or_services_are_ignored() {
    let services = [svc("echo", "10.96.0.17", "[{port: 80}]")];
    let mut other_ns = slice("echo", "[{port: 80}]", "[{addresses: [10.0.0.5]}]");
    other_ns.metadata.namespace = Some("other".into());
    let other_svc = slice("not-echo", "[{port: 80}]", "[{addresses: [10.0.0.6]}]");
    let (state, _) = compute(&services, &[other_ns, other_svc], &Scope::default());
    assert_eq!(
        backends(&state, "10.96.0.17:80/TCP"),
        [] as [std::string::String; 0]
    );
}

#[test]
fn internal_traffic_policy_local_uses_only_this_nodes_endpoints() {
    let mut service = svc("itp", "10.96.0.18", "[{port: 80}]");
    service.spec.as_mut().unwrap().internal_traffic_policy = Some("Local".into());
    let slices = [slice(
        "itp",
        "[{port: 80}]",
        "[{addresses: [10.0.0.2], nodeName: n1}, {addresses: [10.0.0.3], nodeName: n2}]",
    )];
    let (state, _) = compute(std::slice::from_ref(&service), &slices, &node("n2"));
    assert_eq!(backends(&state, "10.96.0.18:80/TCP"), ["10.0.0.3:80/TCP"]);
    let (elsewhere, _) = compute(&[service], &slices, &node("n3"));
    assert_eq!(backends(&elsewhere, "10.96.0.18:80/TCP"), Vec::<String>::new());
}

#[test]
fn terminating_endpoints_serve_only_when_nothing_is_ready() {
    let services = [svc("drain", "10.96.0.19", "[{port: 80}]")];
    let slices = [slice(
        "drain",
        "[{port: 80}]",
        "[{addresses: [10.0.0.2], conditions: {ready: false, serving: true, terminating: true}},
          {addresses: [10.0.0.3], conditions: {ready: false, serving: false, terminating: true}}]",
    )];
    let (state, _) = compute(&services, &slices, &Scope::default());
    assert_eq!(backends(&state, "10.96.0.19:80/TCP"), ["10.0.0.2:80/TCP"]);
}

#[test]
fn node_ports_external_ips_and_load_balancer_ips_are_external_frontends() {
    let service: Service = parse(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n\
         spec: {type: LoadBalancer, clusterIP: 10.96.0.30, externalIPs: [203.0.113.5],\n\
                ports: [{port: 80, targetPort: 8080, nodePort: 30080}]}\n\
         status: {loadBalancer: {ingress: [{ip: 192.0.2.7}, {hostname: lb.example}]}}",
    );
    let slices = [slice(
        "web",
        "[{port: 8080}]",
        "[{addresses: [10.0.0.2], nodeName: n1}, {addresses: [10.0.0.3], nodeName: n2}]",
    )];
    let (state, errors) = compute(&[service], &slices, &node("n1"));
    assert!(errors.is_empty(), "{errors:?}");
    let external: Vec<String> = state
        .frontends
        .iter()
        .filter(|(_, f)| f.external)
        .map(|(a, _)| a.to_string())
        .collect();
    assert_eq!(
        external,
        ["192.0.2.7:80/TCP", "198.18.0.11:30080/TCP", "203.0.113.5:80/TCP"]
    );
    assert!(!state.frontends[&addr("10.96.0.30:80/TCP")].external);
    assert_eq!(
        backends(&state, "198.18.0.11:30080/TCP"),
        ["10.0.0.2:8080/TCP", "10.0.0.3:8080/TCP"]
    );
    assert_eq!(
        state
            .local_backends
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["10.0.0.2"]
    );
}

#[test]
fn external_traffic_policy_local_uses_local_endpoints_and_serves_a_health_check() {
    let service: Service = parse(
        "apiVersion: v1\nkind: Service\nmetadata: {name: etp, namespace: default}\n\
         spec: {type: NodePort, clusterIP: 10.96.0.31, externalTrafficPolicy: Local, healthCheckNodePort: 32000,\n\
                ports: [{port: 80, nodePort: 30081}]}",
    );
    let slices = [slice(
        "etp",
        "[{port: 80}]",
        "[{addresses: [10.0.0.2], nodeName: n1}, {addresses: [10.0.0.3], nodeName: n2}]",
    )];
    let (state, _) = compute(std::slice::from_ref(&service), &slices, &node("n2"));
    assert_eq!(backends(&state, "198.18.0.11:30081/TCP"), ["10.0.0.3:80/TCP"]);
    // The ClusterIP keeps every endpoint: the policy is for external traffic.
    assert_eq!(backends(&state, "10.96.0.31:80/TCP").len(), 2);
    assert_eq!(state.health_checks[&32000].local_endpoints, 1);
    let (elsewhere, _) = compute(&[service], &slices, &node("n3"));
    assert_eq!(elsewhere.health_checks[&32000].local_endpoints, 0);
}

#[test]
fn node_port_outside_the_range_is_reported_and_the_cluster_ip_kept() {
    let service: Service = parse(
        "apiVersion: v1\nkind: Service\nmetadata: {name: np, namespace: default}\n\
         spec: {type: NodePort, clusterIP: 10.96.0.32, ports: [{port: 80, nodePort: 8080}]}",
    );
    let (state, errors) = compute(&[service], NO_SLICES, &node("n1"));
    assert!(matches!(
        errors[0].reason,
        Reason::NodePortOutOfRange { port: 8080, .. }
    ));
    assert_eq!(state.frontends.len(), 1);
}

#[test]
fn endpoints_in_the_pod_cidr_or_on_a_node_address_are_local_without_a_node_name() {
    let services = [svc("web", "10.96.0.30", "[{port: 80, targetPort: 8080}]")];
    let slices = [slice(
        "web",
        "[{port: 8080}]",
        "[{addresses: [10.244.1.7]}, {addresses: [10.244.2.7]}, {addresses: [198.18.0.11]}]",
    )];
    let scope = Scope {
        pod_cidr: Some("10.244.1.0/24".parse().unwrap()),
        ..node("n1")
    };
    let (state, _) = compute(&services, &slices, &scope);
    let local: Vec<String> = state.local_backends.iter().map(ToString::to_string).collect();
    // Not 10.244.2.7: another node's podCIDR, reached over the uplink.
    assert_eq!(local, ["10.244.1.7", "198.18.0.11"]);
}
